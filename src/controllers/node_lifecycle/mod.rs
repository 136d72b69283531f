//! The node lifecycle controller (upstream's node-lifecycle-controller): watches each
//! node's heartbeats (its Lease in `kube-node-lease` and its Ready condition); a node not
//! heard from for the grace period (`--node-monitor-grace-period`, 40 s) gets its
//! conditions set to Unknown ("Kubelet stopped posting node status.") and its pods marked
//! not Ready. It keeps the `not-ready`, `unreachable` (NoSchedule and NoExecute) and
//! `unschedulable` taints in line with the node's Ready condition and cordon; the
//! [`taint_eviction`] controller then evicts pods that do not tolerate them.
//!
//! Heartbeats are judged by when this controller saw them change, not by the timestamps
//! they carry, so a node whose clock is off is not declared dead (upstream's probe time).

pub mod taint_eviction;
pub mod taints;
#[cfg(test)]
mod tests;

use super::WorkQueue;
use super::{clock::Clock, run_workers, Action, Context, ControllerError, Reconciler, Stats};
use crate::informers::{Change, Informer};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The controller's identity (`system:controller:node-controller`).
pub const CONTROLLER: &str = "node-controller";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Timing of the node monitor (upstream's kube-controller-manager flags).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `--node-monitor-grace-period`: silence after which a node is Unknown.
    pub grace_period: Duration,
    /// `--node-monitor-period`: how often every node is looked at.
    pub monitor_period: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
        }
    }
}

pub struct NodeLifecycleController {
    ctx: Context,
    queue: WorkQueue<String>,
    settings: Settings,
    clock: Clock,
}

impl NodeLifecycleController {
    pub fn new(ctx: Context, settings: Settings) -> NodeLifecycleController {
        NodeLifecycleController {
            ctx,
            queue: WorkQueue::new(),
            settings,
            clock: Clock::system(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let nodes = self.ctx.informers.typed::<Node>();
        let leases = self.ctx.informers.typed::<Lease>();
        let pods = self.ctx.informers.typed::<Pod>();
        nodes.synced().await?;
        leases.synced().await?;
        pods.synced().await?;
        let reconciler = Arc::new(Monitor {
            client: self.ctx.client_for(CONTROLLER),
            nodes: nodes.store(),
            leases: leases.store(),
            pods: pods.store(),
            settings: self.settings,
            clock: self.clock,
            probes: Mutex::new(HashMap::new()),
        });
        let ticker = tick(
            nodes.store(),
            self.queue.clone(),
            self.settings.monitor_period,
        );
        tokio::select! {
            _ = feed(nodes, leases, self.queue.clone()) => Err(ControllerError::Invalid(format!("{CONTROLLER}: the informers' change feeds ended"))),
            _ = ticker => Ok(()),
            _ = run_workers(reconciler, self.queue, 1, shutdown) => Ok(()),
        }
    }
}

/// Silence sends no event: every node is looked at once per monitor period (one timer for
/// all, so requeues never pile up per node).
async fn tick(nodes: Store<Node>, queue: WorkQueue<String>, period: Duration) {
    let mut every = tokio::time::interval(period.max(Duration::from_millis(100)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for n in nodes.state() {
            queue.add(n.metadata.name.clone().unwrap_or_default());
        }
    }
}

async fn feed(nodes: Informer<Node>, leases: Informer<Lease>, queue: WorkQueue<String>) {
    let mut node_changes = nodes.subscribe();
    let mut lease_changes = leases.subscribe();
    loop {
        tokio::select! {
            Some(change) = node_changes.next() => {
                let (Change::Applied(n) | Change::Deleted(n)) = change;
                queue.add(n.metadata.name.clone().unwrap_or_default());
            }
            Some(change) = lease_changes.next() => {
                let (Change::Applied(l) | Change::Deleted(l)) = change;
                if l.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE) {
                    queue.add(l.metadata.name.clone().unwrap_or_default());
                }
            }
            else => return,
        }
    }
}

/// What was last heard from a node, and when this controller noticed it.
struct Probe {
    heard: String,
    at: Timestamp,
}

struct Monitor {
    client: kube::Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    settings: Settings,
    clock: Clock,
    probes: Mutex<HashMap<String, Probe>>,
}

impl Reconciler for Monitor {
    type Key = String;
    const NAME: &'static str = "node-lifecycle";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            self.probes.lock().remove(name);
            return Ok(Action::Done);
        };
        let now = self.clock.now();
        let silent_since = self.observe(name, &node, now);
        let grace =
            SignedDuration::try_from(self.settings.grace_period).unwrap_or(SignedDuration::MAX);
        let mut node = (*node).clone();
        let silent = now.duration_since(silent_since) > grace;
        if silent {
            if let Some(conds) = taints::unknown_conditions(&node, now) {
                tracing::info!(node = %name, "node stopped posting status; marking its conditions Unknown");
                let was_ready = taints::ready_status(&node) == Some("True");
                if let Some(s) = node.status.as_mut() {
                    s.conditions = Some(conds);
                }
                let api: Api<Node> = Api::all(self.client.clone());
                node = api
                    .replace_status(name, &PostParams::default(), &node)
                    .await?;
                if was_ready {
                    self.mark_pods_not_ready(name, now).await?;
                }
            }
        }
        if let Some(taints) = taints::desired_taints(&node, now) {
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": taints},
            });
            let api: Api<Node> = Api::all(self.client.clone());
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(Action::Done)
    }
}

impl Monitor {
    /// Notes the node's latest heartbeat; answers since when it has been silent.
    fn observe(&self, name: &str, node: &Node, now: Timestamp) -> Timestamp {
        let lease = self
            .leases
            .get(&ObjectRef::new(name).within(LEASE_NAMESPACE))
            .and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .unwrap_or_default();
        let ready_beat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()))
            .unwrap_or_default();
        let heard = format!("{lease}|{ready_beat}");
        let mut probes = self.probes.lock();
        let probe = probes.entry(name.to_owned()).or_insert_with(|| Probe {
            heard: heard.clone(),
            at: now,
        });
        if probe.heard != heard {
            probe.heard = heard;
            probe.at = now;
        }
        probe.at
    }

    /// Upstream's MarkPodsNotReady: the pods of a node gone silent stop counting as Ready
    /// (endpoints, disruption budgets) until their kubelet reports again.
    async fn mark_pods_not_ready(&self, node: &str, now: Timestamp) -> Result<(), ControllerError> {
        for pod in self.pods.state() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            if !super::controller_utils::is_pod_ready(&pod) {
                continue;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let patch = serde_json::json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": Time(now)},
            ]}});
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
