//! TTL after finished (upstream's `ttl-after-finished-controller`): deletes a finished Job
//! (Complete or Failed) `spec.ttlSecondsAfterFinished` after the time its terminal condition
//! was set, with background propagation so its pods go after it.
//!
//! Invariant: the deletion is decided on a fresh read of the Job and made conditional on
//! that read's resourceVersion, so a Job whose TTL was changed (or that was replaced by a
//! new one of the same name) after the cache saw it is never deleted by a stale decision.

use super::clock::{until, Clock};
use super::job::status::finished_condition;
use super::{run_on_informer, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 2;
pub const NAME: &str = "ttl-after-finished-controller";

pub struct TtlAfterFinishedController {
    ctx: Context,
    queue: WorkQueue<String>,
    clock: Clock,
}

impl TtlAfterFinishedController {
    pub fn new(ctx: Context) -> TtlAfterFinishedController {
        TtlAfterFinishedController {
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
        let informer = self.ctx.informers.typed::<Job>();
        let reconciler = Arc::new(TtlReconciler {
            client: self.ctx.client_for(NAME),
            jobs: informer.store(),
            clock: self.clock,
        });
        let key_of = |change: &Change<Job>| match change {
            Change::Applied(j) if needs_cleanup(j) => Some(format!(
                "{}/{}",
                j.metadata.namespace.as_deref()?,
                j.metadata.name.as_deref()?
            )),
            _ => None,
        };
        run_on_informer(informer, key_of, reconciler, self.queue, WORKERS, shutdown).await
    }
}

/// A finished Job with a TTL that is not being deleted yet.
fn needs_cleanup(job: &Job) -> bool {
    job.metadata.deletion_timestamp.is_none()
        && job
            .spec
            .as_ref()
            .and_then(|s| s.ttl_seconds_after_finished)
            .is_some()
        && finished_condition(job).is_some()
}

/// When the Job's TTL runs out, if it has one and has finished.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    if !needs_cleanup(job) {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finished_condition(job)?.last_transition_time.as_ref()?.0;
    finished
        .checked_add(jiff::SignedDuration::from_secs(i64::from(ttl)))
        .ok()
}

struct TtlReconciler {
    client: kube::Client,
    jobs: Store<Job>,
    clock: Clock,
}

impl Reconciler for TtlReconciler {
    type Key = String;
    const NAME: &'static str = "ttl-after-finished";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let Some(cached) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        let now = self.clock.now();
        match expires_at(&cached) {
            None => return Ok(Action::Done),
            Some(at) if at > now => return Ok(Action::RequeueAfter(until(now, at))),
            Some(_) => {}
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let fresh = match api.get_opt(name).await? {
            Some(j) => j,
            None => return Ok(Action::Done),
        };
        match expires_at(&fresh) {
            None => return Ok(Action::Done),
            Some(at) if at > now => return Ok(Action::RequeueAfter(until(now, at))),
            Some(_) => {}
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: fresh.metadata.resource_version.clone(),
            }),
            ..DeleteParams::background()
        };
        tracing::info!(ns, job = name, "deleting a finished job whose TTL expired");
        match api.delete(name, &dp).await {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_counts_from_the_terminal_condition_and_needs_a_ttl() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j", "namespace": "n"},
            "spec": {"template": {}, "ttlSecondsAfterFinished": 30},
            "status": {"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}
            ]}
        }))
        .unwrap();
        assert_eq!(
            expires_at(&job),
            Some("2026-01-01T00:00:35Z".parse().unwrap())
        );
        job.spec.as_mut().unwrap().ttl_seconds_after_finished = None;
        assert_eq!(expires_at(&job), None);
    }
}

#[cfg(test)]
mod controller_tests {
    use crate::controllers::clock::Clock;
    use crate::controllers::job::testkit::*;
    use crate::controllers::testing::{eventually, Cluster};
    use k8s_openapi::api::batch::v1::Job;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test]
    async fn a_finished_job_is_deleted_when_its_ttl_runs_out() {
        let (clock, time) = Clock::manual(jiff::Timestamp::now());
        let c = Cluster::start_with_clock(clock).await;
        create_job(
            &c.client,
            "default",
            job("brief", json!({"ttlSecondsAfterFinished": 60})),
        )
        .await;
        eventually("a pod runs", || async {
            running_pods_of(&c.client, "default", "brief").await.len() == 1
        })
        .await;
        let pod = running_pods_of(&c.client, "default", "brief")
            .await
            .remove(0);
        finish_pod(&c.client, &pod, 0, 10).await;
        until_condition(&c.client, "default", "brief", "Complete").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            get_job(&c.client, "default", "brief").await.is_some(),
            "kept until the TTL"
        );
        time.advance(Duration::from_secs(61));
        poke::<Job>(&c.client, "default", "brief", 1).await;
        eventually("the job is deleted", || async {
            get_job(&c.client, "default", "brief").await.is_none()
        })
        .await;
        c.stop().await;
    }
}
