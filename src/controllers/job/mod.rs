//! The Job controller (upstream's `job-controller`): runs a Job's pods to `completions`
//! successes with at most `parallelism` at once (NonIndexed, or Indexed with one success per
//! index), replaces failed pods after an exponential backoff until `backoffLimit` (or
//! `backoffLimitPerIndex`), applies `podFailurePolicy`, `successPolicy`,
//! `activeDeadlineSeconds` and `suspend`, and reports all of it in the Job's status,
//! conditions and events as upstream does.
//!
//! Invariant: every pod is counted exactly once, across restarts. Pods carry the
//! `batch.kubernetes.io/job-tracking` finalizer; a finished pod's uid is first written to
//! `status.uncountedTerminatedPods`, then its finalizer removed, then it moves into the
//! counters. A pod without the finalizer is counted already (or listed as uncounted).
//! Terminal conditions (Complete, Failed) follow the interim ones (SuccessCriteriaMet,
//! FailureTarget) only once no pod is left running or uncounted.

pub mod backoff;
mod expectations;
pub mod failure_policy;
pub mod indexed;
mod pods;
pub mod status;
pub mod success_policy;
mod sync;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

use super::clock::Clock;
use super::staleness::Staleness;
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::events::Recorder;
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 4;
/// The upstream service account this controller acts as.
pub const NAME: &str = "job-controller";

pub struct JobController {
    ctx: Context,
    queue: WorkQueue<String>,
    clock: Clock,
    backoff: backoff::Backoff,
}

impl JobController {
    pub fn new(ctx: Context) -> JobController {
        JobController {
            ctx,
            queue: WorkQueue::new(),
            clock: Clock::system(),
            backoff: backoff::Backoff::default(),
        }
    }

    /// Reads time from `clock` (tests).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let jobs = self.ctx.informers.typed::<Job>();
        let pods = self.ctx.informers.typed::<Pod>();
        let client = self.ctx.client_for(NAME);
        let recorder = Recorder::spawn_for(client.clone(), NAME);
        jobs.synced().await?;
        pods.synced().await?;
        let reconciler = Arc::new(JobReconciler {
            client,
            jobs: jobs.store(),
            pods: pods.store(),
            recorder,
            clock: self.clock,
            backoff: self.backoff,
            records: backoff::Store::default(),
            expectations: expectations::Expectations::default(),
            written: Default::default(),
        });
        let mut job_changes = jobs.subscribe();
        let mut pod_changes = pods.subscribe();
        let q = self.queue.clone();
        let feed_jobs = async move {
            while let Some(change) = job_changes.next().await {
                let job = match &change {
                    Change::Applied(j) | Change::Deleted(j) => j,
                };
                if let Some(key) = key_of(&job.metadata) {
                    q.add(key);
                }
            }
        };
        let q = self.queue.clone();
        let job_store = jobs.store();
        let feed_pods = async move {
            while let Some(change) = pod_changes.next().await {
                let (pod, deleted) = match &change {
                    Change::Applied(p) => (p, false),
                    Change::Deleted(p) => (p, true),
                };
                if let Some(key) = owning_job(pod) {
                    q.add(key);
                } else if !deleted
                    && crate::controllers::controller_utils::controller_ref(&pod.metadata).is_none()
                {
                    // An orphan: its tracking finalizer goes (upstream's orphan pod sync),
                    // and the Jobs that select it may adopt it (adding the finalizer again).
                    if status::has_finalizer(pod) {
                        if let Some(key) = key_of(&pod.metadata) {
                            q.add(format!("{ORPHAN_POD}{key}"));
                        }
                    }
                    for key in selecting_jobs(&job_store, pod) {
                        q.add(key);
                    }
                }
            }
        };
        tokio::select! {
            _ = feed_jobs => Err(ControllerError::Invalid("job: the job change feed ended".into())),
            _ = feed_pods => Err(ControllerError::Invalid("job: the pod change feed ended".into())),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

/// The queue key prefix of an orphaned pod (`orphan-pod:ns/name`) whose tracking finalizer
/// is to go; Job keys are `ns/name`, and a namespace has no `:`.
const ORPHAN_POD: &str = "orphan-pod:";

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    Some(format!(
        "{}/{}",
        meta.namespace.as_deref()?,
        meta.name.as_deref()?
    ))
}

/// `ns/name` of the Jobs in the pod's namespace whose selector matches its labels.
fn selecting_jobs(jobs: &Store<Job>, pod: &Pod) -> Vec<String> {
    use crate::controllers::controller_utils::Selector;
    jobs.state()
        .iter()
        .filter(|j| j.metadata.namespace == pod.metadata.namespace)
        .filter(|j| {
            let sel = Selector::new(j.spec.as_ref().and_then(|s| s.selector.as_ref()));
            !sel.is_everything() && sel.matches(pod.metadata.labels.as_ref())
        })
        .filter_map(|j| key_of(&j.metadata))
        .collect()
}

/// `ns/name` of the Job controlling a pod.
fn owning_job(pod: &Pod) -> Option<String> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    if owner.kind != "Job" || !owner.api_version.starts_with("batch/") {
        return None;
    }
    Some(format!(
        "{}/{}",
        pod.metadata.namespace.as_deref()?,
        owner.name
    ))
}

struct JobReconciler {
    client: kube::Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    recorder: Recorder,
    clock: Clock,
    backoff: backoff::Backoff,
    records: backoff::Store,
    expectations: expectations::Expectations,
    /// The statuses this controller wrote and its cache has not shown yet. A cached Job
    /// older than its last status write lacks pods already moved to
    /// `uncountedTerminatedPods` whose finalizers are gone: syncing it would count them
    /// nowhere and replace them again.
    written: Staleness,
}

impl Reconciler for JobReconciler {
    type Key = String;
    const NAME: &'static str = "job";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        if let Some(pod_key) = key.strip_prefix(ORPHAN_POD) {
            self.release_orphan_pod(pod_key).await?;
            return Ok(Action::Done);
        }
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let job = self
            .jobs
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns));
        let Some(job) = job else {
            self.records.forget(key);
            self.expectations.forget(key);
            self.written.forget(key);
            self.release_orphans(key, None).await?;
            return Ok(Action::Done);
        };
        if job
            .spec
            .as_ref()
            .and_then(|s| s.managed_by.as_deref())
            .is_some_and(|m| m != "kubernetes.io/job-controller")
        {
            return Ok(Action::Done);
        }
        if status::is_finished(&job) {
            self.records.forget(key);
            self.release_orphans(key, job.metadata.uid.as_deref())
                .await?;
            return Ok(Action::Done);
        }
        if self.written.is_stale(key, [&job.metadata]) {
            // The informer delivers the written version soon and that queues the key again.
            return Ok(Action::Done);
        }
        self.sync(key, (*job).clone()).await
    }
}

impl JobReconciler {
    /// Notes a status just written for `key`.
    fn wrote(&self, key: &str, job: &Job) {
        self.written.written(key, &job.metadata);
    }

    /// The pods of namespace `ns` in the cache.
    fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect()
    }

    /// Removes the tracking finalizer from a pod no Job controls (upstream's
    /// handleSingleOrphanPod), once the cache still shows it orphaned.
    async fn release_orphan_pod(&self, pod_key: &str) -> Result<(), ControllerError> {
        let Some((ns, name)) = pod_key.split_once('/') else {
            return Ok(());
        };
        let pod = self
            .pods
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns));
        let Some(pod) = pod else {
            return Ok(());
        };
        if crate::controllers::controller_utils::controller_ref(&pod.metadata).is_some()
            || !status::has_finalizer(&pod)
        {
            return Ok(());
        }
        // Only from the orphan seen: a Job adopting it meanwhile keeps its finalizer.
        self.pod_control(pod_key)
            .remove_finalizer_if_unchanged(&pod)
            .await?;
        // No Job waits on this removal.
        self.expectations.forget(pod_key);
        Ok(())
    }

    /// Removes the tracking finalizer from pods whose Job is gone or finished (upstream's
    /// orphan pod sync), so they can be deleted.
    async fn release_orphans(
        &self,
        key: &str,
        finished_uid: Option<&str>,
    ) -> Result<(), ControllerError> {
        let (ns, job_name) = key.split_once('/').unwrap_or_default();
        let control = self.pod_control(key);
        for pod in self.pods_in(ns) {
            if !status::has_finalizer(&pod) {
                continue;
            }
            let owned = pod.metadata.owner_references.iter().flatten().any(|o| {
                o.controller == Some(true)
                    && o.kind == "Job"
                    && o.name == job_name
                    && finished_uid.is_none_or(|u| u == o.uid)
            });
            if owned {
                control.remove_finalizer(&pod).await?;
            }
        }
        // Nothing waits on these removals: the Job is gone or done.
        self.expectations.forget(key);
        Ok(())
    }

    /// The Job's pods after adopting orphans its selector matches (with the tracking
    /// finalizer) and releasing owned pods it no longer matches (upstream's
    /// `getPodsForJob`, on [`history::claim_all`]). Orphans are adopted only if a fresh
    /// read shows the same Job, not being deleted.
    async fn claim_pods(
        &self,
        job: &Job,
        job_uid: &str,
        ns_pods: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>, ControllerError> {
        use crate::controllers::controller_utils::{claim, new_controller_ref, Claim, Selector};
        let selector = Selector::new(job.spec.as_ref().and_then(|s| s.selector.as_ref()));
        let deleting = job.metadata.deletion_timestamp.is_some();
        let adopts = |p: &Pod| {
            claim(
                job_uid,
                deleting,
                &p.metadata,
                selector.matches(p.metadata.labels.as_ref()),
            ) == Claim::Adopt
        };
        let mut candidates = ns_pods;
        if candidates.iter().any(|p| adopts(p)) {
            let ns = job.metadata.namespace.as_deref().unwrap_or_default();
            let fresh = kube::Api::<Job>::namespaced(self.client.clone(), ns)
                .get_opt(job.metadata.name.as_deref().unwrap_or_default())
                .await?;
            let current = fresh.is_some_and(|f| {
                f.metadata.uid.as_deref() == Some(job_uid)
                    && f.metadata.deletion_timestamp.is_none()
            });
            if !current {
                candidates.retain(|p| !adopts(p));
            }
        }
        let owner = new_controller_ref("batch/v1", "Job", &job.metadata);
        crate::controllers::history::claim_all(
            &self.client,
            &owner,
            &job.metadata,
            &selector,
            candidates,
            Some(status::TRACKING_FINALIZER),
        )
        .await
    }

    fn pod_control<'a>(&'a self, key: &'a str) -> pods::PodControl<'a> {
        pods::PodControl {
            client: &self.client,
            recorder: &self.recorder,
            expectations: &self.expectations,
            key,
        }
    }
}
