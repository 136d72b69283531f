//! Helpers of the batch controller tests: there is no kubelet, so a test finishes pods
//! itself by writing their status as a kubelet would (phase, container exit codes, finish
//! times).

use crate::controllers::testing::eventually;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

pub async fn create_job(client: &kube::Client, ns: &str, job: Value) -> Job {
    let job: Job = serde_json::from_value(job).expect("a job");
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &job)
        .await
        .expect("job created")
}

/// A Job of one container named `main`, with `spec` merged into its spec.
pub fn job(name: &str, spec: Value) -> Value {
    let mut base = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}}}
    });
    if let (Some(b), Some(s)) = (base["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in s {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

pub async fn get_job(client: &kube::Client, ns: &str, name: &str) -> Option<Job> {
    Api::<Job>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("job read")
}

/// The pods the Job made (by the `batch.kubernetes.io/job-name` label), oldest first.
pub async fn pods_of(client: &kube::Client, ns: &str, job: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let mut pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("pods listed")
        .items;
    pods.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    pods
}

/// Pods neither finished nor being deleted.
pub async fn running_pods_of(client: &kube::Client, ns: &str, job: &str) -> Vec<Pod> {
    pods_of(client, ns, job)
        .await
        .into_iter()
        .filter(super::status::is_active)
        .collect()
}

/// Ends a pod as a kubelet would report it: `exit_code` 0 succeeds, anything else fails;
/// the container finished `ago_secs` seconds before now (long ago: no backoff to wait).
pub async fn finish_pod(client: &kube::Client, pod: &Pod, exit_code: i32, ago_secs: i64) {
    finish_pod_with(client, pod, exit_code, ago_secs, &[]).await
}

pub async fn finish_pod_with(
    client: &kube::Client,
    pod: &Pod,
    exit_code: i32,
    ago_secs: i64,
    conditions: &[&str],
) {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(ago_secs);
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let mut conds =
        vec![json!({"type": "Ready", "status": "False", "lastTransitionTime": at.to_string()})];
    conds.extend(
        conditions
            .iter()
            .map(|c| json!({"type": c, "status": "True"})),
    );
    let patch = json!({"status": {
        "phase": phase,
        "conditions": conds,
        "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": exit_code,
            "reason": if exit_code == 0 { "Completed" } else { "Error" },
            "startedAt": at.to_string(), "finishedAt": at.to_string()}}}]
    }});
    Api::<Pod>::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap())
        .patch_status(
            pod.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("pod status written");
}

/// The condition of `type_` with status True, if the Job has it.
pub fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    super::status::is_true(job, type_).map(|c| {
        (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    })
}

/// Waits until the Job has condition `type_` True and returns the Job.
pub async fn until_condition(client: &kube::Client, ns: &str, name: &str, type_: &str) -> Job {
    eventually(&format!("job {name} is {type_}"), || async {
        get_job(client, ns, name)
            .await
            .is_some_and(|j| condition(&j, type_).is_some())
    })
    .await;
    get_job(client, ns, name).await.expect("job exists")
}

/// Reasons of the events about the object named `name`.
pub async fn event_reasons(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("events listed")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// Waits (up to 30 s) for an event of `reason` about `name`; its message.
pub async fn until_event(client: &kube::Client, ns: &str, name: &str, reason: &str) -> String {
    for _ in 0..1500 {
        let events = event_reasons(client, ns, name).await;
        if let Some((_, m)) = events.into_iter().find(|(r, _)| r == reason) {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "{name} has no {reason} event; it has {:?}",
        event_reasons(client, ns, name).await
    );
}

/// Touches an object so its controllers look at it again (after a test moved the clock).
pub async fn poke<K>(client: &kube::Client, ns: &str, name: &str, n: u32)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {"test.skiff.dev/poke": n.to_string()}}});
    Api::<K>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("object poked");
}
