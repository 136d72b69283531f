//! The ReplicaSet controller and, over the same code, the ReplicationController manager
//! (upstream's `pkg/controller/replicaset`): each object keeps `spec.replicas` active pods
//! matching its selector, created from its template with a controller reference.
//!
//! Invariants:
//! - A sync creates or deletes pods only when the [`expectations::Expectations`] of its
//!   previous sync are met, so a lagging pod cache never causes double creation.
//! - Pods are created in slow-start batches of at most [`BURST_REPLICAS`] per sync; a scale
//!   down deletes the least valuable pods first ([`ranking`]).
//! - Orphans the selector matches are adopted, owned pods it no longer matches released.
//! - Status (`replicas`, `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas`,
//!   `terminatingReplicas`, `observedGeneration`, the `ReplicaFailure` condition) is written
//!   only when it changed.
//! - Changes that can only move status counts (a pod it has, changed in place; a pod's
//!   arrival or departure while the expectations still wait for more; the object itself
//!   with its spec already observed, most often its own status write) are synced once per
//!   [`STATUS_BATCH_PERIOD`]; the arrival or departure that meets the expectations, an
//!   unexpected one, and spec changes at once.
//!
//! [`BURST_REPLICAS`]: super::controller_utils::BURST_REPLICAS

pub mod expectations;
pub mod kinds;
pub mod ranking;
mod sync;
#[cfg(test)]
mod tests;

use super::controller_utils::{controller_ref, key_of, Selector};
use super::pod_index::PodsByController;
use super::{run_workers, Context, ControllerError, Stats, WorkQueue};
use crate::events::Recorder;
use crate::informers::{Change, Informer};
use expectations::Expectations;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kinds::Replicated;
use kube::runtime::reflector::Store;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 4;

/// How long the status-only pod changes of one object are gathered into one sync. Each
/// sync walks all of the object's pods and may write its status, and a ReplicaSet of 3,000
/// starting pods sees thousands of such changes a second; upstream's Job controller batches
/// its pod updates the same way (for 1 s). The counts in status lag by at most this.
const STATUS_BATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// The controller of one [`Replicated`] kind.
pub struct ReplicaController<K> {
    ctx: Context,
    queue: WorkQueue<String>,
    kind: PhantomData<K>,
}

/// `ReplicaSet`s.
pub type ReplicaSetController = ReplicaController<k8s_openapi::api::apps::v1::ReplicaSet>;
/// `ReplicationController`s.
pub type ReplicationManager = ReplicaController<k8s_openapi::api::core::v1::ReplicationController>;

impl<K: Replicated> ReplicaController<K> {
    pub fn new(ctx: Context) -> Self {
        ReplicaController {
            ctx,
            queue: WorkQueue::new(),
            kind: PhantomData,
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let objects = self.ctx.informers.typed::<K>();
        let pods = self.ctx.informers.typed::<Pod>();
        objects.synced().await?;
        pods.synced().await?;
        let client = self.ctx.client_for(K::CONTROLLER);
        let recorder = Recorder::spawn_for(client.clone(), K::CONTROLLER);
        let expectations = Arc::new(Expectations::default());
        // Seeded before any sync runs: an empty index would make every object look podless.
        let index = PodsByController::seeded(&pods.store());
        let reconciler = Arc::new(sync::Sync::<K> {
            client,
            objects: objects.store(),
            expectations: expectations.clone(),
            index: index.clone(),
            recorder,
        });
        let feeder = Feeder {
            objects: objects.clone(),
            pods: pods.clone(),
            queue: self.queue.clone(),
            expectations,
            index,
            known: seed_known::<K>(&pods.store()),
        };
        tokio::select! {
            _ = feeder.run() => Err(ControllerError::Invalid(format!("{}: the informers' change feeds ended", K::CONTROLLER))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

/// The key of the object of kind `K` controlling `pod`, if one does.
fn owner_key<K: Replicated>(pod: &Pod) -> Option<String> {
    let r = controller_ref(&pod.metadata)?;
    (r.kind == K::kind(&()) && r.api_version == K::api_version(&())).then(|| {
        format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            r.name
        )
    })
}

/// Pods already in the cache when the controller starts: their first appearance on the
/// change feed is not a creation this controller may be waiting for.
fn seed_known<K: Replicated>(pods: &Store<Pod>) -> HashMap<String, Option<String>> {
    pods.state()
        .iter()
        .map(|p| {
            (
                p.metadata.uid.clone().unwrap_or_default(),
                owner_key::<K>(p),
            )
        })
        .collect()
}

/// Whether the last sync already saw this object's spec and it is not being deleted: a
/// change of it then is most likely the controller's own status write coming back.
/// Upstream syncs on each (its client's rate limit paces the writes); batched, a large
/// set's status writes no longer chain syncs of all its pods back to back.
fn spec_observed<K: Replicated>(o: &K) -> bool {
    let meta = o.meta();
    meta.deletion_timestamp.is_none()
        && meta.generation.is_some()
        && o.observed_generation() == meta.generation
}

/// Turns object and pod changes into keys, and pod arrivals and departures into observed
/// expectations.
struct Feeder<K: Replicated> {
    objects: Informer<K>,
    pods: Informer<Pod>,
    queue: WorkQueue<String>,
    expectations: Arc<Expectations>,
    /// Kept before any key is queued, so a sync finds the pods that queued it.
    index: Arc<PodsByController>,
    /// pod uid → key of its controller of kind `K` when last seen.
    known: HashMap<String, Option<String>>,
}

impl<K: Replicated> Feeder<K> {
    async fn run(mut self) {
        let mut objects = self.objects.subscribe();
        let mut pods = self.pods.subscribe();
        loop {
            tokio::select! {
                Some(change) = objects.next() => match change {
                    Change::Applied(o) => {
                        let key = key_of(o.meta());
                        if spec_observed(o.as_ref()) {
                            self.queue.add_batched(key, STATUS_BATCH_PERIOD);
                        } else {
                            self.queue.add(key);
                        }
                    }
                    Change::Deleted(o) => {
                        let key = key_of(o.meta());
                        self.expectations.forget(&key);
                        self.queue.add(key);
                    }
                },
                Some(change) = pods.next() => self.pod_changed(change),
                else => return,
            }
        }
    }

    fn pod_changed(&mut self, change: Change<Pod>) {
        self.index.observe(&change);
        let (pod, deleted) = match &change {
            Change::Applied(p) => (p, false),
            Change::Deleted(p) => (p, true),
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let key = owner_key::<K>(pod);
        let previous = if deleted {
            self.known.remove(&uid)
        } else {
            self.known.insert(uid, key.clone())
        };
        if let Some(k) = &key {
            if previous.is_none() && !deleted {
                self.expectations.creation_observed(k);
            }
            if deleted || pod.metadata.deletion_timestamp.is_some() {
                self.expectations.deletion_observed(k, name);
            }
        }
        // A pod whose controller changed (released, re-adopted) concerns the old one too.
        let same_controller = previous.as_ref() == Some(&key);
        if let Some(Some(old)) = previous {
            if Some(&old) != key.as_ref() {
                self.queue.add(old);
            }
        }
        match key {
            Some(k) => {
                // A pod it already had, changed in place (bound, started, ready): only the
                // status counts can move. An arrival or departure while the expectations
                // still wait for more of them: the sync could only count too (it creates
                // and deletes nothing until they are met). Such syncs are batched. The
                // arrival or departure that meets the expectations, a change of
                // controller, and one nobody expected are synced at once: the next
                // slow-start batch or a replacement waits for them.
                let in_place =
                    !deleted && pod.metadata.deletion_timestamp.is_none() && same_controller;
                if in_place || !self.expectations.satisfied(&k) {
                    self.queue.add_batched(k, STATUS_BATCH_PERIOD);
                } else {
                    self.queue.add(k);
                }
            }
            None if controller_ref(&pod.metadata).is_none() => {
                // An orphan: every object that could adopt it looks.
                let ns = pod.metadata.namespace.as_deref();
                for o in self.objects.store().state() {
                    if o.meta().namespace.as_deref() != ns {
                        continue;
                    }
                    let rs = o.as_replica_set();
                    let selector = Selector::new(rs.spec.as_ref().map(|s| &s.selector));
                    if selector.matches(pod.metadata.labels.as_ref()) {
                        self.queue.add(key_of(o.meta()));
                    }
                }
            }
            None => {}
        }
    }
}
