//! Embedded container creation: runs in the child the shim cloned into new namespaces.
//! Computes the mount plan, applies it (rootfs mounts, devices, pivot, masks), waits at the
//! start gate and becomes the container process.
//!
//! Invariant: runs in a freshly cloned child of the single-threaded shim, so it may
//! allocate freely; it never returns: it execs or reports an [`InitError`] (step, path,
//! errno) on the sync pipe and exits.

mod error;
mod process;
mod rootfs;

pub use error::{AtStep, InitError, Step};
pub(crate) use process::exec_process;
pub use process::{apply_credentials, find_executable, reset_signals};

use super::mount_plan;
use nix::libc;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::path::Path;

/// Standard descriptors the container process gets, already open in the child.
#[derive(Debug, Clone, Copy)]
pub enum InitStdio {
    Pipes {
        stdin: RawFd,
        stdout: RawFd,
        stderr: RawFd,
    },
    /// The pty slave becomes stdio and controlling terminal.
    Tty(RawFd),
}

/// Fds for the parent↔child handshake: `ready` is written by the child ("R" when set up,
/// "E<msg>" on error; EOF by exec means started), `gate` is read by the child ("S" = start).
pub struct Sync {
    pub to_parent: RawFd,
    pub from_parent: RawFd,
}

/// The namespaces the spec lists (new ones and ones to join by path).
fn namespaces(spec: &Spec) -> impl Iterator<Item = &oci_spec::runtime::LinuxNamespace> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
}

/// Namespace clone flags the spec asks for (net only when no path is given).
pub fn clone_flags(spec: &Spec) -> libc::c_int {
    let mut flags = 0;
    for ns in namespaces(spec) {
        if ns.path().is_some() {
            continue;
        }
        flags |= match ns.typ() {
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            _ => 0,
        };
    }
    flags
}

/// The PID namespace the spec joins by path, if any: the shim enters it before cloning
/// the init child, which is then born inside it.
pub fn pid_namespace_to_join(spec: &Spec) -> Option<&Path> {
    namespaces(spec)
        .find(|ns| ns.typ() == LinuxNamespaceType::Pid)
        .and_then(|ns| ns.path().as_deref())
}

/// Entry of the cloned child. Never returns.
pub fn run(spec: &Spec, bundle: &Path, stdio: InitStdio, sync: Sync) -> ! {
    let mut to_parent = unsafe_file(sync.to_parent);
    let err = match prepare(spec, bundle, stdio, sync.from_parent, &mut to_parent) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = to_parent.write_all(format!("E{err}").as_bytes());
    // SAFETY: _exit in a forked child skips atexit handlers that belong to the shim.
    unsafe { libc::_exit(127) }
}

fn unsafe_file(fd: RawFd) -> std::fs::File {
    // SAFETY: the fd was created by the shim for this child and is owned by it alone.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

pub(crate) enum Never {}

fn prepare(
    spec: &Spec,
    bundle: &Path,
    stdio: InitStdio,
    gate: RawFd,
    to_parent: &mut std::fs::File,
) -> Result<Never, InitError> {
    // The whole plan is checked before the first mount: a bad path fails with nothing done.
    let plan = mount_plan::plan(spec, bundle)?;
    let process = spec.process().as_ref().ok_or(InitError::Spec("process"))?;
    setup_stdio(stdio)?;
    join_namespaces(spec)?;
    let sysctls: Vec<(&String, &String)> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    rootfs::setup(&plan, stdio, &sysctls)?;
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).at(Step::Sethostname)?;
    }
    process::set_rlimits(process)?;
    // Start gate: report readiness, block until the shim says start.
    to_parent.write_all(b"R").at(Step::SyncWrite)?;
    let mut b = [0u8; 1];
    let mut gate_file = unsafe_file(gate);
    match gate_file.read(&mut b) {
        Ok(1) if b[0] == b'S' => {}
        _ => return Err(InitError::GateClosed),
    }
    drop(gate_file);
    exec_process(process, &[])
}

pub(crate) fn setup_stdio(stdio: InitStdio) -> Result<(), InitError> {
    nix::unistd::setsid().at(Step::Setsid)?;
    let (i, o, e) = match stdio {
        InitStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (stdin, stdout, stderr),
        InitStdio::Tty(slave) => {
            // SAFETY: TIOCSCTTY on a pty slave we own; we just became session leader.
            // nix has no wrapper for this ioctl.
            if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
                return Err(nix::errno::Errno::last()).at(Step::ControllingTerminal);
            }
            (slave, slave, slave)
        }
    };
    // SAFETY: the shim opened these fds for this child; they stay open across the calls.
    let (i, o, e) = unsafe {
        (
            BorrowedFd::borrow_raw(i),
            BorrowedFd::borrow_raw(o),
            BorrowedFd::borrow_raw(e),
        )
    };
    nix::unistd::dup2_stdin(i).at(Step::Dup2Stdio)?;
    nix::unistd::dup2_stdout(o).at(Step::Dup2Stdio)?;
    nix::unistd::dup2_stderr(e).at(Step::Dup2Stdio)
}

fn join_namespaces(spec: &Spec) -> Result<(), InitError> {
    for ns in namespaces(spec) {
        // A PID namespace to join was joined by the shim before the clone (setns on a PID
        // namespace moves only the caller's future children).
        if ns.typ() == LinuxNamespaceType::Pid {
            continue;
        }
        if let Some(p) = ns.path() {
            let f = std::fs::File::open(p).on(Step::OpenNamespace, p)?;
            let flag = match ns.typ() {
                LinuxNamespaceType::Network => nix::sched::CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Ipc => nix::sched::CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Uts => nix::sched::CloneFlags::CLONE_NEWUTS,
                other => return Err(InitError::UnsupportedNamespace(format!("{other:?}"))),
            };
            nix::sched::setns(&f, flag).on(Step::JoinNamespace, p)?;
        }
    }
    Ok(())
}
