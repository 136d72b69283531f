//! Tests of strategic merge patch, modelled on apimachinery's `strategicpatch` test cases and
//! on the patches kubectl sends (client-side apply, set image, rollout restart).

use serde_json::{json, Value};

use super::super::PatchError;
use super::strategic_merge_patch;

fn deploy_smp(target: Value, patch: Value) -> Value {
    strategic_merge_patch(&target, &patch, "apps", "Deployment").expect("patch applies")
}

fn pod_smp(target: Value, patch: Value) -> Value {
    strategic_merge_patch(&target, &patch, "", "Pod").expect("patch applies")
}

fn deployment(containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": containers}}}})
}

fn containers(obj: &Value) -> &Value {
    &obj["spec"]["template"]["spec"]["containers"]
}

#[test]
fn container_merge_by_name_keeps_other_containers() {
    let target = deployment(json!([
        {"name": "web", "image": "nginx:1", "args": ["a"]},
        {"name": "sidecar", "image": "envoy:1"}
    ]));
    // What `kubectl set image deploy/web web=nginx:2` sends.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "nginx:2", "name": "web"}]}}}});
    let out = deploy_smp(target, patch);
    assert_eq!(
        containers(&out),
        &json!([
            {"name": "web", "image": "nginx:2", "args": ["a"]},
            {"name": "sidecar", "image": "envoy:1"}
        ])
    );
    assert_eq!(out["spec"]["replicas"], 1);
}

#[test]
fn patch_delete_directive_removes_one_container() {
    let target =
        deployment(json!([{"name": "web", "image": "a"}, {"name": "sidecar", "image": "b"}]));
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}});
    let out = deploy_smp(target, patch);
    assert_eq!(containers(&out), &json!([{"name": "web", "image": "a"}]));
}

#[test]
fn env_merges_by_name_and_null_removes_a_field_of_one_item() {
    let target = pod_smp(
        json!({}),
        json!({"spec": {"containers": [{"name": "c", "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ]}]}}),
    );
    let patch = json!({"spec": {"containers": [{"name": "c", "env": [
        {"name": "B", "value": "2", "valueFrom": null},
        {"name": "C", "value": "3"}
    ]}]}});
    let out = pod_smp(target, patch);
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([
            {"name": "A", "value": "1"},
            {"name": "B", "value": "2"},
            {"name": "C", "value": "3"}
        ]),
        "a server-only item stays before the patch items the server lists after it"
    );
}

#[test]
fn set_element_order_orders_the_merged_list() {
    let target = deployment(json!([
        {"name": "a", "image": "a:1"},
        {"name": "b", "image": "b:1"},
        {"name": "c", "image": "c:1"}
    ]));
    // kubectl apply, after moving c first and changing b's image.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
        "containers": [{"name": "b", "image": "b:2"}]
    }}}});
    let out = deploy_smp(target, patch);
    assert_eq!(
        containers(&out),
        &json!([
            {"name": "c", "image": "c:1"},
            {"name": "a", "image": "a:1"},
            {"name": "b", "image": "b:2"}
        ])
    );
}

#[test]
fn set_element_order_places_server_only_items_by_server_order() {
    // Upstream case "set elements order in a list with server-only items".
    let target = pod_smp(
        json!({}),
        json!({"spec": {"containers": [
            {"name": "1", "other": "a"}, {"name": "3", "value": 3}, {"name": "4", "value": 4},
            {"name": "2", "value": 2}, {"name": "9"}
        ]}}),
    );
    let patch = json!({"spec": {"$setElementOrder/containers": [
        {"name": "4"}, {"name": "2"}, {"name": "3"}, {"name": "1"}
    ]}});
    let out = pod_smp(target, patch);
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["4", "2", "3", "1", "9"]);
}

#[test]
fn set_element_order_on_primitives_keeps_server_items_between_ordered_ones() {
    // Upstream case "add an item in a list of primitives and preserve order" (three-way).
    let target = json!({"metadata": {"finalizers": ["1", "4", "2"]}});
    let patch =
        json!({"metadata": {"$setElementOrder/finalizers": ["3", "1", "2"], "finalizers": ["3"]}});
    let out = strategic_merge_patch(&target, &patch, "", "ConfigMap").expect("applies");
    assert_eq!(out["metadata"]["finalizers"], json!(["3", "1", "4", "2"]));

    // "$setElementOrder contains item that is not present in the list to be merged".
    let target = json!({"metadata": {"finalizers": ["1", "3"]}});
    let patch = json!({"metadata": {"$setElementOrder/finalizers": ["3", "2", "1"]}});
    let out = strategic_merge_patch(&target, &patch, "", "ConfigMap").expect("applies");
    assert_eq!(out["metadata"]["finalizers"], json!(["3", "1"]));
}

#[test]
fn set_element_order_that_contradicts_the_patch_list_is_rejected() {
    let target = pod_smp(
        json!({}),
        json!({"spec": {"containers": [{"name": "1"}, {"name": "3"}, {"name": "2"}]}}),
    );
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
        "containers": [{"name": "3", "image": "x"}, {"name": "1", "image": "y"}]
    }});
    let err = strategic_merge_patch(&target, &patch, "", "Pod").expect_err("order mismatch");
    assert!(
        matches!(err, PatchError::Unprocessable(ref m) if m.contains("doesn't match")),
        "{err}"
    );
}

#[test]
fn new_list_items_come_first_without_set_element_order_as_upstream() {
    let target = deployment(json!([{"name": "web"}]));
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "x"}]}}}});
    let out = deploy_smp(target, patch);
    assert_eq!(
        containers(&out),
        &json!([{"name": "sidecar", "image": "x"}, {"name": "web"}])
    );
}

#[test]
fn retain_keys_clears_rolling_update_when_strategy_becomes_recreate() {
    let target = json!({"spec": {"strategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
    // kubectl apply after changing the manifest's strategy to Recreate.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
    let out = deploy_smp(target.clone(), patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

    // Without the null, $retainKeys alone drops the unlisted field.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = deploy_smp(target, patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_in_a_volume_switches_its_source() {
    let target = pod_smp(
        json!({}),
        json!({"spec": {"volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "other", "hostPath": {"path": "/x"}}
        ]}}),
    );
    let patch = json!({"spec": {"volumes": [
        {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}
    ]}});
    let out = pod_smp(target, patch);
    assert_eq!(
        out["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "cm"}},
            {"name": "other", "hostPath": {"path": "/x"}}
        ])
    );
}

#[test]
fn retain_keys_rejects_a_patch_setting_an_unlisted_field() {
    let target = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}});
    let err =
        strategic_merge_patch(&target, &patch, "apps", "Deployment").expect_err("bad retainKeys");
    assert!(
        matches!(err, PatchError::Malformed(ref m) if m.contains("$retainKeys")),
        "{err}"
    );
    let patch = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
    assert!(strategic_merge_patch(&target, &patch, "apps", "Deployment").is_err());
}

#[test]
fn container_ports_merge_by_container_port() {
    let target = pod_smp(
        json!({}),
        json!({"spec": {"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "protocol": "TCP", "name": "http"},
            {"containerPort": 443, "protocol": "TCP"}
        ]}]}}),
    );
    let patch = json!({"spec": {"containers": [{"name": "c", "ports": [
        {"containerPort": 80.0, "name": "web"},
        {"containerPort": 9090}
    ]}]}});
    let out = pod_smp(target, patch);
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([
            // 80.0 matched 80; like every patched value, the patch's spelling wins.
            {"containerPort": 80.0, "protocol": "TCP", "name": "web"},
            {"containerPort": 9090},
            {"containerPort": 443, "protocol": "TCP"}
        ])
    );
}

#[test]
fn service_ports_merge_by_port() {
    let target = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let out = strategic_merge_patch(&target, &patch, "", "Service").expect("applies");
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
    );
}

#[test]
fn finalizers_merge_as_a_deduplicated_set_and_can_be_deleted() {
    let target = json!({"metadata": {"name": "x", "finalizers": ["a", "b"]}});
    let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
    let out = strategic_merge_patch(&target, &patch, "", "Namespace").expect("applies");
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}});
    let out = strategic_merge_patch(&out, &patch, "", "Namespace").expect("applies");
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    let patch = json!({"metadata": {"finalizers": ["new"]}});
    let out = strategic_merge_patch(&out, &patch, "", "Namespace").expect("applies");
    assert_eq!(out["metadata"]["finalizers"], json!(["new", "b", "c"]));

    // Deleting from a list the object lacks does not create it.
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
    let out =
        strategic_merge_patch(&json!({"metadata": {}}), &patch, "", "Namespace").expect("applies");
    assert_eq!(out, json!({"metadata": {}}));
}

#[test]
fn null_deletes_a_label() {
    let target = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "front"}}});
    let patch = json!({"metadata": {"labels": {"tier": null, "missing": null}}});
    let out = pod_smp(target, patch);
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn rollout_restart_adds_the_restarted_at_annotation() {
    let target = deployment(json!([{"name": "web", "image": "nginx"}]));
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}});
    let out = deploy_smp(target.clone(), patch);
    assert_eq!(
        out["spec"]["template"]["metadata"],
        json!({"labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}})
    );
    assert_eq!(containers(&out), containers(&target));
}

#[test]
fn client_side_apply_three_way_patch_updates_image_and_annotation() {
    let target =
        deployment(json!([{"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent"}]));
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [{"image": "nginx:2", "name": "web"}]
        }}}
    });
    let out = deploy_smp(target, patch);
    assert_eq!(
        containers(&out),
        &json!([{"name": "web", "image": "nginx:2", "imagePullPolicy": "IfNotPresent"}])
    );
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{}\n"
    );
}

#[test]
fn atomic_lists_are_replaced_whole() {
    let target = pod_smp(
        json!({}),
        json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "c", "args": ["1", "2"]}]}}),
    );
    let patch = json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["3"]}]}});
    let out = pod_smp(target, patch);
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
}

#[test]
fn patch_replace_directive_replaces_a_map_and_a_list() {
    let target = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
    let patch = json!({"spec": {
        "strategy": {"$patch": "replace", "type": "Recreate"},
        "template": {"spec": {"containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}]}}
    }});
    let out = deploy_smp(target, patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(containers(&out), &json!([{"name": "z", "image": "z"}]));
}

#[test]
fn patch_delete_directive_on_a_map_empties_it() {
    let target = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2}});
    let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
    let out = deploy_smp(target, patch);
    assert_eq!(out["metadata"]["labels"], json!({}));
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn patch_merge_directive_on_a_map_is_a_plain_merge() {
    let target = json!({"metadata": {"labels": {"a": "1"}}});
    let patch = json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}});
    let out = deploy_smp(target, patch);
    assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
}

#[test]
fn bad_directives_are_rejected() {
    let target = deployment(json!([{"name": "web"}]));
    for patch in [
        json!({"metadata": {"$patch": "explode"}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "merge"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": 1}]}}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "web"}}}}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
    ] {
        let err = strategic_merge_patch(&target, &patch, "apps", "Deployment")
            .expect_err("bad directive");
        assert!(matches!(err, PatchError::Malformed(_)), "{patch}: {err:?}");
    }
}

#[test]
fn list_item_without_its_merge_key_is_unprocessable() {
    let target = deployment(json!([{"name": "web"}]));
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let err = strategic_merge_patch(&target, &patch, "apps", "Deployment").expect_err("no key");
    assert!(
        matches!(err, PatchError::Unprocessable(ref m) if m.contains("does not contain declared merge key: name")),
        "{err}"
    );
}

#[test]
fn custom_resources_are_refused_with_unsupported_kind() {
    let err = strategic_merge_patch(&json!({}), &json!({"spec": {}}), "example.com", "Widget")
        .expect_err("no SMP for custom resources");
    assert!(
        matches!(err, PatchError::UnsupportedKind { ref group, ref kind } if group == "example.com" && kind == "Widget")
    );
}

#[test]
fn non_object_patch_is_malformed() {
    let err = strategic_merge_patch(&json!({}), &json!([1]), "", "Pod").expect_err("not a map");
    assert!(matches!(err, PatchError::Malformed(_)));
}

#[test]
fn directives_inside_a_value_new_to_the_object_are_honoured() {
    let target = json!({"spec": {"replicas": 1}});
    let patch = json!({"spec": {"template": {"metadata": {"labels": {"a": "1", "b": null}},
        "spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b"}, {"name": "a", "env": [{"name": "X", "$patch": "delete"}]}]}}}});
    let out = deploy_smp(target, patch);
    assert_eq!(
        out["spec"]["template"],
        json!({"metadata": {"labels": {"a": "1"}},
            "spec": {"containers": [{"name": "b"}, {"name": "a", "env": []}]}})
    );
}

#[test]
fn owner_references_merge_by_uid() {
    let target = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}});
    let patch = json!({"metadata": {"ownerReferences": [{"uid": "2", "$patch": "delete"}, {"uid": "3", "name": "c"}]}});
    let out = strategic_merge_patch(&target, &patch, "apps", "ReplicaSet").expect("applies");
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "3", "name": "c"}, {"uid": "1", "name": "a"}])
    );
}

#[test]
fn pdb_selector_is_replaced_not_merged() {
    let target = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}});
    let patch = json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}});
    let out =
        strategic_merge_patch(&target, &patch, "policy", "PodDisruptionBudget").expect("applies");
    assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
    // Elsewhere a selector merges like any map.
    let out = deploy_smp(target, patch);
    assert_eq!(
        out["spec"]["selector"],
        json!({"matchLabels": {"a": "1", "b": "2"}})
    );
}

#[test]
fn cronjob_nested_pod_template_merges_containers() {
    let target = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "b", "image": "2"}]}}}}}});
    let out = strategic_merge_patch(&target, &patch, "batch", "CronJob").expect("applies");
    assert_eq!(
        out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
    );
}

#[test]
fn status_conditions_merge_by_type() {
    let target = json!({"status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}});
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let out = pod_smp(target, patch);
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}])
    );
}

#[test]
fn type_change_takes_the_patch_value() {
    let target = json!({"spec": {"replicas": 1, "paused": {"x": 1}}});
    let patch = json!({"spec": {"replicas": {"weird": true, "gone": null}, "paused": false}});
    let out = deploy_smp(target, patch);
    assert_eq!(
        out["spec"],
        json!({"replicas": {"weird": true}, "paused": false})
    );
}

#[test]
fn client_side_apply_removing_a_container_and_an_env_var() {
    let target = deployment(json!([
        {"name": "web", "image": "a", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "b"}
    ]));
    // What kubectl apply sends after both were deleted from the manifest.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [
            {"$setElementOrder/env": [{"name": "A"}], "env": [{"$patch": "delete", "name": "B"}], "name": "web"},
            {"$patch": "delete", "name": "sidecar"}
        ]
    }}}});
    let out = deploy_smp(target, patch);
    assert_eq!(
        containers(&out),
        &json!([{"name": "web", "image": "a", "env": [{"name": "A", "value": "1"}]}])
    );
}
