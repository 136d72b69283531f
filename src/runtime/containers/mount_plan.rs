//! The mount plan of a container: what the embedded init mounts, creates, masks and makes
//! read-only inside the rootfs, computed from the OCI spec before any syscall.
//!
//! Pure (no I/O), so the order and the flags are unit-tested without root, like the cgroup
//! plan. Invariant: every path in a plan is *relative to the container root* and made of
//! plain names only (no `..`, no root); the init resolves each one with
//! [`super::in_root`] at apply time, so a symlink in the image can move a mount only to
//! another place inside the same rootfs.

use super::spec::{DEFAULT_DEVICES, MASKED_PATHS};
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("path {0} in the spec leaves the container root (it has a .. component)")]
    Escapes(PathBuf),
    #[error("bind mount onto /{} has no source", .0.display())]
    NoSource(PathBuf),
    #[error("spec has no root")]
    NoRoot,
}

/// Everything the init does to the rootfs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// The rootfs as the shim sees it (absolute host path).
    pub rootfs: PathBuf,
    pub mounts: Vec<PlannedMount>,
    pub devices: Vec<Device>,
    /// `(link, target)` under `dev/`: `fd`, `stdin`, `ptmx`, ...
    pub dev_links: Vec<(PathBuf, PathBuf)>,
    /// Applied after `pivot_root`: directories get an empty read-only tmpfs, files /dev/null.
    pub masked: Vec<PathBuf>,
    /// Applied after `pivot_root`: bind-mounted onto themselves read-only.
    pub readonly: Vec<PathBuf>,
    pub readonly_root: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    /// Relative to the container root.
    pub destination: PathBuf,
    pub op: MountOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// A host path (or one inside the rootfs) bound onto the destination; the destination is
    /// created as a directory or a file like the source. A bind cannot change flags in the
    /// same call, so `remount` (when not empty) is applied by a second, remounting call.
    Bind {
        source: PathBuf,
        recursive: bool,
        remount: MsFlags,
    },
    /// A new file system instance (proc, tmpfs, sysfs, devpts, mqueue, ...).
    Fs {
        fstype: String,
        source: String,
        flags: MsFlags,
        data: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// File name under `dev/`.
    pub name: &'static str,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
}

/// Container path (absolute or relative to `/`) → plain components relative to the root.
pub fn container_path(p: &Path) -> Result<PathBuf, PlanError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(PlanError::Escapes(p.to_path_buf()))
            }
        }
    }
    Ok(out)
}

/// Mount options → (flags, file system data). Propagation options are ignored: the init
/// makes the whole tree a slave of the host once, before any mount.
pub fn parse_options(opts: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in opts {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","))
}

/// Computes the plan for `spec` whose bundle directory is `bundle`.
pub fn plan(spec: &Spec, bundle: &Path) -> Result<MountPlan, PlanError> {
    let root = spec.root().as_ref().ok_or(PlanError::NoRoot)?;
    let rootfs = bundle.join(root.path());
    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let destination = container_path(m.destination())?;
        let (flags, data) = parse_options(m.options().as_deref().unwrap_or(&[]));
        let typ = m.typ().as_deref().unwrap_or("none");
        let op = if flags.contains(MsFlags::MS_BIND) || typ == "bind" {
            let source = m
                .source()
                .clone()
                .ok_or_else(|| PlanError::NoSource(destination.clone()))?;
            MountOp::Bind {
                // OCI: a relative source is relative to the bundle.
                source: bundle.join(source),
                recursive: flags.contains(MsFlags::MS_REC),
                remount: flags & !(MsFlags::MS_BIND | MsFlags::MS_REC),
            }
        } else {
            MountOp::Fs {
                fstype: typ.to_string(),
                source: m
                    .source()
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_else(|| typ.to_string()),
                flags,
                data: (!data.is_empty()).then_some(data),
            }
        };
        mounts.push(PlannedMount { destination, op });
    }
    let devices = DEFAULT_DEVICES
        .iter()
        .map(|(path, _, major, minor, mode)| Device {
            name: path.trim_start_matches("/dev/"),
            major: *major as u64,
            minor: *minor as u64,
            mode: *mode,
        })
        .collect();
    let dev_links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ]
    .iter()
    .map(|(l, t)| (PathBuf::from(l), PathBuf::from(t)))
    .collect();
    let linux = spec.linux().as_ref();
    let masked = match linux.and_then(|l| l.masked_paths().as_ref()) {
        Some(list) => list.iter().map(|p| container_path(Path::new(p))).collect(),
        None => MASKED_PATHS
            .iter()
            .map(|p| container_path(Path::new(p)))
            .collect::<Result<Vec<_>, _>>(),
    }?;
    let readonly = linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
        .map(|p| container_path(Path::new(p)))
        .collect::<Result<_, _>>()?;
    Ok(MountPlan {
        rootfs,
        mounts,
        devices,
        dev_links,
        masked,
        readonly,
        readonly_root: root.readonly() == Some(true),
    })
}

#[cfg(test)]
#[path = "mount_plan_tests.rs"]
mod tests;
