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

    server.apply(
        "busy.json",
        &deployment("busy", &image, 1, "while :; do :; done"),
    );
    server.apply(
        "idle.json",
        &deployment("idle", &image, 3, "exec sleep 3600"),
    );
    server.kubectl_ok(&[
        "autoscale",
        "deployment",
        "busy",
        "-n",
        "default",
        "--cpu-percent=50",
        "--min=1",
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

    eventually(
        Duration::from_secs(60),
        "busy scaled to 3",
        || match replicas(&server, "busy") {
            3 => Ok(()),
            n => Err(format!(
                "{n} replicas; {}",
                server.kubectl_ok(&["get", "hpa", "-A"])
            )),
        },
    );
    let hpa = server.kubectl_json(&["get", "hpa", "busy", "-n", "default", "-o", "json"]);
    assert_eq!(hpa["status"]["desiredReplicas"], 3, "{hpa}");
    let conditions = hpa["status"]["conditions"].to_string();
    // Right after the rescale AbleToScale says SucceededRescale; from the next sync on
    // (every 15 s; a loaded machine may get there first) it says ReadyForNewScale.
    assert!(
        conditions.contains("SucceededRescale") || conditions.contains("ReadyForNewScale"),
        "{conditions}"
    );
    assert!(conditions.contains("ValidMetricFound"), "{conditions}");
    // TARGETS shows current/target utilization, far above 50% for a busy loop on 50m.
    let table = server.kubectl_ok(&["get", "hpa", "busy", "-n", "default"]);
    let row = common::table_rows(&table);
    let targets = &row[1][2..4].join(" ");
    assert!(
        targets.starts_with("cpu: ") && targets.ends_with("%/50%") && !targets.contains("unknown"),
        "{table}"
    );
    let events = server.event_messages("default", "reason=SuccessfulRescale");
    assert!(
        events.contains(
            "New size: 3; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
    server.kubectl_ok(&[
        "delete",
        "deployment",
        "busy",
        "-n",
        "default",
        "--wait=false",
    ]);

    eventually(
        Duration::from_secs(60),
        "idle scaled down to 1",
        || match replicas(&server, "idle") {
            1 => Ok(()),
            n => Err(format!(
                "{n} replicas; {}",
                server.kubectl_ok(&["describe", "hpa", "idle", "-n", "default"])
            )),
        },
    );
    let describe = server.kubectl_ok(&["describe", "hpa", "idle", "-n", "default"]);
    assert!(describe.contains("All metrics below target"), "{describe}");
    server.kubectl_ok(&[
        "delete",
        "deployment",
        "idle",
        "-n",
        "default",
        "--wait=false",
    ]);
}

#[test]
fn an_hpa_reads_and_writes_the_same_through_autoscaling_v1_and_v2() {
    let server = TestServer::start();
    server.apply(
        "v2.yaml",
        "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: both, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: nothing}
  minReplicas: 1
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 30}
",
    );
    let v1 = server.kubectl_json(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "both",
        "-n",
        "default",
        "-o",
        "json",
    ]);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60, "{v1}");
    assert!(v1["spec"].get("metrics").is_none(), "{v1}");
    let annotations = &v1["metadata"]["annotations"];
    let metrics = annotations["autoscaling.alpha.kubernetes.io/metrics"]
        .as_str()
        .unwrap_or_default();
    assert!(metrics.contains("memory"), "{v1}");
    assert!(
        annotations["autoscaling.alpha.kubernetes.io/behavior"].is_string(),
        "{v1}"
    );

    // A v1 client writes back what it read, with a new CPU target and max.
    let mut edited = v1.clone();
    edited["spec"]["targetCPUUtilizationPercentage"] = serde_json::json!(70);
    edited["spec"]["maxReplicas"] = serde_json::json!(5);
    let path = server.write_file("edited.json", &edited.to_string());
    server.kubectl_ok(&["replace", "-f", path.to_str().expect("utf-8 path")]);

    let v2 = server.kubectl_json(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "both",
        "-n",
        "default",
        "-o",
        "json",
    ]);
    assert_eq!(v2["spec"]["maxReplicas"], 5, "{v2}");
    let metrics = &v2["spec"]["metrics"];
    assert_eq!(
        metrics[0]["resource"]["target"]["averageUtilization"], 70,
        "{v2}"
    );
    assert_eq!(metrics[1]["resource"]["name"], "memory", "{v2}");
    assert_eq!(
        v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 30,
        "{v2}"
    );
    assert!(
        v2["metadata"]["annotations"]
            .get("autoscaling.alpha.kubernetes.io/metrics")
            .is_none(),
        "{v2}"
    );

    // Created through v1: a CPU utilization metric at v2.
    server.apply(
        "v1.json",
        r#"{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler",
            "metadata":{"name":"old","namespace":"default"},
            "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"nothing"},
                    "maxReplicas":2,"targetCPUUtilizationPercentage":40}}"#,
    );
    let old = server.kubectl_json(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "old",
        "-n",
        "default",
        "-o",
        "json",
    ]);
    assert_eq!(
        old["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 40,
        "{old}"
    );
    let table = server.kubectl_ok(&["get", "hpa", "-n", "default"]);
    assert!(table.contains("/40%") && table.contains("/70%"), "{table}");
    server.kubectl_ok(&["delete", "hpa", "both", "old", "-n", "default"]);
}

#[test]
fn two_hpas_of_the_same_pods_both_stop_with_ambiguous_selector_until_one_goes() {
    // No node is needed: the Deployment's pods exist (Pending), which is what the
    // selectors are checked against.
    let server = TestServer::start_with(&["--horizontal-pod-autoscaler-sync-period", "1"]);
    server.apply(
        "shared.json",
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"shared","namespace":"default"},
            "spec":{"replicas":1,"selector":{"matchLabels":{"app":"shared"}},
              "template":{"metadata":{"labels":{"app":"shared"}},
                "spec":{"containers":[{"name":"app","image":"busybox"}]}}}}"#,
    );
    let hpa = |name: &str| {
        format!(
            r#"{{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
                "metadata":{{"name":"{name}","namespace":"default"}},
                "spec":{{"scaleTargetRef":{{"apiVersion":"apps/v1","kind":"Deployment","name":"shared"}},
                  "minReplicas":1,"maxReplicas":3,
                  "metrics":[{{"type":"Resource","resource":{{"name":"cpu",
                    "target":{{"type":"Utilization","averageUtilization":50}}}}}}]}}}}"#
        )
    };
    server.apply("first.json", &hpa("first"));
    server.apply("second.json", &hpa("second"));
    let scaling_active = |name: &str| {
        let h = server.kubectl_json(&["get", "hpa", name, "-n", "default", "-o", "json"]);
        h["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "ScalingActive")
            .cloned()
            .unwrap_or_default()
    };
    let expected = "pods by selector app=shared are controlled by multiple HPAs: \
                    [default/first default/second]";
    for name in ["first", "second"] {
        eventually(
            Duration::from_secs(30),
            "an AmbiguousSelector condition",
            || {
                let c = scaling_active(name);
                (c["status"] == "False"
                    && c["reason"] == "AmbiguousSelector"
                    && c["message"] == expected)
                    .then_some(())
                    .ok_or_else(|| c.to_string())
            },
        );
    }
    let events = server.event_messages("default", "reason=AmbiguousSelector");
    assert!(events.contains("controlled by multiple HPAs"), "{events}");

    server.kubectl_ok(&["delete", "hpa", "second", "-n", "default"]);
    eventually(
        Duration::from_secs(30),
        "first is no longer ambiguous",
        || {
            let c = scaling_active("first");
            (c["reason"].is_string() && c["reason"] != "AmbiguousSelector")
                .then_some(())
                .ok_or_else(|| c.to_string())
        },
    );
}
