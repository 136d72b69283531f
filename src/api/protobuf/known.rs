//! Which JSON field names exist at each level of a built-in kind, read from the generated
//! protobuf schema table, and pruning of the names that do not.
//!
//! Why this table: it is generated from the Go types (JSON names, inlined structs) and is
//! static, so a walk costs no parsing, no cache and no allocation until an unknown field
//! is found. The OpenAPI documents the server serves carry no built-in schemas, and walking
//! k8s-openapi's typed structs would mean a serde round trip per request. Every field
//! kube-apiserver serialises has a protobuf tag (client-go's protobuf clients depend on
//! it); only `TypeMeta` (`apiVersion`, `kind`) has none, so it is allowed on every message
//! that is a kind (a StatefulSet's `volumeClaimTemplates` carry it).
//!
//! Invariant: only object keys the Go type would not decode are removed; values whose Go
//! type decodes free-form JSON (`RawExtension`, `JSON`, quantities, times, schema unions)
//! are never entered.

use serde_json::{Map, Value};

use super::schema::{KINDS, MESSAGES};
use super::table::{kind_message, Field, Kind, Label, Message, Special};

/// A path into the object being walked, kept as borrowed segments so that nothing is
/// allocated unless a field turns out to be unknown.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// Upstream's strict-decoding form: `spec.template.spec.containers[0].name`.
    pub fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Key(parent, key) => {
                let p = parent.render();
                if p.is_empty() {
                    (*key).to_owned()
                } else {
                    format!("{p}.{key}")
                }
            }
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// Removes the fields a built-in kind does not have, naming each in `unknown`. Returns
/// false (and touches nothing) when the kind is not in the table.
pub fn prune_kind(
    api_version: &str,
    kind: &str,
    obj: &mut Value,
    unknown: &mut Vec<String>,
) -> bool {
    let Some(index) = kind_message(api_version, kind) else {
        return false;
    };
    if let Value::Object(map) = obj {
        prune_object(index, map, &Path::Root, unknown);
    }
    true
}

/// Prunes an `ObjectMeta` found at `path` (the metadata of a custom resource, or of an
/// object embedded in one).
pub fn prune_object_meta(
    meta: &mut Map<String, Value>,
    path: &Path<'_>,
    unknown: &mut Vec<String>,
) {
    if let Some(index) = object_meta_message() {
        prune_object(index, meta, path, unknown);
    }
}

fn object_meta_message() -> Option<u16> {
    let cm = Message::get(kind_message("v1", "ConfigMap")?);
    cm.fields()
        .iter()
        .find(|f| f.name() == "metadata")
        .map(|f| f.msg)
}

/// The field of message `index` (or of a struct inlined into it) with JSON name `name`.
fn find_field(index: u16, name: &str) -> Option<&'static Field> {
    let by_name = &FIELDS_BY_NAME[usize::from(index)];
    by_name
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| by_name[i].1)
}

/// Every message's fields by JSON name, those of inlined structs flattened in (the first
/// in declaration order wins, as Go's decoding), sorted for binary search: every key of
/// every written object is looked up, and a scan of a message's fields was 5% of a pod
/// status patch.
static FIELDS_BY_NAME: std::sync::LazyLock<Vec<Vec<(&'static str, &'static Field)>>> =
    std::sync::LazyLock::new(|| {
        MESSAGES
            .iter()
            .map(|msg| {
                let mut fields = Vec::new();
                flatten(msg, &mut fields);
                // A stable sort keeps equal names in declaration order for the dedup.
                fields.sort_by(|a, b| a.0.cmp(b.0));
                fields.dedup_by(|later, first| later.0 == first.0);
                fields
            })
            .collect()
    });

fn flatten(msg: &'static Message, out: &mut Vec<(&'static str, &'static Field)>) {
    for f in msg.fields() {
        if f.inline() {
            flatten(Message::get(f.msg), out);
        } else {
            out.push((f.name(), f));
        }
    }
}

fn is_kind(index: u16) -> bool {
    KINDS.iter().any(|(_, _, m)| *m == index)
}

fn prune_object(
    index: u16,
    map: &mut Map<String, Value>,
    path: &Path<'_>,
    unknown: &mut Vec<String>,
) {
    let msg = Message::get(index);
    if msg.special != Special::Object {
        return;
    }
    let mut doomed: Vec<String> = Vec::new();
    for (key, value) in map.iter_mut() {
        let here = Path::Key(path, key);
        match find_field(index, key) {
            Some(field) => prune_field(field, value, &here, unknown),
            None if (key == "apiVersion" || key == "kind") && is_kind(index) => {}
            None => {
                unknown.push(here.render());
                doomed.push(key.clone());
            }
        }
    }
    for key in doomed {
        map.remove(&key);
    }
}

fn prune_field(field: &Field, value: &mut Value, path: &Path<'_>, unknown: &mut Vec<String>) {
    if field.kind != Kind::Msg {
        return;
    }
    match (field.label, value) {
        (Label::One, Value::Object(map)) => prune_object(field.msg, map, path, unknown),
        (Label::Many, Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                if let Value::Object(map) = item {
                    prune_object(field.msg, map, &Path::Index(path, i), unknown);
                }
            }
        }
        (Label::Map, Value::Object(entries)) => {
            for (k, v) in entries.iter_mut() {
                if let Value::Object(map) = v {
                    prune_object(field.msg, map, &Path::Key(path, k), unknown);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The lookup before the index: a scan in declaration order, into inlined structs.
    fn scan(msg: &Message, name: &str) -> Option<&'static Field> {
        for f in msg.fields() {
            if f.inline() {
                if let Some(inner) = scan(Message::get(f.msg), name) {
                    return Some(inner);
                }
            } else if f.name() == name {
                return Some(f);
            }
        }
        None
    }

    #[test]
    fn the_name_index_finds_what_a_scan_of_the_fields_finds() {
        for index in 0..MESSAGES.len() as u16 {
            let msg = Message::get(index);
            let mut names = Vec::new();
            flatten(msg, &mut names);
            for (name, _) in names {
                let (found, scanned) = (find_field(index, name), scan(msg, name));
                assert!(
                    std::ptr::eq(found.expect("indexed"), scanned.expect("scanned")),
                    "message {index} field {name}"
                );
            }
            assert!(find_field(index, "noSuchField").is_none());
        }
    }

    #[test]
    fn unknown_fields_of_a_deployment_are_named_and_removed() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "unknownMeta": 1, "labels": {"a": "b"}},
            "spec": {"unknownField": "x", "replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                    {"name": "c", "image": "i", "bogus": true,
                     "resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 80}]}]}}},
            "status": {}
        });
        let mut unknown = Vec::new();
        assert!(prune_kind("apps/v1", "Deployment", &mut d, &mut unknown));
        assert_eq!(
            unknown,
            [
                "metadata.unknownMeta",
                "spec.template.spec.containers[0].bogus",
                "spec.unknownField"
            ]
        );
        assert!(d["spec"].get("unknownField").is_none());
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        assert!(d["metadata"].get("unknownMeta").is_none());
    }

    #[test]
    fn inlined_structs_type_meta_of_embedded_kinds_and_free_form_json_are_kept() {
        let mut s = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
            "spec": {"serviceName": "x", "selector": {}, "template": {"spec": {"containers": [],
                "volumes": [{"name": "v", "configMap": {"name": "c"}}]}},
                "volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]}
        });
        let before = s.clone();
        let mut unknown = Vec::new();
        assert!(prune_kind("apps/v1", "StatefulSet", &mut s, &mut unknown));
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(s, before);
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                            "data": {"a": "b"}, "bogus": 1});
        prune_kind("v1", "ConfigMap", &mut cm, &mut unknown);
        assert_eq!(unknown, ["bogus"]);
        assert!(!prune_kind("example.com/v1", "Foo", &mut cm, &mut unknown));
    }
}
