use serde_json::{json, Value};

use super::super::defaults::job_selector_defaults;
use super::super::strategy::testing::of;
use super::*;

/// Defaults then validates, as the API server does on create.
pub(super) fn check(group: &str, kind: &str, mut obj: Value, namespaced: bool) -> Vec<FieldError> {
    of(group, kind).apply_defaults(&mut obj);
    if (group, kind) == ("batch", "Job") {
        job_selector_defaults(&mut obj, "00000000-0000-0000-0000-000000000001");
    }
    of(group, kind).validate_create(&obj, namespaced)
}

pub(super) fn rendered(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

pub(super) fn has(errs: &[FieldError], want: &str) -> bool {
    rendered(errs).iter().any(|e| e == want)
}

pub(super) fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default"})
}

fn pod_spec() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]})
}

pub(super) fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()})
}

fn valid_objects() -> Vec<(&'static str, &'static str, Value, bool)> {
    let sel = json!({"matchLabels": {"app": "web"}});
    vec![
        (
            "",
            "Pod",
            json!({"metadata": meta("web-0"), "spec": pod_spec()}),
            true,
        ),
        (
            "",
            "Namespace",
            json!({"metadata": {"name": "team-a"}}),
            false,
        ),
        (
            "",
            "Service",
            json!({"metadata": meta("web"), "spec": {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "https", "port": 443}]}}),
            true,
        ),
        (
            "",
            "Service",
            json!({"metadata": meta("headless"), "spec": {"clusterIP": "None"}}),
            true,
        ),
        (
            "",
            "Service",
            json!({"metadata": meta("db"), "spec": {"type": "ExternalName", "externalName": "db.example.com."}}),
            true,
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata": meta("cfg"), "data": {"app.properties": "a=b", "KEY_1": "v"}}),
            true,
        ),
        (
            "",
            "Secret",
            json!({"metadata": meta("tls"), "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}),
            true,
        ),
        (
            "",
            "Secret",
            json!({"metadata": meta("helm"), "type": "helm.sh/release.v1", "data": {"release": "eA=="}}),
            true,
        ),
        (
            "apps",
            "Deployment",
            json!({"metadata": meta("web"), "spec": {"selector": sel.clone(), "template": template()}}),
            true,
        ),
        (
            "apps",
            "ReplicaSet",
            json!({"metadata": meta("web-abc"), "spec": {"selector": sel.clone(), "template": template()}}),
            true,
        ),
        (
            "apps",
            "StatefulSet",
            json!({"metadata": meta("db"), "spec": {"serviceName": "db",
            "selector": sel.clone(), "template": template()}}),
            true,
        ),
        (
            "apps",
            "DaemonSet",
            json!({"metadata": meta("agent"), "spec": {"selector": sel, "template": template()}}),
            true,
        ),
        (
            "batch",
            "Job",
            json!({"metadata": meta("pi"), "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}}),
            true,
        ),
        (
            "batch",
            "CronJob",
            json!({"metadata": meta("hello"), "spec": {"schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "hello", "image": "busybox"}]}}}}}}),
            true,
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"metadata": meta("read"),
            "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "User", "name": "jane"}]}),
            true,
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            json!({"metadata": {"name": "system:reader"}}),
            false,
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            json!({"metadata": {"name": "read"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]}),
            false,
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            json!({"metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}}),
            false,
        ),
        (
            "stable.example.com",
            "CronTab",
            json!({"metadata": meta("my-cron"), "spec": {"x": 1}}),
            true,
        ),
    ]
}

#[test]
fn valid_objects_of_every_checked_kind_pass() {
    for (group, kind, obj, namespaced) in valid_objects() {
        let errs = check(group, kind, obj, namespaced);
        assert!(errs.is_empty(), "{kind}: {:?}", rendered(&errs));
    }
}

#[test]
fn invalid_name_uses_upstream_message() {
    let errs = check("", "ConfigMap", json!({"metadata": meta("Bad_Name")}), true);
    assert_eq!(
        rendered(&errs),
        vec!["metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    );
    assert_eq!(errs[0].reason, FieldErrorType::Invalid);
}

#[test]
fn name_rules_differ_by_kind() {
    let ns = check("", "Namespace", json!({"metadata": {"name": "a.b"}}), false);
    assert_eq!(
        rendered(&ns),
        vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]
    );
    let svc = check(
        "",
        "Service",
        json!({"metadata": meta("1web"), "spec": {"ports": [{"port": 80}]}}),
        true,
    );
    assert!(
        rendered(&svc)[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label")
    );
    let role = check(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        json!({"metadata": {"name": "a/b"}}),
        false,
    );
    assert_eq!(
        rendered(&role),
        vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    );
}

#[test]
fn metadata_name_namespace_labels_annotations() {
    let errs = check("", "ConfigMap", json!({"metadata": {}}), true);
    assert_eq!(
        rendered(&errs),
        vec![
            "metadata.name: Required value: name or generateName is required",
            "metadata.namespace: Required value"
        ]
    );
    assert!(check(
        "",
        "ConfigMap",
        json!({"metadata": {"generateName": "cfg-", "namespace": "d"}}),
        true
    )
    .is_empty());
    let errs = check(
        "",
        "ConfigMap",
        json!({"metadata": {"generateName": "Cfg-", "namespace": "d"}}),
        true,
    );
    assert_eq!(errs[0].field, "metadata.generateName");
    let errs = check(
        "",
        "Namespace",
        json!({"metadata": {"name": "x", "namespace": "default"}}),
        false,
    );
    assert_eq!(
        rendered(&errs),
        vec!["metadata.namespace: Forbidden: not allowed on this type"]
    );

    let errs = check(
        "",
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d",
        "labels": {"-bad": "ok", "good": "bad value"}}}),
        true,
    );
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().all(|e| e.field == "metadata.labels"));
    assert!(errs[0]
        .message
        .starts_with("Invalid value: \"-bad\": name part must consist of"));
    assert!(errs[1]
        .message
        .starts_with("Invalid value: \"bad value\": a valid label must be"));

    let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B);
    let errs = check(
        "",
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d",
        "annotations": {"a": big}}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
}

#[test]
fn pod_container_rules() {
    let errs = check("", "Pod", json!({"metadata": meta("p"), "spec": {}}), true);
    assert_eq!(rendered(&errs), vec!["spec.containers: Required value"]);

    let errs = check(
        "",
        "Pod",
        json!({"metadata": meta("p"), "spec": {"containers": [
            {"name": "app", "image": ""},
            {"name": "app", "image": "x", "ports": [{"containerPort": 70000, "protocol": "HTTP"}]},
            {"name": "Bad_Name", "image": " x",
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
        ]}}),
        true,
    );
    let r = rendered(&errs);
    for want in [
        "spec.containers[0].image: Required value",
        "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.containers[1].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        "spec.containers[1].name: Duplicate value: \"app\"",
        "spec.containers[2].volumeMounts[0].name: Not found: \"data\"",
        "spec.containers[2].image: Invalid value: \" x\": must not have leading or trailing whitespace",
    ] {
        assert!(r.iter().any(|e| e == want), "missing {want:?} in {r:#?}");
    }
    assert!(r.iter().any(|e| e.starts_with(
        "spec.containers[2].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label"
    )));

    let errs = check(
        "",
        "Pod",
        json!({"metadata": meta("p"), "spec": {"restartPolicy": "Sometimes",
        "containers": [{"name": "a", "image": "x"}]}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""]
    );
}

#[test]
fn pod_sysctl_names_follow_upstreams_format() {
    // The conformance spec's set: two malformed names, two well-formed ones.
    let errs = check(
        "",
        "Pod",
        json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a", "image": "x"}],
            "securityContext": {"sysctls": [
                {"name": "foo-", "value": "bar"},
                {"name": "kernel.shmmax", "value": "100000000"},
                {"name": "safe-and-unsafe", "value": "100000000"},
                {"name": "bar..", "value": "42"},
                {"name": "kernel.shmmax", "value": "1"},
                {"name": "net/ipv4/ip_local_port_range", "value": "1024 65535"}]}}}),
        true,
    );
    let regex = r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";
    assert_eq!(
        rendered(&errs),
        vec![
            format!("spec.securityContext.sysctls[0].name: Invalid value: \"foo-\": must have at most 253 characters and match regex {regex}"),
            format!("spec.securityContext.sysctls[3].name: Invalid value: \"bar..\": must have at most 253 characters and match regex {regex}"),
            "spec.securityContext.sysctls[4].name: Duplicate value: \"kernel.shmmax\"".to_owned(),
        ]
    );
}

#[test]
fn service_rules() {
    let errs = check(
        "",
        "Service",
        json!({"metadata": meta("web"), "spec": {"selector": {"app": "web"}}}),
        true,
    );
    assert_eq!(rendered(&errs), vec!["spec.ports: Required value"]);
    let errs = check(
        "",
        "Service",
        json!({"metadata": meta("web"), "spec": {
        "ports": [{"port": 80, "nodePort": 30080}, {"port": 0, "protocol": "ICMP"}]}}),
        true,
    );
    let r = rendered(&errs);
    for want in [
        "spec.ports[0].name: Required value",
        "spec.ports[1].name: Required value",
        "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
    ] {
        assert!(r.iter().any(|e| e == want), "missing {want:?} in {r:#?}");
    }
    let errs = check(
        "",
        "Service",
        json!({"metadata": meta("web"), "spec": {"type": "Magic", "ports": [{"port": 80}]}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec!["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]
    );
    let errs = check(
        "",
        "Service",
        json!({"metadata": meta("x"), "spec": {"type": "ExternalName"}}),
        true,
    );
    assert_eq!(rendered(&errs), vec!["spec.externalName: Required value"]);
}

#[test]
fn config_map_and_secret_rules() {
    let errs = check(
        "",
        "ConfigMap",
        json!({"metadata": meta("c"), "data": {"a/b": "x"}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec!["data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]
    );
    let big = "x".repeat(MAX_SECRET_SIZE + 1);
    let errs = check(
        "",
        "ConfigMap",
        json!({"metadata": meta("c"), "data": {"k": big}}),
        true,
    );
    assert_eq!(errs, vec![FieldError::too_long("", MAX_SECRET_SIZE)]);
    assert_eq!(
        causes_json(&errs),
        json!([{"reason": "FieldValueTooLong", "message": "Too long: may not be more than 1048576 bytes"}])
    );

    let errs = check(
        "",
        "Secret",
        json!({"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
        true,
    );
    assert_eq!(rendered(&errs), vec!["data[tls.key]: Required value"]);
    let errs = check(
        "",
        "Secret",
        json!({"metadata": meta("s"), "stringData": {"bad key": "v"}}),
        true,
    );
    assert_eq!(errs[0].field, "data[bad key]");
}

#[test]
fn role_binding_needs_role_ref() {
    let errs = check(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        json!({"metadata": meta("rb"),
        "subjects": [{"kind": "Robot", "name": "r2"}]}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec![
            "roleRef.apiGroup: Unsupported value: \"\": supported values: \"rbac.authorization.k8s.io\"",
            "roleRef.kind: Unsupported value: \"\": supported values: \"Role\", \"ClusterRole\"",
            "roleRef.name: Required value",
            "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
        ]
    );
    let errs = check(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        json!({"metadata": {"name": "crb"},
        "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
        false,
    );
    assert_eq!(
        rendered(&errs),
        vec![
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
            "subjects[0].namespace: Required value",
        ]
    );
}

#[test]
fn crd_rules() {
    let errs = check(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        json!({"metadata": {"name": "crontab"},
        "spec": {"group": "example", "scope": "Namespaced", "names": {"plural": "crontabs", "kind": "CronTab"},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v2", "served": true, "storage": true}
            ]}}),
        false,
    );
    let r = rendered(&errs);
    for want in [
        "metadata.name: Invalid value: \"crontab\": must be spec.names.plural+\".\"+spec.group",
        "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
        "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required",
    ] {
        assert!(r.iter().any(|e| e == want), "missing {want:?} in {r:#?}");
    }
    assert!(r
        .iter()
        .any(|e| e.starts_with("spec.versions: Invalid value: [")
            && e.ends_with(": must have exactly one version marked as storage version")));
    let errs = check(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        json!({"metadata": {"name": "x.y.z"},
        "spec": {"group": "y.z", "names": {"plural": "x"}, "versions": [
            {"name": "v1", "storage": true, "schema": {"openAPIV3Schema": {}}}]}}),
        false,
    );
    let r = rendered(&errs);
    assert!(has(&errs, "spec.scope: Required value"), "{r:#?}");
    assert!(has(&errs, "spec.names.kind: Required value"), "{r:#?}");
    assert!(has(&errs, "spec.names.listKind: Required value"), "{r:#?}");
}

#[test]
fn crd_selectable_fields_must_name_scalar_schema_fields_outside_metadata() {
    let schema = json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
        "spec": {"type": "object", "properties": {
            "color": {"type": "string"}, "size": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}}}}});
    let crd = |fields: Value| {
        json!({"metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema.clone()}, "selectableFields": fields}]}})
    };
    let ok = check(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        crd(json!([{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.size"}])),
        false,
    );
    assert!(ok.is_empty(), "{:#?}", rendered(&ok));
    let errs = check(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        crd(
            json!([{"jsonPath": ".spec.nope"}, {"jsonPath": ".metadata.name"},
                   {"jsonPath": ".spec.tags"}, {"jsonPath": ".spec.color"},
                   {"jsonPath": ".spec.color"}, {"jsonPath": ""}]),
        ),
        false,
    );
    let p = "spec.versions[0].selectableFields";
    assert_eq!(
        rendered(&errs),
        [
            format!("{p}[0].jsonPath: Invalid value: \".spec.nope\": is an invalid path: does not refer to a valid field"),
            format!("{p}[1].jsonPath: Invalid value: \".metadata.name\": must not point to fields in metadata"),
            format!("{p}[2].jsonPath: Invalid value: \".spec.tags\": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."),
            format!("{p}[4].jsonPath: Duplicate value: \".spec.color\""),
            format!("{p}[5].jsonPath: Required value"),
        ]
    );
}

#[test]
fn ephemeral_containers_follow_upstreams_rules() {
    use super::pod::{validate_pod, validate_pod_create};
    let pod = |ephemeral: Value| {
        serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "containers": [{"name": "app", "image": "busybox", "imagePullPolicy": "Always"}],
            "ephemeralContainers": ephemeral}})
    };
    let errors = |p: &Value| {
        let mut errs = Vec::new();
        validate_pod(p, &mut errs);
        errs.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    };
    let ok = pod(serde_json::json!([{"name": "dbg", "image": "busybox",
        "imagePullPolicy": "Always", "targetContainerName": "app", "resources": {}, "stdin": true, "tty": true}]));
    assert_eq!(errors(&ok), Vec::<String>::new());
    let mut create = Vec::new();
    validate_pod_create(&ok, &mut create);
    assert_eq!(
        create.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        ["spec.ephemeralContainers: Forbidden: cannot be set on create"]
    );
    let bad = pod(serde_json::json!([{"name": "app", "image": "busybox",
        "targetContainerName": "nope", "ports": [{"containerPort": 80}],
        "readinessProbe": {"exec": {"command": ["true"]}},
        "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "x"}]}]));
    let e = errors(&bad);
    for want in [
        "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
        "spec.ephemeralContainers[0].targetContainerName: Not found: \"nope\"",
        "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
        "spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
        "spec.ephemeralContainers[0].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container",
    ] {
        assert!(e.iter().any(|x| x == want), "missing {want:?} in {e:?}");
    }
}
