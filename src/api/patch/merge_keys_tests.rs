//! Tests of the patch-strategy table against the upstream struct tags.

use super::*;

fn strategy(group: &str, kind: &str, path: &str) -> FieldStrategy {
    let parts: Vec<&str> = path.split('.').collect();
    field_strategy(group, kind, &parts).expect("built-in kind")
}

#[test]
fn pod_template_lists_are_reached_from_every_workload_kind() {
    let containers = [
        ("apps", "Deployment", "spec.template.spec.containers"),
        ("apps", "ReplicaSet", "spec.template.spec.containers"),
        ("apps", "StatefulSet", "spec.template.spec.initContainers"),
        (
            "apps",
            "DaemonSet",
            "spec.template.spec.ephemeralContainers",
        ),
        ("batch", "Job", "spec.template.spec.containers"),
        (
            "batch",
            "CronJob",
            "spec.jobTemplate.spec.template.spec.containers",
        ),
        ("", "Pod", "spec.containers"),
        ("", "PodTemplate", "template.spec.containers"),
        ("", "ReplicationController", "spec.template.spec.containers"),
    ];
    for (group, kind, path) in containers {
        let s = strategy(group, kind, path);
        assert_eq!(s.patch_merge_key, Some("name"), "{kind} {path}");
        assert_eq!(s.patch_strategy, Some("merge"), "{kind} {path}");
    }
}

#[test]
fn container_lists_use_upstream_merge_keys() {
    let p = "spec.template.spec.containers";
    let ports = strategy("apps", "Deployment", &format!("{p}.ports"));
    assert_eq!(ports.patch_merge_key, Some("containerPort"));
    assert_eq!(ports.list_map_keys, ["containerPort", "protocol"]);
    for (field, key) in [
        ("env", "name"),
        ("volumeMounts", "mountPath"),
        ("volumeDevices", "devicePath"),
    ] {
        let s = strategy("apps", "Deployment", &format!("{p}.{field}"));
        assert_eq!(s.patch_merge_key, Some(key), "{field}");
    }
    assert_eq!(
        strategy("apps", "Deployment", &format!("{p}.args")),
        FieldStrategy {
            patch_strategy: None,
            patch_merge_key: None,
            list_type: None,
            list_map_keys: &[]
        }
    );
}

#[test]
fn retain_keys_is_declared_on_volumes_and_deployment_strategy() {
    assert_eq!(
        strategy("", "Pod", "spec.volumes").patch_strategy,
        Some("merge,retainKeys")
    );
    assert_eq!(
        strategy("apps", "Deployment", "spec.strategy").patch_strategy,
        Some("retainKeys")
    );
    assert_eq!(
        strategy("apps", "DaemonSet", "spec.updateStrategy").patch_strategy,
        None
    );
}

#[test]
fn metadata_lists_merge_by_uid_and_as_a_set() {
    let owners = strategy("", "ConfigMap", "metadata.ownerReferences");
    assert_eq!(owners.patch_merge_key, Some("uid"));
    let finalizers = strategy("", "Namespace", "metadata.finalizers");
    assert_eq!(finalizers.patch_strategy, Some("merge"));
    assert_eq!(finalizers.patch_merge_key, None);
    assert_eq!(finalizers.list_type, Some("set"));
}

#[test]
fn status_conditions_merge_by_type_but_job_conditions_are_atomic_for_apply() {
    for (group, kind) in [
        ("apps", "Deployment"),
        ("", "Pod"),
        ("", "Node"),
        ("", "Namespace"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("policy", "PodDisruptionBudget"),
    ] {
        let s = strategy(group, kind, "status.conditions");
        assert_eq!(s.patch_merge_key, Some("type"), "{kind}");
        assert_eq!(s.list_type, Some("map"), "{kind}");
    }
    let job = strategy("batch", "Job", "status.conditions");
    assert_eq!(job.patch_merge_key, Some("type"));
    assert_eq!(job.list_type, None);
}

#[test]
fn node_taints_are_atomic_as_upstream_declares() {
    assert_eq!(strategy("", "Node", "spec.taints").patch_strategy, None);
    assert_eq!(
        strategy("", "Node", "status.addresses").patch_merge_key,
        Some("type")
    );
    assert_eq!(
        strategy("", "Node", "spec.podCIDRs").patch_strategy,
        Some("merge")
    );
}

#[test]
fn service_ports_merge_by_port_and_pdb_selector_is_replaced() {
    let ports = strategy("", "Service", "spec.ports");
    assert_eq!(ports.patch_merge_key, Some("port"));
    assert_eq!(ports.list_map_keys, ["port", "protocol"]);
    assert_eq!(
        strategy("policy", "PodDisruptionBudget", "spec.selector").patch_strategy,
        Some("replace")
    );
}

#[test]
fn webhook_configurations_merge_webhooks_by_name() {
    let s = strategy(
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        "webhooks.matchConditions",
    );
    assert_eq!(s.patch_merge_key, Some("name"));
    assert_eq!(
        strategy("storage.k8s.io", "CSINode", "spec.drivers").patch_merge_key,
        Some("name")
    );
}

#[test]
fn custom_resources_have_no_strategies() {
    assert!(root("example.com", "Widget").is_none());
    // A served built-in kind without strategies of its own still takes a strategic patch.
    assert!(root("resource.k8s.io", "DeviceClass").is_some());
    assert!(field_strategy("example.com", "Widget", &["spec"]).is_none());
    assert!(root("", "Deployment").is_none(), "kinds are per group");
}
