//! The DaemonSet controller (upstream's `pkg/controller/daemon`): one pod per eligible node
//! (node selector, required node affinity, taints against the template's and the default
//! daemon tolerations), placed through the scheduler by a node-name affinity term, replaced
//! by revision (`RollingUpdate` with `maxUnavailable`/`maxSurge`, or `OnDelete`), with
//! ControllerRevision history.
//!
//! [`placement`] owns node eligibility and the pod for a node, [`plan`] the per-node steps
//! and update rules without I/O, `sync` the API calls and status.

pub mod placement;
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
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use sync::CONTROLLER;

const WORKERS: usize = 2;

pub struct DaemonSetController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl DaemonSetController {
    pub fn new(ctx: Context) -> Self {
        DaemonSetController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let sets = self.ctx.informers.typed::<DaemonSet>();
        let pods = self.ctx.informers.typed::<Pod>();
        let nodes = self.ctx.informers.typed::<Node>();
        let revisions = self.ctx.informers.typed::<ControllerRevision>();
        sets.synced().await?;
        pods.synced().await?;
        nodes.synced().await?;
        revisions.synced().await?;
        let client = self.ctx.client_for(CONTROLLER);
        // Seeded before any sync runs: an empty index would make every set look podless.
        let index = PodsByController::seeded(&pods.store());
        let reconciler = Arc::new(sync::Sync {
            client: client.clone(),
            sets: sets.store(),
            index: index.clone(),
            nodes: nodes.store(),
            history: History {
                client: client.clone(),
                revisions: revisions.store(),
                api_version: "apps/v1",
                kind: "DaemonSet",
            },
            recorder: Recorder::spawn_for(client, CONTROLLER),
            creating: Default::default(),
            deleting: Default::default(),
            failed_backoff: Default::default(),
        });
        let feeder = feed(sets, pods, nodes, revisions, index, self.queue.clone());
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid(format!("{CONTROLLER}: the informers' change feeds ended"))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

/// Daemon sets changed, pods and revisions changed under their set, orphan pods wake the
/// sets selecting them, and a node change (new node, labels, taints, readiness) wakes every
/// set.
async fn feed(
    sets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
    index: Arc<PodsByController>,
    queue: WorkQueue<String>,
) {
    let mut set_changes = sets.subscribe();
    let mut pod_changes = pods.subscribe();
    let mut node_changes = nodes.subscribe();
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
                    "DaemonSet",
                    || sets.store().state(),
                    |s| &s.metadata,
                    |s| s.spec.as_ref().map(|s| &s.selector),
                );
                for k in keys {
                    queue.add(k);
                }
            }
            Some(_) = node_changes.next() => {
                for s in sets.store().state() {
                    queue.add(key_of(&s.metadata));
                }
            }
            Some(change) = rev_changes.next() => {
                let (Change::Applied(r) | Change::Deleted(r)) = change;
                if let Some(k) = owner_key(&r.metadata, "DaemonSet") {
                    queue.add(k);
                }
            }
            else => return,
        }
    }
}
