//! The StatefulSet controller against a real API on a temp store (pods made ready by hand:
//! there is no kubelet).

use crate::controllers::history::CONTROLLER_REVISION_HASH;
use crate::controllers::testing::{eventually, live_pods, mark_pods_ready, Cluster};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn sts(name: &str, replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut v = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}
            }
        }
    });
    if let (Some(spec), serde_json::Value::Object(extra)) = (v["spec"].as_object_mut(), extra) {
        spec.extend(extra);
    }
    serde_json::from_value(v).expect("valid statefulset")
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

fn revision(p: &Pod) -> String {
    p.metadata.labels.as_ref().expect("labels")[CONTROLLER_REVISION_HASH].clone()
}

async fn get_sts(client: &kube::Client, name: &str) -> StatefulSet {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    api.get(name).await.expect("get statefulset")
}

/// Plays the kubelet until `want` pods exist and all are ready.
async fn run_until_ready(client: &kube::Client, want: &[&str]) {
    eventually(&format!("pods {want:?} ready"), || async {
        mark_pods_ready(client, "default").await;
        let pods = live_pods(client).await;
        names(&pods) == want
            && pods
                .iter()
                .all(crate::controllers::controller_utils::is_pod_ready)
    })
    .await;
}

#[tokio::test]
async fn ordered_ready_creates_one_pod_at_a_time_with_stable_identity_and_claims() {
    let c = Cluster::start().await;
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "default");
    let extra = json!({"volumeClaimTemplates": [{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }]});
    api.create(&PostParams::default(), &sts("web", 3, extra))
        .await
        .expect("create");
    eventually("web-0 exists", || async {
        names(&live_pods(&c.client).await) == ["web-0"]
    })
    .await;
    // Nothing more until web-0 is ready.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pods = live_pods(&c.client).await;
    assert_eq!(names(&pods), ["web-0"]);
    let p = &pods[0];
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let labels = p.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "0");
    let vol = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "data")
        .expect("data volume");
    assert_eq!(
        vol.persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("data-web-0")
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "default");
    let claim = claims.get("data-web-0").await.expect("claim created");
    assert_eq!(
        claim.metadata.labels.as_ref().expect("labels")["app"],
        "web"
    );

    run_until_ready(&c.client, &["web-0", "web-1", "web-2"]).await;
    let revs: Api<ControllerRevision> = Api::namespaced(c.client.clone(), "default");
    let list = revs.list(&ListParams::default()).await.expect("revisions");
    assert_eq!(list.items.len(), 1);
    let rev_name = list.items[0].metadata.name.clone().expect("name");
    assert_eq!(list.items[0].revision, 1);
    eventually("status counts every pod ready and current", || async {
        let s = get_sts(&c.client, "web").await.status.unwrap_or_default();
        s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.current_replicas == Some(3)
            && s.current_revision.as_deref() == Some(rev_name.as_str())
            && s.update_revision.as_deref() == Some(rev_name.as_str())
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn scale_down_removes_the_highest_ordinal_and_when_scaled_delete_drops_its_claim() {
    let c = Cluster::start().await;
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "default");
    let extra = json!({
        "podManagementPolicy": "Parallel",
        "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"},
        "volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]
    });
    api.create(&PostParams::default(), &sts("db", 3, extra))
        .await
        .expect("create");
    run_until_ready(&c.client, &["db-0", "db-1", "db-2"]).await;
    let patch = json!({"spec": {"replicas": 2}});
    api.patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scale down");
    eventually("db-2 is gone", || async {
        names(&live_pods(&c.client).await) == ["db-0", "db-1"]
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "default");
    eventually("the claim of db-2 is deleted with it", || async {
        let names: Vec<String> = claims
            .list(&ListParams::default())
            .await
            .expect("claims")
            .items
            .into_iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(|c| c.metadata.name)
            .collect();
        names == ["data-db-0", "data-db-1"]
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_partitioned_rolling_update_replaces_only_ordinals_at_or_above_the_partition() {
    let c = Cluster::start().await;
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "default");
    let extra = json!({"revisionHistoryLimit": 1});
    api.create(&PostParams::default(), &sts("web", 3, extra))
        .await
        .expect("create");
    run_until_ready(&c.client, &["web-0", "web-1", "web-2"]).await;
    let old_rev = revision(&live_pods(&c.client).await[0]);
    let patch = json!({"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}
    }});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("update template");
    eventually("web-1 and web-2 run the new revision", || async {
        mark_pods_ready(&c.client, "default").await;
        let pods = live_pods(&c.client).await;
        let revs: Vec<String> = pods.iter().map(revision).collect();
        pods.len() == 3
            && revs[0] == old_rev
            && revs[1] != old_rev
            && revs[2] != old_rev
            && pods
                .iter()
                .all(crate::controllers::controller_utils::is_pod_ready)
    })
    .await;
    let new_rev = revision(&live_pods(&c.client).await[2]);
    eventually(
        "status tells current and update revisions apart",
        || async {
            let s = get_sts(&c.client, "web").await.status.unwrap_or_default();
            s.updated_replicas == Some(2)
                && s.current_revision.as_deref() == Some(old_rev.as_str())
                && s.update_revision.as_deref() == Some(new_rev.as_str())
        },
    )
    .await;

    // Dropping the partition finishes the rollout and makes the new revision current; a third
    // template then leaves one unused revision beyond the limit of 1, which is deleted.
    let patch = json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("drop partition");
    eventually("every pod runs the new revision", || async {
        mark_pods_ready(&c.client, "default").await;
        let s = get_sts(&c.client, "web").await.status.unwrap_or_default();
        s.current_revision.as_deref() == Some(new_rev.as_str()) && s.ready_replicas == Some(3)
    })
    .await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:3"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("third template");
    let revs: Api<ControllerRevision> = Api::namespaced(c.client.clone(), "default");
    eventually(
        "the rollout completes and history keeps one old revision",
        || async {
            mark_pods_ready(&c.client, "default").await;
            let s = get_sts(&c.client, "web").await.status.unwrap_or_default();
            let list = revs.list(&ListParams::default()).await.expect("revisions");
            let names: Vec<String> = list
                .items
                .iter()
                .filter_map(|r| r.metadata.name.clone())
                .collect();
            s.current_revision == s.update_revision
                && s.updated_replicas == Some(3)
                && names.len() == 2
                && names.contains(&new_rev)
                && !names.contains(&old_rev)
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test]
async fn rolling_back_to_an_old_template_reuses_its_revision_with_a_new_number() {
    let c = Cluster::start().await;
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "default");
    let extra = json!({"podManagementPolicy": "Parallel"});
    api.create(&PostParams::default(), &sts("app", 1, extra))
        .await
        .expect("create");
    run_until_ready(&c.client, &["app-0"]).await;
    let first = revision(&live_pods(&c.client).await[0]);
    let image = |i: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": i}]}}}});
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Strategic(&image("busybox:2")),
    )
    .await
    .expect("update");
    eventually("app-0 is replaced", || async {
        mark_pods_ready(&c.client, "default").await;
        live_pods(&c.client)
            .await
            .iter()
            .any(|p| revision(p) != first)
    })
    .await;
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Strategic(&image("busybox:1")),
    )
    .await
    .expect("roll back");
    let revs: Api<ControllerRevision> = Api::namespaced(c.client.clone(), "default");
    eventually("the first revision is reused as revision 3", || async {
        mark_pods_ready(&c.client, "default").await;
        let pods = live_pods(&c.client).await;
        let list = revs.list(&ListParams::default()).await.expect("revisions");
        list.items.len() == 2
            && list
                .items
                .iter()
                .any(|r| r.metadata.name.as_deref() == Some(first.as_str()) && r.revision == 3)
            && pods.iter().all(|p| revision(p) == first)
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn ordinals_start_at_spec_ordinals_start_and_when_deleted_delete_claims_go_with_the_set() {
    let c = Cluster::start().await;
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "default");
    let extra = json!({
        "podManagementPolicy": "Parallel",
        "ordinals": {"start": 5},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
        "volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]
    });
    api.create(&PostParams::default(), &sts("kv", 2, extra))
        .await
        .expect("create");
    run_until_ready(&c.client, &["kv-5", "kv-6"]).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "default");
    let claim = claims.get("data-kv-5").await.expect("claim of kv-5");
    let owners = claim.metadata.owner_references.unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].kind, "StatefulSet");
    assert_ne!(owners[0].controller, Some(true));

    api.delete("kv", &Default::default())
        .await
        .expect("delete set");
    eventually("the claims are collected with the set", || async {
        claims
            .list(&ListParams::default())
            .await
            .expect("claims")
            .items
            .iter()
            .all(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn an_orphan_pod_with_a_member_name_is_adopted_and_given_its_identity_labels() {
    let c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "db-0", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}
    }))
    .expect("pod");
    let uid = pods
        .create(&PostParams::default(), &orphan)
        .await
        .expect("create orphan")
        .metadata
        .uid;
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "default");
    let extra = json!({"updateStrategy": {"type": "OnDelete"}});
    api.create(&PostParams::default(), &sts("db", 1, extra))
        .await
        .expect("create");
    eventually("db-0 is owned and labelled", || async {
        let p = pods.get("db-0").await.expect("db-0");
        let labels = p.metadata.labels.clone().unwrap_or_default();
        p.metadata.uid == uid
            && p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.kind == "StatefulSet" && r.controller == Some(true))
            && labels
                .get("statefulset.kubernetes.io/pod-name")
                .map(String::as_str)
                == Some("db-0")
            && labels
                .get("apps.kubernetes.io/pod-index")
                .map(String::as_str)
                == Some("0")
    })
    .await;
    c.stop().await;
}
