//! The DaemonSet controller against a real API on a temp store (nodes are plain objects, pods
//! are made ready by hand: there is no scheduler or kubelet).

use super::placement::target_node;
use crate::controllers::history::CONTROLLER_REVISION_HASH;
use crate::controllers::testing::{eventually, live_pods, mark_pods_ready, Cluster};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn add_node(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
        .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("node Ready");
}

fn ds(name: &str, extra: serde_json::Value) -> DaemonSet {
    let mut pod_spec = json!({"containers": [{"name": "c", "image": "busybox:1"}]});
    if let (Some(s), serde_json::Value::Object(e)) = (pod_spec.as_object_mut(), extra) {
        s.extend(e);
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
        }
    }))
    .expect("daemonset")
}

async fn pod_nodes(client: &kube::Client) -> Vec<String> {
    let mut nodes: Vec<String> = live_pods(client)
        .await
        .iter()
        .filter_map(target_node)
        .collect();
    nodes.sort();
    nodes
}

async fn status(client: &kube::Client, name: &str) -> k8s_openapi::api::apps::v1::DaemonSetStatus {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    api.get(name)
        .await
        .expect("get daemonset")
        .status
        .unwrap_or_default()
}

#[tokio::test]
async fn a_daemon_set_runs_one_pod_per_selected_node_and_a_new_node_gets_its_pod() {
    let c = Cluster::start().await;
    add_node(&c.client, "n1", json!({"role": "edge"})).await;
    add_node(&c.client, "n2", json!({"role": "edge"})).await;
    add_node(&c.client, "n3", json!({})).await;
    let api: Api<DaemonSet> = Api::namespaced(c.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &ds("agent", json!({"nodeSelector": {"role": "edge"}})),
    )
    .await
    .expect("create");
    eventually("n1 and n2 get a pod", || async {
        pod_nodes(&c.client).await == ["n1", "n2"]
    })
    .await;
    add_node(&c.client, "n4", json!({"role": "edge"})).await;
    eventually("n4 gets its pod", || async {
        pod_nodes(&c.client).await == ["n1", "n2", "n4"]
    })
    .await;
    // No second pod for a node once the cache has caught up.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(pod_nodes(&c.client).await, ["n1", "n2", "n4"]);
    eventually("status counts three ready nodes", || async {
        mark_pods_ready(&c.client, "default").await;
        let s = status(&c.client, "agent").await;
        s.desired_number_scheduled == 3
            && s.current_number_scheduled == 3
            && s.number_ready == 3
            && s.number_available == Some(3)
            && s.updated_number_scheduled == Some(3)
            && s.number_misscheduled == 0
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_rolling_update_replaces_every_daemon_pod_and_keeps_the_revision_history() {
    let c = Cluster::start().await;
    for n in ["n1", "n2", "n3"] {
        add_node(&c.client, n, json!({})).await;
    }
    let api: Api<DaemonSet> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &ds("agent", json!({})))
        .await
        .expect("create");
    eventually("three ready pods", || async {
        mark_pods_ready(&c.client, "default").await;
        status(&c.client, "agent").await.number_ready == 3
    })
    .await;
    let old_hash = live_pods(&c.client).await[0]
        .metadata
        .labels
        .as_ref()
        .expect("labels")[CONTROLLER_REVISION_HASH]
        .clone();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
    api.patch("agent", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("update");
    let most_unavailable = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    eventually("every node runs a ready pod of the new revision", || {
        let client = c.client.clone();
        let old_hash = old_hash.clone();
        let most = most_unavailable.clone();
        async move {
            let pods = live_pods(&client).await;
            let ready = pods
                .iter()
                .filter(|p| crate::controllers::controller_utils::is_pod_ready(p))
                .count();
            most.fetch_max(
                3usize.saturating_sub(ready),
                std::sync::atomic::Ordering::SeqCst,
            );
            mark_pods_ready(&client, "default").await;
            let s = status(&client, "agent").await;
            pods.len() == 3
                && pods.iter().all(|p| {
                    p.metadata.labels.as_ref().expect("labels")[CONTROLLER_REVISION_HASH]
                        != old_hash
                })
                && s.updated_number_scheduled == Some(3)
                && s.number_available == Some(3)
        }
    })
    .await;
    let most = most_unavailable.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= 1, "{most} nodes lacked a ready pod at once");
    let revs: Api<ControllerRevision> = Api::namespaced(c.client.clone(), "default");
    let list = revs.list(&ListParams::default()).await.expect("revisions");
    let mut numbers: Vec<i64> = list.items.iter().map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);
    c.stop().await;
}
