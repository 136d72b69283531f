//! The object-level half of server-side apply: merging an apply configuration into the
//! live object, and pruning the fields a manager stopped applying.
//!
//! Merge rules follow structured-merge-diff: maps merge field by field, keyed lists
//! (`ListType::Map`) merge item by item, sets merge by value, atomic lists and atomic maps
//! are replaced, `null` removes. Merged list order keeps the live order and slots the
//! configuration's new items in following the configuration's own order.
//!
//! Invariant: pruning removes only paths listed in the manager's previous apply set that no
//! manager (the applier's new set included) still owns, and never the key fields of a list
//! item that stays.

use std::collections::{HashSet, VecDeque};

use serde_json::{Map, Value};

use super::fields::{self, FieldSet};
use super::merge_keys::{self, Field, ListType, Ty};
use super::PatchError;

/// Merges the apply configuration `config` into `live` (both objects of type `ty`).
pub(crate) fn merge(live: &Value, config: &Value, ty: Ty) -> Result<Value, PatchError> {
    let base = match live {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let Value::Object(config) = config else {
        return Err(PatchError::InvalidApply(
            "the apply configuration must be an object".into(),
        ));
    };
    merge_map(base, config, ty, "").map(Value::Object)
}

fn merge_map(
    mut live: Map<String, Value>,
    config: &Map<String, Value>,
    ty: Ty,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    for (name, value) in config {
        if value.is_null() {
            live.remove(name);
            continue;
        }
        let field = merge_keys::lookup(ty, name);
        let child = format!("{path}.{name}");
        match live.get_mut(name) {
            Some(slot) => {
                let old = std::mem::take(slot);
                *slot = merge_value(Some(old), value, &field, &child)?;
            }
            None => {
                let merged = merge_value(None, value, &field, &child)?;
                live.insert(name.clone(), merged);
            }
        }
    }
    Ok(live)
}

fn merge_value(
    live: Option<Value>,
    config: &Value,
    field: &Field,
    path: &str,
) -> Result<Value, PatchError> {
    match config {
        Value::Object(map) if field.ty != Ty::Atomic => {
            let base = match live {
                Some(Value::Object(live)) => live,
                _ => Map::new(),
            };
            merge_map(base, map, field.ty, path).map(Value::Object)
        }
        Value::Array(items) if field.list != ListType::Atomic => {
            let base = match live {
                Some(Value::Array(live)) => live,
                _ => Vec::new(),
            };
            merge_list(base, items, field, path).map(Value::Array)
        }
        other => Ok(other.clone()),
    }
}

/// The elements of the configuration's list items; every item must be identifiable and
/// unique, as upstream refuses such configurations.
fn config_elements(items: &[Value], list: ListType, path: &str) -> Result<Vec<String>, PatchError> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let element = fields::item_element(item, list, true).ok_or_else(|| {
            let wanted = match list {
                ListType::Map(keys) => keys.join(", "),
                _ => String::new(),
            };
            PatchError::InvalidApply(format!(
                "{path}: associative list with keys has an element that omits key field(s) {wanted}: {item}"
            ))
        })?;
        if out.contains(&element) {
            return Err(PatchError::InvalidApply(format!(
                "{path}: duplicate entries for key {}",
                fields::display_path(std::slice::from_ref(&element))
            )));
        }
        out.push(element);
    }
    Ok(out)
}

fn merge_list(
    live: Vec<Value>,
    config: &[Value],
    field: &Field,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let rhs = config_elements(config, field.list, path)?;
    // A live list that cannot be keyed (duplicates, missing keys) is taken over whole.
    let (live, lhs) = match fields::item_elements(&live, field.list) {
        Some(lhs) => (live, lhs),
        None => (Vec::new(), Vec::new()),
    };
    let item_field = Field {
        ty: field.ty,
        ..Field::UNKNOWN
    };
    let merge_item = |l: Option<&Value>, r: &Value, i: usize| -> Result<Value, PatchError> {
        if field.list == ListType::Set {
            return Ok(r.clone());
        }
        merge_value(l.cloned(), r, &item_field, &format!("{path}[{i}]"))
    };
    let lhs_index = |e: &str| lhs.iter().position(|x| x == e);
    let in_rhs = |e: &str| rhs.iter().any(|x| x == e);

    // Items both sides have, in configuration order: they anchor where live-only items go.
    let mut shared: VecDeque<&String> = rhs.iter().filter(|e| lhs.contains(e)).collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: HashSet<&String> = HashSet::new();
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut l, mut r) = (0, 0);
    while l < lhs.len() || r < rhs.len() {
        if l < lhs.len() && r < rhs.len() {
            if lhs[l] == rhs[r] {
                merged_rhs.insert(&rhs[r]);
                out.push(merge_item(Some(&live[l]), &config[r], r)?);
                l += 1;
                r += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if in_rhs(&lhs[l]) && next_shared.is_some_and(|n| *n != lhs[l]) {
                l += 1;
                continue;
            }
        }
        if l < lhs.len() {
            if !in_rhs(&lhs[l]) {
                out.push(live[l].clone());
                l += 1;
                continue;
            }
            if merged_rhs.contains(&lhs[l]) {
                l += 1;
            }
        }
        if r < rhs.len() {
            let element = &rhs[r];
            merged_rhs.insert(element);
            let old = lhs_index(element).map(|i| &live[i]);
            out.push(merge_item(old, &config[r], r)?);
            r += 1;
            if next_shared.is_some_and(|n| n == element) {
                next_shared = shared.pop_front();
            }
        }
    }
    Ok(out)
}

/// Removes from `object` what `last` (the manager's previous apply set) lists and `keep`
/// (everything any manager owns now) does not.
pub(crate) fn prune(object: &mut Value, last: &FieldSet, keep: &FieldSet, ty: Ty) {
    if let Value::Object(map) = object {
        prune_map(map, last, keep, ty, &[]);
    }
}

fn prune_map(
    map: &mut Map<String, Value>,
    last: &FieldSet,
    keep: &FieldSet,
    ty: Ty,
    protected: &[&str],
) {
    for (element, last_child) in last.children() {
        let Some(name) = element.strip_prefix("f:") else {
            continue;
        };
        if protected.contains(&name) {
            continue;
        }
        let Some(keep_child) = keep.child(element) else {
            map.remove(name);
            continue;
        };
        let Some(value) = map.get_mut(name) else {
            continue;
        };
        let field = merge_keys::lookup(ty, name);
        if prune_value(value, last_child, keep_child, &field) && !keep_child.is_member() {
            map.remove(name);
        }
    }
}

/// Prunes inside one value; true when pruning emptied a map or list that had content.
fn prune_value(value: &mut Value, last: &FieldSet, keep: &FieldSet, field: &Field) -> bool {
    match value {
        Value::Object(map) if field.ty != Ty::Atomic => {
            let had_content = !map.is_empty();
            prune_map(map, last, keep, field.ty, &[]);
            had_content && map.is_empty()
        }
        Value::Array(items) if field.list != ListType::Atomic => {
            let Some(elements) = fields::item_elements(items, field.list) else {
                return false;
            };
            let had_content = !items.is_empty();
            let keys: &[&str] = match field.list {
                ListType::Map(keys) => keys,
                _ => &[],
            };
            let mut doomed = vec![false; items.len()];
            for (element, last_child) in last.children() {
                let Some(i) = elements.iter().position(|e| e == element) else {
                    continue;
                };
                match keep.child(element) {
                    None => doomed[i] = true,
                    Some(keep_child) => {
                        if let (Value::Object(item), false) =
                            (&mut items[i], field.ty == Ty::Atomic)
                        {
                            prune_map(item, last_child, keep_child, field.ty, keys);
                        }
                    }
                }
            }
            let mut index = 0;
            items.retain(|_| {
                index += 1;
                !doomed[index - 1]
            });
            had_content && items.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .expect("list")
            .iter()
            .map(|i| i["name"].as_str().expect("name"))
            .collect()
    }

    #[test]
    fn keyed_list_merge_keeps_live_order_and_inserts_new_items_by_config_order() {
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "image": "1"}, {"name": "c"}]}});
        let config = json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "n"}]}});
        let out = merge(&live, &config, pod()).expect("merges");
        assert_eq!(names(&out["spec"]["containers"]), ["a", "b", "c", "n"]);
        assert_eq!(out["spec"]["containers"][1]["image"], "2");

        let config = json!({"spec": {"containers": [{"name": "n"}, {"name": "b"}]}});
        let out = merge(&live, &config, pod()).expect("merges");
        assert_eq!(names(&out["spec"]["containers"]), ["a", "n", "b", "c"]);
    }

    #[test]
    fn atomic_lists_and_maps_are_replaced_and_null_removes() {
        let live = json!({"spec": {"tolerations": [{"key": "a"}], "nodeSelector": {"a": "1"}, "hostname": "h"}});
        let config = json!({"spec": {"tolerations": [{"key": "b"}], "nodeSelector": {"b": "2"}, "hostname": null}});
        let out = merge(&live, &config, pod()).expect("merges");
        assert_eq!(
            out["spec"],
            json!({"tolerations": [{"key": "b"}], "nodeSelector": {"b": "2"}})
        );
    }

    #[test]
    fn config_items_missing_keys_or_duplicated_are_refused() {
        let live = json!({});
        let missing = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(matches!(
            merge(&live, &missing, pod()),
            Err(PatchError::InvalidApply(_))
        ));
        let dup = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        assert!(matches!(
            merge(&live, &dup, pod()),
            Err(PatchError::InvalidApply(_))
        ));
    }

    #[test]
    fn port_keys_default_protocol_to_tcp_when_matching_live_items() {
        let live = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "x"}]}]}});
        let config = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "y"}]}]}});
        let out = merge(&live, &config, pod()).expect("merges");
        assert_eq!(
            out["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP", "name": "y"}])
        );
    }

    #[test]
    fn prune_removes_only_unkept_paths_and_keeps_item_keys() {
        let mut object = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "c", "image": "x", "args": ["1"]}], "replicas": 3}});
        let ty = pod();
        let last = fields::to_field_set(&object, ty);
        let keep = fields::to_field_set(
            &json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
            ty,
        );
        prune(&mut object, &last, &keep, ty);
        assert_eq!(
            object,
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
        );
    }

    #[test]
    fn prune_drops_a_map_it_emptied_and_list_items_nobody_keeps() {
        let mut object = json!({"metadata": {"labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c"}, {"name": "d"}]}});
        let ty = pod();
        let last = fields::to_field_set(&object, ty);
        let keep = fields::to_field_set(&json!({"spec": {"containers": [{"name": "d"}]}}), ty);
        prune(&mut object, &last, &keep, ty);
        assert_eq!(object, json!({"spec": {"containers": [{"name": "d"}]}}));
    }

    fn pod() -> Ty {
        merge_keys::root("", "Pod").expect("Pod is built in")
    }
}
