//! `skiff sim-nodes`: simulated nodes (kubemark's hollow nodes) for trying the scheduler
//! and the controllers at scale, or a node failure, without machines.
//!
//! Each node ([`node`]) joins exactly as `skiff agent` does (`crate::agent::join`: token,
//! pinned CA, node client certificate by CSR with its node password) and runs the
//! kubelet's own code for everything the control plane sees: registration and status
//! (`kubelet::heartbeat`), the `kube-node-lease` Lease (`kubelet::lease`) and the pod
//! workers (`kubelet::Kubelet`). Only the runtime and the pod network are simulated: an
//! in-memory [`FakeCri`](crate::kubelet::fake_cri::FakeCri) (every image present,
//! containers are timers, probes answered) and [`network::SimNetwork`] (addresses from the
//! Node's podCIDR). No root, no containers, no kubelet API server.
//!
//! Failure controls, with plain kubectl ([`annotations`]):
//! - `kubectl annotate node sim-1 sim.skiff.io/heartbeat=stop`: a dead host (no Lease
//!   renewals, no status, pods no longer updated) until the annotation is removed;
//! - pod annotations `sim.skiff.io/exit-code: "<n>"` (with `sim.skiff.io/run-seconds:
//!   "<s>"`): containers exit with n after s seconds and are restarted per restartPolicy;
//!   `sim.skiff.io/ready: "false"`: readiness probes fail.
//!
//! Invariant: each node acts only as itself (`system:node:<name>`, its own client
//! certificate, so no connection is shared between nodes); the command shares nothing
//! with the server but the API.

pub mod annotations;
pub mod network;
pub mod node;

use crate::cli::sim_nodes::SimNodesArgs;
use crate::kubelet::node_status::{self, EvictionHard, NodeSettings, Reserved, Threshold};
use futures::StreamExt;
use node::{SimNode, Template};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The settings every node of the command shares (its name is set per node).
pub fn template(args: &SimNodesArgs) -> anyhow::Result<Template> {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(annotations::SIMULATED_LABEL.to_owned(), "true".to_owned());
    for l in &args.node_label {
        let (k, v) =
            node_status::parse_label(l).map_err(|e| anyhow::anyhow!("--node-label: {e}"))?;
        labels.insert(k, v);
    }
    let taints = args
        .node_taint
        .iter()
        .map(|t| node_status::parse_taint(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--node-taint: {e}"))?;
    let memory = Reserved::parse(&format!("memory={}", args.memory))
        .map_err(|e| anyhow::anyhow!("--memory: {e}"))?
        .memory;
    if args.cpu == 0 || memory == 0 || args.pods == 0 {
        anyhow::bail!("--cpu, --memory and --pods must be more than 0");
    }
    let mut host = crate::kubelet::host::host_info();
    host.cpus = args.cpu;
    host.memory_bytes = memory;
    Ok(Template {
        url: args.server.clone(),
        token: args.token.clone(),
        data_dir: args.data_dir.clone(),
        settings: NodeSettings {
            name: String::new(),
            internal_ip: Some(crate::kubelet::host::default_route_ip()),
            labels,
            taints,
            reserved: Reserved::default(),
            kubelet_port: 10250,
            max_pods: args.pods,
            // A hollow node's disk and memory are not the host's: pressure measured on the
            // host would taint every simulated node the moment the host's disk ran low.
            eviction_hard: EvictionHard {
                memory_available: Threshold::Bytes(0),
                nodefs_available: Threshold::Bytes(0),
            },
            eviction_soft: Default::default(),
        },
        host,
    })
}

/// `<prefix>-<i>` for i in 0..count.
pub fn node_names(prefix: &str, count: u32) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// `skiff sim-nodes`: starts the nodes (a few joins at a time), then keeps them going until
/// SIGTERM/SIGINT. A refused join (bad token, CA mismatch) ends the command.
pub async fn run_command(args: SimNodesArgs) -> anyhow::Result<()> {
    crate::pki::parse_join_token(&args.token).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let template = template(&args)?;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let names = node_names(&args.name_prefix, args.count);
    let starting = async {
        let mut nodes = Vec::with_capacity(names.len());
        let mut joins = futures::stream::iter(names.iter().cloned())
            .map(|name| SimNode::start(&template, name, &shutdown))
            .buffer_unordered(args.join_parallelism.max(1));
        while let Some(n) = joins.next().await {
            nodes.push(n?);
        }
        Ok::<_, node::SimNodeError>(nodes)
    };
    let nodes = tokio::select! {
        _ = crate::server::wait_for_signal() => {
            shutdown.cancel();
            return Ok(());
        }
        n = starting => match n {
            Ok(n) => n,
            Err(e) => {
                shutdown.cancel();
                return Err(e.into());
            }
        },
    };
    tracing::info!(
        nodes = nodes.len(),
        ms = started.elapsed().as_millis() as u64,
        "all simulated nodes registered and Ready"
    );
    let mut running = tokio::task::JoinSet::new();
    for n in nodes {
        tracing::debug!(node = %n.name(), "simulated node running");
        running.spawn(n.run(template.url.clone(), shutdown.clone()));
    }
    crate::server::wait_for_signal().await;
    tracing::info!("stopping the simulated nodes");
    shutdown.cancel();
    while running.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> SimNodesArgs {
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            a: SimNodesArgs,
        }
        let mut v = vec![
            "x",
            "--server",
            "https://s:6443",
            "--token",
            "K10abc::server:def",
        ];
        v.extend_from_slice(extra);
        P::parse_from(v).a
    }

    #[test]
    fn the_template_carries_the_synthetic_capacity_the_simulated_label_and_the_flags() {
        let t = template(&args(&[
            "--cpu",
            "8",
            "--memory",
            "32Gi",
            "--pods",
            "250",
            "--node-label",
            "zone=a",
            "--node-taint",
            "sim=yes:NoSchedule",
        ]))
        .unwrap();
        assert_eq!(t.host.cpus, 8);
        assert_eq!(t.host.memory_bytes, 32 << 30);
        assert_eq!(t.settings.max_pods, 250);
        assert_eq!(t.settings.labels[annotations::SIMULATED_LABEL], "true");
        assert_eq!(t.settings.labels["zone"], "a");
        assert_eq!(t.settings.taints[0].key, "sim");
        assert!(template(&args(&["--memory", "lots"])).is_err());
        assert!(template(&args(&["--node-taint", "nope"])).is_err());
    }

    #[test]
    fn nodes_are_named_from_the_prefix() {
        assert_eq!(node_names("sim", 3), ["sim-0", "sim-1", "sim-2"]);
        assert!(node_names("x", 0).is_empty());
    }
}
