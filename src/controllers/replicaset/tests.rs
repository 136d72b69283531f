//! The ReplicaSet and ReplicationController controllers against a real API on a temp store.

use crate::controllers::testing::{eventually, mark_pods_ready, Cluster};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod, ReplicationController, ResourceQuota};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

fn rs_json(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .expect("valid replica set")
}

/// A cluster with `rs` created in `default`, and the API of its ReplicaSets.
async fn cluster_with(rs: ReplicaSet) -> (Cluster, Api<ReplicaSet>) {
    let c = Cluster::start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    rss.create(&PostParams::default(), &rs)
        .await
        .expect("create rs");
    (c, rss)
}

async fn pods_of(client: &kube::Client, ns: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn events_with(client: &kube::Client, ns: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test]
async fn a_replica_set_creates_its_pods_reports_them_ready_and_scales_down() {
    let (c, rss) = cluster_with(rs_json("web", 3)).await;
    eventually("three pods exist", || async {
        pods_of(&c.client, "default").await.len() == 3
    })
    .await;
    // No double creation once the cache catches up.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pods = pods_of(&c.client, "default").await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "{name}"
        );
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ReplicaSet", Some(true))
        );
    }
    eventually("SuccessfulCreate events", || async {
        let evs = events_with(&c.client, "default", "SuccessfulCreate").await;
        evs.len() == 3
            && evs.iter().all(|e| {
                e.message
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("Created pod: web-")
            })
    })
    .await;
    mark_pods_ready(&c.client, "default").await;
    eventually("status counts ready and available pods", || async {
        let s = rss.get("web").await.expect("rs").status.unwrap_or_default();
        s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == Some(1)
    })
    .await;
    rss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale down");
    eventually("one pod is left and two deletions are reported", || async {
        pods_of(&c.client, "default").await.len() == 1
            && events_with(&c.client, "default", "SuccessfulDelete")
                .await
                .len()
                == 2
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn orphans_are_adopted_and_pods_that_stop_matching_are_released() {
    let c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let orphan: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &orphan)
        .await
        .expect("create orphan");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    rss.create(&PostParams::default(), &rs_json("web", 2))
        .await
        .expect("create rs");
    eventually("the orphan is adopted and one more pod made", || async {
        let all = pods_of(&c.client, "default").await;
        let adopted = all.iter().any(|p| {
            p.metadata.name.as_deref() == Some("orphan")
                && p.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|o| o[0].name == "web")
        });
        adopted && all.len() == 2
    })
    .await;
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .expect("relabel");
    eventually("the relabelled pod is released and replaced", || async {
        let all = pods_of(&c.client, "default").await;
        let released = all.iter().any(|p| {
            p.metadata.name.as_deref() == Some("orphan")
                && p.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.is_empty())
        });
        released && all.len() == 3
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_replication_controller_keeps_its_pods_through_the_same_sync() {
    let c = Cluster::start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(c.client.clone(), "default");
    let rc: ReplicationController = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 2,
            "selector": {"app": "legacy"},
            "template": {
                "metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .expect("rc");
    rcs.create(&PostParams::default(), &rc)
        .await
        .expect("create rc");
    eventually("two pods owned by the RC", || async {
        let all = pods_of(&c.client, "default").await;
        all.len() == 2
            && all.iter().all(|p| {
                p.metadata.owner_references.as_ref().is_some_and(|o| {
                    o[0].kind == "ReplicationController" && o[0].api_version == "v1"
                })
            })
    })
    .await;
    mark_pods_ready(&c.client, "default").await;
    eventually("the RC's status counts them ready", || async {
        let s = rcs
            .get("legacy")
            .await
            .expect("rc")
            .status
            .unwrap_or_default();
        s.replicas == 2 && s.ready_replicas == Some(2) && s.available_replicas == Some(2)
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_quota_refusal_sets_replica_failure_with_failed_create() {
    let c = Cluster::start().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(c.client.clone(), "default");
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pods"},
        "spec": {"hard": {"pods": "1"}}
    }))
    .expect("quota");
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota");
    eventually("the quota is tallied", || async {
        quotas
            .get("pods")
            .await
            .ok()
            .and_then(|q| q.status)
            .and_then(|s| s.hard)
            .is_some()
    })
    .await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    rss.create(&PostParams::default(), &rs_json("big", 3))
        .await
        .expect("create rs");
    eventually("ReplicaFailure FailedCreate is reported", || async {
        let s = rss.get("big").await.expect("rs").status.unwrap_or_default();
        s.conditions.unwrap_or_default().iter().any(|c| {
            c.type_ == "ReplicaFailure"
                && c.status == "True"
                && c.reason.as_deref() == Some("FailedCreate")
        })
    })
    .await;
    assert_eq!(pods_of(&c.client, "default").await.len(), 1);
    assert!(!events_with(&c.client, "default", "FailedCreate")
        .await
        .is_empty());
    c.stop().await;
}

#[tokio::test]
async fn many_quick_pod_status_changes_cost_a_few_status_writes_not_one_each() {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let (c, rss) = cluster_with(rs_json("many", 30)).await;
    let status = |rss: Api<ReplicaSet>| async move {
        let rs = rss.get("many").await.expect("rs");
        rs.status.unwrap_or_default()
    };
    eventually("30 pods are counted", || async {
        let s = status(rss.clone()).await;
        s.replicas == 30 && s.observed_generation == Some(1)
    })
    .await;
    // Let the last status write settle, then count every change of the set from here on.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let changes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = changes.clone();
    let config = watcher::Config::default().fields("metadata.name=many");
    let watch = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(rss.clone(), config));
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(_)) = ev {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    // 30 pods turn ready one after another, each its own status patch.
    mark_pods_ready(&c.client, "default").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    eventually("all 30 are counted ready", || async {
        let s = status(rss.clone()).await;
        s.ready_replicas == Some(30) && s.available_replicas == Some(30)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    watch.abort();
    let writes = changes.load(std::sync::atomic::Ordering::SeqCst);
    // Synced per pod change, the set's status would be written up to 30 times; batched
    // per 100 ms, as often as the patches span periods (they take well under a second).
    assert!(
        (1..=10).contains(&writes),
        "{writes} status writes for 30 pod changes"
    );
    c.stop().await;
}
