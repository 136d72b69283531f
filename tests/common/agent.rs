//! `skiff agent` processes joined to a [`TestServer`]. Each agent has its own data dir
//! (inside the server's test directory), node name and kubelet port; the process group is
//! killed when the [`TestAgent`] drops.
//!
//! An agent runs on the host network ([`TestAgent::start`]) or in its own network namespace
//! joined by a veth ([`TestAgent::start_in_netns`], the server then binds beyond loopback);
//! tests give each a distinct `--node-name` either way (they share the host name).

use super::process::{self, Background, Run};
use super::{skiff_binary, TestServer, CLIENT_TIMEOUT};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct TestAgent {
    pub name: String,
    pub data_dir: PathBuf,
    pub process: Background,
    pub node: super::node::NodeFlags,
    /// How the process was started, for [`TestAgent::kill_and_restart`]: the plain command
    /// and the network namespace it ran in.
    command: Command,
    netns: Option<String>,
    log_prefix: PathBuf,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.process.kill();
        super::node::clean_up(&self.data_dir.join("agent"), &self.node);
    }
}

/// The default data dir of agent `name`.
pub fn agent_dir(server: &TestServer, name: &str) -> PathBuf {
    server.files_dir().join(format!("agent-{name}"))
}

/// The `skiff agent` command for `name`, joining `server` with `token`.
pub fn agent_command(
    server: &TestServer,
    name: &str,
    token: &str,
    extra: &[&str],
    data_dir: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(skiff_binary());
    cmd.arg("agent")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--node-name", name])
        .args(extra)
        .env("SKIFF_URL", server.url())
        .env("SKIFF_TOKEN", token)
        .env("RUST_BACKTRACE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost");
    cmd
}

impl TestAgent {
    /// Starts an agent in the background.
    pub fn start(server: &TestServer, name: &str, token: &str, extra: &[&str]) -> TestAgent {
        TestAgent::start_in(server, name, token, extra, None)
    }

    /// Starts an agent with its data in `data_dir` (default: per node name).
    pub fn start_in(
        server: &TestServer,
        name: &str,
        token: &str,
        extra: &[&str],
        data_dir: Option<PathBuf>,
    ) -> TestAgent {
        let data_dir = data_dir.unwrap_or_else(|| agent_dir(server, name));
        let mut cmd = agent_command(server, name, token, extra, &data_dir);
        let node = node_flags(server, &data_dir, extra, &mut cmd);
        let prefix = server
            .files_dir()
            .join(format!("agent-{name}-{}", unique()));
        TestAgent {
            name: name.to_owned(),
            data_dir,
            process: Background::spawn(super::process::copy_command(&cmd), &prefix),
            node,
            command: cmd,
            netns: None,
            log_prefix: prefix,
        }
    }

    /// Starts an agent inside `ns`, joining the server at its host-side address.
    pub fn start_in_netns(
        server: &TestServer,
        ns: &super::netns::NetNs,
        name: &str,
        token: &str,
        extra: &[&str],
    ) -> TestAgent {
        let data_dir = agent_dir(server, name);
        let mut cmd = agent_command(server, name, token, extra, &data_dir);
        let node = node_flags(server, &data_dir, extra, &mut cmd);
        cmd.env(
            "SKIFF_URL",
            format!("https://{}:{}", ns.host_ip, server.port()),
        );
        let prefix = server
            .files_dir()
            .join(format!("agent-{name}-{}", unique()));
        TestAgent {
            name: name.to_owned(),
            data_dir,
            process: Background::spawn(ns.wrap(&cmd), &prefix),
            node,
            command: cmd,
            netns: Some(ns.name.clone()),
            log_prefix: prefix,
        }
    }

    /// [`TestAgent::start_in_netns`] pulling `docker.io` images from `reg` (a registries.yaml
    /// mirror at the veth's host end), so manifests keep names like `busybox:1.36`.
    pub fn start_in_netns_with_mirror(
        server: &TestServer,
        ns: &super::netns::NetNs,
        name: &str,
        token: &str,
        reg: &super::registry::Registry,
    ) -> TestAgent {
        let mirrors = server.write_file(
            &format!("registries-{}.yaml", ns.name),
            &format!(
                "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{}:{}\"\n",
                ns.host_ip,
                reg.port()
            ),
        );
        let mirrors = mirrors.to_string_lossy().into_owned();
        TestAgent::start_in_netns(server, ns, name, token, &["--private-registry", &mirrors])
    }

    /// SIGKILLs the agent (the containers' shims, each in a session of its own, live on)
    /// and starts it again as before: same data dir, flags and network namespace. Its log
    /// starts afresh.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// SIGKILLs the agent alone: to the server, a host that went silent. Its containers
    /// live on in their shims until [`TestAgent::restart`] (or the agent's drop) deals
    /// with them.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the agent again as before (after [`TestAgent::kill`]): same data dir, flags
    /// and network namespace. Its log starts afresh.
    pub fn restart(&mut self) {
        let cmd = match &self.netns {
            Some(ns) => super::netns::wrap_in(ns, &self.command),
            None => super::process::copy_command(&self.command),
        };
        self.log_prefix.set_extension(format!("{}", unique()));
        self.process = Background::spawn(cmd, &self.log_prefix);
    }

    /// Runs an agent that must fail to join; returns what it printed.
    pub fn run_to_failure(server: &TestServer, name: &str, token: &str) -> Run {
        TestAgent::run_to_failure_with(server, name, token, &[])
    }

    /// [`TestAgent::run_to_failure`] with extra `skiff agent` flags.
    pub fn run_to_failure_with(
        server: &TestServer,
        name: &str,
        token: &str,
        extra_args: &[&str],
    ) -> Run {
        let mut cmd = agent_command(server, name, token, extra_args, &agent_dir(server, name));
        process::run(&mut cmd, None, CLIENT_TIMEOUT).fails()
    }

    /// Waits until the agent's Node is Ready; returns how long that took.
    #[track_caller]
    pub fn wait_ready(&mut self, server: &TestServer, timeout: Duration) -> Duration {
        let started = Instant::now();
        wait_node_ready(server, &self.name, timeout, || {
            if self.process.has_exited() {
                panic!("agent {} exited:\n{}", self.name, self.process.stderr());
            }
        });
        started.elapsed()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.process.stderr()
    }
}

/// Gives the agent its own bridge, kubelet port and pod log dir, and the server's pod range.
fn node_flags(
    server: &TestServer,
    data_dir: &std::path::Path,
    extra: &[&str],
    cmd: &mut Command,
) -> super::node::NodeFlags {
    let mut flags = super::node::NodeFlags::new(data_dir);
    let given: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    cmd.args(flags.args(&given))
        .args(["--node-cluster-cidr", &server.cluster_cidr()])
        .env("SKIFF_CGROUP_PARENT", &flags.cgroup_parent);
    flags
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Whether node `name` exists and its Ready condition is True.
pub fn node_ready(server: &TestServer, name: &str) -> bool {
    let run = server.kubectl(&["get", "node", name, "-o", "json"]);
    if !run.success() {
        return false;
    }
    let node = super::json(&run.stdout);
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Waits for node `name` to be Ready, calling `check` between looks (to fail early).
#[track_caller]
pub fn wait_node_ready(
    server: &TestServer,
    name: &str,
    timeout: Duration,
    mut check: impl FnMut(),
) {
    let deadline = Instant::now() + timeout;
    while !node_ready(server, name) {
        check();
        assert!(
            Instant::now() < deadline,
            "node {name} not Ready within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `skiff` with `args` to completion.
pub fn skiff(args: &[&str]) -> process::Run {
    let mut cmd = Command::new(skiff_binary());
    cmd.args(args).env("NO_PROXY", "127.0.0.1,localhost");
    process::run(&mut cmd, None, CLIENT_TIMEOUT)
}

/// The server's own join token (`skiff token`).
pub fn server_token(server: &TestServer) -> String {
    skiff(&["token", "--data-dir", &server.data_dir().to_string_lossy()])
        .ok()
        .stdout
        .trim()
        .to_owned()
}

/// A new bootstrap join token (`skiff token create`).
pub fn create_token(server: &TestServer, extra: &[&str]) -> String {
    let kubeconfig = server.kubeconfig_path();
    let mut args = vec![
        "token",
        "create",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    args.extend(extra);
    skiff(&args).ok().stdout.trim().to_owned()
}
