//! Which waiting pods a cluster change may help (upstream's cluster events and
//! QueueingHints, decided per plugin rather than per object).
//!
//! A pod that fit nowhere remembers the Filter plugins that rejected it; a change requeues
//! it only when it can undo one of those rejections. So a pod kept out only by cordoned
//! nodes is not re-attempted on every pod deletion, and does not collect attempts (and a
//! longer backoff) before the uncordon that can place it.

use super::cache::effective_taints;
use crate::api::resources::node_allocatable;
use k8s_openapi::api::core::v1::Node;
use std::ops::{BitOr, BitOrAssign};

/// A set of Filter plugins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plugins(u16);

impl Plugins {
    pub const NONE: Plugins = Plugins(0);
    pub const NODE_UNSCHEDULABLE: Plugins = Plugins(1 << 0);
    pub const NODE_NAME: Plugins = Plugins(1 << 1);
    pub const TAINT_TOLERATION: Plugins = Plugins(1 << 2);
    pub const NODE_AFFINITY: Plugins = Plugins(1 << 3);
    pub const NODE_PORTS: Plugins = Plugins(1 << 4);
    pub const RESOURCES_FIT: Plugins = Plugins(1 << 5);
    /// VolumeBinding's Filter and PreFilter (claims missing, unbound, or out of reach).
    pub const VOLUME_BINDING: Plugins = Plugins(1 << 6);
    pub const TOPOLOGY_SPREAD: Plugins = Plugins(1 << 7);
    pub const INTER_POD_AFFINITY: Plugins = Plugins(1 << 8);
    pub const ALL: Plugins = Plugins((1 << 9) - 1);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersects(self, other: Plugins) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for Plugins {
    type Output = Plugins;
    fn bitor(self, o: Plugins) -> Plugins {
        Plugins(self.0 | o.0)
    }
}

impl BitOrAssign for Plugins {
    fn bitor_assign(&mut self, o: Plugins) {
        self.0 |= o.0;
    }
}

/// A new node may fit anyone.
pub const NODE_ADDED: Plugins = Plugins::ALL;
/// A topology domain may vanish with its node, lowering the skew of the others, and the
/// pods left on it stop counting for anti-affinity.
pub const NODE_DELETED: Plugins =
    Plugins(Plugins::TOPOLOGY_SPREAD.0 | Plugins::INTER_POD_AFFINITY.0);
/// A pod placed on a node may satisfy someone's pod affinity or even out a spread.
pub const POD_PLACED: Plugins = Plugins(Plugins::INTER_POD_AFFINITY.0 | Plugins::TOPOLOGY_SPREAD.0);
/// A pod leaving a node frees its resources and ports, and may end an anti-affinity
/// conflict or a skew.
pub const POD_REMOVED: Plugins = Plugins(
    Plugins::RESOURCES_FIT.0
        | Plugins::NODE_PORTS.0
        | Plugins::INTER_POD_AFFINITY.0
        | Plugins::TOPOLOGY_SPREAD.0,
);
/// A claim, volume or class changed.
pub const VOLUMES_CHANGED: Plugins = Plugins::VOLUME_BINDING;

/// What a node update can undo. Heartbeats, condition times and image lists undo nothing;
/// a cordon only takes room away, and a new taint helps only topology spread.
pub fn node_changed(old: &Node, new: &Node) -> Plugins {
    let mut helps = Plugins::NONE;
    let cordoned = |n: &Node| n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    if cordoned(old) && !cordoned(new) {
        helps |= Plugins::NODE_UNSCHEDULABLE;
    }
    let (old_taints, new_taints) = (effective_taints(old), effective_taints(new));
    if old_taints.iter().any(|t| !new_taints.contains(t)) {
        helps |= Plugins::TAINT_TOLERATION;
    }
    if old_taints != new_taints {
        // Spreading that honours taints counts only the domains of tolerated nodes: a
        // taint either way changes which domains (and minimum) count.
        helps |= Plugins::TOPOLOGY_SPREAD;
    }
    if old.metadata.labels != new.metadata.labels {
        helps |= Plugins::NODE_AFFINITY
            | Plugins::TOPOLOGY_SPREAD
            | Plugins::INTER_POD_AFFINITY
            | Plugins::VOLUME_BINDING;
    }
    if node_allocatable(old) != node_allocatable(new) {
        helps |= Plugins::RESOURCES_FIT;
    }
    helps
}

/// Whether a change that `helps` these plugins may place a pod they `rejected`. A pod
/// with no recorded rejection (there were no nodes at all) is helped by any change.
pub fn may_help(helps: Plugins, rejected: Plugins) -> bool {
    rejected.is_empty() && !helps.is_empty() || helps.intersects(rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        let mut base = json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        });
        json_patch::merge(&mut base, &v);
        serde_json::from_value(base).expect("node")
    }

    #[test]
    fn heartbeats_and_image_lists_help_no_one() {
        let old = node(json!({}));
        let new = node(json!({"status": {
            "conditions": [{"type": "Ready", "status": "True",
                            "lastHeartbeatTime": "2026-01-01T00:00:10Z"}],
            "images": [{"names": ["busybox:1.36"], "sizeBytes": 1}],
        }}));
        assert_eq!(node_changed(&old, &new), Plugins::NONE);
    }

    #[test]
    fn an_uncordon_helps_node_unschedulable_and_a_cordon_helps_no_one() {
        let cordoned = node(json!({"spec": {"unschedulable": true}}));
        let open = node(json!({}));
        assert_eq!(node_changed(&cordoned, &open), Plugins::NODE_UNSCHEDULABLE);
        assert_eq!(node_changed(&open, &cordoned), Plugins::NONE);
    }

    #[test]
    fn only_a_removed_taint_helps_taint_toleration_and_any_taint_change_helps_spread() {
        let tainted = node(json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}));
        let clean = node(json!({}));
        let spread = Plugins::TOPOLOGY_SPREAD;
        assert_eq!(
            node_changed(&tainted, &clean),
            Plugins::TAINT_TOLERATION | spread
        );
        assert_eq!(node_changed(&clean, &tainted), spread);
        // A node becoming Ready loses its implied not-ready taint.
        let not_ready =
            node(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(
            node_changed(&not_ready, &clean),
            Plugins::TAINT_TOLERATION | spread
        );
    }

    #[test]
    fn labels_help_the_label_readers_and_allocatable_helps_resources_fit() {
        let old = node(json!({}));
        let relabelled = node(json!({"metadata": {"labels": {"zone": "b"}}}));
        let h = node_changed(&old, &relabelled);
        for p in [
            Plugins::NODE_AFFINITY,
            Plugins::TOPOLOGY_SPREAD,
            Plugins::INTER_POD_AFFINITY,
            Plugins::VOLUME_BINDING,
        ] {
            assert!(h.intersects(p), "{p:?}");
        }
        assert!(!h.intersects(Plugins::RESOURCES_FIT | Plugins::NODE_UNSCHEDULABLE));
        let bigger = node(json!({"status": {"allocatable": {"cpu": "8"}}}));
        assert_eq!(node_changed(&old, &bigger), Plugins::RESOURCES_FIT);
    }

    #[test]
    fn a_change_helps_a_pod_only_through_a_plugin_that_rejected_it() {
        assert!(!may_help(POD_REMOVED, Plugins::NODE_UNSCHEDULABLE));
        assert!(may_help(
            POD_REMOVED,
            Plugins::RESOURCES_FIT | Plugins::NODE_UNSCHEDULABLE
        ));
        assert!(may_help(NODE_ADDED, Plugins::NODE_UNSCHEDULABLE));
        assert!(
            may_help(POD_PLACED, Plugins::NONE),
            "no nodes: anything helps"
        );
        assert!(!may_help(Plugins::NONE, Plugins::NONE));
    }
}
