//! The taint eviction controller (upstream's taint-eviction-controller, the former taint
//! manager): a pod on a node with a NoExecute taint it does not tolerate is deleted; one
//! that tolerates it for `tolerationSeconds` is deleted when they run out. Before the
//! delete the pod gets the `DisruptionTarget` condition (reason DeletionByTaintManager) and
//! a `TaintManagerEviction` event, as upstream.
//!
//! The deadline is counted from the taint's `timeAdded`, so a restart of the controller
//! neither forgets nor restarts a countdown.

use super::taints::{self, Eviction};
use crate::controllers::{
    clock::Clock, run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue,
};
use crate::events::{object_ref, Recorder, NORMAL};
use crate::informers::{Change, Informer};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Upstream runs it with the node controller's credentials.
const IDENTITY: &str = super::CONTROLLER;
const COMPONENT: &str = "taint-eviction-controller";
const WORKERS: usize = 2;

pub struct TaintEvictionController {
    ctx: Context,
    queue: WorkQueue<String>,
    clock: Clock,
}

impl TaintEvictionController {
    pub fn new(ctx: Context) -> TaintEvictionController {
        TaintEvictionController {
            ctx,
            queue: WorkQueue::new(),
            clock: Clock::system(),
        }
    }

    /// Reads the time from `clock` (tests step over toleration seconds).
    pub fn with_clock(mut self, clock: Clock) -> TaintEvictionController {
        self.clock = clock;
        self
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let nodes = self.ctx.informers.typed::<Node>();
        let pods = self.ctx.informers.typed::<Pod>();
        nodes.synced().await?;
        pods.synced().await?;
        let client = self.ctx.client_for(IDENTITY);
        let reconciler = Arc::new(Evict {
            recorder: Recorder::spawn_for(client.clone(), COMPONENT),
            client,
            nodes: nodes.store(),
            pods: pods.store(),
            clock: self.clock,
        });
        tokio::select! {
            _ = feed(nodes, pods, self.queue.clone()) => Err(ControllerError::Invalid(format!("{COMPONENT}: the informers' change feeds ended"))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Pod changes queue the pod; a node change queues every pod bound to it.
async fn feed(nodes: Informer<Node>, pods: Informer<Pod>, queue: WorkQueue<String>) {
    let mut node_changes = nodes.subscribe();
    let mut pod_changes = pods.subscribe();
    let pod_store = pods.store();
    loop {
        tokio::select! {
            Some(change) = node_changes.next() => {
                let Change::Applied(node) = change else { continue };
                let name = node.metadata.name.as_deref();
                for pod in pod_store.state() {
                    if node_of(&pod) == name {
                        queue.add(pod_key(&pod));
                    }
                }
            }
            Some(change) = pod_changes.next() => {
                if let Change::Applied(pod) = change {
                    if node_of(&pod).is_some() && pod.metadata.deletion_timestamp.is_none() {
                        queue.add(pod_key(&pod));
                    }
                }
            }
            else => return,
        }
    }
}

struct Evict {
    client: kube::Client,
    recorder: Recorder,
    nodes: Store<Node>,
    pods: Store<Pod>,
    clock: Clock,
}

impl Reconciler for Evict {
    type Key = String;
    const NAME: &'static str = "taint-eviction";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let Some(node) = node_of(&pod).and_then(|n| self.nodes.get(&ObjectRef::new(n))) else {
            return Ok(Action::Done);
        };
        let node_taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let now = self.clock.now();
        match taints::eviction(tolerations, node_taints, now) {
            Eviction::Never => Ok(Action::Done),
            Eviction::At(at) => {
                let wait = at.duration_since(now).unsigned_abs();
                Ok(Action::RequeueAfter(wait.max(Duration::from_millis(50))))
            }
            Eviction::Now => {
                self.evict(&pod, now).await?;
                Ok(Action::Done)
            }
        }
    }
}

impl Evict {
    async fn evict(
        &self,
        pod: &Pod,
        now: k8s_openapi::jiff::Timestamp,
    ) -> Result<(), ControllerError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        tracing::info!(
            ns,
            pod = name,
            "deleting pod for a NoExecute taint it does not tolerate"
        );
        self.recorder.event(
            object_ref(pod),
            NORMAL,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Time(now),
        }]}});
        let uid = pod.metadata.uid.clone();
        let result = async {
            api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await?;
            let dp = DeleteParams {
                preconditions: uid.map(|uid| kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            api.delete(name, &dp).await
        }
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
