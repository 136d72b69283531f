//! VolumeAttributesClass protection (upstream's `volumeattributesclass-protection-controller`):
//! a class keeps its `kubernetes.io/vac-protection` finalizer while any PersistentVolumeClaim
//! or PersistentVolume names it, so deleting a class in use leaves it Terminating until the
//! last user lets it go. Classes created without the finalizer get it.
//!
//! A claim names a class in `spec.volumeAttributesClassName`, in
//! `status.currentVolumeAttributesClassName` or as the target of a modification in
//! progress; a volume in `spec.volumeAttributesClassName`.

use super::controller_utils::replace_finalizers;
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::VolumeAttributesClass;
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const FINALIZER: &str = "kubernetes.io/vac-protection";
pub const NAME: &str = "volumeattributesclass-protection-controller";
const WORKERS: usize = 1;

pub struct VacProtectionController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl VacProtectionController {
    pub fn new(ctx: Context) -> VacProtectionController {
        VacProtectionController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let classes = self.ctx.informers.typed::<VolumeAttributesClass>();
        let claims = self.ctx.informers.typed::<PersistentVolumeClaim>();
        let volumes = self.ctx.informers.typed::<PersistentVolume>();
        classes.synced().await?;
        claims.synced().await?;
        volumes.synced().await?;
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for(NAME),
            classes: classes.store(),
            claims: claims.store(),
            volumes: volumes.store(),
        });
        let class_store = classes.store();
        let mut class_changes = classes.subscribe();
        let mut users = futures::stream::select(
            claims.subscribe().map(|_| ()).boxed(),
            volumes.subscribe().map(|_| ()).boxed(),
        );
        let feed = self.queue.clone();
        let feeder = async move {
            loop {
                tokio::select! {
                    Some(c) = class_changes.next() => {
                        // Work to do unless the class is deleting and still used, which
                        // the reconcile finds out.
                        if let Change::Applied(vac) = c {
                            if next_finalizers(&vac, false).is_some() {
                                feed.add(vac.metadata.name.clone().unwrap_or_default());
                            }
                        }
                    }
                    // A claim or volume let a class go: recheck the classes waiting on users
                    // (few: only those being deleted).
                    Some(()) = users.next() => {
                        for vac in class_store.state().iter().filter(|v| waits_for_users(v)) {
                            feed.add(vac.metadata.name.clone().unwrap_or_default());
                        }
                    }
                    else => return,
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid(format!("{}: the informers' change feeds ended", Reconcile::NAME))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

/// Being deleted, held by our finalizer until no claim or volume names it.
fn waits_for_users(vac: &VolumeAttributesClass) -> bool {
    vac.metadata.deletion_timestamp.is_some()
        && vac
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
}

/// Whether a claim names `class` anywhere a class is in use.
pub fn claim_uses(pvc: &PersistentVolumeClaim, class: &str) -> bool {
    let spec = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.as_deref());
    let status = pvc.status.as_ref();
    let current = status.and_then(|s| s.current_volume_attributes_class_name.as_deref());
    let target = status
        .and_then(|s| s.modify_volume_status.as_ref())
        .and_then(|m| m.target_volume_attributes_class_name.as_deref());
    [spec, current, target].contains(&Some(class))
}

/// The finalizers `vac` should have instead of its own, if they differ: without ours once it
/// is being deleted and unused, with ours while it is not being deleted.
pub fn next_finalizers(vac: &VolumeAttributesClass, in_use: bool) -> Option<Vec<String>> {
    super::controller_utils::protection_finalizers(&vac.metadata, FINALIZER, in_use)
}

struct Reconcile {
    client: kube::Client,
    classes: Store<VolumeAttributesClass>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
}

impl Reconcile {
    fn in_use(&self, class: &str) -> bool {
        self.claims.state().iter().any(|c| claim_uses(c, class))
            || self.volumes.state().iter().any(|v| {
                v.spec
                    .as_ref()
                    .and_then(|s| s.volume_attributes_class_name.as_deref())
                    == Some(class)
            })
    }
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "vac-protection";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let Some(cached) = self.classes.get(&ObjectRef::new(name)) else {
            return Ok(Action::Done);
        };
        let in_use = waits_for_users(&cached) && self.in_use(name);
        let Some(finalizers) = next_finalizers(&cached, in_use) else {
            return Ok(Action::Done);
        };
        replace_finalizers(&self.client, cached.as_ref(), finalizers).await?;
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vac(deleting: bool, finalizers: &[&str]) -> VolumeAttributesClass {
        let mut v: VolumeAttributesClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gold", "finalizers": finalizers},
            "driverName": "example.com/csi"
        }))
        .expect("vac");
        if deleting {
            v.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
        }
        v
    }

    #[test]
    fn the_finalizer_stays_while_the_class_is_used_and_goes_once_it_is_not() {
        let other = "example.com/keep";
        assert_eq!(next_finalizers(&vac(true, &[other, FINALIZER]), true), None);
        assert_eq!(
            next_finalizers(&vac(true, &[other, FINALIZER]), false),
            Some(vec![other.to_string()])
        );
        assert_eq!(
            next_finalizers(&vac(false, &[other]), false),
            Some(vec![other.to_string(), FINALIZER.to_string()])
        );
        assert_eq!(next_finalizers(&vac(false, &[FINALIZER]), true), None);
        assert_eq!(next_finalizers(&vac(true, &[other]), false), None);
    }

    #[test]
    fn a_claim_uses_the_class_it_asks_for_has_or_is_moving_to() {
        let claim = |v: serde_json::Value| -> PersistentVolumeClaim {
            serde_json::from_value(v).expect("pvc")
        };
        let asks = claim(serde_json::json!({"spec": {"volumeAttributesClassName": "gold"}}));
        let has =
            claim(serde_json::json!({"status": {"currentVolumeAttributesClassName": "gold"}}));
        let moving = claim(serde_json::json!({"status": {"modifyVolumeStatus":
            {"targetVolumeAttributesClassName": "gold", "status": "InProgress"}}}));
        let other = claim(serde_json::json!({"spec": {"volumeAttributesClassName": "silver"}}));
        assert!(
            claim_uses(&asks, "gold") && claim_uses(&has, "gold") && claim_uses(&moving, "gold")
        );
        assert!(!claim_uses(&other, "gold"));
    }
}
