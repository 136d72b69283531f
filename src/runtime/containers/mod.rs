//! Containers: the caller-facing description of a container (`ContainerConfig`), the OCI
//! bundle generated from it, and the per-container shim that owns the running process.
//!
//! Invariant: everything about a container lives in `<agent>/containers/<id>/`
//! (`config.json`, `meta.json`, `state.json`, `shim.sock`, `shim.pid`, default log); the
//! shim is the only writer of `state.json`, so any process can re-adopt a container by
//! reading that directory. No Kubernetes types here.

pub mod cgroups;
pub mod exec;
pub mod external;
pub mod facade;
pub mod in_root;
pub mod init;
pub mod mount_plan;
pub mod shim;
pub mod spec;
pub mod state;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use state::{ContainerState, Status};

/// Id of a container: also its directory name, so it is restricted to `[A-Za-z0-9_.-]`.
pub type ContainerId = String;

/// Everything the caller decides about a container; the image supplies the rest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    /// Image reference or id, resolved through the image store.
    pub image: String,
    /// Replaces the image's Entrypoint (and drops its Cmd) like Kubernetes `command`.
    pub command: Option<Vec<String>>,
    /// Replaces the image's Cmd like Kubernetes `args`.
    pub args: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<User>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub read_only_rootfs: bool,
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    pub network: Network,
    pub hosts_file: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    /// CRI log file; defaults to `<id>/container.log`.
    pub log_path: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub runtime: RuntimeKind,
    /// Process rlimits; empty inherits the shim's.
    pub rlimits: Vec<Rlimit>,
    /// Capabilities and privilege settings; the default is containerd's default set.
    #[serde(default)]
    pub security: Security,
    /// Cgroup the container's cgroup is created under, relative to the runtime's parent
    /// (the kubelet's pod cgroup, e.g. `kubepods/burstable/pod<uid>`); `None` puts it
    /// directly under the parent.
    #[serde(default)]
    pub cgroup_parent: Option<String>,
    /// Namespaced kernel parameters (dotted names) written in the container's namespaces
    /// before it starts (the pod's `securityContext.sysctls`).
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Join this PID namespace (`/proc/<pid>/ns/pid` of another container's process: an
    /// ephemeral container that targets it) instead of getting a new one.
    #[serde(default)]
    pub pid_namespace: Option<PathBuf>,
    /// The pod's annotations, which CRI passes with every CreateContainer (in its sandbox
    /// config), and whether this is an init container that runs to completion (not a
    /// restartable sidecar). This runtime ignores both (not stored); the simulated one
    /// (`kubelet::fake_cri`) scripts a container from them.
    #[serde(skip)]
    pub pod_annotations: BTreeMap<String, String>,
    #[serde(skip)]
    pub run_to_completion_init: bool,
}

/// Privileges of the container process (Kubernetes' securityContext, in runtime terms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Every capability, no masked or read-only kernel paths.
    pub privileged: bool,
    /// Capability names without `CAP_` (`NET_ADMIN`), or `ALL`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `None` keeps the runtime's default (no_new_privs set).
    pub no_new_privileges: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub kind: oci_spec::runtime::PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
}

/// Numeric identity of the container process (names are resolved by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    Bind {
        source: PathBuf,
        destination: String,
        read_only: bool,
    },
    Tmpfs {
        destination: String,
        size_bytes: Option<u64>,
    },
}

/// Cgroup limits; `None` means unlimited / kernel default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_limit_bytes: Option<i64>,
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
}

/// Network namespace of the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    Host,
    /// A new, empty namespace (loopback only).
    #[default]
    None,
    /// Join an existing namespace (e.g. a pod's `/run/netns/<name>`).
    Join(PathBuf),
}

/// Which program creates the container process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuntimeKind {
    /// The shim itself (namespaces, mounts, cgroups written directly).
    #[default]
    Embedded,
    /// Any OCI runtime binary (e.g. `runc`) found on PATH or given as a path.
    External(String),
}

/// A process to run inside a running container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecConfig {
    pub args: Vec<String>,
    /// Extra environment on top of the container's.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<User>,
    pub tty: bool,
}

/// How a container or exec process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Shell convention: the exit code, or 128 + signal number.
    pub code: i32,
    pub oom_killed: bool,
}

/// Rejects ids that could escape the containers directory or break socket paths.
pub fn validate_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `a.b/c` → `a/b.c`: a sysctl name between its dotted and its path spelling.
pub fn swap_dots_and_slashes(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_slashes_or_dots_first_are_rejected() {
        assert!(validate_id("web-1.a_b"));
        assert!(!validate_id("../x"));
        assert!(!validate_id(".hidden"));
        assert!(!validate_id(""));
        assert!(!validate_id(&"a".repeat(65)));
    }
}
