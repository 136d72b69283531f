//! The workload controllers on real agents: a server with no node of its own schedules a
//! Deployment's busybox pods onto two `skiff agent` hosts (each in its own network
//! namespace), rolls it to a new image within maxSurge/maxUnavailable (watched) and back
//! with `rollout undo`; Jobs complete and fail on real containers; a host whose agent is
//! SIGKILLed goes Unknown, its pods are evicted and replaced on the other host, and when
//! the agent returns it stops the stale pods' containers and lets their objects go.
//! The same scenarios on simulated nodes are in `deployments.rs`, `jobs.rs` and
//! `disruption.rs`; this is the controllers' contract with the real kubelet.
//!
//! Root only (cfg `skiff_unprivileged` otherwise).

mod common;

use common::agent::{node_ready, server_token, TestAgent};
use common::netns::NetNs;
use common::pod_watch::PodWatch;
use common::process::eventually;
use common::registry::Registry;
use common::TestServer;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox:1.36
        command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#;

fn job(name: &str, spec: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox:1.36\n        command: [sh, -c, {command:?}]\n"
    )
}

/// Waits for `kubectl rollout status deployment/web` to report success.
#[track_caller]
fn rollout_done(server: &TestServer) {
    let done = server.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(done.success(), "{}", done.output());
}

/// Waits for `kubectl wait --for=condition=CONDITION job/NAME` to succeed.
#[track_caller]
fn wait_job(server: &TestServer, name: &str, condition: &str) {
    let job = format!("job/{name}");
    let cond = format!("--for=condition={condition}");
    let done = server.kubectl(&["wait", &cond, &job, "--timeout=120s"]);
    assert!(done.success(), "{}", done.output());
}

/// Waits until the 4 live pods of `app=web` run `image` (as their statuses report it).
#[track_caller]
fn all_run(server: &TestServer, image: &str) {
    eventually(WAIT, &format!("every pod runs {image}"), || {
        let images = running_images(server);
        (images.len() == 4 && images.iter().all(|i| i.ends_with(image)))
            .then_some(())
            .ok_or(format!("{images:?}"))
    });
}

/// The image each live pod of `app=web` runs, as its container status reports it.
fn running_images(server: &TestServer) -> Vec<String> {
    let pods = server.kubectl_json(&["get", "pods", "-l", "app=web"]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let status = &p["status"]["containerStatuses"][0];
            match status["state"]["running"].is_object() {
                true => status["image"].as_str().unwrap_or("?").to_owned(),
                false => format!("not running: {}", status["state"]),
            }
        })
        .collect()
}

/// Whether a shim process of runtime container `id` (`skiff://ID` in a pod's status) lives.
fn shim_alive(id: &str) -> bool {
    let id = id.trim_start_matches("skiff://");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|cmd| {
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("__shim") && cmd.contains(id)
        })
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: network namespaces, mounts and cgroups"
)]
fn deployments_jobs_and_a_lost_host_on_two_real_agents() {
    let ns_a = NetNs::create();
    let ns_b = NetNs::create();
    let reg = Registry::busybox_for_netns(&["1.36", "1.37"]);

    // No node of its own; node loss noticed within seconds, not minutes.
    let server = common::netns::server_reachable_from_with(
        &[&ns_a, &ns_b],
        &[
            // Above the agent's 10 s Lease renewal, or a busy host would flap.
            "--node-monitor-grace-period",
            "15s",
            "--node-monitor-period",
            "1s",
            "--default-unreachable-toleration-seconds",
            "2",
            "--default-not-ready-toleration-seconds",
            "2",
        ],
    );
    let token = server_token(&server);
    let mut a = TestAgent::start_in_netns_with_mirror(&server, &ns_a, "host-a", &token, &reg);
    let mut b = TestAgent::start_in_netns_with_mirror(&server, &ns_b, "host-b", &token, &reg);
    a.wait_ready(&server, WAIT);
    b.wait_ready(&server, WAIT);

    // A Deployment, then scaled: the scheduler spreads its pods over both hosts, where they
    // run as real containers.
    server.apply("web.yaml", DEPLOYMENT);
    rollout_done(&server);
    server.kubectl_ok(&["scale", "deployment/web", "--replicas=4"]);
    rollout_done(&server);
    let pods = eventually(WAIT, "4 Ready pods", || {
        let pods = common::ready_pods(&server, "app=web");
        (pods.len() == 4)
            .then_some(pods.clone())
            .ok_or(format!("{pods:?}"))
    });
    for host in ["host-a", "host-b"] {
        assert!(
            pods.iter().any(|(_, n)| n == host),
            "no pod on {host}: {pods:?}"
        );
    }
    let pod = server.kubectl_json(&["get", "pod", &pods[0].0]);
    let id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        id.starts_with("skiff://") && shim_alive(&id),
        "{id}: {}",
        pod["status"]
    );

    // A new image rolls out within the strategy's bounds, observed through a watch; undo
    // brings the first template back.
    let watch = PodWatch::start(&server, "default");
    std::thread::sleep(Duration::from_millis(500));
    watch.reset();
    server.kubectl_ok(&["set", "image", "deployment/web", "app=busybox:1.37"]);
    rollout_done(&server);
    all_run(&server, "busybox:1.37");
    let (max_pods, min_ready, mixed) = watch.extremes();
    assert!(max_pods <= 5, "maxSurge 1 allows 5 pods, saw {max_pods}");
    assert!(
        min_ready.is_some_and(|r| r >= 3),
        "maxUnavailable 1 keeps 3 Ready, saw {min_ready:?}"
    );
    assert!(mixed > 0, "the watch saw no moment of both templates");
    drop(watch);
    let history = server.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert_eq!(
        history
            .lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count(),
        2,
        "{history}"
    );
    server.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    rollout_done(&server);
    all_run(&server, "busybox:1.36");

    // Jobs on real containers: three completions two at a time; a failing one retried
    // until its backoff limit fails it, with the containers' exit codes in its pods.
    server.apply(
        "count.yaml",
        &job(
            "count",
            "  completions: 3\n  parallelism: 2\n",
            "echo counted",
        ),
    );
    server.apply(
        "fail.yaml",
        &job("fail", "  backoffLimit: 1\n", "echo failing; exit 3"),
    );
    wait_job(&server, "count", "complete");
    let count = server.kubectl_json(&["get", "pods", "-l", "job-name=count"]);
    let items = count["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{count}");
    for p in items {
        assert_eq!(p["status"]["phase"], "Succeeded", "{}", p["status"]);
        assert!(p["spec"]["nodeName"]
            .as_str()
            .unwrap_or("")
            .starts_with("host-"));
        let log = server.kubectl_ok(&["logs", p["metadata"]["name"].as_str().unwrap()]);
        assert_eq!(log, "counted\n");
    }
    wait_job(&server, "fail", "failed");
    let fail = server.kubectl_json(&["get", "job", "fail"]);
    let condition = common::status_condition(&fail, "Failed");
    assert_eq!(
        condition["reason"], "BackoffLimitExceeded",
        "{}",
        fail["status"]
    );
    assert_eq!(fail["status"]["failed"], 2, "{}", fail["status"]);
    let fail_pods = server.kubectl_json(&["get", "pods", "-l", "job-name=fail"]);
    for p in fail_pods["items"].as_array().into_iter().flatten() {
        let exit = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(exit["exitCode"], 3, "{}", p["status"]);
        assert_eq!(exit["reason"], "Error", "{}", p["status"]);
    }

    // host-b's agent dies (its containers live on, as on a host cut off the network): the
    // node goes Unknown, its pods are evicted and replaced on host-a.
    let on_b: Vec<(String, String)> = common::ready_pods(&server, "app=web")
        .into_iter()
        .filter(|(_, n)| n == "host-b")
        .map(|(p, _)| {
            let pod = server.kubectl_json(&["get", "pod", &p]);
            let id = pod["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (p, id)
        })
        .collect();
    assert!(!on_b.is_empty());
    assert!(on_b.iter().all(|(_, id)| shim_alive(id)), "{on_b:?}");
    b.kill();
    eventually(
        WAIT,
        "host-b goes Unknown and is tainted unreachable",
        || {
            let node = server.kubectl_json(&["get", "node", "host-b"]);
            let ready = common::status_condition(&node, "Ready");
            let taints = common::taint_keys(&node);
            (ready["status"] == "Unknown"
                && taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_owned()))
            .then_some(())
            .ok_or(format!("{ready} {taints:?}"))
        },
    );
    eventually(WAIT, "host-b's pods are evicted", || {
        let marked = on_b
            .iter()
            .filter(|(p, _)| {
                let pod = server.kubectl_json(&["get", "pod", p]);
                !pod["metadata"]["deletionTimestamp"].is_null()
            })
            .count();
        (marked == on_b.len())
            .then_some(())
            .ok_or(format!("{marked} of {} marked", on_b.len()))
    });
    eventually(WAIT, "4 Ready pods, all on host-a", || {
        let pods = common::ready_pods(&server, "app=web");
        (pods.len() == 4 && pods.iter().all(|(_, n)| n == "host-a"))
            .then_some(())
            .ok_or(format!("{pods:?}"))
    });

    // The agent returns: it stops the evicted pods' containers, their objects go, and the
    // node is Ready and untainted again.
    b.restart();
    eventually(
        WAIT,
        "host-b is back, its stale pods stopped and gone",
        || {
            let node = server.kubectl_json(&["get", "node", "host-b"]);
            let taints = common::taint_keys(&node);
            let left: Vec<&String> = on_b
                .iter()
                .filter(|(p, id)| server.kubectl(&["get", "pod", p]).success() || shim_alive(id))
                .map(|(p, _)| p)
                .collect();
            (node_ready(&server, "host-b") && taints.is_empty() && left.is_empty())
                .then_some(())
                .ok_or(format!("taints {taints:?}, left {left:?}"))
        },
    );
    assert_eq!(common::ready_pods(&server, "app=web").len(), 4);
}
