//! The node graph and the node authorizer's decisions.

use super::*;
use serde_json::json;

fn pod(name: &str, node: Option<&str>, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "busybox",
        "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}]}]);
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}, "spec": spec}))
        .unwrap()
}

fn node_user(n: &str) -> UserInfo {
    UserInfo::new(
        &format!("system:node:{n}"),
        &["system:nodes", "system:authenticated"],
    )
}

fn attrs<'a>(verb: &'a str, resource: &'a str, name: Option<&'a str>) -> AuthzAttributes<'a> {
    AuthzAttributes {
        verb,
        group: "",
        resource,
        subresource: None,
        namespace: Some("ns"),
        name,
        field_selector: None,
    }
}

fn node_rules() -> Vec<PolicyRule> {
    let p = crate::authz::bootstrap_policy::policy().unwrap();
    p.cluster_roles
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some("system:node"))
        .and_then(|r| r.rules)
        .unwrap()
}

fn decide(g: &Graph, user: &UserInfo, a: &AuthzAttributes<'_>) -> bool {
    matches!(authorize(g, &node_rules(), user, a), Some(Decision::Allow))
}

fn graph() -> Graph {
    let mut g = Graph::default();
    g.apply_pod(&pod(
        "web",
        Some("n1"),
        json!({"serviceAccountName": "robot",
               "volumes": [{"name": "s", "secret": {"secretName": "tls"}},
                           {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}),
    ));
    g.apply_pvc(
        &serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns"},
        "spec": {"volumeName": "pv-1"}}))
        .unwrap(),
    );
    g
}

#[test]
fn a_node_reads_what_its_pods_reference_and_nothing_else() {
    let g = graph();
    let n1 = node_user("n1");
    assert!(decide(&g, &n1, &attrs("get", "secrets", Some("tls"))));
    assert!(decide(
        &g,
        &n1,
        &attrs("watch", "configmaps", Some("env-cm"))
    ));
    assert!(decide(
        &g,
        &n1,
        &attrs("get", "persistentvolumeclaims", Some("data"))
    ));
    let pv = AuthzAttributes {
        namespace: None,
        ..attrs("get", "persistentvolumes", Some("pv-1"))
    };
    assert!(decide(&g, &n1, &pv));
    assert!(
        !decide(&g, &n1, &attrs("get", "secrets", Some("other"))),
        "unreferenced secret"
    );
    assert!(
        !decide(&g, &n1, &attrs("list", "secrets", None)),
        "list of all secrets"
    );
    assert!(
        !decide(&g, &n1, &attrs("delete", "secrets", Some("tls"))),
        "writes"
    );
    let n2 = node_user("n2");
    assert!(
        !decide(&g, &n2, &attrs("get", "secrets", Some("tls"))),
        "another node's pod"
    );
    assert!(!decide(&g, &n2, &pv));
}

#[test]
fn tokens_only_for_service_accounts_of_the_nodes_pods() {
    let g = graph();
    let token = |sa| AuthzAttributes {
        subresource: Some("token"),
        ..attrs("create", "serviceaccounts", Some(sa))
    };
    assert!(decide(&g, &node_user("n1"), &token("robot")));
    assert!(!decide(&g, &node_user("n1"), &token("default")));
    assert!(!decide(&g, &node_user("n2"), &token("robot")));
}

#[test]
fn a_node_writes_only_its_own_node_lease_and_pod_statuses() {
    let g = graph();
    let n1 = node_user("n1");
    let lease = |name| AuthzAttributes {
        group: "coordination.k8s.io",
        namespace: Some("kube-node-lease"),
        ..attrs("update", "leases", Some(name))
    };
    assert!(decide(&g, &n1, &lease("n1")));
    assert!(!decide(&g, &n1, &lease("n2")));
    let node = |verb, name| AuthzAttributes {
        namespace: None,
        ..attrs(verb, "nodes", Some(name))
    };
    assert!(decide(&g, &n1, &node("get", "n1")));
    assert!(!decide(&g, &n1, &node("get", "n2")));
    let status = AuthzAttributes {
        subresource: Some("status"),
        ..attrs("patch", "pods", Some("web"))
    };
    assert!(decide(&g, &n1, &status));
    let ev = AuthzAttributes {
        group: "events.k8s.io",
        ..attrs("create", "events", None)
    };
    assert!(decide(&g, &n1, &ev), "events through the system:node rules");
    let csr = AuthzAttributes {
        group: "certificates.k8s.io",
        namespace: None,
        ..attrs("create", "certificatesigningrequests", None)
    };
    assert!(decide(&g, &n1, &csr));
    assert!(!decide(&g, &n1, &attrs("create", "secrets", Some("x"))));
    assert!(decide(&g, &n1, &attrs("get", "pods", Some("web"))));
    assert!(!decide(&g, &n1, &attrs("get", "pods", Some("elsewhere"))));
}

#[test]
fn deleting_or_moving_a_pod_removes_its_grants() {
    let mut g = graph();
    g.apply_pod(&pod(
        "web2",
        Some("n1"),
        json!({"volumes": [{"name": "s", "secret": {"secretName": "tls"}}]}),
    ));
    g.delete_pod("ns", "web");
    assert!(
        g.has("n1", Kind::Secret, "ns", "tls"),
        "web2 still references it"
    );
    g.apply_pod(&pod(
        "web2",
        Some("n2"),
        json!({"volumes": [{"name": "s", "secret": {"secretName": "tls"}}]}),
    ));
    assert!(!g.has("n1", Kind::Secret, "ns", "tls"));
    assert!(g.has("n2", Kind::Secret, "ns", "tls"));
    g.delete_pod("ns", "web2");
    assert!(g.refs.is_empty(), "no counts leak: {:?}", g.refs);
    assert!(authorize(
        &g,
        &[],
        &UserInfo::new("bob", &[]),
        &attrs("get", "secrets", Some("tls"))
    )
    .is_none());
}

#[test]
fn a_node_lists_only_its_own_pods_and_reads_only_its_own_volume_attachments() {
    let mut g = graph();
    let n1 = node_user("n1");
    let list = |selector| AuthzAttributes {
        namespace: None,
        field_selector: selector,
        ..attrs("watch", "pods", None)
    };
    assert!(decide(&g, &n1, &list(Some("spec.nodeName=n1"))));
    assert!(decide(
        &g,
        &n1,
        &list(Some("status.phase!=Failed,spec.nodeName==n1"))
    ));
    assert!(!decide(&g, &n1, &list(Some("spec.nodeName=n2"))));
    assert!(!decide(&g, &n1, &list(Some("spec.nodeName!=n1"))));
    assert_eq!(
        authorize(&g, &node_rules(), &n1, &list(None)),
        Some(Decision::Deny(
            "can only list/watch pods with spec.nodeName field selector".into()
        ))
    );
    // A watch of one named pod bound to the node (kubectl-style `fieldSelector=metadata.name`).
    assert!(decide(&g, &n1, &attrs("watch", "pods", Some("web"))));

    g.apply_volume_attachment("va-1", "n1");
    g.apply_volume_attachment("va-2", "n2");
    let va = |name| AuthzAttributes {
        group: "storage.k8s.io",
        namespace: None,
        ..attrs("get", "volumeattachments", Some(name))
    };
    assert!(decide(&g, &n1, &va("va-1")));
    assert!(!decide(&g, &n1, &va("va-2")));
    g.delete_volume_attachment("va-1");
    assert!(!decide(&g, &n1, &va("va-1")));
    assert!(!decide(
        &g,
        &n1,
        &AuthzAttributes {
            name: None,
            ..va("")
        }
    ));
}

#[test]
fn a_node_may_read_and_update_only_the_local_path_volumes_it_holds_the_directory_of() {
    let mut g = Graph::default();
    g.apply_volume(
        &serde_json::from_value(json!({"metadata": {"name": "pvc-1",
            "annotations": {"local.path.provisioner/selected-node": "n1"}}}))
        .unwrap(),
    );
    let pv = |verb| AuthzAttributes {
        namespace: None,
        ..attrs(verb, "persistentvolumes", Some("pvc-1"))
    };
    for verb in ["get", "patch", "update"] {
        assert!(decide(&g, &node_user("n1"), &pv(verb)), "{verb}");
        assert!(
            !decide(&g, &node_user("n2"), &pv(verb)),
            "{verb} by another node"
        );
    }
    assert!(!decide(&g, &node_user("n1"), &pv("delete")));
    g.delete_volume("pvc-1");
    assert!(!decide(&g, &node_user("n1"), &pv("get")));
}
