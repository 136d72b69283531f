//! PodTopologySpread: the `DoNotSchedule` constraints as a filter (skew of matching pods
//! across topology domains) and the `ScheduleAnyway` constraints, or the system default
//! constraints for pods a Service/ReplicaSet/StatefulSet/ReplicationController selects, as
//! a score (fewer matching pods in the node's domains is better).
//!
//! Invariant: counts cover every node that honours the pod's node affinity (upstream's
//! default `nodeAffinityPolicy: Honor`, `nodeTaintsPolicy: Ignore`), so a domain the pod
//! cannot go to still raises the skew only through domains it can.

use super::cache::NodeInfo;
use super::filters::{tolerations, FilterResult, Rejection};
use super::labels::{self, labels_of_pod, selector_matches};
use super::scores::MAX_SCORE;
use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::HashMap;

pub const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const ZONE: &str = "topology.kubernetes.io/zone";

/// One constraint as the scheduler evaluates it.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub max_skew: i64,
    pub key: String,
    pub selector: Option<LabelSelector>,
    pub min_domains: Option<i64>,
    pub honor_affinity: bool,
    pub honor_taints: bool,
    /// Identifies (selector) for the per-node count memo; the namespace is added by
    /// [`Constraint::for_namespace`].
    pub memo_key: String,
}

impl Constraint {
    fn new(max_skew: i64, key: String, selector: Option<LabelSelector>) -> Constraint {
        let memo_key = format!("{selector:?}");
        Constraint {
            max_skew,
            key,
            selector,
            min_domains: None,
            honor_affinity: true,
            honor_taints: false,
            memo_key,
        }
    }

    fn for_namespace(mut self, ns: &str) -> Constraint {
        self.memo_key = format!("{ns}\u{0}{}", self.memo_key);
        self
    }
}

fn convert(c: &TopologySpreadConstraint) -> Constraint {
    Constraint {
        min_domains: c.min_domains.map(i64::from),
        honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
        honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        ..Constraint::new(
            i64::from(c.max_skew),
            c.topology_key.clone(),
            c.label_selector.clone(),
        )
    }
}

fn constraints_with(pod: &Pod, when: &str) -> Vec<Constraint> {
    pod.spec
        .iter()
        .flat_map(|s| s.topology_spread_constraints.iter().flatten())
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| convert(c).for_namespace(pod.metadata.namespace.as_deref().unwrap_or_default()))
        .collect()
}

/// The pod's `DoNotSchedule` constraints.
pub fn hard_constraints(pod: &Pod) -> Vec<Constraint> {
    constraints_with(pod, "DoNotSchedule")
}

/// The constraints scoring uses and whether they are the system defaults: the pod's
/// `ScheduleAnyway` constraints, or when it has none at all, upstream's defaults (hostname
/// skew 3, zone skew 5) over the selector of what owns it.
pub fn soft_constraints(
    pod: &Pod,
    owner_selector: Option<LabelSelector>,
) -> (Vec<Constraint>, bool) {
    let has_any = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty());
    if has_any {
        return (constraints_with(pod, "ScheduleAnyway"), false);
    }
    let Some(sel) = owner_selector else {
        return (vec![], true);
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mk =
        |key: &str, skew| Constraint::new(skew, key.into(), Some(sel.clone())).for_namespace(ns);
    (vec![mk(HOSTNAME, 3), mk(ZONE, 5)], true)
}

/// Matching pods on a node: same namespace, not terminating, selected.
pub fn count_matching(node: &NodeInfo, c: &Constraint, ns: &str) -> i64 {
    let sel = c.selector.as_ref();
    let memo_key = &c.memo_key;
    if let Ok(memo) = node.match_memo.lock() {
        if let Some((k, n)) = memo.as_ref() {
            if k == memo_key {
                return *n;
            }
        }
    }
    let n = count_uncached(node, sel, ns);
    if let Ok(mut memo) = node.match_memo.lock() {
        *memo = Some((memo_key.clone(), n));
    }
    n
}

fn count_uncached(node: &NodeInfo, sel: Option<&LabelSelector>, ns: &str) -> i64 {
    node.pods
        .iter()
        .filter(|p| {
            p.namespace == ns && !p.is_terminating() && selector_matches(sel, labels_of_pod(&p.pod))
        })
        .count() as i64
}

fn node_included(c: &Constraint, pod: &Pod, node: &NodeInfo) -> bool {
    let Some(n) = &node.node else {
        return false;
    };
    if c.honor_affinity && !labels::pod_matches_node_selector_and_affinity(pod, n) {
        return false;
    }
    if c.honor_taints && super::filters::taint_toleration(tolerations(pod), &node.taints).is_err() {
        return false;
    }
    true
}

/// PreFilter state of the `DoNotSchedule` constraints.
#[derive(Debug, Default)]
pub struct FilterState {
    constraints: Vec<Constraint>,
    /// (constraint index, domain value) → matching pods.
    counts: HashMap<(usize, String), i64>,
    /// Per constraint, the fewest matching pods in any domain.
    min: Vec<i64>,
    self_match: Vec<bool>,
}

pub fn prefilter<'a>(pod: &Pod, nodes: impl Iterator<Item = &'a NodeInfo>) -> Option<FilterState> {
    let constraints = hard_constraints(pod);
    if constraints.is_empty() {
        return None;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut counts: HashMap<(usize, String), i64> = HashMap::new();
    for node in nodes {
        let l = node.labels();
        if !constraints.iter().all(|c| l.contains_key(&c.key)) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if !node_included(c, pod, node) {
                continue;
            }
            let n = count_matching(node, c, ns);
            *counts.entry((i, l[&c.key].clone())).or_default() += n;
        }
    }
    let min = constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let domains: Vec<i64> = counts
                .iter()
                .filter(|((j, _), _)| *j == i)
                .map(|(_, n)| *n)
                .collect();
            let too_few = c.min_domains.is_some_and(|m| (domains.len() as i64) < m);
            if too_few {
                0
            } else {
                domains.into_iter().min().unwrap_or(0)
            }
        })
        .collect();
    let self_match = constraints
        .iter()
        .map(|c| selector_matches(c.selector.as_ref(), labels_of_pod(pod)))
        .collect();
    Some(FilterState {
        constraints,
        counts,
        min,
        self_match,
    })
}

/// Placing the pod on `node` keeps every constraint's skew within `maxSkew`.
pub fn filter(state: &FilterState, node: &NodeInfo) -> FilterResult {
    let l = node.labels();
    for (i, c) in state.constraints.iter().enumerate() {
        let Some(value) = l.get(&c.key) else {
            return Err(Rejection::unresolvable(REASON_MISSING_LABEL));
        };
        let matching = state.counts.get(&(i, value.clone())).copied().unwrap_or(0);
        let skew = matching + i64::from(state.self_match[i]) - state.min[i];
        if skew > c.max_skew {
            return Err(Rejection::unschedulable(REASON_SKEW));
        }
    }
    Ok(())
}

/// PreScore state of the soft constraints.
pub struct ScoreState {
    constraints: Vec<Constraint>,
    namespace: String,
    /// Domain counts of the non-hostname constraints.
    counts: HashMap<(usize, String), i64>,
    weights: Vec<f64>,
    ignored: std::collections::HashSet<String>,
}

pub fn prescore<'a>(
    pod: &Pod,
    constraints: Vec<Constraint>,
    system_defaulted: bool,
    feasible: &[&'a NodeInfo],
    all: impl Iterator<Item = &'a NodeInfo>,
) -> Option<ScoreState> {
    if constraints.is_empty() {
        return None;
    }
    let require_all = !system_defaulted;
    let mut ignored = std::collections::HashSet::new();
    let mut counts: HashMap<(usize, String), i64> = HashMap::new();
    let mut sizes = vec![0usize; constraints.len()];
    for node in feasible {
        let l = node.labels();
        if require_all && !constraints.iter().all(|c| l.contains_key(&c.key)) {
            ignored.insert(node.name.clone());
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if c.key == HOSTNAME {
                continue;
            }
            if let Some(v) = l.get(&c.key) {
                if let std::collections::hash_map::Entry::Vacant(e) = counts.entry((i, v.clone())) {
                    e.insert(0);
                    sizes[i] += 1;
                }
            }
        }
    }
    for (i, c) in constraints.iter().enumerate() {
        if c.key == HOSTNAME {
            sizes[i] = feasible.len() - ignored.len();
        }
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    for node in all {
        let l = node.labels();
        for (i, c) in constraints.iter().enumerate() {
            if c.key == HOSTNAME || !node_included(c, pod, node) {
                continue;
            }
            let Some(v) = l.get(&c.key) else { continue };
            if let Some(n) = counts.get_mut(&(i, v.clone())) {
                *n += count_matching(node, c, &ns);
            }
        }
    }
    let weights = sizes.iter().map(|s| ((*s + 2) as f64).ln()).collect();
    Some(ScoreState {
        constraints,
        namespace: ns,
        counts,
        weights,
        ignored,
    })
}

/// The raw score: matching pods in the node's domains, weighted (lower is better).
pub fn score(state: &ScoreState, node: &NodeInfo) -> i64 {
    if state.ignored.contains(&node.name) {
        return 0;
    }
    let l = node.labels();
    let mut s = 0.0;
    for (i, c) in state.constraints.iter().enumerate() {
        let Some(v) = l.get(&c.key) else { continue };
        let cnt = if c.key == HOSTNAME {
            count_matching(node, c, &state.namespace)
        } else {
            state.counts.get(&(i, v.clone())).copied().unwrap_or(0)
        };
        s += cnt as f64 * state.weights[i] + (c.max_skew - 1) as f64;
    }
    s.round() as i64
}

/// Upstream's normalization: the emptiest domain scores highest.
pub fn normalize(state: &ScoreState, names: &[&str], scores: &mut [i64]) {
    let mut min = i64::MAX;
    let mut max = 0;
    for (n, s) in names.iter().zip(scores.iter()) {
        if state.ignored.contains(*n) {
            continue;
        }
        min = min.min(*s);
        max = max.max(*s);
    }
    for (n, s) in names.iter().zip(scores.iter_mut()) {
        if state.ignored.contains(*n) {
            *s = 0;
        } else if max == 0 {
            *s = MAX_SCORE;
        } else {
            *s = MAX_SCORE * (max + min - *s) / max;
        }
    }
}
