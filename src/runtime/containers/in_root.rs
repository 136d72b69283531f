//! Path resolution that treats a directory as `/` and never leaves it, for everything the
//! runtime touches inside an image's rootfs before (or without) `pivot_root`: mount
//! destinations, device nodes, masked paths, the working directory, `/etc/passwd`.
//!
//! Invariant: a path given here resolves like the kernel would resolve it *inside the
//! container*: `..` at the root stays at the root and absolute symlinks restart at the root,
//! so no symlink in the image can make the runtime open, create or mount onto a host path
//! (runc's CVE-2021-30465 class). Results are `O_PATH` descriptors, so the caller mounts
//! through `/proc/self/fd/N` and a symlink swapped in after resolution cannot redirect it.
//!
//! Existing paths use `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (one syscall, and
//! the kernel also guards against `..` races). Creating missing components walks the path
//! one component at a time with `O_NOFOLLOW`, expanding symlinks itself against the root:
//! `openat2` cannot create directories, and a dangling symlink must be followed *inside*
//! the root to the place where the new file or directory belongs.

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// What to create when the path does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Symlinks followed in one resolution before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Opens the root itself: a directory descriptor every other call resolves against.
pub fn open_root(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `O_PATH` descriptor of `path` inside `root`; `ENOENT` when it does not exist.
pub fn open(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(root, rel.as_os_str(), how) {
        // Kernels before 5.6 have no openat2: the walk gives the same answer.
        Err(Errno::ENOSYS) => walk(root, path, None),
        r => r,
    }
}

/// Like [`open`], creating what is missing: directories for every missing parent, and
/// the last component as `kind` (an empty file or a directory).
pub fn ensure(root: BorrowedFd<'_>, path: &Path, kind: Kind) -> Result<OwnedFd, Errno> {
    match open(root, path) {
        Err(Errno::ENOENT) => walk(root, path, Some(kind)),
        r => r,
    }
}

/// Reads a whole file inside the root (e.g. the image's `/etc/passwd`).
pub fn read_to_string(root: &Path, path: &Path) -> std::io::Result<String> {
    let root = open_root(root)?;
    let found = open(root.as_fd(), path)?;
    // Only regular files: opening a FIFO or a device from an image could block or act.
    if file_type(&fstat(found.as_fd())?) != SFlag::S_IFREG {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let file: std::fs::File = nix::fcntl::open(
        fd_path(&found).as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?
    .into();
    std::io::read_to_string(file)
}

/// The `/proc/self/fd/N` path through which mount(2) and open(2) reach exactly `fd`.
pub fn fd_path(fd: &impl std::os::fd::AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Whether `fd` is the root directory itself (a destination that resolved to `/`).
pub fn is_same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> Result<bool, Errno> {
    let (sa, sb) = (fstat(a)?, fstat(b)?);
    Ok(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
}

/// `path` without its leading `/`, so that it is taken relative to the root descriptor
/// (`.` for the root itself: openat2 refuses an empty path).
fn relative(path: &Path) -> &Path {
    match path.strip_prefix("/").unwrap_or(path) {
        p if p.as_os_str().is_empty() => Path::new("."),
        p => p,
    }
}

fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Component-by-component resolution inside `root` (see the module doc). `create` makes
/// missing components; `None` reports `ENOENT` instead.
fn walk(root: BorrowedFd<'_>, path: &Path, create: Option<Kind>) -> Result<OwnedFd, Errno> {
    // Directories below the root that the walk is in; `..` pops, and never past the root,
    // because the root is not on this stack.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut todo: VecDeque<OsString> = components(path).collect();
    let mut links = 0;
    // Bounds the retries after a concurrent change (EEXIST on create, symlink swapped in).
    let mut steps = 0;
    while let Some(name) = todo.pop_front() {
        steps += 1;
        if steps > 4096 {
            return Err(Errno::ELOOP);
        }
        if name == ".." {
            stack.pop();
            continue;
        }
        let dir = stack.last().map(|f| f.as_fd()).unwrap_or(root);
        let last = todo.is_empty();
        let name_ref: &OsStr = &name;
        match fstatat(dir, name_ref, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if file_type(&st) == SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::ELOOP);
                }
                let target = readlinkat(dir, name_ref)?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    stack.clear();
                }
                for c in components(target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(c);
                }
            }
            Ok(st) => {
                if !last && file_type(&st) != SFlag::S_IFDIR {
                    return Err(Errno::ENOTDIR);
                }
                let fd = openat(
                    dir,
                    name_ref,
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                if file_type(&fstat(fd.as_fd())?) == SFlag::S_IFLNK {
                    // Replaced by a symlink since the fstatat: look again.
                    todo.push_front(name);
                    continue;
                }
                stack.push(fd);
            }
            Err(Errno::ENOENT) if create.is_some() => {
                let made = if !last || create == Some(Kind::Dir) {
                    mkdirat(dir, name_ref, Mode::from_bits_truncate(0o755)).map(|_| ())
                } else {
                    openat(
                        dir,
                        name_ref,
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                };
                match made {
                    // Created here or concurrently: open it (safely) on the next round.
                    Ok(()) | Err(Errno::EEXIST) => todo.push_front(name),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    match stack.pop() {
        Some(fd) => Ok(fd),
        None => root
            .try_clone_to_owned()
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EBADF))),
    }
}

/// The path an `O_PATH` descriptor refers to, as the kernel reports it (tests, messages).
pub fn describe(fd: &impl std::os::fd::AsRawFd) -> String {
    std::fs::read_link(fd_path(fd))
        .map(|p| String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "in_root_tests.rs"]
mod tests;
