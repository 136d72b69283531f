//! The deployment controller against a real API on a temp store; pods become Ready only
//! through [`mark_pods_ready`] (there is no kubelet here).

use super::util::{REVISION, REVISION_HISTORY};
use crate::controllers::testing::{eventually, mark_pods_ready, Cluster};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn deployment(name: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "img:v1"}]}
            }
        }
    }))
    .expect("valid deployment")
}

fn rolling(surge: i32, unavailable: i32) -> serde_json::Value {
    serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// Marks the namespace's pods Ready every 50 ms until dropped.
struct Kubelet(tokio::task::JoinHandle<()>);

impl Kubelet {
    fn start(client: &kube::Client) -> Kubelet {
        let client = client.clone();
        Kubelet(tokio::spawn(async move {
            loop {
                mark_pods_ready(&client, "default").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }))
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn replica_sets(client: &kube::Client) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("list rs")
        .items
}

async fn live_pods(client: &kube::Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn revision(rs: &ReplicaSet) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(REVISION).cloned()
}

fn progressing_reason(d: &Deployment) -> Option<String> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Progressing")?
        .reason
        .clone()
}

async fn complete(api: &Api<Deployment>, name: &str, replicas: i32) -> bool {
    let d = api.get(name).await.expect("deployment");
    let s = d.status.clone().unwrap_or_default();
    s.observed_generation == d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && progressing_reason(&d).as_deref() == Some("NewReplicaSetAvailable")
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("set image");
}

#[tokio::test]
async fn a_new_template_rolls_out_within_surge_and_a_rollback_reuses_the_old_replica_set() {
    let c = Cluster::start().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("web", 3, rolling(1, 0)))
        .await
        .expect("create");
    let _kubelet = Kubelet::start(&c.client);
    eventually("the first rollout completes", || complete(&api, "web", 3)).await;
    let first = replica_sets(&c.client).await;
    assert_eq!(first.len(), 1);
    let hash = first[0].metadata.labels.as_ref().expect("labels")["pod-template-hash"].clone();
    assert_eq!(
        first[0].metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(revision(&first[0]).as_deref(), Some("1"));

    // Watch the pod count while rolling: never above replicas + maxSurge.
    let max_seen = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let client = c.client.clone();
        let max_seen = max_seen.clone();
        tokio::spawn(async move {
            loop {
                let n = live_pods(&client).await.len();
                max_seen.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    set_image(&api, "web", "img:v2").await;
    eventually("the second rollout completes", || async {
        complete(&api, "web", 3).await && live_pods(&c.client).await.len() == 3
    })
    .await;
    watcher.abort();
    assert!(
        max_seen.load(Ordering::SeqCst) <= 4,
        "saw {} pods",
        max_seen.load(Ordering::SeqCst)
    );
    let sets = replica_sets(&c.client).await;
    assert_eq!(sets.len(), 2);
    let old = sets
        .iter()
        .find(|r| r.metadata.name == first[0].metadata.name)
        .expect("old rs kept");
    assert_eq!(old.spec.as_ref().and_then(|s| s.replicas), Some(0));
    let d = api.get("web").await.expect("d");
    assert_eq!(
        d.metadata
            .annotations
            .as_ref()
            .expect("a")
            .get(REVISION)
            .map(String::as_str),
        Some("2")
    );

    // Rolling back is a template change back to the first one: the first replica set is
    // reused with the next revision.
    set_image(&api, "web", "img:v1").await;
    eventually(
        "the rollback completes on the first replica set",
        || async {
            let sets = replica_sets(&c.client).await;
            let back = sets
                .iter()
                .find(|r| r.metadata.name == first[0].metadata.name);
            sets.len() == 2
                && back.is_some_and(|r| {
                    revision(r).as_deref() == Some("3")
                        && r.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(REVISION_HISTORY))
                            .map(String::as_str)
                            == Some("1")
                        && r.spec.as_ref().and_then(|s| s.replicas) == Some(3)
                })
                && complete(&api, "web", 3).await
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_paused_deployment_scales_but_does_not_roll_until_resumed() {
    let c = Cluster::start().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("p", 2, rolling(1, 0)))
        .await
        .expect("create");
    let _kubelet = Kubelet::start(&c.client);
    eventually("the first rollout completes", || complete(&api, "p", 2)).await;
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"paused": true}})),
    )
    .await
    .expect("pause");
    eventually("the deployment reports it is paused", || async {
        progressing_reason(&api.get("p").await.expect("d")).as_deref() == Some("DeploymentPaused")
    })
    .await;
    set_image(&api, "p", "img:v2").await;
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
    )
    .await
    .expect("scale");
    eventually(
        "the paused deployment scaled its only replica set",
        || async {
            let sets = replica_sets(&c.client).await;
            sets.len() == 1 && sets[0].spec.as_ref().and_then(|s| s.replicas) == Some(4)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        replica_sets(&c.client).await.len(),
        1,
        "no rollout while paused"
    );
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"paused": false}})),
    )
    .await
    .expect("resume");
    eventually("the resumed rollout completes", || async {
        replica_sets(&c.client).await.len() == 2 && complete(&api, "p", 4).await
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn recreate_removes_every_old_pod_before_creating_new_ones() {
    let c = Cluster::start().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &deployment("r", 2, serde_json::json!({"type": "Recreate"})),
    )
    .await
    .expect("create");
    let _kubelet = Kubelet::start(&c.client);
    eventually("the first rollout completes", || complete(&api, "r", 2)).await;
    let first_hash = replica_sets(&c.client).await[0]
        .metadata
        .labels
        .as_ref()
        .expect("l")["pod-template-hash"]
        .clone();
    let mixed = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let client = c.client.clone();
        let mixed = mixed.clone();
        let first_hash = first_hash.clone();
        tokio::spawn(async move {
            loop {
                let pods = live_pods(&client).await;
                let hashes: std::collections::BTreeSet<String> = pods
                    .iter()
                    .filter_map(|p| {
                        p.metadata
                            .labels
                            .as_ref()?
                            .get("pod-template-hash")
                            .cloned()
                    })
                    .collect();
                if hashes.len() > 1 && hashes.contains(&first_hash) {
                    mixed.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    set_image(&api, "r", "img:v2").await;
    eventually("the recreate rollout completes", || async {
        replica_sets(&c.client).await.len() == 2 && complete(&api, "r", 2).await
    })
    .await;
    watcher.abort();
    assert_eq!(
        mixed.load(Ordering::SeqCst),
        0,
        "old and new pods existed together"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_rollout_whose_pods_never_become_ready_exceeds_its_progress_deadline() {
    let c = Cluster::start().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let mut d = deployment("stuck", 2, rolling(1, 0));
    d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(2);
    api.create(&PostParams::default(), &d)
        .await
        .expect("create");
    eventually(
        "Progressing turns False with ProgressDeadlineExceeded",
        || async {
            let d = api.get("stuck").await.expect("d");
            let cond = d
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Progressing");
            cond.is_some_and(|c| {
                c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
        },
    )
    .await;
    let d = api.get("stuck").await.expect("d");
    let available = d
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .expect("available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
    c.stop().await;
}

#[tokio::test]
async fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let c = Cluster::start().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let mut d = deployment("h", 1, rolling(1, 0));
    d.spec.as_mut().expect("spec").revision_history_limit = Some(1);
    api.create(&PostParams::default(), &d)
        .await
        .expect("create");
    let _kubelet = Kubelet::start(&c.client);
    eventually("rollout 1", || complete(&api, "h", 1)).await;
    for v in ["img:v2", "img:v3"] {
        set_image(&api, "h", v).await;
        eventually("the rollout completes", || complete(&api, "h", 1)).await;
    }
    eventually("one old replica set is kept", || async {
        replica_sets(&c.client).await.len() == 2
    })
    .await;
    let revisions: std::collections::BTreeSet<String> = replica_sets(&c.client)
        .await
        .iter()
        .filter_map(revision)
        .collect();
    assert_eq!(revisions, ["2".to_string(), "3".to_string()].into());
    c.stop().await;
}
