//! The CronJob controller against a real API server on a temporary store, with a manual
//! clock: a test steps over scheduled minutes instead of waiting for them, then touches the
//! CronJob so the controller looks again.

use super::{job_name, SCHEDULED_TIMESTAMP};
use crate::controllers::clock::{Clock, ManualTime};
use crate::controllers::job::testkit::*;
use crate::controllers::testing::{eventually, Cluster};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::time::Duration;

const NS: &str = "default";

async fn create_cronjob(client: &kube::Client, name: &str, spec: serde_json::Value) -> CronJob {
    let mut cj = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {"schedule": "*/1 * * * *", "timeZone": "UTC", "jobTemplate": {
            "metadata": {"labels": {"from": name}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}]}}}}}
    });
    for (k, v) in spec.as_object().unwrap() {
        cj["spec"][k] = v.clone();
    }
    Api::<CronJob>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &serde_json::from_value(cj).unwrap())
        .await
        .expect("cronjob created")
}

async fn jobs_of(client: &kube::Client, cj: &str) -> Vec<Job> {
    let mut jobs = Api::<Job>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("from={cj}")))
        .await
        .unwrap()
        .items;
    jobs.retain(|j| j.metadata.deletion_timestamp.is_none());
    jobs.sort_by_key(|j| j.metadata.name.clone());
    jobs
}

/// Moves the clock to `secs` seconds past the next minute boundary after `from`, touches
/// the CronJob, and returns that minute.
async fn step_to_next_minute(
    c: &Cluster,
    time: &ManualTime,
    from: Timestamp,
    cj: &str,
    n: u32,
) -> Timestamp {
    // The CronJob's creationTimestamp is real time: when starting the cluster crossed a
    // minute boundary after `from`, the first schedulable minute is after the real now.
    let base = from.max(Timestamp::now());
    let minute = Timestamp::from_second((base.as_second() / 60 + 1) * 60).unwrap();
    time.set(minute + jiff::SignedDuration::from_secs(1));
    poke::<CronJob>(&c.client, NS, cj, n).await;
    minute
}

async fn start() -> (Cluster, ManualTime, Timestamp) {
    let now = Timestamp::now();
    let (clock, time) = Clock::manual(now);
    (Cluster::start_with_clock(clock).await, time, now)
}

#[tokio::test]
async fn a_job_is_created_for_the_scheduled_minute() {
    let (c, time, now) = start().await;
    create_cronjob(&c.client, "tick", json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        jobs_of(&c.client, "tick").await.is_empty(),
        "nothing before the first minute"
    );
    let minute = step_to_next_minute(&c, &time, now, "tick", 1).await;
    eventually("the job exists", || async {
        jobs_of(&c.client, "tick").await.len() == 1
    })
    .await;
    let job = jobs_of(&c.client, "tick").await.remove(0);
    assert_eq!(job.metadata.name.clone().unwrap(), job_name("tick", minute));
    assert_eq!(
        job.metadata.name.clone().unwrap(),
        format!("tick-{}", minute.as_second() / 60)
    );
    let ann = job.metadata.annotations.clone().unwrap();
    assert_eq!(
        ann[SCHEDULED_TIMESTAMP],
        minute.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    let owner = &job.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    eventually("the cronjob lists it active", || async {
        let cj = Api::<CronJob>::namespaced(c.client.clone(), NS)
            .get("tick")
            .await
            .unwrap();
        let s = cj.status.unwrap_or_default();
        s.active.unwrap_or_default().len() == 1 && s.last_schedule_time.map(|t| t.0) == Some(minute)
    })
    .await;
    let msg = until_event(&c.client, NS, "tick", "SuccessfulCreate").await;
    assert_eq!(msg, format!("Created job {}", job_name("tick", minute)));
    c.stop().await;
}

#[tokio::test]
async fn forbid_skips_a_run_while_the_last_one_is_active() {
    let (c, time, now) = start().await;
    create_cronjob(&c.client, "solo", json!({"concurrencyPolicy": "Forbid"})).await;
    let m1 = step_to_next_minute(&c, &time, now, "solo", 1).await;
    eventually("the first job exists", || async {
        jobs_of(&c.client, "solo").await.len() == 1
    })
    .await;
    step_to_next_minute(&c, &time, m1, "solo", 2).await;
    let msg = until_event(&c.client, NS, "solo", "JobAlreadyActive").await;
    assert_eq!(
        msg,
        "Not starting job because prior execution is running and concurrency policy is Forbid"
    );
    assert_eq!(jobs_of(&c.client, "solo").await.len(), 1);
    c.stop().await;
}

#[tokio::test]
async fn replace_deletes_the_active_job_and_starts_a_new_one() {
    let (c, time, now) = start().await;
    create_cronjob(&c.client, "swap", json!({"concurrencyPolicy": "Replace"})).await;
    let m1 = step_to_next_minute(&c, &time, now, "swap", 1).await;
    eventually("the first job exists", || async {
        jobs_of(&c.client, "swap").await.len() == 1
    })
    .await;
    let m2 = step_to_next_minute(&c, &time, m1, "swap", 2).await;
    eventually("only the second job is left", || async {
        let jobs = jobs_of(&c.client, "swap").await;
        jobs.len() == 1 && jobs[0].metadata.name.as_deref() == Some(job_name("swap", m2).as_str())
    })
    .await;
    let msg = until_event(&c.client, NS, "swap", "SuccessfulDelete").await;
    assert_eq!(msg, format!("Deleted job {}", job_name("swap", m1)));
    c.stop().await;
}

#[tokio::test]
async fn allow_runs_concurrently_and_finished_jobs_leave_history() {
    let (c, time, now) = start().await;
    create_cronjob(&c.client, "many", json!({"successfulJobsHistoryLimit": 1})).await;
    let m1 = step_to_next_minute(&c, &time, now, "many", 1).await;
    eventually("one job", || async {
        jobs_of(&c.client, "many").await.len() == 1
    })
    .await;
    let m2 = step_to_next_minute(&c, &time, m1, "many", 2).await;
    eventually("two jobs run at once", || async {
        jobs_of(&c.client, "many").await.len() == 2
    })
    .await;
    for m in [m1, m2] {
        let name = job_name("many", m);
        eventually("the job's pod exists", || async {
            !running_pods_of(&c.client, NS, &name).await.is_empty()
        })
        .await;
        let pod = running_pods_of(&c.client, NS, &name).await.remove(0);
        finish_pod(&c.client, &pod, 0, 60).await;
        until_condition(&c.client, NS, &name, "Complete").await;
    }
    eventually(
        "the older finished job is deleted past the history limit",
        || async {
            let jobs = jobs_of(&c.client, "many").await;
            jobs.len() == 1
                && jobs[0].metadata.name.as_deref() == Some(job_name("many", m2).as_str())
        },
    )
    .await;
    until_event(&c.client, NS, "many", "SawCompletedJob").await;
    eventually(
        "nothing is active and the last success is recorded",
        || async {
            let cj = Api::<CronJob>::namespaced(c.client.clone(), NS)
                .get("many")
                .await
                .unwrap();
            let s = cj.status.unwrap_or_default();
            s.active.is_none() && s.last_successful_time.is_some()
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test]
async fn too_many_missed_times_warn_and_start_the_latest() {
    let (c, time, now) = start().await;
    create_cronjob(&c.client, "behind", json!({})).await;
    let later = now + jiff::SignedDuration::from_secs(200 * 60);
    let latest = step_to_next_minute(&c, &time, later, "behind", 1).await;
    let msg = until_event(&c.client, NS, "behind", "TooManyMissedTimes").await;
    assert!(msg.starts_with("too many missed start times"), "{msg}");
    eventually("the latest time's job exists", || async {
        let jobs = jobs_of(&c.client, "behind").await;
        jobs.len() == 1
            && jobs[0].metadata.name.as_deref() == Some(job_name("behind", latest).as_str())
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_suspended_cronjob_starts_nothing() {
    let (c, time, now) = start().await;
    create_cronjob(&c.client, "paused", json!({"suspend": true})).await;
    step_to_next_minute(&c, &time, now, "paused", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(jobs_of(&c.client, "paused").await.is_empty());
    c.stop().await;
}
