//! Why a pod fits no node, and the summary message kube-scheduler prints for it
//! (`FitError.Error()`): `0/N nodes are available: <prefilter>. <counts of reasons, sorted
//! as strings>. <postfilter>`.

use super::filters::{Code, Rejection};
use super::hints::Plugins;
use std::collections::{BTreeMap, HashMap};

/// Upstream's message when a PreFilter rejects the pod for every node.
pub const NO_NODES: &str = "no nodes available to schedule pods";

#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pub num_nodes: usize,
    /// Node name → why it was rejected.
    pub nodes: BTreeMap<String, Rejection>,
    /// A PreFilter's rejection (e.g. a missing claim): applies to every node.
    pub pre_filter: Option<String>,
    /// PostFilter (preemption) outcome, already prefixed `preemption: `.
    pub post_filter: Option<String>,
}

impl Diagnosis {
    /// Nodes rejected for reasons preemption may resolve.
    pub fn preemptible_nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|(_, r)| r.code == Code::Unschedulable)
            .map(|(n, _)| n.as_str())
    }

    /// The plugins that rejected the pod somewhere: the changes that may place it.
    pub fn rejectors(&self) -> Plugins {
        let mut all = Plugins::NONE;
        if self.pre_filter.is_some() {
            // PreFilter fails only for the pod's claims.
            all |= Plugins::VOLUME_BINDING;
        }
        for r in self.nodes.values() {
            all |= r.plugin;
        }
        all
    }

    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_nodes);
        if let Some(p) = &self.pre_filter {
            msg.push_str(&format!(" {p}."));
        } else {
            let hist = histogram(self.nodes.values().flat_map(|r| r.reasons.iter()), 0, None);
            if !hist.is_empty() {
                msg.push_str(&format!(" {}.", hist.join(", ")));
            }
        }
        if let Some(p) = &self.post_filter {
            msg.push_str(&format!(" {p}"));
        }
        msg
    }
}

/// "<count> <reason>" per distinct reason, sorted as strings (so "10 x" sorts before
/// "2 y", as upstream's `sort.Strings`). `absent` nodes (not listed) count as `absent_reason`.
pub fn histogram<'a>(
    reasons: impl Iterator<Item = &'a String>,
    absent: usize,
    absent_reason: Option<&str>,
) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in reasons {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    if let (Some(r), true) = (absent_reason, absent > 0) {
        *counts.entry(r).or_default() += absent;
    }
    let mut out: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rej(code: Code, reasons: &[&str]) -> Rejection {
        Rejection {
            code,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            plugin: Plugins::NONE,
        }
    }

    #[test]
    fn fit_error_counts_reasons_sorted_as_strings_and_appends_preemption() {
        let mut d = Diagnosis {
            num_nodes: 3,
            ..Default::default()
        };
        d.nodes
            .insert("a".into(), rej(Code::Unschedulable, &["Insufficient cpu"]));
        let taint = "node(s) had untolerated taint {node-role: x}";
        d.nodes
            .insert("b".into(), rej(Code::Unresolvable, &[taint]));
        d.nodes
            .insert("c".into(), rej(Code::Unresolvable, &[taint]));
        d.post_filter = Some(
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
                .into(),
        );
        assert_eq!(
            d.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
             {node-role: x}. preemption: 0/3 nodes are available: 3 Preemption is not \
             helpful for scheduling."
        );
    }

    #[test]
    fn a_node_with_several_shortfalls_counts_each_and_ten_sorts_before_two() {
        let mut d = Diagnosis {
            num_nodes: 12,
            ..Default::default()
        };
        for i in 0..10 {
            d.nodes.insert(
                format!("n{i}"),
                rej(
                    Code::Unschedulable,
                    &["Insufficient cpu", "Insufficient memory"],
                ),
            );
        }
        for i in 10..12 {
            d.nodes.insert(
                format!("n{i}"),
                rej(Code::Unresolvable, &["node(s) were unschedulable"]),
            );
        }
        assert_eq!(
            d.message(),
            "0/12 nodes are available: 10 Insufficient cpu, 10 Insufficient memory, 2 node(s) \
             were unschedulable."
        );
    }

    #[test]
    fn a_prefilter_rejection_replaces_the_per_node_counts() {
        let d = Diagnosis {
            num_nodes: 2,
            pre_filter: Some("persistentvolumeclaim \"data\" not found".into()),
            ..Default::default()
        };
        assert_eq!(
            d.message(),
            "0/2 nodes are available: persistentvolumeclaim \"data\" not found."
        );
    }
}
