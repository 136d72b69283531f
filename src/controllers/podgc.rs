//! Pod garbage collection (upstream's pod-garbage-collector): force-deletes
//! - terminated pods beyond `--terminated-pod-gc-threshold` (12500), oldest first;
//! - pods bound to a node that no longer exists, once the node has been missing for the
//!   quarantine (40 s) and a fresh GET confirms it is gone;
//! - pods being deleted that were never scheduled (no kubelet will confirm them).
//!
//! Pods it removes for a missing node first get the `DisruptionTarget` condition (reason
//! DeletionByPodGC) and, unless already terminal, phase Failed, as upstream.

use super::{clock::Clock, Context, ControllerError, Stats};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The controller's identity (`system:controller:pod-garbage-collector`).
pub const CONTROLLER: &str = "pod-garbage-collector";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `--terminated-pod-gc-threshold`; 0 disables the terminated-pod collection.
    pub terminated_threshold: usize,
    /// How long a pod's node must have been missing before the pod goes.
    pub orphan_quarantine: Duration,
    /// How often the pods are looked at (upstream's gcCheckPeriod, 20 s).
    pub period: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            terminated_threshold: 12_500,
            orphan_quarantine: Duration::from_secs(40),
            period: Duration::from_secs(20),
        }
    }
}

pub struct PodGc {
    ctx: Context,
    settings: Settings,
    stats: Arc<Stats>,
    clock: Clock,
}

impl PodGc {
    pub fn new(ctx: Context, settings: Settings) -> PodGc {
        PodGc {
            ctx,
            settings,
            stats: Arc::default(),
            clock: Clock::system(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let nodes = self.ctx.informers.typed::<Node>();
        let pods = self.ctx.informers.typed::<Pod>();
        nodes.synced().await?;
        pods.synced().await?;
        let mut gc = Collector {
            client: self.ctx.client_for(CONTROLLER),
            nodes: nodes.store(),
            pods: pods.store(),
            settings: self.settings,
            clock: self.clock,
            missing_since: HashMap::new(),
        };
        let period = self
            .settings
            .period
            .min(self.settings.orphan_quarantine)
            .max(Duration::from_millis(100));
        loop {
            if let Err(e) = gc.pass().await {
                self.stats.reconcile_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(controller = CONTROLLER, error = %e, "pod garbage collection failed; retrying");
            }
            self.stats.reconciles.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(period) => {}
            }
        }
    }
}

fn is_terminated(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// The oldest terminated pods past `threshold`: the ones to delete.
pub fn over_threshold(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if done.len() <= threshold {
        return Vec::new();
    }
    done.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let excess = done.len() - threshold;
    done.truncate(excess);
    done
}

struct Collector {
    client: kube::Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    settings: Settings,
    clock: Clock,
    /// node name → when it was first seen missing while pods were bound to it.
    missing_since: HashMap<String, Timestamp>,
}

impl Collector {
    async fn pass(&mut self) -> Result<(), ControllerError> {
        let pods = self.pods.state();
        for pod in over_threshold(&pods, self.settings.terminated_threshold) {
            self.delete(&pod, None).await?;
        }
        self.orphans(&pods).await?;
        for pod in &pods {
            if pod.metadata.deletion_timestamp.is_some() && node_of(pod).is_none() {
                self.delete(pod, None).await?;
            }
        }
        Ok(())
    }

    async fn orphans(&mut self, pods: &[Arc<Pod>]) -> Result<(), ControllerError> {
        let now = self.clock.now();
        let quarantine = SignedDuration::try_from(self.settings.orphan_quarantine)
            .unwrap_or(SignedDuration::MAX);
        let mut missing: HashMap<String, Timestamp> = HashMap::new();
        for pod in pods {
            let Some(node) = node_of(pod) else { continue };
            if self.nodes.get(&ObjectRef::new(node)).is_some() {
                continue;
            }
            let since = *self.missing_since.get(node).unwrap_or(&now);
            missing.insert(node.to_owned(), since);
        }
        self.missing_since = missing;
        let nodes: Api<Node> = Api::all(self.client.clone());
        let due: Vec<String> = self
            .missing_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= quarantine)
            .map(|(n, _)| n.clone())
            .collect();
        for node in due {
            // The cache may lag: only a node the API server does not have is gone.
            if nodes.get_opt(&node).await?.is_some() {
                self.missing_since.remove(&node);
                continue;
            }
            for pod in pods.iter().filter(|p| node_of(p) == Some(node.as_str())) {
                tracing::info!(pod = ?pod.metadata.name, node, "deleting pod bound to a node that no longer exists");
                self.delete(pod, Some(now)).await?;
            }
        }
        Ok(())
    }

    /// Force-deletes `pod`; `marked` first records why on the pod (orphans).
    async fn delete(&self, pod: &Pod, marked: Option<Timestamp>) -> Result<(), ControllerError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let result = async {
            if let Some(now) = marked {
                let mut status = serde_json::json!({"conditions": [{
                    "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists", "lastTransitionTime": Time(now),
                }]});
                if !is_terminated(pod) {
                    status["phase"] = serde_json::json!("Failed");
                }
                let patch = serde_json::json!({ "status": status });
                api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await?;
            }
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: pod
                    .metadata
                    .uid
                    .clone()
                    .map(|uid| kube::api::Preconditions {
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
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "creationTimestamp": created},
                "status": {"phase": phase}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn the_oldest_terminated_pods_beyond_the_threshold_are_collected() {
        let pods = vec![
            pod("new-done", "Succeeded", "2026-01-01T00:03:00Z"),
            pod("running", "Running", "2026-01-01T00:00:00Z"),
            pod("old-failed", "Failed", "2026-01-01T00:01:00Z"),
            pod("mid-done", "Succeeded", "2026-01-01T00:02:00Z"),
        ];
        let names = |v: Vec<Arc<Pod>>| -> Vec<String> {
            v.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
        };
        assert_eq!(names(over_threshold(&pods, 1)), ["old-failed", "mid-done"]);
        assert!(over_threshold(&pods, 3).is_empty());
        // 0 turns the collection off, as upstream's flag.
        assert!(over_threshold(&pods, 0).is_empty());
    }
}
