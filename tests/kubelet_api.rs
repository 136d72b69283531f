//! The kubelet API behind the real kubectl: `kubectl logs` (-f, --tail, --previous),
//! `exec` (tty and not, exit codes), `attach`, `cp` both ways and `port-forward`, through a
//! real `skiff server` that proxies `pods/log|exec|attach|portforward` to a kubelet API served
//! in this test process over real containers of the embedded runtime.
//!
//! Until the node agent is wired (other slices), the test plays the kubelet's part: it
//! registers the Node (InternalIP 127.0.0.1, the kubelet port) and the Pod (spec.nodeName
//! set), and creates the pod's containers with the kubelet's labels and CRI log paths.
//! Root only (cfg `skiff_unprivileged` otherwise).

mod common;
mod ctr;

use common::kubectl_io::{http_get, kubectl_in_pty, port_forward};
use common::{skiff_binary, TestServer};
use ctr::Env;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff::kubelet::labels::ContainerRef;
use skiff::kubelet::server::{self as kapi, ServerConfig};
use skiff::runtime::containers::facade::{Runtime, RuntimeOptions};
use skiff::runtime::containers::ContainerConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODE: &str = "kapi-node";
const IMAGE: &str = "kbox";

struct Fixture {
    server: TestServer,
    env: Env,
    rt: tokio::runtime::Runtime,
    runtime: Arc<Runtime>,
    log_dir: PathBuf,
    pod_uid: String,
    shutdown: tokio_util::sync::CancellationToken,
    kubelet_port: u16,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// (name, command, stdin, tty) of the pod's containers.
type Spec<'a> = (&'a str, &'a [&'a str], bool, bool);

impl Fixture {
    fn new(pod: &str, containers: &[Spec<'_>]) -> Fixture {
        let server = TestServer::start();
        let env = Env::new();
        let out = env.import(IMAGE, &[common::registry::tools_layer()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Shims started from this process put their cgroups under the guard's parent.
        std::env::set_var("SKIFF_CGROUP_PARENT", &env.cgroup_parent);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let runtime = Arc::new(
            Runtime::open(
                &env.data().join("agent"),
                RuntimeOptions {
                    shim_exe: Some(skiff_binary()),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let log_dir = env.data().join("pod-logs");
        let pki = skiff::pki::ServerPki::ensure(&server.data_dir().join("server/tls"), &[])
            .expect("the server's PKI");
        let serving = pki
            .issue_serving("kapi-node", &["127.0.0.1".to_owned()])
            .unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (kubelet_port, pod_uid) = rt.block_on(async {
            let client = server.client().await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            // The serving certificate as the node identity publishes it (a watch, renewed
            // by CSR); the sender lives as long as the test.
            let (certs_tx, certs) = tokio::sync::watch::channel(serving.clone());
            let rx = kapi::follow_serving_cert(
                certs,
                |c: &skiff::pki::CertPair| (c.cert_pem.clone(), c.key_pem.clone()),
                pki.ca.cert_pem.clone(),
            )
            .unwrap();
            let cfg = ServerConfig {
                listen: listener.local_addr().unwrap(),
                node_name: NODE.into(),
                tls: rx,
                client: client.clone(),
                runtime: runtime.clone(),
                pod_log_dir: log_dir.clone(),
            };
            tokio::spawn(kapi::serve_on(listener, cfg, shutdown.clone()));
            std::mem::forget(certs_tx);
            let nodes: Api<Node> = Api::all(client.clone());
            nodes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": NODE}})).unwrap(),
                )
                .await
                .unwrap();
            nodes
                .patch_status(
                    NODE,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {
                        "addresses": [{"type": "Hostname", "address": NODE},
                                      {"type": "InternalIP", "address": "127.0.0.1"}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                    }})),
                )
                .await
                .unwrap();
            let specs: Vec<serde_json::Value> = containers
                .iter()
                .map(|(name, cmd, stdin, tty)| {
                    json!({"name": name, "image": IMAGE, "command": cmd, "stdin": stdin, "tty": tty})
                })
                .collect();
            let pod_obj: Pod = serde_json::from_value(json!({
                "metadata": {"name": pod, "namespace": "default"},
                "spec": {"nodeName": NODE, "containers": specs},
            }))
            .unwrap();
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            let deadline = Instant::now() + Duration::from_secs(20);
            let created = loop {
                match pods.create(&PostParams::default(), &pod_obj).await {
                    Ok(p) => break p,
                    // The default ServiceAccount appears shortly after start.
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("pod create: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("pod create: {e}"),
                }
            };
            (port, created.metadata.uid.unwrap())
        });
        let mut f = Fixture {
            server,
            env,
            rt,
            runtime,
            log_dir,
            pod_uid,
            shutdown,
            kubelet_port,
        };
        for (name, cmd, stdin, tty) in containers {
            f.start_container(pod, name, cmd, 0, *stdin, *tty);
        }
        // What the kubelet would report (kubectl port-forward wants a Running pod).
        let statuses: Vec<serde_json::Value> = containers
            .iter()
            .map(|(name, ..)| {
                json!({"name": name, "image": IMAGE, "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}})
            })
            .collect();
        f.rt.block_on(async {
            let pods: Api<Pod> = Api::namespaced(f.server.client().await, "default");
            pods.patch_status(
                pod,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"phase": "Running", "containerStatuses": statuses}}),
                ),
            )
            .await
            .unwrap();
        });
        f
    }

    /// Creates and starts instance `restart` of container `name`, as the kubelet would.
    fn start_container(
        &mut self,
        pod: &str,
        name: &str,
        cmd: &[&str],
        restart: u32,
        stdin: bool,
        tty: bool,
    ) -> String {
        let r = ContainerRef {
            namespace: "default",
            pod,
            pod_uid: &self.pod_uid,
            container: name,
            restart_count: restart,
        };
        let id = r.container_id();
        self.env.ids.push(id.clone());
        let cfg = ContainerConfig {
            id: id.clone(),
            image: IMAGE.into(),
            command: Some(cmd.iter().map(|s| s.to_string()).collect()),
            stdin,
            tty,
            hostname: Some(pod.into()),
            labels: r.labels(),
            log_path: Some(r.log_path(&self.log_dir)),
            ..Default::default()
        };
        let runtime = self.runtime.clone();
        self.rt.block_on(async {
            runtime.create(cfg).await.unwrap();
            runtime.start(&id).await.unwrap();
        });
        id
    }

    fn wait_log(&self, pod: &str, container: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.server.kubectl(&["logs", pod, "-c", container]);
            if out.stdout.contains(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "log of {container} never had {want:?}: {}",
                out.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn kubectl_logs_tail_follow_and_previous() {
    let mut f = Fixture::new(
        "logs",
        &[
            (
                "main",
                &[
                    "sh",
                    "-c",
                    "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; exec sleep 100000",
                ],
                false,
                false,
            ),
            (
                "ticker",
                &[
                    "sh",
                    "-c",
                    "for i in 1 2 3; do echo tick $i; sleep 0.5; done",
                ],
                false,
                false,
            ),
        ],
    );
    f.wait_log("logs", "main", "three");
    // kubectl picks the first container itself when -c is missing (and says so).
    let all = f.server.kubectl(&["logs", "logs"]).ok();
    assert_eq!(all.stdout, "one\ntwo\nthree\n");
    assert_eq!(
        f.server
            .kubectl_ok(&["logs", "logs", "-c", "main", "--tail=1"]),
        "three\n"
    );
    assert_eq!(
        f.server
            .kubectl_ok(&["logs", "logs", "-c", "main", "--limit-bytes=5"]),
        "one\nt"
    );
    let ts = f
        .server
        .kubectl_ok(&["logs", "logs", "-c", "main", "--timestamps", "--tail=1"]);
    let (stamp, rest) = ts.split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{ts}");
    assert_eq!(rest, "three\n");
    // -f streams until the container exits, then kubectl exits 0 with everything.
    let started = Instant::now();
    let out = f
        .server
        .kubectl(&["logs", "-f", "logs", "-c", "ticker"])
        .ok();
    assert_eq!(out.stdout, "tick 1\ntick 2\ntick 3\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    // --previous: none yet, then the first instance once a second one runs.
    let prev = f
        .server
        .kubectl(&["logs", "logs", "-c", "ticker", "--previous"])
        .fails();
    assert!(
        prev.stderr
            .contains("previous terminated container \"ticker\" in pod \"logs\" not found"),
        "{}",
        prev.stderr
    );
    f.start_container(
        "logs",
        "ticker",
        &["sh", "-c", "echo second life; exec sleep 100000"],
        1,
        false,
        false,
    );
    f.wait_log("logs", "ticker", "second life");
    assert_eq!(
        f.server
            .kubectl_ok(&["logs", "logs", "-c", "ticker", "--previous"]),
        "tick 1\ntick 2\ntick 3\n"
    );
    // A container name that is not in the pod: the API server's message.
    let bad = f.server.kubectl(&["logs", "logs", "-c", "nope"]).fails();
    assert!(
        bad.stderr
            .contains("container nope is not valid for pod logs"),
        "{}",
        bad.stderr
    );
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn kubectl_exec_and_cp() {
    let f = Fixture::new("ex", &[("main", &["sleep", "100000"], false, false)]);
    let out = f
        .server
        .kubectl(&["exec", "ex", "--", "sh", "-c", "echo out; echo err >&2"])
        .ok();
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    // The exit code comes back through the v5 status channel.
    let failed = f
        .server
        .kubectl(&["exec", "ex", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.code, Some(3), "{}", failed.output());
    assert!(
        failed
            .stderr
            .contains("command terminated with exit code 3"),
        "{}",
        failed.stderr
    );
    // stdin, closed at EOF (v5 close signal).
    let piped = f
        .server
        .kubectl_with_stdin(&["exec", "-i", "ex", "--", "wc", "-l"], Some("a\nb\nc\n"))
        .ok();
    assert_eq!(piped.stdout.trim(), "3");
    // A tty (kubectl only asks for one when its stdin is a terminal): a shell typed into,
    // its exit code coming back.
    eprintln!("exec: tty");
    let (code, screen) = kubectl_in_pty(
        &f.server,
        &["exec", "-it", "ex", "--", "sh"],
        b"test -t 0 && echo tty-$((6*7))\nexit 5\n",
    );
    assert!(screen.contains("tty-42"), "{screen}");
    assert_eq!(code, Some(5), "{screen}");
    eprintln!("exec: cp");
    // cp both ways (tar over exec).
    let local = f.server.write_file("up.txt", "copied up\n");
    f.server
        .kubectl(&["cp", local.to_str().unwrap(), "ex:/tmp/up.txt"])
        .ok();
    assert_eq!(
        f.server
            .kubectl_ok(&["exec", "ex", "--", "cat", "/tmp/up.txt"]),
        "copied up\n"
    );
    f.server
        .kubectl(&[
            "exec",
            "ex",
            "--",
            "sh",
            "-c",
            "echo from pod > /tmp/down.txt",
        ])
        .ok();
    let down = f.server.files_dir().join("down.txt");
    f.server
        .kubectl(&["cp", "ex:/tmp/down.txt", down.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(&down).unwrap(), "from pod\n");
    // A bigger binary file both ways, byte for byte.
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let big = f.server.files_dir().join("big.bin");
    std::fs::write(&big, &data).unwrap();
    f.server
        .kubectl(&["cp", big.to_str().unwrap(), "ex:/tmp/big.bin"])
        .ok();
    let back = f.server.files_dir().join("back.bin");
    f.server
        .kubectl(&["cp", "ex:/tmp/big.bin", back.to_str().unwrap()])
        .ok();
    assert!(
        std::fs::read(&back).unwrap() == data,
        "the copied file differs"
    );
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn kubectl_attach_relays_stdin_and_output() {
    let f = Fixture::new(
        "att",
        &[
            ("cat", &["cat"], true, false),
            ("done", &["true"], false, false),
        ],
    );
    let out = f
        .server
        .kubectl_with_stdin(
            &["attach", "-i", "att", "-c", "cat"],
            Some("hello attach\n"),
        )
        .ok();
    assert!(out.stdout.contains("hello attach"), "{}", out.output());
    // (A tty container cannot be attached to here: the runtime fails to create one in
    // this sandbox, "bind /dev/console: EINVAL"; exec -it covers the tty relay.)
    // exec into a container that is not running: the kubelet's answer, through kubectl.
    std::thread::sleep(Duration::from_millis(300));
    let dead = f
        .server
        .kubectl(&["exec", "att", "-c", "done", "--", "true"])
        .fails();
    assert!(
        dead.stderr.contains("container not found (\"done\")"),
        "{}",
        dead.stderr
    );
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn kubelet_api_refuses_unauthenticated_and_unauthorized_callers() {
    let f = Fixture::new("authz", &[("main", &["sleep", "100000"], false, false)]);
    let pki = skiff::pki::ServerPki::ensure(&f.server.data_dir().join("server/tls"), &[]).unwrap();
    let bob = pki.issue_client("bob", &["devs"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (
        dir.path().join("c"),
        dir.path().join("k"),
        dir.path().join("ca"),
    );
    std::fs::write(&cert, &bob.cert_pem).unwrap();
    std::fs::write(&key, &bob.key_pem).unwrap();
    std::fs::write(&ca, &pki.ca.cert_pem).unwrap();
    let url = format!(
        "https://127.0.0.1:{}/containerLogs/default/authz/main",
        f.kubelet_port
    );
    let curl = |extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                ca.to_str().unwrap(),
                "-w",
                "\n%{http_code}",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(&[]), "Unauthorized\n401");
    assert_eq!(
        curl(&[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap()
        ]),
        "Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[proxy])\n\n403"
    );
    // The API server's own client certificate (system:masters) is allowed.
    let apiserver = pki.kubelet_client().unwrap();
    std::fs::write(&cert, &apiserver.cert_pem).unwrap();
    std::fs::write(&key, &apiserver.key_pem).unwrap();
    assert!(curl(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap()
    ])
    .ends_with("200"));
    let healthz = std::process::Command::new("curl")
        .args(["-sS", "--cacert", ca.to_str().unwrap(), "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg(format!("https://127.0.0.1:{}/healthz", f.kubelet_port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&healthz.stdout), "ok");
    // Bearer tokens are checked with a TokenReview: a service account without nodes/proxy
    // is refused, the admin token (system:masters) is let in.
    let sa_token = f
        .server
        .kubectl_ok(&["create", "token", "default"])
        .trim()
        .to_owned();
    let sa_header = format!("Authorization: Bearer {sa_token}");
    assert_eq!(
        curl(&["-H", &sa_header]),
        "Forbidden (user=system:serviceaccount:default:default, verb=get, resource=nodes, subresource(s)=[proxy])\n\n403"
    );
    let admin_header = format!("Authorization: Bearer {}", f.server.admin_token());
    assert!(curl(&["-H", &admin_header]).ends_with("200"));
    assert_eq!(
        curl(&["-H", "Authorization: Bearer not-a-token"]),
        "Unauthorized\n401"
    );
    // RBAC at the API server: `get` on pods/exec is not enough for a WebSocket exec.
    f.server
        .kubectl(&[
            "create",
            "role",
            "exec-get",
            "--verb=get",
            "--resource=pods,pods/exec",
        ])
        .ok();
    f.server
        .kubectl(&[
            "create",
            "rolebinding",
            "bob-exec-get",
            "--role=exec-get",
            "--user=bob",
        ])
        .ok();
    let denied = f
        .server
        .kubectl(&["--as=bob", "exec", "authz", "--", "true"])
        .fails();
    assert!(
        denied
            .stderr
            .contains("cannot create resource \"pods/exec\""),
        "{}",
        denied.stderr
    );
}

/// Sets `lo` up in the network namespace of process `pid`, from a thread of its own.
fn loopback_up(pid: i32) {
    use nix::libc;
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        // SAFETY: plain ioctls on a socket we own with a zeroed, NUL-terminated ifreq.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            assert!(fd >= 0);
            let mut ifr: libc::ifreq = std::mem::zeroed();
            ifr.ifr_name[0] = b'l' as libc::c_char;
            ifr.ifr_name[1] = b'o' as libc::c_char;
            assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0);
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr), 0);
            libc::close(fd);
        }
    })
    .join()
    .unwrap();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn kubectl_port_forward_reaches_a_port_inside_the_pod_network_namespace() {
    // The container has its own network namespace (loopback only): nothing on the host
    // listens on 8080, so an answer proves the connection was made inside the pod.
    let f = Fixture::new(
        "pf",
        &[(
            "web",
            &["httpd", "-f", "-p", "8080", "-h", "/www"],
            false,
            false,
        )],
    );
    // The pod network (another slice) brings the pod's loopback up; here the test does.
    let id = f.env.ids[0].clone();
    let pid = f.rt.block_on(f.runtime.state(&id)).unwrap().pid;
    loopback_up(pid);
    // kubectl 1.35's default: SPDY tunnelled in WebSocket.
    let (ws, port) = port_forward(&f.server, "pf", 8080, &[]);
    for _ in 0..3 {
        let page = http_get(port, "/index.html").unwrap();
        assert!(
            page.starts_with("HTTP/1.") && page.ends_with("hello from the pod\n"),
            "{page:?}; kubectl: {}; pod log: {}",
            ws.stderr(),
            f.server.kubectl(&["logs", "pf"]).output()
        );
    }
    // Volume and concurrency: a 2 MiB file, four connections at once.
    f.server
        .kubectl(&[
            "exec",
            "pf",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/www/big",
            "bs=1024",
            "count=2048",
        ])
        .ok();
    let fetches: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || http_get(port, "/big").unwrap()))
        .collect();
    for t in fetches {
        let page = t.join().unwrap();
        let body = page
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.len())
            .unwrap_or(0);
        assert_eq!(body, 2 << 20, "{}", &page[..page.len().min(300)]);
    }
    // The direct SPDY upgrade (older clients, or WebSockets turned off).
    let (_spdy, port) = port_forward(
        &f.server,
        "pf",
        8080,
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
    );
    let page = http_get(port, "/index.html").unwrap();
    assert!(page.ends_with("hello from the pod\n"), "{page}");
    // A port nothing listens on: the connection closes and kubectl reports the error.
    let (mut bad, port) = port_forward(&f.server, "pf", 9999, &[]);
    let r = http_get(port, "/");
    assert!(r.map(|s| s.is_empty()).unwrap_or(true));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bad.stderr().contains("error forwarding port 9999") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        bad.stderr().contains("error forwarding port 9999"),
        "{}",
        bad.stderr()
    );
    bad.kill();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn kubectl_top_and_node_stats_through_nodes_proxy() {
    let f = Fixture::new(
        "top",
        &[(
            "busy",
            &["sh", "-c", "while true; do :; done"],
            false,
            false,
        )],
    );
    // The Summary API through nodes/proxy: the pod and its container with CPU and memory.
    let raw = f.server.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/stats/summary"),
    ]);
    let summary: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(summary["node"]["nodeName"], NODE);
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let pod = &summary["pods"][0];
    assert_eq!(pod["podRef"]["name"], "top");
    assert_eq!(pod["podRef"]["uid"], f.pod_uid.as_str());
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "busy");
    // A busy loop burns CPU (how much depends on the load of the machine).
    assert!(
        c["cpu"]["usageNanoCores"].as_u64().unwrap() > 20_000_000,
        "{c}"
    );
    assert!(c["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{c}");
    let metrics = f.server.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}/proxy/metrics/resource"),
    ]);
    assert!(
        metrics.contains("container_cpu_usage_seconds_total{container=\"busy\",namespace=\"default\",pod=\"top\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nnode_memory_working_set_bytes "),
        "{metrics}"
    );
    // The `name:port` form: the kubelet's own port is the kubelet API; any other port is
    // a plain backend on the node's address (upstream's node ResourceLocation).
    let kubelet_port = f.server.kubectl_ok(&[
        "get",
        "node",
        NODE,
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let health = f.server.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{NODE}:{kubelet_port}/proxy/healthz"),
    ]);
    assert_eq!(health.trim(), "ok");
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("a node port");
    let node_port = listener.local_addr().unwrap().port();
    let backend = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().expect("the proxied connection");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let body = "on the node";
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    let page = f.server.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/http:{NODE}:{node_port}/proxy/some/path?q=1"),
    ]);
    assert_eq!(page, "on the node");
    let head = backend.join().unwrap();
    assert!(head.starts_with("GET /some/path?q=1 HTTP/1.1"), "{head}");
    let bad = f.server.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/ftp:{NODE}:21/proxy/"),
    ]);
    assert!(
        bad.stderr.contains("invalid node request"),
        "{}",
        bad.stderr
    );

    // kubectl top, with no metrics-server.
    let pods = f.server.kubectl_ok(&["top", "pod", "--containers"]);
    let row = pods
        .lines()
        .find(|l| l.starts_with("top "))
        .unwrap_or_else(|| panic!("{pods}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "busy", "{pods}");
    let millicores: u64 = cols[2].trim_end_matches('m').parse().unwrap();
    assert!(millicores > 20, "{pods}");
    let nodes = f.server.kubectl_ok(&["top", "node"]);
    assert!(nodes.lines().any(|l| l.starts_with(NODE)), "{nodes}");
}

/// kubectl with extra environment (e.g. WebSockets turned off), stdin given.
fn kubectl_env(
    server: &TestServer,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> common::process::Run {
    let mut cmd = std::process::Command::new("/opt/skiff-test/bin/kubectl");
    cmd.arg("--kubeconfig")
        .arg(server.kubeconfig_path())
        .args(args)
        .env("HOME", server.home())
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::process::run(&mut cmd, stdin.map(str::as_bytes), Duration::from_secs(60))
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn kubectl_exec_and_attach_over_spdy_when_websockets_are_off() {
    let f = Fixture::new(
        "spdy",
        &[
            ("main", &["sleep", "100000"], false, false),
            ("cat", &["cat"], true, false),
        ],
    );
    let off = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let out = kubectl_env(
        &f.server,
        &[
            "exec",
            "spdy",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
        &off,
        None,
    )
    .ok();
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    let failed = kubectl_env(
        &f.server,
        &["exec", "spdy", "-c", "main", "--", "sh", "-c", "exit 4"],
        &off,
        None,
    );
    assert_eq!(failed.code, Some(4), "{}", failed.output());
    assert!(
        failed
            .stderr
            .contains("command terminated with exit code 4"),
        "{}",
        failed.stderr
    );
    // Proof of the transport: the upgrade request kubectl logs at -v=7.
    let verbose = kubectl_env(
        &f.server,
        &["-v=7", "exec", "spdy", "-c", "main", "--", "true"],
        &off,
        None,
    )
    .ok();
    assert!(
        verbose.stderr.contains("X-Stream-Protocol-Version"),
        "{}",
        verbose.stderr
    );
    let piped = kubectl_env(
        &f.server,
        &["exec", "-i", "spdy", "-c", "main", "--", "wc", "-c"],
        &off,
        Some("12345"),
    )
    .ok();
    assert_eq!(piped.stdout.trim(), "5");
    let att = kubectl_env(
        &f.server,
        &["attach", "-i", "spdy", "-c", "cat"],
        &off,
        Some("over spdy\n"),
    )
    .ok();
    assert!(att.stdout.contains("over spdy"), "{}", att.output());
}
