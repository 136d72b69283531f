//! The Filter plugins of the default profile that look at one node at a time, as pure
//! functions: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit and VolumeBinding's node affinity of bound volumes. (PodTopologySpread
//! and InterPodAffinity need cluster-wide counts: `spread.rs`, `affinity.rs`.)
//!
//! Invariant: reasons are upstream's texts, since they are counted and printed verbatim in
//! the `FailedScheduling` summary.

use super::cache::{HostPort, NodeInfo, TAINT_UNSCHEDULABLE};
use super::hints::Plugins;
use super::labels;
use crate::api::resources::Resources;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, Pod, Taint, Toleration};

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_VOLUME_AFFINITY: &str = "node(s) had volume node affinity conflict";

/// Whether preemption could help: upstream's `Unschedulable` vs
/// `UnschedulableAndUnresolvable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    Unresolvable,
}

/// Why a node does not fit the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub reasons: Vec<String>,
    /// The plugin that rejected (set by the framework, which knows which filter it ran):
    /// what the queue waits on before trying the pod again.
    pub plugin: Plugins,
}

impl Rejection {
    pub fn unschedulable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
            plugin: Plugins::NONE,
        }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::Unresolvable,
            reasons: vec![reason.into()],
            plugin: Plugins::NONE,
        }
    }

    /// The same rejection, attributed to `plugin`.
    pub fn by(self, plugin: Plugins) -> Rejection {
        Rejection { plugin, ..self }
    }
}

pub type FilterResult = Result<(), Rejection>;

/// Upstream's `ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

pub fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating its unschedulable taint.
pub fn node_unschedulable(pod: &Pod, node: &Node) -> FilterResult {
    if !node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        return Ok(());
    }
    Err(Rejection::unresolvable(REASON_UNSCHEDULABLE))
}

/// NodeName: a pod naming a node fits only there.
pub fn node_name(pod: &Pod, node: &Node) -> FilterResult {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() && Some(n) != node.metadata.name.as_deref() => {
            Err(Rejection::unresolvable(REASON_NODE_NAME))
        }
        _ => Ok(()),
    }
}

/// TaintToleration: every NoSchedule/NoExecute taint must be tolerated; the first one that
/// is not is named.
pub fn taint_toleration(tolerations: &[Toleration], taints: &[Taint]) -> FilterResult {
    let untolerated = taints.iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
    });
    match untolerated {
        None => Ok(()),
        Some(t) => Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        ))),
    }
}

/// NodeAffinity: `nodeSelector` and required node affinity.
pub fn node_affinity(pod: &Pod, node: &Node) -> FilterResult {
    if labels::pod_matches_node_selector_and_affinity(pod, node) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON_NODE_AFFINITY))
    }
}

/// NodePorts: the pod's host ports are free on the node.
pub fn node_ports(wanted: &[HostPort], node: &NodeInfo) -> FilterResult {
    let clash = wanted
        .iter()
        .any(|w| node.used_ports.iter().any(|u| u.conflicts(w)));
    if clash {
        Err(Rejection::unschedulable(REASON_PORTS))
    } else {
        Ok(())
    }
}

/// One resource a pod asks more of than the node has left (upstream's
/// `InsufficientResource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub resource: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

/// Upstream's `noderesources.Fits`, shared with the kubelet's admission: the pod count,
/// then cpu, memory, ephemeral-storage and scalar resources against allocatable minus
/// what the node's pods request (`used`; `used.pods` is their number), in that order.
pub fn insufficient_resources(
    req: &Resources,
    used: &Resources,
    alloc: &Resources,
) -> Vec<Insufficient> {
    let mut out = Vec::new();
    let mut short = |resource: &str, requested: i64, used: i64, capacity: i64| {
        out.push(Insufficient {
            resource: resource.to_owned(),
            requested,
            used,
            capacity,
        })
    };
    if used.pods + 1 > alloc.pods {
        short("pods", 1, used.pods, alloc.pods);
    }
    if req.is_zero() {
        return out;
    }
    let checks = [
        ("cpu", req.milli_cpu, used.milli_cpu, alloc.milli_cpu),
        ("memory", req.memory, used.memory, alloc.memory),
        (
            "ephemeral-storage",
            req.ephemeral_storage,
            used.ephemeral_storage,
            alloc.ephemeral_storage,
        ),
    ];
    for (name, want, in_use, have) in checks {
        if want > 0 && want > have.saturating_sub(in_use) {
            short(name, want, in_use, have);
        }
    }
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let in_use = used.scalar.get(name).copied().unwrap_or(0);
        if *want > 0 && *want > have - in_use {
            short(name, *want, in_use, have);
        }
    }
    out
}

/// NodeResourcesFit: the pod count and every requested resource fit in what is left of
/// allocatable; all shortfalls are reported.
pub fn resources_fit(req: &Resources, node: &NodeInfo) -> FilterResult {
    let reasons: Vec<String> = insufficient_resources(req, &node.requested, &node.allocatable)
        .into_iter()
        .map(|i| match i.resource.as_str() {
            "pods" => REASON_TOO_MANY_PODS.to_owned(),
            name => format!("Insufficient {name}"),
        })
        .collect();
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            code: Code::Unschedulable,
            reasons,
            plugin: Plugins::NONE,
        })
    }
}

/// VolumeBinding: every bound PersistentVolume with node affinity (local volumes) must
/// allow the node.
pub fn volume_node_affinity(
    volumes: &[std::sync::Arc<PersistentVolume>],
    node: &Node,
) -> FilterResult {
    let labels = labels::labels_of_node(node);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let conflict = volumes
        .iter()
        .any(|pv| !volume_allows_node(pv, name, labels));
    if conflict {
        Err(Rejection::unresolvable(REASON_VOLUME_AFFINITY))
    } else {
        Ok(())
    }
}

/// Whether `pv`'s required node affinity allows the node `name` with `labels`.
pub fn volume_allows_node(pv: &PersistentVolume, name: &str, labels: &labels::Labels) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|sel| labels::node_selector_matches(sel, name, labels))
}

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;
