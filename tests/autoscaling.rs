//! HorizontalPodAutoscaler end to end, on the server's own node with real containers and
//! the metrics the API server serves from the kubelet's stats: `kubectl autoscale` scales a
//! CPU-bound Deployment up to its maximum, and an HPA on an idle Deployment (no
//! scale-down stabilization) scales it down to its minimum. The server syncs HPAs every
//! 2 s (`--horizontal-pod-autoscaler-sync-period`) instead of 15 s.

mod common;

use common::process::eventually;
use common::registry::{self, Registry};
use common::TestServer;
use std::time::Duration;

const NODE: &str = "hpa-node";

fn deployment(name: &str, image: &str, replicas: i32, command: &str) -> String {
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}","namespace":"default"}},
           "spec":{{"replicas":{replicas},"selector":{{"matchLabels":{{"app":"{name}"}}}},
             "template":{{"metadata":{{"labels":{{"app":"{name}"}}}},
               "spec":{{"terminationGracePeriodSeconds":0,
                 "containers":[{{"name":"app","image":"{image}","command":["sh","-c","{command}"],
                   "resources":{{"requests":{{"cpu":"50m"}}}}}}]}}}}}}}}"#
    )
}

fn replicas(server: &TestServer, name: &str) -> i64 {
    server.kubectl_json(&["get", "deployment", name, "-n", "default", "-o", "json"])["spec"]
        ["replicas"]
        .as_i64()
        .unwrap_or(-1)
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn hpa_scales_a_busy_deployment_up_to_max_and_an_idle_one_down_to_min() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout dir");
    registry::build_busybox_layout(layout.path(), "t");
    reg.push(layout.path(), "t", "test/busybox:1");
    let image = format!("{}/test/busybox:1", reg.host());
    let server = TestServer::start_with_agent_and(&[
        "--node-name",
        NODE,
        "--horizontal-pod-autoscaler-sync-period",
        "2",
    ]);
    common::agent::wait_node_ready(&server, NODE, Duration::from_secs(30), || {});

    server.apply("busy.json", &deployment("busy", &image, 1, "while :; do :; done"));
    server.apply("idle.json", &deployment("idle", &image, 3, "exec sleep 3600"));
    server.kubectl_ok(&[
        "autoscale", "deployment", "busy", "-n", "default", "--cpu-percent=50", "--min=1",
        "--max=3",
    ]);
    server.apply(
        "idle-hpa.yaml",
        "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: idle, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: idle}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
",
    );

    eventually(Duration::from_secs(60), "busy scaled to 3", || {
        match replicas(&server, "busy") {
            3 => Ok(()),
            n => Err(format!("{n} replicas; {}", server.kubectl_ok(&["get", "hpa", "-A"]))),
        }
    });
    let hpa = server.kubectl_json(&["get", "hpa", "busy", "-n", "default", "-o", "json"]);
    assert_eq!(hpa["status"]["desiredReplicas"], 3, "{hpa}");
    let conditions = hpa["status"]["conditions"].to_string();
    assert!(conditions.contains("SucceededRescale"), "{conditions}");
    assert!(conditions.contains("ValidMetricFound"), "{conditions}");
    // TARGETS shows current/target utilization, far above 50% for a busy loop on 50m.
    let table = server.kubectl_ok(&["get", "hpa", "busy", "-n", "default"]);
    let row = common::table_rows(&table);
    let targets = &row[1][2..4].join(" ");
    assert!(
        targets.starts_with("cpu: ") && targets.ends_with("%/50%") && !targets.contains("unknown"),
        "{table}"
    );
    let events = server.kubectl_ok(&[
        "get", "events", "-n", "default", "--field-selector", "reason=SuccessfulRescale", "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("New size: 3; reason: cpu resource utilization (percentage of request) above target"),
        "{events}"
    );
    server.kubectl_ok(&["delete", "deployment", "busy", "-n", "default", "--wait=false"]);

    eventually(Duration::from_secs(60), "idle scaled down to 1", || {
        match replicas(&server, "idle") {
            1 => Ok(()),
            n => Err(format!("{n} replicas; {}", server.kubectl_ok(&["describe", "hpa", "idle", "-n", "default"]))),
        }
    });
    let describe = server.kubectl_ok(&["describe", "hpa", "idle", "-n", "default"]);
    assert!(describe.contains("All metrics below target"), "{describe}");
    server.kubectl_ok(&["delete", "deployment", "idle", "-n", "default", "--wait=false"]);
}
