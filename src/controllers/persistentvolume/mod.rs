//! The PersistentVolume binder (upstream's `persistent-volume-binder`,
//! pkg/controller/volume/persistentvolume) and skiff's local-path provisioner.
//!
//! The binder owns the two-way link between a claim and a volume: `claimRef` on the volume,
//! `volumeName` plus the `bind-completed` annotation on the claim, and the phases of both.
//! It binds unbound claims to the smallest matching Available volume ([`matching`]), hands
//! claims no volume matches to their class's provisioner (the `storage-provisioner`
//! annotation and an `ExternalProvisioning` event), leaves claims of WaitForFirstConsumer
//! classes alone until the scheduler names a node for them, and marks volumes whose claim is
//! gone Released (Retain keeps them; Delete of a provisioned volume is its provisioner's
//! job). The provisioner for `rancher.io/local-path` is [`local_path`].
//!
//! Invariant: each link is written volume first, then claim, each as an update conditional
//! on the resourceVersion read, so a crash or conflict between the writes leaves a state the
//! next sync completes (a volume pointing at a claim that does not point back is finished,
//! never given to another claim).

mod binder;
pub mod local_path;
pub mod matching;
#[cfg(test)]
mod tests;

use super::{run_workers, ControllerError, Reconciler, Stats, WorkQueue};
use crate::events::Recorder;
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "persistent-volume-binder";
const WORKERS: usize = 2;

/// Set on a claim once the binder has finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose half of the link the binder (not the user) wrote.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Set on a claim the binder handed to a provisioner (and its beta spelling).
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set on a claim by the scheduler: the node its first consumer goes to.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a volume by the provisioner that made it.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// What the binder syncs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Claim { ns: String, name: String },
    Volume(String),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Claim { ns, name } => write!(f, "claim {ns}/{name}"),
            Key::Volume(name) => write!(f, "volume {name}"),
        }
    }
}

fn claim_key(ns: Option<&str>, name: Option<&str>) -> Option<Key> {
    Some(Key::Claim {
        ns: ns?.to_owned(),
        name: name?.to_owned(),
    })
}

pub struct PersistentVolumeController {
    ctx: super::Context,
    queue: WorkQueue<Key>,
}

impl PersistentVolumeController {
    pub fn new(ctx: super::Context) -> PersistentVolumeController {
        PersistentVolumeController {
            ctx,
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
        let reconciler = Arc::new(binder::Binder {
            recorder: Recorder::spawn_for(client.clone(), NAME),
            client,
            volumes: volumes.store(),
            claims: claims.store(),
            classes: classes.store(),
            queue: self.queue.clone(),
        });
        let feed = self.queue.clone();
        let vol_changes = volumes.subscribe().map(|c| match c {
            Change::Applied(v) | Change::Deleted(v) => {
                let r = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                let claim = r.and_then(|r| claim_key(r.namespace.as_deref(), r.name.as_deref()));
                (v.metadata.name.clone().map(Key::Volume), claim)
            }
        });
        let claim_changes = claims.subscribe().map(|c| match c {
            Change::Applied(c) => (
                claim_key(c.metadata.namespace.as_deref(), c.metadata.name.as_deref()),
                None,
            ),
            // A deleted claim releases its volume.
            Change::Deleted(c) => (
                c.spec
                    .as_ref()
                    .and_then(|s| s.volume_name.clone())
                    .filter(|v| !v.is_empty())
                    .map(Key::Volume),
                None,
            ),
        });
        let mut changes = futures::stream::select(vol_changes.boxed(), claim_changes.boxed());
        let feeder = async move {
            while let Some((a, b)) = changes.next().await {
                for k in [a, b].into_iter().flatten() {
                    feed.add(k);
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid(format!("{NAME}: the informers' change feed ended"))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

impl Reconciler for binder::Binder {
    type Key = Key;
    const NAME: &'static str = "persistentvolume-binder";

    async fn reconcile(&self, key: &Key) -> Result<super::Action, ControllerError> {
        match key {
            Key::Claim { ns, name } => self.sync_claim(ns, name).await,
            Key::Volume(name) => self.sync_volume(name).await,
        }
    }
}
