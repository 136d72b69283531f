//! RBAC end to end: `kubectl auth can-i` (yes/no, `--as`, `--list`, `--subresource`), a
//! RoleBinding granting in one namespace only with upstream's 403 text elsewhere, ClusterRole
//! aggregation into `view`, escalation refused, and the bootstrap policy reconciled at start
//! while honouring `rbac.authorization.kubernetes.io/autoupdate: "false"`.

mod common;

use common::TestServer;
use std::time::{Duration, Instant};

/// Polls `kubectl args` until its stdout trimmed equals `want` (caches settle in ms).
#[track_caller]
fn eventually_prints(server: &TestServer, args: &[&str], want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = server.kubectl(args);
        if run.stdout.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} kept printing {:?} / {:?}, want {want:?}",
            run.stdout,
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn auth_can_i_answers_for_the_caller_and_for_impersonated_users() {
    let server = TestServer::start();
    let yes = server.kubectl(&["auth", "can-i", "create", "pods"]).ok();
    assert_eq!(yes.stdout.trim(), "yes");
    let no = server
        .kubectl(&["auth", "can-i", "create", "pods", "--as", "bob"])
        .fails();
    assert_eq!(no.stdout.trim(), "no");
    let masters = server
        .kubectl(&[
            "auth",
            "can-i",
            "delete",
            "nodes",
            "--as",
            "bob",
            "--as-group",
            "system:masters",
        ])
        .ok();
    assert_eq!(masters.stdout.trim(), "yes");
    let list = server
        .kubectl(&["auth", "can-i", "--list", "--as", "bob"])
        .ok();
    assert!(
        list.stdout
            .contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("[/version]"), "{}", list.stdout);
    assert!(!list.stdout.contains("pods"), "{}", list.stdout);
}

#[test]
fn a_role_binding_grants_a_user_in_its_namespace_only() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "a"]);
    server.kubectl_ok(&["create", "namespace", "b"]);
    server.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "a",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "bob-reads",
        "--role=pod-reader",
        "--user=bob",
        "-n",
        "a",
    ]);
    eventually_prints(
        &server,
        &["auth", "can-i", "list", "pods", "-n", "a", "--as", "bob"],
        "yes",
    );
    let ok = server
        .kubectl(&["get", "pods", "-n", "a", "--as", "bob"])
        .ok();
    assert!(ok.stderr.contains("No resources found"), "{}", ok.stderr);
    let denied = server
        .kubectl(&["get", "pods", "-n", "b", "--as", "bob"])
        .fails();
    assert_eq!(
        denied.stderr.trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "b""#
    );
    let named = server
        .kubectl(&["get", "configmap", "x", "-n", "a", "--as", "bob"])
        .fails();
    assert_eq!(
        named.stderr.trim(),
        r#"Error from server (Forbidden): configmaps "x" is forbidden: User "bob" cannot get resource "configmaps" in API group "" in the namespace "a""#
    );
    let sub = server
        .kubectl(&[
            "auth",
            "can-i",
            "get",
            "pods",
            "--subresource=log",
            "-n",
            "a",
            "--as",
            "bob",
        ])
        .fails();
    assert_eq!(sub.stdout.trim(), "no");
    let list = server
        .kubectl(&["auth", "can-i", "--list", "-n", "a", "--as", "bob"])
        .ok();
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list]")),
        "{}",
        list.stdout
    );
}

#[test]
fn a_cluster_role_labelled_for_view_is_aggregated_into_view() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "a"]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "carol-views",
        "--clusterrole=view",
        "--user=carol",
        "-n",
        "a",
    ]);
    eventually_prints(
        &server,
        &[
            "auth",
            "can-i",
            "list",
            "configmaps",
            "-n",
            "a",
            "--as",
            "carol",
        ],
        "yes",
    );
    let no = server
        .kubectl(&[
            "auth", "can-i", "get", "secrets", "-n", "a", "--as", "carol",
        ])
        .fails();
    assert_eq!(no.stdout.trim(), "no");
    server.apply(
        "peek.yaml",
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: secret-peeker
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
"#,
    );
    eventually_prints(
        &server,
        &[
            "auth", "can-i", "get", "secrets", "-n", "a", "--as", "carol",
        ],
        "yes",
    );
    let view = server.kubectl_json(&["get", "clusterrole", "view"]);
    assert!(view["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["resources"][0] == "secrets"));
}

#[test]
fn granting_permissions_one_does_not_hold_is_refused() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "a"]);
    server.kubectl_ok(&[
        "create",
        "role",
        "role-maker",
        "--verb=create,get",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
        "-n",
        "a",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "dave-makes",
        "--role=role-maker",
        "--user=dave",
        "-n",
        "a",
    ]);
    eventually_prints(
        &server,
        &[
            "auth",
            "can-i",
            "create",
            "roles.rbac.authorization.k8s.io",
            "-n",
            "a",
            "--as",
            "dave",
        ],
        "yes",
    );
    let refused = server
        .kubectl(&[
            "create",
            "role",
            "sneaky",
            "--verb=get",
            "--resource=secrets",
            "-n",
            "a",
            "--as",
            "dave",
        ])
        .fails();
    assert_eq!(
        refused.stderr.trim(),
        "Error from server (Forbidden): roles.rbac.authorization.k8s.io \"sneaky\" is forbidden: user \"dave\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
    // What dave holds, dave may grant.
    server.kubectl_ok(&[
        "create",
        "role",
        "fine",
        "--verb=get",
        "--resource=roles.rbac.authorization.k8s.io",
        "-n",
        "a",
        "--as",
        "dave",
    ]);
    let bind = server
        .kubectl(&[
            "create",
            "rolebinding",
            "grab",
            "--clusterrole=admin",
            "--user=dave",
            "-n",
            "a",
            "--as",
            "dave",
        ])
        .fails();
    assert!(
        bind.stderr
            .contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        bind.stderr
    );
    // With escalate, the same role is allowed.
    server.kubectl_ok(&[
        "create",
        "role",
        "escalator",
        "--verb=escalate",
        "--resource=roles.rbac.authorization.k8s.io",
        "-n",
        "a",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "dave-escalates",
        "--role=escalator",
        "--user=dave",
        "-n",
        "a",
    ]);
    eventually_prints(
        &server,
        &[
            "auth",
            "can-i",
            "escalate",
            "roles.rbac.authorization.k8s.io",
            "-n",
            "a",
            "--as",
            "dave",
        ],
        "yes",
    );
    server.kubectl_ok(&[
        "create",
        "role",
        "sneaky",
        "--verb=get",
        "--resource=secrets",
        "-n",
        "a",
        "--as",
        "dave",
    ]);
}

#[test]
fn bootstrap_roles_exist_and_a_user_edit_with_autoupdate_false_survives_a_restart() {
    let mut server = TestServer::start();
    let out = server.kubectl_ok(&[
        "get",
        "clusterrole",
        "admin",
        "edit",
        "view",
        "cluster-admin",
        "system:node",
        "system:discovery",
        "system:controller:namespace-controller",
        "-o",
        "name",
    ]);
    assert_eq!(out.lines().count(), 7, "{out}");
    server.kubectl_ok(&[
        "get",
        "clusterrolebinding",
        "cluster-admin",
        "system:discovery",
        "system:basic-user",
    ]);
    server.kubectl_ok(&[
        "get",
        "role",
        "-n",
        "kube-system",
        "extension-apiserver-authentication-reader",
    ]);
    // A kept edit (autoupdate=false) and a reverted one (autoupdate left true).
    server.kubectl_ok(&[
        "annotate",
        "clusterrole",
        "system:public-info-viewer",
        "rbac.authorization.kubernetes.io/autoupdate=false",
        "--overwrite",
    ]);
    let only_version = r#"[{"op":"replace","path":"/rules","value":[{"nonResourceURLs":["/version"],"verbs":["get"]}]}]"#;
    server.kubectl_ok(&[
        "patch",
        "clusterrole",
        "system:public-info-viewer",
        "--type=json",
        "-p",
        only_version,
    ]);
    server.kubectl_ok(&[
        "patch",
        "clusterrole",
        "system:basic-user",
        "--type=json",
        "-p",
        only_version,
    ]);
    server.restart();
    let kept = server.kubectl_json(&["get", "clusterrole", "system:public-info-viewer"]);
    assert_eq!(kept["rules"].as_array().unwrap().len(), 1, "{kept}");
    let restored = server.kubectl_json(&["get", "clusterrole", "system:basic-user"]);
    let rules = restored["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["resources"][0] == "selfsubjectaccessreviews"),
        "{restored}"
    );
    assert!(
        rules.iter().any(|r| r["nonResourceURLs"][0] == "/version"),
        "user additions stay"
    );
}

#[test]
fn a_node_identity_lists_only_the_pods_bound_to_it() {
    let server = TestServer::start();
    let as_node = ["--as", "system:node:n1", "--as-group", "system:nodes"];
    let mut all = vec!["get", "pods", "-A"];
    all.extend_from_slice(&as_node);
    let run = server.kubectl(&all).fails();
    assert!(
        run.stderr.contains(
            r#"pods is forbidden: User "system:node:n1" cannot list resource "pods" in API group "" at the cluster scope: can only list/watch pods with spec.nodeName field selector"#
        ),
        "{run}"
    );
    let mut own = vec!["get", "pods", "-A", "--field-selector", "spec.nodeName=n1"];
    own.extend_from_slice(&as_node);
    server.kubectl(&own).ok();
    let mut other = vec!["get", "pods", "-A", "--field-selector", "spec.nodeName=n2"];
    other.extend_from_slice(&as_node);
    server.kubectl(&other).fails();
}
