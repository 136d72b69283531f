//! Deployments, ReplicaSets and their pods through the real binary and real kubectl:
//! create, scale, rolling updates within maxSurge/maxUnavailable (watched), rollout
//! status/history/undo/pause/resume/restart, the progress deadline, Recreate, and cascading
//! deletion. There are no nodes: [`fake_kubelet_ready`] reports pods Ready.

mod common;

use common::fake_kubelet::fake_kubelet_ready;
use common::pod_watch::PodWatch;
use common::TestServer;
use std::time::Duration;

fn rollout_status(server: &TestServer, what: &str) -> common::process::Run {
    server.kubectl(&["rollout", "status", what, "--timeout=45s"])
}

fn replica_sets(server: &TestServer, ns: &str) -> Vec<serde_json::Value> {
    let v = server.kubectl_json(&["get", "rs", "-n", ns]);
    v["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn kubectl_creates_scales_and_rolls_out_a_deployment_within_surge_and_unavailability() {
    let server = TestServer::start();
    let _kubelet = fake_kubelet_ready(&server, "default");
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=3",
    ]);
    let done = rollout_status(&server, "deployment/web");
    assert!(done.success(), "{}", done.output());
    assert!(
        done.stdout
            .contains("deployment \"web\" successfully rolled out"),
        "{}",
        done.stdout
    );
    let pods = server.kubectl_json(&["get", "pods", "-l", "app=web"]);
    let items = pods["items"].as_array().expect("pods");
    assert_eq!(items.len(), 3);
    for p in items {
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicaSet");
        assert_eq!(owner["controller"], true);
        assert!(owner["name"].as_str().expect("name").starts_with("web-"));
    }

    server.kubectl_ok(&["scale", "deployment/web", "--replicas=5"]);
    server.wait_until("five pods", 30, || {
        let d = server.kubectl_json(&["get", "deployment", "web"]);
        d["status"]["availableReplicas"] == 5 && d["status"]["updatedReplicas"] == 5
    });
    // `kubectl scale` writes through the scale subresource, and upstream records that
    // writer's ownership of spec.replicas under `subresource: scale`.
    let managed = server.kubectl_json(&["get", "deployment", "web", "--show-managed-fields"]);
    let entries = managed["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    let scaler = entries
        .iter()
        .find(|e| e["subresource"] == "scale")
        .unwrap_or_else(|| panic!("an entry through scale: {entries:?}"));
    assert!(
        scaler["fieldsV1"]["f:spec"].get("f:replicas").is_some(),
        "{scaler}"
    );
    // The controller's status writes go through status.
    assert!(
        entries.iter().any(|e| e["subresource"] == "status"
            && e["fieldsV1"]["f:status"]
                .get("f:availableReplicas")
                .is_some()),
        "{entries:?}"
    );

    // 5 replicas, default 25%/25%: maxSurge 2 (rounded up), maxUnavailable 1 (down).
    let watch = PodWatch::start(&server, "default");
    std::thread::sleep(Duration::from_millis(500));
    watch.reset();
    server.kubectl_ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=to 1.37",
    ]);
    server.kubectl_ok(&["set", "image", "deployment/web", "busybox=busybox:1.37"]);
    let done = rollout_status(&server, "deployment/web");
    assert!(done.success(), "{}", done.output());
    server.wait_until("only new pods are left", 30, || {
        server.kubectl_json(&["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .map(Vec::len)
            == Some(5)
    });
    let (max_pods, min_ready, _) = watch.extremes();
    // maxSurge bounds the replica sets' spec.replicas (as upstream); a pod of a replica
    // set just scaled down leaves only when its controller deletes it, so for a moment one
    // more pod can exist than the bound.
    assert!(
        max_pods <= 7 + 1,
        "saw {max_pods} pods, more than replicas + maxSurge (+1 in flight)"
    );
    assert!(
        min_ready.is_some_and(|r| r >= 4),
        "saw only {min_ready:?} ready, more than maxUnavailable down"
    );

    let history = server.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("REVISION") && history.contains("CHANGE-CAUSE"),
        "{history}"
    );
    assert!(history.contains("to 1.37"), "{history}");
    let rows = common::table_rows(&history);
    assert!(
        rows.iter()
            .any(|r| r.first().map(String::as_str) == Some("1")),
        "{history}"
    );
    assert!(
        rows.iter()
            .any(|r| r.first().map(String::as_str) == Some("2")),
        "{history}"
    );
}

#[test]
fn kubectl_rollout_undo_returns_to_the_previous_and_a_chosen_revision() {
    let server = TestServer::start();
    let _kubelet = fake_kubelet_ready(&server, "default");
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
    ]);
    assert!(rollout_status(&server, "deployment/web").success());
    server.kubectl_ok(&["set", "image", "deployment/web", "busybox=busybox:1.37"]);
    let done = rollout_status(&server, "deployment/web");
    assert!(done.success(), "{}", done.output());
    let first_rs = replica_sets(&server, "default")
        .into_iter()
        .find(|rs| rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1")
        .expect("revision 1");
    server.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    let done = rollout_status(&server, "deployment/web");
    assert!(done.success(), "{}", done.output());
    server.wait_until("the first replica set is back as revision 3", 30, || {
        let rs = server.kubectl_json(&[
            "get",
            "rs",
            first_rs["metadata"]["name"].as_str().expect("name"),
        ]);
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            && rs["status"]["availableReplicas"] == 2
    });
    let image = server.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox:1.36");

    server.kubectl_ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]);
    let done = rollout_status(&server, "deployment/web");
    assert!(done.success(), "{}", done.output());
    let image = server.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox:1.37");
    let events = server.kubectl_ok(&["get", "events"]);
    assert!(
        events.contains("ScalingReplicaSet") && events.contains("Scaled up replica set web-"),
        "{events}"
    );

    // Deleting the deployment cascades to its replica sets and pods.
    server.kubectl_ok(&["delete", "deployment", "web"]);
    server.wait_until("replica sets and pods are gone", 30, || {
        replica_sets(&server, "default").is_empty()
            && server.kubectl_json(&["get", "pods", "-l", "app=web"])["items"]
                .as_array()
                .is_some_and(Vec::is_empty)
    });
}

#[test]
fn pause_resume_restart_and_a_missed_progress_deadline() {
    let server = TestServer::start();
    let _kubelet = fake_kubelet_ready(&server, "default");
    server.kubectl_ok(&[
        "create",
        "deployment",
        "app",
        "--image=busybox:1.36",
        "--replicas=2",
    ]);
    assert!(rollout_status(&server, "deployment/app").success());

    server.kubectl_ok(&["rollout", "pause", "deployment/app"]);
    server.kubectl_ok(&["set", "image", "deployment/app", "busybox=busybox:1.37"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        replica_sets(&server, "default").len(),
        1,
        "a paused deployment does not roll"
    );
    let reason = server.kubectl_ok(&[
        "get",
        "deployment",
        "app",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
    ]);
    assert_eq!(reason, "DeploymentPaused");
    server.kubectl_ok(&["rollout", "resume", "deployment/app"]);
    assert!(rollout_status(&server, "deployment/app").success());
    assert_eq!(replica_sets(&server, "default").len(), 2);

    server.kubectl_ok(&["rollout", "restart", "deployment/app"]);
    assert!(rollout_status(&server, "deployment/app").success());
    assert_eq!(
        replica_sets(&server, "default").len(),
        3,
        "a restart makes a new replica set"
    );

    // Nobody marks pods Ready in this namespace: the deadline passes.
    server.kubectl_ok(&["create", "namespace", "stuck"]);
    server.kubectl_ok(&[
        "create",
        "deployment",
        "slow",
        "-n",
        "stuck",
        "--image=busybox:1.36",
    ]);
    server.kubectl_ok(&[
        "patch",
        "deployment",
        "slow",
        "-n",
        "stuck",
        "-p",
        "{\"spec\":{\"progressDeadlineSeconds\":3}}",
    ]);
    let failed = server.kubectl(&[
        "rollout",
        "status",
        "deployment/slow",
        "-n",
        "stuck",
        "--timeout=45s",
    ]);
    assert!(!failed.success(), "{}", failed.output());
    assert!(
        failed
            .stderr
            .contains("deployment \"slow\" exceeded its progress deadline"),
        "{}",
        failed.output()
    );
}

#[test]
fn recreate_deletes_old_pods_before_creating_new_ones() {
    let server = TestServer::start();
    let _kubelet = fake_kubelet_ready(&server, "default");
    server.apply(
        "recreate.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: rec\nspec:\n  replicas: 3\n  strategy: {type: Recreate}\n  selector:\n    matchLabels: {app: rec}\n  template:\n    metadata: {labels: {app: rec}}\n    spec:\n      containers: [{name: c, image: busybox:1.36}]\n",
    );
    assert!(rollout_status(&server, "deployment/rec").success());
    let watch = PodWatch::start(&server, "default");
    std::thread::sleep(Duration::from_millis(500));
    watch.reset();
    server.kubectl_ok(&["set", "image", "deployment/rec", "c=busybox:1.37"]);
    assert!(rollout_status(&server, "deployment/rec").success());
    let (_, _, mixed) = watch.extremes();
    assert_eq!(mixed, 0, "old and new pods existed at the same time");
    let images = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=rec",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(
        images.split_whitespace().collect::<Vec<_>>(),
        ["busybox:1.37"; 3]
    );
}
