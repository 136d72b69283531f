//! StatefulSets and DaemonSets end to end on `skiff sim-nodes` nodes: the real server's
//! controllers and scheduler, simulated kubelets reporting pods Running and Ready, and real
//! kubectl driving rollouts (`rollout status/history/undo` read the ControllerRevisions).

mod common;

use common::agent::node_ready;
use common::process::eventually;
use common::sim_nodes::TestSimNodes;
use common::TestServer;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn wait_nodes_ready(server: &TestServer, nodes: &mut TestSimNodes, names: &[&str]) {
    eventually(WAIT, &format!("{names:?} Ready"), || {
        nodes.check_running();
        let ready = names.iter().filter(|n| node_ready(server, n)).count();
        (ready == names.len())
            .then_some(())
            .ok_or(format!("{ready} Ready"))
    });
}

/// The live pods selected by `selector`: (name, image, node), sorted by name.
fn pods(server: &TestServer, selector: &str) -> Vec<(String, String, String)> {
    let list = server.kubectl_json(&["get", "pods", "-l", selector]);
    let mut out: Vec<(String, String, String)> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&p["metadata"]["name"]),
                s(&p["spec"]["containers"][0]["image"]),
                s(&p["spec"]["nodeName"]),
            )
        })
        .collect();
    out.sort();
    out
}

const STATEFULSET: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: "busybox:1.36"}]
"#;

#[test]
fn a_statefulset_starts_in_order_scales_down_from_the_top_rolls_out_a_partition_and_undoes() {
    let server = TestServer::start();
    let mut nodes = TestSimNodes::start(&server, 3, &[]);
    wait_nodes_ready(&server, &mut nodes, &["sim-0", "sim-1", "sim-2"]);

    server.apply("web.yaml", STATEFULSET);
    server.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    let names: Vec<String> = pods(&server, "app=web").into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    // OrderedReady: each pod was created only once the one before it was Ready.
    let list = server.kubectl_json(&["get", "pods", "-l", "app=web"]);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let field = |name: &str, f: &dyn Fn(&serde_json::Value) -> String| {
        items
            .iter()
            .find(|p| p["metadata"]["name"] == name)
            .map(f)
            .unwrap_or_default()
    };
    let created = |p: &serde_json::Value| {
        p["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let ready_at = |p: &serde_json::Value| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    for (prev, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let (ready, made) = (field(prev, &ready_at), field(next, &created));
        assert!(
            made >= ready,
            "{next} created at {made}, {prev} Ready at {ready}"
        );
    }
    let pod0 = server.kubectl_json(&["get", "pod", "web-0"]);
    assert_eq!(pod0["spec"]["hostname"], "web-0");
    assert_eq!(pod0["spec"]["subdomain"], "web");

    server.kubectl_ok(&["scale", "statefulset/web", "--replicas=2"]);
    eventually(WAIT, "web-2 removed", || {
        let names: Vec<String> = pods(&server, "app=web").into_iter().map(|p| p.0).collect();
        (names == ["web-0", "web-1"])
            .then_some(())
            .ok_or(format!("{names:?}"))
    });

    // A partition of 1 keeps web-0 on the old template.
    server.kubectl_ok(&[
        "patch",
        "statefulset/web",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":1}}}}"#,
    ]);
    server.kubectl_ok(&["set", "image", "statefulset/web", "app=busybox:1.37"]);
    server.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    eventually(WAIT, "web-1 updated, web-0 kept", || {
        let images: Vec<String> = pods(&server, "app=web").into_iter().map(|p| p.1).collect();
        (images == ["busybox:1.36", "busybox:1.37"])
            .then_some(())
            .ok_or(format!("{images:?}"))
    });
    let history = server.kubectl_ok(&["rollout", "history", "statefulset/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let rev2 = server.kubectl_ok(&["rollout", "history", "statefulset/web", "--revision=2"]);
    assert!(rev2.contains("busybox:1.37"), "{rev2}");

    server.kubectl_ok(&["rollout", "undo", "statefulset/web"]);
    server.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    let sts = server.kubectl_json(&["get", "statefulset", "web"]);
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );
    eventually(WAIT, "web-1 back on the first template", || {
        let images: Vec<String> = pods(&server, "app=web").into_iter().map(|p| p.1).collect();
        (images == ["busybox:1.36", "busybox:1.36"])
            .then_some(())
            .ok_or(format!("{images:?}"))
    });
    let history = server.kubectl_ok(&["rollout", "history", "statefulset/web"]);
    assert!(
        history.contains("3 ") && !history.contains("\n1 "),
        "{history}"
    );
    nodes.check_running();
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "busybox:1.36"}]
"#;

#[test]
fn a_daemonset_puts_one_pod_on_every_node_including_a_new_one_and_rolls_out() {
    let server = TestServer::start();
    let mut nodes = TestSimNodes::start(&server, 3, &[]);
    wait_nodes_ready(&server, &mut nodes, &["sim-0", "sim-1", "sim-2"]);

    server.apply("agent.yaml", DAEMONSET);
    server.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    let on: Vec<String> = pods(&server, "app=agent")
        .into_iter()
        .map(|p| p.2)
        .collect();
    let mut on_sorted = on.clone();
    on_sorted.sort();
    assert_eq!(
        on_sorted,
        ["sim-0", "sim-1", "sim-2"],
        "bound by the scheduler"
    );

    let mut extra = TestSimNodes::start_in(&server, "extra-nodes", 1, &["--name-prefix", "extra"]);
    wait_nodes_ready(&server, &mut extra, &["extra-0"]);
    eventually(WAIT, "a Running pod on extra-0", || {
        let list = server.kubectl_json(&[
            "get",
            "pods",
            "-l",
            "app=agent",
            "--field-selector",
            "spec.nodeName=extra-0,status.phase=Running",
        ]);
        let n = list["items"].as_array().map_or(0, Vec::len);
        (n == 1).then_some(()).ok_or(format!("{n} pods"))
    });
    server.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);

    server.kubectl_ok(&["set", "image", "daemonset/agent", "agent=busybox:1.37"]);
    server.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    eventually(WAIT, "four pods on the new image", || {
        let p = pods(&server, "app=agent");
        let new = p.iter().filter(|p| p.1 == "busybox:1.37").count();
        (p.len() == 4 && new == 4)
            .then_some(())
            .ok_or(format!("{p:?}"))
    });
    let ds = server.kubectl_json(&["get", "daemonset", "agent"]);
    assert_eq!(
        ds["status"]["desiredNumberScheduled"], 4,
        "{}",
        ds["status"]
    );
    assert_eq!(
        ds["status"]["updatedNumberScheduled"], 4,
        "{}",
        ds["status"]
    );
    server.kubectl_ok(&["rollout", "restart", "daemonset/agent"]);
    server.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    eventually(WAIT, "four restarted pods", || {
        let list = server.kubectl_json(&["get", "pods", "-l", "app=agent"]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let restarted = items
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                !p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_null()
            })
            .count();
        (restarted == 4 && items.len() == 4)
            .then_some(())
            .ok_or(format!("{restarted} of {} restarted", items.len()))
    });
    let rev1 = server.kubectl_ok(&["rollout", "history", "daemonset/agent", "--revision=1"]);
    assert!(rev1.contains("busybox:1.36"), "{rev1}");
    server.kubectl_ok(&["rollout", "undo", "daemonset/agent", "--to-revision=1"]);
    server.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    let ds = server.kubectl_json(&["get", "daemonset", "agent"]);
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );
    nodes.check_running();
    extra.check_running();
}
