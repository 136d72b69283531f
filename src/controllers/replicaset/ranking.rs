//! Which pods a scale-down deletes first (upstream's `ActivePodsWithRanks`): the least
//! valuable pod comes first in [`order_for_deletion`].
//!
//! Invariant: the order is total and deterministic for given pods and `now`, comparing in
//! upstream's order: unassigned < assigned; Pending < Unknown < Running; not ready < ready;
//! lower `controller.kubernetes.io/pod-deletion-cost` first; more pods of the same owner on
//! the pod's node first; ready for less time (logarithmic buckets) first; more restarts
//! first; newer (logarithmic buckets) first; then by uid.

use crate::controllers::controller_utils::{is_pod_ready, ready_since};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Upstream's annotation for user-assigned deletion preference.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None | Some("") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// `floor(log2(age in ns))`, the bucket upstream's LogarithmicScaleDown compares.
fn log_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d <= 0 {
        -1
    } else {
        (d as f64).log2() as i64
    }
}

/// Compares two timestamps so the later (younger) comes first; a missing one comes before
/// any; timestamps within the same power-of-two age bucket are equal.
fn younger_first(a: Option<Timestamp>, b: Option<Timestamp>, now: Timestamp) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => log_bucket(a, now).cmp(&log_bucket(b, now)),
    }
}

/// Sorts `pods` so the ones to delete first come first. `now` is the time of the decision.
pub fn order_for_deletion(pods: &mut [&Pod], now: Timestamp) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods.iter() {
        if let Some(n) = node(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let colocated = |p: &Pod| node(p).map(|n| per_node[n]).unwrap_or(0);
    let creation = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    pods.sort_by(|a, b| {
        node(a)
            .is_some()
            .cmp(&node(b).is_some())
            .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
            .then_with(|| is_pod_ready(a).cmp(&is_pod_ready(b)))
            .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
            .then_with(|| colocated(b).cmp(&colocated(a)))
            .then_with(|| match (ready_since(a), ready_since(b)) {
                (Some(ta), Some(tb)) => younger_first(ta, tb, now),
                _ => Ordering::Equal,
            })
            .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
            .then_with(|| younger_first(creation(a), creation(b), now))
            .then_with(|| a.metadata.uid.cmp(&b.metadata.uid))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid")
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_at: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Some(Time(at(0))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(t))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn unassigned_pending_and_unready_pods_are_deleted_before_running_ready_ones() {
        let ready = pod("ready", Some("n1"), "Running", Some(0));
        let unready = pod("unready", Some("n2"), "Running", None);
        let pending = pod("pending", Some("n3"), "Pending", None);
        let unknown = pod("unknown", Some("n4"), "Unknown", None);
        let unassigned = pod("unassigned", None, "Running", Some(0));
        let mut pods = vec![&ready, &unready, &pending, &unknown, &unassigned];
        order_for_deletion(&mut pods, at(10_000));
        assert_eq!(
            names(&pods),
            ["unassigned", "pending", "unknown", "unready", "ready"]
        );
    }

    #[test]
    fn among_ready_pods_the_one_ready_for_less_time_goes_first() {
        let old = pod("old", Some("n1"), "Running", Some(0));
        let young = pod("young", Some("n2"), "Running", Some(9_990));
        let mut pods = vec![&old, &young];
        order_for_deletion(&mut pods, at(10_000));
        assert_eq!(names(&pods), ["young", "old"]);
    }

    #[test]
    fn more_restarts_and_doubled_up_nodes_go_first() {
        let mut crashy = pod("crashy", Some("n1"), "Running", Some(0));
        crashy.status.as_mut().expect("status").container_statuses = Some(vec![ContainerStatus {
            restart_count: 5,
            ..Default::default()
        }]);
        let calm = pod("calm", Some("n2"), "Running", Some(0));
        let mut pods = vec![&calm, &crashy];
        order_for_deletion(&mut pods, at(10_000));
        assert_eq!(names(&pods), ["crashy", "calm"]);

        let a = pod("a", Some("shared"), "Running", Some(0));
        let b = pod("b", Some("shared"), "Running", Some(0));
        let alone = pod("alone", Some("solo"), "Running", Some(0));
        let mut pods = vec![&alone, &a, &b];
        order_for_deletion(&mut pods, at(10_000));
        assert_eq!(names(&pods)[2], "alone");
    }

    #[test]
    fn a_lower_deletion_cost_goes_first() {
        let mut cheap = pod("cheap", Some("n1"), "Running", Some(0));
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST.to_string(), "-5".to_string())].into());
        let normal = pod("normal", Some("n2"), "Running", Some(9_000));
        let mut pods = vec![&normal, &cheap];
        order_for_deletion(&mut pods, at(10_000));
        assert_eq!(names(&pods), ["cheap", "normal"]);
    }
}
