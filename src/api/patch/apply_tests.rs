//! Tests of server-side apply and Update bookkeeping, modelled on what kubectl and helm do
//! and on upstream's managedFields output.

use serde_json::{json, Value};

use super::super::PatchError;
use super::{apply, record_update};

const T1: &str = "2025-01-01T00:00:00Z";
const T2: &str = "2025-01-02T00:00:00Z";
const T3: &str = "2025-01-03T00:00:00Z";

fn deploy_apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    apply(
        live,
        config,
        manager,
        None,
        force,
        "apps",
        "Deployment",
        "apps/v1",
        now,
    )
}

fn web(replicas: u32, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}}}})
}

fn entries(obj: &Value) -> &Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields present")
}

fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    entries(obj)
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[test]
fn apply_creates_from_nothing_and_records_the_apply_entry() {
    let out = deploy_apply(None, &web(2, "nginx:1"), "kubectl", false, T1).expect("applies");
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(entries(&out).len(), 1);
    let e = &entries(&out)[0];
    assert_eq!(e["manager"], "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], T1);
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                }
            }
        }),
        "same shape as upstream: no name/namespace, atomic selector, '.' on list items"
    );
}

#[test]
fn reapply_without_a_field_removes_it() {
    let mut config = web(2, "nginx:1");
    config["metadata"]["labels"]["tier"] = json!("front");
    let live = deploy_apply(None, &config, "kubectl", false, T1).expect("applies");
    assert_eq!(live["metadata"]["labels"]["tier"], "front");

    let mut config = web(2, "nginx:1");
    config["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    let out = deploy_apply(Some(&live), &config, "kubectl", false, T2).expect("applies");
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    assert!(out["spec"].get("replicas").is_none(), "{}", out["spec"]);
    assert_eq!(entries(&out).len(), 1);
    assert!(entries(&out)[0]["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_none());
}

#[test]
fn reapply_without_a_container_removes_it_but_keeps_one_another_manager_owns() {
    let mut config = web(1, "nginx:1");
    config["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "nginx", "image": "nginx:1"}, {"name": "sidecar", "image": "envoy"}, {"name": "log", "image": "fluent"}
    ]);
    let live = deploy_apply(None, &config, "kubectl", false, T1).expect("applies");
    // Another manager takes part ownership of the log container by setting a field in it.
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][2]["args"] = json!(["-v"]);
    record_update(Some(&live), &mut edited, "editor", None, "apps/v1", T2);

    let config = web(1, "nginx:1");
    let out = deploy_apply(Some(&edited), &config, "kubectl", false, T3).expect("applies");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1"}, {"name": "log", "args": ["-v"]}]),
        "the sidecar goes; the log container keeps its key and the field the editor owns"
    );
}

#[test]
fn two_managers_applying_the_same_value_share_the_field_without_conflict() {
    let live = deploy_apply(None, &web(3, "nginx:1"), "alice", false, T1).expect("applies");
    let bob_config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let shared = deploy_apply(Some(&live), &bob_config, "bob", false, T2)
        .expect("same value is no conflict");
    assert!(entry(&shared, "bob", "Apply").is_some());
    assert_eq!(
        entry(&shared, "alice", "Apply").expect("alice stays")["fieldsV1"]["f:spec"]["f:replicas"],
        json!({})
    );

    // Alice stops applying replicas: it stays, because bob still owns it.
    let mut config = web(3, "nginx:1");
    config["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    let out = deploy_apply(Some(&shared), &config, "alice", false, T3).expect("applies");
    assert_eq!(out["spec"]["replicas"], 3);

    // Alice no longer owns replicas, so bob can change it without a conflict.
    let bob_config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let out = deploy_apply(Some(&out), &bob_config, "bob", false, T3).expect("bob owns it alone");
    assert_eq!(out["spec"]["replicas"], 5);
}

#[test]
fn apply_conflicts_with_a_client_side_apply_manager_and_force_takes_ownership() {
    // `kubectl apply` (client side) created the object.
    let mut live = web(1, "nginx:1");
    record_update(
        None,
        &mut live,
        "kubectl-client-side-apply",
        None,
        "apps/v1",
        T1,
    );
    let csa = entry(&live, "kubectl-client-side-apply", "Update").expect("create recorded");
    assert_eq!(csa["fieldsV1"]["f:spec"]["f:replicas"], json!({}));

    let config = web(3, "nginx:1");
    let err = deploy_apply(Some(&live), &config, "kubectl", false, T2).expect_err("conflict");
    match &err {
        PatchError::Conflict { conflicts } => assert_eq!(
            conflicts,
            &vec![(
                "\"kubectl-client-side-apply\" using apps/v1".to_owned(),
                ".spec.replicas".to_owned()
            )]
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );

    let out = deploy_apply(Some(&live), &config, "kubectl", true, T2).expect("force wins");
    assert_eq!(out["spec"]["replicas"], 3);
    let csa = entry(&out, "kubectl-client-side-apply", "Update").expect("keeps other fields");
    assert!(csa["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert_eq!(
        entry(&out, "kubectl", "Apply").expect("apply entry")["fieldsV1"]["f:spec"]["f:replicas"],
        json!({})
    );
    // The unchanged image is shared, not taken.
    assert!(
        csa["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]
            .get("f:image")
            .is_some()
    );
}

#[test]
fn conflict_paths_name_keyed_list_items() {
    let mut live = web(1, "nginx:1");
    record_update(None, &mut live, "kubectl-set", None, "apps/v1", T1);
    let err =
        deploy_apply(Some(&live), &web(1, "nginx:2"), "helm", false, T2).expect_err("conflict");
    let PatchError::Conflict { conflicts } = err else {
        panic!("expected a conflict");
    };
    assert_eq!(
        conflicts,
        vec![(
            "\"kubectl-set\" using apps/v1".to_owned(),
            ".spec.template.spec.containers[name=\"nginx\"].image".to_owned()
        )]
    );
}

#[test]
fn update_after_apply_steals_ownership() {
    let live = deploy_apply(None, &web(2, "nginx:1"), "kubectl", false, T1).expect("applies");
    // `kubectl scale` patches replicas.
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(
        Some(&live),
        &mut scaled,
        "kubectl-scale",
        None,
        "apps/v1",
        T2,
    );

    let apply_entry = entry(&scaled, "kubectl", "Apply").expect("apply entry stays");
    assert!(apply_entry["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_none());
    assert_eq!(
        apply_entry["time"], T1,
        "an entry that only lost fields keeps its time"
    );
    let scale = entry(&scaled, "kubectl-scale", "Update").expect("update entry");
    assert_eq!(scale["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(scale["time"], T2);
    assert_eq!(scale["apiVersion"], "apps/v1");

    // Re-applying the old replicas now conflicts with the scaler.
    let err = deploy_apply(Some(&scaled), &web(2, "nginx:1"), "kubectl", false, T3)
        .expect_err("conflict");
    assert!(
        err.to_string()
            .contains("conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"),
        "{err}"
    );
}

#[test]
fn first_apply_on_an_object_without_managed_fields_conflicts_with_before_first_apply() {
    let live = web(1, "nginx:1");
    let err =
        deploy_apply(Some(&live), &web(4, "nginx:1"), "kubectl", false, T1).expect_err("conflict");
    assert!(
        err.to_string()
            .contains("\"before-first-apply\" using apps/v1: .spec.replicas"),
        "{err}"
    );
    let same = deploy_apply(Some(&live), &web(1, "nginx:1"), "kubectl", false, T1)
        .expect("no change, no conflict");
    assert!(entry(&same, "before-first-apply", "Update").is_some());
    assert!(entry(&same, "kubectl", "Apply").is_some());
}

#[test]
fn apply_keeps_fields_set_by_others_and_server_fields() {
    let mut live = web(1, "nginx:1");
    live["metadata"]["uid"] = json!("u-1");
    live["metadata"]["resourceVersion"] = json!("7");
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    record_update(
        None,
        &mut live,
        "kube-controller-manager",
        None,
        "apps/v1",
        T1,
    );
    live["status"] = json!({"replicas": 1});

    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}});
    let out = deploy_apply(Some(&live), &config, "helm", false, T2).expect("applies");
    assert_eq!(out["metadata"]["uid"], "u-1");
    assert_eq!(out["metadata"]["resourceVersion"], "7");
    assert_eq!(out["status"], json!({"replicas": 1}));
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"],
        json!({"a": "b"})
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

#[test]
fn record_update_on_create_owns_everything_with_dots_on_new_maps() {
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default", "uid": "u", "labels": {"a": "1"}},
        "data": {"k": "v"}});
    record_update(None, &mut obj, "kubectl-create", None, "v1", T1);
    let e = &entries(&obj)[0];
    assert_eq!(e["manager"], "kubectl-create");
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["time"], T1);
    assert_eq!(
        e["fieldsV1"],
        json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
    );
}

#[test]
fn record_update_without_changes_keeps_entries_and_times() {
    let mut obj = web(1, "nginx:1");
    record_update(None, &mut obj, "creator", None, "apps/v1", T1);
    let before = obj.clone();
    let mut again = obj.clone();
    record_update(Some(&before), &mut again, "creator", None, "apps/v1", T2);
    assert_eq!(again, before);
    let mut other = obj.clone();
    record_update(
        Some(&before),
        &mut other,
        "someone-else",
        None,
        "apps/v1",
        T2,
    );
    assert_eq!(
        other, before,
        "a manager that changed nothing gets no entry"
    );
}

#[test]
fn record_update_honours_managed_fields_reset_by_the_client() {
    let mut obj = web(1, "nginx:1");
    record_update(None, &mut obj, "creator", None, "apps/v1", T1);
    let old = obj.clone();
    let mut new = obj.clone();
    new["metadata"]["managedFields"] = json!([]);
    new["spec"]["replicas"] = json!(2);
    record_update(Some(&old), &mut new, "resetter", None, "apps/v1", T2);
    assert_eq!(entries(&new).len(), 1);
    assert_eq!(entries(&new)[0]["manager"], "resetter");
}

#[test]
fn removed_fields_leave_every_manager() {
    let mut obj = web(1, "nginx:1");
    obj["metadata"]["labels"]["tier"] = json!("x");
    record_update(None, &mut obj, "creator", None, "apps/v1", T1);
    let old = obj.clone();
    let mut new = obj.clone();
    new["metadata"]["labels"]
        .as_object_mut()
        .expect("labels")
        .remove("tier");
    record_update(Some(&old), &mut new, "labeller", None, "apps/v1", T2);
    assert!(
        entry(&new, "labeller", "Update").is_none(),
        "removing grants nothing"
    );
    let creator = entry(&new, "creator", "Update").expect("creator");
    assert!(creator["fieldsV1"]["f:metadata"]["f:labels"]
        .get("f:tier")
        .is_none());
    assert_eq!(creator["time"], T1);
}

#[test]
fn custom_resource_lists_are_atomic_and_finalizers_are_a_set() {
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "finalizers": ["example.com/cleanup"]},
        "spec": {"items": [{"name": "a"}, {"name": "b"}]}});
    let out = apply(
        None,
        &config,
        "ctl",
        None,
        false,
        "example.com",
        "Widget",
        "example.com/v1",
        T1,
    )
    .expect("applies");
    assert_eq!(
        entries(&out)[0]["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {}}, "f:spec": {"f:items": {}}}),
        "without a schema every list, finalizers too, is atomic"
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "n", "finalizers": ["a", "b"]}});
    let out = apply(None, &ns, "ctl", None, false, "", "Namespace", "v1", T1).expect("applies");
    assert_eq!(
        entries(&out)[0]["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}})
    );
}

#[test]
fn apply_configuration_must_match_the_request_and_carry_no_managed_fields() {
    let mut wrong_kind = web(1, "x");
    wrong_kind["kind"] = json!("StatefulSet");
    let mut no_version = web(1, "x");
    no_version
        .as_object_mut()
        .expect("object")
        .remove("apiVersion");
    let mut managed = web(1, "x");
    managed["metadata"]["managedFields"] = json!([{"manager": "me"}]);
    for config in [wrong_kind, no_version, managed, json!([1])] {
        let err = deploy_apply(None, &config, "kubectl", false, T1).expect_err("refused");
        assert!(matches!(err, PatchError::InvalidApply(_)), "{err:?}");
    }
    let mut empty_managed = web(1, "x");
    empty_managed["metadata"]["managedFields"] = json!([]);
    assert!(deploy_apply(None, &empty_managed, "kubectl", false, T1).is_ok());
}

#[test]
fn apply_entries_are_sorted_apply_first_then_by_time() {
    let mut live = web(1, "nginx:1");
    record_update(None, &mut live, "creator", None, "apps/v1", T3);
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
        "annotations": {"x": "y"}}});
    let out = deploy_apply(Some(&live), &config, "zed", false, T2).expect("applies");
    let out = deploy_apply(Some(&out), &config.clone(), "amy", false, T2).expect("applies");
    let order: Vec<(&str, &str)> = entries(&out)
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().expect("m"),
                e["operation"].as_str().expect("o"),
            )
        })
        .collect();
    assert_eq!(
        order,
        [("amy", "Apply"), ("zed", "Apply"), ("creator", "Update")]
    );
}

#[test]
fn service_ports_are_keyed_by_port_and_defaulted_protocol() {
    let config = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let out = apply(None, &config, "ctl", None, false, "", "Service", "v1", T1).expect("applies");
    assert_eq!(
        entries(&out)[0]["fieldsV1"],
        json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}}}})
    );
}

#[test]
fn reapplying_an_unchanged_configuration_changes_nothing() {
    let first = deploy_apply(None, &web(2, "nginx:1"), "kubectl", false, T1).expect("applies");
    let again =
        deploy_apply(Some(&first), &web(2, "nginx:1"), "kubectl", false, T2).expect("applies");
    assert_eq!(again, first, "same object, same managedFields, same time");
    let changed =
        deploy_apply(Some(&first), &web(3, "nginx:1"), "kubectl", false, T2).expect("applies");
    assert_eq!(entries(&changed)[0]["time"], T2);
}

/// A pod as a ReplicaSet creates it, then its kubelet's status write: two Update entries.
fn pod_with_status() -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
    record_update(None, &mut pod, "kube-controller-manager", None, "v1", T1);
    let old = pod.clone();
    pod["status"] = json!({"phase": "Running", "podIP": "10.42.0.2",
        "conditions": [{"type": "Ready", "status": "True"}]});
    record_update(Some(&old), &mut pod, "kubelet", Some("status"), "v1", T2);
    pod
}

/// The entries of `manager` with `operation`, as (subresource, entry).
fn entries_of<'a>(obj: &'a Value, manager: &str, operation: &str) -> Vec<(&'a Value, &'a Value)> {
    entries(obj)
        .iter()
        .filter(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| (&e["subresource"], e))
        .collect()
}

#[test]
fn a_write_through_a_subresource_is_its_managers_own_entry() {
    let pod = pod_with_status();
    let status_entry = entries_of(&pod, "kubelet", "Update");
    assert_eq!(status_entry.len(), 1);
    assert_eq!(status_entry[0].0, "status", "{pod}");
    // The same manager writing the pod itself gets a second entry, without subresource.
    let mut labelled = pod.clone();
    labelled["metadata"]["labels"]["node"] = json!("n1");
    record_update(Some(&pod), &mut labelled, "kubelet", None, "v1", T3);
    let both = entries_of(&labelled, "kubelet", "Update");
    assert_eq!(both.len(), 2, "{labelled}");
    let main = both
        .iter()
        .find(|(sub, _)| sub.is_null())
        .expect("main entry")
        .1;
    assert!(main["fieldsV1"]["f:metadata"]["f:labels"]
        .get("f:node")
        .is_some());
    assert!(main["fieldsV1"].get("f:status").is_none());
    let status = both
        .iter()
        .find(|(sub, _)| *sub == "status")
        .expect("status entry")
        .1;
    assert_eq!(status, status_entry[0].1, "the status entry took nothing");
    // A later status write goes to the status entry, not the main one.
    let mut ready = labelled.clone();
    ready["status"]["phase"] = json!("Succeeded");
    record_update(
        Some(&labelled),
        &mut ready,
        "kubelet",
        Some("status"),
        "v1",
        T3,
    );
    let after = entries_of(&ready, "kubelet", "Update");
    assert_eq!(after.len(), 2, "{ready}");
    let main_after = after.iter().find(|(sub, _)| sub.is_null()).expect("main").1;
    assert_eq!(main_after, main);
    let status_after = after
        .iter()
        .find(|(sub, _)| *sub == "status")
        .expect("status")
        .1;
    assert_eq!(status_after["time"], T3);
    assert!(status_after["fieldsV1"]["f:status"]
        .get("f:phase")
        .is_some());
}

#[test]
fn an_apply_through_a_subresource_is_its_own_apply_entry_and_named_in_conflicts() {
    let pod = pod_with_status();
    let status_config = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "status": {"conditions": [{"type": "Ready", "status": "True"},
            {"type": "Example", "status": "True"}]}});
    // The tool's status configuration applied onto `live` through `subresource`.
    let tool_apply = |live: &Value, subresource| {
        apply(
            Some(live),
            &status_config,
            "tool",
            subresource,
            false,
            "",
            "Pod",
            "v1",
            T3,
        )
    };
    let applied = tool_apply(&pod, Some("status")).expect("applies");
    // Re-applying the same configuration through status keeps one Apply entry.
    let again = tool_apply(&applied, Some("status")).expect("re-applies");
    let tool = entries_of(&again, "tool", "Apply");
    assert_eq!(tool.len(), 1, "{again}");
    assert_eq!(tool[0].0, "status");
    // Another manager's Update through status that changes the condition it owns...
    let mut changed = again.clone();
    changed["status"]["conditions"][1]["status"] = json!("False");
    record_update(
        Some(&again),
        &mut changed,
        "other",
        Some("status"),
        "v1",
        T3,
    );
    // ...then the tool's apply through the pod itself conflicts, naming the owner with
    // its subresource.
    let err = tool_apply(&changed, None).expect_err("conflict");
    let PatchError::Conflict { conflicts } = err else {
        panic!("a conflict: {err:?}");
    };
    assert!(
        conflicts
            .iter()
            .any(|(who, _)| who == "\"other\" with subresource \"status\" using v1"),
        "{conflicts:?}"
    );
}

#[test]
fn a_write_leaves_the_entries_it_took_nothing_from_as_they_were() {
    let pod = pod_with_status();
    let kubelet_before = entry(&pod, "kubelet", "Update").expect("kubelet").clone();
    // A merge patch: the new object still carries the stored entries.
    let mut new = pod.clone();
    new["spec"]["containers"][0]["image"] = json!("busybox:2");
    record_update(Some(&pod), &mut new, "kubectl-set", None, "v1", T3);
    assert_eq!(
        entry(&new, "kubelet", "Update"),
        Some(&kubelet_before),
        "the kubelet owns none of the changed fields"
    );
    let creator = entry(&new, "kube-controller-manager", "Update").expect("creator");
    let main = &creator["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"main\"}"];
    assert!(main.get("f:name").is_some());
    assert!(
        main.get("f:image").is_none(),
        "the image moved to its new writer"
    );
    let setter = entry(&new, "kubectl-set", "Update").expect("setter");
    assert_eq!(
        setter["fieldsV1"],
        json!({"f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {"f:image": {}}}}})
    );
    // Entries stay in upstream's order (operation, then time) whichever were kept.
    let order: Vec<&Value> = entries(&new).iter().map(|e| &e["manager"]).collect();
    assert_eq!(order, ["kube-controller-manager", "kubelet", "kubectl-set"]);
}

#[test]
fn a_status_write_moves_only_status_fields_between_managers() {
    let pod = pod_with_status();
    let creator_before = entry(&pod, "kube-controller-manager", "Update")
        .expect("creator")
        .clone();
    let mut new = pod.clone();
    new["status"]["podIP"] = json!("10.42.0.3");
    record_update(Some(&pod), &mut new, "other-agent", None, "v1", T3);
    assert_eq!(
        entry(&new, "kube-controller-manager", "Update"),
        Some(&creator_before)
    );
    let kubelet = entry(&new, "kubelet", "Update").expect("kubelet");
    assert!(kubelet["fieldsV1"]["f:status"].get("f:podIP").is_none());
    assert!(kubelet["fieldsV1"]["f:status"].get("f:phase").is_some());
    assert_eq!(kubelet["time"], T2);
}

#[test]
fn a_stored_entry_whose_spelling_differs_is_still_rewritten() {
    let pod = pod_with_status();
    // The creator's entry as another server might have spelled a keyed item: with spaces.
    let mut old = pod.clone();
    let fields = &mut old["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:containers"];
    let item = fields["k:{\"name\":\"main\"}"].clone();
    *fields = json!({"k:{\"name\": \"main\"}": item});
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("busybox:2");
    record_update(Some(&old), &mut new, "kubectl-set", None, "v1", T3);
    let creator = entry(&new, "kube-controller-manager", "Update").expect("creator");
    let containers = &creator["fieldsV1"]["f:spec"]["f:containers"];
    assert!(
        containers["k:{\"name\":\"main\"}"].get("f:image").is_none(),
        "decoded and canonical: {containers}"
    );
}

/// The Update bookkeeping with every stored entry decoded into a trie and encoded back:
/// what `record_update` did before it edited entries in place, to compare against.
fn record_update_decoding_all(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    use super::{decode, set_managed_fields, Entry, Slot, IGNORED_FIELDS, UPDATE};
    let ty = super::merge_keys::root("", "Pod").expect("pod keys");
    let sent = new["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("managedFields"));
    let mut entries = match &sent {
        Some(sent) if !sent.is_null() => decode(Some(sent)),
        _ => decode(old.and_then(|o| o.pointer("/metadata/managedFields"))),
    };
    let cmp = super::fields::compare(old, Some(new), ty);
    let changed = cmp.changed().difference(&IGNORED_FIELDS);
    let removed = cmp.removed.difference(&IGNORED_FIELDS);
    let at = entries.iter().position(|e| {
        e.manager == manager && e.operation == UPDATE && e.subresource.as_deref() == subresource
    });
    let mut own = at.map(|i| entries.remove(i)).unwrap_or(Entry {
        manager: manager.to_owned(),
        operation: UPDATE.to_owned(),
        api_version: "v1".to_owned(),
        time: None,
        subresource: subresource.map(str::to_owned),
        set: Default::default(),
    });
    for e in &mut entries {
        e.set = e.set.difference(&changed).difference(&removed);
    }
    own.set = own.set.difference(&removed).union(&changed);
    if !changed.is_empty() {
        own.time = Some(now.to_owned());
    }
    entries.push(own);
    set_managed_fields(new, entries.into_iter().map(Slot::Decoded).collect());
}

#[test]
fn editing_entries_in_place_records_what_decoding_them_all_records() {
    // Pods with shared and separate fields, keyed list items that come and go, status.
    let states = [
        json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [
            {"name": "main", "image": "x", "ports": [{"containerPort": 80}]}]}}),
        json!({"metadata": {"labels": {"app": "a", "tier": "b"}}, "spec": {"containers": [
            {"name": "main", "image": "y"}, {"name": "side", "image": "z"}]}}),
        json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [
            {"name": "main", "image": "x"}]}, "status": {"phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False"}]}}),
        json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [
            {"name": "main", "image": "x"}]}, "status": {"phase": "Running", "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"},
                {"type": "Initialized", "status": "True"}]}}),
        json!({"metadata": {"annotations": {"n": "1"}}, "spec": {"containers": [
            {"name": "main", "image": "x"}], "nodeName": "n1"}}),
    ];
    let pod = |s: &Value| {
        let mut p = s.clone();
        p["apiVersion"] = json!("v1");
        p["kind"] = json!("Pod");
        p["metadata"]["name"] = json!("p");
        p
    };
    // The kubelet writes both through status and the pod itself: two entries of its own.
    let managers = [
        ("creator", None),
        ("kubelet", Some("status")),
        ("editor", None),
        ("kubelet", None),
    ];
    let times = [T1, T2, T3];
    for first in &states {
        let mut stored = pod(first);
        record_update(None, &mut stored, "creator", None, "v1", T1);
        // Every state written after every other, by each manager in turn.
        for (step, next) in states.iter().cycle().take(20).enumerate() {
            let (manager, subresource) = managers[step % managers.len()];
            let now = times[step % 3];
            // As a merge patch arrives: the stored entries ride along.
            let mut written = pod(next);
            written["metadata"]["managedFields"] = stored["metadata"]["managedFields"].clone();
            let mut want = written.clone();
            record_update(Some(&stored), &mut written, manager, subresource, "v1", now);
            record_update_decoding_all(Some(&stored), &mut want, manager, subresource, now);
            assert_eq!(
                written, want,
                "step {step} by {manager} ({subresource:?}) from {stored}"
            );
            stored = written;
        }
    }
}
