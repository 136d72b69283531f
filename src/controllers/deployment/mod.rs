//! The Deployment controller (upstream's `pkg/controller/deployment`): each deployment
//! owns one ReplicaSet per pod template (named `<deployment>-<pod-template-hash>`), rolls
//! from old to new by its strategy (RollingUpdate within maxSurge/maxUnavailable, or
//! Recreate), scales proportionally when replicas change mid-rollout, keeps revision
//! history within `revisionHistoryLimit`, and reports status and the `Progressing`,
//! `Available` and `ReplicaFailure` conditions `kubectl rollout status` reads.
//!
//! Invariants: the controller acts only through replica sets (never on pods); a paused
//! deployment is scaled but never rolled; every sync is recomputed from the caches, so a
//! restart resumes any rollout where it stood.

mod history;
pub mod progress;
mod recreate;
mod rolling;
mod sync;
#[cfg(test)]
mod tests;
pub mod util;
#[cfg(test)]
mod util_tests;

use super::controller_utils::{controller_ref, Selector};
use super::{run_workers, Context, ControllerError, Stats, WorkQueue};
use crate::events::Recorder;
use crate::informers::{Change, Informer};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 4;
const NAME: &str = "deployment-controller";

pub struct DeploymentController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl DeploymentController {
    pub fn new(ctx: Context) -> Self {
        DeploymentController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let deployments = self.ctx.informers.typed::<Deployment>();
        let replica_sets = self.ctx.informers.typed::<ReplicaSet>();
        let pods = self.ctx.informers.typed::<Pod>();
        deployments.synced().await?;
        replica_sets.synced().await?;
        pods.synced().await?;
        let client = self.ctx.client_for(NAME);
        let recorder = Recorder::spawn_for(client.clone(), NAME);
        let reconciler = Arc::new(sync::Sync {
            client,
            deployments: deployments.store(),
            replica_sets: replica_sets.store(),
            pods: pods.store(),
            recorder,
            written: Default::default(),
        });
        let feed = feed(deployments, replica_sets, pods, self.queue.clone());
        tokio::select! {
            _ = feed => Err(ControllerError::Invalid(format!("{NAME}: the informers' change feeds ended"))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

fn key(ns: Option<&str>, name: &str) -> String {
    format!("{}/{name}", ns.unwrap_or_default())
}

/// The deployment controlling `rs`, or for an orphan every deployment whose selector
/// matches it (one of them may adopt it).
fn deployments_for(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<String> {
    let ns = rs.metadata.namespace.as_deref();
    match controller_ref(&rs.metadata) {
        Some(r) if r.kind == "Deployment" => vec![key(ns, &r.name)],
        Some(_) => vec![],
        None => deployments
            .state()
            .iter()
            .filter(|d| d.metadata.namespace.as_deref() == ns)
            .filter(|d| {
                Selector::new(d.spec.as_ref().map(|s| &s.selector))
                    .matches(rs.metadata.labels.as_ref())
            })
            .map(|d| key(ns, d.metadata.name.as_deref().unwrap_or_default()))
            .collect(),
    }
}

async fn feed(
    deployments: Informer<Deployment>,
    replica_sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    queue: WorkQueue<String>,
) {
    let mut d_changes = deployments.subscribe();
    let mut rs_changes = replica_sets.subscribe();
    let mut pod_changes = pods.subscribe();
    let d_store = deployments.store();
    let rs_store = replica_sets.store();
    loop {
        tokio::select! {
            Some(change) = d_changes.next() => {
                let (Change::Applied(d) | Change::Deleted(d)) = change;
                queue.add(key(d.metadata.namespace.as_deref(), d.metadata.name.as_deref().unwrap_or_default()));
            }
            Some(change) = rs_changes.next() => {
                let (Change::Applied(rs) | Change::Deleted(rs)) = change;
                for k in deployments_for(&rs, &d_store) {
                    queue.add(k);
                }
            }
            Some(change) = pod_changes.next() => {
                // Only a pod's departure matters: Recreate waits for old pods to be gone.
                let gone = match &change {
                    Change::Deleted(p) => Some(p),
                    Change::Applied(p) if p.metadata.deletion_timestamp.is_some() => Some(p),
                    Change::Applied(_) => None,
                };
                let Some(pod) = gone else { continue };
                let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else { continue };
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                if let Some(rs) = rs_store.get(&ObjectRef::new(&r.name).within(&ns)) {
                    if let Some(dr) = controller_ref(&rs.metadata).filter(|d| d.kind == "Deployment") {
                        queue.add(key(Some(&ns), &dr.name));
                    }
                }
            }
            else => return,
        }
    }
}
