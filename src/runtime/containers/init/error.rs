//! The container init's error: which step failed, on which path, with which errno.
//!
//! The init runs in a child that cannot log; its error travels to the shim as text on the
//! sync pipe, so the text must say everything a person needs: the step ("mount", "pivot_root"),
//! the container path it was working on, and the kernel's errno.

use super::super::mount_plan::PlanError;
use nix::errno::Errno;
use std::fmt;
use std::path::{Path, PathBuf};

/// One step of container setup, named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Setsid,
    ControllingTerminal,
    Dup2Stdio,
    OpenNamespace,
    JoinNamespace,
    MakeRootSlave,
    BindRootfs,
    OpenRootfs,
    ResolveDestination,
    OpenBindSource,
    Mount,
    Remount,
    Mknod,
    DevSymlink,
    Console,
    PivotRoot,
    DetachOldRoot,
    Chdir,
    Mask,
    ReadOnlyPath,
    ReadOnlyRoot,
    Sethostname,
    Sysctl,
    Setrlimit,
    DropBoundingCaps,
    KeepCaps,
    Setgroups,
    Setgid,
    Setuid,
    SetCaps,
    NoNewPrivs,
    WorkingDir,
    SyncWrite,
    Exec,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Step::Setsid => "setsid",
            Step::ControllingTerminal => "set controlling terminal",
            Step::Dup2Stdio => "dup2 stdio",
            Step::OpenNamespace => "open namespace",
            Step::JoinNamespace => "setns",
            Step::MakeRootSlave => "make / rslave",
            Step::BindRootfs => "bind rootfs",
            Step::OpenRootfs => "open rootfs",
            Step::ResolveDestination => "resolve mount destination",
            Step::OpenBindSource => "open bind source",
            Step::Mount => "mount",
            Step::Remount => "remount",
            Step::Mknod => "mknod",
            Step::DevSymlink => "symlink in /dev",
            Step::Console => "bind /dev/console",
            Step::PivotRoot => "pivot_root",
            Step::DetachOldRoot => "detach old root",
            Step::Chdir => "chdir",
            Step::Mask => "mask path",
            Step::ReadOnlyPath => "read-only path",
            Step::ReadOnlyRoot => "remount / read-only",
            Step::Sysctl => "write sysctl",
            Step::Sethostname => "sethostname",
            Step::Setrlimit => "setrlimit",
            Step::DropBoundingCaps => "drop bounding capabilities",
            Step::KeepCaps => "prctl keepcaps",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setresgid",
            Step::Setuid => "setresuid",
            Step::SetCaps => "set capabilities",
            Step::NoNewPrivs => "no_new_privs",
            Step::WorkingDir => "working directory",
            Step::SyncWrite => "report readiness to the shim",
            Step::Exec => "exec",
        };
        f.write_str(s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A system call failed.
    #[error("{step}{}: {errno}", on(.path))]
    Sys {
        step: Step,
        /// The path as the container sees it (or the host path of a bind source).
        path: Option<PathBuf>,
        errno: Errno,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("mount destination /{} resolves to the container's root (a symlink to /?)", .0.display())]
    DestinationIsRoot(PathBuf),
    #[error("spec has no {0}")]
    Spec(&'static str),
    #[error("joining a {0} namespace is not supported")]
    UnsupportedNamespace(String),
    #[error("executable {0:?} not found in $PATH")]
    ExecutableNotFound(String),
    #[error("argument or environment string contains a NUL byte")]
    NulByte,
    #[error("the shim closed the start gate")]
    GateClosed,
    #[error("join the container's cgroups: {0}")]
    Cgroups(#[from] super::super::cgroups::CgroupError),
}

fn on(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) if p.is_absolute() => format!(" {}", p.display()),
        Some(p) => format!(" /{}", p.display()),
        None => String::new(),
    }
}

/// `.at(step)` / `.on(step, path)` turn a nix result into an [`InitError::Sys`].
pub trait AtStep<T> {
    fn at(self, step: Step) -> Result<T, InitError>;
    fn on(self, step: Step, path: &Path) -> Result<T, InitError>;
}

impl<T> AtStep<T> for Result<T, Errno> {
    fn at(self, step: Step) -> Result<T, InitError> {
        self.map_err(|errno| InitError::Sys {
            step,
            path: None,
            errno,
        })
    }
    fn on(self, step: Step, path: &Path) -> Result<T, InitError> {
        self.map_err(|errno| InitError::Sys {
            step,
            path: Some(path.to_path_buf()),
            errno,
        })
    }
}

impl<T> AtStep<T> for std::io::Result<T> {
    fn at(self, step: Step) -> Result<T, InitError> {
        self.map_err(Errno::from_io).at(step)
    }
    fn on(self, step: Step, path: &Path) -> Result<T, InitError> {
        self.map_err(Errno::from_io).on(step, path)
    }
}

/// `io::Error` → errno (EIO when the error did not come from the kernel).
trait FromIo {
    fn from_io(e: std::io::Error) -> Errno;
}

impl FromIo for Errno {
    fn from_io(e: std::io::Error) -> Errno {
        Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_step_the_container_path_and_the_errno() {
        let e: Result<(), _> = Err(Errno::ELOOP);
        let msg = e.on(Step::Mount, Path::new("etc/hosts")).unwrap_err();
        // The text after the errno name is the libc's description.
        assert!(
            msg.to_string().starts_with("mount /etc/hosts: ELOOP: "),
            "{msg}"
        );
        let e: Result<(), _> = Err(Errno::EPERM);
        let msg = e.at(Step::PivotRoot).unwrap_err().to_string();
        assert!(msg.starts_with("pivot_root: EPERM: "), "{msg}");
        assert_eq!(
            InitError::DestinationIsRoot("data".into()).to_string(),
            "mount destination /data resolves to the container's root (a symlink to /?)"
        );
    }
}
