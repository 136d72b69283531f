//! The kubelet's pod lifecycle end to end: a real `skiff server` (API), the kubelet run
//! in-process against the real runtime (root: namespaces, mounts, cgroups) with the image
//! pulled from a local registry, checked with the real kubectl. The pod network here is a
//! host-side stand-in (no namespace: containers get their own empty network namespace),
//! since the network slice lands separately; a binder is not needed, the pods name their
//! node.
//!
//! A guard removes every container the kubelet made and the test's private cgroup parent,
//! also when a test fails.

mod common;

use common::process::eventually;
use common::registry::{self, Registry};
use common::TestServer;
use futures::future::BoxFuture;
use skiff::kubelet::{cri::Cri, runtime_cri::RuntimeCri, Kubelet, KubeletConfig};
use skiff::network::{NetworkError, PodNetwork, Sandbox, SandboxRequest};
use skiff::runtime::containers::facade::{Runtime, RuntimeOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const NODE: &str = "node-a";

/// Host-side stand-in for the pod network: `/etc/hosts` and resolv.conf files only.
struct HostFiles {
    dir: PathBuf,
    pods: Mutex<Vec<String>>,
}

impl PodNetwork for HostFiles {
    fn setup(&self, req: SandboxRequest) -> BoxFuture<'_, Result<Sandbox, NetworkError>> {
        Box::pin(async move {
            let d = self.dir.join(&req.id);
            let io = |e| NetworkError::Io {
                what: "writing pod files".into(),
                source: e,
            };
            std::fs::create_dir_all(&d).map_err(io)?;
            std::fs::write(
                d.join("hosts"),
                format!("127.0.0.1\tlocalhost\n127.0.0.1\t{}\n", req.hostname),
            )
            .map_err(io)?;
            std::fs::write(d.join("resolv.conf"), "nameserver 127.0.0.1\n").map_err(io)?;
            self.pods.lock().unwrap().push(req.id.clone());
            Ok(Sandbox {
                netns: None,
                ip: None,
                hosts_file: d.join("hosts"),
                resolv_conf: d.join("resolv.conf"),
            })
        })
    }
    fn teardown(&self, pod_id: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        self.pods.lock().unwrap().retain(|p| p != pod_id);
        let _ = std::fs::remove_dir_all(self.dir.join(pod_id));
        Box::pin(async { Ok(()) })
    }
    fn pods(&self) -> Vec<String> {
        self.pods.lock().unwrap().clone()
    }
}

/// A kubelet on its own thread and tokio runtime (the test thread runs kubectl).
struct RunningKubelet {
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningKubelet {
    fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningKubelet {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The node's state: runtime, network stand-in, directories; removes every container and
/// the private cgroup parent on drop.
struct Node {
    dir: tempfile::TempDir,
    cri: Arc<dyn Cri>,
    runtime: Arc<Runtime>,
    network: Arc<HostFiles>,
    cgroup_parent: String,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let cgroup_parent = format!("skiff-kubelet-test-{}", std::process::id());
        // The runtime (in this process) and its shims read it.
        std::env::set_var("SKIFF_CGROUP_PARENT", &cgroup_parent);
        let runtime = Arc::new(
            Runtime::open(
                &dir.path().join("agent"),
                RuntimeOptions {
                    shim_exe: Some(common::skiff_binary()),
                    ..Default::default()
                },
            )
            .expect("opening the runtime"),
        );
        let network = Arc::new(HostFiles {
            dir: dir.path().join("net"),
            pods: Mutex::new(Vec::new()),
        });
        Node {
            cri: Arc::new(RuntimeCri::new(runtime.clone())),
            runtime,
            network,
            dir,
            cgroup_parent,
        }
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Starts a kubelet (its client built on its own runtime: a kube client dies with the
    /// runtime that made it).
    fn start_kubelet(&self, server: &TestServer) -> RunningKubelet {
        start_kubelet(
            server,
            self.cri.clone(),
            self.network.clone(),
            self.logs(),
            self.dir.path().join("pods"),
        )
    }
}

fn start_kubelet(
    server: &TestServer,
    cri: Arc<dyn Cri>,
    network: Arc<dyn PodNetwork>,
    logs: PathBuf,
    root: PathBuf,
) -> RunningKubelet {
    let shutdown = CancellationToken::new();
    let kubeconfig = server.kubeconfig_path();
    let static_dir = root.with_file_name("pod-manifests");
    let mk = move |client| KubeletConfig {
        node_name: NODE.into(),
        client,
        runtime: cri,
        network,
        pod_log_dir: logs,
        root_dir: root,
        host_ips: vec!["127.0.0.1".into()],
        allocatable_cpu_milli: 0,
        allocatable_memory_bytes: 0,
        static_pod_dir: Some(static_dir),
        eviction: None,
        image_gc: None,
    };
    let s = shutdown.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "skiff::kubelet=info".into()))
        .with_test_writer()
        .try_init();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
            let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("client config");
            config.proxy_url = None;
            let client = kube::Client::try_from(config).expect("client");
            if let Err(e) = Kubelet::new(mk(client)).run(s).await {
                eprintln!("kubelet failed: {e}");
            }
        });
        // Waits on running containers are blocking calls: do not wait for them.
        rt.shutdown_background();
    });
    RunningKubelet {
        shutdown,
        thread: Some(thread),
    }
}

impl Node {
    fn containers(&self) -> Vec<skiff::runtime::containers::ContainerState> {
        block_on(self.runtime.list()).expect("listing containers")
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

impl Drop for Node {
    fn drop(&mut self) {
        let rt = self.runtime.clone();
        block_on(async move {
            for c in rt.list().await.unwrap_or_default() {
                let _ = rt.remove(&c.id, true).await;
            }
        });
        // Memory-backed volumes of pods still on the node.
        common::node::unmount_under(self.dir.path());
        // Pod cgroups (kubepods/…) stay when the kubelet stops with pods still on the node.
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            common::node::remove_cgroup_tree(&h.path().join(&self.cgroup_parent));
        }
        common::node::remove_cgroup_tree(&Path::new("/sys/fs/cgroup").join(&self.cgroup_parent));
    }
}

fn pod_manifest(name: &str, image: &str, script: &str, extra_spec: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},
           "spec":{{"nodeName":"{NODE}","terminationGracePeriodSeconds":1,{extra_spec}
             "containers":[{{"name":"app","image":"{image}","imagePullPolicy":"IfNotPresent",
               "command":["sh","-c",{script:?}]}}]}}}}"#
    )
}

fn registry_image(reg: &Registry) -> (tempfile::TempDir, String) {
    let layout = tempfile::tempdir().expect("layout dir");
    registry::build_busybox_layout(layout.path(), "t");
    reg.push(layout.path(), "t", "test/busybox:1");
    (layout, format!("{}/test/busybox:1", reg.host()))
}

fn get_pod(server: &TestServer, name: &str) -> serde_json::Value {
    server.kubectl_json(&["get", "pod", name])
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn pods_run_crash_loop_log_and_are_deleted_gracefully_on_the_real_runtime() {
    let server = TestServer::start();
    let reg = Registry::start();
    let (_layout, image) = registry_image(&reg);
    let node = Node::new();
    let kubelet = node.start_kubelet(&server);

    let web = server.write_file(
        "web.json",
        &pod_manifest(
            "web",
            &image,
            "echo hello from $(hostname); exec /bin/busybox sleep 3600",
            "",
        ),
    );
    server.kubectl_ok(&["apply", "-f", &web.to_string_lossy()]);
    let pod = eventually(Duration::from_secs(60), "web Running", || {
        let p = get_pod(&server, "web");
        if p["status"]["phase"] == "Running" {
            Ok(p)
        } else {
            Err(format!(
                "{}\n{}",
                p["status"],
                server.kubectl_ok(&["get", "events"])
            ))
        }
    });
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap()
            .starts_with("skiff://k8s-"),
        "{cs}"
    );
    assert!(cs["imageID"].as_str().unwrap().contains("@sha256:"), "{cs}");
    assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    // The CRI log in upstream's layout.
    let log = node.logs().join(format!("default_web_{uid}/app/0.log"));
    let text = eventually(Duration::from_secs(10), "the container's log", || {
        std::fs::read_to_string(&log)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                if t.contains("hello from web") {
                    Ok(t)
                } else {
                    Err(t)
                }
            })
    });
    assert!(text.contains(" stdout F hello from web"), "{text}");
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    for reason in ["Pulling", "Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "{reason} missing in:\n{events}");
    }

    // A crashing container: restarted at once, then CrashLoopBackOff with upstream's message.
    let crash = server.write_file(
        "crash.json",
        &pod_manifest("crash", &image, "echo boom; exit 2", ""),
    );
    server.kubectl_ok(&["apply", "-f", &crash.to_string_lossy()]);
    let p = eventually(Duration::from_secs(60), "crash in CrashLoopBackOff", || {
        let p = get_pod(&server, "crash");
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        if w["reason"] == "CrashLoopBackOff" {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    });
    let crash_uid = p["metadata"]["uid"].as_str().unwrap();
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(
        cs["state"]["waiting"]["message"],
        format!("back-off 10s restarting failed container=app pod=crash_default({crash_uid})")
    );
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 2);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(cs["restartCount"], 1);
    let table = server.kubectl_ok(&["get", "pod", "crash"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    assert!(node
        .logs()
        .join(format!("default_crash_{crash_uid}/app/1.log"))
        .exists());

    // Graceful deletion: stop signal, SIGKILL after the grace period, the object goes.
    server.kubectl_ok(&["delete", "pod", "web", "--timeout=30s"]);
    eventually(Duration::from_secs(15), "web's containers removed", || {
        let left: Vec<_> = node
            .containers()
            .into_iter()
            .filter(|c| c.labels.get("io.kubernetes.pod.uid") == Some(&uid))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} left", left.len()))
        }
    });
    assert!(
        !node.logs().join(format!("default_web_{uid}")).exists(),
        "pod logs removed with the pod"
    );
    kubelet.stop();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn a_restarted_kubelet_adopts_running_containers_and_cleans_up_deleted_pods() {
    let server = TestServer::start();
    let reg = Registry::start();
    let (_layout, image) = registry_image(&reg);
    let node = Node::new();
    let kubelet = node.start_kubelet(&server);
    for name in ["keep", "gone"] {
        let f = server.write_file(
            &format!("{name}.json"),
            &pod_manifest(name, &image, "exec /bin/busybox sleep 3600", ""),
        );
        server.kubectl_ok(&["apply", "-f", &f.to_string_lossy()]);
    }
    for name in ["keep", "gone"] {
        eventually(Duration::from_secs(60), "Running", || {
            let p = get_pod(&server, name);
            if p["status"]["phase"] == "Running" {
                Ok(())
            } else {
                Err(p["status"].to_string())
            }
        });
    }
    let before = get_pod(&server, "keep")["status"]["containerStatuses"][0].clone();
    let gone_uid = get_pod(&server, "gone")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    kubelet.stop();
    // Deleted while the kubelet is down (force: nobody is there to finish it).
    server.kubectl_ok(&["delete", "pod", "gone", "--grace-period=0", "--force"]);
    let kubelet = node.start_kubelet(&server);
    eventually(Duration::from_secs(20), "gone's containers removed", || {
        let n = node
            .containers()
            .iter()
            .filter(|c| c.labels.get("io.kubernetes.pod.uid") == Some(&gone_uid))
            .count();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} left"))
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = get_pod(&server, "keep")["status"]["containerStatuses"][0].clone();
    assert_eq!(
        after["containerID"], before["containerID"],
        "the same container, not a new one"
    );
    assert_eq!(after["restartCount"], 0);
    assert_eq!(
        after["state"]["running"]["startedAt"],
        before["state"]["running"]["startedAt"]
    );
    assert_eq!(node.containers().len(), 1);
    server.kubectl_ok(&["delete", "pod", "keep", "--timeout=30s"]);
    kubelet.stop();
}

/// Creates `n` pods through the API and measures, through a watch, the time from each
/// pod's ADDED event to the event that shows it Running. Returns sorted latencies and the
/// wall time of the whole batch.
fn measure_startup(server: &TestServer, image: &str, n: usize) -> (Vec<Duration>, Duration) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::watcher;
    use std::collections::HashMap;
    use std::time::Instant;
    block_on(async {
        let client = server.client().await;
        let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
        let mut stream = std::pin::pin!(watcher(
            pods.clone(),
            watcher::Config::default().labels("bench=startup")
        ));
        // The initial (empty) list first, so every pod is seen ADDED afterwards.
        while let Some(ev) = stream.next().await {
            if matches!(ev, Ok(watcher::Event::InitDone)) {
                break;
            }
        }
        let started = Instant::now();
        let image = image.to_string();
        let creator = tokio::spawn(async move {
            for i in 0..n {
                let p: Pod = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("bench-{i}"), "labels": {"bench": "startup"}},
                    "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 0,
                        "automountServiceAccountToken": false,
                        "containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                            "command": ["/bin/busybox", "sleep", "3600"]}]}
                }))
                .expect("pod");
                pods.create(&Default::default(), &p)
                    .await
                    .expect("creating a pod");
            }
        });
        let mut added: HashMap<String, Instant> = HashMap::new();
        let mut running: HashMap<String, Duration> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while running.len() < n && Instant::now() < deadline {
            let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await
            else {
                continue;
            };
            let Ok(watcher::Event::Apply(p)) = ev else {
                continue;
            };
            let name = p.metadata.name.clone().unwrap_or_default();
            let seen = *added.entry(name.clone()).or_insert_with(Instant::now);
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                running.entry(name).or_insert_with(|| seen.elapsed());
            }
        }
        creator.await.expect("creator");
        let total = started.elapsed();
        assert_eq!(running.len(), n, "every pod reached Running");
        let mut v: Vec<Duration> = running.into_values().collect();
        v.sort();
        (v, total)
    })
}

fn report(what: &str, v: &[Duration], total: Duration) -> (Duration, Duration) {
    let p = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let (p50, p99) = (p(0.50), p(0.99));
    eprintln!(
        "[bench] {what}: {} pods, creation→Running p50 {:?} p99 {:?}, {:.1} pods/s",
        v.len(),
        p50,
        p99,
        v.len() as f64 / total.as_secs_f64()
    );
    (p50, p99)
}

#[test]
fn pod_startup_latency_with_the_fake_runtime_is_the_kubelets_own_overhead() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = "busybox:bench";
    let cri = Arc::new(skiff::kubelet::fake_cri::FakeCri::new().with_image(image));
    let network = Arc::new(HostFiles {
        dir: dir.path().join("net"),
        pods: Mutex::new(Vec::new()),
    });
    let kubelet = start_kubelet(
        &server,
        cri,
        network,
        dir.path().join("logs"),
        dir.path().join("pods"),
    );
    let (v, total) = measure_startup(&server, image, 50);
    let (_, p99) = report("fake runtime", &v, total);
    // Upstream's SLO is 5 s; the issue's target for the whole node is 150 ms.
    assert!(p99 < Duration::from_secs(5), "p99 {p99:?}");
    kubelet.stop();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn pod_startup_latency_on_the_real_runtime() {
    let server = TestServer::start();
    let reg = Registry::start();
    let (_layout, image) = registry_image(&reg);
    let node = Node::new();
    // The image is present before the clock starts (the benchmark's premise).
    block_on(node.cri.pull_image(&image, None)).expect("pulling the image");
    let kubelet = node.start_kubelet(&server);
    let (v, total) = measure_startup(&server, &image, 50);
    let (_, p99) = report("real runtime", &v, total);
    assert!(p99 < Duration::from_secs(5), "p99 {p99:?}");
    server.kubectl_ok(&["delete", "pods", "-l", "bench=startup", "--wait=false"]);
    eventually(Duration::from_secs(60), "bench pods cleaned up", || {
        let n = node.containers().len();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} containers left"))
        }
    });
    kubelet.stop();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn config_env_exec_probes_and_configmap_updates_on_the_real_runtime() {
    let server = TestServer::start();
    let reg = Registry::start();
    let (_layout, image) = registry_image(&reg);
    let node = Node::new();
    let kubelet = node.start_kubelet(&server);
    server.kubectl_ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=hello",
        "--from-literal=data-1=value-1",
    ]);
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=pass-word=s3cret",
    ]);
    // The environment as the runtime gave it (PID 1's, before the shell drops the names
    // with dashes it cannot hold as variables).
    // Ready once it has written /tmp/ready; alive until it removes /tmp/alive after 4s.
    let script = "echo \"env=$GREETING\"; /bin/busybox tr '\\0' '\\n' < /proc/1/environ; cat /etc/cfg/greeting; echo; echo ok > /tmp/alive; \
                  /bin/busybox sleep 1; echo ok > /tmp/ready; /bin/busybox sleep 3; \
                  /bin/busybox rm /tmp/alive; exec /bin/busybox sleep 3600";
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "tmp", "emptyDir": {}}],
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}}],
                "envFrom": [{"configMapRef": {"name": "cfg"}}, {"prefix": "p-", "configMapRef": {"name": "cfg"}},
                    {"secretRef": {"name": "sec"}}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "tmp", "mountPath": "/tmp"}],
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "initialDelaySeconds": 2,
                    "periodSeconds": 1, "failureThreshold": 2}}]}
    });
    let f = server.write_file("probed.json", &manifest.to_string());
    server.kubectl_ok(&["apply", "-f", &f.to_string_lossy()]);
    let p = eventually(Duration::from_secs(30), "probed Ready", || {
        let p = get_pod(&server, "probed");
        let ready = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready {
            Ok(p)
        } else {
            let events = server.kubectl_ok(&["get", "events"]);
            Err(format!("{}\n{events}", p["status"]))
        }
    });
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let log = node.logs().join(format!("default_probed_{uid}/app/0.log"));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("env=hello") && text.contains(" stdout F hello"),
        "{text}"
    );
    // envFrom: every key, prefixed or not, dashes and all, and the secret's decoded value.
    for var in [
        "F data-1=value-1\n",
        "F p-data-1=value-1\n",
        "F p-greeting=hello\n",
        "F pass-word=s3cret\n",
    ] {
        assert!(text.contains(var), "{var:?} in {text}");
    }
    // Liveness fails once /tmp/alive is gone: killed and restarted.
    let p = eventually(Duration::from_secs(40), "a liveness restart", || {
        let p = get_pod(&server, "probed");
        if p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1) {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    });
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=probed",
    ]);
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(
        events.contains("Container app failed liveness probe, will be restarted"),
        "{events}"
    );
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        137
    );
    // A configMap update reaches the volume (atomically, through ..data).
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "cfg",
        "-p",
        r#"{"data":{"greeting":"updated"}}"#,
    ]);
    let file = node.dir.path().join(format!(
        "pods/{uid}/volumes/kubernetes.io~configmap/cfg/greeting"
    ));
    eventually(
        Duration::from_secs(40),
        "the updated configMap in the volume",
        || {
            let t = std::fs::read_to_string(&file).unwrap_or_default();
            if t == "updated" {
                Ok(())
            } else {
                Err(t)
            }
        },
    );
    server.kubectl_ok(&["delete", "pod", "probed", "--timeout=30s"]);
    kubelet.stop();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn static_pods_run_from_manifests_with_a_mirror_pod_and_stop_when_the_file_goes() {
    let server = TestServer::start();
    let reg = Registry::start();
    let (_layout, image) = registry_image(&reg);
    let node = Node::new();
    let node_obj = server.write_file(
        "node.json",
        &format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{NODE}"}}}}"#),
    );
    server.kubectl_ok(&["create", "-f", &node_obj.to_string_lossy()]);
    let manifests = node.dir.path().join("pod-manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {image}\n    command: [\"/bin/busybox\", \"sleep\", \"3600\"]\n"
    );
    std::fs::write(manifests.join("web.yaml"), manifest).unwrap();
    let kubelet = node.start_kubelet(&server);
    let mirror = format!("static-web-{NODE}");
    let p = eventually(Duration::from_secs(60), "the mirror pod Running", || {
        let r = server.kubectl(&["get", "pod", &mirror, "-o", "json"]);
        if !r.success() {
            return Err(r.output());
        }
        let p = common::json(&r.stdout);
        if p["status"]["phase"] == "Running" {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    });
    let ann = &p["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert_eq!(
        ann["kubernetes.io/config.mirror"],
        ann["kubernetes.io/config.hash"]
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(node.containers().len(), 1);
    // The file goes: the pod stops and the mirror is deleted.
    std::fs::remove_file(manifests.join("web.yaml")).unwrap();
    eventually(Duration::from_secs(60), "the static pod gone", || {
        let left = node.containers().len();
        let r = server.kubectl(&["get", "pod", &mirror]);
        if left == 0 && !r.success() {
            Ok(())
        } else {
            Err(format!("{left} containers, mirror: {}", r.output()))
        }
    });
    kubelet.stop();
}
