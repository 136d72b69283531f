//! The node's pod machinery, started once the node is registered: the container runtime,
//! the pod network, the kubelet API (:10250) and the pod workers.
//!
//! The pod network is opened when the first pod needs one (as a CNI bridge plugin creates
//! its bridge with the first pod), or at start when it holds state from before a restart:
//! a node that runs no pods leaves the host's network untouched.

use super::{AgentError, NodeIdentity};
use crate::cli::NodeArgs;
use crate::kubelet::node_status::EvictionHard;
use crate::kubelet::runtime_cri::RuntimeCri;
use crate::kubelet::{server as kubelet_api, Kubelet, KubeletConfig, NodeEviction};
use crate::network::{
    Ipv4Net, NetworkError, NodeNetwork, NodeNetworkConfig, PodNetwork, Sandbox, SandboxRequest,
};
use crate::runtime::containers::facade::{Runtime, RuntimeOptions};
use crate::runtime::images::RegistriesConfig;
use futures::future::BoxFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{watch, OnceCell};
use tokio_util::sync::CancellationToken;

/// The pod network, opened on first use with the node's podCIDR.
pub struct LazyNetwork {
    bridge: String,
    cluster_cidr: Ipv4Net,
    state_dir: PathBuf,
    pod_cidr: watch::Receiver<Option<String>>,
    net: OnceCell<NodeNetwork>,
}

impl LazyNetwork {
    async fn get(&self) -> Result<&NodeNetwork, NetworkError> {
        self.net
            .get_or_try_init(|| async {
                let pod_cidr = wait_pod_cidr(&self.pod_cidr).await?;
                let mut cfg =
                    NodeNetworkConfig::new(pod_cidr, self.cluster_cidr, self.state_dir.clone());
                cfg.bridge = self.bridge.clone();
                NodeNetwork::open(cfg).await
            })
            .await
    }

    /// Whether an earlier run left pod network state (then it is opened at start).
    fn has_state(&self) -> bool {
        std::fs::read_dir(&self.state_dir).is_ok_and(|mut d| d.next().is_some())
    }
}

/// The node's podCIDR, once the server's node-ipam controller has allocated it.
pub async fn wait_pod_cidr(
    pod_cidr: &watch::Receiver<Option<String>>,
) -> Result<Ipv4Net, NetworkError> {
    let mut rx = pod_cidr.clone();
    let cidr = rx
        .wait_for(|c| c.is_some())
        .await
        .map_err(|_| NetworkError::Netlink("the node has no podCIDR".into()))?
        .clone()
        .unwrap_or_default();
    cidr.parse()
        .map_err(|e| NetworkError::Netlink(format!("the node's podCIDR {cidr:?}: {e}")))
}

impl PodNetwork for LazyNetwork {
    fn setup(&self, req: SandboxRequest) -> BoxFuture<'_, Result<Sandbox, NetworkError>> {
        Box::pin(async move { self.get().await?.setup(req).await })
    }

    fn teardown(&self, pod_id: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        let id = pod_id.to_owned();
        Box::pin(async move {
            if self.net.get().is_none() && !self.has_state() {
                return Ok(());
            }
            self.get().await?.teardown(&id).await
        })
    }

    fn pods(&self) -> Vec<String> {
        self.net.get().map(|n| n.pods()).unwrap_or_default()
    }
}

/// The node's eviction thresholds.
pub struct EvictionSettings {
    pub hard: EvictionHard,
    pub soft: crate::kubelet::node_status::EvictionSoft,
}

/// Runs the runtime, pod network, kubelet API and kubelet until `shutdown`.
pub async fn run(
    identity: &NodeIdentity,
    agent_dir: &Path,
    args: &NodeArgs,
    host_ips: Vec<String>,
    eviction: EvictionSettings,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let pods_err = |what: &str, e: &dyn std::fmt::Display| AgentError::Pods(format!("{what}: {e}"));
    let registries = if args.private_registry.exists() {
        RegistriesConfig::load(&args.private_registry)
            .map_err(|e| pods_err(&args.private_registry.display().to_string(), &e))?
    } else {
        RegistriesConfig::default()
    };
    let runtime = Arc::new(
        Runtime::open(
            agent_dir,
            RuntimeOptions {
                registries,
                ..Default::default()
            },
        )
        .map_err(|e| pods_err("opening the container runtime", &e))?,
    );
    let cluster_cidr: Ipv4Net = args
        .node_cluster_cidr
        .parse()
        .map_err(|e| pods_err(&format!("cluster CIDR {:?}", args.node_cluster_cidr), &e))?;
    let network = Arc::new(LazyNetwork {
        bridge: args.pod_bridge.clone(),
        cluster_cidr,
        state_dir: agent_dir.join("network"),
        pod_cidr: identity.pod_cidr.clone(),
        net: OnceCell::new(),
    });
    if network.has_state() {
        network
            .get()
            .await
            .map_err(|e| pods_err("opening the pod network", &e))?;
    }
    let tls = kubelet_api::follow_serving_cert(
        identity.serving.clone(),
        |c: &super::ServingCert| (c.cert_pem.clone(), c.key_pem.clone()),
        identity.ca_pem.clone(),
    )
    .map_err(|e| pods_err("kubelet API TLS", &e))?;
    let api = kubelet_api::serve(
        kubelet_api::ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.kubelet_port)),
            node_name: identity.name.clone(),
            tls,
            client: identity.client.clone(),
            runtime: runtime.clone(),
            pod_log_dir: args.pod_logs_dir.clone(),
        },
        shutdown.clone(),
    );
    let kubelet = Kubelet::new(KubeletConfig {
        node_name: identity.name.clone(),
        client: identity.client.clone(),
        runtime: Arc::new(RuntimeCri::new(runtime)),
        network,
        pod_log_dir: args.pod_logs_dir.clone(),
        root_dir: agent_dir.join("pods"),
        host_ips,
        allocatable_cpu_milli: 0,
        allocatable_memory_bytes: 0,
        static_pod_dir: Some(agent_dir.join("pod-manifests")),
        eviction: Some(NodeEviction {
            thresholds: eviction.hard,
            soft: eviction.soft,
            fs_dir: agent_dir.to_path_buf(),
        }),
        image_gc: Some(super::image_gc_policy(args)),
    });
    tokio::select! {
        r = api => r.map_err(|e| pods_err("kubelet API", &e)),
        r = kubelet.run(shutdown.clone()) => r.map_err(|e| pods_err("kubelet", &e)),
    }
}
