//! The scheduler through the real binary and real kubectl: Nodes created and given a Ready
//! status by hand (no agent), pods bound and spread over them, a pod too big for any node
//! reported with kube-scheduler's summary, cordoned and tainted nodes avoided unless
//! tolerated, and a waiting pod bound once its node is uncordoned.

mod common;

use common::TestServer;
use std::collections::BTreeMap;
use std::time::Duration;

/// Polls `check` for up to `secs` seconds; the failure shows what was last seen.
#[track_caller]
fn eventually(server: &TestServer, what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    common::process::eventually(Duration::from_secs(secs), what, || {
        if check() {
            Ok(())
        } else {
            Err(format!("pods {:?}", placements(server)))
        }
    })
}

/// A Node with `cpu` cores, marked Ready through `nodes/status` as a kubelet would.
fn add_node(server: &TestServer, name: &str, cpu: &str) {
    server.apply(
        &format!("node-{name}.yaml"),
        &format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n"
        ),
    );
    let status = format!(
        r#"{{"status":{{"capacity":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"allocatable":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}}]}}}}"#
    );
    server.kubectl_ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
}

/// A pod requesting `cpu`; `extra` is appended to its spec (indented YAML).
fn add_pod(server: &TestServer, name: &str, cpu: &str, extra: &str) {
    server.apply(
        &format!("pod-{name}.yaml"),
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n{extra}  containers:\n  - name: c\n    image: busybox:1.36\n    resources:\n      requests: {{cpu: {cpu}}}\n"
        ),
    );
}

/// Pod name → node name ("" while pending).
fn placements(server: &TestServer) -> BTreeMap<String, String> {
    let out = server.kubectl_ok(&[
        "get",
        "pods",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(p, n)| (p.to_owned(), n.to_owned()))
        .collect()
}

fn failed_scheduling_messages(server: &TestServer, pod: &str) -> Vec<String> {
    let v = server.kubectl_json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod},reason=FailedScheduling"),
        "-o",
        "json",
    ]);
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "Warning" && e["source"]["component"] == "default-scheduler")
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

fn wait_for_default_service_account(server: &TestServer) {
    eventually(server, "the default service account exists", 30, || {
        server
            .kubectl(&["get", "serviceaccount", "default"])
            .success()
    });
}

#[test]
fn pods_are_bound_and_spread_and_a_pod_too_big_for_any_node_is_reported() {
    let server = TestServer::start();
    wait_for_default_service_account(&server);
    for n in ["n1", "n2", "n3"] {
        add_node(&server, n, "2");
    }
    for i in 0..6 {
        add_pod(&server, &format!("web-{i}"), "100m", "");
    }
    eventually(&server, "all six pods are bound", 30, || {
        let p = placements(&server);
        p.len() == 6 && p.values().all(|n| !n.is_empty())
    });
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for n in placements(&server).into_values() {
        *per_node.entry(n).or_default() += 1;
    }
    assert_eq!(
        per_node.into_values().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "equal pods on equal nodes spread evenly"
    );
    let events = server.kubectl_ok(&["get", "events", "--field-selector", "reason=Scheduled"]);
    assert!(
        events.contains("Successfully assigned default/web-0 to n"),
        "{events}"
    );

    add_pod(&server, "huge", "10", "");
    let expected = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are \
                    available: 3 No preemption victims found for incoming pod.";
    eventually(
        &server,
        "FailedScheduling is recorded for the huge pod",
        30,
        || {
            failed_scheduling_messages(&server, "huge")
                .iter()
                .any(|m| m == expected)
        },
    );
    let describe = server.kubectl_ok(&["describe", "pod", "huge"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");
    assert!(
        describe.contains("0/3 nodes are available: 3 Insufficient cpu."),
        "{describe}"
    );
    let cond = server.kubectl_ok(&[
        "get",
        "pod",
        "huge",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}"#,
    ]);
    assert_eq!(cond, "Unschedulable");
    assert_eq!(placements(&server)["huge"], "");
}

#[test]
fn cordoned_and_tainted_nodes_keep_pods_off_unless_tolerated() {
    let server = TestServer::start();
    wait_for_default_service_account(&server);
    for n in ["n1", "n2", "n3"] {
        add_node(&server, n, "4");
    }
    server.kubectl_ok(&["cordon", "n1"]);
    server.kubectl_ok(&["taint", "nodes", "n2", "dedicated=x:NoSchedule"]);
    for i in 0..4 {
        add_pod(&server, &format!("plain-{i}"), "100m", "");
    }
    add_pod(
        &server,
        "tolerant",
        "100m",
        "  nodeSelector: {kubernetes.io/hostname: n2}\n  tolerations:\n  - {key: dedicated, operator: Equal, value: x, effect: NoSchedule}\n",
    );
    add_pod(
        &server,
        "intolerant",
        "100m",
        "  nodeSelector: {kubernetes.io/hostname: n2}\n",
    );
    add_pod(
        &server,
        "wants-n1",
        "100m",
        "  nodeSelector: {kubernetes.io/hostname: n1}\n",
    );
    eventually(&server, "the plain and tolerant pods are bound", 30, || {
        let p = placements(&server);
        (0..4).all(|i| p.get(&format!("plain-{i}")).is_some_and(|n| !n.is_empty()))
            && p.get("tolerant").is_some_and(|n| !n.is_empty())
    });
    let p = placements(&server);
    for i in 0..4 {
        assert_eq!(
            p[&format!("plain-{i}")],
            "n3",
            "only n3 is open to plain pods"
        );
    }
    assert_eq!(p["tolerant"], "n2");
    let expected = "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
                    1 node(s) had untolerated taint {dedicated: x}, 1 node(s) were unschedulable. \
                    preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    eventually(&server, "the intolerant pod is reported", 30, || {
        failed_scheduling_messages(&server, "intolerant")
            .iter()
            .any(|m| m == expected)
    });
    assert_eq!(placements(&server)["wants-n1"], "");
    server.kubectl_ok(&["uncordon", "n1"]);
    eventually(
        &server,
        "the pod waiting for n1 is bound once it is uncordoned",
        30,
        || placements(&server)["wants-n1"] == "n1",
    );
    assert_eq!(placements(&server)["intolerant"], "");
}

/// The node's taints as `key:effect` strings.
fn taints(server: &TestServer, node: &str) -> Vec<String> {
    common::taint_keys(&server.kubectl_json(&["get", "node", node, "-o", "json"]))
}

#[test]
fn a_node_under_disk_pressure_is_tainted_and_gets_no_new_pods_until_it_recovers() {
    let server = TestServer::start();
    wait_for_default_service_account(&server);
    for n in ["n1", "n2"] {
        add_node(&server, n, "4");
    }
    let pressure = |on: bool| {
        let status = format!(
            r#"{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}},{{"type":"DiskPressure","status":"{}","reason":"KubeletHasDiskPressure","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}}]}}}}"#,
            if on { "True" } else { "False" }
        );
        server.kubectl_ok(&[
            "patch",
            "node",
            "n1",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
    };
    pressure(true);
    eventually(&server, "n1 gets the disk-pressure taint", 30, || {
        taints(&server, "n1").contains(&"node.kubernetes.io/disk-pressure:NoSchedule".to_string())
    });
    for i in 0..3 {
        add_pod(&server, &format!("p{i}"), "100m", "");
    }
    eventually(&server, "the pods are bound", 30, || {
        let p = placements(&server);
        (0..3).all(|i| p.get(&format!("p{i}")).is_some_and(|n| !n.is_empty()))
    });
    assert!(
        placements(&server).values().all(|n| n == "n2"),
        "{:?}",
        placements(&server)
    );
    pressure(false);
    eventually(&server, "the taint goes with the pressure", 30, || {
        taints(&server, "n1").is_empty()
    });
}
