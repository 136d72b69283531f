//! Pods on the server's own node, through the real binary: `skiff server` registers its
//! node, and a pod bound to it is pulled, started in its own network namespace with an
//! address from the node's podCIDR, and answers `kubectl logs`, `exec` and `delete` as on
//! a kubeadm node, inside a pod cgroup under its QoS class that holds the pod's limits.
//! (Scheduling is the controllers issue: the test sets `spec.nodeName`.)

mod common;

use common::process::eventually;
use common::registry::{self, Registry};
use common::TestServer;
use std::path::PathBuf;
use std::time::Duration;

const NODE: &str = "n1";

/// A server whose own node is Ready, and a busybox image in a local registry (the registry
/// and its layout live as long as the returned guard).
fn ready_node_with_image(
    extra_args: &[&str],
) -> (TestServer, String, (Registry, tempfile::TempDir)) {
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout dir");
    registry::build_busybox_layout(layout.path(), "t");
    reg.push(layout.path(), "t", "test/busybox:1");
    let image = format!("{}/test/busybox:1", reg.host());
    let args: Vec<&str> = ["--node-name", NODE]
        .iter()
        .chain(extra_args)
        .copied()
        .collect();
    let server = TestServer::start_with_agent_and(&args);
    common::agent::wait_node_ready(&server, NODE, Duration::from_secs(30), || {});
    (server, image, (reg, layout))
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_pod_on_the_servers_node_runs_with_its_own_address_and_answers_logs_exec_and_delete() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    server.apply(
        "web.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"web","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","terminationGracePeriodSeconds":2,
                 "containers":[{{"name":"app","image":"{image}",
                   "command":["sh","-c","echo hello from $(hostname); exec sleep 3600"],
                   "resources":{{"limits":{{"cpu":"500m","memory":"64Mi"}}}}}}]}}}}"#
        ),
    );
    let pod = server.wait_pod_phase("web", "Running", Duration::from_secs(60));
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
    // The log over a WebSocket (what the conformance suite reads): binary messages, then a
    // close frame. curl does not speak WebSocket, so the raw frames arrive as its body.
    for (protocol, opcode) in [("binary.k8s.io", 0x82u8), ("base64.binary.k8s.io", 0x81)] {
        let reply = server
            .request("GET", "/api/v1/namespaces/default/pods/web/log")
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Protocol", protocol)
            .send();
        assert_eq!(reply.status, 101, "{}", reply.text());
        assert_eq!(
            reply.header("sec-websocket-protocol").as_deref(),
            Some(protocol)
        );
        let frames = ws_frames(&reply.body);
        let (last_op, _) = frames.last().expect("a close frame");
        assert_eq!(*last_op, 0x88, "{frames:?}");
        let text: Vec<u8> = frames
            .iter()
            .filter(|(op, _)| *op == opcode)
            .flat_map(|(_, p)| p.clone())
            .collect();
        let text = if opcode == 0x81 {
            use base64::Engine as _;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .expect("base64"),
            )
            .unwrap()
        } else {
            String::from_utf8(text).unwrap()
        };
        assert_eq!(text.trim(), "hello from web", "{protocol}");
    }

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

    // Limits equal to requests make it Guaranteed: its cgroup is kubepods/pod<uid>, the
    // container's inside it, and the pod cgroup carries the pod's memory and cpu limits.
    assert_eq!(pod["status"]["qosClass"], "Guaranteed", "{pod}");
    let uid = pod["metadata"]["uid"].as_str().expect("a uid");
    let parent = server.cgroup_parent().expect("the agent's cgroup parent");
    let pod_cgroup = format!("/{parent}/kubepods/pod{uid}/");
    let own = server.kubectl_ok(&[
        "exec",
        "web",
        "-n",
        "default",
        "--",
        "cat",
        "/proc/self/cgroup",
    ]);
    assert!(
        own.lines().any(|l| l.contains(&pod_cgroup)),
        "the container is not in {pod_cgroup}: {own}"
    );
    let memory = pod_cgroup_file(&pod_cgroup, &["memory/memory.limit_in_bytes", "memory.max"]);
    assert_eq!(read_trimmed(&memory), (64 << 20).to_string(), "{memory:?}");
    let cpu = pod_cgroup_file(&pod_cgroup, &["cpu/cpu.cfs_quota_us", "cpu.max"]);
    assert!(
        read_trimmed(&cpu).starts_with("50000"),
        "{cpu:?}: {}",
        read_trimmed(&cpu)
    );

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
    // The pod cgroup goes with the pod.
    eventually(
        Duration::from_secs(10),
        "the pod cgroup is removed",
        || match memory.parent().filter(|d| d.exists()) {
            Some(d) => Err(format!("{d:?} still exists")),
            None => Ok(()),
        },
    );
}

/// Deletes pods of the default namespace and waits until they are gone.
/// (first byte, payload) of each unmasked WebSocket frame in `raw`.
fn ws_frames(raw: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= raw.len() {
        let op = raw[i];
        let (len, head) = match raw[i + 1] & 0x7f {
            126 => (u16::from_be_bytes([raw[i + 2], raw[i + 3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(raw[i + 2..i + 10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        out.push((op, raw[i + head..i + head + len].to_vec()));
        i += head + len;
    }
    out
}

fn delete_pods(server: &TestServer, names: &[&str]) {
    for name in names {
        server.kubectl_ok(&[
            "delete",
            "pod",
            name,
            "-n",
            "default",
            "--wait=true",
            "--timeout=30s",
        ]);
    }
}

/// The first of `candidates` (v1 `<controller>/<file>`, or a v2 file) that exists in the
/// cgroup `rel` on this host.
fn pod_cgroup_file(rel: &str, candidates: &[&str]) -> PathBuf {
    let root = PathBuf::from("/sys/fs/cgroup");
    candidates
        .iter()
        .map(|c| match c.split_once('/') {
            Some((controller, file)) => {
                root.join(controller).join(rel.trim_matches('/')).join(file)
            }
            None => root.join(rel.trim_matches('/')).join(c),
        })
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("none of {candidates:?} exists under {rel}"))
}

fn read_trimmed(p: &std::path::Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{p:?}: {e}"))
        .trim()
        .to_owned()
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_pod_that_fills_its_empty_dir_past_the_size_limit_is_evicted() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    server.apply(
        "filler.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"filler","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never",
                 "volumes":[{{"name":"scratch","emptyDir":{{"sizeLimit":"1Mi"}}}}],
                 "containers":[{{"name":"app","image":"{image}",
                   "volumeMounts":[{{"name":"scratch","mountPath":"/scratch"}}],
                   "command":["sh","-c","dd if=/dev/zero of=/scratch/fill bs=1024 count=2048; exec sleep 3600"]}}]}}}}"#
        ),
    );
    let pod = eventually(Duration::from_secs(60), "the pod is evicted", || {
        let p = server.kubectl_json(&["get", "pod", "filler", "-n", "default", "-o", "json"]);
        if p["status"]["reason"] == "Evicted" {
            Ok(p)
        } else {
            Err(format!("{}", p["status"]))
        }
    });
    let status = &pod["status"];
    // A BestEffort pod: its class's cgroup has the minimum cpu weight (shares 2 on v1).
    let parent = server.cgroup_parent().expect("the agent's cgroup parent");
    let class = pod_cgroup_file(
        &format!("/{parent}/kubepods/besteffort/"),
        &["cpu/cpu.shares", "cpu.weight"],
    );
    let expected = if class.ends_with("cpu.shares") {
        "2"
    } else {
        "1"
    };
    assert_eq!(read_trimmed(&class), expected, "{class:?}");
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(
        status["message"], "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ",
        "{status}"
    );
    let disruption = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
        .unwrap_or_else(|| panic!("no DisruptionTarget condition: {status}"));
    assert_eq!(disruption["reason"], "TerminationByKubelet", "{status}");
    // Killed at once, not left sleeping.
    let terminated = &status["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 137, "{status}");
    let events = server.event_messages("default", "involvedObject.name=filler,reason=Evicted");
    assert!(events.contains("exceeds the limit"), "{events}");
    delete_pods(&server, &["filler"]);

    // A container's own ephemeral-storage limit counts its writable layer (and logs); a
    // single limited container also limits the pod, which upstream checks first.
    server.apply(
        "writer.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"writer","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never",
                 "containers":[{{"name":"app","image":"{image}",
                   "resources":{{"limits":{{"ephemeral-storage":"1Mi"}}}},
                   "command":["sh","-c","dd if=/dev/zero of=/fill bs=1024 count=2048; exec sleep 3600"]}}]}}}}"#
        ),
    );
    let pod = server.wait_pod(
        "writer",
        "the writer is evicted",
        Duration::from_secs(60),
        |p| p["status"]["reason"] == "Evicted",
    );
    assert_eq!(
        pod["status"]["message"],
        "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. ",
        "{}",
        pod["status"]
    );
    delete_pods(&server, &["writer"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn under_disk_pressure_the_node_evicts_its_pods_lowest_priority_first() {
    let (mut server, image, _registry) = ready_node_with_image(&[]);
    server.apply(
        "high.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n",
    );
    for (name, class) in [("low", ""), ("high", "\"priorityClassName\":\"high\",")] {
        server.apply(
            &format!("{name}.json"),
            &format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},
                   "spec":{{"nodeName":"{NODE}",{class}"restartPolicy":"Never",
                     "containers":[{{"name":"app","image":"{image}","command":["sh","-c","exec sleep 3600"]}}]}}}}"#
            ),
        );
    }
    for name in ["low", "high"] {
        eventually(Duration::from_secs(60), &format!("{name} runs"), || {
            let p = server.kubectl_json(&["get", "pod", name, "-n", "default", "-o", "json"]);
            match p["status"]["phase"].as_str() {
                Some("Running") => Ok(()),
                _ => Err(format!("{}", p["status"])),
            }
        });
    }
    // Restarted with a threshold any free space is under: the node is now short of disk.
    // The running pods are adopted (not admitted again), then evicted.
    server.restart_with(&["--eviction-hard", "nodefs.available<100%"]);
    let evicted_at = |name: &str| {
        eventually(
            Duration::from_secs(60),
            &format!("{name} is evicted"),
            || {
                let p = server.kubectl_json(&["get", "pod", name, "-n", "default", "-o", "json"]);
                let status = &p["status"];
                if status["reason"] != "Evicted" {
                    return Err(format!("{status}"));
                }
                assert_eq!(status["phase"], "Failed", "{status}");
                let message = status["message"].as_str().unwrap_or("");
                assert!(
                    message.starts_with("The node was low on resource: ephemeral-storage. "),
                    "{status}"
                );
                status["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
                    .and_then(|c| c["lastTransitionTime"].as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no DisruptionTarget: {status}"))
            },
        )
    };
    let (low, high) = (evicted_at("low"), evicted_at("high"));
    assert!(
        low < high,
        "the low-priority pod goes first: {low} vs {high}"
    );
    let node = server.kubectl_json(&["get", "node", NODE, "-o", "json"]);
    let disk = common::status_condition(&node, "DiskPressure");
    assert_eq!(disk["status"], "True", "{disk}");
    // A new pod is refused while the pressure lasts.
    server.apply(
        "late.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"late","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","containers":[{{"name":"app","image":"{image}"}}]}}}}"#
        ),
    );
    let late = server.wait_pod_phase("late", "Failed", Duration::from_secs(30));
    assert_eq!(late["status"]["reason"], "Evicted", "{late}");
    assert_eq!(
        late["status"]["message"], "Pod was rejected: The node had condition: [DiskPressure]. ",
        "{late}"
    );
    assert!(
        late["status"]["containerStatuses"][0]["state"]["running"].is_null(),
        "never started: {late}"
    );
    delete_pods(&server, &["low", "high", "late"]);
}

/// Soft eviction: a threshold crossed counts only once it has been for its grace period;
/// then the node reports the pressure and evicts, giving the pod its own grace period
/// capped by `--eviction-max-pod-grace-period` (a hard eviction gives none).
#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_soft_threshold_evicts_after_its_grace_period_with_a_capped_pod_grace_period() {
    let (mut server, image, _registry) = ready_node_with_image(&[]);
    // `sleep` as the container's first process ignores SIGTERM: only the SIGKILL at the end
    // of the grace period stops it, so its end shows the grace period it was given.
    server.apply(
        "patient.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"patient","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never","terminationGracePeriodSeconds":60,
                 "containers":[{{"name":"app","image":"{image}","command":["sh","-c","exec sleep 3600"]}}]}}}}"#
        ),
    );
    server.wait_pod_phase("patient", "Running", Duration::from_secs(60));
    let restarted = chrono::Utc::now();
    server.restart_with(&[
        "--eviction-soft",
        "nodefs.available<100%",
        "--eviction-soft-grace-period",
        "nodefs.available=4s",
        "--eviction-max-pod-grace-period",
        "3",
    ]);
    let p = server.wait_pod(
        "patient",
        "patient is evicted",
        Duration::from_secs(60),
        |p| p["status"]["reason"] == "Evicted",
    );
    let status = &p["status"];
    assert_eq!(status["phase"], "Failed", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("The node was low on resource: ephemeral-storage. Threshold quantity: "),
        "{status}"
    );
    let time = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{v}: {e}"))
            .with_timezone(&chrono::Utc)
    };
    let events = server.kubectl_json(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=patient,reason=Evicted",
        "-o",
        "json",
    ]);
    let evicted = time(&events["items"][0]["firstTimestamp"]);
    assert!(
        (evicted - restarted).num_seconds() >= 4,
        "evicted at {evicted}, {restarted} + the 4 s grace period at the earliest"
    );
    let finished = time(&status["containerStatuses"][0]["state"]["terminated"]["finishedAt"]);
    let given = (finished - evicted).num_seconds();
    assert!(
        (2..=5).contains(&given),
        "killed {given} s after the eviction: the 3 s cap, not none nor its own 60 s"
    );
    // The next status update (every 10 s) reports it.
    eventually(Duration::from_secs(30), "DiskPressure", || {
        let node = server.kubectl_json(&["get", "node", NODE, "-o", "json"]);
        let disk = common::status_condition(&node, "DiskPressure");
        (disk["status"] == "True")
            .then_some(())
            .ok_or(disk.to_string())
    });
    delete_pods(&server, &["patient"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn an_https_readiness_probe_speaks_tls_to_a_self_signed_endpoint() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    // The API server's own HTTPS port answers /readyz to anyone, with a certificate the
    // kubelet does not know: upstream's prober does not verify it.
    let port = server.port();
    for (name, scheme) in [("tls", "HTTPS"), ("plain", "HTTP")] {
        server.apply(
            &format!("{name}.json"),
            &format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},
                   "spec":{{"nodeName":"{NODE}","terminationGracePeriodSeconds":0,
                     "containers":[{{"name":"app","image":"{image}","command":["sh","-c","exec sleep 3600"],
                       "readinessProbe":{{"periodSeconds":1,"httpGet":{{"host":"127.0.0.1","port":{port},
                         "path":"/readyz","scheme":"{scheme}"}}}}}}]}}}}"#
            ),
        );
    }
    let ready = |name: &str| {
        let p = server.kubectl_json(&["get", "pod", name, "-n", "default", "-o", "json"]);
        p["status"]["containerStatuses"][0]["ready"] == true
    };
    eventually(Duration::from_secs(60), "the HTTPS probe passes", || {
        if ready("tls") {
            Ok(())
        } else {
            Err("not ready".to_string())
        }
    });
    // Plain HTTP to the TLS port fails, with upstream's event.
    let failed = eventually(Duration::from_secs(30), "the HTTP probe fails", || {
        let out = server.event_messages("default", "involvedObject.name=plain,reason=Unhealthy");
        if out.contains("Readiness probe failed") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(!ready("plain"), "{failed}");
    delete_pods(&server, &["tls", "plain"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn unused_images_are_garbage_collected_past_the_high_threshold() {
    // Thresholds that any used disk crosses, checked every second: every unused image
    // goes, and the shortfall (the disk holds more than images) is a Node warning. The
    // minimum age is what spares an image between its pull and its container's creation
    // (as upstream), so it is short but not zero.
    let (server, image, (reg, _layout)) = ready_node_with_image(&[
        "--image-gc-high-threshold",
        "1",
        "--image-gc-low-threshold",
        "0",
        "--image-minimum-gc-age",
        "5s",
        "--image-gc-period",
        "1s",
    ]);
    let tools = tempfile::tempdir().expect("layout dir");
    registry::build_tools_layout(tools.path(), "t");
    reg.push(tools.path(), "t", "test/tools:1");
    let other = format!("{}/test/tools:1", reg.host());
    let pod = |name: &str, image: &str, script: &str, policy: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","terminationGracePeriodSeconds":1,"restartPolicy":"{policy}",
                 "containers":[{{"name":"c","image":"{image}","command":["sh","-c","{script}"]}}]}}}}"#
        )
    };
    server.apply(
        "keep.json",
        &pod("keep", &image, "exec sleep 3600", "Always"),
    );
    server.apply("once.json", &pod("once", &other, "true", "Never"));
    let images = || {
        let out = std::process::Command::new(common::skiff_binary())
            .args(["images", "ls", "-q", "--data-dir"])
            .arg(server.data_dir())
            .output()
            .expect("running skiff images ls");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    server.wait_pod_phase("once", "Succeeded", Duration::from_secs(60));
    // The exited container still holds its image (it could be restarted), as upstream.
    std::thread::sleep(Duration::from_secs(3));
    let held = images();
    assert!(
        held.contains("test/tools:1") && held.contains("test/busybox:1"),
        "{held}"
    );
    // With the pod gone, its image goes; the running pod's stays.
    server.kubectl(&["delete", "pod", "once"]).ok();
    eventually(
        Duration::from_secs(30),
        "the unused image is removed",
        || {
            let now = images();
            if !now.contains("test/tools:1") {
                Ok(now)
            } else {
                Err(now)
            }
        },
    );
    assert!(images().contains("test/busybox:1"));
    eventually(
        Duration::from_secs(10),
        "a FreeDiskSpaceFailed event",
        || {
            let events = server.event_messages("default", "reason=FreeDiskSpaceFailed");
            events
                .contains("Failed to garbage collect required amount of images. Attempted to free")
                .then_some(())
                .ok_or(events)
        },
    );
    delete_pods(&server, &["keep"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn safe_sysctls_are_set_in_the_pod_and_unsafe_ones_refuse_it() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    let pod = |name: &str, sysctl: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never",
                 "securityContext":{{"sysctls":[{{"name":"{sysctl}","value":"1"}}]}},
                 "containers":[{{"name":"c","image":"{image}",
                   "command":["sh","-c","cat /proc/sys/{}"]}}]}}}}"#,
            sysctl.replace('.', "/")
        )
    };
    server.apply("safe.json", &pod("safe", "kernel.shm_rmid_forced"));
    server.apply("unsafe.json", &pod("unsafe", "kernel.msgmax"));
    server.wait_pod_phase("safe", "Succeeded", Duration::from_secs(60));
    // The host's value is 0: the 1 was written in the container's own IPC namespace.
    assert_eq!(server.kubectl_ok(&["logs", "safe"]).trim(), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced")
            .unwrap()
            .trim(),
        "0"
    );
    let refused = server.wait_pod_phase("unsafe", "Failed", Duration::from_secs(60));
    assert_eq!(refused["status"]["reason"], "SysctlForbidden", "{refused}");
    assert_eq!(
        refused["status"]["message"],
        "Pod was rejected: forbidden sysctl: \"kernel.msgmax\" not allowlisted"
    );
    delete_pods(&server, &["safe", "unsafe"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_critical_pod_that_does_not_fit_preempts_a_lower_pod_on_the_node() {
    // Upstream's CriticalPodAdmissionHandler: a critical pod refused only for resources is
    // admitted, and the kubelet evicts pods it outranks to make the room.
    let (server, image, _registry) = ready_node_with_image(&[]);
    let alloc = server.kubectl_ok(&[
        "get",
        "node",
        NODE,
        "-o",
        "jsonpath={.status.allocatable.cpu}",
    ]);
    let alloc_milli = match alloc.trim().strip_suffix('m') {
        Some(m) => m.parse::<i64>().unwrap(),
        None => alloc.trim().parse::<i64>().unwrap() * 1000,
    };
    let pod = |name: &str, cpu: i64, class: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never","terminationGracePeriodSeconds":1{class},
                 "containers":[{{"name":"c","image":"{image}","command":["sh","-c","exec sleep 3600"],
                   "resources":{{"requests":{{"cpu":"{cpu}m"}}}}}}]}}}}"#
        )
    };
    server.apply("low.json", &pod("low", alloc_milli - 200, ""));
    server.wait_pod_phase("low", "Running", Duration::from_secs(60));
    // Not critical: refused, the running pod untouched.
    server.apply("plain.json", &pod("plain", 500, ""));
    let plain = server.wait_pod_phase("plain", "Failed", Duration::from_secs(30));
    assert_eq!(plain["status"]["reason"], "OutOfcpu", "{plain}");

    let critical = r#","priorityClassName":"system-node-critical""#;
    server.apply("crit.json", &pod("crit", 500, critical));
    server.wait_pod_phase("crit", "Running", Duration::from_secs(60));
    let low = server.wait_pod_phase("low", "Failed", Duration::from_secs(30));
    assert_eq!(low["status"]["reason"], "Preempting", "{low}");
    assert_eq!(
        low["status"]["message"],
        "Preempted in order to admit critical pod"
    );
    let disruption = low["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(disruption["status"], "True", "{low}");
    assert_eq!(disruption["reason"], "TerminationByKubelet");
    assert_eq!(
        disruption["message"],
        "Pod was preempted by Kubelet to accommodate a critical pod."
    );
    assert!(low["status"]["containerStatuses"][0]["state"]["terminated"].is_object());
    // The critical pod started only once its victim had stopped (the victim's 1 s grace
    // period puts a whole second between the two if it did not wait).
    let crit = server.kubectl_json(&["get", "pod", "crit", "-o", "json"]);
    let started = crit["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let finished = low["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !started.is_empty() && started >= finished,
        "crit started at {started:?}, low finished at {finished:?}"
    );
    let events = server.event_messages("default", "involvedObject.name=low,reason=Preempting");
    assert!(
        events.contains("Preempted in order to admit critical pod"),
        "no Preempting event: {events}"
    );
    delete_pods(&server, &["low", "plain", "crit"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn the_kubelet_rejects_pods_that_do_not_fit_and_a_daemon_set_backs_off_its_failed_pods() {
    // Pods bound with spec.nodeName never meet the scheduler: the kubelet's admission
    // (upstream's GeneralPredicates) is their only check.
    let (server, image, _registry) = ready_node_with_image(&[]);
    let pod = |name: &str, extra: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never","terminationGracePeriodSeconds":1,
                 "containers":[{{"name":"c","image":"{image}","command":["sh","-c","exec sleep 3600"]{extra}}}]}}}}"#
        )
    };
    let port = r#","ports":[{"containerPort":80,"hostPort":18181}]"#;
    server.apply("holder.json", &pod("holder", port));
    server.wait_pod_phase("holder", "Running", Duration::from_secs(60));

    server.apply("clash.json", &pod("clash", port));
    let clash = server.wait_pod_phase("clash", "Failed", Duration::from_secs(30));
    assert_eq!(clash["status"]["reason"], "NodePorts", "{clash}");
    assert_eq!(
        clash["status"]["message"],
        "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
    );
    let events = server.event_messages("default", "involvedObject.name=clash,reason=NodePorts");
    assert!(
        events.contains("Predicate NodePorts failed"),
        "no NodePorts event: {events}"
    );

    let greedy = r#","resources":{"requests":{"cpu":"1000"}}"#;
    server.apply("greedy.json", &pod("greedy", greedy));
    let refused = server.wait_pod_phase("greedy", "Failed", Duration::from_secs(30));
    assert_eq!(refused["status"]["reason"], "OutOfcpu", "{refused}");
    let msg = refused["status"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000, used: "
        ),
        "{msg}"
    );
    assert!(refused["status"]["containerStatuses"][0]["state"]["running"].is_null());

    // The kubelet watches its own Node (a metadata.name watch the Node authorizer allows):
    // a nodeSelector the node's labels do not match is refused.
    server.apply(
        "elsewhere.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"elsewhere","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never","nodeSelector":{{"disk":"none"}},
                 "containers":[{{"name":"c","image":"{image}"}}]}}}}"#
        ),
    );
    let elsewhere = server.wait_pod_phase("elsewhere", "Failed", Duration::from_secs(30));
    assert_eq!(elsewhere["status"]["reason"], "NodeAffinity", "{elsewhere}");

    // A terminating pod gives its port back once its containers are stopped, though its
    // object stays (a finalizer holds it here), as upstream's kubelet does: the next pod on
    // that port runs meanwhile.
    server.kubectl_ok(&[
        "patch",
        "pod",
        "holder",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["skiff.test/hold"]}}"#,
    ]);
    server.kubectl_ok(&["delete", "pod", "holder", "--wait=false"]);
    let holder = server.wait_pod(
        "holder",
        "holder's container stopped",
        Duration::from_secs(30),
        |p| !p["status"]["containerStatuses"][0]["state"]["terminated"].is_null(),
    );
    assert!(
        holder["metadata"]["deletionTimestamp"].is_string(),
        "{holder}"
    );
    assert_eq!(
        holder["status"]["podIP"],
        holder["status"]["podIPs"][0]["ip"]
    );
    assert!(
        holder["status"]["podIP"].is_string(),
        "it keeps its address"
    );
    server.apply("after.json", &pod("after", port));
    server.wait_pod_phase("after", "Running", Duration::from_secs(60));
    server.kubectl_ok(&[
        "patch",
        "pod",
        "holder",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    delete_pods(&server, &["clash", "greedy", "elsewhere", "after"]);

    // A DaemonSet whose pods every admission refuses (they claim another OS by label,
    // which the scheduler does not look at): the controller deletes the failed pods with a
    // doubling backoff (1 s, 2 s, 4 s…), not in a hot loop.
    server.apply(
        "ds.json",
        &format!(
            r#"{{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{{"name":"porter","namespace":"default"}},
               "spec":{{"selector":{{"matchLabels":{{"app":"porter"}}}},
                 "template":{{"metadata":{{"labels":{{"app":"porter","kubernetes.io/os":"windows"}}}},
                   "spec":{{"containers":[{{"name":"c","image":"{image}"}}]}}}}}}}}"#
        ),
    );
    std::thread::sleep(Duration::from_secs(6));
    let rejected = server.kubectl_json(&["get", "pods", "-l", "app=porter", "-o", "json"]);
    let reason = &rejected["items"][0]["status"]["reason"];
    assert_eq!(reason, "PodOSSelectorNodeLabelDoesNotMatch", "{rejected}");
    let creations = server
        .event_messages(
            "default",
            "involvedObject.name=porter,reason=SuccessfulCreate",
        )
        .lines()
        .count();
    assert!(
        (2..=5).contains(&creations),
        "{creations} DaemonSet pods in 6 s: the failed-pod backoff allows about 4"
    );
    let failed = server.event_messages(
        "default",
        "involvedObject.name=porter,reason=FailedDaemonPod",
    );
    assert!(
        failed.contains(&format!("on node {NODE}, will try to kill it")),
        "{failed}"
    );
    server.kubectl_ok(&[
        "delete",
        "daemonset",
        "porter",
        "--wait=true",
        "--timeout=30s",
    ]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn sub_path_expr_mounts_the_expanded_directory_and_refuses_an_escape_and_etc_file_volumes_win() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    let pod = |name: &str, dir_env: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never",
                 "volumes":[{{"name":"work","emptyDir":{{}}}}],
                 "containers":[{{"name":"c","image":"{image}",
                   "env":[{dir_env}],
                   "command":["sh","-c","echo hi > /sub/f; cat /all/$DIR/f"],
                   "volumeMounts":[{{"name":"work","mountPath":"/sub","subPathExpr":"$(DIR)"}},
                                   {{"name":"work","mountPath":"/all"}}]}}]}}}}"#
        )
    };
    server.apply(
        "expr.json",
        &pod(
            "expr",
            r#"{"name":"DIR","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}"#,
        ),
    );
    server.apply(
        "escape.json",
        &pod("escape", r#"{"name":"DIR","value":".."}"#),
    );
    // A container mounting a volume at /etc/hosts keeps it: no kubelet hosts file over it.
    server.apply(
        "hosts.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"hosts","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never",
                 "volumes":[{{"name":"h","emptyDir":{{}}}}],
                 "containers":[{{"name":"c","image":"{image}",
                   "command":["sh","-c","test -d /etc/hosts && echo own"],
                   "volumeMounts":[{{"name":"h","mountPath":"/etc/hosts"}}]}}]}}}}"#
        ),
    );
    server.wait_pod_phase("expr", "Succeeded", Duration::from_secs(60));
    assert_eq!(server.kubectl_ok(&["logs", "expr"]).trim(), "hi");
    // The checked sub path is pinned (bind-mounted in the pod's directory) for the
    // container to bind, for as long as the pod may run: a finished pod's pin goes (expr),
    // a running pod's stays until it is deleted (pinned).
    let data_dir = server.data_dir().display().to_string();
    let pins = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&data_dir) && l.contains("/volume-subpaths/work/c/0"))
            .count()
    };
    server.apply(
        "pinned.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"pinned","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never","terminationGracePeriodSeconds":1,
                 "volumes":[{{"name":"work","emptyDir":{{}}}}],
                 "containers":[{{"name":"c","image":"{image}","command":["sh","-c","exec sleep 3600"],
                   "volumeMounts":[{{"name":"work","mountPath":"/sub","subPath":"kept"}}]}}]}}}}"#
        ),
    );
    server.wait_pod_phase("pinned", "Running", Duration::from_secs(60));
    eventually(
        Duration::from_secs(30),
        "one pin, the running pod's",
        || {
            (pins() == 1)
                .then_some(())
                .ok_or_else(|| format!("{} pins", pins()))
        },
    );
    let waiting = eventually(Duration::from_secs(60), "escape refused", || {
        let p = server.kubectl_json(&["get", "pod", "escape"]);
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError")
            .then_some(w)
            .ok_or_else(|| p["status"].to_string())
    });
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or_default()
            .contains("error SubPath `..` must not contain '..'"),
        "{waiting}"
    );
    server.wait_pod_phase("hosts", "Succeeded", Duration::from_secs(60));
    assert_eq!(server.kubectl_ok(&["logs", "hosts"]).trim(), "own");
    // A configMap key mounted over /etc/resolv.conf by subPath wins over the node's file
    // (the conformance suite's "mountPath of existing file"); output left without a newline
    // still ends the log.
    server.kubectl_ok(&[
        "create",
        "configmap",
        "dns",
        "--from-literal=resolv.conf=nameserver 192.0.2.53",
    ]);
    server.apply(
        "resolv.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"resolv","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never",
                 "volumes":[{{"name":"dns","configMap":{{"name":"dns"}}}}],
                 "containers":[{{"name":"c","image":"{image}",
                   "command":["sh","-c","cat /etc/resolv.conf; echo; printf no-newline"],
                   "volumeMounts":[{{"name":"dns","mountPath":"/etc/resolv.conf","subPath":"resolv.conf"}}]}}]}}}}"#
        ),
    );
    server.wait_pod_phase("resolv", "Succeeded", Duration::from_secs(60));
    assert_eq!(
        server.kubectl_ok(&["logs", "resolv"]),
        "nameserver 192.0.2.53\nno-newline"
    );
    delete_pods(&server, &["expr", "escape", "hosts", "resolv", "pinned"]);
    eventually(Duration::from_secs(30), "the pin is unmounted", || {
        (pins() == 0)
            .then_some(())
            .ok_or_else(|| format!("{} pins", pins()))
    });
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_non_root_container_writes_its_termination_message_at_a_custom_path() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    server.apply(
        "msg.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"msg","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never",
                 "containers":[{{"name":"c","image":"{image}",
                   "securityContext":{{"runAsUser":10000}},
                   "terminationMessagePath":"/dev/termination-custom-log",
                   "command":["sh","-c","echo -n DONE > /dev/termination-custom-log"]}}]}}}}"#
        ),
    );
    let p = server.wait_pod_phase("msg", "Succeeded", Duration::from_secs(60));
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["message"], "DONE",
        "{p}"
    );
    delete_pods(&server, &["msg"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_privileged_container_holds_every_capability_the_node_may_hand_on() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    server.apply(
        "priv.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"priv","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","restartPolicy":"Never",
                 "containers":[{{"name":"c","image":"{image}",
                   "securityContext":{{"privileged":true}},
                   "command":["sh","-c","grep CapEff /proc/self/status"]}}]}}}}"#
        ),
    );
    let p = server.wait_pod_phase("priv", "Succeeded", Duration::from_secs(60));
    // The node's own bounding set (this test runs where the server does); a sandbox may
    // have dropped some, and asking for those failed the start with EPERM.
    let own = std::fs::read_to_string("/proc/self/status").expect("status");
    let bounding = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(str::trim)
        .expect("CapBnd");
    let effective = server.kubectl_ok(&["logs", "priv"]);
    assert_eq!(
        effective.trim().strip_prefix("CapEff:").map(str::trim),
        Some(bounding),
        "{p}"
    );
    delete_pods(&server, &["priv"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn pods_and_services_proxy_requests_to_the_pod_through_the_api_server() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    // busybox httpd with a CGI script that echoes the method, query and body it was sent.
    server.apply(
        "proxied.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default, labels: {{app: web}}}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {image}
    ports: [{{containerPort: 8080, name: http}}]
    command: ["sh", "-c"]
    args:
    - |
      mkdir -p /www/cgi-bin && echo index-page > /www/index.html
      printf '#!/bin/sh\necho "Content-Type: text/plain"\necho "X-Echo: yes"\necho\necho "$REQUEST_METHOD $QUERY_STRING"\nhead -c "${{CONTENT_LENGTH:-0}}"\n' > /www/cgi-bin/echo
      chmod +x /www/cgi-bin/echo
      printf '<html><body><a href="/index.html">home</a> <img src="pic.png"></body></html>' > /www/links.html
      printf '#!/bin/sh\nprintf "HTTP/1.1 302 Found\\r\\nLocation: /index.html\\r\\nAccess-Control-Allow-Origin: *\\r\\nContent-Length: 0\\r\\n\\r\\n"\n' > /www/cgi-bin/moved
      chmod +x /www/cgi-bin/moved
      exec httpd -f -p 8080 -h /www
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: nobody, namespace: default}}
spec:
  selector: {{app: nobody}}
  ports: [{{name: http, port: 80}}]
"#
        ),
    );
    server.wait_until("web is ready", 60, || {
        server
            .kubectl_ok(&[
                "get",
                "pod",
                "web",
                "-o",
                "jsonpath={.status.containerStatuses[0].ready}",
            ])
            .trim()
            == "true"
    });

    // The pod, on its first declared port and on a named one; kubectl's own --raw.
    let page = server.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web/proxy/index.html",
    ]);
    assert_eq!(page.trim(), "index-page");
    let page = server.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/http:web:8080/proxy/",
    ]);
    assert_eq!(page.trim(), "index-page");
    // Method, query, body and the backend's own headers go through.
    let reply = server
        .request(
            "POST",
            "/api/v1/namespaces/default/pods/web:8080/proxy/cgi-bin/echo?a=1&b=two",
        )
        .content_type("text/plain")
        .body("posted-body")
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "POST a=1&b=two\nposted-body");
    assert_eq!(reply.header("x-echo").as_deref(), Some("yes"));
    // RBAC: `get` on pods/proxy allows GET; a proxied OPTIONS has no verb, so only `*` does.
    server.kubectl_ok(&["create", "serviceaccount", "peeker"]);
    server.kubectl_ok(&[
        "create",
        "role",
        "peek",
        "--verb=get",
        "--resource=pods/proxy",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "peek",
        "--role=peek",
        "--serviceaccount=default:peeker",
    ]);
    let token = server
        .kubectl_ok(&["create", "token", "peeker"])
        .trim()
        .to_owned();
    let as_peeker = |method: &str| {
        server
            .request(
                method,
                "/api/v1/namespaces/default/pods/web/proxy/index.html",
            )
            .auth(common::http::Auth::Bearer(token.clone()))
            .send()
            .status
    };
    assert_eq!(as_peeker("GET"), 200);
    assert_eq!(as_peeker("OPTIONS"), 403);
    // Links of a proxied page, and a redirect's Location, lead back through the proxy, as
    // upstream rewrites them (a relative link stays); the pod's CORS headers stay behind.
    let pod_prefix = "/api/v1/namespaces/default/pods/web/proxy";
    let page = server.kubectl_ok(&["get", "--raw", &format!("{pod_prefix}/links.html")]);
    assert_eq!(
        page,
        format!(
            r#"<html><body><a href="{pod_prefix}/index.html">home</a> <img src="pic.png"></body></html>"#
        )
    );
    let moved = server
        .request("GET", &format!("{pod_prefix}/cgi-bin/moved"))
        .send();
    assert_eq!(moved.status, 302, "{}", moved.text());
    assert_eq!(
        moved.header("location"),
        Some(format!("{pod_prefix}/index.html"))
    );
    assert_eq!(moved.header("access-control-allow-origin"), None);
    // The proxy root redirects to its trailing-slash form, as upstream.
    let reply = server
        .request("GET", "/api/v1/namespaces/default/pods/web/proxy?x=1")
        .send();
    assert_eq!(reply.status, 301, "{}", reply.text());
    assert_eq!(
        reply.header("location").as_deref(),
        Some("/api/v1/namespaces/default/pods/web/proxy/?x=1")
    );
    // Nothing listens on 9999: 503 with the dial error, as upstream.
    let reply = server
        .request("GET", "/api/v1/namespaces/default/pods/web:9999/proxy/")
        .send();
    let status = reply.expect_status(503, "ServiceUnavailable");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("error trying to reach service: dial tcp "),
        "{status}"
    );

    // The service, by port name and by port number (mapped to the port's name), once the
    // endpoints controller has the ready pod.
    let by_name = eventually(Duration::from_secs(20), "the service proxy", || {
        let run = server.kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/web:http/proxy/cgi-bin/echo?via=svc",
        ]);
        if run.code == Some(0) {
            Ok(run.stdout)
        } else {
            Err(run.to_string())
        }
    });
    assert_eq!(by_name.trim(), "GET via=svc");
    let by_number = server.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:80/proxy/index.html",
    ]);
    assert_eq!(by_number.trim(), "index-page");
    let svc_page = server.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:80/proxy/links.html",
    ]);
    assert!(
        svc_page
            .contains(r#"<a href="/api/v1/namespaces/default/services/web:80/proxy/index.html">"#),
        "{svc_page}"
    );
    let reply = server
        .request("GET", "/api/v1/namespaces/default/services/web:81/proxy/")
        .send();
    let status = reply.expect_status(503, "ServiceUnavailable");
    assert_eq!(
        status["message"],
        "no service port 81 found for service \"web\""
    );
    let reply = server
        .request("GET", "/api/v1/namespaces/default/services/nobody/proxy/")
        .send();
    let status = reply.expect_status(503, "ServiceUnavailable");
    assert_eq!(
        status["message"],
        "no endpoints available for service \"nobody\""
    );
    let reply = server
        .request("GET", "/api/v1/namespaces/default/pods/missing/proxy/")
        .send();
    reply.expect_status(404, "NotFound");
    // Discovery lists both subresources with their options kinds.
    let core = common::json(&server.kubectl_ok(&["get", "--raw", "/api/v1"]));
    let kinds: Vec<(String, String)> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"].as_str().unwrap().ends_with("/proxy"))
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("nodes/proxy".to_owned(), "NodeProxyOptions".to_owned()),
            ("pods/proxy".to_owned(), "PodProxyOptions".to_owned()),
            (
                "services/proxy".to_owned(),
                "ServiceProxyOptions".to_owned()
            ),
        ]
    );
    server.kubectl_ok(&["delete", "service", "web", "nobody"]);
    delete_pods(&server, &["web"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn kubectl_debug_adds_an_ephemeral_container_that_shares_the_targets_processes() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    server.apply(
        "target.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"target","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","terminationGracePeriodSeconds":1,
                 "containers":[{{"name":"app","image":"{image}","command":["sh","-c","exec sleep 3600"]}}]}}}}"#
        ),
    );
    server.wait_pod_phase("target", "Running", Duration::from_secs(60));
    server.kubectl_ok(&[
        "debug",
        "target",
        &format!("--image={image}"),
        "--target=app",
        "-c",
        "dbg",
        "--",
        "sh",
        "-c",
        "echo polo; exec sleep 3600",
    ]);
    let pod = server.wait_pod(
        "target",
        "the ephemeral container runs",
        Duration::from_secs(30),
        |p| p["status"]["ephemeralContainerStatuses"][0]["state"]["running"].is_object(),
    );
    let st = &pod["status"]["ephemeralContainerStatuses"][0];
    assert_eq!(st["name"], "dbg");
    assert_eq!(st["ready"], false, "{st}");
    assert!(
        st["containerID"].as_str().unwrap().starts_with("skiff://"),
        "{st}"
    );
    assert_eq!(
        pod["metadata"]["generation"], 2,
        "adding it changes the spec"
    );
    // It sees the target's processes: the target's sleep is PID 1 of the shared namespace.
    let ps = server.kubectl_ok(&[
        "exec",
        "target",
        "-c",
        "dbg",
        "--",
        "sh",
        "-c",
        "ps -o pid,args",
    ]);
    assert!(
        ps.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some("1") && f.collect::<Vec<_>>().join(" ") == "sleep 3600"
        }),
        "{ps}"
    );
    let logs = eventually(Duration::from_secs(10), "the debug container's log", || {
        let out = server.kubectl_ok(&["logs", "target", "-c", "dbg"]);
        if out.contains("polo") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert_eq!(logs.trim(), "polo");
    let events = server.event_messages(
        "default",
        "involvedObject.fieldPath=spec.ephemeralContainers{dbg}",
    );
    assert!(
        events.contains("Started container dbg") || events.contains("Container started"),
        "{events}"
    );

    // The subresource reads the whole pod; a write may add, never remove or change.
    let via_sub = server
        .request(
            "GET",
            "/api/v1/namespaces/default/pods/target/ephemeralcontainers",
        )
        .send();
    assert_eq!(via_sub.status, 200, "{}", via_sub.text());
    let mut whole = via_sub.json();
    assert_eq!(whole["kind"], "Pod");
    assert_eq!(
        whole["spec"]["ephemeralContainers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    whole["spec"]["ephemeralContainers"] = serde_json::json!([]);
    let removed = server
        .request(
            "PUT",
            "/api/v1/namespaces/default/pods/target/ephemeralcontainers",
        )
        .content_type("application/json")
        .body(whole.to_string())
        .send();
    let status = removed.expect_status(422, "Invalid");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("existing ephemeral containers \"dbg\" may not be removed"),
        "{status}"
    );
    // A second one through PUT, with defaults left to the server; the first stays as it was.
    let mut whole = server
        .request(
            "GET",
            "/api/v1/namespaces/default/pods/target/ephemeralcontainers",
        )
        .send()
        .json();
    whole["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "dbg2", "image": image, "command": ["sh", "-c", "exec sleep 3600"]}));
    let added = server
        .request(
            "PUT",
            "/api/v1/namespaces/default/pods/target/ephemeralcontainers",
        )
        .content_type("application/json")
        .body(whole.to_string())
        .send();
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(
        added.json()["spec"]["ephemeralContainers"][1]["terminationMessagePath"],
        "/dev/termination-log"
    );
    // Not through the pod itself, and never on create.
    let patched = server.kubectl(&[
        "patch", "pod", "target", "--type=json",
        "-p", r#"[{"op":"add","path":"/spec/ephemeralContainers/-","value":{"name":"x","image":"busybox"}}]"#,
    ]);
    assert!(
        patched
            .stderr
            .contains("pod updates may not change fields other than"),
        "{patched}"
    );
    let created = server.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(&format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"born-debugged"}},
               "spec":{{"containers":[{{"name":"a","image":"{image}"}}],
                 "ephemeralContainers":[{{"name":"d","image":"{image}"}}]}}}}"#
        )),
    );
    assert!(
        created
            .stderr
            .contains("spec.ephemeralContainers: Forbidden: cannot be set on create"),
        "{created}"
    );
    server.wait_pod(
        "target",
        "the second debug container runs",
        Duration::from_secs(30),
        |p| {
            let running: Vec<_> = p["status"]["ephemeralContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["state"]["running"].is_object())
                .map(|s| s["name"].as_str().unwrap_or_default())
                .collect();
            running == ["dbg", "dbg2"]
        },
    );
    // What a debug container leaves running in the target's namespace ends with it, as it
    // would in a namespace of its own.
    server.kubectl_ok(&[
        "debug",
        "target",
        &format!("--image={image}"),
        "--target=app",
        "-c",
        "dbg3",
        "--",
        "sh",
        "-c",
        "sleep 1234 & sleep 1",
    ]);
    eventually(
        Duration::from_secs(30),
        "dbg3 ends and its leftover with it",
        || {
            let pod = server.kubectl_json(&["get", "pod", "target", "-o", "json"]);
            let done = pod["status"]["ephemeralContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == "dbg3" && s["state"]["terminated"].is_object());
            let ps = server.kubectl_ok(&[
                "exec",
                "target",
                "-c",
                "dbg",
                "--",
                "sh",
                "-c",
                "ps -o args",
            ]);
            if done && !ps.contains("sleep 1234") {
                Ok(())
            } else {
                Err(format!("done={done}: {ps}"))
            }
        },
    );
    delete_pods(&server, &["target"]);
}

/// (restartCount, containerID without `skiff://`) of container `name` in `pod`.
fn container_instance(pod: &serde_json::Value, name: &str) -> (i64, String) {
    let st = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no status for {name}: {pod}"));
    (
        st["restartCount"].as_i64().unwrap_or(-1),
        st["containerID"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("skiff://")
            .to_owned(),
    )
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_running_pod_is_resized_in_place_and_its_cgroups_follow() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    let res = |cpu: &str, mem: &str| {
        format!(
            r#"{{"requests":{{"cpu":"{cpu}","memory":"{mem}"}},"limits":{{"cpu":"{cpu}","memory":"{mem}"}}}}"#
        )
    };
    server.apply(
        "resize.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"rs","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","terminationGracePeriodSeconds":1,"restartPolicy":"OnFailure",
                 "containers":[
                   {{"name":"c1","image":"{image}","command":["sh","-c","exec sleep 3600"],"resources":{}}},
                   {{"name":"c2","image":"{image}","command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 1; done"],"resources":{},
                     "resizePolicy":[{{"resourceName":"memory","restartPolicy":"RestartContainer"}}]}}]}}}}"#,
            res("100m", "32Mi"),
            res("100m", "32Mi"),
        ),
    );
    let pod = server.wait_pod_phase("rs", "Running", Duration::from_secs(60));
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    // Every running container reports what it was given.
    let st = &pod["status"]["containerStatuses"][0];
    assert_eq!(st["resources"]["limits"]["cpu"], "100m", "{st}");
    assert_eq!(st["allocatedResources"]["memory"], "32Mi", "{st}");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    let parent = server
        .cgroup_parent()
        .expect("the agent's cgroup parent")
        .to_owned();
    let pod_cg = format!("/{parent}/kubepods/pod{uid}");
    let (_, c1_id) = container_instance(&pod, "c1");
    let quota =
        |rel: &str| read_trimmed(&pod_cgroup_file(rel, &["cpu/cpu.cfs_quota_us", "cpu.max"]));
    let memory = |rel: &str| {
        read_trimmed(&pod_cgroup_file(
            rel,
            &["memory/memory.limit_in_bytes", "memory.max"],
        ))
    };
    assert!(quota(&format!("{pod_cg}/{c1_id}")).starts_with("10000"));

    let resize = |container: &str, resources: &str| {
        let patch = format!(
            r#"{{"spec":{{"containers":[{{"name":"{container}","resources":{resources}}}]}}}}"#
        );
        server.kubectl_ok(&[
            "patch",
            "pod",
            "rs",
            "--subresource=resize",
            "--type=strategic",
            "-p",
            &patch,
        ]);
    };
    // Up: cpu and memory of c1 (NotRequired: no restart), through kubectl's --subresource.
    resize("c1", &res("300m", "64Mi"));
    let wait_resized = |what: &str, check: &dyn Fn(&serde_json::Value) -> bool| {
        server.wait_pod("rs", what, Duration::from_secs(30), |pod| {
            pod["status"]["observedGeneration"] == pod["metadata"]["generation"]
                && !pod["status"]["conditions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["type"] == "PodResizePending" || c["type"] == "PodResizeInProgress")
                && check(pod)
        })
    };
    let pod = wait_resized("c1 resized", &|p| {
        p["status"]["containerStatuses"][0]["resources"]["limits"]["cpu"] == "300m"
    });
    assert_eq!(pod["metadata"]["generation"], 2);
    assert_eq!(
        pod["status"]["containerStatuses"][0]["allocatedResources"]["memory"],
        "64Mi"
    );
    assert_eq!(
        container_instance(&pod, "c1"),
        (0, c1_id.clone()),
        "c1 was not restarted"
    );
    assert!(quota(&format!("{pod_cg}/{c1_id}")).starts_with("30000"));
    assert_eq!(
        memory(&format!("{pod_cg}/{c1_id}")),
        (64u64 << 20).to_string()
    );
    // Inside, the container sees its own cgroup at /sys/fs/cgroup, as the conformance
    // suite reads it (v2 when a cgroup2 file system is mounted there, else v1 paths).
    let inside = server.kubectl_ok(&[
        "exec", "rs", "-c", "c1", "--", "sh", "-c",
        "if mount -t cgroup2 | grep -q /sys/fs/cgroup; then head -n1 /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max; \
         else head -n1 /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes; fi",
    ]);
    let values: Vec<&str> = inside
        .lines()
        .filter(|l| !l.starts_with("==>") && !l.trim().is_empty())
        .collect();
    assert_eq!(values.len(), 2, "{inside}");
    assert!(values[0].starts_with("30000"), "{inside}");
    assert_eq!(values[1], (64u64 << 20).to_string(), "{inside}");
    let write = server.kubectl(&["exec", "rs", "-c", "c1", "--", "sh", "-c", "echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes || echo 1 > /sys/fs/cgroup/memory.max"]);
    assert_ne!(
        write.code,
        Some(0),
        "the container's cgroup is read-only to it: {write}"
    );
    // No Burstable pod on the node: its class gets the minimum weight (upstream sums the
    // class's requests; the kernel default would be 1024).
    let class = pod_cgroup_file(
        &format!("/{parent}/kubepods/burstable"),
        &["cpu/cpu.shares", "cpu.weight"],
    );
    assert_eq!(
        read_trimmed(&class),
        if class.ends_with("cpu.shares") {
            "2"
        } else {
            "1"
        }
    );
    // The pod cgroup covers both containers: 400m and 96Mi.
    assert!(quota(&pod_cg).starts_with("40000"), "{}", quota(&pod_cg));
    assert_eq!(memory(&pod_cg), (96u64 << 20).to_string());
    let events = server.event_messages("default", "involvedObject.name=rs,reason=ResizeCompleted");
    assert!(
        events.contains("Pod resize completed: {\"containers\":"),
        "{events}"
    );

    // c2's memory says RestartContainer: it is restarted with the new limit, although it
    // exits 0 on SIGTERM and the pod's policy is OnFailure.
    let (_, c2_before) = container_instance(&pod, "c2");
    resize("c2", &res("100m", "48Mi"));
    let pod = wait_resized("c2 restarted", &|p| {
        let (count, _) = container_instance(p, "c2");
        count == 1 && p["status"]["containerStatuses"][1]["state"]["running"].is_object()
    });
    let (_, c2_after) = container_instance(&pod, "c2");
    assert_ne!(c2_before, c2_after);
    assert_eq!(
        memory(&format!("{pod_cg}/{c2_after}")),
        (48u64 << 20).to_string()
    );
    assert_eq!(container_instance(&pod, "c1").0, 0);

    // More than the node has: Infeasible, and nothing changes until it is reverted.
    resize("c1", &res("100000", "64Mi"));
    let resize_pending = |pod: &serde_json::Value| {
        pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "PodResizePending")
            .cloned()
    };
    let pod = server.wait_pod(
        "rs",
        "the resize is pending",
        Duration::from_secs(30),
        |p| resize_pending(p).is_some(),
    );
    let pending = resize_pending(&pod).unwrap();
    assert_eq!(pending["reason"], "Infeasible", "{pending}");
    assert!(
        pending["message"]
            .as_str()
            .unwrap()
            .starts_with("Node didn't have enough capacity: cpu, requested: 100000100"),
        "{pending}"
    );
    assert!(quota(&format!("{pod_cg}/{c1_id}")).starts_with("30000"));
    resize("c1", &res("300m", "64Mi"));
    wait_resized("the pending resize is withdrawn", &|_| true);

    // What a resize may not do: change the QoS class, or anything but cpu and memory.
    let burstable = server.kubectl(&[
        "patch",
        "pod",
        "rs",
        "--subresource=resize",
        "--type=strategic",
        "-p",
        r#"{"spec":{"containers":[{"name":"c1","resources":{"requests":{"cpu":"100m"}}}]}}"#,
    ]);
    assert!(
        burstable
            .stderr
            .contains("Pod QOS Class may not change as a result of resizing"),
        "{burstable}"
    );
    let plain = server.kubectl(&[
        "patch",
        "pod",
        "rs",
        "--type=strategic",
        "-p",
        &format!(
            r#"{{"spec":{{"containers":[{{"name":"c1","resources":{}}}]}}}}"#,
            res("200m", "64Mi")
        ),
    ]);
    assert!(
        plain
            .stderr
            .contains("pod updates may not change fields other than"),
        "{plain}"
    );
    delete_pods(&server, &["rs"]);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn an_image_volume_mounts_an_images_files_read_only() {
    let (server, image, _registry) = ready_node_with_image(&[]);
    server.apply(
        "imgvol.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"imgvol","namespace":"default"}},
               "spec":{{"nodeName":"{NODE}","terminationGracePeriodSeconds":1,
                 "volumes":[{{"name":"tools","image":{{"reference":"{image}","pullPolicy":"Always"}}}}],
                 "containers":[{{"name":"c","image":"{image}","command":["sh","-c","exec sleep 3600"],
                   "volumeMounts":[{{"name":"tools","mountPath":"/volume"}}]}}]}}}}"#
        ),
    );
    let pod = server.wait_pod_phase("imgvol", "Running", Duration::from_secs(60));
    let listing = server.kubectl_ok(&[
        "exec",
        "imgvol",
        "--",
        "sh",
        "-c",
        "ls /volume/bin | head -n 3; test -f /volume/bin/busybox && echo has-busybox",
    ]);
    assert!(listing.contains("has-busybox"), "{listing}");
    let write = server.kubectl(&["exec", "imgvol", "--", "sh", "-c", "touch /volume/new"]);
    assert_ne!(write.code, Some(0), "{write}");
    assert!(write.stderr.contains("Read-only file system"), "{write}");
    // Defaults and validation as upstream.
    let got = server.kubectl_json(&["get", "pod", "imgvol", "-o", "json"]);
    assert_eq!(got["spec"]["volumes"][0]["image"]["pullPolicy"], "Always");
    let bad = server.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"noref"},
                "spec":{"volumes":[{"name":"v","image":{"pullPolicy":"Sometimes"}}],
                  "containers":[{"name":"c","image":"busybox"}]}}"#,
        ),
    );
    assert!(
        bad.stderr
            .contains("spec.volumes[0].image.reference: Required value"),
        "{bad}"
    );
    assert!(
        bad.stderr
            .contains("spec.volumes[0].image.pullPolicy: Unsupported value: \"Sometimes\""),
        "{bad}"
    );
    // Gone with the pod: no mount is left under its directory.
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    delete_pods(&server, &["imgvol"]);
    eventually(
        Duration::from_secs(10),
        "the image volume is unmounted",
        || {
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            match mounts.lines().find(|l| l.contains(&uid)) {
                Some(l) => Err(l.to_owned()),
                None => Ok(()),
            }
        },
    );
}
