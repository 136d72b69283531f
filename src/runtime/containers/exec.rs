//! Exec into a running container (embedded runtime): runs in a child forked by the shim.
//! Joins the container's cgroups and namespaces (mount last), forks once more so the process
//! lands in the container's pid namespace, and relays its exit status.
//!
//! Invariant: the process the caller sees exit (the forked child of the shim) exits with
//! the exec'd process's status in shell convention (code or 128 + signal).

use super::cgroups::CgroupSet;
use super::init::{self, AtStep, InitError, InitStdio, Step};
use super::ExecConfig;
use nix::libc;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{Process, Spec, UserBuilder};
use std::io::Write;
use std::path::PathBuf;

/// Never returns.
pub fn run_child(
    container_pid: i32,
    cgroups: Option<&CgroupSet>,
    spec: &Spec,
    cfg: &ExecConfig,
    stdio: InitStdio,
) -> ! {
    let code = match enter(container_pid, cgroups) {
        Ok(()) => relay(spec, cfg, stdio),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "exec: {e}");
            let fd = match stdio {
                InitStdio::Pipes { stderr, .. } => stderr,
                InitStdio::Tty(t) => t,
            };
            let msg = format!("exec failed: {e}\n");
            // SAFETY: the caller passed this fd to this child and keeps it open.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let _ = nix::unistd::write(fd, msg.as_bytes());
            126
        }
    };
    // SAFETY: leaving a forked child without running the shim's exit handlers.
    unsafe { libc::_exit(code) }
}

fn enter(pid: i32, cgroups: Option<&CgroupSet>) -> Result<(), InitError> {
    let nss = [
        ("ipc", nix::sched::CloneFlags::CLONE_NEWIPC),
        ("uts", nix::sched::CloneFlags::CLONE_NEWUTS),
        ("net", nix::sched::CloneFlags::CLONE_NEWNET),
        ("pid", nix::sched::CloneFlags::CLONE_NEWPID),
        ("mnt", nix::sched::CloneFlags::CLONE_NEWNS),
    ];
    // All opened first: after joining the mount namespace, /proc/<pid> may be another's.
    let files: Vec<_> = nss
        .iter()
        .map(|(n, f)| {
            let path = PathBuf::from(format!("/proc/{pid}/ns/{n}"));
            std::fs::File::open(&path)
                .on(Step::OpenNamespace, &path)
                .map(|file| (file, *f, path))
        })
        .collect::<Result<_, _>>()?;
    if let Some(cg) = cgroups {
        cg.add_pid(std::process::id() as i32)?;
    }
    for (f, flag, path) in files {
        nix::sched::setns(&f, flag).on(Step::JoinNamespace, &path)?;
    }
    Ok(())
}

fn relay(spec: &Spec, cfg: &ExecConfig, stdio: InitStdio) -> i32 {
    let relay_pid = std::process::id() as i32;
    // SAFETY: the process is single-threaded (forked from the single-threaded shim).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // Killing the relay (the pid the shim reports: an exec past its timeout) must
            // kill the process too. If the relay is already gone we were re-parented: stop.
            // (Across a pid namespace the parent shows as 0.)
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let ppid = nix::unistd::getppid().as_raw();
            if ppid != relay_pid && ppid != 0 {
                // SAFETY: see run_child.
                unsafe { libc::_exit(137) }
            }
            let err = match exec(spec, cfg, stdio) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = writeln!(std::io::stderr(), "exec: {err}");
            // SAFETY: see run_child.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            // Our copies of the stdio fds must not keep the caller's pipes open.
            for fd in 0..3 {
                let _ = nix::unistd::close(fd);
            }
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, c)) => return c,
                    Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return 255,
                }
            }
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "exec: fork: {e}");
            255
        }
    }
}

fn exec(spec: &Spec, cfg: &ExecConfig, stdio: InitStdio) -> Result<init::Never, InitError> {
    init::setup_stdio(stdio)?;
    let mut process: Process = spec.process().clone().ok_or(InitError::Spec("process"))?;
    process.set_args(Some(cfg.args.clone()));
    if let Some(w) = &cfg.working_dir {
        process.set_cwd(w.into());
    }
    if let Some(u) = &cfg.user {
        let mut b = UserBuilder::default().uid(u.uid).gid(u.gid);
        if !u.additional_gids.is_empty() {
            b = b.additional_gids(u.additional_gids.clone());
        }
        process.set_user(b.build().map_err(|_| InitError::Spec("user"))?);
    }
    let mut extra: Vec<String> = cfg.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if cfg.tty {
        extra.insert(0, "TERM=xterm".into());
    }
    init::exec_process(&process, &extra)
}
