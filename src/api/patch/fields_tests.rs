//! Tests of field sets, their FieldsV1 encoding and object comparison.

use serde_json::json;

use super::super::merge_keys;
use super::*;

fn set_of(paths: &[&[&str]]) -> FieldSet {
    let mut set = FieldSet::default();
    for path in paths {
        let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        set.insert(&owned);
    }
    set
}

fn pod() -> Ty {
    merge_keys::root("", "Pod").expect("Pod is built in")
}

#[test]
fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
    let encoded =
        json!({"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}}}}});
    let set = FieldSet::from_fields_v1(&encoded).expect("valid FieldsV1");
    assert_eq!(set.to_fields_v1(), encoded);
    assert_eq!(
        set.paths(),
        vec![
            vec![
                "f:spec".to_string(),
                "f:containers".into(),
                "k:{\"name\":\"a\"}".into()
            ],
            vec![
                "f:spec".to_string(),
                "f:containers".into(),
                "k:{\"name\":\"a\"}".into(),
                "f:image".into()
            ],
        ]
    );
}

#[test]
fn decoding_canonicalises_key_order_and_spacing() {
    let encoded = json!({"f:ports": {"k:{\"protocol\": \"TCP\", \"port\": 80}": {}}, "f:x": {"v:[1, 2]": {}}});
    let set = FieldSet::from_fields_v1(&encoded).expect("valid FieldsV1");
    assert_eq!(
        set.to_fields_v1(),
        json!({"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {}}, "f:x": {"v:[1,2]": {}}})
    );
}

#[test]
fn decoding_rejects_what_is_not_fields_v1() {
    assert!(FieldSet::from_fields_v1(&json!([1])).is_none());
    assert!(FieldSet::from_fields_v1(&json!({"spec": {}})).is_none());
    assert!(FieldSet::from_fields_v1(&json!({"k:notjson": {}})).is_none());
}

#[test]
fn set_operations_work_on_exact_paths() {
    let a = set_of(&[&["f:a"], &["f:b", "f:c"], &["f:b", "f:d"]]);
    let b = set_of(&[&["f:b", "f:c"], &["f:e"]]);
    assert_eq!(a.difference(&b), set_of(&[&["f:a"], &["f:b", "f:d"]]));
    assert_eq!(a.intersection(&b), set_of(&[&["f:b", "f:c"]]));
    assert_eq!(
        a.union(&b),
        set_of(&[&["f:a"], &["f:b", "f:c"], &["f:b", "f:d"], &["f:e"]])
    );
    let parent = set_of(&[&["f:b"]]);
    assert_eq!(
        a.difference(&parent),
        a,
        "removing a member leaves what is below it"
    );
    assert!(a.difference(&a).is_empty());
}

#[test]
fn in_place_union_and_difference_equal_the_copying_ones() {
    // Every pair of sets drawn from paths over a small alphabet, members at every depth.
    let elements = ["f:a", "f:b", "k:{\"name\":\"x\"}"];
    let mut paths: Vec<Vec<String>> = Vec::new();
    for a in elements {
        paths.push(vec![a.into()]);
        for b in elements {
            paths.push(vec![a.into(), b.into()]);
        }
    }
    let sets: Vec<FieldSet> = (0..40u64)
        .map(|seed| {
            let mut set = FieldSet::default();
            for (i, path) in paths.iter().enumerate() {
                if (seed.wrapping_mul(2_654_435_761) >> (i % 32)) & 1 == 1 {
                    set.insert(path);
                }
            }
            set
        })
        .collect();
    for a in &sets {
        for b in &sets {
            let mut absorbed = a.clone();
            absorbed.absorb(b.clone());
            assert_eq!(absorbed, a.union(b));
            let mut removed = a.clone();
            removed.remove(b);
            assert_eq!(removed, a.difference(b), "{a:?} - {b:?}");
        }
    }
}

#[test]
fn field_set_of_a_pod_marks_leaves_items_and_empty_maps() {
    let pod_value = json!({"metadata": {"labels": {"a": "1"}},
        "spec": {"nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "k"}], "securityContext": {},
            "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}});
    assert_eq!(
        to_field_set(&pod_value, pod()).to_fields_v1(),
        json!({"f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:nodeSelector": {}, "f:tolerations": {}, "f:securityContext": {},
                "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}})
    );
}

#[test]
fn lists_with_duplicate_keys_are_owned_whole() {
    let value = json!({"spec": {"containers": [{"name": "c"}, {"name": "c"}]}});
    assert_eq!(
        to_field_set(&value, pod()).to_fields_v1(),
        json!({"f:spec": {"f:containers": {}}})
    );
}

#[test]
fn compare_reports_added_modified_and_removed_paths() {
    let old = json!({"metadata": {"labels": {"a": "1", "gone": "x"}},
        "spec": {"containers": [{"name": "c", "image": "1"}, {"name": "old"}]}});
    let new = json!({"metadata": {"labels": {"a": "2"}, "annotations": {"n": "v"}},
        "spec": {"containers": [{"name": "c", "image": "1"}, {"name": "new", "image": "x"}], "hostname": "h"}});
    let cmp = compare(Some(&old), Some(&new), pod());
    assert_eq!(cmp.modified, set_of(&[&["f:metadata", "f:labels", "f:a"]]));
    assert_eq!(
        cmp.added.to_fields_v1(),
        json!({"f:metadata": {"f:annotations": {".": {}, "f:n": {}}},
            "f:spec": {"f:hostname": {}, "f:containers": {"k:{\"name\":\"new\"}": {".": {}, "f:name": {}, "f:image": {}}}}})
    );
    assert_eq!(
        cmp.removed.to_fields_v1(),
        json!({"f:metadata": {"f:labels": {"f:gone": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"old\"}": {".": {}, "f:name": {}}}}})
    );
    let same = compare(Some(&old), Some(&old), pod());
    assert!(same.added.is_empty() && same.modified.is_empty() && same.removed.is_empty());
}

#[test]
fn compare_never_looks_at_managed_fields_but_does_at_a_templates_metadata() {
    let entry = json!([{"manager": "m", "operation": "Update", "fieldsV1": {"f:spec": {}}}]);
    let old = json!({"metadata": {"managedFields": entry, "labels": {"a": "1"}}});
    let new = json!({"metadata": {"labels": {"a": "1"}}});
    let cmp = compare(Some(&old), Some(&new), pod());
    assert!(cmp.added.is_empty() && cmp.modified.is_empty() && cmp.removed.is_empty());
    let cmp = compare(Some(&new), Some(&old), pod());
    assert!(cmp.added.is_empty() && cmp.modified.is_empty() && cmp.removed.is_empty());
    // Only the object's own metadata: a field of that name elsewhere is compared.
    let deeper = json!({"spec": {"metadata": {"managedFields": "x"}}});
    let cmp = compare(Some(&new), Some(&deeper), Ty::Any);
    assert!(!cmp.added.is_empty(), "{:?}", cmp.added.to_fields_v1());
}

#[test]
fn compare_treats_atomic_values_as_one_field() {
    let old = json!({"spec": {"nodeSelector": {"a": "1"}, "args": [1]}});
    let new = json!({"spec": {"nodeSelector": {"a": "2"}, "args": [1.0]}});
    let cmp = compare(Some(&old), Some(&new), pod());
    assert_eq!(cmp.modified, set_of(&[&["f:spec", "f:nodeSelector"]]));
    assert!(cmp.added.is_empty() && cmp.removed.is_empty());
}

#[test]
fn paths_display_like_upstream() {
    let path: Vec<String> = vec![
        "f:spec".into(),
        "f:containers".into(),
        "k:{\"name\":\"web\"}".into(),
        "f:ports".into(),
        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}".into(),
        "f:name".into(),
    ];
    assert_eq!(
        display_path(&path),
        ".spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"].name"
    );
    let set_item: Vec<String> = vec!["f:metadata".into(), "f:finalizers".into(), "v:\"a\"".into()];
    assert_eq!(display_path(&set_item), ".metadata.finalizers[=\"a\"]");
    assert_eq!(display_path(&["i:3".to_string()]), "[3]");
}
