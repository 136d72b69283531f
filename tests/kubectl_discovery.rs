//! kubectl 1.35 discovers the server: version, resource types, and custom resources with
//! their printer columns.

mod common;

use common::{json, manifests, row_where, table_rows, TestServer};

#[test]
fn kubectl_version_shows_the_server_version() {
    let server = TestServer::start();

    let out = server.kubectl_ok(&["version"]);
    assert!(out.contains("Client Version: v1.35."), "{out}");
    assert!(out.contains("Server Version: v1.35."), "{out}");

    let v = json(&server.kubectl_ok(&["version", "-o", "json"]));
    let sv = &v["serverVersion"];
    assert_eq!(sv["major"], "1", "{v}");
    assert_eq!(sv["minor"], "35", "{v}");
    let git = sv["gitVersion"].as_str().expect("gitVersion is a string");
    assert!(git.starts_with("v1.35."), "gitVersion {git}");
    for field in [
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(sv[field].is_string(), "serverVersion.{field} missing: {v}");
    }
}

/// (name, short names, apiVersion, namespaced, kind) as upstream kubectl prints them.
const BUILTIN_RESOURCES: &[(&str, &str, &str, &str, &str)] = &[
    ("configmaps", "cm", "v1", "true", "ConfigMap"),
    ("endpoints", "ep", "v1", "true", "Endpoints"),
    ("events", "ev", "v1", "true", "Event"),
    ("limitranges", "limits", "v1", "true", "LimitRange"),
    ("namespaces", "ns", "v1", "false", "Namespace"),
    ("nodes", "no", "v1", "false", "Node"),
    (
        "persistentvolumeclaims",
        "pvc",
        "v1",
        "true",
        "PersistentVolumeClaim",
    ),
    ("persistentvolumes", "pv", "v1", "false", "PersistentVolume"),
    ("pods", "po", "v1", "true", "Pod"),
    ("resourcequotas", "quota", "v1", "true", "ResourceQuota"),
    ("secrets", "", "v1", "true", "Secret"),
    ("serviceaccounts", "sa", "v1", "true", "ServiceAccount"),
    ("services", "svc", "v1", "true", "Service"),
    (
        "customresourcedefinitions",
        "crd,crds",
        "apiextensions.k8s.io/v1",
        "false",
        "CustomResourceDefinition",
    ),
    (
        "controllerrevisions",
        "",
        "apps/v1",
        "true",
        "ControllerRevision",
    ),
    ("daemonsets", "ds", "apps/v1", "true", "DaemonSet"),
    ("deployments", "deploy", "apps/v1", "true", "Deployment"),
    ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
    ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
    (
        "horizontalpodautoscalers",
        "hpa",
        "autoscaling/v2",
        "true",
        "HorizontalPodAutoscaler",
    ),
    ("cronjobs", "cj", "batch/v1", "true", "CronJob"),
    ("jobs", "", "batch/v1", "true", "Job"),
    ("leases", "", "coordination.k8s.io/v1", "true", "Lease"),
    (
        "endpointslices",
        "",
        "discovery.k8s.io/v1",
        "true",
        "EndpointSlice",
    ),
    ("events", "ev", "events.k8s.io/v1", "true", "Event"),
    (
        "ingressclasses",
        "",
        "networking.k8s.io/v1",
        "false",
        "IngressClass",
    ),
    (
        "ingresses",
        "ing",
        "networking.k8s.io/v1",
        "true",
        "Ingress",
    ),
    (
        "networkpolicies",
        "netpol",
        "networking.k8s.io/v1",
        "true",
        "NetworkPolicy",
    ),
    (
        "poddisruptionbudgets",
        "pdb",
        "policy/v1",
        "true",
        "PodDisruptionBudget",
    ),
    (
        "clusterrolebindings",
        "",
        "rbac.authorization.k8s.io/v1",
        "false",
        "ClusterRoleBinding",
    ),
    (
        "clusterroles",
        "",
        "rbac.authorization.k8s.io/v1",
        "false",
        "ClusterRole",
    ),
    (
        "rolebindings",
        "",
        "rbac.authorization.k8s.io/v1",
        "true",
        "RoleBinding",
    ),
    ("roles", "", "rbac.authorization.k8s.io/v1", "true", "Role"),
    (
        "storageclasses",
        "sc",
        "storage.k8s.io/v1",
        "false",
        "StorageClass",
    ),
];

/// Parses `kubectl api-resources` rows into (name, short names, apiVersion, namespaced, kind);
/// the SHORTNAMES cell is empty for some rows, so columns are counted from the right.
fn api_resources(stdout: &str) -> Vec<(String, String, String, String, String)> {
    let rows = table_rows(stdout);
    assert_eq!(
        rows.first().map(|r| r.join(" ")),
        Some("NAME SHORTNAMES APIVERSION NAMESPACED KIND".to_string()),
        "api-resources header:\n{stdout}"
    );
    rows[1..]
        .iter()
        .map(|r| {
            assert!(r.len() == 4 || r.len() == 5, "odd api-resources row {r:?}");
            let n = r.len();
            let short = if n == 5 { r[1].clone() } else { String::new() };
            (
                r[0].clone(),
                short,
                r[n - 3].clone(),
                r[n - 2].clone(),
                r[n - 1].clone(),
            )
        })
        .collect()
}

#[test]
fn api_resources_lists_builtin_resources_with_short_names() {
    let server = TestServer::start();
    let out = server.kubectl_ok(&["api-resources"]);
    let got = api_resources(&out);
    for (name, short, api_version, namespaced, kind) in BUILTIN_RESOURCES {
        let row = got
            .iter()
            .find(|r| r.0 == *name && r.2 == *api_version)
            .unwrap_or_else(|| panic!("{name} ({api_version}) missing from api-resources:\n{out}"));
        assert_eq!(
            (row.1.as_str(), row.3.as_str(), row.4.as_str()),
            (*short, *namespaced, *kind),
            "{name} ({api_version}): short names, namespaced, kind"
        );
    }
    // Subresources are not resource types.
    assert!(!out.contains("deployments/scale"), "{out}");
}

#[test]
fn custom_resource_definition_is_served_and_listed_in_discovery() {
    let server = TestServer::start();
    let out = server.apply("crd.yaml", manifests::WIDGET_CRD);
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"),
        "{out}"
    );

    let out = server.kubectl_ok(&["api-resources", "--api-group=example.com"]);
    let got = api_resources(&out);
    assert_eq!(
        got,
        vec![(
            "widgets".to_string(),
            "wd".to_string(),
            "example.com/v1".to_string(),
            "true".to_string(),
            "Widget".to_string()
        )],
        "{out}"
    );
}

#[test]
fn custom_resource_table_shows_additional_printer_columns() {
    let server = TestServer::start();
    server.apply("crd.yaml", manifests::WIDGET_CRD);
    server.kubectl_ok(&["create", "namespace", "shop"]);
    let widgets = format!(
        "{}---\n{}",
        manifests::widget("w1", "shop", 3, "blue"),
        manifests::widget("w2", "shop", 7, "red")
    );
    let out = server.apply("widgets.yaml", &widgets);
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    assert!(out.contains("widget.example.com/w2 created"), "{out}");

    let out = server.kubectl_ok(&["get", "widgets", "-n", "shop"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "SIZE", "COLOR", "AGE"], "{out}");
    assert_eq!(
        &row_where(&rows, 0, "w1")[..3],
        ["w1", "3", "blue"],
        "{out}"
    );
    assert_eq!(&row_where(&rows, 0, "w2")[..3], ["w2", "7", "red"], "{out}");

    // The short name works, and -o wide adds the priority-1 column.
    let out = server.kubectl_ok(&["get", "wd", "w1", "-n", "shop", "-o", "wide"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "SIZE", "COLOR", "SHAPE", "AGE"], "{out}");
    assert_eq!(&rows[1][..4], ["w1", "3", "blue", "round"], "{out}");

    let w = server.kubectl_json(&["get", "widget", "w2", "-n", "shop"]);
    assert_eq!(w["apiVersion"], "example.com/v1", "{w}");
    assert_eq!(w["kind"], "Widget", "{w}");
    assert_eq!(w["spec"]["size"], 7, "{w}");
    assert!(w["metadata"]["uid"].is_string(), "{w}");
    assert!(w["metadata"]["resourceVersion"].is_string(), "{w}");
}
