//! PV protection (upstream's `pv-protection-controller`): a PersistentVolume keeps its
//! `kubernetes.io/pv-protection` finalizer while it is Bound, so deleting a volume a claim
//! still uses leaves it Terminating until the claim lets it go (Released). Volumes created
//! without the finalizer get it.

use super::controller_utils::replace_finalizers;
use super::{run_on_informer, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const FINALIZER: &str = "kubernetes.io/pv-protection";
pub const NAME: &str = "pv-protection-controller";
const WORKERS: usize = 1;

pub struct PvProtectionController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl PvProtectionController {
    pub fn new(ctx: Context) -> PvProtectionController {
        PvProtectionController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let informer = self.ctx.informers.typed::<PersistentVolume>();
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for(NAME),
            volumes: informer.store(),
        });
        let key_of = |change: &Change<PersistentVolume>| match change {
            Change::Applied(pv) if next_finalizers(pv).is_some() => pv.metadata.name.clone(),
            _ => None,
        };
        run_on_informer(informer, key_of, reconciler, self.queue, WORKERS, shutdown).await
    }
}

/// The finalizers `pv` should have instead of its own, if they differ: without ours when it
/// is being deleted and no claim is bound to it, with ours when it is not being deleted.
pub fn next_finalizers(pv: &PersistentVolume) -> Option<Vec<String>> {
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    super::controller_utils::protection_finalizers(&pv.metadata, FINALIZER, bound)
}

struct Reconcile {
    client: kube::Client,
    volumes: Store<PersistentVolume>,
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "pv-protection";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let Some(cached) = self.volumes.get(&ObjectRef::new(name)) else {
            return Ok(Action::Done);
        };
        let Some(finalizers) = next_finalizers(&cached) else {
            return Ok(Action::Done);
        };
        replace_finalizers(&self.client, cached.as_ref(), finalizers).await?;
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(deleting: bool, finalizers: &[&str], phase: &str) -> PersistentVolume {
        let mut pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "v", "finalizers": finalizers},
            "status": {"phase": phase}
        }))
        .expect("pv");
        if deleting {
            pv.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
        }
        pv
    }

    #[test]
    fn the_finalizer_stays_while_bound_and_goes_once_released() {
        let other = "example.com/keep";
        assert_eq!(
            next_finalizers(&pv(true, &[other, FINALIZER], "Bound")),
            None
        );
        assert_eq!(
            next_finalizers(&pv(true, &[other, FINALIZER], "Released")),
            Some(vec![other.to_string()])
        );
        assert_eq!(
            next_finalizers(&pv(false, &[other], "Available")),
            Some(vec![other.to_string(), FINALIZER.to_string()])
        );
        assert_eq!(next_finalizers(&pv(false, &[FINALIZER], "Bound")), None);
        assert_eq!(next_finalizers(&pv(true, &[other], "Released")), None);
    }
}
