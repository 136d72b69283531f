//! helm 4 installs (and uninstalls) a chart holding the identity and policy kinds an operator
//! chart ships: a ServiceAccount, a Role and RoleBinding for it, an aggregated ClusterRole,
//! a PriorityClass, a RuntimeClass and a ValidatingWebhookConfiguration. What they grant
//! then holds: the service account may do what its Role says and nothing more, and the
//! aggregated ClusterRole carries the rules of the roles labelled for it.

mod common;

use common::http::Auth;
use common::TestServer;
use std::time::{Duration, Instant};

const CHART_YAML: &str = "apiVersion: v2\nname: operator\nversion: 0.1.0\n";

const TEMPLATES: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Release.Name }}-sa
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .Release.Name }}-reader
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .Release.Name }}-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ .Release.Name }}-reader
subjects:
- kind: ServiceAccount
  name: {{ .Release.Name }}-sa
  namespace: {{ .Release.Namespace }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Name }}-aggregate
aggregationRule:
  clusterRoleSelectors:
  - matchLabels:
      example.com/aggregate-to-operator: "true"
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Name }}-widgets
  labels:
    example.com/aggregate-to-operator: "true"
rules:
- apiGroups: ["example.com"]
  resources: ["widgets"]
  verbs: ["get", "list"]
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: {{ .Release.Name }}-high
value: 1000000
description: operator workloads
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: {{ .Release.Name }}-sandbox
handler: sandbox
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {{ .Release.Name }}-policy
webhooks:
- name: policy.example.com
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  clientConfig:
    url: https://127.0.0.1:1/validate
  rules:
  - apiGroups: ["example.com"]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["widgets"]
"#;

/// Polls `f` until it returns true or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn helm_installs_a_chart_of_identity_and_policy_kinds_and_they_take_effect() {
    let server = TestServer::start();
    std::fs::create_dir_all(server.files_dir().join("operator/templates")).expect("chart dir");
    server.write_file("operator/Chart.yaml", CHART_YAML);
    server.write_file("operator/templates/all.yaml", TEMPLATES);
    let chart = server.files_dir().join("operator");
    let run = server
        .helm(&["install", "op", chart.to_str().expect("utf-8 path")])
        .ok();
    assert!(run.stdout.contains("STATUS: deployed"), "{run}");

    for (kind, name) in [
        ("serviceaccount", "op-sa"),
        ("role", "op-reader"),
        ("rolebinding", "op-reader"),
        ("clusterrole", "op-aggregate"),
        ("priorityclass", "op-high"),
        ("runtimeclass", "op-sandbox"),
        ("validatingwebhookconfiguration", "op-policy"),
    ] {
        server.kubectl_ok(&["get", kind, name]);
    }
    let pc = server.kubectl_json(&["get", "priorityclass", "op-high"]);
    assert_eq!(pc["value"], 1000000, "{pc}");
    // Defaults filled by the server, as upstream's.
    let hook = server.kubectl_json(&["get", "validatingwebhookconfiguration", "op-policy"]);
    assert_eq!(hook["webhooks"][0]["timeoutSeconds"], 10, "{hook}");
    assert_eq!(hook["webhooks"][0]["matchPolicy"], "Equivalent", "{hook}");

    // The aggregation controller folds the labelled role's rules into the aggregate.
    let aggregated = eventually(Duration::from_secs(10), || {
        let role = server.kubectl_json(&["get", "clusterrole", "op-aggregate"]);
        role["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|rule| rule["resources"][0] == "widgets"))
    });
    assert!(aggregated, "op-aggregate never picked up the widgets rule");

    // The service account may do what its Role grants, in its namespace only.
    let sa = "system:serviceaccount:default:op-sa";
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--as", sa]);
        server.kubectl(&all).stdout.trim().to_owned()
    };
    assert_eq!(can(&["list", "configmaps"]), "yes");
    assert_eq!(can(&["delete", "configmaps"]), "no");
    assert_eq!(can(&["list", "configmaps", "-n", "kube-system"]), "no");
    assert_eq!(can(&["list", "secrets"]), "no");

    // A token for it is a working credential with exactly those rights.
    let token = server.kubectl_ok(&["create", "token", "op-sa"]);
    let token = token.trim();
    let cm = server
        .request("GET", "/api/v1/namespaces/default/configmaps")
        .auth(Auth::Bearer(token.to_owned()))
        .send();
    assert_eq!(cm.status, 200, "{}", cm.text());
    let secrets = server
        .request("GET", "/api/v1/namespaces/default/secrets")
        .auth(Auth::Bearer(token.to_owned()))
        .send();
    let status = secrets.expect_status(403, "Forbidden");
    assert_eq!(
        status["message"],
        "secrets is forbidden: User \"system:serviceaccount:default:op-sa\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\"",
        "{status}"
    );

    let run = server.helm(&["uninstall", "op"]).ok();
    assert!(run.stdout.contains("uninstalled"), "{run}");
    for (kind, name) in [
        ("priorityclass", "op-high"),
        ("runtimeclass", "op-sandbox"),
        ("validatingwebhookconfiguration", "op-policy"),
        ("clusterrole", "op-aggregate"),
    ] {
        let gone = eventually(Duration::from_secs(10), || {
            !server.kubectl(&["get", kind, name]).success()
        });
        assert!(gone, "{kind}/{name} still there after uninstall");
    }
}
