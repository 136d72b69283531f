//! The in-place edits against the trie operations they stand for, on sets built from
//! objects the way the bookkeeping builds them.

use serde_json::{json, Map, Value};

use super::super::fields::{compare, to_field_set, FieldSet};
use super::super::merge_keys::{self, Ty};
use super::{add, remove, spelled};

fn pod_ty() -> Ty {
    merge_keys::root("", "Pod").expect("pods have list keys")
}

fn raw(set: &FieldSet) -> Map<String, Value> {
    match set.to_fields_v1() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Pods that overlap in some fields and not in others: members with and without
/// children, keyed list items, atomic lists.
fn pods() -> Vec<Value> {
    vec![
        json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [
            {"name": "main", "image": "x", "ports": [{"containerPort": 80}]}]}}),
        json!({"metadata": {"labels": {"app": "a", "tier": "b"}, "annotations": {"n": "1"}},
            "spec": {"containers": [{"name": "main", "image": "y"},
                {"name": "side", "image": "z"}], "nodeName": "n1"}}),
        json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"name": "main", "ready": true}], "podIP": "10.0.0.1"}}),
        json!({"status": {"phase": "Pending", "conditions": [
            {"type": "Ready", "status": "False"}]}, "metadata": {"labels": {"app": "a"}}}),
        json!({"spec": {"containers": [{"name": "main"}]}}),
    ]
}

/// Every set the bookkeeping meets: whole objects, and what changed or went between two.
fn sets() -> Vec<FieldSet> {
    let ty = pod_ty();
    let pods = pods();
    let mut out: Vec<FieldSet> = pods.iter().map(|p| to_field_set(p, ty)).collect();
    for a in &pods {
        for b in &pods {
            let cmp = compare(Some(a), Some(b), ty);
            out.push(cmp.changed());
            out.push(cmp.removed);
        }
    }
    out.push(FieldSet::default());
    out
}

#[test]
fn removing_in_place_is_the_difference() {
    for a in sets() {
        for b in sets() {
            let mut node = raw(&a);
            let empty = remove(&mut node, &b);
            let want = a.difference(&b);
            if want.is_empty() {
                assert!(empty, "{:?} - {:?} left {node:?}", a.paths(), b.paths());
            } else {
                assert!(!empty);
                assert_eq!(Value::Object(node), want.to_fields_v1());
            }
        }
    }
}

#[test]
fn adding_in_place_is_the_union() {
    for a in sets().into_iter().filter(|a| !a.is_empty()) {
        for b in sets() {
            let mut node = raw(&a);
            assert!(!add(&mut node, false, &b));
            assert_eq!(Value::Object(node), a.union(&b).to_fields_v1());
        }
    }
    let mut node = Map::new();
    assert!(
        add(&mut node, false, &FieldSet::default()),
        "nothing added to nothing"
    );
}

#[test]
fn an_item_element_spelled_otherwise_is_not_taken_as_absent() {
    let ty = pod_ty();
    let a = to_field_set(&pods()[2], ty);
    let mut stored = raw(&a);
    assert!(spelled(&stored, &a));
    let conditions = stored["f:status"]["f:conditions"]
        .as_object_mut()
        .expect("conditions");
    let ready = conditions.remove("k:{\"type\":\"Ready\"}").expect("ready");
    conditions.insert("k:{\"type\": \"Ready\"}".into(), ready);
    assert!(
        !spelled(&stored, &a),
        "the keyed item is spelled with a space"
    );
    // Field names never need that care: absent ones are simply absent.
    let other = to_field_set(&json!({"status": {"hostIP": "10.0.0.2"}}), ty);
    assert!(spelled(&stored, &other));
}
