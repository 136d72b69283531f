//! The binder and the local-path provisioner against a real API server state.

use super::local_path::LocalPathProvisioner;
use super::*;
use crate::apiserver::testing::TestServer;
use crate::controllers::testing::eventually;
use crate::controllers::Context;
use crate::informers::Informers;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

struct Env {
    _srv: TestServer,
    client: kube::Client,
    storage: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start() -> Env {
    let srv = TestServer::start().await;
    let stop = CancellationToken::new();
    let kcm = srv.client_as(crate::apiserver::CONTROLLER_MANAGER_USER, &[]);
    let informers = Informers::new(kcm.clone(), stop.clone());
    let as_kcm = kcm.clone();
    let ctx = Context {
        client: kcm.clone(),
        informers: informers.clone(),
        clients: Arc::new(move |_| as_kcm.clone()),
        loopback: kcm,
        root_ca: "".into(),
        signing: None,
    };
    let storage = tempfile::tempdir().unwrap();
    tokio::spawn(informers.run());
    tokio::spawn(PersistentVolumeController::new(ctx.clone()).run(stop.clone()));
    // The admission chain protects claims and volumes with finalizers these remove.
    let pvc_protection =
        crate::controllers::pvc_protection::PvcProtectionController::new(ctx.clone());
    tokio::spawn(pvc_protection.run(stop.clone()));
    let pv_protection = crate::controllers::pv_protection::PvProtectionController::new(ctx.clone());
    tokio::spawn(pv_protection.run(stop.clone()));
    tokio::spawn(LocalPathProvisioner::new(ctx, storage.path().to_owned()).run(stop.clone()));
    Env {
        client: srv.admin(),
        _srv: srv,
        storage,
        stop,
    }
}

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .unwrap()
}

fn pv(name: &str, size: &str, policy: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
        "storageClassName": "manual", "persistentVolumeReclaimPolicy": policy,
        "hostPath": {"path": format!("/tmp/{name}")}}})
}

fn pvc(name: &str, size: &str, class: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": class,
        "resources": {"requests": {"storage": size}}}})
}

fn phase_of_pv(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn phase_of_pvc(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The reasons of the events in `default`.
async fn event_reasons(client: &kube::Client) -> Vec<String> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// Selects `node` for claim `name` as the scheduler would, and waits until it is Bound.
async fn select_node_and_wait_bound(pvcs: &Api<PersistentVolumeClaim>, name: &str, node: &str) {
    let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
    pvcs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the claim is Bound", || async {
        phase_of_pvc(&pvcs.get(name).await.unwrap()) == "Bound"
    })
    .await;
}

async fn pv_phase(api: &Api<PersistentVolume>, name: &str) -> Option<String> {
    api.get_opt(name)
        .await
        .unwrap()
        .map(|v| phase_of_pv(&v).to_owned())
}

#[tokio::test]
async fn a_pending_claim_binds_to_the_smallest_matching_volume_and_both_record_it() {
    let env = start().await;
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
    create(&pvs, pv("big", "5Gi", "Retain")).await;
    create(&pvs, pv("fits", "1Gi", "Retain")).await;
    eventually("both volumes are Available", || async {
        pv_phase(&pvs, "big").await.as_deref() == Some("Available")
            && pv_phase(&pvs, "fits").await.as_deref() == Some("Available")
    })
    .await;
    create(&pvcs, pvc("data", "1Gi", "manual")).await;
    eventually("the claim is Bound", || async {
        phase_of_pvc(&pvcs.get("data").await.unwrap()) == "Bound"
    })
    .await;
    let c = pvcs.get("data").await.unwrap();
    assert_eq!(
        c.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("fits")
    );
    let ann = c.metadata.annotations.clone().unwrap();
    assert_eq!(ann.get(ANN_BIND_COMPLETED).map(String::as_str), Some("yes"));
    assert_eq!(
        ann.get(ANN_BOUND_BY_CONTROLLER).map(String::as_str),
        Some("yes")
    );
    let st = c.status.unwrap();
    assert_eq!(st.capacity.unwrap()["storage"].0, "1Gi");
    assert_eq!(st.access_modes.unwrap(), vec!["ReadWriteOnce".to_string()]);
    let v = pvs.get("fits").await.unwrap();
    assert_eq!(phase_of_pv(&v), "Bound");
    let r = v.spec.unwrap().claim_ref.unwrap();
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref()),
        (Some("default"), Some("data"))
    );
    assert_eq!(r.uid, c.metadata.uid);
    assert_eq!(pv_phase(&pvs, "big").await.as_deref(), Some("Available"));
}

#[tokio::test]
async fn a_claim_naming_its_volume_binds_to_it_and_a_deleted_claim_releases_by_reclaim_policy() {
    let env = start().await;
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
    create(&pvs, pv("kept", "1Gi", "Retain")).await;
    create(&pvs, pv("dropped", "1Gi", "Delete")).await;
    let mut chosen = pvc("a", "1Gi", "manual");
    chosen["spec"]["volumeName"] = json!("dropped");
    create(&pvcs, chosen).await;
    eventually("the claim is Bound to the volume it named", || async {
        phase_of_pvc(&pvcs.get("a").await.unwrap()) == "Bound"
    })
    .await;
    create(&pvcs, pvc("b", "1Gi", "manual")).await;
    eventually("both claims are Bound", || async {
        let a = pvcs.get("a").await.unwrap();
        let b = pvcs.get("b").await.unwrap();
        phase_of_pvc(&a) == "Bound" && phase_of_pvc(&b) == "Bound"
    })
    .await;
    let a = pvcs.get("a").await.unwrap();
    assert_eq!(a.spec.unwrap().volume_name.as_deref(), Some("dropped"));
    // The user chose the volume: the claim's half was not the binder's.
    assert!(!a
        .metadata
        .annotations
        .unwrap()
        .contains_key(ANN_BOUND_BY_CONTROLLER));
    for n in ["a", "b"] {
        pvcs.delete(n, &DeleteParams::default()).await.unwrap();
    }
    eventually("Retain leaves the volume Released", || async {
        pv_phase(&pvs, "kept").await.as_deref() == Some("Released")
    })
    .await;
    // Delete on a volume no provisioner made: no plugin can delete it.
    eventually("Delete without a provisioner fails the volume", || async {
        pv_phase(&pvs, "dropped").await.as_deref() == Some("Failed")
    })
    .await;
}

#[tokio::test]
async fn a_first_consumer_claim_waits_for_a_node_then_gets_a_local_path_volume_there() {
    let env = start().await;
    let classes: Api<StorageClass> = Api::all(env.client.clone());
    if classes.get_opt("local-path").await.unwrap().is_none() {
        create(
            &classes,
            crate::api::strategy::cluster::local_path_storage_class(),
        )
        .await;
    }
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
    let c = create(&pvcs, pvc("data", "2Gi", "local-path")).await;
    let reasons = || event_reasons(&env.client);
    eventually("the claim waits for its first consumer", || async {
        reasons().await.iter().any(|r| r == "WaitForFirstConsumer")
    })
    .await;
    assert!(pvs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    // What the scheduler does once it picked a node for the claim's pod.
    select_node_and_wait_bound(&pvcs, "data", "node-1").await;
    let name = format!("pvc-{}", c.metadata.uid.clone().unwrap());
    let v = pvs.get(&name).await.unwrap();
    let ann = v.metadata.annotations.clone().unwrap();
    assert_eq!(ann[ANN_PROVISIONED_BY], "rancher.io/local-path");
    let spec = v.spec.clone().unwrap();
    let dir = env.storage.path().join(format!("{name}_default_data"));
    assert_eq!(spec.host_path.unwrap().path, dir.to_string_lossy());
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(spec.capacity.unwrap()["storage"].0, "2Gi");
    let term = &spec
        .node_affinity
        .unwrap()
        .required
        .unwrap()
        .node_selector_terms[0];
    let expr = &term.match_expressions.as_ref().unwrap()[0];
    assert_eq!(expr.key, "kubernetes.io/hostname");
    assert_eq!(expr.values.as_deref(), Some(&["node-1".to_string()][..]));
    let claim = pvcs.get("data").await.unwrap();
    let ann = claim.metadata.annotations.unwrap();
    assert_eq!(ann[ANN_STORAGE_PROVISIONER], "rancher.io/local-path");
    let seen = reasons().await;
    for r in [
        "ExternalProvisioning",
        "Provisioning",
        "ProvisioningSucceeded",
    ] {
        assert!(seen.iter().any(|s| s == r), "{r} in {seen:?}");
    }
    // Reclaim policy Delete: the provisioner deletes the volume once its claim is gone.
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    eventually("the volume is deleted", || async {
        pvs.get_opt(&name).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn growing_a_local_path_claim_is_refused_and_shrinking_below_capacity_is_invalid() {
    let env = start().await;
    let classes: Api<StorageClass> = Api::all(env.client.clone());
    if classes.get_opt("local-path").await.unwrap().is_none() {
        create(
            &classes,
            crate::api::strategy::cluster::local_path_storage_class(),
        )
        .await;
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
    create(&pvcs, pvc("data", "1Gi", "local-path")).await;
    let grow = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
    let err = pvcs
        .patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap_err();
    // Not bound yet: the spec may not change at all.
    assert!(
        err.to_string().contains("spec is immutable after creation"),
        "{err}"
    );
    let bound = json!({"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
    pvcs.patch_status("data", &PatchParams::default(), &Patch::Merge(&bound))
        .await
        .unwrap();
    let err = pvcs
        .patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "persistentvolumeclaims \"data\" is forbidden: only dynamically provisioned pvc can be \
         resized and the storageclass that provisions the pvc must support resize"
    );
    let shrink = json!({"spec": {"resources": {"requests": {"storage": "512Mi"}}}});
    let err = pvcs
        .patch("data", &PatchParams::default(), &Patch::Merge(&shrink))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("field can not be less than status.capacity"),
        "{err}"
    );
    // A claim whose volume is larger than its request (a hand-made volume) takes every
    // other update: a finalizer going, a label.
    let larger = json!({"status": {"capacity": {"storage": "2Gi"}}});
    pvcs.patch_status("data", &PatchParams::default(), &Patch::Merge(&larger))
        .await
        .unwrap();
    let label = json!({"metadata": {"labels": {"kept": "yes"}}});
    pvcs.patch("data", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_local_path_claim_grows_when_its_class_allows_expansion() {
    let env = start().await;
    let classes: Api<StorageClass> = Api::all(env.client.clone());
    create(
        &classes,
        json!({"metadata": {"name": "growing"}, "provisioner": "rancher.io/local-path",
               "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true}),
    )
    .await;
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
    let c = create(&pvcs, pvc("data", "1Gi", "growing")).await;
    select_node_and_wait_bound(&pvcs, "data", "node-1").await;
    let grow = json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}});
    pvcs.patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap();
    let name = format!("pvc-{}", c.metadata.uid.clone().unwrap());
    let capacity = |s: Option<&std::collections::BTreeMap<String, Quantity>>| {
        s.and_then(|c| c.get("storage")).map(|q| q.0.clone())
    };
    eventually("the claim's capacity follows its request", || async {
        let claim = pvcs.get("data").await.unwrap();
        capacity(claim.status.as_ref().and_then(|s| s.capacity.as_ref())).as_deref() == Some("3Gi")
    })
    .await;
    let v = pvs.get(&name).await.unwrap();
    assert_eq!(
        capacity(v.spec.as_ref().and_then(|s| s.capacity.as_ref())).as_deref(),
        Some("3Gi")
    );
    let claim = pvcs.get("data").await.unwrap();
    assert_eq!(
        capacity(
            claim
                .status
                .as_ref()
                .and_then(|s| s.allocated_resources.as_ref())
        )
        .as_deref(),
        Some("3Gi")
    );
    // Events are recorded in the background: they follow the writes.
    eventually("Resizing and VolumeResizeSuccessful events", || async {
        let reasons = event_reasons(&env.client).await;
        ["Resizing", "VolumeResizeSuccessful"]
            .iter()
            .all(|r| reasons.iter().any(|s| s == r))
    })
    .await;
}

/// The binder gives a claim its volume's capacity only as it becomes Bound: a volume grown
/// afterwards (by its resizer, before the claim's status) leaves the claim's capacity to the
/// resizer, and a lost claim has no access modes or capacity.
#[test]
fn a_bound_claims_capacity_is_the_volumes_only_when_it_becomes_bound() {
    use super::binder::claim_status_for;
    let volume = |size: &str| -> PersistentVolume {
        serde_json::from_value(pv("v", size, "Retain")).unwrap()
    };
    let storage = |st: &k8s_openapi::api::core::v1::PersistentVolumeClaimStatus| {
        st.capacity.as_ref().map(|c| c["storage"].0.clone())
    };
    let pending = Default::default();
    let bound = claim_status_for(&pending, "Bound", Some(&volume("1Gi")));
    assert_eq!(bound.phase.as_deref(), Some("Bound"));
    assert_eq!(storage(&bound).as_deref(), Some("1Gi"));
    assert_eq!(bound.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    // The volume grew before the resizer wrote the claim: the claim still says 1Gi.
    let again = claim_status_for(&bound, "Bound", Some(&volume("3Gi")));
    assert_eq!(again, bound);
    // A claim that was bound before (its phase lost) takes the larger of the two.
    let mut was_lost = bound.clone();
    was_lost.phase = Some("Lost".into());
    let rebound = claim_status_for(&was_lost, "Bound", Some(&volume("3Gi")));
    assert_eq!(storage(&rebound).as_deref(), Some("3Gi"));
    let rebound_smaller = claim_status_for(&was_lost, "Bound", Some(&volume("512Mi")));
    assert_eq!(storage(&rebound_smaller).as_deref(), Some("1Gi"));
    let lost = claim_status_for(&bound, "Lost", None);
    assert_eq!((lost.access_modes, lost.capacity), (None, None));
}
