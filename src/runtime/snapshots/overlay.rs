//! Container root filesystems: an overlayfs mount of the image's layer dirs (read-only
//! lower dirs) under a per-container upper dir.
//!
//! Invariant: lower dirs are never written (overlayfs copies up into `upper`), and
//! [`remove_rootfs`] deletes the upper, work and rootfs dirs only after the mount is gone,
//! so removing a container can never delete files through a live mount.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::SnapshotError;

/// The kernel copies mount data into one page; options longer than this fail.
const MAX_OPTIONS: usize = 4095;

pub fn mount_rootfs(container_dir: &Path, layers: &[PathBuf]) -> Result<PathBuf, SnapshotError> {
    let rootfs = container_dir.join("rootfs");
    let upper = container_dir.join("upper");
    let work = container_dir.join("work");
    for d in [&rootfs, &upper, &work] {
        fs::create_dir_all(d).map_err(|e| SnapshotError::io(d, e))?;
    }
    let fail = |reason: String| SnapshotError::Mount {
        target: rootfs.clone(),
        reason,
    };
    if layers.is_empty() {
        return Err(fail(
            "an image without layers has no root filesystem".into(),
        ));
    }
    if is_mounted(&rootfs) {
        // Re-adopting a container after an agent restart: the mount is already there.
        return Ok(rootfs);
    }
    for p in layers.iter().chain([&upper, &work]) {
        let s = p.as_os_str().as_bytes();
        if s.contains(&b',') || s.contains(&b':') {
            return Err(fail(format!(
                "{} contains ',' or ':', which overlayfs options cannot carry",
                p.display()
            )));
        }
    }
    let tail = format!(",upperdir={},workdir={}", upper.display(), work.display());
    let absolute = format!(
        "lowerdir={}{tail}",
        join(layers.iter().map(|p| p.to_path_buf()))
    );
    if absolute.len() <= MAX_OPTIONS {
        return mount_overlay(&rootfs, &absolute)
            .map(|_| rootfs.clone())
            .map_err(fail);
    }
    // Long chains: name the lower dirs relative to their common parent (the snapshots dir)
    // and mount from a child process that changed into it, so this process's working
    // directory stays untouched.
    let parent = common_parent(layers).ok_or_else(|| {
        fail("lower dirs do not share a parent and are too long for one mount".into())
    })?;
    let relative = format!(
        "lowerdir={}{tail}",
        join(
            layers
                .iter()
                .map(|p| p.strip_prefix(&parent).unwrap_or(p).to_path_buf())
        )
    );
    if relative.len() > MAX_OPTIONS {
        return Err(fail(format!(
            "{} layers need {} bytes of mount options (limit {MAX_OPTIONS})",
            layers.len(),
            relative.len()
        )));
    }
    mount_in_dir(&parent, &rootfs, &relative).map_err(fail)?;
    Ok(rootfs)
}

/// Mounts an image's layers read-only (and nosuid, nodev) at `target`: an image
/// volume. One layer is bind-mounted; more are stacked by an overlay without an upper dir.
/// Idempotent: an existing mount is kept (a restarted agent re-adopts it).
pub fn mount_readonly(target: &Path, layers: &[PathBuf]) -> Result<(), SnapshotError> {
    fs::create_dir_all(target).map_err(|e| SnapshotError::io(target, e))?;
    if is_mounted(target) {
        return Ok(());
    }
    let fail = |reason: String| SnapshotError::Mount {
        target: target.to_path_buf(),
        reason,
    };
    let locked = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    match layers {
        [] => Err(fail("an image without layers has nothing to mount".into())),
        [only] => {
            mount(
                Some(only.as_path()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| fail(format!("bind mount of {}: {e}", only.display())))?;
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | locked,
                None::<&str>,
            )
            .map_err(|e| {
                // Never leave the shared layer writable behind a mount that looks done.
                let _ = umount2(target, MntFlags::MNT_DETACH);
                fail(format!("read-only remount: {e}"))
            })
        }
        _ => {
            let options = format!("lowerdir={}", join(layers.iter().cloned()));
            if options.len() > MAX_OPTIONS || options.contains(',') {
                return Err(fail(format!(
                    "{} layers do not fit in one read-only overlay mount",
                    layers.len()
                )));
            }
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                locked,
                Some(options.as_str()),
            )
            .map_err(|e| fail(format!("overlay mount failed: {e} (options {options})")))
        }
    }
}

/// Unmounts what [`mount_readonly`] mounted (lazily if busy) and removes the directory.
pub fn unmount_readonly(target: &Path) -> Result<(), SnapshotError> {
    if is_mounted(target) {
        umount2(target, MntFlags::MNT_DETACH).map_err(|e| SnapshotError::Mount {
            target: target.to_path_buf(),
            reason: format!("unmount: {e}"),
        })?;
    }
    match fs::remove_dir(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SnapshotError::io(target, e)),
        _ => Ok(()),
    }
}

fn join(paths: impl Iterator<Item = PathBuf>) -> String {
    paths
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn common_parent(layers: &[PathBuf]) -> Option<PathBuf> {
    // Layer dirs are `<snapshots>/<chain>/fs`.
    let first = layers.first()?.parent()?.parent()?.to_path_buf();
    layers
        .iter()
        .all(|l| l.starts_with(&first))
        .then_some(first)
}

fn mount_overlay(target: &Path, options: &str) -> Result<(), String> {
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options),
    )
    .map_err(|e| format!("overlay mount failed: {e} (options {options})"))
}

/// Mounts with relative lower dirs from a forked child whose cwd is `dir`.
fn mount_in_dir(dir: &Path, target: &Path, options: &str) -> Result<(), String> {
    let c = |p: &[u8]| CString::new(p).map_err(|_| "path contains NUL".to_string());
    let c_dir = c(dir.as_os_str().as_bytes())?;
    let c_target = c(target.as_os_str().as_bytes())?;
    let c_options = c(options.as_bytes())?;
    let c_overlay = c(b"overlay")?;
    // SAFETY: the child only makes async-signal-safe syscalls (chdir, mount, _exit) on
    // memory prepared before the fork, so a multi-threaded parent is not a problem.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: see above; every pointer is a valid NUL-terminated string.
            unsafe {
                let code = if nix::libc::chdir(c_dir.as_ptr()) != 0 {
                    1
                } else if nix::libc::mount(
                    c_overlay.as_ptr(),
                    c_target.as_ptr(),
                    c_overlay.as_ptr(),
                    0,
                    c_options.as_ptr().cast(),
                ) != 0
                {
                    2
                } else {
                    0
                };
                nix::libc::_exit(code)
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(status) => Err(format!(
                    "overlay mount (relative lower dirs) failed: {status:?}"
                )),
                Err(e) => Err(format!("waiting for the mount helper: {e}")),
            }
        }
        Err(e) => Err(format!("fork for the mount helper: {e}")),
    }
}

/// Whether `target` is a mount point: its mount differs from its parent directory's.
/// Two small fdinfo reads instead of a parse of the whole mount table, which grows with
/// every pod on the node and was read several times per pod start; the table is the
/// fallback where fdinfo has no `mnt_id` (kernels before 3.15).
pub fn is_mounted(target: &Path) -> bool {
    let parent = match target.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return true, // `/`
    };
    match (mount_id(target), mount_id(parent)) {
        (Ok(Some(own)), Ok(Some(above))) => own != above,
        (Err(_), _) => false,
        _ => is_mounted_per_mountinfo(target),
    }
}

/// The id of the mount `path` is on (`mnt_id` of an `O_PATH` descriptor); `Err` when the
/// path does not exist, `None` when the kernel does not say.
fn mount_id(path: &Path) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_NOFOLLOW)
        .open(path)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok()))
}

fn is_mounted_per_mountinfo(target: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = target.as_os_str().as_bytes();
    text.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape(mp).as_slice() == want)
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

pub fn remove_rootfs(container_dir: &Path) -> Result<(), SnapshotError> {
    let rootfs = container_dir.join("rootfs");
    if is_mounted(&rootfs) {
        if let Err(e) = umount2(&rootfs, MntFlags::empty()) {
            if e == nix::errno::Errno::EBUSY {
                umount2(&rootfs, MntFlags::MNT_DETACH)
                    .map_err(|e| SnapshotError::io(&rootfs, e.into()))?;
            } else if e != nix::errno::Errno::EINVAL {
                return Err(SnapshotError::io(&rootfs, e.into()));
            }
        }
    }
    if is_mounted(&rootfs) {
        return Err(SnapshotError::Mount {
            target: rootfs,
            reason: "still mounted after unmount".into(),
        });
    }
    for d in ["upper", "work", "rootfs"] {
        let p = container_dir.join(d);
        match fs::remove_dir_all(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SnapshotError::io(&p, e)),
        }
    }
    // The container dir itself may hold the caller's files (bundle, logs): remove it only
    // when nothing else is left.
    let _ = fs::remove_dir(container_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_told_by_their_mount_id_as_the_mount_table_tells_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (path, mounted) in [
            (Path::new("/proc"), true),
            (Path::new("/proc/self"), false),
            (tmp.path(), false),
            (&tmp.path().join("missing"), false),
        ] {
            assert_eq!(is_mounted(path), mounted, "{}", path.display());
            if path.exists() {
                assert_eq!(
                    is_mounted_per_mountinfo(path),
                    mounted,
                    "{}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/a\040b"), b"/a b");
        assert_eq!(unescape(r"/plain"), b"/plain");
        assert_eq!(unescape(r"/end\"), b"/end\\");
    }

    #[test]
    fn long_lower_dir_lists_share_the_snapshots_parent() {
        let layers: Vec<PathBuf> = (0..3)
            .map(|i| PathBuf::from(format!("/var/lib/skiff/agent/snapshots/{i}/fs")))
            .collect();
        assert_eq!(
            common_parent(&layers),
            Some(PathBuf::from("/var/lib/skiff/agent/snapshots"))
        );
    }
}
