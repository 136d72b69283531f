//! One simulated node: joined with the agent's join code, registered and kept fresh with
//! the kubelet's heartbeat and Lease code, its pods run by the real [`Kubelet`] on a
//! [`FakeCri`] and a [`SimNetwork`].
//!
//! The node's life has two layers. Its identity (directory, client, Node uid, runtime,
//! network, certificate renewal) lasts as long as the command. Its "host" (the heartbeat,
//! the Lease and the kubelet) is started and stopped by the `sim.skiff.io/heartbeat`
//! annotation of its Node, polled every [`CONTROL_POLL`]: a stopped host writes nothing,
//! as a dead machine; started again it reports at once and re-adopts its pods, whose
//! simulated containers kept running in the runtime meanwhile.
//!
//! Invariant: every write about the node goes through its own identity
//! (`system:node:<name>`), so the Node authorizer and NodeRestriction judge it as a real
//! kubelet.

use super::annotations;
use super::network::SimNetwork;
use crate::agent::{client, join, renew};
use crate::kubelet::fake_cri::FakeCri;
use crate::kubelet::heartbeat::{self, Heartbeat};
use crate::kubelet::node_status::{HostInfo, NodeSettings};
use crate::kubelet::{lease, Kubelet, KubeletConfig};
use crate::pki::CertPair;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often a node reads its own Node for the heartbeat annotation. (A node may only
/// read its own Node by name, not watch it with a field selector, so this is a poll.)
pub const CONTROL_POLL: Duration = Duration::from_secs(3);

/// The longest pause between tries of a registration that failed in transport.
const REGISTER_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SimNodeError {
    #[error(transparent)]
    Join(#[from] join::JoinError),
    #[error("registering node {node:?}: {cause}")]
    Register { node: String, cause: kube::Error },
}

/// What every simulated node of one command shares.
pub struct Template {
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    /// Labels, taints, capacity, addresses; the name is set per node.
    pub settings: NodeSettings,
    /// The synthetic host: CPUs and memory from the flags, the rest from this host.
    pub host: HostInfo,
}

/// A joined, registered node.
pub struct SimNode {
    name: String,
    dir: PathBuf,
    client: kube::Client,
    node_uid: Option<String>,
    settings: NodeSettings,
    host: HostInfo,
    not_ready: watch::Sender<Option<String>>,
    pod_cidr: watch::Sender<Option<String>>,
    runtime: Arc<FakeCri>,
    network: Arc<SimNetwork>,
    renewal: (client::NodeClient, CertPair, String),
    /// The running host: its heartbeat, Lease and kubelet (None while dead).
    host_tasks: Option<(CancellationToken, JoinSet<()>)>,
}

impl SimNode {
    /// Joins as `name` (credentials kept in `<data-dir>/<name>`), registers the Node and
    /// reports it Ready, and starts its host.
    pub async fn start(
        t: &Template,
        name: String,
        shutdown: &CancellationToken,
    ) -> Result<SimNode, SimNodeError> {
        let dir = t.data_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|cause| join::JoinError::Io {
            path: dir.clone(),
            cause,
        })?;
        let joined = join::join(&t.url, &t.token, &dir, &name).await?;
        let inner = client::cert_client(&t.url, &joined.ca_pem, &joined.client_pair)
            .map_err(join::JoinError::from)?;
        let node_client = client::NodeClient::new(inner);
        let client = node_client.client();
        let settings = NodeSettings {
            name: name.clone(),
            ..t.settings.clone()
        };
        let (not_ready, _) = watch::channel(None);
        let (pod_cidr, pod_cidr_rx) = watch::channel(None);
        // What a container does comes from its pod's annotations as the kubelet passes them
        // with each creation (so a changed annotation applies from the next restart on).
        let runtime = Arc::new(FakeCri::simulated(Arc::new(annotations::for_config)));
        let network = Arc::new(SimNetwork::new(dir.join("ipam"), pod_cidr_rx));
        let mut node = SimNode {
            name: name.clone(),
            dir,
            client,
            node_uid: None,
            settings,
            host: t.host.clone(),
            not_ready,
            pod_cidr,
            runtime,
            network,
            renewal: (node_client, joined.client_pair, joined.ca_pem),
            host_tasks: None,
        };
        let register_err = |cause| SimNodeError::Register {
            node: name.clone(),
            cause,
        };
        // A server busy with many joining nodes may drop a connection: only an answer
        // (a refusal) ends the command, a transport error is tried again (as the join
        // waits for a server that is not up yet).
        let mut pause = Duration::from_millis(200);
        loop {
            let hb = node.heartbeat();
            let attempt = async {
                let registered = hb.register().await?;
                node.node_uid = registered.metadata.uid.clone();
                hb.event("Starting", "Starting kubelet.").await;
                node.start_host(hb, &registered, shutdown).await
            };
            match attempt.await {
                Ok(()) => return Ok(node),
                Err(e) if !matches!(e, kube::Error::Api(_)) => {
                    tracing::warn!(node = %name, error = %e, "registering failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(register_err(e)),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(REGISTER_RETRY);
                }
                Err(e) => return Err(register_err(e)),
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            api: Api::all(self.client.clone()),
            settings: self.settings.clone(),
            host: self.host.clone(),
            fs_dir: self.dir.clone(),
            not_ready: self.not_ready.subscribe(),
        }
    }

    /// Reports the node's status now, then keeps the heartbeat, the Lease and the kubelet
    /// going until the host is stopped.
    async fn start_host(
        &mut self,
        hb: Heartbeat,
        current: &Node,
        shutdown: &CancellationToken,
    ) -> Result<(), kube::Error> {
        let (reported, first) = hb.first_report(current).await?;
        if let Some(cidr) = heartbeat::pod_cidr(&reported) {
            self.pod_cidr.send_if_modified(|c| {
                let changed = c.as_deref() != Some(cidr.as_str());
                *c = Some(cidr);
                changed
            });
        }
        let token = shutdown.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(hb.run(first, self.pod_cidr.clone(), token.clone()));
        tasks.spawn(lease::run(
            self.client.clone(),
            self.name.clone(),
            self.node_uid.clone(),
            token.clone(),
        ));
        let kubelet = Kubelet::new(self.kubelet_config());
        let (node, stop) = (self.name.clone(), token.clone());
        tasks.spawn(async move {
            if let Err(e) = kubelet.run(stop).await {
                tracing::error!(node = %node, error = %e, "the simulated kubelet stopped");
            }
        });
        self.host_tasks = Some((token, tasks));
        Ok(())
    }

    async fn stop_host(&mut self) {
        if let Some((token, mut tasks)) = self.host_tasks.take() {
            token.cancel();
            while tasks.join_next().await.is_some() {}
        }
    }

    fn kubelet_config(&self) -> KubeletConfig {
        KubeletConfig {
            node_name: self.name.clone(),
            client: self.client.clone(),
            runtime: self.runtime.clone(),
            network: self.network.clone(),
            pod_log_dir: self.dir.join("logs"),
            root_dir: self.dir.join("pods"),
            host_ips: self
                .settings
                .internal_ip
                .iter()
                .map(|ip| ip.to_string())
                .collect(),
            allocatable_cpu_milli: (self.host.cpus * 1000) as i64,
            allocatable_memory_bytes: self.host.memory_bytes as i64,
            static_pod_dir: None,
            eviction: None,
            image_gc: None,
        }
    }

    /// Runs until `shutdown`: follows the heartbeat annotation, renews the client
    /// certificate.
    pub async fn run(mut self, url: String, shutdown: CancellationToken) {
        let (node_client, pair, ca_pem) = self.renewal.clone();
        let renewal = tokio::spawn(renew::client_cert(
            node_client,
            url,
            ca_pem,
            pair,
            self.name.clone(),
            self.dir.clone(),
            shutdown.clone(),
        ));
        let nodes: Api<Node> = Api::all(self.client.clone());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(CONTROL_POLL) => {}
            }
            let node = match nodes.get_opt(&self.name).await {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(node = %self.name, error = %e, "reading the node failed");
                    continue;
                }
            };
            let dead = annotations::heartbeat_stopped(node.metadata.annotations.as_ref());
            match (dead, self.host_tasks.is_some()) {
                (true, true) => {
                    tracing::info!(node = %self.name, "heartbeat stopped by annotation: the node is a dead host");
                    self.stop_host().await;
                }
                (false, false) => {
                    tracing::info!(node = %self.name, "heartbeat annotation removed: the node is back");
                    if let Err(e) = self.start_host(self.heartbeat(), &node, &shutdown).await {
                        tracing::warn!(node = %self.name, error = %e, "reporting the node's status failed; retrying");
                    }
                }
                _ => {}
            }
        }
        self.stop_host().await;
        let _ = renewal.await;
    }
}
