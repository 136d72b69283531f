//! NodeRestriction through the in-process API, as node `n1`.

use super::*;
use crate::apiserver::admission::Chain;
use crate::apiserver::testing::TestServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

struct Setup {
    _srv: TestServer,
    admin: kube::Client,
    n1: kube::Client,
}

async fn setup() -> Setup {
    let srv = TestServer::with_admission(Chain::of(vec![Box::new(NodeRestriction)])).await;
    let admin = srv.admin();
    // Also in system:masters so the masters-only authorizer of this branch lets it through
    // to admission (the Node authorizer is the rbac slice's).
    let n1 = srv.client_as("system:node:n1", &["system:nodes", "system:masters"]);
    let nodes: Api<Node> = Api::all(admin.clone());
    for name in ["n1", "n2"] {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"node-restriction.kubernetes.io/pool": "a"}}}))
        .unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }
    Setup {
        _srv: srv,
        admin,
        n1,
    }
}

fn refused(r: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{}", s.message);
            s.message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}))
    .unwrap()
}

#[tokio::test]
async fn a_node_may_change_only_its_own_node_and_not_restricted_labels() {
    let s = setup().await;
    let nodes: Api<Node> = Api::all(s.n1.clone());
    let merge = |v| Patch::Merge(v);
    assert_eq!(
        refused(
            nodes
                .patch(
                    "n2",
                    &PatchParams::default(),
                    &merge(json!({"metadata": {"labels": {"x": "y"}}}))
                )
                .await
        ),
        r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#
    );
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &merge(json!({"metadata": {"labels": {"x": "y", "kubernetes.io/hostname": "n1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        refused(nodes.patch("n1", &PatchParams::default(), &merge(json!({"metadata": {"labels": {"node-restriction.kubernetes.io/pool": null}}}))).await),
        r#"nodes "n1" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool"#
    );
    assert_eq!(
        refused(
            nodes
                .patch(
                    "n1",
                    &PatchParams::default(),
                    &merge(json!({"metadata": {"labels": {"node-role.kubernetes.io/master": ""}}}))
                )
                .await
        ),
        r#"nodes "n1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/master"#
    );
    assert_eq!(
        refused(
            nodes
                .patch(
                    "n1",
                    &PatchParams::default(),
                    &merge(json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}))
                )
                .await
        ),
        r#"nodes "n1" is forbidden: node "n1" is not allowed to modify taints"#
    );
    let n3: Node = serde_json::from_value(json!({"metadata": {"name": "n3"}})).unwrap();
    assert_eq!(
        refused(nodes.create(&PostParams::default(), &n3).await),
        r#"nodes "n3" is forbidden: node "n1" is not allowed to modify node "n3""#
    );
    // The admin is not restricted.
    Api::<Node>::all(s.admin.clone())
        .patch(
            "n2",
            &PatchParams::default(),
            &merge(json!({"metadata": {"labels": {"node-restriction.kubernetes.io/pool": "b"}}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_node_creates_only_its_own_mirror_pods_and_deletes_only_its_pods() {
    let s = setup().await;
    let pods: Api<Pod> = Api::namespaced(s.n1.clone(), "default");
    assert_eq!(
        refused(
            pods.create(&PostParams::default(), &pod("plain", "n1"))
                .await
        ),
        r#"pods "plain" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#
    );
    let n1_uid = Api::<Node>::all(s.admin.clone())
        .get("n1")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let mirror = |name: &str, node: &str| {
        let mut p = pod(name, node);
        p.metadata.annotations = Some([(MIRROR_POD.to_owned(), "h".to_owned())].into());
        p.metadata.owner_references =
            Some(vec![serde_json::from_value(json!({"apiVersion": "v1",
            "kind": "Node", "name": "n1", "uid": n1_uid, "controller": true}))
            .unwrap()]);
        p
    };
    assert_eq!(
        refused(
            pods.create(&PostParams::default(), &mirror("elsewhere", "n2"))
                .await
        ),
        r#"pods "elsewhere" is forbidden: node "n1" can only create pods with spec.nodeName set to itself"#
    );
    pods.create(&PostParams::default(), &mirror("static", "n1"))
        .await
        .unwrap();
    let admin_pods: Api<Pod> = Api::namespaced(s.admin.clone(), "default");
    admin_pods
        .create(&PostParams::default(), &pod("theirs", "n2"))
        .await
        .unwrap();
    admin_pods
        .create(&PostParams::default(), &pod("mine", "n1"))
        .await
        .unwrap();
    assert_eq!(
        refused(pods.delete("theirs", &DeleteParams::default()).await),
        r#"pods "theirs" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself"#
    );
    pods.delete("mine", &DeleteParams::default()).await.unwrap();
    // Status of its own pods only, and not their labels.
    assert_eq!(
        refused(
            pods.patch_status(
                "theirs",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running"}}))
            )
            .await
        ),
        r#"pods "theirs" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#
    );
    pods.patch_status(
        "static",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        refused(
            pods.patch(
                "static",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))
            )
            .await
        ),
        r#"pods "static" is forbidden: unexpected operation "UPDATE", node "n1" can only create and delete mirror pods"#
    );
}

#[tokio::test]
async fn a_node_writes_only_its_own_lease_in_the_node_lease_namespace() {
    let s = setup().await;
    let lease = |name: &str| -> Lease {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"holderIdentity": name}}),
        )
        .unwrap()
    };
    let leases: Api<Lease> = Api::namespaced(s.n1.clone(), "kube-node-lease");
    leases
        .create(&PostParams::default(), &lease("n1"))
        .await
        .unwrap();
    assert_eq!(
        refused(leases.create(&PostParams::default(), &lease("n2")).await),
        r#"leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the requesting node"#
    );
    let elsewhere: Api<Lease> = Api::namespaced(s.n1.clone(), "default");
    assert_eq!(
        refused(elsewhere.create(&PostParams::default(), &lease("n1")).await),
        r#"leases.coordination.k8s.io "n1" is forbidden: can only access leases in the "kube-node-lease" system namespace"#
    );
}

#[test]
fn kubelet_labels_and_restricted_labels() {
    let labels = json!({"kubernetes.io/hostname": "h", "node.kubernetes.io/exclude-from-external-load-balancers": "",
        "kubelet.kubernetes.io/x": "", "example.com/x": "", "node-restriction.kubernetes.io/a": "",
        "foo.node-restriction.kubernetes.io/b": "", "node-role.kubernetes.io/worker": "", "k8s.io/z": ""});
    assert_eq!(
        forbidden_labels(&labels, &Value::Null),
        vec![
            "foo.node-restriction.kubernetes.io/b",
            "k8s.io/z",
            "node-restriction.kubernetes.io/a",
            "node-role.kubernetes.io/worker"
        ]
    );
}

/// Everything, except extra token audiences unless granted for `granted`.
struct AudienceAuthorizer {
    granted: &'static str,
}

impl crate::apiserver::Authorizer for AudienceAuthorizer {
    fn authorize(
        &self,
        _: &crate::apiserver::UserInfo,
        a: &crate::apiserver::AuthzAttributes<'_>,
    ) -> crate::apiserver::Decision {
        if a.verb == "request-serviceaccounts-token-audience" && a.resource != self.granted {
            return crate::apiserver::Decision::Deny(String::new());
        }
        crate::apiserver::Decision::Allow
    }
    fn authorize_non_resource(
        &self,
        _: &crate::apiserver::UserInfo,
        _: &str,
        _: &str,
    ) -> crate::apiserver::Decision {
        crate::apiserver::Decision::Allow
    }
}

#[tokio::test]
async fn a_node_gets_tokens_only_for_audiences_its_pods_use_or_it_was_granted() {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    let srv = TestServer::with_admission(Chain::of(vec![Box::new(NodeRestriction)])).await;
    srv.state
        .set_authorizer(std::sync::Arc::new(AudienceAuthorizer { granted: "vault" }));
    let admin = srv.admin();
    let n1 = srv.client_as("system:node:n1", &["system:nodes"]);
    let mut p = pod("app", "n1");
    p.spec.as_mut().unwrap().volumes = Some(vec![serde_json::from_value(json!({
        "name": "t", "projected": {"sources": [{"serviceAccountToken": {
            "path": "token", "audience": "api.example"}}]}}))
    .unwrap()]);
    let created = Api::<Pod>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(admin.clone(), "default");
    sa.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
    )
    .await
    .ok();
    let request = |audiences: &[&str]| -> TokenRequest {
        serde_json::from_value(json!({"spec": {"audiences": audiences,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "app",
                               "uid": created.metadata.uid}}}))
        .unwrap()
    };
    let as_node: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(n1.clone(), "default");
    let ask = |audiences: &'static [&'static str]| {
        let as_node = as_node.clone();
        let req = request(audiences);
        async move {
            as_node
                .create_subresource::<TokenRequest, TokenRequest>(
                    "token",
                    "default",
                    &PostParams::default(),
                    &req,
                )
                .await
        }
    };
    ask(&["api.example"]).await.unwrap();
    ask(&["vault"]).await.unwrap();
    assert_eq!(
        refused(ask(&["other"]).await),
        r#"serviceaccounts "default" is forbidden: audience "other" not found in pod spec volume, system:node:n1 is not authorized to request tokens for this audience"#
    );
    assert_eq!(
        refused(ask(&["api.example", "vault"]).await),
        r#"serviceaccounts "default" is forbidden: node may only request 0 or 1 audiences"#
    );
}
