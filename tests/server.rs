//! The server process itself: version, clean shutdown, restart with the same state and
//! credentials, certificate names, file permissions and anonymous access.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use common::TestServer;

/// The harness's `restart_with`: the flags a test restarts the server with replace those
/// it started with, in any of the forms clap accepts.
#[test]
fn restart_flags_replace_the_started_ones_in_every_form() {
    let base: Vec<String> = [
        "--eviction-hard",
        "memory.available<1Mi",
        "--node-label=a=1",
        "--node-label",
        "b=2",
        "--disable-agent",
        "--cluster-cidr",
        "10.9.0.0/16",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let merged = common::merge_flags(
        &base,
        &[
            "--eviction-hard=nodefs.available<100%",
            "--node-label",
            "c=3",
            "--node-label=d=4",
            "--node-taint",
            "k=v:NoSchedule",
        ],
    );
    assert_eq!(
        merged,
        [
            "--disable-agent",
            "--cluster-cidr",
            "10.9.0.0/16",
            "--eviction-hard",
            "nodefs.available<100%",
            "--node-label",
            "c=3",
            "--node-label",
            "d=4",
            "--node-taint",
            "k=v:NoSchedule",
        ]
    );
}

#[test]
fn skiff_version_prints_the_crate_version() {
    let out = Command::new(common::skiff_binary())
        .arg("--version")
        .output()
        .expect("running skiff --version");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[test]
fn sigterm_stops_the_server_cleanly_and_a_restart_keeps_objects_and_credentials() {
    let mut server = TestServer::start();
    server.kubectl_ok(&["create", "configmap", "kept", "--from-literal=k=v"]);
    let before = server.kubectl_json(&["get", "configmap", "kept"]);
    let token_path = server.data_dir().join("server/token");
    let token = std::fs::read(&token_path).expect("the join token file");
    let admin_token = server.admin_token();
    let ca = std::fs::read(server.ca_path()).expect("the CA");

    let status = server.stop();
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        common::tail(&server.log(), 30)
    );

    server.restart();
    let after = server.kubectl_json(&["get", "configmap", "kept"]);
    assert_eq!(
        after["metadata"]["uid"], before["metadata"]["uid"],
        "{after}"
    );
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "{after}"
    );
    assert_eq!(after["data"]["k"], "v", "{after}");
    assert_eq!(
        std::fs::read(&token_path).expect("the join token file"),
        token
    );
    assert_eq!(server.admin_token(), admin_token);
    assert_eq!(
        std::fs::read(server.ca_path()).expect("the CA"),
        ca,
        "the CA is reused"
    );
}

#[test]
fn join_token_names_the_ca_hash() {
    let server = TestServer::start();
    let token = std::fs::read_to_string(server.data_dir().join("server/token"))
        .expect("the join token file");
    let token = token.trim();
    // K10<sha256 of the CA certificate PEM>::server:<secret>
    let (hash, secret) = token
        .strip_prefix("K10")
        .and_then(|t| t.split_once("::server:"))
        .unwrap_or_else(|| panic!("join token format: {token}"));
    assert_eq!(hash.len(), 64, "{token}");
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    assert!(secret.len() >= 16, "a guessable secret: {token}");
}

#[test]
fn secrets_on_disk_are_readable_by_root_only() {
    let server = TestServer::start();
    for path in [
        server.kubeconfig_path(),
        server.data_dir().join("server/token"),
        server.data_dir().join("server/admin-token"),
    ] {
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "{} has mode {:o}",
            path.display(),
            mode & 0o777
        );
    }
    // Private keys anywhere under the TLS directory.
    let tls = server.data_dir().join("server/tls");
    let mut keys = 0;
    for entry in std::fs::read_dir(&tls).unwrap_or_else(|e| panic!("{}: {e}", tls.display())) {
        let path = entry.expect("a directory entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("PRIVATE KEY") {
            keys += 1;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} has mode {:o}",
                path.display(),
                mode & 0o777
            );
        }
    }
    assert!(keys > 0, "no private keys found under {}", tls.display());
}

#[test]
fn serving_certificate_is_valid_for_the_service_names_and_tls_san() {
    let server = TestServer::start_with(&["--tls-san", "skiff.example.test"]);
    let hostname = nix::unistd::gethostname()
        .expect("the host name")
        .to_string_lossy()
        .into_owned();
    for name in [
        "skiff.example.test",
        "kubernetes",
        "kubernetes.default.svc.cluster.local",
        hostname.as_str(),
    ] {
        let out = Command::new("curl")
            .args(["-sS", "--noproxy", "*", "--max-time", "10", "--cacert"])
            .arg(server.ca_path())
            .arg("--resolve")
            .arg(format!("{name}:{}:127.0.0.1", server.port()))
            .arg(format!("https://{name}:{}/readyz", server.port()))
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "TLS to {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok", "{name}");
    }
}

#[test]
fn readyz_answers_anonymous_clients() {
    let server = TestServer::start();
    let reply = server
        .request("GET", "/readyz")
        .auth(common::http::Auth::Anonymous)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "ok");
}

#[test]
fn agent_start_imports_the_airgap_tarballs_of_the_images_dir() {
    let mut server = TestServer::start_with_agent();
    let images_dir = server.data_dir().join("agent/images");
    std::fs::create_dir_all(&images_dir).expect("creating the airgap dir");
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    common::registry::build_busybox_layout_gzip(&layout, "airgap");
    common::registry::tar_layout(&layout, &images_dir.join("busybox.tar"), false);
    // Not a tarball: ignored. A broken tarball: logged and skipped.
    std::fs::write(images_dir.join("README"), "not an image").expect("write");
    std::fs::write(images_dir.join("broken.tar"), "not a tar").expect("write");
    server.restart();

    let ls = || {
        let out = Command::new(common::skiff_binary())
            .args(["images", "ls", "-q", "--data-dir"])
            .arg(server.data_dir())
            .output()
            .expect("running skiff images ls");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ls().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "airgap image not imported; server log:\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(ls().lines().count(), 1, "exactly the one valid image");
    assert!(
        server.log().contains("broken.tar"),
        "the broken tarball is named in the log"
    );
}

#[test]
fn logs_to_a_file_carry_no_ansi_colour_codes() {
    let server = TestServer::start();
    server.kubectl_ok(&["get", "namespaces"]);
    let log = server.log();
    assert!(log.contains(" INFO "), "the log has level names:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log that goes to a file:\n{log:?}"
    );
}

#[test]
fn the_kubernetes_service_has_endpoints_at_the_server_port_after_every_start() {
    let mut server = TestServer::start();
    let port = server.port().to_string();
    let check = |server: &TestServer| {
        let ep = server.kubectl_ok(&[
            "get",
            "endpoints",
            "kubernetes",
            "-n",
            "default",
            "-o=jsonpath={.subsets[0].ports[0].port}",
        ]);
        assert_eq!(ep.trim(), port);
        let slice = server.kubectl_ok(&[
            "get",
            "endpointslice",
            "kubernetes",
            "-n",
            "default",
            "-o=jsonpath={.metadata.labels.kubernetes\\.io/service-name} {.ports[0].port}",
        ]);
        assert_eq!(slice.trim(), format!("kubernetes {port}"));
    };
    check(&server);
    server.stop();
    server.restart();
    check(&server);
}

/// `skiff agent` runs the same `agent::run` as the server's own node: here, the airgap
/// import. A malformed token is refused up front with a one-line error.
#[test]
fn skiff_agent_runs_the_agent_entry_point_and_refuses_a_malformed_token() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let bad = Command::new(common::skiff_binary())
        .args([
            "agent",
            "--server",
            "https://127.0.0.1:1",
            "--token",
            "K10nothex::server:x",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("running skiff agent");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--token") && err.contains("CA hash must be 64 hex digits"),
        "{err}"
    );

    let images_dir = data.join("agent/images");
    std::fs::create_dir_all(&images_dir).expect("creating the airgap dir");
    let layout = work.path().join("layout");
    common::registry::build_busybox_layout_gzip(&layout, "agent");
    common::registry::tar_layout(&layout, &images_dir.join("busybox.tar"), false);
    let token = format!("K10{}::server:secret", "a".repeat(64));
    let mut cmd = Command::new(common::skiff_binary());
    cmd.args([
        "agent",
        "--server",
        "https://127.0.0.1:1",
        "--token",
        &token,
    ])
    .arg("--data-dir")
    .arg(&data);
    let mut agent = common::process::Background::spawn(cmd, &work.path().join("agent"));
    let ls = || {
        let out = Command::new(common::skiff_binary())
            .args(["images", "ls", "-q", "--data-dir"])
            .arg(&data)
            .output()
            .expect("running skiff images ls");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ls().is_empty() {
        assert!(
            std::time::Instant::now() < deadline && !agent.has_exited(),
            "airgap image not imported by skiff agent:\n{}",
            agent.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    agent.terminate();
    assert_eq!(
        agent.wait_exit(std::time::Duration::from_secs(10)),
        Some(0),
        "{}",
        agent.stderr()
    );
}

#[test]
fn the_scheduler_and_controllers_hold_their_leases_and_take_them_back_at_once_after_a_kill() {
    let mut server = TestServer::start();
    let (scheduler, _) = lease_holder(&server, "kube-scheduler");
    let (kcm, renewed) = lease_holder(&server, "kube-controller-manager");
    assert!(!scheduler.is_empty());
    assert_eq!(scheduler, kcm, "one identity per server");

    // After a SIGKILL the restarted server takes its own unexpired Lease back without
    // waiting out the 15 s lease duration: the controllers act again within seconds.
    server.restart();
    let t = std::time::Instant::now();
    server.kubectl_ok(&["create", "namespace", "after-restart"]);
    loop {
        if server
            .kubectl(&["get", "serviceaccount", "default", "-n", "after-restart"])
            .success()
        {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(8),
            "no default ServiceAccount 8 s after the restart: the controllers are not acting"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (after, renewed_after) = lease_holder(&server, "kube-controller-manager");
    assert_eq!(after, kcm);
    assert_ne!(renewed_after, renewed);
}

/// (holderIdentity, renewTime) of the Lease `kube-system/<name>`.
fn lease_holder(server: &TestServer, name: &str) -> (String, String) {
    let lease = server_lease(server, name);
    let field = |f: &str| lease["spec"][f].as_str().unwrap_or_default().to_owned();
    (field("holderIdentity"), field("renewTime"))
}

/// The Lease `kube-system/<name>`, once it exists (waits up to 10 s).
fn server_lease(server: &TestServer, name: &str) -> serde_json::Value {
    let t = std::time::Instant::now();
    loop {
        let run = server.kubectl(&["get", "lease", "-n", "kube-system", name, "-o", "json"]);
        if run.success() {
            return common::json(&run.stdout);
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "no lease {name}: {run}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An HTTP/1.1 client's pooled connection outlives a quiet spell longer than the time
/// allowed for sending request headers (10 s once): kube-rs clients, the agents among
/// them, then paid a TLS handshake after every pause, and could lose a request sent on a
/// connection the server was closing.
#[test]
fn an_idle_http1_keep_alive_connection_is_kept_for_a_second_request() {
    let server = TestServer::start();
    // Two requests on one TLS connection, 12 s apart; openssl prints what comes back (with
    // -quiet it reads until the server closes: the timeout ends it).
    let script = r#"
req='GET /readyz HTTP/1.1\r\nHost: skiff\r\n\r\n'
{ printf "$req"; sleep 12; printf "$req"; } |
  timeout 15 openssl s_client -connect "127.0.0.1:$1" -quiet 2>/dev/null
"#;
    let out = Command::new("sh")
        .args(["-c", script, "sh", &server.port().to_string()])
        .output()
        .expect("sh");
    let text = String::from_utf8_lossy(&out.stdout);
    // The body ("ok") ends without a newline: count the status lines anywhere.
    let answers = text.matches("HTTP/1.1 200 OK").count();
    assert_eq!(answers, 2, "{text}{}", String::from_utf8_lossy(&out.stderr));
}

/// Events expire `--event-ttl` after their last write, as upstream's etcd lease on each event
/// makes them: both Event APIs, an event written again lives on, and an event stored before
/// a restart expires after it, dated by its own timestamps.
#[test]
fn events_expire_their_ttl_after_their_last_write_and_across_a_restart() {
    let mut server = TestServer::start_with(&["--event-ttl", "6s"]);
    let core_event = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: {name}\n  namespace: default\n\
             involvedObject:\n  kind: ConfigMap\n  name: subject\n  namespace: default\n\
             reason: Testing\nmessage: {name}\ntype: Normal\n"
        )
    };
    server.apply("old.yaml", &core_event("old"));
    server.apply("renewed.yaml", &core_event("renewed"));
    server.apply(
        "new-api.yaml",
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: new-api\n  namespace: default\n\
         eventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: example.com/test\n\
         reportingInstance: test-1\naction: Testing\nreason: Testing\ntype: Normal\n\
         regarding:\n  kind: ConfigMap\n  name: subject\n  namespace: default\nnote: new api\n",
    );
    let exists =
        |server: &TestServer, path: &str| server.kubectl(&["get", "--raw", path]).success();
    let old = "/api/v1/namespaces/default/events/old";
    let renewed = "/api/v1/namespaces/default/events/renewed";
    let new_api = "/apis/events.k8s.io/v1/namespaces/default/events/new-api";
    let created = std::time::Instant::now();

    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        exists(&server, old) && exists(&server, new_api),
        "expired before their time"
    );
    server.kubectl_ok(&[
        "patch",
        "event",
        "renewed",
        "--type=merge",
        "-p",
        r#"{"count": 2}"#,
    ]);

    server.wait_until("the untouched event expires", 20, || !exists(&server, old));
    let expired_after = created.elapsed();
    assert!(
        expired_after >= std::time::Duration::from_secs(5),
        "expired after {expired_after:?}"
    );
    assert!(
        exists(&server, renewed),
        "the event written 3 s later expired with the first"
    );
    server.wait_until("the events.k8s.io event expires", 10, || {
        !exists(&server, new_api)
    });
    server.wait_until("the renewed event expires", 20, || {
        !exists(&server, renewed)
    });

    // An event the restarted server did not see written: dated by its timestamps.
    server.apply("across.yaml", &core_event("across"));
    server.restart();
    let across = "/api/v1/namespaces/default/events/across";
    server.wait_until("the event stored before the restart expires", 20, || {
        !exists(&server, across)
    });
}
