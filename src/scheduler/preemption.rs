//! DefaultPreemption (PostFilter): when no node fits a pod, find the node where removing
//! the fewest and least important lower-priority pods makes it fit, and name those victims.
//!
//! Invariants: only pods of strictly lower priority are ever victims; a pod with
//! `preemptionPolicy: Never` preempts nothing; of the lower-priority pods on a node, the
//! most important are reprieved first, so victims are a minimal set in that order.
//! PodDisruptionBudgets are not consulted (no candidate is ranked by violations).

use super::cache::{Cache, NodeInfo, PodInfo};
use super::diagnosis::{histogram, Diagnosis};
use super::filters::{Code, Rejection};
use super::framework::{filter_with_nominated, Cycle};
use std::sync::Arc;

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const TERMINATING_ON_NOMINATED: &str =
    "not eligible due to a terminating pod on the nominated node.";

/// What preemption decided.
#[derive(Debug)]
pub enum Outcome {
    /// The pod may not preempt; the message goes into the FailedScheduling summary.
    NotEligible(String),
    /// No node would fit even after preemption (message starts `preemption: `).
    NoCandidate(String),
    /// Evict `victims` from `node` and nominate the pod there.
    Preempt {
        node: String,
        victims: Vec<Arc<PodInfo>>,
    },
}

fn start_nanos(p: &PodInfo) -> i64 {
    p.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(p.pod.metadata.creation_timestamp.as_ref())
        .map(|t| t.0.as_nanosecond() as i64)
        .unwrap_or(0)
}

/// Which lower-priority pods must go from `node` for the pod to fit, or why none will do.
pub fn select_victims(
    cache: &Cache,
    c: &Cycle,
    node: &NodeInfo,
) -> Result<Vec<Arc<PodInfo>>, Rejection> {
    let prio = c.info.priority;
    let mut sim = node.clone_for_simulation();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < prio)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Rejection::unresolvable(NO_VICTIMS));
    }
    for p in &potential {
        sim.remove_pod(&p.uid);
    }
    filter_with_nominated(cache, c, &sim)?;
    // Most important first: higher priority, then the longer running.
    potential.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(start_nanos(a).cmp(&start_nanos(b)))
    });
    let mut victims = Vec::new();
    for p in potential {
        sim.add_pod(p.clone());
        if filter_with_nominated(cache, c, &sim).is_err() {
            sim.remove_pod(&p.uid);
            victims.push(p);
        }
    }
    Ok(victims)
}

/// Upstream's `pickOneNodeForPreemption` (without PDBs): lowest highest-priority victim,
/// then lowest priority sum, then fewest victims, then the latest start among the
/// highest-priority victims, then the first.
pub fn pick(cands: &[(String, Vec<Arc<PodInfo>>)]) -> Option<usize> {
    let key = |v: &Vec<Arc<PodInfo>>| {
        let highest = v.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = v
            .iter()
            .map(|p| i64::from(p.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_of_highest = v
            .iter()
            .filter(|p| p.priority == highest)
            .map(|p| start_nanos(p))
            .min()
            .unwrap_or(i64::MAX);
        (
            highest,
            sum,
            v.len(),
            std::cmp::Reverse(earliest_of_highest),
        )
    };
    (0..cands.len()).min_by_key(|i| key(&cands[*i].1))
}

/// PostFilter: decide preemption for a pod no node fits.
pub fn preempt(cache: &Cache, c: &Cycle, diag: &Diagnosis) -> Outcome {
    let spec = c.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Outcome::NotEligible(POLICY_NEVER.into());
    }
    let nominated = c
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    if let Some(n) = nominated {
        let resolvable = diag
            .nodes
            .get(n)
            .is_none_or(|r| r.code == Code::Unschedulable);
        let terminating = cache.node(n).is_some_and(|ni| {
            ni.pods
                .iter()
                .any(|p| p.is_terminating() && p.priority < c.info.priority)
        });
        if resolvable && terminating {
            return Outcome::NotEligible(TERMINATING_ON_NOMINATED.into());
        }
    }
    let mut statuses: Vec<String> = Vec::new();
    let mut tried = 0;
    let mut candidates = Vec::new();
    for name in diag.preemptible_nodes() {
        let Some(node) = cache.node(name) else {
            continue;
        };
        tried += 1;
        match select_victims(cache, c, node) {
            Ok(v) if !v.is_empty() => candidates.push((name.to_owned(), v)),
            Ok(_) => statuses.push(format!("expected at least one victim pod on node {name:?}")),
            Err(r) => statuses.extend(r.reasons),
        }
    }
    match pick(&candidates) {
        Some(i) => {
            let (node, victims) = candidates.swap_remove(i);
            Outcome::Preempt { node, victims }
        }
        None => {
            let hist = histogram(
                statuses.iter(),
                diag.num_nodes.saturating_sub(tried),
                Some(NOT_HELPFUL),
            );
            Outcome::NoCandidate(format!(
                "preemption: 0/{} nodes are available: {}.",
                diag.num_nodes,
                hist.join(", ")
            ))
        }
    }
}
