//! The Score plugins that look at one node at a time, as pure functions, and the default
//! profile's weights: NodeResourcesFit (LeastAllocated), NodeResourcesBalancedAllocation,
//! NodeAffinity (preferred terms), TaintToleration (PreferNoSchedule) and ImageLocality.
//! Each yields 0..=100 after normalization; the node's total is the weighted sum.
//!
//! Invariant: integer arithmetic and rounding as upstream, so equal inputs give the same
//! ranking as kube-scheduler.

use super::cache::{normalize_image, NodeInfo};
use super::filters::tolerates;
use super::labels;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};

pub const MAX_SCORE: i64 = 100;

/// The default profile's weights.
pub const W_TAINT: i64 = 3;
pub const W_NODE_AFFINITY: i64 = 2;
pub const W_FIT: i64 = 1;
pub const W_SPREAD: i64 = 2;
pub const W_INTER_POD: i64 = 2;
pub const W_BALANCED: i64 = 1;
pub const W_IMAGE: i64 = 1;

/// LeastAllocated over cpu and memory (equal weights), with 100m/200Mi assumed for
/// containers that request nothing.
pub fn least_allocated(pod_non_zero: (i64, i64), node: &NodeInfo) -> i64 {
    let one = |req: i64, cap: i64| {
        if cap == 0 || req > cap {
            0
        } else {
            (cap - req) * MAX_SCORE / cap
        }
    };
    let cpu = one(node.non_zero.0 + pod_non_zero.0, node.allocatable.milli_cpu);
    let mem = one(node.non_zero.1 + pod_non_zero.1, node.allocatable.memory);
    (cpu + mem) / 2
}

/// BalancedAllocation: 100 when cpu and memory would be used in the same proportion.
pub fn balanced_allocation(pod_req: (i64, i64), node: &NodeInfo) -> i64 {
    let mut fractions = Vec::with_capacity(2);
    for (req, cap) in [
        (
            node.requested.milli_cpu + pod_req.0,
            node.allocatable.milli_cpu,
        ),
        (node.requested.memory + pod_req.1, node.allocatable.memory),
    ] {
        if cap == 0 {
            continue;
        }
        fractions.push((req as f64 / cap as f64).min(1.0));
    }
    let std = if fractions.len() == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// NodeAffinity score: the summed weights of the preferred terms the node matches.
pub fn node_affinity(pod: &Pod, node: &Node) -> i64 {
    let Some(prefs) = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return 0;
    };
    let l = labels::labels_of_node(node);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    prefs
        .iter()
        .filter(|p| labels::term_matches(&p.preference, name, l))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// TaintToleration score (raw): PreferNoSchedule taints the pod does not tolerate.
pub fn intolerable_taints(tolerations: &[Toleration], node: &NodeInfo) -> i64 {
    let prefer: Vec<&Toleration> = tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .collect();
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !prefer.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

/// Upstream's `DefaultNormalizeScore`: scale to 0..=100 by the maximum, reversed when
/// lower raw values are better.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_SCORE * *s / max;
        *s = if reverse { MAX_SCORE - v } else { v };
    }
}

/// The pod's container images (init containers included), normalized, once per cycle.
pub fn pod_images(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .map(|c| normalize_image(c.image.as_deref().unwrap_or_default()))
        .collect()
}

const MB: i64 = 1024 * 1024;
const MIN_IMAGE_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_IMAGE_THRESHOLD: i64 = 1000 * MB;

/// ImageLocality: the sizes of the pod's images present on the node, scaled by how many
/// nodes have each image (so one node holding a rare image does not attract everything).
pub fn image_locality(
    images: &[String],
    node: &NodeInfo,
    total_nodes: usize,
    nodes_with: impl Fn(&str) -> usize,
) -> i64 {
    if total_nodes == 0 || images.is_empty() {
        return 0;
    }
    let mut sum = 0i64;
    for name in images {
        if let Some(size) = node.images.get(name) {
            let spread = nodes_with(name) as f64 / total_nodes as f64;
            sum += (*size as f64 * spread) as i64;
        }
    }
    let max = MAX_CONTAINER_IMAGE_THRESHOLD * images.len() as i64;
    let sum = sum.clamp(MIN_IMAGE_THRESHOLD, max);
    MAX_SCORE * (sum - MIN_IMAGE_THRESHOLD) / (max - MIN_IMAGE_THRESHOLD)
}

#[cfg(test)]
#[path = "scores_tests.rs"]
mod tests;
