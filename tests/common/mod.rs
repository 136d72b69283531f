//! End-to-end test harness: starts the real `skiff` binary and drives it with real clients.
//!
//! Owns the life of every process a test starts. Invariant: when a [`TestServer`] or a
//! [`Background`] is dropped (also while a test panics), its whole process group is killed
//! and reaped, and the server's temporary directory (data dir, kubeconfig, client HOME) is
//! removed; on a failing test the tail of the server log is printed first.
//!
//! kubectl and helm come from `$SKIFF_TEST_BIN_DIR` (default `/opt/skiff-test/bin`, filled by
//! `scripts/install-test-deps.sh`), never from `PATH`: the host may carry another version.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod agent;
pub mod batch;
pub mod fake_kubelet;
pub mod http;
pub mod kubectl_io;
pub mod manifests;
pub mod netns;
pub mod node;
pub mod pod_watch;
pub mod process;
pub mod registry;
pub mod sim_nodes;
pub mod token_server;
pub mod webhook_server;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

pub use self::http::Request;
pub use self::process::{Background, Run};

/// How long a server may take from spawn to `/readyz` = 200. Generous: two cores are shared
/// by parallel tests and a debug build.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long kubectl/helm may run before the harness kills them and fails the test.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of the server log a failing test prints.
const LOG_TAIL_LINES: usize = 150;

/// The directory with the test clients (kubectl 1.35, helm 4).
pub fn test_bin_dir() -> PathBuf {
    std::env::var_os("SKIFF_TEST_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/skiff-test/bin"))
}

fn client_binary(name: &str) -> PathBuf {
    let path = test_bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found; run scripts/install-test-deps.sh (or set SKIFF_TEST_BIN_DIR)",
        path.display()
    );
    path
}

/// The `skiff` binary cargo built for this test run.
pub fn skiff_binary() -> PathBuf {
    // scripts/bench.sh points this at the release binary.
    std::env::var_os("SKIFF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skiff")))
}

/// A running `skiff server` with its own port, data dir and client HOME.
pub struct TestServer {
    // Declared first so it is dropped last (after the process is gone).
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    port: u16,
    extra_args: Vec<String>,
    child: Option<Child>,
    starts: u32,
    /// Files written by [`TestServer::write_file`] and per-command outputs get unique names.
    counter: AtomicU64,
    /// Run the node agent too (servers are started with `--disable-agent` otherwise).
    agent: bool,
    /// The agent's host-wide names (bridge, kubelet port), when it runs one.
    node: Option<node::NodeFlags>,
}

impl TestServer {
    /// The agent's private cgroup parent (`SKIFF_CGROUP_PARENT`), when it runs one.
    #[allow(dead_code)]
    pub fn cgroup_parent(&self) -> Option<&str> {
        self.node.as_ref().map(|n| n.cgroup_parent.as_str())
    }

    /// The messages of the events in `namespace` that `field_selector` picks, one per line.
    #[allow(dead_code)]
    pub fn event_messages(&self, namespace: &str, field_selector: &str) -> String {
        self.kubectl_ok(&[
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            field_selector,
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ])
    }

    /// Waits (at most `timeout`) until pod `name` in `default` is in `phase`; returns it.
    #[track_caller]
    pub fn wait_pod_phase(&self, name: &str, phase: &str, timeout: Duration) -> serde_json::Value {
        self.wait_pod(name, &format!("pod {name} is {phase}"), timeout, |p| {
            p["status"]["phase"] == phase
        })
    }

    /// Waits (at most `timeout`) until pod `name` in `default` passes `done`; returns it.
    /// A timeout reports `what` and the last status seen.
    #[track_caller]
    pub fn wait_pod(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        process::eventually(timeout, what, || {
            let p = self.kubectl_json(&["get", "pod", name, "-n", "default"]);
            if done(&p) {
                Ok(p)
            } else {
                Err(p["status"].to_string())
            }
        })
    }

    /// Starts a server with the default flags and waits until it is ready.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server with extra `skiff server` flags and waits until it is ready.
    pub fn start_with(extra_args: &[&str]) -> TestServer {
        TestServer::start_inner(extra_args, false)
    }

    /// Starts a server with its node agent.
    pub fn start_with_agent() -> TestServer {
        TestServer::start_inner(&[], true)
    }

    /// Starts a server with its node agent and extra `skiff server` flags.
    pub fn start_with_agent_and(extra_args: &[&str]) -> TestServer {
        TestServer::start_inner(extra_args, true)
    }

    fn start_inner(extra_args: &[&str], agent: bool) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("skiff-e2e-")
            .tempdir()
            .expect("a temporary directory for the test server");
        let root = dir.path().to_path_buf();
        for sub in ["data", "home", "files"] {
            fs::create_dir_all(root.join(sub)).expect("creating test directories");
        }
        let mut server = TestServer {
            dir: Some(dir),
            root,
            port: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            starts: 0,
            counter: AtomicU64::new(0),
            agent,
            node: None,
        };
        if !server.extra_args.iter().any(|a| a == "--cluster-cidr") {
            server
                .extra_args
                .extend(["--cluster-cidr".to_owned(), server_cluster_cidr()]);
        }
        if agent {
            let mut flags = node::NodeFlags::new(&server.root);
            let args = flags.args(&server.extra_args);
            server.extra_args.extend(args);
            server.node = Some(flags);
        }
        // The port is picked by binding port 0 and releasing it; another process may grab it
        // before the server binds, so a start that fails on its port is retried on a new one.
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn_and_wait_ready() {
                Ok(()) => return server,
                Err(StartError::Exited(msg)) if msg.contains("in use") => last_error = msg,
                Err(e) => panic!("skiff server did not start: {e}"),
            }
        }
        panic!("skiff server did not start after 5 ports: {last_error}");
    }

    /// Base URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The kubelet API port of the server's own node.
    pub fn kubelet_port(&self) -> Option<u16> {
        self.node.as_ref().map(|n| n.kubelet_port)
    }

    /// The server's `--cluster-cidr` (pods of its nodes get /24s of it).
    pub fn cluster_cidr(&self) -> String {
        self.extra_args
            .iter()
            .position(|a| a == "--cluster-cidr")
            .and_then(|i| self.extra_args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| "10.42.0.0/16".to_owned())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.root.join("kubeconfig.yaml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// HOME for kubectl and helm: their caches and config stay inside the test directory.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// The static admin bearer token (user system:admin, group system:masters).
    pub fn admin_token(&self) -> String {
        let path = self.data_dir().join("server/admin-token");
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// The cluster CA (PEM) taken from the admin kubeconfig, saved to a file for curl.
    pub fn ca_path(&self) -> PathBuf {
        self.root.join("ca.crt")
    }

    /// Everything the server wrote to stdout/stderr so far (all starts).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Writes `content` to a fresh file named `name` in the test's file dir and returns its path.
    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.root.join("files").join(name);
        fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// A directory for test files (charts, manifests).
    pub fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs the test kubectl against this server and returns what it did (no assertion).
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_with_stdin(args, None)
    }

    /// Runs kubectl with `stdin` fed to it (for `-f -`).
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = self.kubectl_command(args);
        process::run(&mut cmd, stdin.map(str::as_bytes), CLIENT_TIMEOUT)
    }

    /// Polls `check` every 50 ms for up to `secs`; on timeout fails the test with `what`
    /// and the tail of the server's log.
    #[track_caller]
    pub fn wait_until(&self, what: &str, secs: u64, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting until {what}\n--- server log ---\n{}",
            tail(&self.log(), 40)
        );
    }

    /// kubectl that must succeed; returns its stdout.
    #[track_caller]
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl(args).ok().stdout
    }

    /// `kubectl <args> -o json`, which must succeed, parsed.
    #[track_caller]
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        json(&self.kubectl_ok(&all))
    }

    /// `kubectl apply -f FILE` of `content` saved as `name`; must succeed; returns stdout.
    #[track_caller]
    pub fn apply(&self, name: &str, content: &str) -> String {
        let path = self.write_file(name, content);
        self.kubectl_ok(&["apply", "-f", &path.to_string_lossy()])
    }

    /// Starts kubectl in the background (e.g. `get -w`); it is killed when the handle drops.
    pub fn kubectl_background(&self, args: &[&str]) -> Background {
        let cmd = self.kubectl_command(args);
        let id = self.next_id();
        Background::spawn(cmd, &self.root.join(format!("bg-{id}")))
    }

    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(client_binary("kubectl"));
        cmd.arg("--kubeconfig").arg(self.kubeconfig_path());
        cmd.args(args);
        self.client_env(&mut cmd);
        cmd
    }

    /// Runs the test helm against this server and returns what it did (no assertion).
    pub fn helm(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(client_binary("helm"));
        cmd.args(args);
        cmd.arg("--kubeconfig").arg(self.kubeconfig_path());
        self.client_env(&mut cmd);
        let home = self.home();
        cmd.env("HELM_CACHE_HOME", home.join(".cache/helm"))
            .env("HELM_CONFIG_HOME", home.join(".config/helm"))
            .env("HELM_DATA_HOME", home.join(".local/share/helm"))
            .env_remove("HELM_KUBECONTEXT")
            .env_remove("HELM_NAMESPACE")
            .current_dir(self.files_dir());
        process::run(&mut cmd, None, CLIENT_TIMEOUT)
    }

    fn client_env(&self, cmd: &mut Command) {
        let home = self.home();
        cmd.env("HOME", &home)
            .env("KUBECACHEDIR", home.join(".kube/cache"))
            .env_remove("KUBECONFIG")
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .current_dir(self.files_dir());
    }

    /// A raw HTTPS request to this server (curl, admin token unless told otherwise).
    pub fn request(&self, method: &str, path: &str) -> Request<'_> {
        Request::new(self, method, path)
    }

    /// A kube-rs client authenticated by the admin kubeconfig (client certificate).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())
            .expect("the admin kubeconfig parses");
        let mut config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("the admin kubeconfig gives a client config");
        // Tests talk to loopback only; a proxy from the environment must not get in the way.
        config.proxy_url = None;
        kube::Client::try_from(config).expect("a kube client from the admin kubeconfig")
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs the server's whole process group and reaps it. The data dir stays.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    /// Sends SIGTERM to the server and waits (at most 20 s) for it to exit; returns its status.
    /// Panics (after SIGKILL) if it does not exit in time.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("stop() needs a running server");
        let pid = Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGTERM).expect("sending SIGTERM to the server");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the server") {
                // Anything the server left in its group goes too.
                let _ = killpg(pid, Signal::SIGKILL);
                return status;
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                panic!("skiff server did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and data dir (after [`kill9`] or [`stop`]),
    /// SIGKILLing it first if it is still running, and waits until it is ready.
    ///
    /// [`kill9`]: TestServer::kill9
    /// [`stop`]: TestServer::stop
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(e) = self.spawn_and_wait_ready() {
            panic!("skiff server did not restart: {e}");
        }
    }

    /// [`restart`] with more `skiff server` flags, kept for later restarts too; see
    /// [`merge_flags`] for how they replace the flags the server was started with.
    ///
    /// [`restart`]: TestServer::restart
    #[allow(dead_code)]
    pub fn restart_with(&mut self, extra_args: &[&str]) {
        self.extra_args = merge_flags(&self.extra_args, extra_args);
        self.restart();
    }

    fn spawn_and_wait_ready(&mut self) -> Result<(), StartError> {
        self.starts += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log");
        use std::io::Write as _;
        writeln!(
            &log,
            "=== test harness: start #{} on port {} ===",
            self.starts, self.port
        )
        .expect("writing the server log");
        let log_err = log.try_clone().expect("cloning the log file handle");

        let mut cmd = Command::new(skiff_binary());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            // Loopback unless the test binds elsewhere (agents in network namespaces).
            .args(
                (!self.extra_args.iter().any(|a| a == "--bind-address"))
                    .then_some(["--bind-address", "127.0.0.1"])
                    .into_iter()
                    .flatten(),
            )
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig_path())
            .arg("--write-kubeconfig-mode")
            .arg("0600")
            .args((!self.agent).then_some("--disable-agent"))
            .args(&self.extra_args)
            .env("RUST_BACKTRACE", "1")
            .envs(
                self.node
                    .as_ref()
                    .map(|n| ("SKIFF_CGROUP_PARENT", n.cgroup_parent.clone())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Its own process group, so Drop can kill everything it starts.
            .process_group(0);
        process::die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| StartError::Spawn(e.to_string()))?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(StartError::Exited(format!(
                        "server exited with {status} before it was ready; log tail:\n{}",
                        tail(&self.log(), 40)
                    )));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.kubeconfig_path().is_file()
                && self.readyz_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(StartError::NotReady(format!(
                    "no 200 from /readyz within {READY_TIMEOUT:?}; log tail:\n{}",
                    tail(&self.log(), 40)
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.save_ca();
        Ok(())
    }

    fn readyz_ok(&self) -> bool {
        // Readiness only; the certificate is checked by every later request.
        let out = Command::new("curl")
            .args([
                "-sk",
                "--noproxy",
                "*",
                "--max-time",
                "2",
                "-o",
                "/dev/null",
            ])
            .args(["-w", "%{http_code}"])
            .arg(format!("{}/readyz", self.url()))
            .output();
        matches!(out, Ok(o) if o.stdout == b"200")
    }

    fn save_ca(&self) {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())
            .expect("the admin kubeconfig parses");
        let cluster = kubeconfig
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .expect("the admin kubeconfig has a cluster");
        let pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .expect("certificate-authority-data is base64"),
            (None, Some(path)) => fs::read(path).expect("reading the kubeconfig's CA file"),
            (None, None) => panic!("the admin kubeconfig names no certificate authority"),
        };
        fs::write(self.ca_path(), pem).expect("saving the CA for curl");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
        if let Some(flags) = &self.node {
            node::clean_up(&self.data_dir().join("agent"), flags);
        }
        if std::thread::panicking() {
            eprintln!(
                "----- skiff server log ({}), last {LOG_TAIL_LINES} lines -----\n{}\n----- end of server log -----",
                self.log_path().display(),
                tail(&self.log(), LOG_TAIL_LINES)
            );
        }
        if std::env::var_os("SKIFF_TEST_KEEP_DIR").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping test directory {}", dir.keep().display());
            }
        }
    }
}

#[derive(Debug)]
enum StartError {
    Spawn(String),
    Exited(String),
    NotReady(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Spawn(e) => write!(f, "cannot spawn {}: {e}", skiff_binary().display()),
            StartError::Exited(e) | StartError::NotReady(e) => f.write_str(e),
        }
    }
}

/// SIGKILLs the child's process group (the child leads it) and reaps the child.
pub(crate) fn kill_group(child: &mut Child) {
    let pgid = Pid::from_raw(child.id() as i32);
    // ESRCH: the group is already gone, which is what we want.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// A pod range of its own for a server that runs pods (10.N.0.0/16 from the process id),
/// so test nodes on one host do not route each other's pods.
pub fn server_cluster_cidr() -> String {
    format!("10.{}.0.0/16", 100 + std::process::id() % 150)
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding an ephemeral port");
    listener.local_addr().expect("a bound address").port()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The live (not terminating) pods matching `selector` that are Running and Ready, as
/// (pod, node) pairs.
pub fn ready_pods(server: &TestServer, selector: &str) -> Vec<(String, String)> {
    let pods = server.kubectl_json(&["get", "pods", "-l", selector]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|p| {
            let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (field(&p["metadata"]["name"]), field(&p["spec"]["nodeName"]))
        })
        .collect()
}

/// A Node's taints as `key:effect` strings.
#[allow(dead_code)]
pub fn taint_keys(node: &serde_json::Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Splits a kubectl table into rows of whitespace-separated cells (header included).
pub fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The row of a kubectl table whose cell `col` equals `value`.
#[track_caller]
pub fn row_where<'a>(rows: &'a [Vec<String>], col: usize, value: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r.get(col).map(String::as_str) == Some(value))
        .unwrap_or_else(|| panic!("no row with column {col} = {value:?} in {rows:#?}"))
}

/// Parses JSON output of a client, with the text in the panic message when it is not JSON.
#[track_caller]
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// `base` with the flags of `extra` set. A flag may come as `--flag value`, `--flag=value`
/// or bare (`--flag`, when no value follows). Each flag that `extra` names loses every value
/// it had in `base` and takes those `extra` gives it, in order, so a repeatable flag
/// (`--node-label`) can be set to several values at once.
#[allow(dead_code)]
pub fn merge_flags(base: &[String], extra: &[&str]) -> Vec<String> {
    fn parse(args: Vec<String>) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        let mut rest = args.into_iter().peekable();
        while let Some(arg) = rest.next() {
            if let Some((flag, value)) = arg.split_once('=').filter(|_| arg.starts_with("--")) {
                out.push((flag.to_string(), Some(value.to_string())));
                continue;
            }
            let value = rest.next_if(|v| !v.starts_with("--"));
            out.push((arg, value));
        }
        out
    }
    let new = parse(extra.iter().map(|s| s.to_string()).collect());
    let mut merged: Vec<(String, Option<String>)> = parse(base.to_vec())
        .into_iter()
        .filter(|(flag, _)| !new.iter().any(|(f, _)| f == flag))
        .collect();
    merged.extend(new);
    merged
        .into_iter()
        .flat_map(|(flag, value)| std::iter::once(flag).chain(value))
        .collect()
}

/// An object's status condition of type `kind` (`Null` when it has none).
pub fn status_condition(object: &serde_json::Value, kind: &str) -> serde_json::Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_default()
}
