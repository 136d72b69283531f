//! `skiff sim-nodes` processes joined to a [`TestServer`]: the process group is killed when
//! the [`TestSimNodes`] drops (the simulated nodes hold no host state: no mounts, links or
//! containers; their data dir is inside the server's test directory).

use super::process::Background;
use super::{skiff_binary, TestServer};
use std::path::PathBuf;
use std::process::Command;

pub struct TestSimNodes {
    pub data_dir: PathBuf,
    pub process: Background,
}

impl Drop for TestSimNodes {
    fn drop(&mut self) {
        self.process.kill();
    }
}

impl TestSimNodes {
    /// Starts `skiff sim-nodes --count <count>` joined with the server's own token.
    pub fn start(server: &TestServer, count: u32, extra: &[&str]) -> TestSimNodes {
        TestSimNodes::start_in(server, "sim-nodes", count, extra)
    }

    /// [`TestSimNodes::start`] with its data and log in `dir` under the server's files
    /// directory, so a second group (another `--name-prefix`) can join beside the first.
    pub fn start_in(server: &TestServer, dir: &str, count: u32, extra: &[&str]) -> TestSimNodes {
        let token = std::fs::read_to_string(server.data_dir().join("server/token"))
            .expect("the server's join token");
        let data_dir = server.files_dir().join(dir);
        let mut cmd = Command::new(skiff_binary());
        cmd.arg("sim-nodes")
            .args(["--count", &count.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env("SKIFF_URL", server.url())
            .env("SKIFF_TOKEN", token.trim())
            .env("RUST_BACKTRACE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost");
        let process = Background::spawn(cmd, &data_dir);
        TestSimNodes { data_dir, process }
    }

    /// How many established TCP connections the command holds to `port` on this host (its
    /// sockets in `/proc/PID/fd` matched against `/proc/net/tcp{,6}`).
    pub fn connections_to(&self, port: u16) -> usize {
        let pid = self.process.pid().expect("sim-nodes is running");
        let inodes: std::collections::HashSet<String> =
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("the process's fds")
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect();
        let port = format!("{port:04X}");
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| {
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 9
                    && f[2].rsplit(':').next() == Some(port.as_str())
                    && f[3] == "01"
                    && inodes.contains(f[9])
            })
            .count()
    }

    /// What the command logged so far.
    pub fn log(&self) -> String {
        self.process.stderr()
    }

    /// Fails the test with the log when the command has exited.
    #[track_caller]
    pub fn check_running(&mut self) {
        if self.process.has_exited() {
            panic!("skiff sim-nodes exited:\n{}", self.log());
        }
    }
}
