//! Node registration and the status heartbeat (upstream's `registerWithAPIServer` and
//! `syncNodeStatus`): create the Node (or, if it exists, put the default labels back), then
//! every [`UPDATE_FREQUENCY`] measure the host and PATCH `nodes/<name>/status` when
//! [`node_status::should_report`] says so. The node's podCIDR, once the server's IPAM has
//! set it, is published on a watch channel.
//!
//! Invariant: everything is written with the node's own client (`system:node:<name>`), so
//! the Node authorizer and NodeRestriction decide what it may touch, as for a kubelet.

use super::host;
use super::node_status::{self, HostInfo, NodeSettings, UPDATE_FREQUENCY};
use k8s_openapi::api::core::v1::{Event, EventSource, Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the podCIDR is first looked for until the server has allocated one (doubling
/// up to the status update frequency, for a server that allocates none).
const POD_CIDR_POLL: Duration = Duration::from_millis(200);

/// The node's registration and status reporter.
pub struct Heartbeat {
    pub api: Api<Node>,
    pub settings: NodeSettings,
    pub host: HostInfo,
    /// The filesystem measured for ephemeral storage and DiskPressure (the agent dir).
    pub fs_dir: PathBuf,
    /// Why the node cannot run pods now (the kubelet sets it: runtime or network not
    /// ready); `Some` makes Ready False. A change is reported at once.
    pub not_ready: watch::Receiver<Option<String>>,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// `spec.podCIDR` of a Node.
pub fn pod_cidr(node: &Node) -> Option<String> {
    node.spec.as_ref().and_then(|s| s.pod_cidr.clone())
}

impl Heartbeat {
    /// Records a Normal event about this node, as the kubelet does (involvedObject uid =
    /// node name, source kubelet). Best effort: a lost event is logged, never fatal.
    pub async fn event(&self, reason: &str, message: &str) {
        let node = &self.settings.name;
        let now = now();
        let event = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!(
                    "{node}.{:x}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos()
                )),
                namespace: Some("default".into()),
                ..Default::default()
            },
            involved_object: super::events::node_ref(node),
            reason: Some(reason.into()),
            message: Some(message.into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            type_: Some("Normal".into()),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.api.clone().into_client(), "default");
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(node = %node, reason, error = %e, "recording a node event failed");
        }
    }

    async fn condition_events(&self, previous: Option<&NodeStatus>, new: &NodeStatus) {
        let before = previous
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let after = new.conditions.as_deref().unwrap_or_default();
        for reason in node_status::condition_events(before, after) {
            let message = format!("Node {} status is now: {reason}", self.settings.name);
            self.event(reason, &message).await;
        }
    }

    /// Creates the Node, or re-applies the default labels to an existing one.
    pub async fn register(&self) -> Result<Node, kube::Error> {
        let want = node_status::initial_node(&self.settings, &self.host);
        match self.api.create(&PostParams::default(), &want).await {
            Ok(n) => Ok(n),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = self.api.get(&self.settings.name).await?;
                let defaults = node_status::default_labels(&self.settings, &self.host);
                let labels = existing.metadata.labels.clone().unwrap_or_default();
                if defaults.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                    return Ok(existing);
                }
                let patch = serde_json::json!({"metadata": {"labels": defaults}});
                self.api
                    .patch(
                        &self.settings.name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// Sends one status computed now.
    async fn report(
        &self,
        previous: Option<&NodeStatus>,
    ) -> Result<(Node, NodeStatus), kube::Error> {
        let fs_dir = self.fs_dir.clone();
        let m = tokio::task::spawn_blocking(move || host::measure(&fs_dir))
            .await
            .unwrap_or_default();
        let not_ready = self.not_ready.borrow().clone();
        let status = node_status::status(
            &self.settings,
            &self.host,
            &m,
            previous,
            not_ready.as_deref(),
            now(),
        );
        let patch = serde_json::json!({ "status": status });
        let node = self
            .api
            .patch_status(
                &self.settings.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.condition_events(previous, &status).await;
        Ok((node, status))
    }

    /// Reports the first status (the node is Ready once this returns).
    pub async fn first_report(&self, registered: &Node) -> Result<(Node, NodeStatus), kube::Error> {
        self.report(
            registered
                .status
                .as_ref()
                .filter(|s| s.conditions.is_some()),
        )
        .await
    }

    /// The heartbeat loop, from the first report on.
    pub async fn run(
        self,
        first: NodeStatus,
        pod_cidr_tx: watch::Sender<Option<String>>,
        shutdown: CancellationToken,
    ) {
        let mut last = first;
        let mut last_sent = Instant::now();
        let mut next_status = Instant::now() + UPDATE_FREQUENCY;
        let mut cidr_poll = POD_CIDR_POLL;
        let mut not_ready = self.not_ready.clone();
        let mut not_ready_open = true;
        loop {
            let until_status = next_status.saturating_duration_since(Instant::now());
            let wait = if pod_cidr_tx.borrow().is_none() {
                let w = cidr_poll.min(until_status);
                cidr_poll = (cidr_poll * 2).min(UPDATE_FREQUENCY);
                w
            } else {
                until_status
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                changed = not_ready.changed(), if not_ready_open => match changed {
                    Ok(()) => next_status = Instant::now(),
                    Err(_) => not_ready_open = false,
                },
            }
            if pod_cidr_tx.borrow().is_none() {
                if let Ok(node) = self.api.get(&self.settings.name).await {
                    if let Some(cidr) = pod_cidr(&node) {
                        tracing::info!(node = %self.settings.name, pod_cidr = %cidr, "podCIDR allocated");
                        pod_cidr_tx.send_replace(Some(cidr));
                    }
                }
            }
            if Instant::now() < next_status {
                continue;
            }
            next_status = Instant::now() + UPDATE_FREQUENCY;
            let fs_dir = self.fs_dir.clone();
            let m = tokio::task::spawn_blocking(move || host::measure(&fs_dir))
                .await
                .unwrap_or_default();
            let not_ready = self.not_ready.borrow().clone();
            let candidate = node_status::status(
                &self.settings,
                &self.host,
                &m,
                Some(&last),
                not_ready.as_deref(),
                now(),
            );
            if !node_status::should_report(Some(&last), &candidate, last_sent.elapsed()) {
                continue;
            }
            let patch = serde_json::json!({ "status": candidate });
            match self
                .api
                .patch_status(
                    &self.settings.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(node) => {
                    self.condition_events(Some(&last), &candidate).await;
                    last = candidate;
                    last_sent = Instant::now();
                    if let Some(cidr) = pod_cidr(&node) {
                        if pod_cidr_tx.borrow().as_deref() != Some(cidr.as_str()) {
                            pod_cidr_tx.send_replace(Some(cidr));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %self.settings.name, error = %e, "updating the node status failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::node_status::Reserved;

    fn ready(node: &Node) -> (String, String) {
        let c = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned())
            .expect("a Ready condition");
        (c.status, c.reason.unwrap_or_default())
    }

    #[tokio::test]
    async fn a_node_registers_ready_and_reports_not_ready_as_soon_as_the_kubelet_says_so() {
        let server = crate::apiserver::testing::TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(None);
        let api: Api<Node> = Api::all(server.admin());
        let hb = Heartbeat {
            api: api.clone(),
            settings: NodeSettings {
                name: "n1".into(),
                internal_ip: Some("10.0.0.5".parse().unwrap()),
                labels: Default::default(),
                taints: Vec::new(),
                reserved: Reserved::default(),
                kubelet_port: 10250,
                max_pods: node_status::MAX_PODS,
                eviction_hard: Default::default(),
                eviction_soft: Default::default(),
            },
            host: host::host_info(),
            fs_dir: dir.path().to_owned(),
            not_ready: rx,
        };
        let registered = hb.register().await.unwrap();
        // Registering again keeps the Node (same uid).
        assert_eq!(
            hb.register().await.unwrap().metadata.uid,
            registered.metadata.uid
        );
        let (node, first) = hb.first_report(&registered).await.unwrap();
        assert_eq!(ready(&node), ("True".into(), "KubeletReady".into()));
        let (cidr_tx, _cidr) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(hb.run(first, cidr_tx, shutdown.clone()));
        tx.send_replace(Some("container runtime network not ready".into()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let node = api.get("n1").await.unwrap();
            if ready(&node).0 == "False" {
                assert_eq!(ready(&node).1, "KubeletNotReady");
                break;
            }
            assert!(Instant::now() < deadline, "not reported: {:?}", node.status);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
    }
}
