use super::testing::of;
use super::*;
use crate::api::registry::Registry;
use serde_json::json;

#[test]
fn every_served_kind_names_its_own_strategy_or_the_generic_one() {
    for rt in Registry::new().all() {
        let s = rt.strategy;
        assert!(
            s.kind.is_empty() || s.kind == rt.kind,
            "{}/{} carries the strategy of {}",
            rt.group,
            rt.kind,
            s.kind
        );
    }
}

#[test]
fn status_write_takes_status_and_metadata_but_never_the_spec() {
    let old = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "a", "labels": {"x": "1"}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
    let mut new = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "a", "labels": {"x": "2"}, "annotations": {"n": "v"}},
        "spec": {"finalizers": []}, "extra": true, "status": {"phase": "Terminating"}});
    (of("", "Namespace").prepare_for_status_update)(&old, &mut new);
    assert_eq!(new["spec"], old["spec"]);
    assert!(
        new.get("extra").is_none(),
        "fields outside spec stay as stored"
    );
    assert_eq!(new["metadata"]["labels"], json!({"x": "2"}));
    assert_eq!(new["metadata"]["annotations"], json!({"n": "v"}));
    assert_eq!(new["status"], json!({"phase": "Terminating"}));
}

#[test]
fn deployment_status_write_keeps_labels_and_pod_status_write_keeps_owners_and_qos() {
    let old = json!({"metadata": {"labels": {"app": "a"}, "annotations": {"k": "1"}},
        "spec": {"replicas": 1}, "status": {}});
    let mut new = json!({"metadata": {"labels": {"app": "b"}, "annotations": {"k": "2"}},
        "spec": {"replicas": 5}, "status": {"replicas": 1}});
    (of("apps", "Deployment").prepare_for_status_update)(&old, &mut new);
    assert_eq!(new["metadata"]["labels"], json!({"app": "a"}));
    assert_eq!(new["metadata"]["annotations"], json!({"k": "2"}));
    assert_eq!(new["spec"]["replicas"], 1);

    let owners = json!([{"uid": "u1", "kind": "ReplicaSet", "name": "rs"}]);
    let old = json!({"metadata": {"ownerReferences": owners},
        "spec": {"nodeName": "n1"}, "status": {"phase": "Pending", "qosClass": "Burstable"}});
    let mut new = json!({"metadata": {"ownerReferences": [], "labels": {"l": "v"}},
        "spec": {"nodeName": "n2"}, "status": {"phase": "Running"}});
    (of("", "Pod").prepare_for_status_update)(&old, &mut new);
    assert_eq!(new["metadata"]["ownerReferences"], owners);
    assert_eq!(new["metadata"]["labels"], json!({"l": "v"}));
    assert_eq!(new["spec"]["nodeName"], "n1");
    assert_eq!(
        new["status"],
        json!({"phase": "Running", "qosClass": "Burstable"})
    );
}

#[test]
fn custom_resource_status_write_changes_only_status_and_field_managers() {
    let old = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "1"}}, "spec": {"size": 1}, "data": 1});
    let mut new = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "2"}, "managedFields": [{"manager": "m"}]},
        "spec": {"size": 2}, "status": {"ready": true}});
    (crd::CUSTOM.prepare_for_status_update)(&old, &mut new);
    assert_eq!(
        new,
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "1"}, "managedFields": [{"manager": "m"}]},
            "spec": {"size": 1}, "data": 1, "status": {"ready": true}})
    );
}

#[test]
fn crd_status_write_keeps_labels_and_annotations() {
    let old = json!({"metadata": {"name": "w.example.com", "labels": {"a": "1"}},
        "spec": {"names": {"plural": "w"}, "versions": []}});
    let mut new = json!({"metadata": {"name": "w.example.com", "labels": {"a": "2"},
        "annotations": {"b": "c"}}, "spec": {"names": {"plural": "x"}}, "status": {}});
    (crd::CUSTOM_RESOURCE_DEFINITION.prepare_for_status_update)(&old, &mut new);
    assert_eq!(new["metadata"]["labels"], json!({"a": "1"}));
    assert!(new["metadata"].get("annotations").is_none());
    assert_eq!(new["spec"], old["spec"]);
    assert_eq!(new["status"]["acceptedNames"], json!({"plural": "w"}));
}

#[test]
fn batch_v1_jobs_orphan_their_pods_by_default_and_other_kinds_do_not() {
    assert_eq!(
        (of("batch", "Job").delete.default_propagation)("v1"),
        Propagation::Orphan
    );
    assert_eq!(
        (of("apps", "ReplicaSet").delete.default_propagation)("v1"),
        Propagation::Background
    );
    assert_eq!(
        (of("batch", "CronJob").delete.default_propagation)("v1"),
        Propagation::Background
    );
}

#[test]
fn pods_are_deleted_gracefully_only_when_bound_to_a_node() {
    let graceful = of("", "Pod").delete.graceful.expect("pods end gracefully");
    let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}});
    assert_eq!((graceful.node)(&bound), Some("n1"));
    assert_eq!((graceful.period)(&bound, None), 10);
    assert_eq!((graceful.period)(&bound, Some(-3)), 0);
    assert_eq!((graceful.node)(&json!({"spec": {"nodeName": ""}})), None);
    assert!(of("", "ConfigMap").delete.graceful.is_none());
    // The fields it names are all `node` needs: a parse of only those finds the node.
    let stored = serde_json::to_vec(&json!({"metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}, "status": {}}))
    .expect("encodes");
    let pruned = crate::api::pruned::parse(&stored, graceful.node_fields).expect("parses");
    assert_eq!((graceful.node)(&pruned), Some("n1"));
}

#[test]
fn the_generic_strategy_drops_a_sent_status_on_create_and_nodes_keep_theirs() {
    let mut obj = json!({"spec": {}, "status": {"x": 1}});
    (Strategy::GENERIC.initial_status)(&mut obj);
    assert!(obj.get("status").is_none());
    let mut node = json!({"status": {"capacity": {"cpu": "2"}}});
    (of("", "Node").initial_status)(&mut node);
    assert_eq!(node["status"]["capacity"]["cpu"], "2");
}

#[test]
fn a_nodes_pod_ranges_may_be_set_once_but_never_changed() {
    let update = |old: serde_json::Value, new: serde_json::Value| {
        let mut errs = Vec::new();
        (of("", "Node").validate_update)(&old, &new, &mut errs);
        errs.into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
    };
    let unset = json!({"spec": {}});
    let set = json!({"spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}});
    let other = json!({"spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]}});
    assert!(update(unset.clone(), set.clone()).is_empty());
    assert!(update(set.clone(), set.clone()).is_empty());
    let errs = update(set.clone(), other);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("spec.podCIDRs: Forbidden: node updates may not change podCIDR"),
        "{errs:?}"
    );
    assert_eq!(update(set, unset).len(), 1);
}
