//! Pods on the server's own node, through the real binary: `skiff server` registers its
//! node, and a pod bound to it is pulled, started in its own network namespace with an
//! address from the node's podCIDR, and answers `kubectl logs`, `exec` and `delete` as on
//! a kubeadm node. (Scheduling is the controllers issue: the test sets `spec.nodeName`.)

mod common;

use common::process::eventually;
use common::registry::{self, Registry};
use common::TestServer;
use std::time::Duration;

const NODE: &str = "n1";

fn registry_image(reg: &Registry) -> (tempfile::TempDir, String) {
    let layout = tempfile::tempdir().expect("layout dir");
    registry::build_busybox_layout(layout.path(), "t");
    reg.push(layout.path(), "t", "test/busybox:1");
    (layout, format!("{}/test/busybox:1", reg.host()))
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_pod_on_the_servers_node_runs_with_its_own_address_and_answers_logs_exec_and_delete() {
    let reg = Registry::start();
    let (_layout, image) = registry_image(&reg);
    let server = TestServer::start_with_agent_and(&["--node-name", NODE]);
    common::agent::wait_node_ready(&server, NODE, Duration::from_secs(30), || {});
    server.apply(
        "web.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"web","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","terminationGracePeriodSeconds":2,
                 "containers":[{{"name":"app","image":"{image}",
                   "command":["sh","-c","echo hello from $(hostname); exec sleep 3600"]}}]}}}}"#
        ),
    );
    let pod = eventually(Duration::from_secs(60), "the pod is Running", || {
        let p = server.kubectl_json(&["get", "pod", "web", "-n", "default", "-o", "json"]);
        if p["status"]["phase"] == "Running" {
            Ok(p)
        } else {
            Err(format!("{}", p["status"]))
        }
    });
    // Its address is from the node's range; the node's address is its hostIP.
    let node = server.kubectl_json(&["get", "node", NODE, "-o", "json"]);
    let cidr = node["spec"]["podCIDR"]
        .as_str()
        .expect("a podCIDR")
        .to_owned();
    let pod_ip = pod["status"]["podIP"].as_str().expect("a podIP").to_owned();
    let prefix = cidr.trim_end_matches("0/24");
    assert!(pod_ip.starts_with(prefix), "{pod_ip} not in {cidr}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["ready"], true,
        "{pod}"
    );

    let logs = eventually(Duration::from_secs(20), "the pod's log", || {
        let out = server.kubectl_ok(&["logs", "web", "-n", "default"]);
        if out.contains("hello from web") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert_eq!(logs.trim(), "hello from web");

    let run = server.kubectl(&[
        "exec",
        "web",
        "-n",
        "default",
        "--",
        "sh",
        "-c",
        "ip -4 addr show eth0; exit 3",
    ]);
    assert_eq!(run.code, Some(3), "{run}");
    assert!(run.stdout.contains(&pod_ip), "{run}");

    server.kubectl_ok(&[
        "delete",
        "pod",
        "web",
        "-n",
        "default",
        "--wait=true",
        "--timeout=30s",
    ]);
    let left = server.kubectl_ok(&["get", "pods", "-n", "default", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}
