//! Node agent wiring: [`run`] is the one entry point, used by `skiff agent` and by
//! `skiff server` for its own node (as k3s's server runs its agent code against itself).
//!
//! [`start`] makes the node: a remote agent joins with its token ([`join`]: CA pinned by the
//! token's hash, client certificate by CSR), the server's own node uses an in-process
//! client acting as `system:node:NAME`; then the Node is registered and its first status
//! (Ready) reported, and the kubelet serving certificate obtained. It returns an [`Agent`]
//! whose [`NodeIdentity`] the kubelet and kubelet API are built from; [`Agent::run`] keeps
//! the heartbeat, the Lease, certificate renewal and the airgap image import going until
//! shutdown.
//!
//! Invariant: every write about the node goes through its own identity, except the
//! control-plane role label of the server's node (a node may not set `node-role` labels on
//! itself; the server sets it, as k3s does).

pub mod certs;
pub mod client;
pub mod identity;
pub mod join;
pub mod pods;
pub mod renew;

pub use identity::{NodeIdentity, ServingCert};

use crate::apiserver::{ApiState, UserInfo};
use crate::cli::NodeArgs;
use crate::kubelet::heartbeat::Heartbeat;
use crate::kubelet::image_gc::ImageGcPolicy;
use crate::kubelet::node_status::{self, HostInfo, NodeSettings, Reserved};
use crate::kubelet::{host, lease};
use crate::pki::CertPair;
use crate::runtime::images::{ImageStore, RegistriesConfig};
use certs::{Wanted, SERVING_CERT};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Directory under the agent dir whose tarballs are imported at every agent start.
pub const AIRGAP_IMAGES_DIR: &str = "images";

/// Where the agent finds its control plane.
#[derive(Clone)]
pub enum ControlPlane {
    /// The `skiff server` in this process: its API state (for in-process clients) and CA
    /// (for the node's serving certificate).
    Local { state: Arc<ApiState>, ca: CertPair },
    /// A remote server joined with a token.
    Remote { url: String, token: String },
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlPlane::Local { .. } => f.write_str("Local"),
            ControlPlane::Remote { url, .. } => write!(f, "Remote({url})"),
        }
    }
}

/// Everything an agent is built from.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `<data-dir>/agent`: images, snapshots, containers, node credentials.
    pub agent_dir: PathBuf,
    pub control_plane: ControlPlane,
    /// How the node presents itself (`--node-name`, `--node-ip`, labels, taints, ...).
    pub node: NodeArgs,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("opening the image store in {dir}: {source}")]
    ImageStore {
        dir: PathBuf,
        source: crate::runtime::images::ImageError,
    },
    #[error(transparent)]
    Join(#[from] join::JoinError),
    #[error(transparent)]
    Config(#[from] node_status::NodeConfigError),
    #[error("registering node {node:?}: {cause}")]
    Register { node: String, cause: kube::Error },
    #[error("pods: {0}")]
    Pods(String),
    #[error("kubelet serving certificate of node {node:?}: {cause}")]
    Serving {
        node: String,
        cause: certs::CertError,
    },
}

/// The image garbage collection policy of `--image-gc-*` and `--image-minimum-gc-age`.
pub fn image_gc_policy(args: &NodeArgs) -> ImageGcPolicy {
    ImageGcPolicy {
        high_threshold_percent: args.image_gc_high_threshold,
        low_threshold_percent: args.image_gc_low_threshold,
        min_age: args.image_minimum_gc_age,
        period: args.image_gc_period,
    }
}

/// The node's settings from its flags and the host.
pub fn node_settings(args: &NodeArgs, host: &HostInfo) -> Result<NodeSettings, AgentError> {
    image_gc_policy(args)
        .validate()
        .map_err(node_status::NodeConfigError::ImageGc)?;
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.node_label {
        let (k, v) = node_status::parse_label(l)?;
        labels.insert(k, v);
    }
    let taints = args
        .node_taint
        .iter()
        .map(|t| node_status::parse_taint(t))
        .collect::<Result<Vec<_>, _>>()?;
    let kube = Reserved::parse(&args.kube_reserved)?;
    let system = Reserved::parse(&args.system_reserved)?;
    Ok(NodeSettings {
        name: args
            .node_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| host.hostname.clone()),
        internal_ip: Some(args.node_ip.unwrap_or_else(host::default_route_ip)),
        labels,
        taints,
        reserved: Reserved {
            cpu_millis: kube.cpu_millis + system.cpu_millis,
            memory: kube.memory + system.memory,
            ephemeral_storage: kube.ephemeral_storage + system.ephemeral_storage,
        },
        kubelet_port: args.kubelet_port,
        max_pods: node_status::MAX_PODS,
        eviction_hard: node_status::EvictionHard::parse(&args.eviction_hard)?,
        eviction_soft: node_status::EvictionSoft::parse(
            &args.eviction_soft,
            &args.eviction_soft_grace_period,
            args.eviction_max_pod_grace_period,
        )?,
    })
}

/// A started node: its identity and the loops that keep it alive.
pub struct Agent {
    pub identity: NodeIdentity,
    /// Why the node cannot run pods (`Some` → Ready False, `KubeletNotReady`, this
    /// message); the kubelet sets it while its runtime or pod network is not ready.
    pub not_ready: watch::Sender<Option<String>>,
    agent_dir: PathBuf,
    args: NodeArgs,
    host_ips: Vec<String>,
    /// `--eviction-hard` and `--eviction-soft`, parsed once with the node's settings, and
    /// where the eviction loop tells the heartbeat of soft pressure.
    eviction: pods::EvictionSettings,
    heartbeat: Heartbeat,
    first_status: k8s_openapi::api::core::v1::NodeStatus,
    node_uid: Option<String>,
    pod_cidr_tx: watch::Sender<Option<String>>,
    serving_renewal: (renew::Source, Wanted, watch::Sender<ServingCert>),
    client_renewal: Option<(client::NodeClient, String, CertPair)>,
}

/// Joins (or connects in-process), registers the Node, reports it Ready and obtains the
/// serving certificate. A server that cannot be reached yet is waited for; a refusal
/// (bad token, CA mismatch, node password) is an error. (`run` also imports the airgap
/// images; a caller using `start` directly does that itself.)
pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
    let started = Instant::now();
    let host = tokio::task::spawn_blocking(host::host_info)
        .await
        .unwrap_or_default();
    let settings = node_settings(&config.node, &host)?;
    let node = settings.name.clone();
    // Before joining: a node that cannot enforce pod limits must not register.
    let missing = crate::runtime::containers::cgroups::Hierarchies::detect().missing_controllers();
    if !missing.is_empty() {
        return Err(AgentError::Pods(format!(
            "no mounted cgroup hierarchy has the {} controller(s) (see /proc/self/mountinfo): \
             pod limits could not be enforced",
            missing.join(", ")
        )));
    }
    std::fs::create_dir_all(&config.agent_dir).map_err(|cause| join::JoinError::Io {
        path: config.agent_dir.clone(),
        cause,
    })?;
    // The node's client, CA, and how its certificates are renewed.
    let (client, ca_pem, serving_source, client_renewal, admin) = match &config.control_plane {
        ControlPlane::Local { state, ca } => {
            let client = state.client(UserInfo::new(
                &format!("system:node:{node}"),
                &["system:nodes"],
            ));
            let admin = state.client(UserInfo::new(
                crate::authz::LOOPBACK_USER,
                &[crate::apiserver::MASTERS_GROUP],
            ));
            (
                client,
                ca.cert_pem.clone(),
                renew::Source::Local(ca.clone()),
                None,
                Some(admin),
            )
        }
        ControlPlane::Remote { url, token } => {
            let joined = join::join(url, token, &config.agent_dir, &node).await?;
            let inner = client::cert_client(url, &joined.ca_pem, &joined.client_pair)
                .map_err(join::JoinError::from)?;
            let node_client = client::NodeClient::new(inner);
            let client = node_client.client();
            (
                client.clone(),
                joined.ca_pem.clone(),
                renew::Source::Csr(client),
                Some((node_client, url.clone(), joined.client_pair)),
                None,
            )
        }
    };
    let register_err = |cause| AgentError::Register {
        node: node.clone(),
        cause,
    };
    let (not_ready, not_ready_rx) = watch::channel(None);
    let heartbeat = Heartbeat {
        api: Api::all(client.clone()),
        settings: settings.clone(),
        host,
        fs_dir: config.agent_dir.clone(),
        not_ready: not_ready_rx,
    };
    let registered = heartbeat.register().await.map_err(register_err)?;
    if let Some(admin) = admin {
        // The server's own node: the role label a node may not set on itself.
        let patch =
            serde_json::json!({"metadata": {"labels": {node_status::CONTROL_PLANE_LABEL: "true"}}});
        Api::<Node>::all(admin)
            .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(register_err)?;
    }
    heartbeat.event("Starting", "Starting kubelet.").await;
    let (reported, first_status) = heartbeat
        .first_report(&registered)
        .await
        .map_err(register_err)?;
    tracing::info!(node = %node, ms = started.elapsed().as_millis() as u64, "node registered and Ready");
    let (pod_cidr_tx, pod_cidr) = watch::channel(crate::kubelet::heartbeat::pod_cidr(&reported));

    // The serving certificate: the stored one while it holds, else a new one.
    let mut sans = vec![node.clone()];
    if let Some(ip) = settings.internal_ip {
        sans.push(ip.to_string());
    }
    let wanted = Wanted::serving(&node, sans);
    let serving_err = |cause| AgentError::Serving {
        node: node.clone(),
        cause,
    };
    let pair = match certs::load(&config.agent_dir, SERVING_CERT) {
        Some(p)
            if certs::usable(&p, &ca_pem, std::time::SystemTime::now())
                && same_sans(&p, &wanted) =>
        {
            p
        }
        _ => {
            let p = match &serving_source {
                renew::Source::Csr(c) => certs::request(c, &wanted, Default::default()).await,
                renew::Source::Local(ca) => certs::issue_locally(ca, &wanted),
            }
            .map_err(serving_err)?;
            certs::store(&config.agent_dir, SERVING_CERT, &p).map_err(serving_err)?;
            p
        }
    };
    let (serving_tx, serving) = watch::channel(ServingCert {
        cert_pem: pair.cert_pem,
        key_pem: pair.key_pem,
    });
    tracing::info!(node = %node, ms = started.elapsed().as_millis() as u64, "kubelet serving certificate ready");
    Ok(Agent {
        not_ready,
        identity: NodeIdentity {
            name: node,
            client,
            ca_pem,
            serving,
            pod_cidr,
        },
        agent_dir: config.agent_dir,
        args: config.node,
        host_ips: settings
            .internal_ip
            .iter()
            .map(|ip| ip.to_string())
            .collect(),
        eviction: pods::EvictionSettings {
            hard: settings.eviction_hard,
            soft: settings.eviction_soft,
        },
        heartbeat,
        first_status,
        node_uid: registered.metadata.uid,
        pod_cidr_tx,
        serving_renewal: (serving_source, wanted, serving_tx),
        client_renewal,
    })
}

/// Whether a stored serving certificate names exactly what is wanted now (a new
/// `--node-ip` needs a new certificate).
fn same_sans(pair: &CertPair, wanted: &Wanted) -> bool {
    let Ok(der) = crate::pki::certs_from_pem(&pair.cert_pem) else {
        return false;
    };
    let Some(Ok((_, cert))) = der.first().map(|d| x509_parser::parse_x509_certificate(d)) else {
        return false;
    };
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) if ip.len() == 4 => {
                    names.push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string())
                }
                _ => {}
            }
        }
    }
    let mut want = wanted.sans.clone();
    names.sort();
    want.sort();
    names == want
}

impl Agent {
    /// Keeps the node going until `shutdown`: heartbeat, Lease, renewals, airgap import.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let node = self.identity.name.clone();
        // Held until the end, so the heartbeat always has someone who may still send.
        let _not_ready = self.not_ready;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(
            self.heartbeat
                .run(self.first_status, self.pod_cidr_tx, shutdown.clone()),
        );
        tasks.spawn(lease::run(
            self.identity.client.clone(),
            node.clone(),
            self.node_uid,
            shutdown.clone(),
        ));
        let (source, wanted, tx) = self.serving_renewal;
        tasks.spawn(renew::serving(
            source,
            wanted,
            self.agent_dir.clone(),
            tx,
            shutdown.clone(),
        ));
        if let Some((node_client, url, pair)) = self.client_renewal {
            tasks.spawn(renew::client_cert(
                node_client,
                url,
                self.identity.ca_pem.clone(),
                pair,
                node.clone(),
                self.agent_dir.clone(),
                shutdown.clone(),
            ));
        }
        // The pods: a failure here (kubelet port taken, runtime unusable) stops the agent.
        let result = pods::run(
            &self.identity,
            &self.agent_dir,
            &self.args,
            self.host_ips,
            self.eviction,
            shutdown.clone(),
        )
        .await;
        if result.is_err() {
            tasks.abort_all();
        }
        while tasks.join_next().await.is_some() {}
        result
    }
}

/// Runs the node agent until `shutdown`: the airgap images are imported from the start
/// (also while the server cannot be reached yet), the node is started and kept going.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    // In the background: a large airgap bundle must not delay the node.
    let dir = config.agent_dir.clone();
    let import = tokio::spawn(async move {
        match import_airgap_images(&dir).await {
            Ok(n) => tracing::debug!(images = n, "airgap import done"),
            // A broken store is logged, not fatal: the node can still pull images.
            Err(e) => tracing::warn!(error = %e, "importing airgap images failed"),
        }
    });
    let result = async {
        let agent = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            a = start(config) => a?,
        };
        agent.run(shutdown).await
    }
    .await;
    import.abort();
    result
}

/// `skiff agent`: runs the agent until SIGTERM/SIGINT.
pub async fn run_command(args: crate::cli::AgentArgs) -> anyhow::Result<()> {
    crate::pki::parse_join_token(&args.token).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let config = AgentConfig {
        agent_dir: args.data_dir.join("agent"),
        control_plane: ControlPlane::Remote {
            url: args.server,
            token: args.token,
        },
        node: args.node,
    };
    let shutdown = CancellationToken::new();
    let mut agent = tokio::spawn(run(config, shutdown.clone()));
    let result = tokio::select! {
        _ = crate::server::wait_for_signal() => {
            shutdown.cancel();
            (&mut agent).await?
        }
        done = &mut agent => done?,
    };
    result?;
    Ok(())
}

/// Imports the airgap tarballs. A broken tarball is logged and skipped (see
/// [`ImageStore::import_dir`]); only a store that cannot be opened is an error.
pub async fn import_airgap_images(agent_dir: &Path) -> Result<usize, AgentError> {
    // Importing needs no registry settings; pulls read registries.yaml themselves.
    let store = ImageStore::open(agent_dir, RegistriesConfig::default()).map_err(|source| {
        AgentError::ImageStore {
            dir: agent_dir.to_owned(),
            source,
        }
    })?;
    let dir = agent_dir.join(AIRGAP_IMAGES_DIR);
    let images = store
        .import_dir(&dir)
        .await
        .map_err(|source| AgentError::ImageStore {
            dir: dir.clone(),
            source,
        })?;
    for image in &images {
        tracing::info!(image = %image.reference, "imported airgap image");
    }
    Ok(images.len())
}
