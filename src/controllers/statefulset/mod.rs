//! The StatefulSet controller (upstream's `pkg/controller/statefulset`): pods with stable
//! names `<set>-<ordinal>`, hostnames and claims, created and deleted in ordinal order
//! (`OrderedReady`) or all at once (`Parallel`), updated by revision (`RollingUpdate` with
//! `partition` and `maxUnavailable`, or `OnDelete`), with ControllerRevision history.
//!
//! [`identity`] owns what makes a pod the pod of an ordinal, [`plan`] the ordering and update
//! rules without I/O, `sync` the API calls and status.

pub mod identity;
pub mod plan;
mod sync;
#[cfg(test)]
mod tests;

use super::controller_utils::{key_of, owner_key, pod_owner_keys};
use super::history::History;
use super::pod_index::PodsByController;
use super::{run_workers, Context, ControllerError, Stats, WorkQueue};
use crate::events::Recorder;
use crate::informers::{Change, Informer};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use sync::CONTROLLER;

const WORKERS: usize = 2;

pub struct StatefulSetController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl StatefulSetController {
    pub fn new(ctx: Context) -> Self {
        StatefulSetController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let sets = self.ctx.informers.typed::<StatefulSet>();
        let pods = self.ctx.informers.typed::<Pod>();
        let revisions = self.ctx.informers.typed::<ControllerRevision>();
        let claims = self.ctx.informers.typed::<PersistentVolumeClaim>();
        sets.synced().await?;
        pods.synced().await?;
        revisions.synced().await?;
        claims.synced().await?;
        let client = self.ctx.client_for(CONTROLLER);
        // Seeded before any sync runs: an empty index would make every set look podless.
        let index = PodsByController::seeded(&pods.store());
        let reconciler = Arc::new(sync::Sync {
            client: client.clone(),
            sets: sets.store(),
            index: index.clone(),
            claims: claims.store(),
            history: History {
                client: client.clone(),
                revisions: revisions.store(),
                api_version: "apps/v1",
                kind: "StatefulSet",
            },
            recorder: Recorder::spawn_for(client, CONTROLLER),
        });
        let feeder = feed(sets, pods, revisions, index, self.queue.clone());
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid(format!("{CONTROLLER}: the informers' change feeds ended"))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

/// Sets changed, pods and revisions changed under their set; an orphan pod wakes every set
/// of its namespace that selects it. Each pod change reaches the index before its set is
/// queued.
async fn feed(
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    index: Arc<PodsByController>,
    queue: WorkQueue<String>,
) {
    let mut set_changes = sets.subscribe();
    let mut pod_changes = pods.subscribe();
    let mut rev_changes = revisions.subscribe();
    loop {
        tokio::select! {
            Some(change) = set_changes.next() => {
                let (Change::Applied(s) | Change::Deleted(s)) = change;
                queue.add(key_of(&s.metadata));
            }
            Some(change) = pod_changes.next() => {
                index.observe(&change);
                let (Change::Applied(p) | Change::Deleted(p)) = change;
                let keys = pod_owner_keys(
                    &p.metadata,
                    "StatefulSet",
                    || sets.store().state(),
                    |s| &s.metadata,
                    |s| s.spec.as_ref().map(|s| &s.selector),
                );
                for k in keys {
                    queue.add(k);
                }
            }
            Some(change) = rev_changes.next() => {
                let (Change::Applied(r) | Change::Deleted(r)) = change;
                if let Some(k) = owner_key(&r.metadata, "StatefulSet") {
                    queue.add(k);
                }
            }
            else => return,
        }
    }
}
