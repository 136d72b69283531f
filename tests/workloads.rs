//! Workloads end to end with nothing faked in the API path: the real server's scheduler and
//! controllers place a Deployment's pods on `skiff sim-nodes` nodes, whose kubelets (on the
//! simulated runtime) report them Running and Ready; kubectl drives and observes it all.

mod common;

use common::agent::node_ready;
use common::process::eventually;
use common::sim_nodes::TestSimNodes;
use common::TestServer;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// Node name → number of the `app=web` pods bound to it, once every pod is Running.
fn running_pods_per_node(
    server: &TestServer,
    want: usize,
) -> Result<BTreeMap<String, usize>, String> {
    let pods = server.kubectl_json(&["get", "pods", "-l", "app=web"]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let live: Vec<_> = items
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    let running = live
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count();
    if live.len() != want || running != want {
        return Err(format!("{} pods, {running} Running", live.len()));
    }
    let mut per_node = BTreeMap::new();
    for p in live {
        let node = p["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *per_node.entry(node).or_insert(0) += 1;
    }
    Ok(per_node)
}

#[test]
fn a_deployment_is_scheduled_across_simulated_nodes_rolled_out_and_scaled() {
    let server = TestServer::start();
    let mut nodes = TestSimNodes::start(&server, 3, &[]);
    eventually(WAIT, "3 Ready simulated nodes", || {
        nodes.check_running();
        let ready = (0..3)
            .filter(|i| node_ready(&server, &format!("sim-{i}")))
            .count();
        (ready == 3).then_some(()).ok_or(format!("{ready} Ready"))
    });

    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=6",
    ]);
    server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let per_node = eventually(WAIT, "6 Running pods", || running_pods_per_node(&server, 6));
    // The scheduler's default spreading puts two on each node.
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|n| *n == 2), "{per_node:?}");
    let events = server.kubectl_ok(&["get", "events", "--field-selector", "reason=Scheduled"]);
    assert!(
        events.contains("Successfully assigned default/web-"),
        "{events}"
    );

    // A new image rolls out through a second ReplicaSet until every pod is new.
    server.kubectl_ok(&["set", "image", "deployment/web", "busybox=busybox:1.37"]);
    server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let rs = server.kubectl_json(&["get", "replicasets", "-l", "app=web"]);
    let sizes: Vec<(String, i64)> = rs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                r["spec"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(sizes.contains(&("busybox:1.37".into(), 6)), "{sizes:?}");
    assert!(sizes.contains(&("busybox:1.36".into(), 0)), "{sizes:?}");

    // Scaling down leaves three Running pods; the deployment reports them available.
    server.kubectl_ok(&["scale", "deployment/web", "--replicas=3"]);
    eventually(WAIT, "3 Running pods", || running_pods_per_node(&server, 3));
    eventually(WAIT, "3 available replicas", || {
        let d = server.kubectl_json(&["get", "deployment", "web"]);
        let available = d["status"]["availableReplicas"].as_i64().unwrap_or(0);
        (available == 3)
            .then_some(())
            .ok_or(format!("{}", d["status"]))
    });
    nodes.check_running();
}
