//! InterPodAffinity: required pod affinity and anti-affinity of the incoming pod, the
//! required anti-affinity of pods already placed (filter), and preferred terms of both
//! sides (score), all per topology domain (`topologyKey`).
//!
//! Invariant: counts are taken once per scheduling cycle over every placed pod (assumed
//! ones included); per-node checks only look the node's domain up.

use super::cache::{NodeInfo, PodInfo};
use super::filters::{FilterResult, Rejection};
use super::labels::{labels_of_pod, selector_matches, Labels};
use super::scores::MAX_SCORE;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{HashMap, HashSet};

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// Upstream's `hardPodAffinityWeight` default: how much an existing pod's required
/// affinity to the incoming pod counts in scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Namespace name → its labels (for `namespaceSelector`).
pub type NamespaceLabels<'a> = &'a dyn Fn(&str) -> Option<Labels>;

/// One affinity term resolved against the pod that carries it.
#[derive(Debug, Clone)]
pub struct Term {
    namespaces: HashSet<String>,
    namespace_selector: Option<LabelSelector>,
    selector: Option<LabelSelector>,
    pub key: String,
    pub weight: i64,
}

impl Term {
    fn new(owner: &Pod, t: &PodAffinityTerm, weight: i64) -> Term {
        let mut namespaces: HashSet<String> = t.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(owner.metadata.namespace.clone().unwrap_or_default());
        }
        Term {
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector: t.label_selector.clone(),
            key: t.topology_key.clone(),
            weight,
        }
    }

    /// The term selects `pod` (its namespace is named or selected, and its labels match).
    pub fn matches(&self, pod: &Pod, ns_labels: NamespaceLabels) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let ns_ok = self.namespaces.contains(ns)
            || self.namespace_selector.as_ref().is_some_and(|sel| {
                let l = ns_labels(ns).unwrap_or_default();
                selector_matches(Some(sel), &l)
            });
        ns_ok && selector_matches(self.selector.as_ref(), labels_of_pod(pod))
    }
}

/// The pod's terms: (required affinity, required anti-affinity, preferred affinity,
/// preferred anti-affinity).
pub fn terms(pod: &Pod) -> [Vec<Term>; 4] {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let pa = a.and_then(|a| a.pod_affinity.as_ref());
    let paa = a.and_then(|a| a.pod_anti_affinity.as_ref());
    let req = |ts: Option<&Vec<PodAffinityTerm>>| -> Vec<Term> {
        ts.into_iter()
            .flatten()
            .map(|t| Term::new(pod, t, 1))
            .collect()
    };
    let pref = |ts: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
        ts.into_iter()
            .flatten()
            .map(|w| Term::new(pod, &w.pod_affinity_term, i64::from(w.weight)))
            .collect::<Vec<_>>()
    };
    [
        req(pa.and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        req(paa.and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        pref(pa.and_then(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        pref(paa.and_then(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })),
    ]
}

type Pair = (String, String);

/// PreFilter state: domain counts for the three required checks.
#[derive(Debug, Default)]
pub struct FilterState {
    existing_anti: HashMap<Pair, i64>,
    affinity: HashMap<Pair, i64>,
    anti: HashMap<Pair, i64>,
    affinity_terms: Vec<Term>,
    anti_terms: Vec<Term>,
    self_matches_affinity: bool,
}

fn domain(node: &NodeInfo, key: &str) -> Option<Pair> {
    node.labels().get(key).map(|v| (key.to_owned(), v.clone()))
}

pub fn prefilter<'a>(
    pod: &Pod,
    nodes: impl Iterator<Item = &'a NodeInfo>,
    ns_labels: NamespaceLabels,
) -> Option<FilterState> {
    let [affinity_terms, anti_terms, _, _] = terms(pod);
    let mut st = FilterState::default();
    let own = !affinity_terms.is_empty() || !anti_terms.is_empty();
    for node in nodes {
        for existing in &node.pods {
            if existing.has_pod_affinity {
                let [_, their_anti, _, _] = terms(&existing.pod);
                for t in their_anti {
                    if t.matches(pod, ns_labels) {
                        if let Some(p) = domain(node, &t.key) {
                            *st.existing_anti.entry(p).or_default() += 1;
                        }
                    }
                }
            }
            if !own {
                continue;
            }
            if !affinity_terms.is_empty()
                && affinity_terms
                    .iter()
                    .all(|t| t.matches(&existing.pod, ns_labels))
            {
                for t in &affinity_terms {
                    if let Some(p) = domain(node, &t.key) {
                        *st.affinity.entry(p).or_default() += 1;
                    }
                }
            }
            for t in &anti_terms {
                if t.matches(&existing.pod, ns_labels) {
                    if let Some(p) = domain(node, &t.key) {
                        *st.anti.entry(p).or_default() += 1;
                    }
                }
            }
        }
    }
    if !own && st.existing_anti.is_empty() {
        return None;
    }
    st.self_matches_affinity = affinity_terms.iter().all(|t| t.matches(pod, ns_labels));
    st.affinity_terms = affinity_terms;
    st.anti_terms = anti_terms;
    Some(st)
}

pub fn filter(st: &FilterState, node: &NodeInfo) -> FilterResult {
    let labels = node.labels();
    if labels.iter().any(|(k, v)| {
        st.existing_anti
            .get(&(k.clone(), v.clone()))
            .is_some_and(|n| *n > 0)
    }) {
        return Err(Rejection::unschedulable(REASON_EXISTING_ANTI_AFFINITY));
    }
    for t in &st.anti_terms {
        if domain(node, &t.key).is_some_and(|p| st.anti.get(&p).is_some_and(|n| *n > 0)) {
            return Err(Rejection::unschedulable(REASON_ANTI_AFFINITY));
        }
    }
    let mut pods_exist = true;
    for t in &st.affinity_terms {
        match domain(node, &t.key) {
            None => return Err(Rejection::unresolvable(REASON_AFFINITY)),
            Some(p) => {
                if st.affinity.get(&p).copied().unwrap_or(0) <= 0 {
                    pods_exist = false;
                }
            }
        }
    }
    // The first pod of a group with affinity to itself may go anywhere its terms allow.
    let first_of_group = st.affinity.is_empty() && st.self_matches_affinity;
    if !(pods_exist || first_of_group) {
        return Err(Rejection::unresolvable(REASON_AFFINITY));
    }
    Ok(())
}

/// PreScore state: a score per topology domain.
pub struct ScoreState {
    domains: HashMap<Pair, i64>,
}

pub fn prescore<'a>(
    pod: &Pod,
    nodes: impl Iterator<Item = &'a NodeInfo>,
    ns_labels: NamespaceLabels,
) -> Option<ScoreState> {
    let [_, _, pref_aff, pref_anti] = terms(pod);
    let own = !pref_aff.is_empty() || !pref_anti.is_empty();
    let mut domains: HashMap<Pair, i64> = HashMap::new();
    let mut add = |node: &NodeInfo, key: &str, w: i64| {
        if let Some(p) = domain(node, key) {
            *domains.entry(p).or_default() += w;
        }
    };
    for node in nodes {
        for existing in &node.pods {
            let ex: &PodInfo = existing;
            if own {
                for t in &pref_aff {
                    if t.matches(&ex.pod, ns_labels) {
                        add(node, &t.key, t.weight);
                    }
                }
                for t in &pref_anti {
                    if t.matches(&ex.pod, ns_labels) {
                        add(node, &t.key, -t.weight);
                    }
                }
            }
            if ex.has_pod_affinity {
                let [req_aff, _, their_aff, their_anti] = terms(&ex.pod);
                for t in req_aff {
                    if t.matches(pod, ns_labels) {
                        add(node, &t.key, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for t in their_aff {
                    if t.matches(pod, ns_labels) {
                        add(node, &t.key, t.weight);
                    }
                }
                for t in their_anti {
                    if t.matches(pod, ns_labels) {
                        add(node, &t.key, -t.weight);
                    }
                }
            }
        }
    }
    if domains.is_empty() {
        return None;
    }
    Some(ScoreState { domains })
}

pub fn score(st: &ScoreState, node: &NodeInfo) -> i64 {
    node.labels()
        .iter()
        .filter_map(|(k, v)| st.domains.get(&(k.clone(), v.clone())))
        .sum()
}

/// Upstream's min-max normalization (all equal → 0).
pub fn normalize(scores: &mut [i64]) {
    let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied())
    else {
        return;
    };
    for s in scores.iter_mut() {
        *s = if max > min {
            MAX_SCORE * (*s - min) / (max - min)
        } else {
            0
        };
    }
}
