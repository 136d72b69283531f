//! What a node's conditions and `spec.unschedulable` imply, pure: the taints the lifecycle
//! controller keeps on the node, the conditions of a node whose kubelet went silent, and
//! when a pod on a NoExecute-tainted node is due for eviction.

use crate::scheduler::filters::tolerates;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Upstream's TaintNodesByCondition: a True condition keeps the NoSchedule taint, so only
/// pods that tolerate it are placed there (DaemonSet pods tolerate them by default).
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];
const NO_EXECUTE: &str = "NoExecute";
const NO_SCHEDULE: &str = "NoSchedule";

/// The conditions a silent kubelet no longer vouches for (upstream's list).
const MONITORED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

fn is_managed(t: &Taint) -> bool {
    matches!(
        (t.key.as_str(), t.effect.as_str()),
        (NOT_READY | UNREACHABLE, NO_EXECUTE | NO_SCHEDULE) | (UNSCHEDULABLE, NO_SCHEDULE)
    ) || (t.effect == NO_SCHEDULE && CONDITION_TAINTS.iter().any(|(_, k)| *k == t.key))
}

fn condition_is_true(node: &Node, type_: &str) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The node's taints with the managed ones made to match its conditions and cordon:
/// Ready=False → not-ready, Ready=Unknown → unreachable (both NoSchedule and NoExecute),
/// MemoryPressure/DiskPressure/PIDPressure/NetworkUnavailable=True → memory-pressure,
/// disk-pressure, pid-pressure, network-unavailable (NoSchedule), unschedulable →
/// unschedulable:NoSchedule. A taint already present keeps its
/// `timeAdded`; `None` when nothing changes.
pub fn desired_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut wanted: Vec<(&str, &str)> = match ready_status(node) {
        Some("False") => vec![(NOT_READY, NO_SCHEDULE), (NOT_READY, NO_EXECUTE)],
        Some("Unknown") => vec![(UNREACHABLE, NO_SCHEDULE), (UNREACHABLE, NO_EXECUTE)],
        _ => Vec::new(),
    };
    for (condition, key) in CONDITION_TAINTS {
        if condition_is_true(node, condition) {
            wanted.push((key, NO_SCHEDULE));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((UNSCHEDULABLE, NO_SCHEDULE));
    }
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !is_managed(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !out.iter().any(|t| t.key == key && t.effect == effect) {
            out.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                // Only NoExecute taints carry the time their toleration seconds count from.
                time_added: (effect == NO_EXECUTE).then_some(Time(now)),
            });
        }
    }
    (out != current).then_some(out)
}

/// The node's conditions once its kubelet has been silent past the grace period: every
/// monitored condition Unknown (`None` when they already are).
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conds = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for ty in MONITORED {
        match conds.iter_mut().find(|c| c.type_ == ty) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conds.push(NodeCondition {
                    type_: ty.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conds)
}

/// When a pod on a node with these taints is to be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// It tolerates every NoExecute taint for good (or there is none).
    Never,
    /// It does not tolerate one of them.
    Now,
    /// Its shortest `tolerationSeconds` runs out then, counted from the earliest taint.
    At(Timestamp),
}

/// Upstream's taint manager rule: an untolerated NoExecute taint evicts at once; otherwise
/// the smallest `tolerationSeconds` of the tolerations in use bounds the stay.
pub fn eviction(tolerations: &[Toleration], taints: &[Taint], now: Timestamp) -> Eviction {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == NO_EXECUTE).collect();
    if no_execute.is_empty() {
        return Eviction::Never;
    }
    let mut min_seconds: Option<i64> = None;
    for taint in &no_execute {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Eviction::Now;
        }
        for t in used {
            if let Some(s) = t.toleration_seconds {
                min_seconds = Some(min_seconds.map_or(s, |m| m.min(s)));
            }
        }
    }
    let Some(seconds) = min_seconds else {
        return Eviction::Never;
    };
    if seconds <= 0 {
        return Eviction::Now;
    }
    let since = no_execute
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
        .min()
        .unwrap_or(now);
    match since.checked_add(SignedDuration::from_secs(seconds)) {
        Ok(at) if at <= now => Eviction::Now,
        Ok(at) => Eviction::At(at),
        Err(_) => Eviction::Never,
    }
}
