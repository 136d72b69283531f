//! Two hosts, end to end through the real binary and the real kubectl: a server and two
//! agents, each agent in its own network namespace joined to the host by a veth (one with
//! the server token, one with a bootstrap token). Images come from a local registry through
//! a registries.yaml mirror, so manifests keep the name `busybox:1.36`. kubectl reaches each
//! pod through the API server, which proxies to the kubelet API across the veth: logs (-f,
//! --tail, --previous after a crash), exec (exit codes, stdin, tty), attach, cp both ways,
//! port-forward, top. A container over its memory limit is reported OOMKilled.
//!
//! Root only (cfg `skiff_unprivileged` otherwise).

mod common;

use common::agent::{create_token, server_token, TestAgent};
use common::kubectl_io::{http_get, kubectl_in_pty, port_forward};
use common::netns::NetNs;
use common::process::eventually;
use common::registry::Registry;
use serde_json::json;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);

fn pod(name: &str, node: &str, containers: &str, extra_spec: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},
           "spec":{{"nodeName":"{node}","terminationGracePeriodSeconds":1{extra_spec},
             "containers":[{containers}]}}}}"#
    )
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: network namespaces, mounts and cgroups"
)]
fn pods_on_two_joined_hosts_answer_kubectl_through_the_api_server() {
    let ns_a = NetNs::create();
    let ns_b = NetNs::create();
    let reg = Registry::busybox_for_netns(&["1.36"]);

    let server = common::netns::server_reachable_from(&[&ns_a, &ns_b]);
    let token = server_token(&server);
    let bootstrap = create_token(&server, &[]);
    let mut a = TestAgent::start_in_netns_with_mirror(&server, &ns_a, "host-a", &token, &reg);
    let mut b = TestAgent::start_in_netns_with_mirror(&server, &ns_b, "host-b", &bootstrap, &reg);
    a.wait_ready(&server, READY);
    b.wait_ready(&server, READY);

    // host-a: a web server that logs. host-b: a container that crashes once a second, one
    // reading its stdin, one past its memory limit.
    server.apply(
        "web.json",
        &pod(
            "web",
            "host-a",
            r#"{"name":"web","image":"busybox:1.36",
                "command":["sh","-c","echo one; echo two; echo three; exec httpd -f -p 8080 -h /www"]}"#,
            "",
        ),
    );
    server.apply(
        "crash.json",
        &pod(
            "crash",
            "host-b",
            r#"{"name":"app","image":"busybox:1.36",
                "command":["sh","-c","echo life at $(cat /proc/uptime); sleep 1; exit 3"]},
               {"name":"cat","image":"busybox:1.36","command":["cat"],"stdin":true}"#,
            "",
        ),
    );
    server.apply(
        "hog.json",
        &pod(
            "hog",
            "host-b",
            r#"{"name":"hog","image":"busybox:1.36",
                "command":["dd","if=/dev/zero","of=/dev/null","bs=64M","count=1"],
                "resources":{"limits":{"memory":"16Mi"}}}"#,
            r#","restartPolicy":"Never""#,
        ),
    );
    let web = server.wait_pod_phase("web", "Running", READY);
    // The pod's address is from host-a's podCIDR, its hostIP the namespace's end.
    assert_eq!(web["status"]["hostIP"], ns_a.ns_ip.to_string());
    let cidr = server.kubectl_json(&["get", "node", "host-a"])["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = cidr.rsplit_once(".0/").unwrap().0;
    let pod_ip = web["status"]["podIP"].as_str().unwrap();
    assert!(
        pod_ip.starts_with(&format!("{prefix}.")),
        "{pod_ip} in {cidr}"
    );

    // logs across the veth: all, --tail, -f (ends with kubectl killed by its own timeout).
    eventually(Duration::from_secs(20), "web logged three lines", || {
        let out = server.kubectl(&["logs", "web"]).stdout;
        (out == "one\ntwo\nthree\n").then_some(()).ok_or(out)
    });
    assert_eq!(server.kubectl_ok(&["logs", "web", "--tail=1"]), "three\n");
    let follow = server
        .kubectl(&["logs", "-f", "web", "--request-timeout=2s"])
        .stdout;
    assert!(follow.starts_with("one\ntwo\nthree\n"), "{follow}");

    // exec: output, stderr, exit code, stdin, a tty.
    let out = server.kubectl(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 4",
    ]);
    assert_eq!(out.code, Some(4), "{}", out.output());
    assert_eq!(
        (out.stdout.as_str(), out.stderr.contains("err\n")),
        ("out\n", true)
    );
    let piped = server
        .kubectl_with_stdin(&["exec", "-i", "web", "--", "wc", "-l"], Some("a\nb\n"))
        .ok();
    assert_eq!(piped.stdout.trim(), "2");
    let (code, screen) = kubectl_in_pty(
        &server,
        &["exec", "-it", "web", "--", "sh"],
        b"test -t 0 && echo tty-$((6*7))\nexit 5\n",
    );
    assert!(screen.contains("tty-42"), "{screen}");
    assert_eq!(code, Some(5), "{screen}");

    // cp both ways (tar over exec).
    let up = server.write_file("up.txt", "copied up\n");
    server
        .kubectl(&["cp", up.to_str().unwrap(), "web:/www/up.txt"])
        .ok();
    let down = server.files_dir().join("down.txt");
    server
        .kubectl(&["cp", "web:/www/up.txt", down.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(&down).unwrap(), "copied up\n");

    // port-forward into the pod's network namespace on the other host.
    let (_pf, port) = port_forward(&server, "web", 8080, &[]);
    let page = http_get(port, "/up.txt").unwrap();
    assert!(
        page.starts_with("HTTP/1.") && page.ends_with("copied up\n"),
        "{page}"
    );

    // host-b: a crashing container restarts; --previous shows the instance before.
    eventually(READY, "crash restarted twice", || {
        let p = server.kubectl_json(&["get", "pod", "crash"]);
        let app = &p["status"]["containerStatuses"][0];
        if app["restartCount"].as_u64().unwrap_or(0) >= 2 {
            Ok(())
        } else {
            Err(format!("{}", p["status"]))
        }
    });
    let previous = server.kubectl_ok(&["logs", "crash", "-c", "app", "--previous"]);
    assert!(previous.starts_with("life at "), "{previous}");
    let p = server.kubectl_json(&["get", "pod", "crash"]);
    let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(
        (last["exitCode"].as_i64(), last["reason"].as_str()),
        (Some(3), Some("Error"))
    );
    // attach to the stdin reader.
    let attached = server
        .kubectl_with_stdin(
            &["attach", "-i", "crash", "-c", "cat"],
            Some("hello attach\n"),
        )
        .ok();
    assert!(
        attached.stdout.contains("hello attach"),
        "{}",
        attached.output()
    );

    // The memory hog is killed by its cgroup and reported as upstream does.
    let hog = server.wait_pod_phase("hog", "Failed", READY);
    let t = &hog["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("OOMKilled"), Some(137)),
        "{t}"
    );

    // kubectl top: the API server reads both kubelets' stats across the veths.
    let started = Instant::now();
    let top = eventually(Duration::from_secs(30), "top lists both pods", || {
        let out = server.kubectl(&["top", "pod"]);
        if out.stdout.contains("web ") && out.stdout.contains("crash ") {
            Ok(out.stdout)
        } else {
            Err(out.output())
        }
    });
    eprintln!("top after {:?}:\n{top}", started.elapsed());
    let nodes = server.kubectl_ok(&["top", "node"]);
    for n in ["host-a", "host-b"] {
        assert!(nodes.lines().any(|l| l.starts_with(n)), "{nodes}");
    }

    // The projected service-account token of a pod on host-a authenticates as the pod's
    // own bound identity. (Read out with exec: busybox's TLS offers no signature
    // algorithms, which rustls cannot serve, so the pod cannot make the call itself.)
    server.apply(
        "reader.json",
        &pod(
            "reader",
            "host-a",
            r#"{"name":"reader","image":"busybox:1.36","command":["sleep","3600"]}"#,
            "",
        ),
    );
    server.wait_pod_phase("reader", "Running", READY);
    let token = server.kubectl_ok(&[
        "exec",
        "reader",
        "--",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ]);
    // The token volume is a tmpfs, as upstream's projected volumes: tokens never reach the
    // node's disk.
    let mounts = server.kubectl_ok(&["exec", "reader", "--", "cat", "/proc/mounts"]);
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /var/run/secrets/kubernetes.io/serviceaccount tmpfs ")),
        "{mounts}"
    );
    // Only the token: no client certificate from the admin kubeconfig.
    let url = format!("https://127.0.0.1:{}", server.port());
    let review = server.kubectl_json(&[
        "auth",
        "whoami",
        "--kubeconfig=/dev/null",
        "--insecure-skip-tls-verify",
        "--server",
        &url,
        "--token",
        token.trim(),
    ]);
    let user = &review["status"]["userInfo"];
    assert_eq!(
        user["username"], "system:serviceaccount:default:default",
        "{review}"
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0], "reader",
        "{review}"
    );

    // Graceful deletion: preStop runs (it writes to the container's log), the container
    // ignores SIGTERM, and is killed when the grace period is over.
    let stopper = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stopper", "namespace": "default"},
        "spec": {"nodeName": "host-b", "terminationGracePeriodSeconds": 3,
            "containers": [{"name": "app", "image": "busybox:1.36",
                "command": ["sh", "-c", "trap '' TERM; echo up; while true; do sleep 1; done"],
                "lifecycle": {"preStop": {"exec": {"command":
                    ["sh", "-c", "echo prestop ran > /proc/1/fd/1"]}}}}]}});
    server.apply("stopper.json", &stopper.to_string());
    server.wait_pod_phase("stopper", "Running", READY);
    let mut follow = server.kubectl_background(&["logs", "-f", "stopper"]);
    follow.wait_for_stdout("up", Duration::from_secs(20), |s| s.contains("up\n"));
    let started = Instant::now();
    server.kubectl(&["delete", "pod", "stopper"]).ok();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(20),
        "deleting took {took:?}"
    );
    follow.wait_for_stdout("prestop ran", Duration::from_secs(5), |s| {
        s.contains("prestop ran")
    });

    // SIGKILL host-a's agent: while it is down a pod is deleted; back up, the running
    // container is the same one, untouched, and the deleted pod is cleaned up.
    let before =
        server.kubectl_json(&["get", "pod", "web"])["status"]["containerStatuses"][0].clone();
    a.kill_and_restart();
    server
        .kubectl(&["delete", "pod", "reader", "--wait=false"])
        .ok();
    eventually(READY, "host-a's agent is back", || {
        let log = a.log();
        if log.contains("node registered and Ready") {
            Ok(())
        } else {
            Err(log)
        }
    });
    eventually(READY, "the deleted pod is cleaned up", || {
        let run = server.kubectl(&["get", "pod", "reader"]);
        if run.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err(run.output())
        }
    });
    let after =
        server.kubectl_json(&["get", "pod", "web"])["status"]["containerStatuses"][0].clone();
    assert_eq!(after["containerID"], before["containerID"], "{after}");
    assert_eq!(after["restartCount"], 0, "{after}");
    assert!(after["state"]["running"].is_object(), "{after}");
    let (_pf, port) = port_forward(&server, "web", 8080, &[]);
    assert!(http_get(port, "/up.txt").unwrap().ends_with("copied up\n"));

    server
        .kubectl(&["delete", "pod", "web", "crash", "hog", "--wait=true"])
        .ok();
}
