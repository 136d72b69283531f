//! The Job controller against a real API server on a temporary store; tests end pods
//! themselves (no kubelet) and read status, conditions and events as a user would.

use super::indexed::COMPLETION_INDEX;
use super::testkit::*;
use crate::controllers::clock::Clock;
use crate::controllers::testing::{eventually, Cluster};
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;
use std::time::Duration;

const NS: &str = "default";

fn status(job: &Job) -> k8s_openapi::api::batch::v1::JobStatus {
    job.status.clone().unwrap_or_default()
}

#[tokio::test]
async fn three_completions_run_two_at_a_time_and_complete() {
    let c = Cluster::start().await;
    create_job(
        &c.client,
        NS,
        job("work", json!({"completions": 3, "parallelism": 2})),
    )
    .await;
    eventually("two pods run", || async {
        running_pods_of(&c.client, NS, "work").await.len() == 2
    })
    .await;
    let pods = running_pods_of(&c.client, NS, "work").await;
    for p in &pods {
        let fin = p.metadata.finalizers.clone().unwrap_or_default();
        assert!(fin.contains(&"batch.kubernetes.io/job-tracking".to_string()));
        assert!(p.metadata.name.as_ref().unwrap().starts_with("work-"));
    }
    finish_pod(&c.client, &pods[0], 0, 3600).await;
    eventually("a third pod replaces the finished one", || async {
        pods_of(&c.client, NS, "work").await.len() == 3
            && running_pods_of(&c.client, NS, "work").await.len() == 2
    })
    .await;
    for p in running_pods_of(&c.client, NS, "work").await {
        finish_pod(&c.client, &p, 0, 3600).await;
    }
    let j = until_condition(&c.client, NS, "work", "Complete").await;
    let s = status(&j);
    assert_eq!(s.succeeded, Some(3));
    assert_eq!(s.active, None);
    assert!(s.completion_time.is_some() && s.start_time.is_some());
    assert_eq!(
        condition(&j, "Complete").unwrap(),
        (
            "CompletionsReached".into(),
            "Reached expected number of succeeded pods".into()
        )
    );
    assert!(condition(&j, "SuccessCriteriaMet").is_some());
    let uncounted = s.uncounted_terminated_pods.unwrap_or_default();
    assert!(uncounted.succeeded.unwrap_or_default().is_empty());
    for p in pods_of(&c.client, NS, "work").await {
        assert!(
            !super::status::has_finalizer(&p),
            "finalizers are removed once counted"
        );
    }
    assert_eq!(
        pods_of(&c.client, NS, "work").await.len(),
        3,
        "no pod more than needed"
    );
    until_event(&c.client, NS, "work", "Completed").await;
    let created = until_event(&c.client, NS, "work", "SuccessfulCreate").await;
    assert!(created.starts_with("Created pod: work-"), "{created}");
    c.stop().await;
}

#[tokio::test]
async fn failing_pods_are_retried_up_to_the_backoff_limit() {
    let c = Cluster::start().await;
    create_job(&c.client, NS, job("flaky", json!({"backoffLimit": 1}))).await;
    for round in 0..2 {
        eventually("a pod runs", || async {
            running_pods_of(&c.client, NS, "flaky").await.len() == 1
        })
        .await;
        let p = running_pods_of(&c.client, NS, "flaky").await.remove(0);
        finish_pod(&c.client, &p, 1, 3600).await;
        if round == 0 {
            eventually("the failure is counted", || async {
                get_job(&c.client, NS, "flaky")
                    .await
                    .is_some_and(|j| status(&j).failed == Some(1))
            })
            .await;
        }
    }
    let j = until_condition(&c.client, NS, "flaky", "Failed").await;
    assert_eq!(status(&j).failed, Some(2));
    assert_eq!(
        condition(&j, "Failed").unwrap(),
        (
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        )
    );
    assert!(condition(&j, "FailureTarget").is_some());
    assert_eq!(pods_of(&c.client, NS, "flaky").await.len(), 2);
    let msg = until_event(&c.client, NS, "flaky", "BackoffLimitExceeded").await;
    assert_eq!(msg, "Job has reached the specified backoff limit");
    c.stop().await;
}

#[tokio::test]
async fn a_replacement_waits_for_the_backoff_after_a_failure() {
    let (clock, time) = Clock::manual(jiff::Timestamp::now());
    let c = Cluster::start_with_clock(clock).await;
    create_job(&c.client, NS, job("slow", json!({"backoffLimit": 3}))).await;
    eventually("a pod runs", || async {
        running_pods_of(&c.client, NS, "slow").await.len() == 1
    })
    .await;
    let p = running_pods_of(&c.client, NS, "slow").await.remove(0);
    time.set(jiff::Timestamp::now());
    finish_pod(&c.client, &p, 1, 0).await;
    eventually("the failure is counted", || async {
        get_job(&c.client, NS, "slow")
            .await
            .is_some_and(|j| status(&j).failed == Some(1))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        running_pods_of(&c.client, NS, "slow").await.is_empty(),
        "no replacement within the first 10 s"
    );
    time.advance(Duration::from_secs(11));
    poke::<Job>(&c.client, NS, "slow", 1).await;
    eventually("the replacement runs after the backoff", || async {
        running_pods_of(&c.client, NS, "slow").await.len() == 1
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn indexed_pods_carry_their_index_and_completed_indexes_are_compressed() {
    let c = Cluster::start().await;
    create_job(
        &c.client,
        NS,
        job(
            "idx",
            json!({"completions": 4, "parallelism": 4, "completionMode": "Indexed"}),
        ),
    )
    .await;
    eventually("four pods run", || async {
        running_pods_of(&c.client, NS, "idx").await.len() == 4
    })
    .await;
    let mut pods = running_pods_of(&c.client, NS, "idx").await;
    pods.sort_by_key(super::indexed::index_of);
    for (i, p) in pods.iter().enumerate() {
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(ann[COMPLETION_INDEX], i.to_string());
        assert_eq!(labels[COMPLETION_INDEX], i.to_string());
        let spec = p.spec.clone().unwrap();
        assert_eq!(spec.hostname, Some(format!("idx-{i}")));
        assert!(p
            .metadata
            .name
            .as_ref()
            .unwrap()
            .starts_with(&format!("idx-{i}-")));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
    }
    finish_pod(&c.client, &pods[1], 0, 3600).await;
    finish_pod(&c.client, &pods[2], 0, 3600).await;
    eventually("indexes 1 and 2 are completed", || async {
        get_job(&c.client, NS, "idx")
            .await
            .is_some_and(|j| status(&j).completed_indexes.as_deref() == Some("1,2"))
    })
    .await;
    finish_pod(&c.client, &pods[0], 0, 3600).await;
    finish_pod(&c.client, &pods[3], 0, 3600).await;
    let j = until_condition(&c.client, NS, "idx", "Complete").await;
    assert_eq!(status(&j).completed_indexes.as_deref(), Some("0-3"));
    assert_eq!(status(&j).succeeded, Some(4));
    c.stop().await;
}

#[tokio::test]
async fn a_fail_job_rule_fails_the_job_on_its_exit_code() {
    let c = Cluster::start().await;
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
    ]});
    create_job(
        &c.client,
        NS,
        job(
            "picky",
            json!({"backoffLimit": 5, "podFailurePolicy": policy}),
        ),
    )
    .await;
    eventually("a pod runs", || async {
        running_pods_of(&c.client, NS, "picky").await.len() == 1
    })
    .await;
    // A disruption is ignored: not counted, the pod is replaced.
    let p = running_pods_of(&c.client, NS, "picky").await.remove(0);
    finish_pod_with(&c.client, &p, 137, 3600, &["DisruptionTarget"]).await;
    eventually("the disrupted pod is replaced", || async {
        pods_of(&c.client, NS, "picky").await.len() == 2
            && running_pods_of(&c.client, NS, "picky").await.len() == 1
    })
    .await;
    let j = get_job(&c.client, NS, "picky").await.unwrap();
    assert_eq!(status(&j).failed, None, "an ignored failure is not counted");
    let p = running_pods_of(&c.client, NS, "picky").await.remove(0);
    let pod_name = p.metadata.name.clone().unwrap();
    finish_pod(&c.client, &p, 42, 3600).await;
    let j = until_condition(&c.client, NS, "picky", "Failed").await;
    let (reason, message) = condition(&j, "Failed").unwrap();
    assert_eq!(reason, "PodFailurePolicy");
    assert_eq!(
        message,
        format!("Container main for pod default/{pod_name} failed with exit code 42 matching FailJob rule at index 1")
    );
    c.stop().await;
}

#[tokio::test]
async fn suspend_deletes_pods_and_resume_starts_them_again() {
    let c = Cluster::start().await;
    create_job(
        &c.client,
        NS,
        job(
            "nap",
            json!({"parallelism": 2, "completions": 4, "suspend": true}),
        ),
    )
    .await;
    let j = until_condition(&c.client, NS, "nap", "Suspended").await;
    assert_eq!(condition(&j, "Suspended").unwrap().0, "JobSuspended");
    assert!(
        status(&j).start_time.is_none(),
        "a suspended job has not started"
    );
    assert!(pods_of(&c.client, NS, "nap").await.is_empty());
    let api = kube::Api::<Job>::namespaced(c.client.clone(), NS);
    let resume = json!({"spec": {"suspend": false}});
    let pp = kube::api::PatchParams::default();
    api.patch("nap", &pp, &kube::api::Patch::Merge(&resume))
        .await
        .unwrap();
    eventually("two pods run after resuming", || async {
        running_pods_of(&c.client, NS, "nap").await.len() == 2
    })
    .await;
    until_event(&c.client, NS, "nap", "Resumed").await;
    let suspend = json!({"spec": {"suspend": true}});
    api.patch("nap", &pp, &kube::api::Patch::Merge(&suspend))
        .await
        .unwrap();
    eventually("the pods are deleted when suspended again", || async {
        pods_of(&c.client, NS, "nap").await.is_empty()
    })
    .await;
    let j = until_condition(&c.client, NS, "nap", "Suspended").await;
    assert_eq!(
        status(&j).failed,
        None,
        "pods removed by suspension are not failures"
    );
    c.stop().await;
}

#[tokio::test]
async fn an_active_deadline_fails_the_job_when_the_clock_passes_it() {
    let (clock, time) = Clock::manual(jiff::Timestamp::now());
    let c = Cluster::start_with_clock(clock).await;
    create_job(
        &c.client,
        NS,
        job("late", json!({"activeDeadlineSeconds": 30})),
    )
    .await;
    eventually("a pod runs", || async {
        running_pods_of(&c.client, NS, "late").await.len() == 1
    })
    .await;
    // The deadline counts from the recorded start time: on a loaded machine the pod could
    // run before the status write that records it, and a start time taken after the
    // advance below would put the deadline 30 s of wall time away.
    eventually("the job's start time is recorded", || async {
        get_job(&c.client, NS, "late")
            .await
            .is_some_and(|j| j.status.is_some_and(|s| s.start_time.is_some()))
    })
    .await;
    time.advance(Duration::from_secs(31));
    poke::<Job>(&c.client, NS, "late", 1).await;
    let j = until_condition(&c.client, NS, "late", "Failed").await;
    assert_eq!(
        condition(&j, "Failed").unwrap(),
        (
            "DeadlineExceeded".into(),
            "Job was active longer than specified deadline".into()
        )
    );
    assert!(running_pods_of(&c.client, NS, "late").await.is_empty());
    assert_eq!(
        status(&j).failed,
        Some(1),
        "the killed pod counts as failed"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_success_policy_ends_an_indexed_job_early() {
    let c = Cluster::start().await;
    create_job(
        &c.client,
        NS,
        job(
            "leader",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        ),
    )
    .await;
    eventually("three pods run", || async {
        running_pods_of(&c.client, NS, "leader").await.len() == 3
    })
    .await;
    let pods = running_pods_of(&c.client, NS, "leader").await;
    let zero = pods
        .iter()
        .find(|p| super::indexed::index_of(p) == Some(0))
        .unwrap();
    finish_pod(&c.client, zero, 0, 3600).await;
    let j = until_condition(&c.client, NS, "leader", "Complete").await;
    assert_eq!(
        condition(&j, "SuccessCriteriaMet").unwrap(),
        ("SuccessPolicy".into(), "Matched rules at index 0".into())
    );
    assert_eq!(condition(&j, "Complete").unwrap().0, "SuccessPolicy");
    assert!(running_pods_of(&c.client, NS, "leader").await.is_empty());
    c.stop().await;
}

#[tokio::test]
async fn a_backoff_limit_per_index_fails_only_that_index() {
    let c = Cluster::start().await;
    create_job(
        &c.client,
        NS,
        job(
            "perindex",
            json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed",
                "backoffLimitPerIndex": 0}),
        ),
    )
    .await;
    eventually("two pods run", || async {
        running_pods_of(&c.client, NS, "perindex").await.len() == 2
    })
    .await;
    let pods = running_pods_of(&c.client, NS, "perindex").await;
    for p in &pods {
        let code = if super::indexed::index_of(p) == Some(1) {
            1
        } else {
            0
        };
        finish_pod(&c.client, p, code, 3600).await;
    }
    let j = until_condition(&c.client, NS, "perindex", "Failed").await;
    let s = status(&j);
    assert_eq!(s.failed_indexes.as_deref(), Some("1"));
    assert_eq!(s.completed_indexes.as_deref(), Some("0"));
    assert_eq!(condition(&j, "Failed").unwrap().0, "FailedIndexes");
    assert_eq!(
        pods_of(&c.client, NS, "perindex").await.len(),
        2,
        "index 1 is not retried"
    );
    c.stop().await;
}

#[tokio::test]
async fn an_orphaned_pod_is_adopted_again_and_a_pod_no_longer_selected_is_released() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams};
    let c = Cluster::start().await;
    let job = create_job(
        &c.client,
        NS,
        job("adopt", json!({"parallelism": 2, "completions": 4})),
    )
    .await;
    eventually("two pods run", || async {
        running_pods_of(&c.client, NS, "adopt").await.len() == 2
    })
    .await;
    let pod = running_pods_of(&c.client, NS, "adopt").await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NS);
    let owner_uid = || async {
        let p = pods.get(&name).await.unwrap();
        let uid = crate::controllers::controller_utils::controller_ref(&p.metadata)
            .map(|r| r.uid.clone());
        (uid, super::status::has_finalizer(&p))
    };
    // Orphaned (a JSON patch, so the finalizer stays): the Job takes it back.
    let orphan = json!([{"op": "remove", "path": "/metadata/ownerReferences"}]);
    pods.patch(
        &name,
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(orphan).unwrap()),
    )
    .await
    .unwrap();
    eventually("the Job adopts its orphan", || async {
        owner_uid().await == (job.metadata.uid.clone(), true)
    })
    .await;
    // Labels gone: the Job lets it go and runs another in its place.
    pods.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": null}})),
    )
    .await
    .unwrap();
    eventually("the Job releases the pod and its finalizer", || async {
        owner_uid().await == (None, false)
    })
    .await;
    eventually("another pod takes its place", || async {
        running_pods_of(&c.client, NS, "adopt").await.len() == 2
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn an_orphan_no_job_selects_loses_the_tracking_finalizer() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    let c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NS);
    // What a Job's pod looks like after its Job went without cascading (or its owner
    // reference was cut): the finalizer would hold its deletion forever.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "leftover", "labels": {"app": "nobody"},
                     "finalizers": [super::status::TRACKING_FINALIZER]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the orphan's tracking finalizer is removed", || async {
        let p = pods.get("leftover").await.unwrap();
        !super::status::has_finalizer(&p)
    })
    .await;
    c.stop().await;
}
