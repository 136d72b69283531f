//! `skiff sim-nodes` end to end: the real binary joins simulated nodes to a real server
//! (`--disable-agent`), and everything is observed with real kubectl: the nodes are Ready
//! with their synthetic capacity, a bound pod runs through the kubelet's code (Running,
//! Ready, an IP of its node's podCIDR, graceful deletion), the exit-code annotation makes
//! CrashLoopBackOff, the ready annotation keeps a pod unready, and the heartbeat annotation
//! freezes a node's Lease until it is removed. Each node holds one HTTP/2 connection.

mod common;

use common::agent::node_ready;
use common::process::eventually;
use common::sim_nodes::TestSimNodes;
use common::TestServer;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);
const POD: Duration = Duration::from_secs(60);

fn pod_manifest(name: &str, node: &str, annotations: &[(&str, &str)], readiness: bool) -> String {
    let ann: String = if annotations.is_empty() {
        " {}".into()
    } else {
        annotations
            .iter()
            .map(|(k, v)| format!("\n    {k}: \"{v}\""))
            .collect()
    };
    let probe = if readiness {
        "\n    readinessProbe:\n      httpGet: {path: /healthz, port: 8080}\n      periodSeconds: 1"
    } else {
        ""
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations:{ann}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: registry.example/never-pulled:1.0{probe}
"
    )
}

fn pod(server: &TestServer, name: &str) -> Value {
    server.kubectl_json(&["get", "pod", name])
}

fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, prefix) = cidr.split_once('/').expect("a CIDR");
    let (net, prefix): (Ipv4Addr, u32) = (net.parse().unwrap(), prefix.parse().unwrap());
    let ip: Ipv4Addr = ip.parse().expect("an IPv4 pod IP");
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn renew_time(server: &TestServer, node: &str) -> String {
    server.kubectl_json(&["get", "lease", "-n", "kube-node-lease", node])["spec"]["renewTime"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn simulated_nodes_join_run_pods_through_the_kubelet_and_obey_their_failure_annotations() {
    let server = TestServer::start();
    let started = Instant::now();
    let mut sims = TestSimNodes::start(&server, 3, &["--pods", "50", "--node-label", "zone=sim"]);

    // Three Ready nodes with the synthetic capacity and the simulated label.
    for name in ["sim-0", "sim-1", "sim-2"] {
        eventually(READY, &format!("node {name} Ready"), || {
            sims.check_running();
            node_ready(&server, name)
                .then_some(())
                .ok_or_else(|| server.kubectl(&["get", "nodes"]).output())
        });
    }
    eprintln!("3 simulated nodes Ready after {:?}", started.elapsed());
    let nodes = server.kubectl_ok(&["get", "nodes", "-l", "node.skiff.io/simulated=true"]);
    assert_eq!(
        nodes.lines().filter(|l| l.contains(" Ready ")).count(),
        3,
        "{nodes}"
    );
    let node = server.kubectl_json(&["get", "node", "sim-1"]);
    assert_eq!(node["metadata"]["labels"]["zone"], "sim");
    assert_eq!(node["status"]["capacity"]["cpu"], "4");
    // As a kubelet prints it.
    assert_eq!(node["status"]["capacity"]["memory"], "16777216Ki");
    assert_eq!(node["status"]["capacity"]["pods"], "50");

    // A bound pod: Running and Ready (its httpGet readiness probe answered by the
    // simulation) with an address of its node's podCIDR.
    let cidr = eventually(READY, "sim-1's podCIDR", || {
        let n = server.kubectl_json(&["get", "node", "sim-1"]);
        n["spec"]["podCIDR"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| n["spec"].to_string())
    });
    server.apply("web.yaml", &pod_manifest("web", "sim-1", &[], true));
    let web = eventually(POD, "pod web Running and Ready", || {
        let p = pod(&server, "web");
        (p["status"]["phase"] == "Running" && condition(&p, "Ready") == "True")
            .then(|| p.clone())
            .ok_or_else(|| p["status"].to_string())
    });
    let ip = web["status"]["podIP"].as_str().expect("a podIP").to_owned();
    assert!(
        in_cidr(&ip, &cidr),
        "pod IP {ip} is not in sim-1's podCIDR {cidr}"
    );
    let cs = &web["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true, "{cs}");
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    // The kubelet's status writes are recorded as upstream records them: its own entry
    // through the status subresource, owning what it reported.
    let managed = server.kubectl_json(&["get", "pod", "web", "--show-managed-fields"]);
    let entries = managed["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    let status_writer = entries
        .iter()
        .find(|e| e["fieldsV1"]["f:status"].get("f:podIP").is_some())
        .unwrap_or_else(|| panic!("an entry owns status.podIP: {entries:?}"));
    assert_eq!(status_writer["subresource"], "status", "{status_writer}");
    assert_eq!(status_writer["operation"], "Update", "{status_writer}");

    // Each node talks to the server over one HTTP/2 connection, as a kubelet does, not
    // one HTTP/1.1 connection per open watch and request.
    let connections = sims.connections_to(server.port());
    assert!(
        (3..=6).contains(&connections),
        "3 simulated nodes hold {connections} connections to the server"
    );

    // Graceful deletion completes through the kubelet.
    server.kubectl_ok(&["delete", "pod", "web", "--timeout=60s"]);
    let gone = server.kubectl(&["get", "pod", "web"]);
    assert!(gone.stderr.contains("NotFound"), "{gone}");

    // A crashing pod is restarted by the kubelet and backs off.
    server.apply(
        "crash.yaml",
        &pod_manifest(
            "crash",
            "sim-2",
            &[
                ("sim.skiff.io/exit-code", "3"),
                ("sim.skiff.io/run-seconds", "1"),
            ],
            false,
        ),
    );
    let mut saw_backoff = false;
    eventually(POD, "pod crash restarted in CrashLoopBackOff", || {
        let p = pod(&server, "crash");
        let cs = &p["status"]["containerStatuses"][0];
        saw_backoff |= cs["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        let restarts = cs["restartCount"].as_u64().unwrap_or(0);
        (saw_backoff && restarts >= 1 && cs["lastState"]["terminated"]["exitCode"] == 3)
            .then_some(())
            .ok_or_else(|| p["status"].to_string())
    });
    let listed = server.kubectl_ok(&["get", "pod", "crash"]);
    assert!(
        listed.contains("sim-") || listed.contains("crash"),
        "{listed}"
    );

    // A pod whose readiness fails runs but never becomes Ready.
    server.apply(
        "unready.yaml",
        &pod_manifest("unready", "sim-0", &[("sim.skiff.io/ready", "false")], true),
    );
    eventually(POD, "pod unready Running", || {
        let p = pod(&server, "unready");
        (p["status"]["phase"] == "Running")
            .then_some(())
            .ok_or_else(|| p["status"].to_string())
    });
    std::thread::sleep(Duration::from_secs(4));
    let p = pod(&server, "unready");
    assert_eq!(condition(&p, "Ready"), "False", "{}", p["status"]);

    // A stopped heartbeat freezes the node's Lease; removing the annotation revives it.
    eventually(READY, "sim-0's Lease", || {
        let r = renew_time(&server, "sim-0");
        (!r.is_empty()).then_some(()).ok_or(r)
    });
    server.kubectl_ok(&["annotate", "node", "sim-0", "sim.skiff.io/heartbeat=stop"]);
    // The node notices within its poll (3 s); a renewal in flight may still land.
    std::thread::sleep(Duration::from_secs(6));
    let frozen = renew_time(&server, "sim-0");
    std::thread::sleep(Duration::from_secs(13));
    sims.check_running();
    assert_eq!(
        renew_time(&server, "sim-0"),
        frozen,
        "the Lease of a stopped node was renewed"
    );
    // The other nodes live on.
    let other = renew_time(&server, "sim-1");
    eventually(Duration::from_secs(20), "sim-1's Lease renewed", || {
        let r = renew_time(&server, "sim-1");
        (r != other).then_some(()).ok_or(r)
    });
    server.kubectl_ok(&["annotate", "node", "sim-0", "sim.skiff.io/heartbeat-"]);
    eventually(
        Duration::from_secs(20),
        "sim-0's Lease renewed again",
        || {
            let r = renew_time(&server, "sim-0");
            (r != frozen).then_some(()).ok_or(r)
        },
    );
    sims.check_running();
}
