//! The local-path provisioner (k3s ships rancher's `local-path-provisioner` for the default
//! `local-path` class; skiff runs its job in-process under the binder's role): a claim the
//! binder handed to `rancher.io/local-path` gets a hostPath volume
//! `<storage dir>/<pv>_<ns>_<claim>` (`DirectoryOrCreate`) pinned by required node
//! affinity to the node the scheduler selected for its first consumer; a Released volume it
//! made whose reclaim policy is Delete is deleted. A claim grown in a class that allows
//! expansion has its volume's capacity follow (a directory has no size to change).
//!
//! The directory lives on the node, so the node's agent owns it (`kubelet::local_path`):
//! the kubelet creates it when it first mounts the volume and then puts
//! the `skiff.io/local-path-directory` finalizer on the volume; when the volume is deleted the kubelet removes the
//! directory and then the finalizer. So a volume object exists for as long as its directory
//! does, as upstream's helper pod (busybox `rm -rf` on the node) ensures, without needing an
//! image on the node.
//!
//! Invariant: the volume is named after the claim's uid, so a retried or repeated sync of
//! one claim makes at most one volume (a second create is AlreadyExists).

use super::matching::{
    claim_capacity, claim_class, claim_request, claim_volume, requested_storage, volume_capacity,
};
use super::{Key, ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, NAME};
use crate::api::strategy::cluster::LOCAL_PATH_PROVISIONER;
use crate::controllers::{
    run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue,
};
use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The node a volume was made on (rancher's annotation).
pub const ANN_NODE: &str = "local.path.provisioner/selected-node";

pub struct LocalPathProvisioner {
    ctx: Context,
    storage_dir: PathBuf,
    queue: WorkQueue<Key>,
}

impl LocalPathProvisioner {
    /// Volumes go under `storage_dir` on their node (`<data-dir>/storage` of the server).
    pub fn new(ctx: Context, storage_dir: PathBuf) -> LocalPathProvisioner {
        LocalPathProvisioner {
            ctx,
            storage_dir,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let volumes = self.ctx.informers.typed::<PersistentVolume>();
        let claims = self.ctx.informers.typed::<PersistentVolumeClaim>();
        let classes = self.ctx.informers.typed::<StorageClass>();
        volumes.synced().await?;
        claims.synced().await?;
        classes.synced().await?;
        let client = self.ctx.client_for(NAME);
        let reconciler = Arc::new(Provisioner {
            recorder: Recorder::spawn_for(client.clone(), LOCAL_PATH_PROVISIONER),
            client,
            storage_dir: self.storage_dir,
            volumes: volumes.store(),
            claims: claims.store(),
            classes: classes.store(),
        });
        let vol_keys = volumes.subscribe().filter_map(|c| async move {
            match c {
                Change::Applied(v) => v.metadata.name.clone().map(Key::Volume),
                Change::Deleted(_) => None,
            }
        });
        let claim_keys = claims.subscribe().filter_map(|c| async move {
            match c {
                Change::Applied(c) => Some(Key::Claim {
                    ns: c.metadata.namespace.clone()?,
                    name: c.metadata.name.clone()?,
                }),
                Change::Deleted(_) => None,
            }
        });
        let mut keys = futures::stream::select(vol_keys.boxed(), claim_keys.boxed());
        let feed = self.queue.clone();
        let feeder = async move {
            while let Some(k) = keys.next().await {
                feed.add(k);
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid("local-path provisioner: the informers' change feed ended".into())),
            _ = run_workers(reconciler, self.queue, 1, shutdown) => Ok(()),
        }
    }
}

struct Provisioner {
    client: kube::Client,
    recorder: Recorder,
    storage_dir: PathBuf,
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
}

fn ann<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The volume the provisioner makes for `claim` on `node`.
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    storage_dir: &std::path::Path,
) -> Result<PersistentVolume, serde_json::Error> {
    let uid = claim.metadata.uid.as_deref().unwrap_or_default();
    let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let pv_name = format!("pvc-{uid}");
    let spec = claim.spec.clone().unwrap_or_default();
    let request = requested_storage(claim).unwrap_or("0");
    let path = storage_dir.join(format!("{pv_name}_{ns}_{name}"));
    serde_json::from_value(json!({
        "metadata": {"name": pv_name, "annotations": {
            ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER, ANN_NODE: node}},
        "spec": {
            "capacity": {"storage": request},
            "accessModes": spec.access_modes.unwrap_or_default(),
            "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
            "storageClassName": claim_class(claim),
            "volumeMode": spec.volume_mode.as_deref().unwrap_or("Filesystem"),
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                         "name": name, "uid": uid,
                         "resourceVersion": claim.metadata.resource_version},
            "hostPath": {"path": path.to_string_lossy(), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    }))
}

impl Reconciler for Provisioner {
    type Key = Key;
    const NAME: &'static str = "local-path-provisioner";

    async fn reconcile(&self, key: &Key) -> Result<Action, ControllerError> {
        match key {
            Key::Claim { ns, name } => self.provision(ns, name).await,
            Key::Volume(name) => self.delete_released(name).await,
        }
    }
}

impl Provisioner {
    async fn provision(&self, ns: &str, name: &str) -> Result<Action, ControllerError> {
        let Some(claim) = self.claims.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        let unbound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default()
            .is_empty();
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        if !unbound {
            return self.expand(&claim).await;
        }
        if ann(&claim.metadata, ANN_STORAGE_PROVISIONER) != Some(LOCAL_PATH_PROVISIONER) {
            return Ok(Action::Done);
        }
        let Some(class) = self.classes.get(&ObjectRef::new(claim_class(&claim))) else {
            return Ok(Action::Done);
        };
        if class.provisioner != LOCAL_PATH_PROVISIONER {
            return Ok(Action::Done);
        }
        let pv_name = format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default());
        if self.volumes.get(&ObjectRef::new(&pv_name)).is_some() {
            return Ok(Action::Done);
        }
        let event = |type_, reason, msg: String| {
            self.recorder
                .event(object_ref(claim.as_ref()), type_, reason, msg)
        };
        let Some(node) = ann(&claim.metadata, ANN_SELECTED_NODE) else {
            // A directory is on one node: without a consumer's node there is no place.
            event(
                WARNING,
                "ProvisioningFailed",
                format!(
                    "failed to provision volume with StorageClass {:?}: configuration error, \
                     no node was specified",
                    claim_class(&claim)
                ),
            );
            return Ok(Action::Done);
        };
        event(
            NORMAL,
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
        );
        let pv = volume_for(&claim, &class, node, &self.storage_dir)
            .map_err(|e| ControllerError::Invalid(e.to_string()))?;
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::Done),
            Err(e) => {
                event(
                    WARNING,
                    "ProvisioningFailed",
                    format!(
                        "failed to provision volume with StorageClass {:?}: {e}",
                        claim_class(&claim)
                    ),
                );
                return Err(e.into());
            }
        }
        tracing::info!(volume = %pv_name, ns, claim = name, node, "provisioned a local-path volume");
        event(
            NORMAL,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {pv_name}"),
        );
        Ok(Action::Done)
    }

    /// A bound claim grown beyond the volume this provisioner made for it, in a class that
    /// allows expansion: as an external resizer, the volume's capacity follows the request,
    /// then the claim's status. A directory has no size to change on the node, so there is
    /// no node expansion step (upstream's FileSystemResizePending). The admission plugin has
    /// already refused growth in classes that do not allow it.
    async fn expand(&self, claim: &PersistentVolumeClaim) -> Result<Action, ControllerError> {
        let Some(class) = self.classes.get(&ObjectRef::new(claim_class(claim))) else {
            return Ok(Action::Done);
        };
        if class.provisioner != LOCAL_PATH_PROVISIONER || class.allow_volume_expansion != Some(true)
        {
            return Ok(Action::Done);
        }
        let volume_name = claim_volume(claim).to_owned();
        let Some(pv) = self.volumes.get(&ObjectRef::new(&volume_name)) else {
            return Ok(Action::Done);
        };
        // Only the claim the volume is bound to, once the binder has finished (a claim that
        // merely names the volume, or one whose status has no capacity yet, grows nothing).
        let bound_to_it = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid.is_some() && r.uid == claim.metadata.uid);
        let status = claim.status.as_ref();
        let status_capacity = claim_capacity(status);
        let (true, Some("Bound"), Some(status_capacity)) = (
            bound_to_it && ann(&pv.metadata, ANN_PROVISIONED_BY) == Some(LOCAL_PATH_PROVISIONER),
            status.and_then(|s| s.phase.as_deref()),
            status_capacity,
        ) else {
            return Ok(Action::Done);
        };
        let request = claim_request(claim);
        if request <= status_capacity {
            return Ok(Action::Done);
        }
        let wanted = requested_storage(claim).unwrap_or_default().to_owned();
        let event =
            |reason, msg: String| self.recorder.event(object_ref(claim), NORMAL, reason, msg);
        if volume_capacity(&pv) < request {
            event(
                "Resizing",
                format!("External resizer is resizing volume {volume_name}"),
            );
            // Updates on the versions read (the binder's role updates, as upstream's).
            let mut grown = (*pv).clone();
            if let Some(spec) = grown.spec.as_mut() {
                spec.capacity
                    .get_or_insert_with(Default::default)
                    .insert("storage".into(), Quantity(wanted.clone()));
            }
            Api::<PersistentVolume>::all(self.client.clone())
                .replace(&volume_name, &PostParams::default(), &grown)
                .await?;
        }
        let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
        let name = claim.metadata.name.as_deref().unwrap_or_default();
        let mut grown = claim.clone();
        let status = grown.status.get_or_insert_with(Default::default);
        let size = [("storage".to_string(), Quantity(wanted.clone()))];
        status.capacity = Some(size.clone().into());
        status.allocated_resources = Some(size.into());
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns)
            .replace_status(name, &PostParams::default(), &grown)
            .await?;
        tracing::info!(volume = %volume_name, ns, claim = name, size = %wanted, "expanded a local-path volume");
        event("VolumeResizeSuccessful", "Resize volume succeeded".into());
        Ok(Action::Done)
    }

    async fn delete_released(&self, name: &str) -> Result<Action, ControllerError> {
        let Some(v) = self.volumes.get(&ObjectRef::new(name)) else {
            return Ok(Action::Done);
        };
        let spec = v.spec.as_ref();
        let released = v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete =
            spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
        if !released
            || !delete
            || v.metadata.deletion_timestamp.is_some()
            || ann(&v.metadata, ANN_PROVISIONED_BY) != Some(LOCAL_PATH_PROVISIONER)
        {
            return Ok(Action::Done);
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: v.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::info!(volume = name, "deleting a released local-path volume");
        match api.delete(name, &dp).await {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}
