//! Ending a Job's pods from a test. Without nodes nothing runs the pods, so a test reports
//! them finished through the API as a kubelet would (`pods/status`: phase, the container's
//! exit code and finish time). Kept here so the suites can later switch to simulated nodes
//! by changing these helpers only.

use super::TestServer;

/// Names of the Job's pods that are neither finished nor being deleted.
pub fn running_pods(server: &TestServer, ns: &str, job: &str) -> Vec<String> {
    let list = server.kubectl_json(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        &format!("batch.kubernetes.io/job-name={job}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            !matches!(
                p["status"]["phase"].as_str(),
                Some("Succeeded") | Some("Failed")
            )
        })
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Ends pod `name`: exit code 0 succeeds, anything else fails. The container is reported
/// finished an hour ago, so a Job's failure backoff (counted from the finish) has passed.
#[track_caller]
pub fn finish_pod(server: &TestServer, ns: &str, name: &str, exit_code: i32) {
    let at = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let patch = serde_json::json!({"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": at}],
        "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": exit_code,
            "reason": if exit_code == 0 { "Completed" } else { "Error" },
            "startedAt": at, "finishedAt": at}}}]
    }});
    server.kubectl_ok(&[
        "patch",
        "pod",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}
