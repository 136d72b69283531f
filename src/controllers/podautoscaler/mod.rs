//! HorizontalPodAutoscaler controller (upstream `horizontal-pod-autoscaler`): every sync
//! period, for each HPA, reads the target's scale, its pods' resource metrics from
//! `metrics.k8s.io`, computes the replica count the metrics ask for ([`replica_calculator`]),
//! normalizes it by stabilization, scale policies and min/max ([`behavior`]), sets it on the
//! target's `scale` subresource and writes the HPA's status and conditions ([`sync`]).
//!
//! Invariant: an HPA is reconciled once per sync period (upstream resyncs its informer at
//! `--horizontal-pod-autoscaler-sync-period`, 15 s) and right away when it is created or its
//! spec changes; the controller's own status writes do not trigger a reconcile, so a sync
//! never chases itself. Recommendations and scale events are kept in memory per HPA, as
//! upstream does, and dropped with the HPA.

pub mod behavior;
pub mod replica_calculator;
mod sources;
mod sync;

use super::clock::Clock;
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::events::Recorder;
use crate::informers::Change;
use behavior::History;
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Upstream's controller (and service account) name.
pub const NAME: &str = "horizontal-pod-autoscaler";
/// `--horizontal-pod-autoscaler-sync-period` default.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);
const WORKERS: usize = 2;

pub struct HorizontalPodAutoscalerController {
    ctx: Context,
    queue: WorkQueue<String>,
    sync_period: Duration,
    clock: Clock,
}

impl HorizontalPodAutoscalerController {
    pub fn new(ctx: Context, sync_period: Duration) -> HorizontalPodAutoscalerController {
        HorizontalPodAutoscalerController {
            ctx,
            queue: WorkQueue::new(),
            sync_period,
            clock: Clock::system(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let informer = self.ctx.informers.typed::<HorizontalPodAutoscaler>();
        let client = self.ctx.client_for(NAME);
        let reconciler = Arc::new(HpaReconciler {
            recorder: Recorder::spawn_for(client.clone(), NAME),
            client,
            hpas: informer.store(),
            histories: Mutex::new(HashMap::new()),
            selectors: Mutex::new(HashMap::new()),
            clock: self.clock,
        });
        informer.synced().await?;
        let store = informer.store();
        let mut changes = informer.subscribe();
        let feed = self.queue.clone();
        let feeder = async move {
            // Keys seen so far: a new HPA is reconciled at once, a known one only when its
            // spec changed (generation ahead of observedGeneration) or on the resync tick.
            let mut known: HashSet<String> = HashSet::new();
            while let Some(change) = changes.next().await {
                match change {
                    Change::Applied(h) => {
                        let Some(key) = key_of(&h) else { continue };
                        let observed = h.status.as_ref().and_then(|s| s.observed_generation);
                        if known.insert(key.clone()) || observed != h.metadata.generation {
                            feed.add(key);
                        }
                    }
                    Change::Deleted(h) => {
                        if let Some(key) = key_of(&h) {
                            known.remove(&key);
                            feed.add(key);
                        }
                    }
                }
            }
        };
        let tick_queue = self.queue.clone();
        let period = self.sync_period;
        let ticker = async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                for h in store.state() {
                    if let Some(key) = key_of(&h) {
                        tick_queue.add(key);
                    }
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid(format!("{NAME}: the informer's change feed ended"))),
            _ = ticker => Ok(()),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

fn key_of(h: &HorizontalPodAutoscaler) -> Option<String> {
    Some(format!(
        "{}/{}",
        h.metadata.namespace.as_deref()?,
        h.metadata.name.as_deref()?
    ))
}

struct HpaReconciler {
    client: kube::Client,
    hpas: Store<HorizontalPodAutoscaler>,
    recorder: Recorder,
    /// Per HPA key: recommendations and scale events (upstream keeps the same in memory).
    histories: Mutex<HashMap<String, History>>,
    /// Per HPA key: its target's pod selector as last synced (what tells two HPAs of the
    /// same pods apart: upstream's hpaSelectors).
    selectors: Mutex<HashMap<String, crate::controllers::controller_utils::Selector>>,
    clock: Clock,
}

impl Reconciler for HpaReconciler {
    type Key = String;
    const NAME: &'static str = NAME;

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let cached = self.hpas.get(&ObjectRef::new(name).within(ns));
        let Some(cached) = cached.filter(|h| h.metadata.deletion_timestamp.is_none()) else {
            self.histories.lock().remove(key);
            self.selectors.lock().remove(key);
            return Ok(Action::Done);
        };
        let mut hpa = (*cached).clone();
        let before = hpa.status.clone();
        if let Err(e) = self.sync(&mut hpa, key).await {
            tracing::info!(hpa = %key, error = %e, "horizontal pod autoscaler sync failed");
        }
        if hpa.status != before {
            let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), ns);
            api.replace_status(name, &PostParams::default(), &hpa)
                .await?;
        }
        Ok(Action::Done)
    }
}
