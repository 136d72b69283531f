//! Command-line interface: clap definitions for every user-facing command.

pub mod ctr;
pub mod images;
pub mod sim_nodes;
pub mod token;

use clap::{Args, Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "skiff", version = crate::VERSION_STRING, about = "A tiny Kubernetes-compatible cluster in one binary")]
pub struct Cli {
    /// Config file whose keys are flag names (default /etc/skiff/config.yaml when present).
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `skiff::apiserver=trace`.
    #[arg(long, global = true, env = "SKIFF_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start and moved into its command: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane (API server, scheduler, controllers) and a node agent.
    Server(ServerArgs),
    /// Run a node agent joined to a server.
    Agent(AgentArgs),
    /// Print the join token of a local server, or manage bootstrap tokens.
    Token(TokenArgs),
    /// Manage the node's images.
    Images(images::ImagesArgs),
    /// Run and inspect containers directly (debugging front end, like ctr/nerdctl).
    Ctr(ctr::CtrArgs),
    /// Run simulated nodes (hollow kubelets: no containers, no root) joined to a server.
    SimNodes(sim_nodes::SimNodesArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Directory holding the store, certificates and agent state.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// HTTPS port of the Kubernetes API.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = "/etc/skiff/skiff.yaml")]
    pub write_kubeconfig: PathBuf,
    /// File mode of the admin kubeconfig (octal).
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    pub write_kubeconfig_mode: u32,
    /// Extra subject alternative names for the serving certificate (repeatable).
    #[arg(long)]
    pub tls_san: Vec<String>,
    /// Shared secret nodes use to join (generated when absent).
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: Option<String>,
    /// Do not run a node agent on this host.
    #[arg(long)]
    pub disable_agent: bool,
    /// Service IP range.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Pod IP range (each node gets a /24 of it).
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Seconds between two syncs of each HorizontalPodAutoscaler.
    #[arg(long, default_value_t = 15)]
    pub horizontal_pod_autoscaler_sync_period: u64,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Seconds between compactions of the store's event history.
    #[arg(long, default_value_t = 300, hide = true)]
    pub store_compaction_interval: u64,
    /// Revisions of event history kept by compaction (watch resume window).
    #[arg(long, default_value_t = 10_000, hide = true)]
    pub store_compaction_keep: u64,
    /// Requests from the network served at once, shared by the priority levels (watches and
    /// other long-running requests, `system:masters` and the server's own components are not
    /// counted); the rest wait for a seat.
    #[arg(long, default_value_t = crate::apiserver::DEFAULT_MAX_REQUESTS_INFLIGHT, env = "SKIFF_MAX_REQUESTS_INFLIGHT")]
    pub max_requests_inflight: usize,
    /// How long an event is kept after its last write (0 keeps events forever).
    #[arg(long, default_value = "1h", value_parser = token::parse_duration)]
    pub event_ttl: std::time::Duration,
    /// Silence after which a node's conditions become Unknown and it is tainted unreachable.
    #[arg(long, default_value = "40s", value_parser = token::parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// How often the node lifecycle controller looks at every node.
    #[arg(long, default_value = "5s", value_parser = token::parse_duration)]
    pub node_monitor_period: std::time::Duration,
    /// tolerationSeconds of the not-ready:NoExecute toleration every pod gets by default.
    #[arg(long, default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// tolerationSeconds of the unreachable:NoExecute toleration every pod gets by default.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
    /// Terminated pods kept before the oldest are deleted (0 disables).
    #[arg(long, default_value_t = 12_500)]
    pub terminated_pod_gc_threshold: usize,
    /// How long a pod's node must be missing before pod GC deletes the pod.
    #[arg(long, default_value = "40s", value_parser = token::parse_duration, hide = true)]
    pub pod_gc_orphan_quarantine: std::time::Duration,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// URL of the server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "SKIFF_URL")]
    pub server: String,
    /// Join token (`skiff token` on the server prints it).
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: String,
    /// Directory holding the agent's images, containers and credentials.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// How a node presents itself (server and agent alike).
#[derive(Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// Node name (default: the host name).
    #[arg(long, env = "SKIFF_NODE_NAME")]
    pub node_name: Option<String>,
    /// The node's InternalIP (default: the address of the default-route interface).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Label to register the node with, KEY=VALUE (repeatable).
    #[arg(long)]
    pub node_label: Vec<String>,
    /// Taint to register the node with, KEY[=VALUE]:EFFECT (repeatable).
    #[arg(long)]
    pub node_taint: Vec<String>,
    /// Resources reserved for Kubernetes daemons, e.g. cpu=100m,memory=256Mi.
    #[arg(long, default_value = "")]
    pub kube_reserved: String,
    /// Resources reserved for the operating system, e.g. cpu=100m,memory=256Mi.
    #[arg(long, default_value = "")]
    pub system_reserved: String,
    /// Hard-eviction thresholds: below them the node reports pressure and evicts pods
    /// (memory.available and nodefs.available, an amount or a percentage).
    #[arg(long, default_value = crate::kubelet::node_status::DEFAULT_EVICTION_HARD)]
    pub eviction_hard: String,
    /// Soft-eviction thresholds, as --eviction-hard: crossed for their grace period, the
    /// node reports pressure and evicts pods with a grace period.
    #[arg(long, default_value = "")]
    pub eviction_soft: String,
    /// How long each soft threshold must be crossed before pods are evicted for it, e.g.
    /// memory.available=1m30s (every --eviction-soft signal needs one).
    #[arg(long, default_value = "")]
    pub eviction_soft_grace_period: String,
    /// The longest grace period, in seconds, a pod evicted for a soft threshold gets (its
    /// own terminationGracePeriodSeconds if shorter).
    #[arg(long, default_value_t = 0)]
    pub eviction_max_pod_grace_period: i64,
    /// Percent of the image filesystem in use at which unused images are removed (100:
    /// never).
    #[arg(long, default_value_t = 85)]
    pub image_gc_high_threshold: u8,
    /// Percent of the image filesystem in use that image garbage collection frees down to.
    #[arg(long, default_value_t = 80)]
    pub image_gc_low_threshold: u8,
    /// How long an unused image is kept at least before it may be removed.
    #[arg(long, default_value = "2m", value_parser = token::parse_duration)]
    pub image_minimum_gc_age: std::time::Duration,
    /// How often image filesystem usage is checked (upstream's fixed 5 minutes).
    #[arg(long, default_value = "5m", value_parser = token::parse_duration, hide = true)]
    pub image_gc_period: std::time::Duration,
    /// Port the kubelet API listens on (advertised in the Node's daemonEndpoints).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Root of the pods' CRI logs (`<ns>_<pod>_<uid>/<container>/<restart>.log`).
    #[arg(long, default_value = crate::kubelet::labels::DEFAULT_POD_LOG_DIR)]
    pub pod_logs_dir: PathBuf,
    /// Name of the pods' bridge (and of the NAT table); several nodes on one host need
    /// distinct ones.
    #[arg(long, default_value = "skiff0", hide = true)]
    pub pod_bridge: String,
    /// The cluster's pod range as the node sees it (pod traffic leaving it is
    /// masqueraded); the server passes its --cluster-cidr to its own node.
    #[arg(long, default_value = "10.42.0.0/16", hide = true)]
    pub node_cluster_cidr: String,
    /// Registry mirrors and credentials for image pulls (k3s's registries.yaml format).
    #[arg(long, default_value = images::DEFAULT_REGISTRIES)]
    pub private_registry: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    #[arg(long, global = true, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// Admin kubeconfig of the local server (create, list, delete).
    #[arg(long, global = true, default_value = "/etc/skiff/skiff.yaml")]
    pub kubeconfig: PathBuf,
    #[command(subcommand)]
    pub command: Option<TokenCommand>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Create a bootstrap token nodes can join with; prints the full join token.
    Create {
        /// How long the token is valid (e.g. 24h, 30m, 0 = never expires).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// A human-friendly description of the token.
        #[arg(long, default_value = "")]
        description: String,
        /// Extra groups the token authenticates as (comma-separated, each
        /// system:bootstrappers:...).
        #[arg(long, default_value = token::DEFAULT_GROUP)]
        groups: String,
    },
    /// List bootstrap tokens.
    List,
    /// Delete a bootstrap token (by ID, ID.SECRET or the full join token).
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal file mode like 0600"))
}
