//! Disruptions end to end on simulated nodes: `kubectl drain` evicting through a
//! PodDisruptionBudget, a node whose heartbeat stops going Unknown and losing its pods to
//! the taint eviction controller, and pod GC removing the pods of a deleted Node.

mod common;

use common::agent::node_ready;
use common::process::eventually;
use common::sim_nodes::TestSimNodes;
use common::TestServer;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

fn wait_nodes_ready(server: &TestServer, nodes: &mut TestSimNodes, n: usize) {
    eventually(WAIT, "Ready simulated nodes", || {
        nodes.check_running();
        let ready = (0..n)
            .filter(|i| node_ready(server, &format!("sim-{i}")))
            .count();
        (ready == n).then_some(()).ok_or(format!("{ready} Ready"))
    });
}

/// The live, Ready pods of `app=web` with their nodes.
fn ready_pods(server: &TestServer) -> Vec<(String, String)> {
    common::ready_pods(server, "app=web")
}

#[test]
fn kubectl_drain_evicts_one_pod_at_a_time_within_the_disruption_budget() {
    let server = TestServer::start();
    let mut nodes = TestSimNodes::start(&server, 2, &[]);
    wait_nodes_ready(&server, &mut nodes, 2);
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=4",
    ]);
    server.kubectl_ok(&[
        "create",
        "poddisruptionbudget",
        "web",
        "--selector=app=web",
        "--min-available=3",
    ]);
    eventually(WAIT, "4 Ready pods, 2 per node", || {
        let pods = ready_pods(&server);
        let on0 = pods.iter().filter(|(_, n)| n == "sim-0").count();
        (pods.len() == 4 && on0 == 2)
            .then_some(())
            .ok_or(format!("{pods:?}"))
    });
    eventually(WAIT, "the budget allows one disruption", || {
        let pdb = server.kubectl_json(&["get", "pdb", "web"]);
        let s = &pdb["status"];
        (s["disruptionsAllowed"] == 1 && s["currentHealthy"] == 4 && s["desiredHealthy"] == 3)
            .then_some(())
            .ok_or(format!("{s}"))
    });

    let run = server.kubectl(&[
        "drain",
        "sim-0",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=50s",
    ]);
    let out = format!("{}\n{}", run.stdout, run.stderr);
    assert!(run.success(), "{out}\n{}", common::tail(&server.log(), 40));
    assert!(out.contains("node/sim-0 cordoned"), "{out}");
    assert!(
        out.matches("evicting pod default/web-").count() >= 2,
        "{out}"
    );
    // The second eviction had to wait for the first pod's replacement to be Ready.
    assert!(
        out.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{out}"
    );
    assert!(out.contains("node/sim-0 drained"), "{out}");

    let nodes_table = server.kubectl_ok(&["get", "node", "sim-0"]);
    assert!(
        nodes_table.contains("Ready,SchedulingDisabled"),
        "{nodes_table}"
    );
    let node = server.kubectl_json(&["get", "node", "sim-0"]);
    assert!(
        common::taint_keys(&node)
            .contains(&"node.kubernetes.io/unschedulable:NoSchedule".to_owned()),
        "{node}"
    );
    eventually(WAIT, "4 Ready pods on sim-1", || {
        let pods = ready_pods(&server);
        (pods.len() == 4 && pods.iter().all(|(_, n)| n == "sim-1"))
            .then_some(())
            .ok_or(format!("{pods:?}"))
    });
    server.kubectl_ok(&["uncordon", "sim-0"]);
    eventually(WAIT, "the unschedulable taint is removed", || {
        let node = server.kubectl_json(&["get", "node", "sim-0"]);
        let keys = common::taint_keys(&node);
        (!keys.iter().any(|k| k.contains("unschedulable")))
            .then_some(())
            .ok_or(format!("{keys:?}"))
    });
}

#[test]
fn a_node_that_stops_heartbeating_goes_unknown_and_its_pods_are_evicted_and_replaced() {
    let server = TestServer::start_with(&[
        // Above the kubelet's 10 s Lease renewal, or every node would flap.
        "--node-monitor-grace-period",
        "15s",
        "--node-monitor-period",
        "1s",
        "--default-unreachable-toleration-seconds",
        "3",
        "--default-not-ready-toleration-seconds",
        "3",
    ]);
    let mut nodes = TestSimNodes::start(&server, 2, &[]);
    wait_nodes_ready(&server, &mut nodes, 2);
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
    ]);
    let before = eventually(WAIT, "one Ready pod per node", || {
        let pods = ready_pods(&server);
        let on1: Vec<String> = pods
            .iter()
            .filter(|(_, n)| n == "sim-1")
            .map(|(p, _)| p.clone())
            .collect();
        (pods.len() == 2 && on1.len() == 1)
            .then_some(on1)
            .ok_or(format!("{pods:?}"))
    });
    let pod = server.kubectl_json(&["get", "pod", &before[0]]);
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains(
            r#""key":"node.kubernetes.io/unreachable","operator":"Exists","tolerationSeconds":3"#
        ),
        "{tolerations}"
    );

    server.kubectl_ok(&["annotate", "node", "sim-1", "sim.skiff.io/heartbeat=stop"]);
    let node = eventually(
        WAIT,
        "sim-1 goes Unknown and is tainted unreachable",
        || {
            let node = server.kubectl_json(&["get", "node", "sim-1"]);
            let keys = common::taint_keys(&node);
            let unknown = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "Unknown");
            (unknown
                && keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_owned())
                && keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_owned()))
            .then_some(node.clone())
            .ok_or(format!("{keys:?} {}", node["status"]["conditions"]))
        },
    );
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");

    eventually(
        WAIT,
        "the pod of sim-1 is evicted by the taint manager",
        || {
            let pod = server.kubectl_json(&["get", "pod", &before[0]]);
            let marked = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "DisruptionTarget" && c["reason"] == "DeletionByTaintManager"
                });
            (marked && !pod["metadata"]["deletionTimestamp"].is_null())
                .then_some(())
                .ok_or(format!("{}", pod["status"]))
        },
    );
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
    ]);
    assert!(
        events.contains(&format!("Marking for deletion Pod default/{}", before[0])),
        "{events}"
    );
    eventually(WAIT, "two Ready pods on sim-0", || {
        let pods = ready_pods(&server);
        (pods.len() == 2 && pods.iter().all(|(_, n)| n == "sim-0"))
            .then_some(())
            .ok_or(format!("{pods:?}"))
    });

    // The host comes back: its taints go and its stale pod is removed there.
    server.kubectl_ok(&["annotate", "node", "sim-1", "sim.skiff.io/heartbeat-"]);
    eventually(
        WAIT,
        "sim-1 is Ready and untainted, its old pod gone",
        || {
            let node = server.kubectl_json(&["get", "node", "sim-1"]);
            let keys = common::taint_keys(&node);
            let gone = !server.kubectl(&["get", "pod", &before[0]]).success();
            (node_ready(&server, "sim-1") && keys.is_empty() && gone)
                .then_some(())
                .ok_or(format!("taints {keys:?}, old pod gone: {gone}"))
        },
    );
}

#[test]
fn deleting_a_node_makes_pod_gc_remove_its_pods() {
    let server = TestServer::start_with(&["--pod-gc-orphan-quarantine", "1s"]);
    server.apply(
        "ghost.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: ghost\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\nspec:\n  nodeName: ghost\n  \
         containers:\n  - name: c\n    image: busybox:1.36\n",
    );
    // Bound to a node that exists: left alone.
    std::thread::sleep(Duration::from_secs(3));
    server.kubectl_ok(&["get", "pod", "orphan"]);
    server.kubectl_ok(&["delete", "node", "ghost", "--wait=false"]);
    eventually(WAIT, "pod GC deletes the pod of the deleted node", || {
        let run = server.kubectl(&["get", "pod", "orphan", "-o", "json"]);
        if run.success() {
            Err(common::json(&run.stdout)["status"].to_string())
        } else {
            Ok(())
        }
    });
}
