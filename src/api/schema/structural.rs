//! A CRD version's structural schema (`openAPIV3Schema`), compiled once when the CRD is
//! registered, and the two things kube-apiserver does with it besides validation: pruning
//! of fields the schema does not declare, and applying `default:`s.
//!
//! Invariant: pruning keeps whatever the schema allows (`properties`, `additionalProperties`,
//! `x-kubernetes-preserve-unknown-fields`, and `apiVersion`/`kind`/`metadata` at the root and
//! in `x-kubernetes-embedded-resource` objects); metadata is pruned to `ObjectMeta`'s fields
//! whatever the schema says, as upstream decodes it typed. `allOf`/`anyOf`/`oneOf` may not
//! declare fields in a structural schema, so they are not consulted.

use crate::api::protobuf::known::{prune_object_meta, Path};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Structural {
    properties: BTreeMap<String, Structural>,
    items: Option<Box<Structural>>,
    additional: Additional,
    preserve_unknown: bool,
    embedded: bool,
    nullable: bool,
    default: Option<Value>,
    /// Some `default` at or below this node: defaulting skips subtrees without one.
    defaults_below: bool,
}

#[derive(Debug, Default)]
enum Additional {
    /// Not given: undeclared keys are unknown.
    #[default]
    None,
    /// `additionalProperties: true`: any key, any value.
    Any,
    Schema(Box<Structural>),
}

impl Structural {
    /// Compiles `openAPIV3Schema`. Deeply nested input is cut off at a fixed depth (below
    /// it everything is preserved) so a hostile CRD cannot exhaust the stack.
    pub fn compile(schema: &Value) -> Structural {
        compile(schema, 0)
    }

    pub fn has_defaults(&self) -> bool {
        self.defaults_below
    }

    /// Removes what the schema does not declare from a custom resource, naming each
    /// removed field in `unknown` (`spec.foo`, `spec.items[0].bar`).
    pub fn prune(&self, obj: &mut Value, unknown: &mut Vec<String>) {
        if let Value::Object(map) = obj {
            self.prune_object(map, &Path::Root, true, unknown);
        }
    }

    fn prune_object(
        &self,
        map: &mut Map<String, Value>,
        path: &Path<'_>,
        resource: bool,
        unknown: &mut Vec<String>,
    ) {
        let mut doomed = Vec::new();
        for (key, value) in map.iter_mut() {
            let here = Path::Key(path, key);
            if resource {
                match (key.as_str(), &mut *value) {
                    ("apiVersion" | "kind", _) => continue,
                    ("metadata", Value::Object(meta)) => {
                        prune_object_meta(meta, &here, unknown);
                        continue;
                    }
                    _ => {}
                }
            }
            if let Some(p) = self.properties.get(key) {
                p.prune_value(value, &here, unknown);
                continue;
            }
            match &self.additional {
                Additional::Schema(s) => s.prune_value(value, &here, unknown),
                Additional::Any => {}
                Additional::None if self.preserve_unknown => {}
                Additional::None => {
                    unknown.push(here.render());
                    doomed.push(key.clone());
                }
            }
        }
        for key in doomed {
            map.remove(&key);
        }
    }

    fn prune_value(&self, value: &mut Value, path: &Path<'_>, unknown: &mut Vec<String>) {
        match value {
            Value::Object(map) => self.prune_object(map, path, self.embedded, unknown),
            Value::Array(items) => {
                if let Some(item_schema) = &self.items {
                    for (i, item) in items.iter_mut().enumerate() {
                        item_schema.prune_value(item, &Path::Index(path, i), unknown);
                    }
                }
            }
            _ => {}
        }
    }

    /// Fills in the schema's defaults: an absent property (or a null one that is not
    /// nullable) with a default gets it, then defaulting continues inside.
    pub fn apply_defaults(&self, value: &mut Value) {
        if !self.defaults_below {
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, prop) in &self.properties {
                    match map.get_mut(key) {
                        Some(v) if v.is_null() && !prop.nullable => {
                            if let Some(d) = &prop.default {
                                *v = d.clone();
                            }
                        }
                        Some(_) => {}
                        None => {
                            if let Some(d) = &prop.default {
                                map.insert(key.clone(), d.clone());
                            }
                        }
                    }
                    if let Some(v) = map.get_mut(key) {
                        prop.apply_defaults(v);
                    }
                }
                if let Additional::Schema(s) = &self.additional {
                    for (key, v) in map.iter_mut() {
                        if !self.properties.contains_key(key) {
                            s.apply_defaults(v);
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Some(s) = &self.items {
                    for item in items {
                        s.apply_defaults(item);
                    }
                }
            }
            _ => {}
        }
    }
}

const MAX_DEPTH: usize = 64;

fn compile(schema: &Value, depth: usize) -> Structural {
    let flag = |name: &str| schema[name].as_bool() == Some(true);
    let mut s = Structural {
        preserve_unknown: flag("x-kubernetes-preserve-unknown-fields"),
        embedded: flag("x-kubernetes-embedded-resource"),
        nullable: flag("nullable"),
        default: schema.get("default").cloned(),
        ..Structural::default()
    };
    if depth >= MAX_DEPTH {
        s.preserve_unknown = true;
        s.additional = Additional::Any;
        s.defaults_below = s.default.is_some();
        return s;
    }
    if let Some(props) = schema["properties"].as_object() {
        s.properties = props
            .iter()
            .map(|(k, v)| (k.clone(), compile(v, depth + 1)))
            .collect();
    }
    if schema["items"].is_object() {
        s.items = Some(Box::new(compile(&schema["items"], depth + 1)));
    }
    s.additional = match &schema["additionalProperties"] {
        Value::Bool(true) => Additional::Any,
        v @ Value::Object(_) => Additional::Schema(Box::new(compile(v, depth + 1))),
        _ => Additional::None,
    };
    // A schema that says nothing about an object's fields (no type, no properties) is not
    // structural for pruning; upstream rejects such CRDs, here they keep their fields.
    if schema.get("type").is_none() && s.properties.is_empty() && s.items.is_none() {
        s.preserve_unknown = true;
    }
    s.defaults_below = s.default.is_some()
        || s.properties.values().any(|p| p.defaults_below)
        || s.items.as_ref().is_some_and(|i| i.defaults_below)
        || matches!(&s.additional, Additional::Schema(a) if a.defaults_below);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Structural {
        Structural::compile(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "foo": {"type": "string"},
                    "replicas": {"type": "integer", "default": 1},
                    "ports": {"type": "array", "items": {"type": "object", "properties": {
                        "port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                        "properties": {"spec": {"type": "object"}}}
                }},
                "status": {"type": "object", "default": {"phase": "New"}, "properties": {"phase": {"type": "string"}}}
            }
        }))
    }

    #[test]
    fn fields_the_schema_does_not_declare_are_pruned_and_named() {
        let mut cr = json!({
            "apiVersion": "x.io/v1", "kind": "X",
            "metadata": {"name": "a", "unknownMeta": 1},
            "unknownField": 1,
            "spec": {"foo": "f", "bar": 1, "ports": [{"port": 1, "x": 2}],
                "labels": {"a": "b"}, "free": {"any": {"thing": 1}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "unknownSubMeta": 1},
                             "apiversion": "lower", "spec": {"x": 1}}}
        });
        let mut unknown = Vec::new();
        schema().prune(&mut cr, &mut unknown);
        assert_eq!(
            unknown,
            [
                "metadata.unknownMeta",
                "spec.bar",
                "spec.ports[0].x",
                "spec.template.apiversion",
                "spec.template.metadata.unknownSubMeta",
                "spec.template.spec.x",
                "unknownField"
            ]
        );
        assert_eq!(
            cr["spec"],
            json!({"foo": "f", "ports": [{"port": 1}], "labels": {"a": "b"},
                   "free": {"any": {"thing": 1}},
                   "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}})
        );
    }

    #[test]
    fn a_preserving_root_keeps_everything_but_unknown_metadata() {
        let s = Structural::compile(
            &json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        let mut cr =
            json!({"metadata": {"name": "a", "bogus": 1}, "spec": {"anything": [1]}, "extra": 1});
        let mut unknown = Vec::new();
        s.prune(&mut cr, &mut unknown);
        assert_eq!(unknown, ["metadata.bogus"]);
        assert_eq!(
            cr,
            json!({"metadata": {"name": "a"}, "spec": {"anything": [1]}, "extra": 1})
        );
        assert!(!s.has_defaults());
    }

    #[test]
    fn defaults_fill_absent_and_null_fields_at_every_level() {
        let s = schema();
        assert!(s.has_defaults());
        let mut cr = json!({"spec": {"ports": [{"port": 1}, {"port": 2, "protocol": "UDP"}], "replicas": null}});
        s.apply_defaults(&mut cr);
        assert_eq!(
            cr,
            json!({"spec": {"replicas": 1, "ports": [{"port": 1, "protocol": "TCP"}, {"port": 2, "protocol": "UDP"}]},
                   "status": {"phase": "New"}})
        );
        let mut given = json!({"spec": {"replicas": 5}, "status": {}});
        s.apply_defaults(&mut given);
        assert_eq!(given, json!({"spec": {"replicas": 5}, "status": {}}));
    }
}
