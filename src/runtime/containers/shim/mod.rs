//! The shim: one daemonized, single-threaded process per container (`skiff __shim <dir>`).
//! It creates the container (embedded or through an external OCI runtime), pumps its
//! output into the CRI log and to attached clients, reaps it, records the exit in
//! `state.json`, and serves the control socket until told to shut down.
//!
//! Invariant: no threads and no async runtime: `fork`/`clone`/`setns` in the shim and its
//! children are only sound because the process is single-threaded.

pub mod logs;
pub mod protocol;
mod server;
mod trim;

use super::state::{self, ContainerState, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const SHIM_ARG: &str = "__shim";
pub const SHIM_CONFIG: &str = "shim.json";
pub const SHIM_PID: &str = "shim.pid";

/// What the facade tells the shim besides `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: String,
    pub log_path: PathBuf,
    /// `None`: embedded; `Some(binary)`: external OCI runtime.
    pub external_runtime: Option<String>,
    /// State directory passed to the external runtime as `--root`.
    pub runtime_root: PathBuf,
    pub stdin: bool,
    pub tty: bool,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// The host's cgroup mounts as the agent found them: a shim reading the whole mount
    /// table itself (which grows with every pod) was 2% of a 100-pod burst's CPU. Absent
    /// in configs of older agents; the shim then reads the table.
    #[serde(default)]
    pub cgroup_hierarchies: Option<super::cgroups::Hierarchies>,
}

/// Hidden entry point: call first thing in `main`, before clap and before any thread
/// or tokio runtime exists.
pub fn maybe_run_shim() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    args.next();
    if args.next()? != SHIM_ARG {
        return None;
    }
    let Some(dir) = args.next() else {
        eprintln!("usage: skiff {SHIM_ARG} <container-dir>");
        return Some(ExitCode::from(2));
    };
    Some(match server::run(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shim: {e}");
            ExitCode::FAILURE
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    Setup(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Caller side: starts a shim for the prepared container directory and waits until it
/// has created the container (or failed). Blocking; returns the shim pid.
pub fn spawn(exe: &Path, dir: &Path) -> Result<i32, ShimError> {
    let mut child = std::process::Command::new(exe)
        .arg(SHIM_ARG)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| ShimError::Setup("no shim stdout".into()))?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    // The first fork of the daemonizing shim exits at once.
    let _ = child.wait();
    match line.trim_end().split_once(' ') {
        Some(("ok", pid)) => pid
            .parse()
            .map_err(|_| ShimError::Setup(format!("bad shim answer {line:?}"))),
        Some(("error", msg)) => Err(ShimError::Setup(msg.to_string())),
        _ if line.is_empty() => {
            let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
            Err(ShimError::Setup(format!(
                "shim exited without answering: {}",
                log.trim()
            )))
        }
        _ => Err(ShimError::Setup(format!("bad shim answer {line:?}"))),
    }
}

/// Reads the recorded state; a state that claims to be live while its shim is gone
/// becomes `Unknown` (the shim recorded everything it knew before dying).
pub fn read_state(dir: &Path) -> std::io::Result<ContainerState> {
    let mut st = state::read(dir)?;
    if matches!(st.status, Status::Created | Status::Running) && !pid_alive(st.shim_pid) {
        st.status = Status::Unknown;
    }
    Ok(st)
}

pub fn pid_alive(pid: i32) -> bool {
    pid > 0
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !is_zombie(pid)
}

/// Blocking: waits up to `timeout` for process `pid` (not necessarily our child) to exit.
/// A pidfd wakes us the moment it does; kernels without pidfds (before 5.3) get polling.
pub fn wait_gone(pid: i32, timeout: std::time::Duration) {
    use nix::libc;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd we own (or -1).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return;
        }
        let deadline = std::time::Instant::now() + timeout;
        while pid_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        return;
    }
    // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    use std::os::fd::AsFd;
    let mut pfd = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = nix::poll::PollTimeout::try_from(timeout).unwrap_or(nix::poll::PollTimeout::MAX);
    // EINTR just ends the wait early; callers treat "still alive" afterwards like a timeout.
    let _ = nix::poll::poll(&mut pfd, ms);
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(true)
}

fn write_line(out: &mut impl Write, line: &str) {
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}
