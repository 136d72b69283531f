//! The CronJob controller (upstream's `cronjob-controller`, v2): creates a Job from
//! `jobTemplate` at each scheduled time (`<cronjob>-<minutes since epoch>`), honouring
//! `concurrencyPolicy`, `startingDeadlineSeconds` and `suspend`; keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`; deletes finished Jobs past the history
//! limits; and sleeps until the next scheduled time (no polling).
//!
//! Invariant: one scheduled time makes at most one Job: its name is derived from the time,
//! and a time already recorded in `lastScheduleTime` or held by an active Job is not
//! started again.

pub mod schedule;
#[cfg(test)]
mod tests;

use super::clock::{until, Clock};
use super::job::status::{is_true, COMPLETE, FAILED};
use super::staleness::Staleness;
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use crate::informers::Change;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use schedule::Schedule;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 2;
pub const NAME: &str = "cronjob-controller";
/// The annotation a Job gets with the time it was scheduled for (RFC 3339, in the
/// CronJob's time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Past this many missed times the controller warns (and still starts the latest).
const TOO_MANY_MISSED: i64 = 100;
/// Wake a little after the scheduled time, so it is due when looked at (upstream's
/// `nextScheduleDelta`).
const NEXT_DELTA: Duration = Duration::from_millis(100);

pub struct CronJobController {
    ctx: Context,
    queue: WorkQueue<String>,
    clock: Clock,
}

impl CronJobController {
    pub fn new(ctx: Context) -> CronJobController {
        CronJobController {
            ctx,
            queue: WorkQueue::new(),
            clock: Clock::system(),
        }
    }

    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let cronjobs = self.ctx.informers.typed::<CronJob>();
        let jobs = self.ctx.informers.typed::<Job>();
        let client = self.ctx.client_for(NAME);
        let recorder = Recorder::spawn_for(client.clone(), NAME);
        cronjobs.synced().await?;
        jobs.synced().await?;
        let reconciler = Arc::new(CronJobReconciler {
            client,
            cronjobs: cronjobs.store(),
            jobs: jobs.store(),
            recorder,
            clock: self.clock,
            written: Staleness::default(),
        });
        let mut cj_changes = cronjobs.subscribe();
        let mut job_changes = jobs.subscribe();
        let q = self.queue.clone();
        let feed_cronjobs = async move {
            while let Some(change) = cj_changes.next().await {
                if let Change::Applied(cj) = &change {
                    if let (Some(ns), Some(n)) = (&cj.metadata.namespace, &cj.metadata.name) {
                        q.add(format!("{ns}/{n}"));
                    }
                }
            }
        };
        let q = self.queue.clone();
        let feed_jobs = async move {
            while let Some(change) = job_changes.next().await {
                let job = match &change {
                    Change::Applied(j) | Change::Deleted(j) => j,
                };
                let owner = job
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.controller == Some(true) && o.kind == "CronJob");
                if let (Some(o), Some(ns)) = (owner, &job.metadata.namespace) {
                    q.add(format!("{ns}/{}", o.name));
                }
            }
        };
        tokio::select! {
            _ = feed_cronjobs => Err(ControllerError::Invalid("cronjob: the cronjob change feed ended".into())),
            _ = feed_jobs => Err(ControllerError::Invalid("cronjob: the job change feed ended".into())),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

struct CronJobReconciler {
    client: kube::Client,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    recorder: Recorder,
    clock: Clock,
    /// Our own writes (status, created and deleted Jobs) the caches have yet to show: a
    /// sync before they do could take a just-created Job for none and start another.
    written: Staleness,
}

/// The Job name for a scheduled time: minutes since the epoch.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// "Complete" or "Failed" when the Job finished.
fn finished_as(job: &Job) -> Option<&'static str> {
    if is_true(job, COMPLETE).is_some() {
        Some(COMPLETE)
    } else if is_true(job, FAILED).is_some() {
        Some(FAILED)
    } else {
        None
    }
}

impl Reconciler for CronJobReconciler {
    type Key = String;
    const NAME: &'static str = "cronjob";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let Some(cj) = self.cronjobs.get(&ObjectRef::new(name).within(ns)) else {
            self.written.forget(key);
            return Ok(Action::Done);
        };
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let mut cj = (*cj).clone();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let children: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(ns))
            .filter(|j| {
                j.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && o.uid == uid)
            })
            .collect();
        // Syncing only on caches that show our own writes (status, created and deleted
        // Jobs) is what upstream's fresh read of the CronJob is for, without the read.
        let cached = std::iter::once(&cj.metadata).chain(children.iter().map(|j| &j.metadata));
        if self.written.is_stale(key, cached) {
            // The informers deliver what we wrote soon, and that queues the key again.
            return Ok(Action::Done);
        }
        let before = cj.status.clone().unwrap_or_default();
        let action = self.sync(key, &mut cj, &children).await;
        let after = cj.status.clone().unwrap_or_default();
        if after != before {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            let wrote = api
                .replace_status(name, &PostParams::default(), &cj)
                .await?;
            self.written.written(key, &wrote.metadata);
        }
        action
    }
}

impl CronJobReconciler {
    async fn sync(
        &self,
        key: &str,
        cj: &mut CronJob,
        children: &[Arc<Job>],
    ) -> Result<Action, ControllerError> {
        let now = self.clock.now();
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let cj_name = cj.metadata.name.clone().unwrap_or_default();
        let spec = cj.spec.clone().unwrap_or_default();
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let status = cj.status.get_or_insert_with(CronJobStatus::default);
        let mut active = status.active.take().unwrap_or_default();

        for j in children {
            let juid = j.metadata.uid.as_deref();
            let listed = active.iter().any(|r| r.uid.as_deref() == juid);
            let finished = finished_as(j);
            let jname = j.metadata.name.clone().unwrap_or_default();
            match (listed, finished) {
                (false, None) => {
                    self.recorder.event(
                        object_ref(&*cj),
                        WARNING,
                        "UnexpectedJob",
                        format!("Saw a job that the controller did not create or forgot: {jname}"),
                    );
                    // Unlike upstream, track it: when the status write after a create
                    // failed (a conflict), this is our own job, and Forbid and Replace
                    // must see it as running.
                    active.push(object_ref(&**j));
                }
                (true, Some(cond)) => {
                    active.retain(|r| r.uid.as_deref() != juid);
                    self.recorder.event(
                        object_ref(&*cj),
                        NORMAL,
                        "SawCompletedJob",
                        format!("Saw completed job: {jname}, condition: {cond}"),
                    );
                }
                _ => {}
            }
            if finished == Some(COMPLETE) {
                let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = cj.status.get_or_insert_with(CronJobStatus::default);
                if let Some(done) = done {
                    if status
                        .last_successful_time
                        .as_ref()
                        .is_none_or(|t| t.0 < done.0)
                    {
                        status.last_successful_time = Some(done);
                    }
                }
            }
        }
        // Active Jobs that left the cache: gone for real, or only not seen yet?
        let mut still = Vec::with_capacity(active.len());
        for r in active {
            let in_cache = children.iter().any(|j| j.metadata.uid == r.uid);
            let name = r.name.clone().unwrap_or_default();
            let exists = in_cache
                || jobs_api
                    .get_opt(&name)
                    .await?
                    .is_some_and(|j| j.metadata.uid == r.uid);
            if exists {
                still.push(r);
            } else {
                self.recorder.event(
                    object_ref(&*cj),
                    NORMAL,
                    "MissingJob",
                    format!("Active job went missing: {name}"),
                );
            }
        }
        let mut active = still;
        self.clean_history(key, cj, children, &jobs_api, &mut active)
            .await;
        let set_active = |cj: &mut CronJob, active: Vec<ObjectReference>| {
            cj.status.get_or_insert_with(CronJobStatus::default).active =
                (!active.is_empty()).then_some(active);
        };

        if spec.suspend == Some(true) {
            set_active(cj, active);
            return Ok(Action::Done);
        }
        let sched = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            Ok(s) => s,
            Err(schedule::ScheduleError::UnknownTimeZone(tz)) => {
                self.recorder.event(
                    object_ref(&*cj),
                    WARNING,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {tz:?}: unknown time zone {tz}"),
                );
                set_active(cj, active);
                return Ok(Action::Done);
            }
            Err(schedule::ScheduleError::Unparseable(e)) => {
                self.recorder.event(
                    object_ref(&*cj),
                    WARNING,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                set_active(cj, active);
                return Ok(Action::Done);
            }
        };
        let next = |now: Timestamp| {
            sched.next_after(now).map_or(Action::Done, |t| {
                Action::RequeueAfter(until(now, t) + NEXT_DELTA)
            })
        };
        let last_schedule = cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.clone());
        let mut earliest = last_schedule
            .as_ref()
            .or(cj.metadata.creation_timestamp.as_ref())
            .map_or(now, |t| t.0);
        if let Some(sds) = spec.starting_deadline_seconds {
            let deadline = now - jiff::SignedDuration::from_secs(sds);
            if deadline > earliest {
                earliest = deadline;
            }
        }
        let Some(due) = sched.due(earliest, now) else {
            set_active(cj, active);
            return Ok(next(now));
        };
        if due.missed > TOO_MANY_MISSED {
            self.recorder.event(
                object_ref(&*cj),
                WARNING,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
            );
        }
        let scheduled = due.time;
        if let Some(sds) = spec.starting_deadline_seconds {
            if scheduled + jiff::SignedDuration::from_secs(sds) < now {
                let when = scheduled
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .strftime("%a, %d %b %Y %H:%M:%S %z");
                self.recorder.event(
                    object_ref(&*cj),
                    WARNING,
                    "MissSchedule",
                    format!("Missed scheduled time to start a job: {when}"),
                );
                set_active(cj, active);
                return Ok(next(now));
            }
        }
        let name = job_name(&cj_name, scheduled);
        let running = active
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()));
        if running || last_schedule.as_ref().is_some_and(|t| t.0 == scheduled) {
            set_active(cj, active);
            if running {
                // Made by an earlier sync whose status write was lost (it came back as an
                // UnexpectedJob above): record its time now, as the create would have.
                cj.status
                    .get_or_insert_with(CronJobStatus::default)
                    .last_schedule_time = Some(Time(scheduled));
            }
            return Ok(next(now));
        }
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                self.recorder.event(
                    object_ref(&*cj),
                    NORMAL,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                );
                set_active(cj, active);
                return Ok(next(now));
            }
            Some("Replace") => {
                for r in std::mem::take(&mut active) {
                    let jname = r.name.clone().unwrap_or_default();
                    match jobs_api.delete(&jname, &DeleteParams::background()).await {
                        Ok(_) => {
                            self.written.deleted(key, &jname);
                            self.recorder.event(
                                object_ref(&*cj),
                                NORMAL,
                                "SuccessfulDelete",
                                format!("Deleted job {jname}"),
                            )
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => {
                            self.recorder.event(
                                object_ref(&*cj),
                                WARNING,
                                "FailedDelete",
                                format!("Deleted job: {e}"),
                            );
                            active.push(r);
                            set_active(cj, active);
                            return Err(e.into());
                        }
                    }
                }
            }
            _ => {}
        }
        let job = job_from_template(cj, &name, scheduled, sched.time_zone());
        let created = match jobs_api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.written.written(key, &j.metadata);
                self.recorder.event(
                    object_ref(&*cj),
                    NORMAL,
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                );
                j
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Made by an earlier sync whose status write was lost: adopt it if ours.
                let existing = jobs_api.get(&name).await?;
                let ours = existing
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| {
                        o.controller == Some(true)
                            && o.uid == cj.metadata.uid.clone().unwrap_or_default()
                    });
                if !ours {
                    set_active(cj, active);
                    return Ok(next(now));
                }
                existing
            }
            Err(e) => {
                self.recorder.event(
                    object_ref(&*cj),
                    WARNING,
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                );
                set_active(cj, active);
                return Err(e.into());
            }
        };
        active.push(job_ref(&created));
        set_active(cj, active);
        cj.status
            .get_or_insert_with(CronJobStatus::default)
            .last_schedule_time = Some(Time(scheduled));
        Ok(next(now))
    }

    /// Deletes the oldest finished Jobs past `successfulJobsHistoryLimit` /
    /// `failedJobsHistoryLimit`.
    async fn clean_history(
        &self,
        key: &str,
        cj: &CronJob,
        children: &[Arc<Job>],
        api: &Api<Job>,
        active: &mut Vec<ObjectReference>,
    ) {
        let spec = cj.spec.clone().unwrap_or_default();
        for (kind, limit) in [
            (COMPLETE, spec.successful_jobs_history_limit),
            (FAILED, spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let mut finished: Vec<&Arc<Job>> = children
                .iter()
                .filter(|j| finished_as(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
                .collect();
            let excess = finished.len().saturating_sub(limit.max(0) as usize);
            if excess == 0 {
                continue;
            }
            // Oldest first: by start time (never started last), then name.
            finished.sort_by_key(|j| {
                let start = j
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0);
                (start.is_none(), start, j.metadata.name.clone())
            });
            for j in finished.into_iter().take(excess) {
                let jname = j.metadata.name.clone().unwrap_or_default();
                match api.delete(&jname, &DeleteParams::background()).await {
                    Ok(_) => {
                        self.written.deleted(key, &jname);
                        active.retain(|r| r.uid != j.metadata.uid);
                        self.recorder.event(
                            object_ref(cj),
                            NORMAL,
                            "SuccessfulDelete",
                            format!("Deleted job {jname}"),
                        );
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(job = %jname, error = %e, "deleting a finished job of a cronjob failed");
                    }
                }
            }
        }
    }
}

/// The Job a CronJob makes for `scheduled`: the template's labels, annotations and spec,
/// the scheduled-time annotation, and the CronJob as controller.
pub fn job_from_template(
    cj: &CronJob,
    name: &str,
    scheduled: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.metadata.name.clone().unwrap_or_default(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}
