//! The scheduler (kube-scheduler's default profile): binds every pending pod whose
//! `schedulerName` is `default-scheduler` to a node, through `pods/binding`, as
//! `system:kube-scheduler`.
//!
//! Shape: one loop owns the [`cache::Cache`] and the [`queue::SchedulingQueue`]; it folds
//! informer changes into them, pops the best pending pod, runs one cycle
//! ([`framework::schedule`], pure), *assumes* the pod onto the chosen node at once and
//! hands the binding (and every other API write) to a spawned task, so decisions never
//! wait for the API server; at most [`WRITES_IN_FLIGHT`] of those writes run at once.
//! Pods that fit nowhere get preemption ([`preemption`]), a `FailedScheduling` event and a
//! `PodScheduled=False` condition, and wait in the queue until a node or pod change (or 5
//! minutes) brings them back.
//!
//! Invariant: a pod is scheduled by at most one cycle at a time (it is *in flight* in the
//! queue from pop until its binding succeeds or fails), and its resources count on its
//! node from the moment it is assumed.
//!
//! Reads come from the shared informers (the server's, listing as the loopback identity);
//! writes go through the client given to [`Scheduler::new`].

pub mod affinity;
pub mod cache;
pub mod diagnosis;
pub mod filters;
pub mod framework;
pub mod hints;
pub mod labels;
pub mod lookups;
pub mod preemption;
pub mod queue;
pub mod scores;
pub mod spread;
#[cfg(test)]
pub mod testutil;
pub mod volume_binding;

use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use crate::informers::{Change, InformerError, Informers};
use crate::leader_election::LeaderElectionError;
use cache::{is_bound_and_live, Cache, PodInfo};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rand::SeedableRng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// The scheduler's name in `spec.schedulerName`, events and conditions.
pub const SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("informer: {0}")]
    Informer(#[from] InformerError),
    #[error("the {0} change feed ended")]
    FeedEnded(&'static str),
    #[error(transparent)]
    LeaderElection(#[from] LeaderElectionError),
}

/// The longest the scheduling loop decides without letting other tasks run.
const YIELD_EVERY: Duration = Duration::from_millis(5);

/// The most API writes (bindings, `PodScheduled` updates, preemptions) the scheduler has in
/// flight at once; the rest wait their turn in decision order. Upstream's scheduler is held
/// back by its client's rate limit; unbounded, a backlog of 3,000 decisions put 3,000
/// binds on the server at once, each waiting behind all the others (binding p99 292 ms
/// under `bench.sh scale`) for no more throughput, the server's CPU being the limit.
const WRITES_IN_FLIGHT: usize = 16;

/// How a spawned binding ended.
enum BindOutcome {
    Bound {
        key: String,
    },
    Failed {
        key: String,
        uid: String,
        error: String,
    },
}

pub struct Scheduler {
    client: kube::Client,
    informers: Informers,
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

fn is_ours(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    spec.and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(SCHEDULER_NAME)
        == SCHEDULER_NAME
        && spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_none_or(|g| g.is_empty())
}

/// The loop's state; see the module docs.
struct Core {
    cache: Cache,
    queue: queue::SchedulingQueue,
    rng: rand::rngs::StdRng,
}

impl Core {
    fn new() -> Core {
        Core {
            cache: Cache::default(),
            queue: queue::SchedulingQueue::default(),
            rng: rand::rngs::StdRng::from_os_rng(),
        }
    }

    fn on_pod(&mut self, change: Change<Pod>, now: Instant) {
        match change {
            Change::Applied(pod) => {
                let key = pod_key(&pod);
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if is_bound_and_live(&pod) {
                    self.cache.clear_nomination(&uid);
                    // First seen bound (placed by another scheduler, or ours confirmed).
                    let newly_bound = !self.cache.contains_pod(&uid) || self.cache.is_assumed(&uid);
                    self.cache.add_or_update_bound_pod(pod);
                    self.queue.delete(&key);
                    if newly_bound {
                        self.queue.move_for(hints::POD_PLACED, now);
                    }
                } else if pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty())
                    || pod.metadata.deletion_timestamp.is_some()
                    || !is_ours(&pod)
                {
                    // Terminated on its node, or no longer this scheduler's to place.
                    self.pod_left(&key, &uid, now);
                } else if !self.cache.is_assumed(&uid) {
                    self.cache.update_nomination(&pod);
                    self.queue.add_or_update(&key, pod, now);
                }
            }
            Change::Deleted(pod) => {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                self.pod_left(&pod_key(&pod), uid, now);
            }
        }
    }

    /// A pod stops counting: it leaves the queue, and the room it took on a node (or held
    /// there by a nomination) is free for the pods waiting for it.
    fn pod_left(&mut self, key: &str, uid: &str, now: Instant) {
        self.queue.delete(key);
        let nominated = self.cache.clear_nomination(uid);
        if self.cache.remove_pod(uid).is_some() || nominated {
            self.queue.move_for(hints::POD_REMOVED, now);
        }
    }

    fn on_node(&mut self, change: Change<Node>, now: Instant) {
        match change {
            Change::Applied(node) => {
                let helps = self.cache.set_node(node);
                self.queue.move_for(helps, now);
            }
            Change::Deleted(node) => {
                self.cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
                self.queue.move_for(hints::NODE_DELETED, now);
            }
        }
    }
}

/// What one cycle decided, for the caller to carry out.
enum Decision {
    Bind {
        pod: Arc<Pod>,
        node: String,
        /// PreBind's steps for the pod's claims that wait for their first consumer.
        claims: Vec<volume_binding::ClaimBinding>,
    },
    Unschedulable {
        pod: Arc<Pod>,
        message: String,
        nominate: Option<String>,
        victims: Vec<Arc<PodInfo>>,
    },
}

impl Core {
    /// One cycle for `pod` (already popped): assume on success.
    fn schedule_one(
        &mut self,
        pod: Arc<Pod>,
        lookups: &dyn framework::Lookups,
        now: Instant,
    ) -> Decision {
        let key = pod_key(&pod);
        match framework::schedule(&self.cache, &pod, lookups, &mut self.rng) {
            Ok(framework::Placement { node, info, claims }) => {
                self.cache.clear_nomination(&info.uid);
                self.cache.assume(info, &node);
                Decision::Bind { pod, node, claims }
            }
            Err(mut diag) => {
                let mut nominate = None;
                let mut victims = Vec::new();
                if diag.pre_filter.is_some() {
                    // No node was filtered, so preemption has nothing to try anywhere.
                    let never = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.preemption_policy.as_deref())
                        == Some("Never");
                    diag.post_filter = Some(if never {
                        format!("preemption: {}", preemption::POLICY_NEVER)
                    } else {
                        format!(
                            "preemption: 0/{n} nodes are available: {n} {}.",
                            preemption::NOT_HELPFUL,
                            n = diag.num_nodes
                        )
                    });
                } else if diag.num_nodes > 0 {
                    if let Ok(cycle) = framework::prefilter(&self.cache, &pod, lookups) {
                        match preemption::preempt(&self.cache, &cycle, &diag) {
                            preemption::Outcome::NotEligible(m) => {
                                diag.post_filter = Some(format!("preemption: {m}"));
                            }
                            preemption::Outcome::NoCandidate(m) => diag.post_filter = Some(m),
                            preemption::Outcome::Preempt { node, victims: v } => {
                                self.cache.nominate(cycle.info.clone(), &node);
                                nominate = Some(node);
                                victims = v;
                            }
                        }
                    }
                }
                self.queue.unschedulable(&key, diag.rejectors(), now);
                Decision::Unschedulable {
                    pod,
                    message: framework::failure_message(&diag),
                    nominate,
                    victims,
                }
            }
        }
    }
}

impl Scheduler {
    /// A scheduler writing through `client` and reading from `informers`.
    pub fn new(client: kube::Client, informers: Informers) -> Scheduler {
        Scheduler { client, informers }
    }

    /// Schedules until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        let pods = self.informers.typed::<Pod>();
        let nodes = self.informers.typed::<Node>();
        let lookups = lookups::InformerLookups::new(&self.informers);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = async { pods.synced().await?; nodes.synced().await } => r?,
        }
        // The writer ends by itself once every clone of the recorder is dropped.
        let recorder = Recorder::spawn_for(self.client.clone(), SCHEDULER_NAME);
        let mut pod_feed = pods.subscribe();
        let mut node_feed = nodes.subscribe();
        // A claim bound or a class created may make an unschedulable pod schedulable.
        let mut volume_feed = futures::stream::select_all([
            self.informers
                .typed::<PersistentVolumeClaim>()
                .subscribe()
                .map(|_| ())
                .boxed(),
            self.informers
                .typed::<PersistentVolume>()
                .subscribe()
                .map(|_| ())
                .boxed(),
            self.informers
                .typed::<StorageClass>()
                .subscribe()
                .map(|_| ())
                .boxed(),
        ]);
        let (bind_tx, mut bind_rx) = mpsc::unbounded_channel::<BindOutcome>();
        let mut core = Core::new();
        let actor = Actor {
            client: self.client.clone(),
            recorder: recorder.clone(),
            writes: Arc::new(Semaphore::new(WRITES_IN_FLIGHT)),
        };
        tracing::info!("scheduler started");
        // When the loop last let other tasks run (the binds it spawned among them).
        let mut last_yield = Instant::now();
        let result = loop {
            // Fold in everything already observed, so each decision sees the latest state.
            let now = Instant::now();
            let mut ended = None;
            while let Some(c) = node_feed.next().now_or_never() {
                match c {
                    Some(c) => core.on_node(c, now),
                    None => ended = Some("node"),
                }
                if ended.is_some() {
                    break;
                }
            }
            while let Some(c) = pod_feed.next().now_or_never() {
                match c {
                    Some(c) => core.on_pod(c, now),
                    None => ended = Some("pod"),
                }
                if ended.is_some() {
                    break;
                }
            }
            if let Some(which) = ended {
                break Err(SchedulerError::FeedEnded(which));
            }
            while let Ok(o) = bind_rx.try_recv() {
                core.on_bind(o, now);
            }
            if shutdown.is_cancelled() {
                break Ok(());
            }
            if let Some(pod) = core.queue.pop(now) {
                match core.schedule_one(pod, &lookups, now) {
                    Decision::Bind { pod, node, claims } => {
                        actor.bind(pod, node, claims, bind_tx.clone())
                    }
                    Decision::Unschedulable {
                        pod,
                        message,
                        nominate,
                        victims,
                    } => actor.unschedulable(pod, message, nominate, victims),
                }
                // Yield after a slice of work, not after every pod: on a busy runtime each
                // yield can wait tens of milliseconds for a turn, which capped a backlog of
                // pending pods at ~20 decisions/s (debug build, loaded machine).
                if last_yield.elapsed() >= YIELD_EVERY {
                    tokio::task::yield_now().await;
                    last_yield = Instant::now();
                }
                continue;
            }
            let wake = core.queue.next_wakeup();
            let sleep = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                c = node_feed.next() => match c {
                    Some(c) => core.on_node(c, Instant::now()),
                    None => break Err(SchedulerError::FeedEnded("node")),
                },
                c = pod_feed.next() => match c {
                    Some(c) => core.on_pod(c, Instant::now()),
                    None => break Err(SchedulerError::FeedEnded("pod")),
                },
                Some(o) = bind_rx.recv() => core.on_bind(o, Instant::now()),
                Some(()) = volume_feed.next() => {
                    core.queue.move_for(hints::VOLUMES_CHANGED, Instant::now())
                }
                _ = sleep => {}
            }
        };
        drop(recorder);
        drop(actor);
        tracing::info!("scheduler stopped");
        result
    }
}

impl Core {
    fn on_bind(&mut self, o: BindOutcome, now: Instant) {
        match o {
            BindOutcome::Bound { key } => self.queue.done(&key),
            BindOutcome::Failed { key, uid, error } => {
                tracing::info!(pod = %key, %error, "binding failed; retrying after backoff");
                self.queue.error(&key, now);
                if self.cache.forget(&uid) {
                    // The room it was assumed into is free again.
                    self.queue.move_for(hints::POD_REMOVED, now);
                }
            }
        }
    }
}

/// Carries out decisions through the API, off the scheduling loop.
struct Actor {
    client: kube::Client,
    recorder: Recorder,
    /// Permits for [`WRITES_IN_FLIGHT`]; FIFO, so writes start in decision order.
    writes: Arc<Semaphore>,
}

impl Actor {
    /// Runs `write` in a task of its own once it holds one of the [`WRITES_IN_FLIGHT`]
    /// permits.
    fn spawn_write(&self, write: impl std::future::Future<Output = ()> + Send + 'static) {
        let writes = self.writes.clone();
        tokio::spawn(async move {
            // The semaphore is never closed.
            if let Ok(_permit) = writes.acquire_owned().await {
                write.await;
            }
        });
    }

    fn bind(
        &self,
        pod: Arc<Pod>,
        node: String,
        claims: Vec<volume_binding::ClaimBinding>,
        done: mpsc::UnboundedSender<BindOutcome>,
    ) {
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        self.spawn_write(async move {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let key = format!("{ns}/{name}");
            if let Err(error) = volume_binding::prebind(&client, &ns, &claims, &node).await {
                let _ = done.send(BindOutcome::Failed {
                    key,
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    error,
                });
                return;
            }
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let r = api
                .create_subresource::<Binding, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            match r {
                Ok(_) => {
                    tracing::debug!(pod = %key, %node, "bound");
                    recorder.event(
                        object_ref(pod.as_ref()),
                        NORMAL,
                        "Scheduled",
                        format!("Successfully assigned {key} to {node}"),
                    );
                    let _ = done.send(BindOutcome::Bound { key });
                }
                Err(e) => {
                    let _ = done.send(BindOutcome::Failed {
                        key,
                        uid: pod.metadata.uid.clone().unwrap_or_default(),
                        error: e.to_string(),
                    });
                }
            }
        });
    }

    fn unschedulable(
        &self,
        pod: Arc<Pod>,
        message: String,
        nominate: Option<String>,
        victims: Vec<Arc<PodInfo>>,
    ) {
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        tracing::debug!(pod = %pod_key(&pod), %message, "unschedulable");
        self.spawn_write(async move {
            if let Some(node) = &nominate {
                for v in &victims {
                    preempt_victim(&client, &recorder, &pod, v, node).await;
                }
            }
            recorder.event(
                object_ref(pod.as_ref()),
                WARNING,
                "FailedScheduling",
                message.clone(),
            );
            if let Err(e) = set_unschedulable(&client, &pod, &message, nominate.as_deref()).await {
                tracing::debug!(pod = %pod_key(&pod), error = %e, "could not update PodScheduled");
            }
        });
    }
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// `PodScheduled=False` with reason `Unschedulable` (and the nominated node), unless the
/// pod already says exactly that.
async fn set_unschedulable(
    client: &kube::Client,
    pod: &Pod,
    message: &str,
    nominate: Option<&str>,
) -> Result<(), kube::Error> {
    let st = pod.status.as_ref();
    let same = st
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message)
        });
    let current_nominated = st.and_then(|s| s.nominated_node_name.as_deref());
    if same && (nominate.is_none() || nominate == current_nominated) {
        return Ok(());
    }
    let mut status = serde_json::json!({
        "conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": now(),
        }]
    });
    if let Some(n) = nominate {
        status["nominatedNodeName"] = serde_json::json!(n);
    }
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    api.patch_status(
        pod.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Strategic(serde_json::json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Marks a victim `DisruptionTarget` (reason `PreemptionByScheduler`), deletes it
/// gracefully and records `Preempted`, as upstream's preemption does.
async fn preempt_victim(
    client: &kube::Client,
    recorder: &Recorder,
    preemptor: &Pod,
    victim: &PodInfo,
    node: &str,
) {
    let v = &victim.pod;
    let name = v.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &victim.namespace);
    let cond = serde_json::json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": format!("{SCHEDULER_NAME}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": now(),
    }]}});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(cond))
        .await
    {
        tracing::debug!(victim = name, error = %e, "could not mark the victim");
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(victim = %pod_key(v), preemptor = %pod_key(preemptor), node, "preempted");
            recorder.event(
                object_ref(v.as_ref()),
                NORMAL,
                "Preempted",
                format!(
                    "Preempted by pod {} on node {node}",
                    preemptor.metadata.uid.as_deref().unwrap_or_default()
                ),
            );
        }
        Err(e) => tracing::debug!(victim = name, error = %e, "could not delete the victim"),
    }
}

#[cfg(test)]
mod tests;
