//! Schemas of served kinds, as OpenAPI v2 definitions and v3 component schemas, and their
//! names. One source for both versions: a custom resource's schema is the CRD version's
//! `openAPIV3Schema`; built-in kinds have no compiled-in schema here, so they are published
//! as open objects (clients then skip client-side checks, as for schemaless kinds upstream).
//!
//! Naming follows upstream so clients and tests find definitions by name: the group's DNS
//! labels reversed, then version and kind (`com.example.stable.v1.CronTab`); built-in groups
//! use their Go package path (`io.k8s.api.apps.v1.Deployment`).

use crate::api::registry::ResourceType;
use serde_json::{json, Map, Value};

/// Name of the shared ObjectMeta definition every kind's `metadata` refers to.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Which document a schema is for: v2 cannot express some v3 constructs, and refs differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    V2,
    V3,
}

impl Flavor {
    fn reference(self, name: &str) -> String {
        match self {
            Flavor::V2 => format!("#/definitions/{name}"),
            Flavor::V3 => format!("#/components/schemas/{name}"),
        }
    }
}

/// The definition name of a kind: `io.k8s.api.core.v1.Pod`, `com.example.stable.v1.CronTab`.
pub fn definition_name(rt: &ResourceType) -> String {
    let prefix = if rt.custom.is_some() {
        rt.group.split('.').rev().collect::<Vec<_>>().join(".")
    } else if rt.group == "apiextensions.k8s.io" {
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_owned()
    } else if rt.group == "apiregistration.k8s.io" {
        "io.k8s.kube-aggregator.pkg.apis.apiregistration".to_owned()
    } else if rt.group.is_empty() {
        "io.k8s.api.core".to_owned()
    } else {
        // rbac.authorization.k8s.io → rbac, networking.k8s.io → networking, apps → apps.
        let first = rt.group.split('.').next().unwrap_or_default();
        format!("io.k8s.api.{first}")
    };
    format!("{prefix}.{}.{}", rt.version, rt.kind)
}

/// `x-kubernetes-group-version-kind` of a kind.
pub fn gvk(rt: &ResourceType) -> Value {
    json!({"group": rt.group, "version": rt.version, "kind": rt.kind})
}

/// The schema of one served kind in the given flavor.
pub fn kind_schema(rt: &ResourceType, flavor: Flavor) -> Value {
    let crd_schema = rt
        .custom
        .as_ref()
        .map(|c| &c.schema)
        .filter(|s| s.is_object());
    let mut out = match crd_schema {
        // Built-in kinds and CRDs without a schema: an open object. Properties are left out
        // on purpose in v2: v2 clients read "object with properties" as "no other fields".
        None => match flavor {
            Flavor::V2 => json!({"type": "object"}),
            Flavor::V3 => {
                let mut s = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
                add_type_meta(&mut s, flavor);
                s
            }
        },
        // v2 cannot say "these fields and any others": upstream publishes a bare object.
        Some(s) if flavor == Flavor::V2 && preserves_unknown(s) => json!({"type": "object"}),
        Some(s) => {
            let mut s = s.clone();
            if flavor == Flavor::V2 {
                to_v2(&mut s);
            }
            add_type_meta(&mut s, flavor);
            s
        }
    };
    if let Some(o) = out.as_object_mut() {
        o.insert("x-kubernetes-group-version-kind".into(), json!([gvk(rt)]));
    }
    out
}

fn preserves_unknown(s: &Value) -> bool {
    s["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

/// Adds `apiVersion`, `kind` and `metadata` (a reference to ObjectMeta), which a CRD's schema
/// leaves out because every object has them.
fn add_type_meta(s: &mut Value, flavor: Flavor) {
    let Some(o) = s.as_object_mut() else {
        return;
    };
    let props = o
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(props) = props.as_object_mut() else {
        return;
    };
    props.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object: the group and version the server uses for it (for example apps/v1)."}),
    );
    props.insert(
        "kind".into(),
        json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents, in CamelCase (for example Deployment)."}),
    );
    let description = "Standard object's metadata: name, namespace, labels, annotations and the fields the server maintains.";
    let reference = flavor.reference(OBJECT_META);
    let metadata = match flavor {
        Flavor::V2 => json!({"$ref": reference, "description": description}),
        // v3 forbids siblings of $ref; upstream wraps the reference in allOf.
        Flavor::V3 => json!({"allOf": [{"$ref": reference}], "description": description}),
    };
    props.insert("metadata".into(), metadata);
}

/// Rewrites a structural v3 schema into what v2 clients can read, recursively (upstream's
/// rules): junctors are dropped; nullable and preserve-unknown nodes lose their nested
/// schemas; arrays without items and open objects lose their type; nullable properties stop
/// being required.
pub fn to_v2(s: &mut Value) {
    let Some(o) = s.as_object_mut() else {
        return;
    };
    for junctor in ["allOf", "oneOf", "anyOf", "not"] {
        o.remove(junctor);
    }
    let nullable = o.remove("nullable").and_then(|v| v.as_bool()) == Some(true);
    let preserve = o
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    if nullable {
        o.remove("type");
        o.remove("items");
        o.remove("properties");
    }
    if preserve {
        o.remove("items");
        o.remove("properties");
    }
    let ty = o.get("type").and_then(Value::as_str).map(str::to_owned);
    if (ty.as_deref() == Some("array") && !o.contains_key("items"))
        || (preserve && ty.as_deref() == Some("object"))
    {
        o.remove("type");
    }
    let nullable_props: Vec<String> = o
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, v)| v["nullable"].as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let nullable_values = o
        .get("additionalProperties")
        .is_some_and(|a| a["nullable"].as_bool() == Some(true));
    if nullable_values {
        o.remove("required");
    } else if let Some(Value::Array(req)) = o.get_mut("required") {
        req.retain(|r| {
            !r.as_str()
                .is_some_and(|r| nullable_props.iter().any(|p| p == r))
        });
        if req.is_empty() {
            o.remove("required");
        }
    }
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        props.values_mut().for_each(to_v2);
    }
    if let Some(items) = o.get_mut("items") {
        match items {
            Value::Array(list) => list.iter_mut().for_each(to_v2),
            other => to_v2(other),
        }
    }
    if let Some(additional) = o.get_mut("additionalProperties") {
        to_v2(additional);
    }
}

/// ObjectMeta as both documents publish it: the fields clients read and `kubectl explain`
/// shows. Timestamps are RFC 3339 strings, as on the wire.
pub fn object_meta() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    let time = |d: &str| json!({"type": "string", "format": "date-time", "description": d});
    let map = |d: &str| json!({"type": "object", "additionalProperties": {"type": "string"}, "description": d});
    json!({
        "type": "object",
        "description": "ObjectMeta is the metadata every persisted object carries.",
        "properties": {
            "name": string("Name is unique within a namespace for one resource type; it cannot be changed."),
            "generateName": string("GenerateName is a prefix the server completes with a random suffix when name is empty."),
            "namespace": string("Namespace the object lives in; empty for cluster-scoped resources."),
            "uid": string("UID is the server-assigned identity of this object, unique in time and space."),
            "resourceVersion": string("ResourceVersion is an opaque value that changes whenever the object changes; used for optimistic concurrency and watches."),
            "generation": {"type": "integer", "format": "int64", "description": "Generation counts changes to the desired state (spec)."},
            "creationTimestamp": time("CreationTimestamp is a timestamp of the server time when the object was created (RFC 3339, UTC)."),
            "deletionTimestamp": time("DeletionTimestamp is set by the server when deletion was requested; the object goes once its finalizers are removed."),
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64", "description": "Seconds the object is allowed to terminate gracefully before it is removed."},
            "labels": map("Labels are string keys and values used to organize and select objects."),
            "annotations": map("Annotations are string keys and values that tools store on the object; not used for selection."),
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Finalizers must all be removed before a deleted object goes away."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "required": ["apiVersion", "kind", "name", "uid"], "properties": {
                "apiVersion": string("API version of the owner."),
                "kind": string("Kind of the owner."),
                "name": string("Name of the owner."),
                "uid": string("UID of the owner."),
                "controller": {"type": "boolean", "description": "Whether the owner is the managing controller."},
                "blockOwnerDeletion": {"type": "boolean", "description": "Whether foreground deletion of the owner waits for this object."},
            }}, "description": "Objects this object depends on; it is garbage-collected when they are all gone."},
            "managedFields": {"type": "array", "items": {"type": "object"}, "description": "Which field manager owns which fields (server-side apply)."},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_and_preserve_unknown_nodes_are_flattened_for_v2() {
        let mut s = json!({
            "type": "object",
            "required": ["a", "b"],
            "properties": {
                "a": {"type": "object", "nullable": true, "properties": {"x": {"type": "string"}}},
                "b": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"y": {"type": "string"}}},
                "c": {"type": "array", "x-kubernetes-preserve-unknown-fields": true, "items": {"type": "string"}},
                "d": {"oneOf": [{"type": "string"}], "type": "string"},
            },
        });
        to_v2(&mut s);
        assert_eq!(s["required"], json!(["b"]));
        assert_eq!(s["properties"]["a"], json!({}));
        assert_eq!(
            s["properties"]["b"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            s["properties"]["c"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(s["properties"]["d"], json!({"type": "string"}));
    }
}
