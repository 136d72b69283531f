//! External OCI runtime (`runc`, `crun`, … on PATH): the shim drives
//! `create`/`start`/`exec`/`delete` on the same bundle the embedded path uses.
//!
//! Invariant: the shim is a child subreaper, so the container process is re-parented to
//! it when `<runtime> create` exits, and the shim reaps and records it exactly like an
//! embedded container.

use super::init::InitStdio;
use super::shim::{ShimConfig, ShimError};
use super::ExecConfig;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

fn base(bin: &str, cfg: &ShimConfig) -> Command {
    let mut c = Command::new(bin);
    c.arg("--root").arg(&cfg.runtime_root);
    c
}

fn dup(fd: i32) -> Result<Stdio, String> {
    // SAFETY: the fd is open for the duration of this call (owned by the shim).
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    b.try_clone_to_owned()
        .map(Stdio::from)
        .map_err(|e| format!("dup: {e}"))
}

fn stdio3(stdio: InitStdio) -> Result<(Stdio, Stdio, Stdio), String> {
    match stdio {
        InitStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => Ok((dup(stdin)?, dup(stdout)?, dup(stderr)?)),
        InitStdio::Tty(_) => Err("a tty with an external runtime is not supported".into()),
    }
}

/// `<runtime> create`; returns the container's host pid.
pub fn create(bin: &str, cfg: &ShimConfig, dir: &Path, stdio: InitStdio) -> Result<i32, ShimError> {
    let (i, o, e) = stdio3(stdio).map_err(ShimError::Setup)?;
    let pid_file = dir.join("init.pid");
    let out = base(bin, cfg)
        .arg("create")
        .arg("--bundle")
        .arg(dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&cfg.id)
        .stdin(i)
        .stdout(o)
        .stderr(e)
        .status()
        .map_err(|e| ShimError::Setup(format!("{bin}: {e}")))?;
    if !out.success() {
        return Err(ShimError::Setup(format!(
            "{bin} create failed ({out}); see the container log"
        )));
    }
    let pid = std::fs::read_to_string(&pid_file)?;
    pid.trim()
        .parse()
        .map_err(|_| ShimError::Setup(format!("bad pid file {pid:?}")))
}

pub fn start(bin: &str, cfg: &ShimConfig) -> Result<(), String> {
    let out = base(bin, cfg)
        .arg("start")
        .arg(&cfg.id)
        .output()
        .map_err(|e| format!("{bin}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{bin} start: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `<runtime> exec` in the foreground with the caller's fds; its exit code is the process's.
pub fn exec(bin: &str, cfg: &ShimConfig, ec: &ExecConfig, fds: &[OwnedFd]) -> Result<i32, String> {
    let mut c = base(bin, cfg);
    c.arg("exec");
    if ec.tty {
        c.arg("--tty");
    }
    if let Some(w) = &ec.working_dir {
        c.arg("--cwd").arg(w);
    }
    for (k, v) in &ec.env {
        c.arg("--env").arg(format!("{k}={v}"));
    }
    if let Some(u) = &ec.user {
        c.arg("--user").arg(format!("{}:{}", u.uid, u.gid));
    }
    c.arg(&cfg.id).args(&ec.args);
    let clone = |f: &OwnedFd| {
        f.try_clone()
            .map(Stdio::from)
            .map_err(|e| format!("dup: {e}"))
    };
    match fds {
        [t] => c.stdin(clone(t)?).stdout(clone(t)?).stderr(clone(t)?),
        [i, o, e] => c.stdin(clone(i)?).stdout(clone(o)?).stderr(clone(e)?),
        _ => return Err("bad exec fds".into()),
    };
    // The shim reaps it (waitpid(-1)); the Child handle is only dropped.
    c.spawn()
        .map(|child| child.id() as i32)
        .map_err(|e| format!("{bin} exec: {e}"))
}

pub fn delete(bin: &str, cfg: &ShimConfig) {
    let _ = base(bin, cfg)
        .arg("delete")
        .arg("--force")
        .arg(&cfg.id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
