//! One sync of one Job: count its pods, decide whether it finished, create or delete pods,
//! and write what was counted (see the invariant in the module above).

use super::backoff::{finished_at, Record};
use super::failure_policy::{judge, Verdict};
use super::indexed::{self, Intervals};
use super::pods::IndexCounts;
use super::status::{self as st, condition};
use super::JobReconciler;
use crate::controllers::{Action, ControllerError};
use crate::events::{object_ref, NORMAL, WARNING};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Upstream's cap on pods counted (uids in `uncountedTerminatedPods`) per sync.
const MAX_UNCOUNTED: usize = 500;
/// Upstream's cap on pods created or deleted per sync.
const MAX_CREATE_DELETE: usize = 500;

/// What one sync has learnt about the Job.
struct SyncCtx {
    job: Job,
    spec: JobSpec,
    key: String,
    now: Timestamp,
    indexed: bool,
    pods: Vec<Arc<Pod>>,
    active: Vec<Arc<Pod>>,
    ready: i32,
    terminating: i32,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    expected_rm: HashSet<String>,
    succeeded: i32,
    finished: Option<JobCondition>,
    prev_succeeded_idx: Intervals,
    succeeded_idx: Intervals,
    failed_idx: Option<Intervals>,
    record: Record,
    requeue: Option<Duration>,
}

impl SyncCtx {
    fn requeue_after(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn status(&mut self) -> &mut JobStatus {
        self.job.status.get_or_insert_with(Default::default)
    }

    fn completions(&self) -> u32 {
        self.spec.completions.unwrap_or(0).max(0) as u32
    }

    fn only_replace_failed(&self) -> bool {
        st::only_replace_failed(&self.job)
    }

    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }

    /// A pod not counted yet: it has the finalizer, is not in the uncounted lists nor
    /// waiting for its finalizer removal to show, and (Indexed) has a valid index.
    fn is_new(&self, p: &Pod, uncounted: &HashSet<String>) -> bool {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        st::has_finalizer(p)
            && !uncounted.contains(&uid)
            && !self.expected_rm.contains(&uid)
            && (!self.indexed || indexed::index_of(p).is_some_and(|i| i < self.completions()))
    }
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

impl JobReconciler {
    pub(super) async fn sync(&self, key: &str, mut job: Job) -> Result<Action, ControllerError> {
        let now = self.clock.now();
        let spec = job.spec.clone().unwrap_or_default();
        let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
        if mode != "NonIndexed" && mode != "Indexed" {
            self.recorder.event(
                object_ref(&job),
                WARNING,
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown".into(),
            );
            return Ok(Action::Done);
        }
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let job_uid = job.metadata.uid.clone().unwrap_or_default();
        let ns_pods = self.pods_in(&ns);
        let (satisfied, expected_rm) = self.expectations.observe(key, &ns_pods);
        let pods = self.claim_pods(&job, &job_uid, ns_pods).await?;
        let status = job.status.get_or_insert_with(Default::default);
        let uncounted = status
            .uncounted_terminated_pods
            .get_or_insert_with(Default::default);
        let uncounted_succeeded: HashSet<String> =
            uncounted.succeeded.iter().flatten().cloned().collect();
        let uncounted_failed: HashSet<String> =
            uncounted.failed.iter().flatten().cloned().collect();
        let active: Vec<Arc<Pod>> = pods.iter().filter(|p| st::is_active(p)).cloned().collect();
        let mut cx = SyncCtx {
            ready: active.iter().filter(|p| st::is_ready(p)).count() as i32,
            terminating: pods.iter().filter(|p| st::is_terminating(p)).count() as i32,
            indexed: mode == "Indexed",
            key: key.to_owned(),
            job,
            spec,
            now,
            pods,
            active,
            uncounted_succeeded,
            uncounted_failed,
            expected_rm,
            succeeded: 0,
            finished: None,
            prev_succeeded_idx: Intervals::default(),
            succeeded_idx: Intervals::default(),
            failed_idx: None,
            record: Record::default(),
            requeue: None,
        };
        let only_failed = cx.only_replace_failed();
        let policy = cx.spec.pod_failure_policy.clone();
        let new_succeeded: Vec<&Pod> = cx
            .pods
            .iter()
            .filter(|p| cx.is_new(p, &cx.uncounted_succeeded) && st::phase(p) == "Succeeded")
            .map(|p| p.as_ref())
            .collect();
        let new_failed: Vec<&Pod> = cx
            .pods
            .iter()
            .filter(|p| cx.is_new(p, &cx.uncounted_failed) && st::is_failed(p, only_failed))
            .map(|p| p.as_ref())
            .collect();
        let counted_new_failed = new_failed
            .iter()
            .filter(|p| judge(policy.as_ref(), p).counts())
            .count();
        let status = cx.job.status.clone().unwrap_or_default();
        cx.succeeded = status.succeeded.unwrap_or(0)
            + new_succeeded.len() as i32
            + cx.uncounted_succeeded.len() as i32;
        let failed = status.failed.unwrap_or(0)
            + counted_new_failed as i32
            + cx.uncounted_failed.len() as i32;
        let record = self.records.get(key).advance(&new_succeeded, &new_failed);
        drop(new_succeeded);
        drop(new_failed);
        cx.record = record;
        if status.start_time.is_none() && !cx.suspended() {
            cx.status().start_time = Some(Time(now));
        }

        self.judge_finished(&mut cx, failed);
        let mut manage_err = None;
        let mut active_count = cx.active.len() as i32;
        let mut suspend_changed = false;
        if cx.finished.is_some() {
            let (deleted, deleted_ready) = self.delete_active(&cx, &mut manage_err).await;
            if deleted != active_count || !satisfied {
                // Pods may still be running or not yet in the cache: decide next time.
                cx.finished = None;
            }
            active_count -= deleted;
            cx.terminating += deleted;
            cx.ready -= deleted_ready;
        } else {
            let mut managed = false;
            if satisfied && cx.job.metadata.deletion_timestamp.is_none() {
                match self.manage(&mut cx).await {
                    Ok(n) => active_count = n,
                    Err((n, e)) => {
                        active_count = n;
                        manage_err = Some(e);
                    }
                }
                managed = true;
            }
            let complete = match cx.spec.completions {
                None => cx.succeeded > 0 && active_count == 0,
                Some(c) => cx.succeeded >= c && active_count == 0,
            };
            if complete {
                cx.finished = Some(condition(
                    st::SUCCESS_CRITERIA_MET,
                    "True",
                    st::REASON_COMPLETIONS_REACHED,
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if managed {
                suspend_changed = self.set_suspended(&mut cx);
            }
        }
        let ready = cx.ready;
        let terminating = cx.terminating;
        let s = cx.status();
        let needs_update = suspend_changed
            || active_count != s.active.unwrap_or(0)
            || Some(ready) != s.ready
            || Some(terminating) != s.terminating;
        s.active = nonzero(active_count);
        s.ready = Some(ready);
        s.terminating = Some(terminating);
        self.track(&mut cx, needs_update).await?;
        if let Some(e) = manage_err {
            return Err(e);
        }
        Ok(cx.requeue.map_or(Action::Done, Action::RequeueAfter))
    }

    /// Decides whether the Job has met its success criteria or failed.
    fn judge_finished(&self, cx: &mut SyncCtx, failed: i32) {
        let now = cx.now;
        let policy = cx.spec.pod_failure_policy.clone();
        let only_failed = cx.only_replace_failed();
        cx.finished = st::is_true(&cx.job, st::SUCCESS_CRITERIA_MET).cloned();
        if cx.finished.is_none() {
            if let Some(target) = st::is_true(&cx.job, st::FAILURE_TARGET) {
                cx.finished = Some(condition(
                    st::FAILED,
                    "True",
                    target.reason.as_deref().unwrap_or_default(),
                    target.message.as_deref().unwrap_or_default(),
                    now,
                ));
            } else if let Some(message) = cx
                .pods
                .iter()
                .filter(|p| st::is_failed(p, only_failed))
                .find_map(|p| match judge(policy.as_ref(), p) {
                    Verdict::FailJob(m) => Some(m),
                    _ => None,
                })
            {
                cx.finished = Some(condition(
                    st::FAILURE_TARGET,
                    "True",
                    st::REASON_POD_FAILURE_POLICY,
                    &message,
                    now,
                ));
            }
        }
        let failure = |reason: &str, message: &str| {
            Some(condition(st::FAILURE_TARGET, "True", reason, message, now))
        };
        if cx.finished.is_none() {
            let limit = cx.spec.backoff_limit.unwrap_or(6);
            let start = cx.job.status.as_ref().and_then(|s| s.start_time.clone());
            if failed > limit || self.past_backoff_limit_on_failure(cx) {
                cx.finished = failure(
                    st::REASON_BACKOFF_LIMIT,
                    "Job has reached the specified backoff limit",
                );
            } else if let (Some(ads), Some(start), false) =
                (cx.spec.active_deadline_seconds, start, cx.suspended())
            {
                let allowed = Duration::from_secs(ads.max(0) as u64);
                let elapsed = crate::controllers::clock::until(start.0, now);
                if elapsed >= allowed {
                    cx.finished = failure(
                        st::REASON_DEADLINE,
                        "Job was active longer than specified deadline",
                    );
                } else {
                    cx.requeue_after(allowed - elapsed);
                }
            }
        }
        if !cx.indexed {
            return;
        }
        let completions = cx.completions();
        let status = cx.job.status.clone().unwrap_or_default();
        cx.prev_succeeded_idx = Intervals::parse(
            status.completed_indexes.as_deref().unwrap_or(""),
            completions,
        );
        let new_idx: Vec<u32> = cx
            .pods
            .iter()
            .filter(|p| st::phase(p) == "Succeeded" && st::has_finalizer(p))
            .filter_map(|p| indexed::index_of(p))
            .filter(|i| *i < completions)
            .collect();
        cx.succeeded_idx = cx.prev_succeeded_idx.with(new_idx);
        cx.succeeded = cx.succeeded_idx.total() as i32;
        if let Some(per_index) = cx.spec.backoff_limit_per_index {
            let prev =
                Intervals::parse(status.failed_indexes.as_deref().unwrap_or(""), completions);
            let newly: Vec<u32> = cx
                .pods
                .iter()
                .filter(|p| st::has_finalizer(p) && st::is_failed(p, only_failed))
                .filter_map(|p| {
                    let i = indexed::index_of(p).filter(|i| *i < completions)?;
                    let verdict = judge(policy.as_ref(), p);
                    let failures = indexed::count_annotation(p, indexed::INDEX_FAILURE_COUNT)
                        + u32::from(verdict.counts());
                    (verdict == Verdict::FailIndex || i64::from(failures) > i64::from(per_index))
                        .then_some(i)
                })
                .collect();
            let failed_idx = prev.with(newly);
            if cx.finished.is_none() {
                let total = failed_idx.total();
                if cx
                    .spec
                    .max_failed_indexes
                    .is_some_and(|m| i64::from(total) > i64::from(m))
                {
                    cx.finished = failure(
                        st::REASON_MAX_FAILED_INDEXES,
                        "Job has exceeded the specified maximal number of failed indexes",
                    );
                } else if total > 0 && total + cx.succeeded_idx.total() >= completions {
                    cx.finished = failure(st::REASON_FAILED_INDEXES, "Job has failed indexes");
                }
            }
            cx.failed_idx = Some(failed_idx);
        }
        if cx.finished.is_none() {
            if let Some(msg) = super::success_policy::matched(
                cx.spec.success_policy.as_ref(),
                completions,
                &cx.succeeded_idx,
            ) {
                cx.finished = Some(condition(
                    st::SUCCESS_CRITERIA_MET,
                    "True",
                    st::REASON_SUCCESS_POLICY,
                    &msg,
                    now,
                ));
            }
        }
    }

    /// `restartPolicy: OnFailure`: container restarts stand for failures.
    fn past_backoff_limit_on_failure(&self, cx: &SyncCtx) -> bool {
        let on_failure = cx
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        if !on_failure {
            return false;
        }
        let restarts: i32 = cx.pods.iter().map(|p| st::restarts(p)).sum();
        let limit = cx.spec.backoff_limit.unwrap_or(6);
        if limit == 0 {
            restarts > 0
        } else {
            restarts >= limit
        }
    }

    /// Suspended condition and events; whether the condition changed.
    fn set_suspended(&self, cx: &mut SyncCtx) -> bool {
        let now = cx.now;
        let suspended = cx.suspended();
        let new = if suspended {
            condition(st::SUSPENDED, "True", "JobSuspended", "Job suspended", now)
        } else {
            condition(st::SUSPENDED, "False", "JobResumed", "Job resumed", now)
        };
        let conds = cx.status().conditions.get_or_insert_with(Vec::new);
        if !st::ensure(conds, new) {
            return false;
        }
        if suspended {
            self.recorder.event(
                object_ref(&cx.job),
                NORMAL,
                "Suspended",
                "Job suspended".into(),
            );
        } else {
            self.recorder
                .event(object_ref(&cx.job), NORMAL, "Resumed", "Job resumed".into());
            // activeDeadlineSeconds counts continuous activity: it restarts on resume.
            cx.status().start_time = Some(Time(now));
        }
        true
    }

    /// Deletes every active pod of a finished Job (finalizers stay until counted).
    async fn delete_active(&self, cx: &SyncCtx, err: &mut Option<ControllerError>) -> (i32, i32) {
        let control = self.pod_control(&cx.key);
        let (mut deleted, mut ready) = (0, 0);
        for p in &cx.active {
            match control.delete(&cx.job, p).await {
                Ok(()) => {
                    deleted += 1;
                    ready += i32::from(st::is_ready(p));
                }
                Err(e) => *err = Some(e),
            }
        }
        (deleted, ready)
    }

    /// Removes the finalizer of, then deletes, pods the Job no longer wants (they are not
    /// counted as failures).
    async fn delete_pods(
        &self,
        cx: &mut SyncCtx,
        pods: &[Arc<Pod>],
    ) -> Result<i32, ControllerError> {
        let control = self.pod_control(&cx.key);
        let mut removed = 0;
        let mut first_err = None;
        for p in pods {
            let r = async {
                control.remove_finalizer(p).await?;
                control.delete(&cx.job, p).await
            }
            .await;
            match r {
                Ok(()) => {
                    removed += 1;
                    cx.ready -= i32::from(st::is_ready(p));
                }
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        cx.terminating += removed;
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Creates or deletes pods towards what the spec asks for; the number of active pods
    /// after it.
    async fn manage(&self, cx: &mut SyncCtx) -> Result<i32, (i32, ControllerError)> {
        let mut active = cx.active.len() as i32;
        if cx.suspended() {
            let all = removal_order(cx, active as usize);
            return match self.delete_pods(cx, &all).await {
                Ok(n) => Ok(active - n),
                Err(e) => Err((active, e)),
            };
        }
        let parallelism = cx.spec.parallelism.unwrap_or(1);
        let want = match cx.spec.completions {
            None if cx.succeeded > 0 => active,
            None => parallelism,
            Some(c) => (c - cx.succeeded).clamp(0, parallelism.max(0)),
        };
        let rm_at_least = (active - want).max(0) as usize;
        let mut to_delete = removal_order(cx, rm_at_least);
        to_delete.truncate(MAX_CREATE_DELETE);
        if !to_delete.is_empty() {
            return match self.delete_pods(cx, &to_delete).await {
                Ok(n) => Ok(active - n),
                Err(e) => Err((active, e)),
            };
        }
        let terminating = if cx.only_replace_failed() {
            cx.terminating
        } else {
            0
        };
        let diff = want - terminating - active;
        if diff <= 0 {
            return Ok(active);
        }
        let per_index = cx.spec.backoff_limit_per_index.is_some();
        if !per_index {
            let remaining = self.backoff.remaining(
                cx.record.failures_after_last_success,
                cx.record.last_failure,
                cx.now,
            );
            if !remaining.is_zero() {
                cx.requeue_after(remaining);
                return Ok(active);
            }
        }
        let mut diff = (diff as usize).min(MAX_CREATE_DELETE);
        let mut indexes: Vec<(u32, Option<IndexCounts>)> = Vec::new();
        if cx.indexed {
            let mut busy: BTreeSet<u32> = cx
                .active
                .iter()
                .filter_map(|p| indexed::index_of(p))
                .collect();
            if cx.only_replace_failed() {
                busy.extend(
                    cx.pods
                        .iter()
                        .filter(|p| st::is_terminating(p))
                        .filter_map(|p| indexed::index_of(p)),
                );
            }
            let pending = indexed::first_pending(
                diff,
                cx.completions(),
                &cx.succeeded_idx,
                cx.failed_idx.as_ref(),
                &busy,
            );
            if per_index {
                let (ready_now, wait) = self.per_index_backoff(cx, &pending);
                if ready_now.is_empty() {
                    if let Some(w) = wait {
                        cx.requeue_after(w);
                    }
                    return Ok(active);
                }
                indexes = ready_now;
            } else {
                indexes = pending.into_iter().map(|i| (i, None)).collect();
            }
            diff = indexes.len();
        }
        // Slow start: batches of 1, 2, 4, ... stop at the first failure, so a Job that
        // cannot create pods (quota, admission) does not flood the API and its events.
        let control = self.pod_control(&cx.key);
        let mut batch = 1usize;
        let mut created = 0usize;
        let mut indexes = indexes.into_iter();
        while created < diff {
            let n = batch.min(diff - created);
            let mut results = Vec::with_capacity(n);
            let mut futs = Vec::with_capacity(n);
            for _ in 0..n {
                let index = if cx.indexed { indexes.next() } else { None };
                futs.push(control.create(&cx.job, index));
            }
            for r in futures::future::join_all(futs).await {
                results.push(r);
            }
            let ok = results.iter().filter(|r| r.is_ok()).count();
            created += n;
            active += ok as i32;
            if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                return Err((active, e));
            }
            batch *= 2;
        }
        Ok(active)
    }

    /// Of the pending indexes, those whose per-index backoff has passed (with the failure
    /// counts their pod inherits), and otherwise the shortest wait.
    fn per_index_backoff(
        &self,
        cx: &SyncCtx,
        pending: &[u32],
    ) -> (Vec<(u32, Option<IndexCounts>)>, Option<Duration>) {
        let policy = cx.spec.pod_failure_policy.clone();
        let only_failed = cx.only_replace_failed();
        // The most recent failed pod of each index.
        let mut last: BTreeMap<u32, &Pod> = BTreeMap::new();
        for p in cx.pods.iter().filter(|p| st::is_failed(p, only_failed)) {
            if let Some(i) = indexed::index_of(p) {
                let newer = last.get(&i).is_none_or(|q| finished_at(p) > finished_at(q));
                if newer {
                    last.insert(i, p);
                }
            }
        }
        let mut now_ok = Vec::new();
        let mut wait: Option<Duration> = None;
        for &i in pending {
            let Some(p) = last.get(&i) else {
                now_ok.push((i, Some(IndexCounts::default())));
                continue;
            };
            let verdict = judge(policy.as_ref(), p);
            let counts = IndexCounts {
                failures: indexed::count_annotation(p, indexed::INDEX_FAILURE_COUNT)
                    + u32::from(verdict.counts()),
                ignored: indexed::count_annotation(p, indexed::INDEX_IGNORED_FAILURE_COUNT)
                    + u32::from(!verdict.counts()),
            };
            let remaining = self.backoff.remaining(
                counts.failures + counts.ignored,
                Some(finished_at(p)),
                cx.now,
            );
            if remaining.is_zero() {
                now_ok.push((i, Some(counts)));
            } else {
                wait = Some(wait.map_or(remaining, |w| w.min(remaining)));
            }
        }
        (now_ok, wait)
    }

    /// Writes newly finished pods to `uncountedTerminatedPods`, removes their finalizers,
    /// moves them into the counters, and finishes the Job when it is done.
    async fn track(&self, cx: &mut SyncCtx, mut needs_flush: bool) -> Result<(), ControllerError> {
        let only_failed = cx.only_replace_failed();
        let policy = cx.spec.pod_failure_policy.clone();
        if cx.indexed {
            cx.pods.sort_by_key(|p| indexed::index_of(p));
        }
        let mut with_finalizer: HashSet<String> = cx
            .pods
            .iter()
            .filter(|p| st::has_finalizer(p) && !cx.expected_rm.contains(&uid(p)))
            .map(|p| uid(p))
            .collect();
        if clean_uncounted(cx.status(), &with_finalizer) {
            needs_flush = true;
        }
        let mut to_unfinalize: Vec<Arc<Pod>> = Vec::new();
        let mut new_idx: Vec<u32> = Vec::new();
        let mut add_succeeded = Vec::new();
        let mut add_failed = Vec::new();
        let mut reached_max = false;
        let job_ending = cx.finished.is_some() || cx.job.metadata.deletion_timestamp.is_some();
        let failing = cx
            .finished
            .as_ref()
            .is_some_and(|c| c.type_ != st::SUCCESS_CRITERIA_MET);
        for p in &cx.pods {
            let pu = uid(p);
            if !st::has_finalizer(p) || cx.expected_rm.contains(&pu) {
                continue;
            }
            let failed = st::is_failed(p, only_failed);
            if !(job_ending || st::phase(p) == "Succeeded" || failed) {
                continue;
            }
            to_unfinalize.push(p.clone());
            if st::phase(p) == "Succeeded" && !cx.uncounted_failed.contains(&pu) {
                if cx.indexed {
                    if let Some(i) = indexed::index_of(p) {
                        if i < cx.completions() && !cx.prev_succeeded_idx.has(i) {
                            new_idx.push(i);
                            needs_flush = true;
                        }
                    }
                } else if !cx.uncounted_succeeded.contains(&pu) {
                    add_succeeded.push(pu);
                    needs_flush = true;
                }
            } else if failed || failing {
                // Once the Job failed, every pod not succeeded counts as failed.
                let valid_index =
                    !cx.indexed || indexed::index_of(p).is_some_and(|i| i < cx.completions());
                if !cx.uncounted_failed.contains(&pu)
                    && valid_index
                    && judge(policy.as_ref(), p).counts()
                {
                    add_failed.push(pu);
                    needs_flush = true;
                }
            }
            if new_idx.len()
                + add_succeeded.len()
                + add_failed.len()
                + cx.uncounted_succeeded.len()
                + cx.uncounted_failed.len()
                >= MAX_UNCOUNTED
            {
                reached_max = true;
                break;
            }
        }
        {
            let u = cx
                .status()
                .uncounted_terminated_pods
                .get_or_insert_with(UncountedTerminatedPods::default);
            if !add_succeeded.is_empty() {
                u.succeeded
                    .get_or_insert_with(Vec::new)
                    .extend(add_succeeded);
            }
            if !add_failed.is_empty() {
                u.failed.get_or_insert_with(Vec::new).extend(add_failed);
            }
        }
        if cx.indexed {
            cx.succeeded_idx = cx.succeeded_idx.with(new_idx);
            let completed = cx.succeeded_idx.to_string();
            let total = cx.succeeded_idx.total() as i32;
            let failed_str = cx.failed_idx.as_ref().map(|f| f.to_string());
            let s = cx.status();
            if s.completed_indexes.as_deref().unwrap_or("") != completed {
                needs_flush = true;
            }
            s.succeeded = nonzero(total);
            s.completed_indexes = (!completed.is_empty()).then_some(completed);
            if s.failed_indexes != failed_str {
                s.failed_indexes = failed_str;
                needs_flush = true;
            }
        }
        let now = cx.now;
        if let Some(f) = cx.finished.clone() {
            let conds = cx.status().conditions.get_or_insert_with(Vec::new);
            if f.type_ == st::FAILURE_TARGET {
                conds.push(f.clone());
                needs_flush = true;
                cx.finished = Some(condition(
                    st::FAILED,
                    "True",
                    f.reason.as_deref().unwrap_or_default(),
                    f.message.as_deref().unwrap_or_default(),
                    now,
                ));
            } else if f.type_ == st::SUCCESS_CRITERIA_MET {
                if st::find(conds, st::SUCCESS_CRITERIA_MET).is_none_or(|c| c.status != "True") {
                    st::ensure(conds, f.clone());
                    needs_flush = true;
                }
                cx.finished = Some(condition(
                    st::COMPLETE,
                    "True",
                    f.reason.as_deref().unwrap_or_default(),
                    f.message.as_deref().unwrap_or_default(),
                    now,
                ));
            }
        }
        let api: Api<Job> = Api::namespaced(
            self.client.clone(),
            cx.job.metadata.namespace.as_deref().unwrap_or_default(),
        );
        // 1. Write the uids (and interim conditions) before any finalizer goes.
        if needs_flush {
            cx.job = self.write_status(&api, &cx.job).await?;
            self.records.set(&cx.key, cx.record);
            needs_flush = false;
        }
        // 2. Remove the finalizers.
        let control = self.pod_control(&cx.key);
        let mut rm_err = None;
        for p in &to_unfinalize {
            match control.remove_finalizer(p).await {
                Ok(()) => {
                    with_finalizer.remove(&uid(p));
                }
                Err(e) => rm_err = rm_err.or(Some(e)),
            }
        }
        // 3. Move the pods whose finalizer is gone into the counters.
        if clean_uncounted(cx.status(), &with_finalizer) {
            needs_flush = true;
        }
        if let Some(e) = rm_err {
            if needs_flush {
                self.write_status(&api, &cx.job).await?;
            }
            return Err(e);
        }
        let finished = !reached_max && self.enact_finished(cx);
        if finished || needs_flush {
            cx.job = self.write_status(&api, &cx.job).await?;
            if finished {
                self.record_finished(cx);
            }
        }
        Ok(())
    }

    /// Adds the terminal condition once nothing is left uncounted or terminating.
    fn enact_finished(&self, cx: &mut SyncCtx) -> bool {
        let Some(f) = cx.finished.clone() else {
            return false;
        };
        let uncounted = cx
            .job
            .status
            .as_ref()
            .and_then(|s| s.uncounted_terminated_pods.as_ref())
            .map_or(0, |u| {
                u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
            });
        if uncounted > 0 || cx.terminating > 0 {
            return false;
        }
        let now = cx.now;
        let s = cx.status();
        st::ensure(s.conditions.get_or_insert_with(Vec::new), f.clone());
        if f.type_ == st::COMPLETE {
            s.completion_time = Some(Time(now));
        }
        true
    }

    fn record_finished(&self, cx: &SyncCtx) {
        let Some(f) = &cx.finished else { return };
        let job = &cx.job;
        if f.type_ == st::COMPLETE {
            let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
            if cx.spec.completions.is_some_and(|c| succeeded > c) {
                self.recorder.event(
                    object_ref(job),
                    WARNING,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached".into(),
                );
            }
            self.recorder
                .event(object_ref(job), NORMAL, "Completed", "Job completed".into());
        } else {
            let reason: &'static str = match f.reason.as_deref().unwrap_or_default() {
                st::REASON_BACKOFF_LIMIT => st::REASON_BACKOFF_LIMIT,
                st::REASON_DEADLINE => st::REASON_DEADLINE,
                st::REASON_POD_FAILURE_POLICY => st::REASON_POD_FAILURE_POLICY,
                st::REASON_MAX_FAILED_INDEXES => st::REASON_MAX_FAILED_INDEXES,
                st::REASON_FAILED_INDEXES => st::REASON_FAILED_INDEXES,
                _ => "Failed",
            };
            self.recorder.event(
                object_ref(job),
                WARNING,
                reason,
                f.message.clone().unwrap_or_default(),
            );
        }
    }

    async fn write_status(&self, api: &Api<Job>, job: &Job) -> Result<Job, ControllerError> {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let written = api
            .replace_status(name, &PostParams::default(), job)
            .await?;
        let key = format!(
            "{}/{name}",
            job.metadata.namespace.as_deref().unwrap_or_default()
        );
        self.wrote(&key, &written);
        Ok(written)
    }
}

/// Moves uncounted pods whose finalizer is gone into `succeeded` / `failed`; whether
/// anything moved.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let u = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let mut moved = (0, 0);
    if let Some(s) = u.succeeded.as_mut() {
        let before = s.len();
        s.retain(|x| with_finalizer.contains(x));
        moved.0 = before - s.len();
    }
    if let Some(f) = u.failed.as_mut() {
        let before = f.len();
        f.retain(|x| with_finalizer.contains(x));
        moved.1 = before - f.len();
    }
    if moved == (0, 0) {
        return false;
    }
    status.succeeded = nonzero(status.succeeded.unwrap_or(0) + moved.0 as i32);
    status.failed = nonzero(status.failed.unwrap_or(0) + moved.1 as i32);
    true
}

/// Active pods to remove, at least `at_least`: for Indexed Jobs first those with no valid
/// index or a duplicate one, then in [`st::removal_rank`] order.
fn removal_order(cx: &SyncCtx, at_least: usize) -> Vec<Arc<Pod>> {
    let mut rm: Vec<Arc<Pod>> = Vec::new();
    let mut left: Vec<Arc<Pod>> = Vec::new();
    if cx.indexed {
        let mut by_index: BTreeMap<u32, Vec<Arc<Pod>>> = BTreeMap::new();
        for p in &cx.active {
            match indexed::index_of(p).filter(|i| *i < cx.completions()) {
                Some(i) => by_index.entry(i).or_default().push(p.clone()),
                None => rm.push(p.clone()),
            }
        }
        for (_, mut group) in by_index {
            // Keep the most advanced pod of an index; the others are duplicates.
            group.sort_by_key(|p| st::removal_rank(p));
            let keep = group.pop();
            rm.extend(group);
            left.extend(keep);
        }
    } else {
        left = cx.active.clone();
    }
    if rm.len() < at_least {
        left.sort_by_key(|p| st::removal_rank(p));
        let n = at_least - rm.len();
        rm.extend(left.into_iter().take(n));
    }
    rm
}
