//! The arithmetic of a PodDisruptionBudget's status (upstream's disruption controller
//! `getExpectedPodCount`, `countHealthyPods`, `buildDisruptedPodMap`), pure so it is tested
//! without a cluster.

use super::super::controller_utils::is_pod_ready;
use crate::controllers::controller_utils::scaled_value;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;

/// How long an eviction's entry in `status.disruptedPods` is believed: a pod the API server
/// granted a disruption to but that is still not being deleted after this counts again
/// (upstream's DeletionTimeout).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

pub const CONDITION: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// `(expectedPods, desiredHealthy)` of a budget selecting `pods` pods; `scale` is the summed
/// scale of the pods' controllers, asked for only when the budget needs it (a percentage or
/// maxUnavailable).
pub fn expected_and_desired(
    spec: &PodDisruptionBudgetSpec,
    pods: i32,
    scale: impl FnOnce() -> Result<i32, String>,
) -> Result<(i32, i32), String> {
    if let Some(max) = &spec.max_unavailable {
        let expected = scale()?;
        let max = scaled_value(max, expected, true)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods, *n)),
        Some(pct @ IntOrString::String(_)) => {
            let expected = scale()?;
            Ok((expected, scaled_value(pct, expected, true)?))
        }
        // Validation requires one of the two; an empty budget protects nothing.
        None => Ok((pods, 0)),
    }
}

/// The pods still counted as disrupted (granted an eviction, not yet deleting, within the
/// timeout), and when the earliest of them expires.
pub fn disrupted_pods(
    pods: &[&Pod],
    recorded: Option<&BTreeMap<String, Time>>,
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let Some(recorded) = recorded else {
        return (kept, None);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(at) = recorded.get(name) else {
            continue;
        };
        let Ok(expires) = at.0.checked_add(DELETION_TIMEOUT) else {
            continue;
        };
        if expires <= now {
            tracing::warn!(
                pod = name,
                "pod was expected to be deleted after its eviction but it was not"
            );
            continue;
        }
        kept.insert(name.to_owned(), at.clone());
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
    }
    (kept, recheck)
}

/// Ready pods that are neither being deleted nor counted as disrupted.
pub fn healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .filter(|p| is_pod_ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Sets the DisruptionAllowed condition, keeping its transition time when unchanged.
pub fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    generation: i64,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let value = if reason == SUFFICIENT_PODS {
        "True"
    } else {
        "False"
    };
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let old = conds.iter().position(|c| c.type_ == CONDITION);
    let transition = match old.map(|i| &conds[i]) {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let cond = Condition {
        type_: CONDITION.into(),
        status: value.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(generation),
        last_transition_time: transition,
    };
    match old {
        Some(i) => conds[i] = cond,
        None => conds.push(cond),
    }
}

/// The status of a budget whose pods were counted.
pub fn computed_status(
    old: &PodDisruptionBudgetStatus,
    generation: i64,
    expected: i32,
    desired: i32,
    current: i32,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let allowed = (current - desired).max(0);
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: current,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: Some(generation),
        conditions: old.conditions.clone(),
    };
    let reason = if allowed > 0 {
        SUFFICIENT_PODS
    } else {
        INSUFFICIENT_PODS
    };
    set_condition(&mut status, generation, reason, String::new(), now);
    status
}

/// The status when the budget could not be computed: no disruption is allowed.
pub fn failed_status(
    old: &PodDisruptionBudgetStatus,
    generation: i64,
    why: String,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = PodDisruptionBudgetStatus {
        disruptions_allowed: 0,
        observed_generation: Some(generation),
        ..old.clone()
    };
    set_condition(&mut status, generation, SYNC_FAILED, why, now);
    status
}
