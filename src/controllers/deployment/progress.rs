//! Deployment status and its conditions (upstream's `progress.go` and the condition
//! helpers): the counts summed over replica sets, `Available` from maxUnavailable, and
//! `Progressing` with its progress deadline.
//!
//! Invariant: a condition's `lastTransitionTime` changes only when its status changes;
//! setting a condition with the same status and reason changes nothing.

use super::util::{
    d_replicas, max_unavailable, rs_available, rs_ready, rs_replicas, rs_status_replicas,
    rs_terminating,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let now = Time(Timestamp::now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

pub fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// Upstream's `SetDeploymentCondition`.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_.clone());
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// Upstream's `calculateStatus`.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let available: i32 = all.iter().map(|r| rs_available(r)).sum();
    let total: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|r| rs_status_replicas(r)).sum()),
        updated_replicas: Some(new_rs.map(rs_status_replicas).unwrap_or(0)),
        ready_replicas: Some(all.iter().map(|r| rs_ready(r)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        terminating_replicas: Some(all.iter().map(|r| rs_terminating(r)).sum()),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
    };
    if available >= d_replicas(d) - max_unavailable(d) {
        set_condition(
            &mut s,
            new_condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut s,
            new_condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    s
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Every replica updated and available, and the spec observed.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = d_replicas(d);
    n(s.updated_replicas) == r
        && n(s.replicas) == r
        && n(s.available_replicas) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether `new` shows progress over the deployment's current status.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Whether the Progressing condition's last update is older than the deadline.
pub fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(s, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => match c.last_update_time.as_ref() {
            Some(t) => t.0.as_second() + i64::from(deadline) < now.as_second(),
            None => false,
        },
    }
}

/// The Progressing condition and ReplicaFailure of a sync (upstream's `syncRolloutStatus`
/// before its write).
pub fn rollout_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) -> DeploymentStatus {
    let mut s = calculate_status(d, all, new_rs);
    let name = d.metadata.name.clone().unwrap_or_default();
    let has_deadline = progress_deadline(d).is_some();
    if !has_deadline {
        remove_condition(&mut s, PROGRESSING);
    }
    let current = d
        .status
        .as_ref()
        .and_then(|st| get_condition(st, PROGRESSING))
        .cloned();
    let complete_already = n(s.replicas) == n(s.updated_replicas)
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if has_deadline && !complete_already {
        let subject = |what: &str| match new_rs {
            Some(rs) => format!(
                "ReplicaSet {:?} {what}",
                rs.metadata.name.as_deref().unwrap_or_default()
            ),
            None => format!("Deployment {name:?} {what}"),
        };
        if deployment_complete(d, &s) {
            set_condition(
                &mut s,
                new_condition(
                    PROGRESSING,
                    "True",
                    NEW_RS_AVAILABLE,
                    subject("has successfully progressed."),
                ),
            );
        } else if deployment_progressing(d, &s) {
            let mut c = new_condition(PROGRESSING, "True", RS_UPDATED, subject("is progressing."));
            if let Some(cur) = &current {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut s, PROGRESSING);
            }
            set_condition(&mut s, c);
        } else if deployment_timed_out(d, &s, Timestamp::now()) {
            set_condition(
                &mut s,
                new_condition(
                    PROGRESSING,
                    "False",
                    TIMED_OUT,
                    subject("has timed out progressing."),
                ),
            );
        }
    }
    // A replica set's ReplicaFailure (the new one's first) becomes the deployment's.
    let failure = new_rs
        .into_iter()
        .chain(all.iter().copied())
        .filter_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
                .cloned()
        })
        .next();
    match failure {
        Some(f) => set_condition(
            &mut s,
            DeploymentCondition {
                type_: REPLICA_FAILURE.into(),
                status: f.status,
                reason: f.reason,
                message: f.message,
                last_update_time: f.last_transition_time.clone(),
                last_transition_time: f.last_transition_time,
            },
        ),
        None => remove_condition(&mut s, REPLICA_FAILURE),
    }
    s
}

/// When to look again at a deployment that may stall past its deadline (upstream's
/// `requeueStuckDeployment`), if at all.
pub fn requeue_stuck(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let c = get_condition(s, PROGRESSING)?;
    if deployment_complete(d, s) || c.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0.as_second();
    let after = from + i64::from(deadline) - now.as_second();
    if after < 1 {
        Some(Duration::from_millis(200))
    } else {
        Some(Duration::from_secs(after as u64 + 1))
    }
}
