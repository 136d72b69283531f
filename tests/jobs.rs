//! Jobs and CronJobs through the real binary and real kubectl. No node runs the pods: the
//! test ends them through the API (`common::batch`), as a kubelet would report them.

mod common;

use common::batch::{finish_pod, running_pods};
use common::TestServer;

const NS: &str = "default";

/// Polls `check` until true, for up to `secs` seconds.
fn job_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox:1.36\n"
    )
}

/// Ends every running pod of `job` with `exit_code` until `done` holds.
fn finish_pods_until(
    server: &TestServer,
    job: &str,
    exit_code: i32,
    secs: u64,
    mut done: impl FnMut() -> bool,
) {
    server.wait_until(&format!("job {job} ran its pods"), secs, || {
        if done() {
            return true;
        }
        for pod in running_pods(server, NS, job) {
            finish_pod(server, NS, &pod, exit_code);
        }
        false
    });
}

fn jsonpath(server: &TestServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("-o=jsonpath={path}");
    args.push(&p);
    server.kubectl_ok(&args)
}

#[test]
fn a_job_of_three_completions_two_at_a_time_completes() {
    let server = TestServer::start();
    server.apply(
        "work.yaml",
        &job_yaml("work", "  completions: 3\n  parallelism: 2\n"),
    );
    server.wait_until("two pods run", 20, || {
        running_pods(&server, NS, "work").len() == 2
    });
    finish_pods_until(&server, "work", 0, 30, || {
        jsonpath(&server, &["job", "work"], "{.status.succeeded}") == "3"
    });
    server.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "--timeout=30s",
    ]);
    let rows = common::table_rows(&server.kubectl_ok(&["get", "job", "work"]));
    assert_eq!(rows[1][2], "3/3", "COMPLETIONS column: {rows:?}");
    let pods = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=work",
        "-o=name",
    ]);
    assert_eq!(pods.lines().count(), 3, "{pods}");
    let describe = server.kubectl_ok(&["describe", "job", "work"]);
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
    assert!(describe.contains("Completed"), "{describe}");
}

#[test]
fn failing_pods_are_retried_until_the_backoff_limit_fails_the_job() {
    let server = TestServer::start();
    server.apply("flaky.yaml", &job_yaml("flaky", "  backoffLimit: 2\n"));
    finish_pods_until(&server, "flaky", 1, 60, || {
        jsonpath(&server, &["job", "flaky"], "{.status.failed}") == "3"
    });
    server.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/flaky",
        "--timeout=30s",
    ]);
    let reason = jsonpath(
        &server,
        &["job", "flaky"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
    );
    assert_eq!(reason, "BackoffLimitExceeded");
    let pods = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=flaky",
        "-o=name",
    ]);
    assert_eq!(
        pods.lines().count(),
        3,
        "one pod and backoffLimit retries: {pods}"
    );
}

#[test]
fn an_indexed_jobs_pods_carry_their_indexes() {
    let server = TestServer::start();
    server.apply(
        "idx.yaml",
        &job_yaml(
            "idx",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n",
        ),
    );
    server.wait_until("three pods run", 20, || {
        running_pods(&server, NS, "idx").len() == 3
    });
    let out = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=idx",
        "-o=jsonpath={range .items[*]}{.metadata.annotations.batch\\.kubernetes\\.io/job-completion-index} {.metadata.labels.batch\\.kubernetes\\.io/job-completion-index} {.spec.hostname} {.spec.containers[0].env[0].name}{\"\\n\"}{end}",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "0 0 idx-0 JOB_COMPLETION_INDEX",
            "1 1 idx-1 JOB_COMPLETION_INDEX",
            "2 2 idx-2 JOB_COMPLETION_INDEX"
        ]
    );
    finish_pods_until(&server, "idx", 0, 30, || {
        jsonpath(&server, &["job", "idx"], "{.status.completedIndexes}") == "0-2"
    });
    server.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=30s",
    ]);
}

#[test]
fn a_pod_failure_policy_fails_the_job_on_an_exit_code() {
    let server = TestServer::start();
    let spec = "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: main\n        operator: In\n        values: [42]\n";
    server.apply("picky.yaml", &job_yaml("picky", spec));
    server.wait_until("a pod runs", 20, || {
        running_pods(&server, NS, "picky").len() == 1
    });
    let pod = running_pods(&server, NS, "picky").remove(0);
    finish_pod(&server, NS, &pod, 42);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/picky",
        "--timeout=30s",
    ]);
    let cond = jsonpath(
        &server,
        &["job", "picky"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}/{.status.conditions[?(@.type==\"Failed\")].message}",
    );
    assert_eq!(
        cond,
        format!("PodFailurePolicy/Container main for pod default/{pod} failed with exit code 42 matching FailJob rule at index 0")
    );
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let server = TestServer::start();
    server.apply(
        "brief.yaml",
        &job_yaml("brief", "  ttlSecondsAfterFinished: 1\n"),
    );
    // With a TTL of one second the Job may be gone by the time it is looked at.
    finish_pods_until(&server, "brief", 0, 30, || {
        let run = server.kubectl(&["get", "job", "brief", "-o=jsonpath={.status.succeeded}"]);
        !run.success() || run.stdout == "1"
    });
    server.wait_until("the job and its pods are deleted", 30, || {
        !server.kubectl(&["get", "job", "brief"]).success()
            && server
                .kubectl_ok(&[
                    "get",
                    "pods",
                    "-l",
                    "batch.kubernetes.io/job-name=brief",
                    "-o=name",
                ])
                .trim()
                .is_empty()
    });
}

#[test]
fn a_cronjob_starts_a_job_each_minute_and_can_be_run_by_hand() {
    let server = TestServer::start();
    server.apply(
        "tick.yaml",
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"*/1 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: main\n            image: busybox:1.36\n",
    );
    // By hand first: kubectl builds the Job from the template and owns it to the CronJob.
    server.kubectl_ok(&["create", "job", "--from=cronjob/tick", "tick-manual"]);
    let ann = jsonpath(
        &server,
        &["job", "tick-manual"],
        "{.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}",
    );
    assert_eq!(ann, "manual");
    finish_pods_until(&server, "tick-manual", 0, 30, || {
        jsonpath(&server, &["job", "tick-manual"], "{.status.succeeded}") == "1"
    });
    server.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/tick-manual",
        "--timeout=30s",
    ]);
    // Then on schedule, within a minute (and a margin).
    server.wait_until("the cronjob created a job", 75, || {
        !jsonpath(&server, &["cronjob", "tick"], "{.status.lastScheduleTime}").is_empty()
    });
    let active = jsonpath(&server, &["cronjob", "tick"], "{.status.active[0].name}");
    let minutes: i64 = active
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("job name {active:?} is tick-<minutes since epoch>"));
    let scheduled = jsonpath(
        &server,
        &["job", &active],
        "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    );
    let at = chrono::DateTime::parse_from_rfc3339(&scheduled).expect("an RFC 3339 time");
    assert_eq!(at.timestamp(), minutes * 60);
    let describe = server.kubectl_ok(&["describe", "cronjob", "tick"]);
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
}

#[test]
fn a_job_adopts_an_orphaned_pod_and_releases_one_it_no_longer_selects() {
    let server = TestServer::start();
    server.apply(
        "adopt.yaml",
        &job_yaml("adopt", "  completions: 4\n  parallelism: 2\n"),
    );
    server.wait_until("two pods run", 20, || {
        running_pods(&server, NS, "adopt").len() == 2
    });
    let pod = running_pods(&server, NS, "adopt").remove(0);
    let uid = jsonpath(&server, &["job", "adopt"], "{.metadata.uid}");
    let owner = |p: &str| jsonpath(&server, &["pod", p], "{.metadata.ownerReferences[*].uid}");
    server.kubectl_ok(&[
        "patch",
        "pod",
        &pod,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/metadata/ownerReferences"}]"#,
    ]);
    server.wait_until("the Job adopts its orphan", 20, || owner(&pod) == uid);
    server.kubectl_ok(&["label", "pod", &pod, "batch.kubernetes.io/controller-uid-"]);
    server.wait_until("the Job releases the pod and its finalizer", 20, || {
        owner(&pod).is_empty()
            && jsonpath(&server, &["pod", &pod], "{.metadata.finalizers}").is_empty()
    });
    server.kubectl_ok(&["delete", "pod", &pod, "--timeout=20s"]);
}
