//! One sync of one DaemonSet (upstream's `syncDaemonSet`): claim pods and revisions, settle
//! the current revision, group pods by node, take the steps [`plan`](super::plan) decides,
//! write status, trim history.

use super::placement::{new_pod, placement, target_node, Placement};
use super::plan::{plan, NodeView, PodView, Steps, Update};
use crate::controllers::controller_utils::{
    api_code, is_pod_available, is_pod_ready, new_controller_ref, update_status, Selector,
};
use crate::controllers::history::{
    claim_all, ensure_update_revision, revisions_to_delete, History, CONTROLLER_REVISION_HASH,
};
use crate::controllers::pod_index::PodsByController;
use crate::controllers::{Action, ControllerError, Reconciler};
use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upstream's controller (and service account) name.
pub const CONTROLLER: &str = "daemon-set-controller";

/// How long a creation the cache has not shown yet keeps a node from getting another pod.
const CREATION_TTL: Duration = Duration::from_secs(30);

/// Pod writes a DaemonSet issued that its cache does not show yet: DaemonSet key → what
/// the write was for (a node for a creation, the pod for a deletion) → (pod name, when).
#[derive(Default)]
pub(super) struct InFlight(Mutex<Writes>);

type Writes = HashMap<String, HashMap<String, (String, Instant)>>;

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn issued(&self, key: &str, what: &str, pod: &str, now: Instant) {
        self.lock()
            .entry(key.to_owned())
            .or_default()
            .insert(what.to_owned(), (pod.to_owned(), now));
    }

    /// What `key`'s writes in flight are for, those whose pod `unseen` says the cache does
    /// not reflect yet; forgets the others, and those issued [`CREATION_TTL`] ago or more.
    fn pending(&self, key: &str, now: Instant, unseen: impl Fn(&str) -> bool) -> HashSet<String> {
        let mut all = self.lock();
        let Some(mine) = all.get_mut(key) else {
            return HashSet::new();
        };
        mine.retain(|_, (pod, at)| now.duration_since(*at) < CREATION_TTL && unseen(pod));
        let pending = mine.keys().cloned().collect();
        if mine.is_empty() {
            all.remove(key);
        }
        pending
    }

    fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// A created pod the cache does not show yet.
fn not_created_yet(pods: &[Arc<Pod>]) -> impl Fn(&str) -> bool + '_ {
    |pod| !pods.iter().any(|p| p.metadata.name.as_deref() == Some(pod))
}

/// A deleted pod the cache still shows live (neither terminating nor gone).
fn still_live(pods: &[Arc<Pod>]) -> impl Fn(&str) -> bool + '_ {
    |pod| {
        pods.iter().any(|p| {
            p.metadata.name.as_deref() == Some(pod) && p.metadata.deletion_timestamp.is_none()
        })
    }
}

/// Upstream's failedPodsBackoff: 1 s doubling to 15 min per (DaemonSet, node); an entry idle
/// for twice the maximum starts over.
const FAILED_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// (DaemonSet key, node) → (current delay, when a failed pod was last deleted).
#[derive(Default)]
pub(super) struct FailedPodsBackoff(Mutex<HashMap<(String, String), (Duration, Instant)>>);

impl FailedPodsBackoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Duration, Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long deleting another failed pod on `node` must still wait (upstream's
    /// IsInBackOffSinceUpdate), if at all.
    fn remaining(&self, key: &str, node: &str, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let (delay, at) = map.get(&(key.to_owned(), node.to_owned()))?;
        delay
            .checked_sub(now.duration_since(*at))
            .filter(|d| !d.is_zero())
    }

    /// A failed pod on `node` is being deleted: the next one waits twice as long.
    fn next(&self, key: &str, node: &str, now: Instant) {
        let mut map = self.lock();
        let entry = map
            .entry((key.to_owned(), node.to_owned()))
            .or_insert((Duration::ZERO, now));
        let expired = now.duration_since(entry.1) > 2 * FAILED_BACKOFF_MAX;
        entry.0 = if entry.0.is_zero() || expired {
            FAILED_BACKOFF_INITIAL
        } else {
            (entry.0 * 2).min(FAILED_BACKOFF_MAX)
        };
        entry.1 = now;
    }

    fn forget(&self, key: &str) {
        self.lock().retain(|(k, _), _| k != key);
    }
}

pub(super) struct Sync {
    pub client: kube::Client,
    pub sets: Store<DaemonSet>,
    /// The pods each set controls and each namespace's orphans (see `pod_index`).
    pub index: Arc<PodsByController>,
    pub nodes: Store<Node>,
    pub history: History,
    pub recorder: Recorder,
    /// DaemonSet key → node → (pod name, when created): creations not yet in the cache, so
    /// a sync on a lagging cache does not give a node a second pod.
    pub creating: InFlight,
    /// DaemonSet key → pod → (pod, when deleted): deletions the cache does not show yet (the
    /// pod still live there). Such a pod counts as terminating, so a sync on a lagging cache
    /// neither takes it for available (a rolling update would then delete past
    /// `maxUnavailable`) nor deletes it again (upstream's deletion expectations).
    pub deleting: InFlight,
    pub failed_backoff: FailedPodsBackoff,
}

impl Reconciler for Sync {
    type Key = String;
    const NAME: &'static str = CONTROLLER;

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(ds) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            self.creating.forget(key);
            self.deleting.forget(key);
            self.failed_backoff.forget(key);
            return Ok(Action::Done);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let spec = ds.spec.clone().unwrap_or_default();
        let selector = Selector::new(Some(&spec.selector));
        if selector.is_everything() {
            return Ok(Action::Done);
        }
        let owner = new_controller_ref("apps/v1", "DaemonSet", &ds.metadata);
        // Its own pods and the namespace's orphans: any other pod is another controller's.
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let candidates = self.index.owned_or_orphaned(uid, ns);
        let pods = claim_all(
            &self.client,
            &owner,
            &ds.metadata,
            &selector,
            candidates,
            None,
        )
        .await?;

        let revisions = self
            .history
            .owned(&ds.metadata, Some(&spec.selector))
            .await?;
        let status = ds.status.clone().unwrap_or_default();
        let mut collisions = status.collision_count.unwrap_or(0);
        let cur = ensure_update_revision(
            &self.history,
            &ds.metadata,
            &spec.template,
            &revisions,
            &mut collisions,
        )
        .await?;
        let hash = cur
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH))
            .cloned()
            .unwrap_or_default();

        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = Timestamp::now();
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for p in &pods {
            if let Some(n) = target_node(p) {
                by_node.entry(n).or_default().push(p.clone());
            }
        }
        let now_mono = Instant::now();
        let creating = self.creating.pending(key, now_mono, not_created_yet(&pods));
        let deleting = self.deleting.pending(key, now_mono, still_live(&pods));
        let clock = Instant::now();
        // The soonest a failed pod in backoff may go (the sync comes back then).
        let mut backoff_wait: Option<Duration> = None;
        let mut views = Vec::new();
        let mut placements = Vec::new();
        for node in self.nodes.state() {
            let node_name = node.metadata.name.clone().unwrap_or_default();
            let place = placement(&ds, &node);
            let mut node_pods = by_node.remove(&node_name).unwrap_or_default();
            node_pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let pod_views: Vec<PodView> = node_pods
                .iter()
                .map(|p| pod_view(p, min_ready, now, &deleting))
                .collect();
            let wait = pod_views
                .iter()
                .any(|p| p.failed && !p.terminating)
                .then(|| self.failed_backoff.remaining(key, &node_name, clock))
                .flatten();
            if let Some(w) = wait {
                backoff_wait = Some(backoff_wait.map_or(w, |b| b.min(w)));
            }
            views.push(NodeView {
                failed_backoff: wait.is_some(),
                should_run: place.should_run,
                should_continue_running: place.should_continue_running,
                pods: pod_views,
                creating: creating.contains(&node_name),
                name: node_name,
            });
            placements.push((place, node_pods));
        }
        // Unscheduled pods for nodes that no longer exist have nowhere to go.
        let stranded: Vec<String> = by_node
            .values()
            .flatten()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name.clone())
            .collect();

        let update = update_strategy(&ds, placements.iter().filter(|(p, _)| p.should_run).count());
        let mut steps = plan(&views, update, &hash);
        steps
            .delete
            .extend(stranded.into_iter().map(|n| (n, false)));
        // Failed pods deleted now → their node (for the backoff and the event).
        let failed_on: HashMap<String, String> = views
            .iter()
            .flat_map(|v| v.pods.iter().map(move |p| (p, &v.name)))
            .filter(|(p, _)| p.failed && steps.delete.contains(&(p.name.clone(), true)))
            .map(|(p, node)| (p.name.clone(), node.clone()))
            .collect();
        for node in failed_on.values().collect::<HashSet<_>>() {
            self.failed_backoff.next(key, node, clock);
        }
        let result = self
            .act(key, &ds, &spec.template, &hash, &steps, &failed_on)
            .await;

        let new_status = compute_status(&ds, &placements, &hash, collisions, min_ready, now);
        self.write_status(&ds, new_status).await?;
        let live: HashSet<String> = revisions
            .iter()
            .filter(|r| {
                let h = r
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CONTROLLER_REVISION_HASH));
                pods.iter().any(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(CONTROLLER_REVISION_HASH))
                        == h
                })
            })
            .filter_map(|r| r.metadata.name.clone())
            .chain(cur.metadata.name.clone())
            .collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        self.history
            .delete(ns, &revisions_to_delete(&revisions, &live, limit))
            .await?;
        result?;
        let waiting_available = placements
            .iter()
            .flat_map(|(_, ps)| ps.iter())
            .any(|p| is_pod_ready(p) && !is_pod_available(p, min_ready, now));
        if min_ready > 0 && waiting_available {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        if let Some(wait) = backoff_wait {
            return Ok(Action::RequeueAfter(wait));
        }
        if !steps.create.is_empty() {
            // Re-check once the creations are expected to be visible.
            return Ok(Action::RequeueAfter(CREATION_TTL));
        }
        Ok(Action::Done)
    }
}

/// The planner's view of a pod; one this controller deleted counts as terminating even if
/// the cache does not show it so yet.
fn pod_view(p: &Pod, min_ready: i32, now: Timestamp, deleting: &HashSet<String>) -> PodView {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    let name = p.metadata.name.clone().unwrap_or_default();
    PodView {
        terminating: p.metadata.deletion_timestamp.is_some() || deleting.contains(&name),
        name,
        hash: p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH))
            .cloned()
            .unwrap_or_default(),
        failed: phase == Some("Failed"),
        available: is_pod_available(p, min_ready, now),
    }
}

/// `maxSurge` and `maxUnavailable` scaled against the desired number of nodes, rounding up;
/// both zero means one unavailable.
fn update_strategy(ds: &DaemonSet, desired: usize) -> Update {
    let strategy = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.clone())
        .unwrap_or_default();
    if strategy.type_.as_deref() == Some("OnDelete") {
        return Update::OnDelete;
    }
    let ru = strategy.rolling_update.unwrap_or_default();
    let scaled = |v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>, d: i32| {
        v.map(|v| {
            crate::controllers::controller_utils::scaled_value(v, desired as i32, true).unwrap_or(d)
        })
        .unwrap_or(d)
    };
    let max_surge = scaled(ru.max_surge.as_ref(), 0);
    let mut max_unavailable = scaled(ru.max_unavailable.as_ref(), 1);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    Update::RollingUpdate {
        max_surge,
        max_unavailable,
    }
}

/// Upstream's status counts: over nodes that should run the daemon (desired), those with a
/// pod (current), pods ready/available/updated (the oldest live pod of each node), and nodes
/// with a pod they should not have (misscheduled).
fn compute_status(
    ds: &DaemonSet,
    placements: &[(Placement, Vec<Arc<Pod>>)],
    hash: &str,
    collisions: i32,
    min_ready: i32,
    now: Timestamp,
) -> DaemonSetStatus {
    let mut s = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: Some(collisions),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let mut ready = 0;
    let mut available = 0;
    let mut updated = 0;
    for (place, pods) in placements {
        let live: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if place.should_run {
            s.desired_number_scheduled += 1;
            if let Some(p) = live.first() {
                s.current_number_scheduled += 1;
                ready += i32::from(is_pod_ready(p));
                available += i32::from(is_pod_available(p, min_ready, now));
            }
            let is_current = |p: &&&Arc<Pod>| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CONTROLLER_REVISION_HASH))
                    == Some(&hash.to_string())
            };
            if live.iter().any(|p| is_current(&p)) {
                updated += 1;
            }
        } else if !live.is_empty() {
            s.number_misscheduled += 1;
        }
    }
    s.number_ready = ready;
    s.number_available = Some(available);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s.updated_number_scheduled = Some(updated);
    s
}

impl Sync {
    async fn act(
        &self,
        key: &str,
        ds: &DaemonSet,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        hash: &str,
        steps: &Steps,
        failed_on: &HashMap<String, String>,
    ) -> Result<(), ControllerError> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let event = |type_, reason, msg| self.recorder.event(object_ref(ds), type_, reason, msg);
        for node in &steps.create {
            let pod = new_pod(ds, template, hash, node);
            match api.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    let name = created.metadata.name.unwrap_or_default();
                    event(NORMAL, "SuccessfulCreate", format!("Created pod: {name}"));
                    self.creating.issued(key, node, &name, Instant::now());
                }
                Err(e) => {
                    event(WARNING, "FailedCreate", format!("Error creating: {e}"));
                    return Err(e.into());
                }
            }
        }
        for (pod, failed) in &steps.delete {
            if *failed {
                event(
                    WARNING,
                    "FailedDaemonPod",
                    format!(
                        "Found failed daemon pod {ns}/{pod} on node {}, will try to kill it",
                        failed_on.get(pod).map(String::as_str).unwrap_or_default()
                    ),
                );
            }
            let deleted = api.delete(pod, &DeleteParams::default()).await;
            if deleted
                .as_ref()
                .map_or_else(|e| api_code(e) == Some(404), |_| true)
            {
                self.deleting.issued(key, pod, pod, Instant::now());
            }
            match deleted {
                Ok(_) => event(NORMAL, "SuccessfulDelete", format!("Deleted pod: {pod}")),
                Err(e) if api_code(&e) == Some(404) => {}
                Err(e) => {
                    event(WARNING, "FailedDelete", format!("Error deleting: {e}"));
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    async fn write_status(
        &self,
        ds: &DaemonSet,
        status: DaemonSetStatus,
    ) -> Result<(), ControllerError> {
        if ds.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = ds.clone();
        updated.status = Some(status);
        Ok(update_status(&self.client, &updated).await?)
    }
}

#[cfg(test)]
mod in_flight_tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn live(name: &str) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        Arc::new(p)
    }

    #[test]
    fn a_deleted_pod_counts_as_going_until_the_cache_shows_it_going() {
        let d = InFlight::default();
        let t0 = Instant::now();
        d.issued("ns/ds", "a", "a", t0);
        let cache = [live("a"), live("b")];
        let pending = d.pending("ns/ds", t0, still_live(&cache));
        assert_eq!(pending, HashSet::from(["a".to_string()]));
        assert!(pod_view(&cache[0], 0, Timestamp::now(), &pending).terminating);
        assert!(!pod_view(&cache[1], 0, Timestamp::now(), &pending).terminating);
        assert!(
            d.pending("ns/other", t0, still_live(&cache)).is_empty(),
            "per DaemonSet"
        );
        // The cache shows it terminating: forgotten (a finalizer may hold it for long).
        let mut terminating = (*cache[0]).clone();
        terminating.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert!(d
            .pending("ns/ds", t0, still_live(&[Arc::new(terminating)]))
            .is_empty());
        assert!(
            d.pending("ns/ds", t0, still_live(&cache)).is_empty(),
            "forgotten for good"
        );
        // Gone from the cache, or never seen going for longer than the TTL: forgotten.
        d.issued("ns/ds", "b", "b", t0);
        assert!(d.pending("ns/ds", t0, still_live(&[])).is_empty());
        d.issued("ns/ds", "b", "b", t0);
        assert!(d
            .pending("ns/ds", t0 + CREATION_TTL, still_live(&cache))
            .is_empty());
    }

    #[test]
    fn failed_pod_deletions_on_a_node_back_off_doubling_per_node() {
        let b = FailedPodsBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.remaining("ns/ds", "n1", t0), None);
        b.next("ns/ds", "n1", t0);
        assert_eq!(b.remaining("ns/ds", "n1", t0), Some(Duration::from_secs(1)));
        assert_eq!(b.remaining("ns/ds", "n2", t0), None, "per node");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            b.remaining("ns/ds", "n1", t1),
            None,
            "the second has passed"
        );
        b.next("ns/ds", "n1", t1);
        assert_eq!(b.remaining("ns/ds", "n1", t1), Some(Duration::from_secs(2)));
        for _ in 0..20 {
            b.next("ns/ds", "n1", t1);
        }
        assert_eq!(b.remaining("ns/ds", "n1", t1), Some(FAILED_BACKOFF_MAX));
        b.forget("ns/ds");
        assert_eq!(b.remaining("ns/ds", "n1", t1), None);
    }
}
