//! `skiff sim-nodes`: flags of the simulated nodes (the logic is `crate::simnodes`).

use clap::Args;
use std::path::PathBuf;

/// The long help: what a simulated node is, and the failure controls.
const ABOUT: &str = "\
Run simulated nodes joined to a server (like kubemark's hollow nodes).

Each simulated node joins with the token exactly as `skiff agent` does (pinned CA, its own \
node client certificate by CSR, node password), registers its Node (label \
node.skiff.io/simulated=true, capacity from --cpu/--memory/--pods) and keeps its status and \
its kube-node-lease Lease fresh. Pods bound to it run through the real kubelet code on an \
in-memory runtime: every image is present, containers are timers, probes are answered by \
the simulation, pod IPs come from the Node's spec.podCIDR. No root, no real containers, no \
pod network and no kubelet API server (kubectl logs/exec/port-forward do not work on them).

Failure controls, with plain kubectl:
  kubectl annotate node sim-1 sim.skiff.io/heartbeat=stop
      the node behaves as a dead host: no Lease renewals, no status updates, its pods are
      no longer updated; `kubectl annotate node sim-1 sim.skiff.io/heartbeat-` revives it.
  pod annotations (read when each container is created):
      sim.skiff.io/exit-code: \"<n>\"     containers exit with n (after run-seconds, default 0);
                                       restarted per restartPolicy, so CrashLoopBackOff shows
      sim.skiff.io/run-seconds: \"<s>\"   how long containers run before exiting (alone: exit 0,
                                       a Job's pod completes)
      sim.skiff.io/ready: \"false\"       readiness probes fail (a container without a readiness
                                       probe is Ready while running, as on a real node)
";

#[derive(Args, Debug, Clone)]
#[command(long_about = ABOUT)]
pub struct SimNodesArgs {
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// URL of the server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "SKIFF_URL")]
    pub server: String,
    /// Join token (`skiff token` on the server prints it).
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: String,
    /// Nodes are named <prefix>-0 .. <prefix>-<count-1>.
    #[arg(long, default_value = "sim")]
    pub name_prefix: String,
    /// Where each node keeps its credentials (one directory per node), so a restart of the
    /// command re-uses the identities.
    #[arg(long, default_value = "/var/lib/skiff/sim-nodes")]
    pub data_dir: PathBuf,
    /// CPUs of each node (whole CPUs).
    #[arg(long, default_value_t = 4)]
    pub cpu: u64,
    /// Memory of each node (a quantity, e.g. 16Gi).
    #[arg(long, default_value = "16Gi")]
    pub memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value_t = 110)]
    pub pods: u64,
    /// Extra label of every node, KEY=VALUE (repeatable).
    #[arg(long)]
    pub node_label: Vec<String>,
    /// Taint of every node, KEY[=VALUE]:EFFECT (repeatable).
    #[arg(long)]
    pub node_taint: Vec<String>,
    /// How many nodes join at the same time.
    #[arg(long, default_value_t = 8, hide = true)]
    pub join_parallelism: usize,
}
