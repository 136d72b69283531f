//! What a test node (a server's own agent or a `skiff agent`) is started with so that
//! several run side by side on one host, and the clean-up of what a killed agent leaves
//! behind: containers and their shims, pod network namespaces, veths, the bridge and its
//! NAT table, and mounts under its data dir.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Hard-eviction thresholds of test nodes: the defaults (nodefs.available<10%) would make
/// the outcome of every pod test depend on how full the host's disk is (a node short of disk
/// refuses new pods, as upstream's does). Tests of pressure pass their own `--eviction-hard`.
pub const TEST_EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<64Mi";

/// A node's host-wide names: its own bridge, kubelet port and pod log dir.
pub struct NodeFlags {
    /// The node's cgroup parent (`SKIFF_CGROUP_PARENT`), removed by the clean-up.
    pub cgroup_parent: String,
    pub bridge: String,
    pub kubelet_port: u16,
    pub pod_logs_dir: PathBuf,
}

impl NodeFlags {
    /// Distinct names for a node whose state lives under `root`.
    pub fn new(root: &Path) -> NodeFlags {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        NodeFlags {
            cgroup_parent: format!("skiff-test-{}-{n}", std::process::id()),
            // IFNAMSIZ: at most 15 characters.
            bridge: format!("skt{}x{n}", std::process::id() % 1_000_000),
            kubelet_port: super::free_port(),
            pod_logs_dir: root.join(format!("pod-logs-{n}")),
        }
    }

    /// The flags for these names and the host-independent node settings, leaving out those a
    /// test already passes in `given` (a given `--kubelet-port` is the one recorded).
    pub fn args(&mut self, given: &[String]) -> Vec<String> {
        let value = |flag: &str| {
            given
                .iter()
                .position(|a| a == flag)
                .and_then(|i| given.get(i + 1))
        };
        if let Some(port) = value("--kubelet-port").and_then(|p| p.parse().ok()) {
            self.kubelet_port = port;
        }
        let mut out = Vec::new();
        for (flag, v) in [
            ("--pod-bridge", self.bridge.clone()),
            ("--kubelet-port", self.kubelet_port.to_string()),
            ("--pod-logs-dir", self.pod_logs_dir.display().to_string()),
            ("--eviction-hard", TEST_EVICTION_HARD.to_owned()),
        ] {
            if value(flag).is_none() {
                out.extend([flag.to_owned(), v]);
            }
        }
        // Image garbage collection by the host disk's use only when a test asks for it (a
        // full host disk would otherwise remove the images other steps still expect).
        if value("--image-gc-high-threshold").is_none()
            && value("--image-gc-low-threshold").is_none()
        {
            out.extend(["--image-gc-high-threshold".to_owned(), "100".to_owned()]);
        }
        out
    }
}

/// Removes what the agent with `agent_dir` (`<data-dir>/agent`) and `flags` left on the
/// host. Call after its process is dead. Best effort: every step runs whatever failed.
pub fn clean_up(agent_dir: &Path, flags: &NodeFlags) {
    let bridge = flags.bridge.as_str();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the clean-up");
    rt.block_on(async {
        if agent_dir.join("containers").is_dir() {
            if let Ok(runtime) = skiff::runtime::containers::facade::Runtime::open(
                agent_dir,
                skiff::runtime::containers::facade::RuntimeOptions {
                    shim_exe: Some(super::skiff_binary()),
                    ..Default::default()
                },
            ) {
                for c in runtime.list().await.unwrap_or_default() {
                    let _ = runtime.remove(&c.id, true).await;
                }
            }
        }
        if Path::new("/sys/class/net").join(bridge).exists() {
            use skiff::network::{NodeNetwork, NodeNetworkConfig, PodNetwork};
            // Any range will do: the bridge is adopted, then deleted with its table.
            let mut cfg = NodeNetworkConfig::new(
                "10.255.255.0/24".parse().expect("a CIDR"),
                "10.255.0.0/16".parse().expect("a CIDR"),
                agent_dir.join("network"),
            );
            cfg.bridge = bridge.to_owned();
            if let Ok(net) = NodeNetwork::open(cfg).await {
                for pod in net.pods() {
                    let _ = net.teardown(&pod).await;
                }
                let _ = net.uninstall().await;
            }
        }
    });
    // Remaining mounts (volumes, namespace pins).
    unmount_under(agent_dir);
    // The node's cgroup parent in every hierarchy (v1 controllers and the v2 tree).
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    roots.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for root in roots {
        remove_cgroup_tree(&root.join(&flags.cgroup_parent));
    }
}

/// Detaches every mount at or under `root`, deepest first.
pub fn unmount_under(root: &Path) {
    let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|p| p.starts_with(root))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in mounts {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes the cgroup `dir` and every cgroup under it, deepest first.
pub fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
