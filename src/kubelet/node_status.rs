//! The Node object a kubelet registers and the status it reports, computed from plain
//! inputs (the node's settings, [`HostInfo`], [`Measurements`]) so every rule is unit-tested
//! without root; reading the host is `kubelet::host`, the report loop `kubelet::heartbeat`.
//!
//! What follows upstream's kubelet (`pkg/kubelet/nodestatus/setters.go`, `kubelet_node_status.go`):
//! - labels `kubernetes.io/hostname|os|arch` and their `beta.` twins, plus `--node-label`;
//!   taints from `--node-taint`; `daemonEndpoints.kubeletEndpoint.Port`;
//! - capacity cpu, memory, pods (110), ephemeral-storage (the agent dir's filesystem),
//!   hugepages (none); allocatable = capacity − kube-reserved − system-reserved − the hard
//!   eviction threshold (`--eviction-hard`, default memory.available<100Mi,
//!   nodefs.available<10%);
//! - conditions MemoryPressure, DiskPressure, PIDPressure, Ready (Ready last), with
//!   upstream's reasons and messages; `lastTransitionTime` moves only when the status does,
//!   `lastHeartbeatTime` on every report;
//! - a status is sent when anything but the heartbeat times changed, or every
//!   [`REPORT_FREQUENCY`] (nodeStatusReportFrequency) otherwise.
//!
//! PIDPressure: upstream has no default `pid.available` threshold; here it is True when
//! fewer than [`PID_AVAILABLE_PERCENT`]% of `pid_max` are free, so the condition means
//! something on a default install.
//!
//! Invariant: the functions here are pure; same inputs, same Node.

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The kubelet version a node reports.
pub const KUBELET_VERSION: &str = "v1.35.0";
/// `--max-pods` default.
pub const MAX_PODS: u64 = 110;
/// Upstream's default `--eviction-hard` (the two signals this kubelet measures).
pub const DEFAULT_EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<10%";
/// PIDPressure when fewer than this share of pid_max is free (see the module doc).
pub const PID_AVAILABLE_PERCENT: u64 = 5;
/// nodeStatusUpdateFrequency: how often the status is computed.
pub const UPDATE_FREQUENCY: Duration = Duration::from_secs(10);
/// nodeStatusReportFrequency: how often an unchanged status is still sent.
pub const REPORT_FREQUENCY: Duration = Duration::from_secs(300);
/// The control-plane role label the server's own node carries.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NodeConfigError {
    #[error("invalid --node-label {0:?}: expected KEY=VALUE")]
    Label(String),
    #[error(
        "invalid --node-taint {0:?}: expected KEY[=VALUE]:NoSchedule|PreferNoSchedule|NoExecute"
    )]
    Taint(String),
    #[error("invalid reserved resources {0:?}: expected NAME=QUANTITY[,NAME=QUANTITY] (cpu, memory, ephemeral-storage, pid)")]
    Reserved(String),
    #[error("invalid --eviction-hard {0:?}: expected SIGNAL<QUANTITY or SIGNAL<PERCENT% joined by commas, SIGNAL one of memory.available, nodefs.available")]
    EvictionHard(String),
    #[error("invalid image garbage collection settings: {0}")]
    ImageGc(String),
    #[error("invalid soft eviction settings: {0}")]
    EvictionSoft(String),
}

/// A hard-eviction threshold: an amount, or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    Bytes(u64),
    /// Hundredths of a percent (`10%` is 1000), so `99.9%` is exact.
    Basis(u64),
}

impl Threshold {
    /// The threshold in bytes for a resource of `capacity` bytes.
    pub fn bytes_of(self, capacity: u64) -> u64 {
        match self {
            Threshold::Bytes(b) => b,
            Threshold::Basis(bp) => (u128::from(capacity) * u128::from(bp) / 10_000) as u64,
        }
    }

    fn parse(v: &str) -> Option<Threshold> {
        match v.strip_suffix('%') {
            Some(p) => {
                let pct: f64 = p.trim().parse().ok()?;
                (0.0..=100.0)
                    .contains(&pct)
                    .then(|| Threshold::Basis((pct * 100.0).round() as u64))
            }
            None => parse_bytes(v).map(Threshold::Bytes),
        }
    }
}

/// The hard-eviction thresholds (`--eviction-hard`): below them the node reports pressure,
/// the kubelet evicts pods, and allocatable leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionHard {
    pub memory_available: Threshold,
    pub nodefs_available: Threshold,
}

impl Default for EvictionHard {
    fn default() -> EvictionHard {
        EvictionHard {
            memory_available: Threshold::Bytes(100 * 1024 * 1024),
            nodefs_available: Threshold::Basis(1000),
        }
    }
}

impl EvictionHard {
    /// Parses `memory.available<100Mi,nodefs.available<10%`; a signal left out keeps its
    /// default.
    pub fn parse(s: &str) -> Result<EvictionHard, NodeConfigError> {
        let err = || NodeConfigError::EvictionHard(s.to_owned());
        let mut e = EvictionHard::default();
        for part in flag_list(s) {
            let (signal, t) = signal_threshold(part).ok_or_else(err)?;
            match signal {
                "memory.available" => e.memory_available = t,
                "nodefs.available" => e.nodefs_available = t,
                _ => return Err(err()),
            }
        }
        Ok(e)
    }
}

/// The non-empty comma-separated parts of a flag's value.
fn flag_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// `SIGNAL<QUANTITY` or `SIGNAL<PERCENT%`.
fn signal_threshold(part: &str) -> Option<(&str, Threshold)> {
    let (signal, v) = part.split_once('<')?;
    Some((signal.trim(), Threshold::parse(v.trim())?))
}

/// The soft-eviction thresholds (`--eviction-soft`, `--eviction-soft-grace-period`,
/// `--eviction-max-pod-grace-period`): a signal below its soft threshold for its whole
/// grace period is pressure as a hard one is at once, and pods evicted for it get a grace
/// period of their own, capped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvictionSoft {
    /// Threshold and grace period of each signal that has one.
    pub memory_available: Option<(Threshold, Duration)>,
    pub nodefs_available: Option<(Threshold, Duration)>,
    /// The longest grace period a pod evicted for a soft threshold gets (its own if
    /// shorter).
    pub max_pod_grace: Duration,
}

impl EvictionSoft {
    /// Parses `memory.available<1Gi,…` with `memory.available=1m30s,…`: every signal needs
    /// both a threshold and a grace period, as upstream's validation says.
    pub fn parse(
        thresholds: &str,
        grace_periods: &str,
        max_pod_grace_seconds: i64,
    ) -> Result<EvictionSoft, NodeConfigError> {
        let err = |m: String| NodeConfigError::EvictionSoft(m);
        let mut graces = BTreeMap::new();
        for part in flag_list(grace_periods) {
            let (signal, d) = part
                .split_once('=')
                .ok_or_else(|| err(format!("invalid grace period {part:?}")))?;
            let d = crate::cli::token::parse_duration(d.trim())
                .map_err(|e| err(format!("grace period of {signal}: {e}")))?;
            graces.insert(signal.trim().to_owned(), d);
        }
        let mut soft = EvictionSoft {
            max_pod_grace: Duration::from_secs(max_pod_grace_seconds.max(0) as u64),
            ..Default::default()
        };
        for part in flag_list(thresholds) {
            let (signal, t) =
                signal_threshold(part).ok_or_else(|| err(format!("invalid threshold {part:?}")))?;
            let grace = graces.remove(signal).ok_or_else(|| {
                err(format!(
                    "grace period must be specified for the soft eviction threshold {signal}"
                ))
            })?;
            match signal {
                "memory.available" => soft.memory_available = Some((t, grace)),
                "nodefs.available" => soft.nodefs_available = Some((t, grace)),
                _ => return Err(err(format!("unsupported eviction signal {signal}"))),
            }
        }
        if let Some(signal) = graces.keys().next() {
            return Err(err(format!(
                "grace period specified for {signal}, which has no soft eviction threshold"
            )));
        }
        Ok(soft)
    }
}

/// When each soft threshold was first seen crossed, in the crossing that still lasts.
#[derive(Debug, Default)]
pub struct SoftObserved {
    memory_since: Option<std::time::Instant>,
    disk_since: Option<std::time::Instant>,
}

impl EvictionSoft {
    /// The soft thresholds the measurements are under now: upstream reports them as node
    /// pressure at once (eviction waits for their grace periods, [`SoftObserved`]).
    pub fn crossed(&self, m: &Measurements) -> Pressure {
        let under = |t: Option<(Threshold, Duration)>, available: u64, capacity: u64| {
            t.is_some_and(|(t, _)| capacity > 0 && available < t.bytes_of(capacity))
        };
        Pressure {
            memory: under(self.memory_available, m.memory_available, m.memory_capacity),
            disk: under(self.nodefs_available, m.fs_available, m.fs_capacity),
            pid: false,
        }
    }
}

impl SoftObserved {
    /// Takes in a measurement; says which soft thresholds are crossed now
    /// ([`EvictionSoft::crossed`]) and which have been for their whole grace period (those
    /// drive eviction). A measurement above a threshold starts its count over.
    pub fn observe(
        &mut self,
        m: &Measurements,
        soft: &EvictionSoft,
        now: std::time::Instant,
    ) -> (Pressure, Pressure) {
        let crossed = soft.crossed(m);
        let met = |since: &mut Option<std::time::Instant>,
                   under: bool,
                   t: Option<(Threshold, Duration)>| {
            match t.filter(|_| under) {
                Some((_, grace)) => now.duration_since(*since.get_or_insert(now)) >= grace,
                None => {
                    *since = None;
                    false
                }
            }
        };
        let met = Pressure {
            memory: met(
                &mut self.memory_since,
                crossed.memory,
                soft.memory_available,
            ),
            disk: met(&mut self.disk_since, crossed.disk, soft.nodefs_available),
            pid: false,
        };
        (crossed, met)
    }
}

/// Resources held back from pods (`--kube-reserved`, `--system-reserved`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_millis: u64,
    pub memory: u64,
    pub ephemeral_storage: u64,
}

impl Reserved {
    /// Parses `cpu=100m,memory=256Mi,ephemeral-storage=1Gi` (empty = nothing reserved).
    pub fn parse(s: &str) -> Result<Reserved, NodeConfigError> {
        let err = || NodeConfigError::Reserved(s.to_owned());
        let mut r = Reserved::default();
        for part in flag_list(s) {
            let (k, v) = part.split_once('=').ok_or_else(err)?;
            match k.trim() {
                "cpu" => r.cpu_millis = parse_millis(v.trim()).ok_or_else(err)?,
                "memory" => r.memory = parse_bytes(v.trim()).ok_or_else(err)?,
                "ephemeral-storage" => {
                    r.ephemeral_storage = parse_bytes(v.trim()).ok_or_else(err)?
                }
                "pid" => {
                    v.trim().parse::<u64>().map_err(|_| err())?;
                }
                _ => return Err(err()),
            }
        }
        Ok(r)
    }

    fn plus(self, o: Reserved) -> Reserved {
        Reserved {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory: self.memory + o.memory,
            ephemeral_storage: self.ephemeral_storage + o.ephemeral_storage,
        }
    }
}

/// `100m`, `0.5`, `2` → millicores.
fn parse_millis(v: &str) -> Option<u64> {
    if let Some(m) = v.strip_suffix('m') {
        return m.parse().ok();
    }
    let f: f64 = v.parse().ok()?;
    (f >= 0.0).then(|| (f * 1000.0).round() as u64)
}

/// `256Mi`, `1G`, `1000` → bytes.
fn parse_bytes(v: &str) -> Option<u64> {
    const SUFFIXES: [(&str, u64); 10] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    for (s, f) in SUFFIXES {
        if let Some(n) = v.strip_suffix(s) {
            return n.parse::<u64>().ok()?.checked_mul(f);
        }
    }
    v.parse().ok()
}

/// Everything about this node that comes from its settings.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub name: String,
    pub internal_ip: Option<IpAddr>,
    /// `--node-label` pairs.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub reserved: Reserved,
    pub kubelet_port: u16,
    /// Pod capacity (upstream's `maxPods`, [`MAX_PODS`] by default).
    pub max_pods: u64,
    pub eviction_hard: EvictionHard,
    /// `--eviction-soft` and its grace periods: a threshold crossed is pressure at once
    /// (the kubelet's eviction loop keeps the grace-period count).
    pub eviction_soft: EvictionSoft,
}

/// Parses one `--node-label KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), NodeConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(NodeConfigError::Label(s.to_owned())),
    }
}

/// Parses one `--node-taint KEY[=VALUE]:EFFECT`.
pub fn parse_taint(s: &str) -> Result<Taint, NodeConfigError> {
    let err = || NodeConfigError::Taint(s.to_owned());
    let (kv, effect) = s.rsplit_once(':').ok_or_else(err)?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(err());
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(err());
    }
    Ok(Taint {
        key: key.to_owned(),
        value,
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// Facts about the host that do not change while the agent runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostInfo {
    pub hostname: String,
    pub kernel_version: String,
    pub os_image: String,
    /// Go's GOARCH name (`amd64`, `arm64`).
    pub architecture: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub cpus: u64,
    pub memory_bytes: u64,
}

/// What the node measures at each status update.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measurements {
    pub memory_capacity: u64,
    pub memory_available: u64,
    pub fs_capacity: u64,
    pub fs_available: u64,
    pub pids: u64,
    pub pid_max: u64,
}

/// Which hard-eviction signals are crossed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

impl Pressure {
    /// Pressure on each signal either shows.
    pub fn or(self, other: Pressure) -> Pressure {
        Pressure {
            memory: self.memory || other.memory,
            disk: self.disk || other.disk,
            pid: self.pid || other.pid,
        }
    }
}

/// The pressure the measurements show against the hard-eviction thresholds.
pub fn pressure(m: &Measurements, e: &EvictionHard) -> Pressure {
    Pressure {
        memory: m.memory_available < e.memory_available.bytes_of(m.memory_capacity),
        disk: m.fs_capacity > 0 && m.fs_available < e.nodefs_available.bytes_of(m.fs_capacity),
        pid: m.pid_max > 0
            && m.pid_max.saturating_sub(m.pids) * 100 < m.pid_max * PID_AVAILABLE_PERCENT,
    }
}

/// Memory as upstream prints it (Ki when whole, else bytes).
pub(crate) fn bytes_quantity(b: u64) -> Quantity {
    if b.is_multiple_of(1024) {
        Quantity(format!("{}Ki", b / 1024))
    } else {
        Quantity(b.to_string())
    }
}

fn cpu_quantity(millis: u64) -> Quantity {
    if millis.is_multiple_of(1000) {
        Quantity((millis / 1000).to_string())
    } else {
        Quantity(format!("{millis}m"))
    }
}

/// Capacity and allocatable.
pub fn resources(
    host: &HostInfo,
    m: &Measurements,
    reserved: Reserved,
    eviction: &EvictionHard,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let cpu = host.cpus * 1000;
    let mut capacity = BTreeMap::from([
        ("cpu".to_owned(), cpu_quantity(cpu)),
        ("memory".to_owned(), bytes_quantity(host.memory_bytes)),
        ("pods".to_owned(), Quantity(MAX_PODS.to_string())),
        (
            "ephemeral-storage".to_owned(),
            bytes_quantity(m.fs_capacity),
        ),
    ]);
    for hp in ["hugepages-1Gi", "hugepages-2Mi"] {
        capacity.insert(hp.to_owned(), Quantity("0".into()));
    }
    let held = reserved.plus(Reserved {
        cpu_millis: 0,
        memory: eviction.memory_available.bytes_of(host.memory_bytes),
        ephemeral_storage: eviction.nodefs_available.bytes_of(m.fs_capacity),
    });
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "cpu".into(),
        cpu_quantity(cpu.saturating_sub(held.cpu_millis)),
    );
    allocatable.insert(
        "memory".into(),
        bytes_quantity(host.memory_bytes.saturating_sub(held.memory)),
    );
    allocatable.insert(
        "ephemeral-storage".into(),
        Quantity(
            m.fs_capacity
                .saturating_sub(held.ephemeral_storage)
                .to_string(),
        ),
    );
    (capacity, allocatable)
}

/// The labels a node registers with (defaults, then `--node-label`).
pub fn labels(settings: &NodeSettings, host: &HostInfo) -> BTreeMap<String, String> {
    let mut l = default_labels(settings, host);
    l.extend(settings.labels.clone());
    l
}

/// Upstream's default labels, which the kubelet also puts back on an existing Node.
pub fn default_labels(settings: &NodeSettings, host: &HostInfo) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), settings.name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), host.architecture.clone()),
        ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "beta.kubernetes.io/arch".to_owned(),
            host.architecture.clone(),
        ),
    ])
}

/// The Node to create at registration (status is reported separately).
pub fn initial_node(settings: &NodeSettings, host: &HostInfo) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            labels: Some(labels(settings, host)),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!settings.taints.is_empty()).then(|| settings.taints.clone()),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

fn condition(
    kind: &str,
    on: bool,
    reasons: [(&str, &str); 2],
) -> (String, &'static str, String, String) {
    let (reason, message) = reasons[usize::from(on)];
    (
        kind.to_owned(),
        if on { "True" } else { "False" },
        reason.to_owned(),
        message.to_owned(),
    )
}

/// The four conditions for `pressure`, carrying over `lastTransitionTime` from `previous`
/// when a condition's status is unchanged. `not_ready` is why the node cannot run pods
/// (runtime or network not ready), which makes Ready False with reason `KubeletNotReady`.
pub fn conditions(
    previous: &[NodeCondition],
    p: Pressure,
    not_ready: Option<&str>,
    now: Time,
) -> Vec<NodeCondition> {
    let wanted = [
        condition(
            "MemoryPressure",
            p.memory,
            [
                (
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                (
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available",
                ),
            ],
        ),
        condition(
            "DiskPressure",
            p.disk,
            [
                ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ],
        ),
        condition(
            "PIDPressure",
            p.pid,
            [
                (
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                (
                    "KubeletHasInsufficientPID",
                    "kubelet has insufficient PID available",
                ),
            ],
        ),
        match not_ready {
            None => (
                "Ready".to_owned(),
                "True",
                "KubeletReady".to_owned(),
                "kubelet is posting ready status".to_owned(),
            ),
            Some(why) => (
                "Ready".to_owned(),
                "False",
                "KubeletNotReady".to_owned(),
                why.to_owned(),
            ),
        },
    ];
    wanted
        .into_iter()
        .map(|(kind, status, reason, message)| {
            let transition = previous
                .iter()
                .find(|c| c.type_ == kind && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            NodeCondition {
                type_: kind,
                status: status.to_owned(),
                reason: Some(reason),
                message: Some(message),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

/// The status to report (`not_ready`: see [`conditions`]).
pub fn status(
    settings: &NodeSettings,
    host: &HostInfo,
    m: &Measurements,
    previous: Option<&NodeStatus>,
    not_ready: Option<&str>,
    now: Time,
) -> NodeStatus {
    let (mut capacity, mut allocatable) =
        resources(host, m, settings.reserved, &settings.eviction_hard);
    if settings.max_pods != MAX_PODS {
        let pods = Quantity(settings.max_pods.to_string());
        capacity.insert("pods".into(), pods.clone());
        allocatable.insert("pods".into(), pods);
    }
    let mut addresses = Vec::new();
    if let Some(ip) = settings.internal_ip {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: settings.name.clone(),
    });
    let previous_conditions = previous
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions(
            previous_conditions,
            pressure(m, &settings.eviction_hard).or(settings.eviction_soft.crossed(m)),
            not_ready,
            now,
        )),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(settings.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: host.architecture.clone(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: format!("skiff://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: host.os_image.clone(),
            system_uuid: host.system_uuid.clone(),
            ..NodeSystemInfo::default()
        }),
        ..previous.cloned().unwrap_or_default()
    }
}

/// The node events a status change records, as upstream's setters do: a pressure
/// condition that appears or flips (`NodeHasSufficientMemory`, `NodeHasDiskPressure`, ...),
/// and Ready flipping (`NodeReady`/`NodeNotReady`; not when it first appears).
pub fn condition_events(previous: &[NodeCondition], new: &[NodeCondition]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for c in new {
        let before = previous.iter().find(|p| p.type_ == c.type_);
        if before.is_some_and(|b| b.status == c.status) {
            continue;
        }
        let on = c.status == "True";
        let event = match c.type_.as_str() {
            "MemoryPressure" if on => "NodeHasInsufficientMemory",
            "MemoryPressure" => "NodeHasSufficientMemory",
            "DiskPressure" if on => "NodeHasDiskPressure",
            "DiskPressure" => "NodeHasNoDiskPressure",
            "PIDPressure" if on => "NodeHasInsufficientPID",
            "PIDPressure" => "NodeHasSufficientPID",
            "Ready" if before.is_none() => continue,
            "Ready" if on => "NodeReady",
            "Ready" => "NodeNotReady",
            _ => continue,
        };
        out.push(event);
    }
    out
}

/// Whether `new` differs from `old` in anything but heartbeat times.
pub fn changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(old) != strip(new)
}

/// Whether to send `new`: it changed, or the last report is [`REPORT_FREQUENCY`] old.
pub fn should_report(old: Option<&NodeStatus>, new: &NodeStatus, since_last: Duration) -> bool {
    match old {
        None => true,
        Some(old) => changed(old, new) || since_last >= REPORT_FREQUENCY,
    }
}

#[cfg(test)]
#[path = "node_status_tests.rs"]
mod tests;
