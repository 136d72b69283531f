//! Job conditions and the pod facts the Job controller counts by: active, ready,
//! terminating, failed, finished.
//!
//! Invariant: a condition type appears at most once in `status.conditions`; setting one that
//! is already there with the same status, reason and message changes nothing (so its
//! transition time stays that of the real transition).

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const SUSPENDED: &str = "Suspended";

pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
pub const REASON_POD_FAILURE_POLICY: &str = "PodFailurePolicy";
pub const REASON_MAX_FAILED_INDEXES: &str = "MaxFailedIndexesExceeded";
pub const REASON_FAILED_INDEXES: &str = "FailedIndexes";
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";
pub const REASON_SUCCESS_POLICY: &str = "SuccessPolicy";

/// The pod finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn find<'a>(conds: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// The condition of `type_` if its status is True.
pub fn is_true<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    let conds = job.status.as_ref()?.conditions.as_deref()?;
    find(conds, type_).filter(|c| c.status == "True")
}

/// Sets a condition; a False one is only written over an existing one. Whether anything
/// changed.
pub fn ensure(conds: &mut Vec<JobCondition>, new: JobCondition) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == new.type_) {
        if c.status != new.status || c.reason != new.reason || c.message != new.message {
            *c = new;
            return true;
        }
        return false;
    }
    if new.status != "False" {
        conds.push(new);
        return true;
    }
    false
}

/// Whether the Job has finished: Complete or Failed is True.
pub fn is_finished(job: &Job) -> bool {
    finished_condition(job).is_some()
}

/// The Complete or Failed condition that finished the Job.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    is_true(job, COMPLETE).or_else(|| is_true(job, FAILED))
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Neither finished nor being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted but not finished yet.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

/// Whether the pod counts as failed: Failed, or (unless only failed pods are replaced)
/// deleted before it succeeded.
pub fn is_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    !only_replace_failed && pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

/// Whether replacements wait for a pod to be Failed rather than merely terminating
/// (`podReplacementPolicy: Failed`, implied by a pod failure policy).
pub fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_failure_policy.as_ref()).is_some()
        || spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
}

/// Container restarts of pods still running (for `restartPolicy: OnFailure`).
pub fn restarts(pod: &Pod) -> i32 {
    if !matches!(phase(pod), "Running" | "Pending") {
        return 0;
    }
    let Some(s) = pod.status.as_ref() else {
        return 0;
    };
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum()
}

/// The order in which surplus active pods go: not scheduled before scheduled, pending before
/// running, not ready before ready, younger before older.
pub fn removal_rank(pod: &Pod) -> (bool, u8, bool, std::cmp::Reverse<Option<Timestamp>>) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    let phase_rank = match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        scheduled,
        phase_rank,
        is_ready(pod),
        std::cmp::Reverse(created),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_keeps_the_transition_time_of_an_unchanged_condition() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let mut conds = Vec::new();
        assert!(!ensure(
            &mut conds,
            condition(SUSPENDED, "False", "JobResumed", "Job resumed", t0)
        ));
        assert!(ensure(
            &mut conds,
            condition(SUSPENDED, "True", "JobSuspended", "Job suspended", t0)
        ));
        assert!(!ensure(
            &mut conds,
            condition(SUSPENDED, "True", "JobSuspended", "Job suspended", t1)
        ));
        assert_eq!(conds[0].last_transition_time, Some(Time(t0)));
        assert!(ensure(
            &mut conds,
            condition(SUSPENDED, "False", "JobResumed", "Job resumed", t1)
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].status, "False");
    }
}
