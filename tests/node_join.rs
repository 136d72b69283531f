//! Nodes joining a cluster, end to end through the real binary and real kubectl: the
//! server's own node, agents joining with the server token and with `skiff token create`
//! tokens, refusals of bad credentials (one line on the agent, 401 on the server, no
//! Node), the node password, the Node authorizer confining an agent's identity, the Lease
//! and the podCIDRs.
//!
//! The two agents of the join test run in their own network namespaces (a veth to the
//! host); the others run on the host network with distinct node names and data dirs (see
//! `common::agent`).

mod common;

use common::agent::{create_token, node_ready, server_token, skiff, TestAgent};
use common::netns::NetNs;
use common::{json, process, TestServer, CLIENT_TIMEOUT};
use std::process::Command;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(20);

fn node(server: &TestServer, name: &str) -> serde_json::Value {
    server.kubectl_json(&["get", "node", name])
}

fn no_node(server: &TestServer, name: &str) {
    let run = server.kubectl(&["get", "node", name]);
    assert!(!run.success(), "node {name} must not exist:\n{run}");
    assert!(run.stderr.contains("NotFound"), "{run}");
}

fn meminfo_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn condition<'a>(node: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {node}"))
}

#[test]
fn the_servers_own_node_is_ready_at_start_with_its_role_lease_and_pod_cidr() {
    let started = Instant::now();
    let server =
        TestServer::start_with_agent_and(&["--node-name", "srv", "--node-label", "tier=edge"]);
    common::agent::wait_node_ready(&server, "srv", READY, || {});
    eprintln!("server start -> node Ready: {:?}", started.elapsed());
    // The agent logs the time its registration took (once its events are posted too).
    let deadline = Instant::now() + READY;
    let registered = loop {
        if let Some(l) = server
            .log()
            .lines()
            .find(|l| l.contains("node registered and Ready"))
        {
            break l.to_owned();
        }
        assert!(Instant::now() < deadline, "no registration in the log");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("{registered}");

    // kubectl's columns: Ready, the control-plane role, the kubelet version.
    let rows = common::table_rows(&server.kubectl_ok(&["get", "nodes"]));
    let row = common::row_where(&rows, 0, "srv");
    assert_eq!(row[1], "Ready");
    assert_eq!(row[2], "control-plane");
    assert_eq!(row[4], "v1.35.0");

    let n = node(&server, "srv");
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "srv");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(
        labels["beta.kubernetes.io/arch"],
        labels["kubernetes.io/arch"]
    );
    assert_eq!(labels["tier"], "edge");
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");
    let ready = condition(&n, "Ready");
    assert_eq!(ready["reason"], "KubeletReady");
    assert_eq!(ready["message"], "kubelet is posting ready status");
    assert_eq!(
        condition(&n, "MemoryPressure")["reason"],
        "KubeletHasSufficientMemory"
    );
    // DiskPressure is measured on the agent dir's filesystem, against the test nodes'
    // nodefs.available<64Mi (common::node::TEST_EVICTION_HARD).
    let fs = nix::sys::statvfs::statvfs(&server.data_dir()).unwrap();
    let full = (fs.blocks_available() as u64) * fs.fragment_size() < 64 << 20;
    let disk = condition(&n, "DiskPressure");
    assert_eq!(disk["status"], if full { "True" } else { "False" });
    assert_eq!(
        disk["reason"],
        if full {
            "KubeletHasDiskPressure"
        } else {
            "KubeletHasNoDiskPressure"
        }
    );
    assert_eq!(
        condition(&n, "PIDPressure")["reason"],
        "KubeletHasSufficientPID"
    );
    let info = &n["status"]["nodeInfo"];
    assert_eq!(info["kubeletVersion"], "v1.35.0");
    assert!(info["containerRuntimeVersion"]
        .as_str()
        .unwrap()
        .starts_with("skiff://"));
    assert_eq!(
        info["bootID"].as_str().unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
    );
    assert_eq!(
        n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        server.kubelet_port().expect("the server runs its node")
    );

    // The first /24 of the cluster CIDR.
    let first = server.cluster_cidr().replace(".0.0/16", ".0.0/24");
    let deadline = Instant::now() + READY;
    loop {
        let n = node(&server, "srv");
        if n["spec"]["podCIDR"] == first.as_str() {
            assert_eq!(n["spec"]["podCIDRs"], serde_json::json!([first]));
            break;
        }
        assert!(Instant::now() < deadline, "no podCIDR: {}", n["spec"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    // The kubelet's events, as `kubectl describe node` shows them.
    let describe = server.kubectl_ok(&["describe", "node", "srv"]);
    assert!(describe.contains("Starting kubelet."), "{describe}");
    assert!(
        describe.contains("Node srv status is now: NodeHasSufficientMemory"),
        "{describe}"
    );
    let lease = server.kubectl_json(&["get", "lease", "-n", "kube-node-lease", "srv"]);
    assert_eq!(lease["spec"]["holderIdentity"], "srv");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        n["metadata"]["uid"]
    );
}

#[test]
fn agents_join_with_the_server_token_and_with_a_bootstrap_token() {
    // Each agent in its own network namespace, reaching the server over a veth.
    let ns_a = NetNs::create();
    let ns_b = NetNs::create();
    let server = common::netns::server_reachable_from(&[&ns_a, &ns_b]);
    let token = server_token(&server);
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    let bootstrap = create_token(&server, &["--description", "for b1", "--ttl", "1h"]);
    let (_, creds) = bootstrap.split_once("::").expect("a full join token");
    let id = creds.split('.').next().unwrap();

    let started = Instant::now();
    let mut a1 = TestAgent::start_in_netns(
        &server,
        &ns_a,
        "a1",
        &token,
        &[
            "--node-taint",
            "dedicated=edge:NoSchedule",
            "--kubelet-port",
            "10261",
            "--node-ip",
            "127.0.0.2",
        ],
    );
    let mut b1 = TestAgent::start_in_netns(
        &server,
        &ns_b,
        "b1",
        &bootstrap,
        &[
            "--kube-reserved",
            "cpu=100m,memory=256Mi",
            "--system-reserved",
            "memory=100Mi",
            "--eviction-hard",
            "memory.available<200Mi,nodefs.available<64Mi",
        ],
    );
    a1.wait_ready(&server, READY);
    eprintln!("agent start -> node Ready: {:?}", started.elapsed());
    b1.wait_ready(&server, READY);

    // Capacity from the host, allocatable less reservations and the eviction threshold
    // (--eviction-hard's memory.available, 200Mi instead of the default 100Mi).
    let cpus = std::thread::available_parallelism().unwrap().get();
    let total = meminfo_kib("MemTotal");
    let n = node(&server, "b1");
    let cap = &n["status"]["capacity"];
    assert_eq!(cap["cpu"], cpus.to_string());
    assert_eq!(cap["memory"], format!("{total}Ki"));
    assert_eq!(cap["pods"], "110");
    assert!(cap["ephemeral-storage"].as_str().unwrap().ends_with("Ki"));
    // Without --node-ip: the address of the namespace's own interface.
    assert_eq!(n["status"]["addresses"][0]["type"], "InternalIP");
    assert_eq!(
        n["status"]["addresses"][0]["address"],
        ns_b.ns_ip.to_string()
    );
    let alloc = &n["status"]["allocatable"];
    assert_eq!(alloc["cpu"], format!("{}m", cpus * 1000 - 100));
    assert_eq!(
        alloc["memory"],
        format!("{}Ki", total - (256 + 100 + 200) * 1024)
    );
    let a = node(&server, "a1");
    assert_eq!(a["spec"]["taints"][0]["key"], "dedicated");
    assert_eq!(a["spec"]["taints"][0]["effect"], "NoSchedule");
    assert_eq!(
        a["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        10261
    );
    let addresses = a["status"]["addresses"].as_array().unwrap();
    assert!(
        addresses
            .iter()
            .any(|x| x["type"] == "InternalIP" && x["address"] == "127.0.0.2"),
        "{addresses:?}"
    );
    // The serving certificate names the node and its --node-ip.
    let pem =
        std::fs::read(common::agent::agent_dir(&server, "a1").join("agent/serving-kubelet.crt"))
            .unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = p.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(names.iter().any(|n| n.contains("a1")), "{names:?}");
    assert!(
        names.iter().any(|n| n.contains("7f:00:00:02")),
        "127.0.0.2: {names:?}"
    );
    assert!(addresses
        .iter()
        .any(|x| x["type"] == "Hostname" && x["address"] == "a1"));

    // Both certificates of both nodes went through CSRs the server approved.
    let csrs = server.kubectl_json(&["get", "csr"]);
    let by = |signer: &str, requester: &str| {
        csrs["items"].as_array().unwrap().iter().any(|c| {
            c["spec"]["signerName"] == signer
                && c["spec"]["username"] == requester
                && c["status"]["certificate"].is_string()
        })
    };
    assert!(by(
        "kubernetes.io/kube-apiserver-client-kubelet",
        "system:bootstrap:server"
    ));
    assert!(by(
        "kubernetes.io/kube-apiserver-client-kubelet",
        &format!("system:bootstrap:{id}")
    ));
    assert!(by("kubernetes.io/kubelet-serving", "system:node:a1"));
    assert!(by("kubernetes.io/kubelet-serving", "system:node:b1"));
    for name in ["a1", "b1"] {
        let dir = common::agent::agent_dir(&server, name).join("agent");
        for f in [
            "client-kubelet.crt",
            "client-kubelet.key",
            "serving-kubelet.crt",
            "node-password",
        ] {
            assert!(dir.join(f).is_file(), "{name}: {f}");
        }
    }

    // Distinct podCIDRs.
    let deadline = Instant::now() + READY;
    let cidrs = loop {
        let a = node(&server, "a1")["spec"]["podCIDR"].clone();
        let b = node(&server, "b1")["spec"]["podCIDR"].clone();
        if a.is_string() && b.is_string() {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "podCIDRs not allocated");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(cidrs.0, cidrs.1);

    // The Lease is renewed every 10 s.
    let renew_time = || {
        server.kubectl_json(&["get", "lease", "-n", "kube-node-lease", "a1"])["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = renew_time();
    let deadline = Instant::now() + Duration::from_secs(25);
    while renew_time() == first {
        assert!(Instant::now() < deadline, "lease not renewed");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The token is listed and can be deleted; the node it made stays.
    let list = skiff(&[
        "token",
        "list",
        "--kubeconfig",
        server.kubeconfig_path().to_str().unwrap(),
    ])
    .ok()
    .stdout;
    assert!(list.contains(id) && list.contains("for b1"), "{list}");
    skiff(&[
        "token",
        "delete",
        id,
        "--kubeconfig",
        server.kubeconfig_path().to_str().unwrap(),
    ])
    .ok();
    assert!(server
        .kubectl(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            &format!("bootstrap-token-{id}")
        ])
        .stderr
        .contains("NotFound"));

    // A restarted agent reuses its certificates: no new CSR.
    let count = |s: &TestServer| {
        s.kubectl_json(&["get", "csr"])["items"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = count(&server);
    drop(b1);
    let mut b1 = TestAgent::start_in_netns(&server, &ns_b, "b1", &bootstrap, &[]);
    // Ready already: wait for the new process's log line instead.
    let deadline = Instant::now() + READY;
    while !b1.log().contains("node registered and Ready") {
        assert!(!b1.process.has_exited(), "{}", b1.log());
        assert!(Instant::now() < deadline, "{}", b1.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        b1.log()
            .contains("using the stored node client certificate"),
        "{}",
        b1.log()
    );
    assert_eq!(count(&server), before);
    assert!(node_ready(&server, "b1"));
}

#[test]
fn bad_credentials_are_refused_in_one_line_and_register_nothing() {
    let server = TestServer::start();
    let token = server_token(&server);

    let one_line = |run: &process::Run, wanted: &str| {
        let last = run
            .stderr
            .trim()
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        assert!(last.starts_with("error: "), "{run}");
        assert!(last.contains(wanted), "{run}");
        last
    };

    // A wrong secret: 401.
    let wrong = format!("{}x", &token[..token.len() - 1]);
    let run = TestAgent::run_to_failure(&server, "w1", &wrong);
    one_line(&run, "the server refused the join token (401 Unauthorized)");
    let (_, secret) = wrong.rsplit_once(':').unwrap();
    let reply = server
        .request("GET", "/api")
        .auth(common::http::Auth::Bearer(secret.to_owned()))
        .send();
    assert_eq!(reply.status, 401);
    no_node(&server, "w1");

    // A CA hash that is not this server's.
    let (_, creds) = token.split_once("::").unwrap();
    let other = format!("K10{}::{creds}", "0".repeat(64));
    let run = TestAgent::run_to_failure(&server, "w2", &other);
    one_line(&run, "is not the cluster the token is for");
    no_node(&server, "w2");

    // A flag the node cannot honour: a clear error before anything is registered.
    let run = TestAgent::run_to_failure_with(
        &server,
        "w4",
        &token,
        &["--eviction-hard", "pid.available<5%"],
    );
    one_line(&run, "invalid --eviction-hard \"pid.available<5%\"");
    no_node(&server, "w4");
    let run =
        TestAgent::run_to_failure_with(&server, "w6", &token, &["--image-gc-low-threshold", "90"]);
    one_line(
        &run,
        "--image-gc-low-threshold 90 must be less than --image-gc-high-threshold 85",
    );
    no_node(&server, "w6");

    // A host without the cgroup controllers pod limits need: `ip netns exec` mounts a
    // fresh sysfs over /sys, hiding every cgroup hierarchy from the agent.
    let ns = NetNs::create();
    let cmd = common::agent::agent_command(
        &server,
        "w5",
        &token,
        &[],
        &common::agent::agent_dir(&server, "w5"),
    );
    let mut no_cgroups = Command::new("ip");
    no_cgroups
        .args(["netns", "exec", &ns.name])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let run = process::run(&mut no_cgroups, None, CLIENT_TIMEOUT).fails();
    one_line(
        &run,
        "no mounted cgroup hierarchy has the cpu, memory, pids controller(s)",
    );
    no_node(&server, "w5");

    // An expired bootstrap token.
    let short = create_token(&server, &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let run = TestAgent::run_to_failure(&server, "w3", &short);
    one_line(&run, "401 Unauthorized");
    no_node(&server, "w3");
    // The token cleaner removes the expired token's Secret.
    let id = short
        .rsplit("::")
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let secret = format!("bootstrap-token-{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server
        .kubectl(&["get", "secret", "-n", "kube-system", &secret])
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{secret} still there 10 s after it expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Nothing asked for a certificate on their behalf.
    let csrs = server.kubectl_json(&["get", "csr"]);
    assert_eq!(csrs["items"].as_array().unwrap().len(), 0, "{csrs}");
}

#[test]
fn a_second_host_cannot_take_over_a_node_name_until_its_password_secret_is_deleted() {
    let server = TestServer::start();
    let token = server_token(&server);
    let mut first = TestAgent::start(&server, "p1", &token, &[]);
    first.wait_ready(&server, READY);
    drop(first);

    // Another host (its own data dir, so its own password) under the same name.
    let other_dir = server.files_dir().join("other-host");
    let mut cmd = common::agent::agent_command(&server, "p1", &token, &[], &other_dir);
    let run = process::run(&mut cmd, None, CLIENT_TIMEOUT).fails();
    let last = run
        .stderr
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.starts_with("error: joining as node \"p1\": node password rejected"),
        "{run}"
    );
    assert!(last.contains("kube-system/p1.node-password.skiff"), "{run}");

    // The way out the message names.
    server.kubectl_ok(&[
        "delete",
        "secret",
        "-n",
        "kube-system",
        "p1.node-password.skiff",
    ]);
    let mut second = TestAgent::start_in(&server, "p1", &token, &[], Some(other_dir));
    let deadline = Instant::now() + READY;
    while !second.log().contains("node registered and Ready") {
        assert!(!second.process.has_exited(), "{}", second.log());
        assert!(Instant::now() < deadline, "{}", second.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_agents_identity_reaches_only_its_own_node() {
    let server = TestServer::start_with_agent_and(&["--node-name", "srv"]);
    let token = server_token(&server);
    let mut agent = TestAgent::start(&server, "n1", &token, &[]);
    agent.wait_ready(&server, READY);
    common::agent::wait_node_ready(&server, "srv", READY, || {});
    let dir = agent.data_dir.join("agent");
    let as_node = |args: &[&str]| {
        let mut cmd = Command::new(common::test_bin_dir().join("kubectl"));
        cmd.args(["--server", &server.url()])
            .arg(format!(
                "--certificate-authority={}",
                server.ca_path().display()
            ))
            .arg(format!(
                "--client-certificate={}",
                dir.join("client-kubelet.crt").display()
            ))
            .arg(format!(
                "--client-key={}",
                dir.join("client-kubelet.key").display()
            ))
            .args(args)
            .env("HOME", server.home())
            .env("NO_PROXY", "127.0.0.1,localhost");
        process::run(&mut cmd, None, CLIENT_TIMEOUT)
    };
    let patch =
        r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Hijacked"}]}}"#;
    let other = as_node(&[
        "patch",
        "node",
        "srv",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
    assert!(!other.success(), "{other}");
    assert!(
        other.stderr.contains("Forbidden") || other.stderr.contains("forbidden"),
        "{other}"
    );
    assert!(other.stderr.contains("system:node:n1"), "{other}");
    let own = as_node(&["label", "node", "n1", "example.com/checked=yes"]);
    assert!(own.success(), "{own}");
    let secrets = as_node(&["get", "secrets", "-n", "kube-system"]);
    assert!(
        !secrets.success() && secrets.stderr.contains("forbidden"),
        "{secrets}"
    );
    assert_eq!(condition(&node(&server, "srv"), "Ready")["status"], "True");
    let whoami = json(&as_node(&["auth", "whoami", "-o", "json"]).ok().stdout);
    assert_eq!(whoami["status"]["userInfo"]["username"], "system:node:n1");

    // Renewal: the node asks for a new client certificate with its own identity and it is
    // auto-approved (kubeadm:node-autoapprove-certificate-rotation) and issued; one for
    // another node's name is refused.
    let csr_manifest = |name: &str, node: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        use base64::Engine as _;
        let path = server.write_file(
            &format!("{name}.json"),
            &serde_json::json!({
                "apiVersion": "certificates.k8s.io/v1",
                "kind": "CertificateSigningRequest",
                "metadata": {"name": name},
                "spec": {
                    "request": base64::engine::general_purpose::STANDARD.encode(pem),
                    "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                    "usages": ["digital signature", "client auth"],
                },
            })
            .to_string(),
        );
        path.to_string_lossy().into_owned()
    };
    as_node(&["create", "-f", &csr_manifest("renew-n1", "n1")]).ok();
    let deadline = Instant::now() + READY;
    loop {
        let csr = server.kubectl_json(&["get", "csr", "renew-n1"]);
        if csr["status"]["certificate"].is_string() {
            let approved = &csr["status"]["conditions"][0];
            assert_eq!(approved["type"], "Approved");
            assert_eq!(approved["reason"], "AutoApproved");
            break;
        }
        assert!(Instant::now() < deadline, "renewal not issued: {csr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let theft = as_node(&["create", "-f", &csr_manifest("steal-srv", "srv")]);
    assert!(
        !theft.success() && theft.stderr.contains("forbidden"),
        "{theft}"
    );
}
