//! Applies a [`MountPlan`] in the init child: mounts, device nodes, `pivot_root`, masked
//! and read-only paths.
//!
//! Invariant: no path inside the rootfs is ever handed to the kernel as text. Each is
//! resolved with [`in_root`] (symlinks followed only inside the rootfs) to an `O_PATH`
//! descriptor, and mount(2), mknodat(2) and symlinkat(2) act on that descriptor
//! (`/proc/self/fd/N` for mount), so an image cannot point any of them at the host.
//! After a mount, the destination is resolved again: the old descriptor names the covered
//! directory, not the new mount.

use super::error::{AtStep, InitError, Step};
use super::InitStdio;
use crate::runtime::containers::in_root::{self, Kind};
use crate::runtime::containers::mount_plan::{MountOp, MountPlan};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, makedev, mknodat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

const NONE: Option<&str> = None;

/// Everything before the container process: the plan's mounts, devices, pivot, masks.
pub fn setup(
    plan: &MountPlan,
    stdio: InitStdio,
    sysctls: &[(&String, &String)],
) -> Result<(), InitError> {
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_SLAVE, NONE).at(Step::MakeRootSlave)?;
    // The rootfs must be a mount point for pivot_root; the bind also makes it the mount
    // that every later mount of the plan lands in.
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .on(Step::BindRootfs, &plan.rootfs)?;
    let root = in_root::open_root(&plan.rootfs).on(Step::OpenRootfs, &plan.rootfs)?;
    for m in &plan.mounts {
        mount_one(root.as_fd(), &plan.rootfs, &m.destination, &m.op)?;
    }
    create_devices(root.as_fd(), plan, stdio)?;
    drop(root);
    pivot(&plan.rootfs)?;
    // In the container's own namespaces, through its /proc, before /proc/sys turns
    // read-only below.
    for (name, value) in sysctls {
        // Dotted names; a slash inside a segment (`eth0/100` for `eth0.100`) is a dot.
        let path =
            Path::new("/proc/sys").join(crate::runtime::containers::swap_dots_and_slashes(name));
        std::fs::write(&path, value.as_bytes()).on(Step::Sysctl, &path)?;
    }
    let root = in_root::open_root(Path::new("/")).on(Step::OpenRootfs, Path::new("/"))?;
    for p in &plan.masked {
        mask(root.as_fd(), p)?;
    }
    for p in &plan.readonly {
        readonly(root.as_fd(), p)?;
    }
    if plan.readonly_root {
        let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(NONE, "/", NONE, f, NONE).at(Step::ReadOnlyRoot)?;
    }
    Ok(())
}

/// Resolves `dest` inside the root, creating it as `kind`; refuses the root itself (a
/// volume over `/` would hide the image, and is what a symlink to `/` aims at).
fn destination(root: BorrowedFd<'_>, dest: &Path, kind: Kind) -> Result<OwnedFd, InitError> {
    let fd = in_root::ensure(root, dest, kind).on(Step::ResolveDestination, dest)?;
    if in_root::is_same_file(fd.as_fd(), root).on(Step::ResolveDestination, dest)? {
        return Err(InitError::DestinationIsRoot(dest.to_path_buf()));
    }
    Ok(fd)
}

fn is_dir(fd: BorrowedFd<'_>) -> Result<bool, nix::errno::Errno> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR)
}

/// Opens a bind source. Host paths are the caller's (kubelet volumes, hosts files) and are
/// taken as they are; a source inside the rootfs is resolved inside it like a destination.
fn bind_source(root: BorrowedFd<'_>, rootfs: &Path, source: &Path) -> Result<OwnedFd, InitError> {
    match source.strip_prefix(rootfs) {
        Ok(inside) => in_root::open(root, inside).on(Step::OpenBindSource, source),
        Err(_) => nix::fcntl::open(
            source,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .on(Step::OpenBindSource, source),
    }
}

fn mount_one(
    root: BorrowedFd<'_>,
    rootfs: &Path,
    dest: &Path,
    op: &MountOp,
) -> Result<(), InitError> {
    match op {
        MountOp::Bind {
            source,
            recursive,
            remount,
        } => {
            let src = bind_source(root, rootfs, source)?;
            // The destination takes the source's type, decided by the opened descriptor
            // (not by a second lookup of the source path).
            let kind = if is_dir(src.as_fd()).on(Step::OpenBindSource, source)? {
                Kind::Dir
            } else {
                Kind::File
            };
            let target = destination(root, dest, kind)?;
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            mount(
                Some(in_root::fd_path(&src).as_str()),
                in_root::fd_path(&target).as_str(),
                NONE,
                flags,
                NONE,
            )
            .on(Step::Mount, dest)?;
            if !remount.is_empty() {
                let fresh = destination(root, dest, kind)?;
                let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | *remount;
                mount(NONE, in_root::fd_path(&fresh).as_str(), NONE, f, NONE)
                    .on(Step::Remount, dest)?;
            }
        }
        MountOp::Fs {
            fstype,
            source,
            flags,
            data,
        } => {
            let target = destination(root, dest, Kind::Dir)?;
            mount(
                Some(source.as_str()),
                in_root::fd_path(&target).as_str(),
                Some(fstype.as_str()),
                *flags,
                data.as_deref(),
            )
            .on(Step::Mount, dest)?;
        }
    }
    Ok(())
}

fn create_devices(
    root: BorrowedFd<'_>,
    plan: &MountPlan,
    stdio: InitStdio,
) -> Result<(), InitError> {
    let dev_path = Path::new("dev");
    let dev = destination(root, dev_path, Kind::Dir)?;
    let old = nix::sys::stat::umask(Mode::empty());
    let made = plan.devices.iter().try_for_each(|d| {
        let path = dev_path.join(d.name);
        // Whatever the image has there (a file, a symlink) is replaced, never followed.
        let _ = unlinkat(dev.as_fd(), d.name, UnlinkatFlags::NoRemoveDir);
        mknodat(
            dev.as_fd(),
            d.name,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(d.mode),
            makedev(d.major, d.minor),
        )
        .on(Step::Mknod, &path)
    });
    nix::sys::stat::umask(old);
    made?;
    for (link, target) in &plan.dev_links {
        match symlinkat(target, dev.as_fd(), link) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).on(Step::DevSymlink, &dev_path.join(link)),
        }
    }
    if let InitStdio::Tty(slave) = stdio {
        let console = destination(root, &dev_path.join("console"), Kind::File)?;
        // The slave lives on the host's devpts mount, which belongs to the mount namespace
        // the shim left: binding it through /proc/self/fd fails with EINVAL (a bind source
        // must be a mount of the caller's namespace). Its path (`/dev/pts/N`) resolves in
        // this namespace's copy of that mount, which is still there before the pivot.
        let fd_path = format!("/proc/self/fd/{slave}");
        let source = nix::fcntl::readlink(fd_path.as_str())
            .ok()
            .and_then(|p| p.into_string().ok())
            .filter(|p| p.starts_with("/dev/pts/"))
            .unwrap_or(fd_path);
        mount(
            Some(source.as_str()),
            in_root::fd_path(&console).as_str(),
            NONE,
            MsFlags::MS_BIND,
            NONE,
        )
        .at(Step::Console)?;
    }
    Ok(())
}

fn pivot(rootfs: &Path) -> Result<(), InitError> {
    nix::unistd::chdir(rootfs).on(Step::Chdir, rootfs)?;
    nix::unistd::pivot_root(".", ".").at(Step::PivotRoot)?;
    umount2(".", MntFlags::MNT_DETACH).at(Step::DetachOldRoot)?;
    nix::unistd::chdir("/").on(Step::Chdir, Path::new("/"))
}

/// Existing paths only: a masked or read-only path the image lacks needs nothing.
fn existing(root: BorrowedFd<'_>, p: &Path, step: Step) -> Result<Option<OwnedFd>, InitError> {
    match in_root::open(root, p) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e).on(step, p),
    }
}

fn mask(root: BorrowedFd<'_>, p: &Path) -> Result<(), InitError> {
    let Some(fd) = existing(root, p, Step::Mask)? else {
        return Ok(());
    };
    let target = in_root::fd_path(&fd);
    if is_dir(fd.as_fd()).on(Step::Mask, p)? {
        mount(
            Some("tmpfs"),
            target.as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            NONE,
        )
    } else {
        mount(
            Some("/dev/null"),
            target.as_str(),
            NONE,
            MsFlags::MS_BIND,
            NONE,
        )
    }
    .on(Step::Mask, p)
}

fn readonly(root: BorrowedFd<'_>, p: &Path) -> Result<(), InitError> {
    let Some(fd) = existing(root, p, Step::ReadOnlyPath)? else {
        return Ok(());
    };
    let target = in_root::fd_path(&fd);
    mount(
        Some(target.as_str()),
        target.as_str(),
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .on(Step::ReadOnlyPath, p)?;
    let Some(fresh) = existing(root, p, Step::ReadOnlyPath)? else {
        return Ok(());
    };
    let f = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount(NONE, in_root::fd_path(&fresh).as_str(), NONE, f, NONE).on(Step::ReadOnlyPath, p)
}
