//! Pod network namespaces: created, pinned by a bind mount of the namespace file onto
//! `<state-dir>/netns/<pod>` (as `ip netns add` does under /run/netns), entered and
//! removed. Invariant: `unshare`/`setns` only ever run on a short-lived thread of our
//! own that exits right after, because a namespace switch affects only the calling
//! thread and a tokio worker that switched would run every other task in the pod's
//! namespace.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Runs `f` on a fresh thread and awaits its result without blocking the runtime.
pub async fn on_thread<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skiff-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })?;
    rx.await
        .map_err(|_| io::Error::other("namespace thread panicked"))
}

/// Creates a new network namespace pinned at `pin` (an empty file is created for it).
/// A pin that is already a namespace is left as it is.
pub async fn create(pin: PathBuf) -> io::Result<()> {
    if is_pinned(&pin) {
        return Ok(());
    }
    on_thread(move || -> io::Result<()> {
        if let Some(dir) = pin.parent() {
            std::fs::create_dir_all(dir)?;
        }
        File::create(&pin)?;
        unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let tid = nix::unistd::gettid();
        let src = format!("/proc/self/task/{tid}/ns/net");
        mount(
            Some(src.as_str()),
            &pin,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    })
    .await?
}

/// Whether `pin` is a mounted namespace file (nsfs), not just the empty file left by
/// an interrupted `create`.
pub fn is_pinned(pin: &Path) -> bool {
    nix::sys::statfs::statfs(pin)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Unpins and deletes the namespace file; a missing one is fine. The kernel frees the
/// namespace (and the pod's end of its veth) once nothing else holds it.
pub fn remove(pin: &Path) -> io::Result<()> {
    match umount2(pin, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs `f` inside the namespace at `pin`, on a thread of its own.
pub async fn run_in<T, F>(pin: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = File::open(pin)?;
    on_thread(move || -> io::Result<T> {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        Ok(f())
    })
    .await?
}
