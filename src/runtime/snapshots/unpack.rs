//! Unpacking one layer tar (plain, gzip or zstd) into an empty directory, in the form an
//! overlayfs lower dir needs: OCI whiteouts become 0/0 character devices and opaque markers
//! become `trusted.overlay.opaque=y`.
//!
//! Invariant: nothing is ever created, changed or removed outside `dest`. Entry names and
//! hard link targets with `..` or a root are refused, and so are whiteouts of `.` or `..`;
//! every existing path component below `dest` is checked with `lstat`: a symlink where a
//! directory is expected is refused, never followed, and files are opened with
//! `O_NOFOLLOW | O_EXCL`. Each layer unpacks into its own empty directory, so a symlink
//! from a lower layer is never on the path either.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{self, Mode, SFlag};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};

use super::SnapshotError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacks the (possibly compressed) layer read from `blob` into `dest` and returns the
/// diff id (sha256 of the uncompressed tar).
pub fn unpack_layer(blob: impl Read, dest: &Path) -> Result<String, SnapshotError> {
    let mut buffered = BufReader::with_capacity(1 << 20, blob);
    let head = buffered
        .fill_buf()
        .map_err(|e| SnapshotError::io(dest, e))?
        .to_vec();
    let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| SnapshotError::io(dest, e))?,
        )
    } else {
        Box::new(buffered)
    };
    let mut hashing = HashingReader {
        inner: decoded,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let mut dirs = Vec::new();
        let entries = archive.entries().map_err(|e| SnapshotError::io(dest, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SnapshotError::io(dest, e))?;
            unpack_entry(entry, dest, &mut dirs)?;
        }
        // Directory mtimes last: creating their children changed them.
        for (path, mtime) in dirs.iter().rev() {
            set_times(path, *mtime)?;
        }
    }
    // The tar may end before the stream does (padding); the diff id covers all of it.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| SnapshotError::io(dest, e))?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Entry name → components below the layer root, refusing anything that could escape.
fn safe_components(name: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut parts = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(s) => parts.push(PathBuf::from(s)),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(SnapshotError::Unsafe {
                    path: name.to_path_buf(),
                    reason: "entry name leaves the layer (.. or absolute)".into(),
                })
            }
        }
    }
    Ok(parts)
}

/// Makes sure every directory above `parts`' last element exists as a real directory under
/// `dest` (created 0755 when missing) and returns the full path of the entry.
fn prepare_parent(dest: &Path, parts: &[PathBuf], name: &Path) -> Result<PathBuf, SnapshotError> {
    let mut path = dest.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        if i + 1 == parts.len() {
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(SnapshotError::Unsafe {
                    path: name.to_path_buf(),
                    reason: format!("parent {} is a symlink", part.display()),
                })
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SnapshotError::Unsafe {
                    path: name.to_path_buf(),
                    reason: format!("parent {} is not a directory", part.display()),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&path)
                    .map_err(|e| SnapshotError::io(&path, e))?;
            }
            Err(e) => return Err(SnapshotError::io(&path, e)),
        }
    }
    Ok(path)
}

/// Removes whatever an earlier entry of this layer put at `path` (a later entry wins).
fn remove_existing(path: &Path, keep_dir: bool) -> Result<(), SnapshotError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if keep_dir {
                return Ok(());
            }
            fs::remove_dir_all(path).map_err(|e| SnapshotError::io(path, e))
        }
        Ok(_) => fs::remove_file(path).map_err(|e| SnapshotError::io(path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io(path, e)),
    }
}

fn unpack_entry<R: Read>(
    mut entry: tar::Entry<'_, R>,
    dest: &Path,
    dirs: &mut Vec<(PathBuf, i64)>,
) -> Result<(), SnapshotError> {
    let name = entry
        .path()
        .map_err(|e| SnapshotError::io(dest, e))?
        .into_owned();
    let parts = safe_components(&name)?;
    let Some(last) = parts.last() else {
        // The layer root itself (`./`): the snapshot dir keeps its own metadata.
        return Ok(());
    };
    let file_name = last.as_os_str().to_string_lossy().into_owned();
    let path = prepare_parent(dest, &parts, &name)?;
    let header = entry.header().clone();
    let kind = header.entry_type();
    let mode = header.mode().map_err(|e| SnapshotError::io(&path, e))? & 0o7777;
    let uid = header.uid().map_err(|e| SnapshotError::io(&path, e))? as u32;
    let gid = header.gid().map_err(|e| SnapshotError::io(&path, e))? as u32;
    let mtime = header.mtime().map_err(|e| SnapshotError::io(&path, e))? as i64;

    if file_name == OPAQUE_MARKER {
        let dir = path.parent().unwrap_or(dest);
        return set_xattr(dir, "trusted.overlay.opaque", b"y");
    }
    if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.starts_with(".wh.") || hidden.is_empty() {
            // Other AUFS metadata (`.wh..wh.plnk` …) has no overlay meaning.
            return Ok(());
        }
        if hidden == "." || hidden == ".." {
            // `.wh..` would delete the directory itself, `.wh...` its parent (at the top:
            // the directory above the layer).
            return Err(SnapshotError::Unsafe {
                path: name,
                reason: "whiteout of . or .. leaves the layer".into(),
            });
        }
        let target = path.with_file_name(hidden);
        remove_existing(&target, false)?;
        stat::mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|e| SnapshotError::io(&target, e.into()))?;
        return Ok(());
    }

    let xattrs = pax_xattrs(&mut entry)?;
    match kind {
        tar::EntryType::Directory => {
            remove_existing(&path, true)?;
            if !path.is_dir() {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .map_err(|e| SnapshotError::io(&path, e))?;
            }
            finish(&path, uid, gid, Some(mode), &xattrs, None)?;
            dirs.push((path, mtime));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            remove_existing(&path, false)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| SnapshotError::io(&path, e))?;
            io::copy(&mut entry, &mut f).map_err(|e| SnapshotError::io(&path, e))?;
            drop(f);
            finish(&path, uid, gid, Some(mode), &xattrs, Some(mtime))?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| SnapshotError::io(&path, e))?
                .ok_or_else(|| SnapshotError::Unsafe {
                    path: name.clone(),
                    reason: "symlink without target".into(),
                })?;
            remove_existing(&path, false)?;
            // The target is stored as-is: it is resolved inside the container's root at
            // run time, and this unpacker never follows it.
            std::os::unix::fs::symlink(&target, &path).map_err(|e| SnapshotError::io(&path, e))?;
            finish(&path, uid, gid, None, &xattrs, Some(mtime))?;
        }
        tar::EntryType::Link => {
            let target_name = entry
                .link_name()
                .map_err(|e| SnapshotError::io(&path, e))?
                .ok_or_else(|| SnapshotError::Unsafe {
                    path: name.clone(),
                    reason: "hard link without target".into(),
                })?
                .into_owned();
            let target_parts =
                safe_components(&target_name).map_err(|_| SnapshotError::Unsafe {
                    path: name.clone(),
                    reason: format!(
                        "hard link target {} leaves the layer (.. or absolute)",
                        target_name.display()
                    ),
                })?;
            if target_parts.is_empty() {
                return Err(SnapshotError::Unsafe {
                    path: name,
                    reason: "hard link to the layer root".into(),
                });
            }
            let target = prepare_parent(dest, &target_parts, &target_name)?;
            if fs::symlink_metadata(&target).is_err() {
                return Err(SnapshotError::Unsafe {
                    path: name,
                    reason: format!(
                        "hard link target {} is not in this layer",
                        target_name.display()
                    ),
                });
            }
            remove_existing(&path, false)?;
            // linkat without AT_SYMLINK_FOLLOW: links the symlink itself, never its target.
            fs::hard_link(&target, &path).map_err(|e| SnapshotError::io(&path, e))?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            remove_existing(&path, false)?;
            let (flag, dev) = match kind {
                tar::EntryType::Char | tar::EntryType::Block => {
                    let major = header
                        .device_major()
                        .map_err(|e| SnapshotError::io(&path, e))?
                        .unwrap_or(0);
                    let minor = header
                        .device_minor()
                        .map_err(|e| SnapshotError::io(&path, e))?
                        .unwrap_or(0);
                    let flag = if kind == tar::EntryType::Char {
                        SFlag::S_IFCHR
                    } else {
                        SFlag::S_IFBLK
                    };
                    (flag, stat::makedev(major.into(), minor.into()))
                }
                _ => (SFlag::S_IFIFO, 0),
            };
            stat::mknod(&path, flag, Mode::from_bits_truncate(0o600), dev)
                .map_err(|e| SnapshotError::io(&path, e.into()))?;
            finish(&path, uid, gid, Some(mode), &xattrs, Some(mtime))?;
        }
        // PAX/GNU headers are consumed by the tar reader; anything else has no file form.
        _ => {}
    }
    Ok(())
}

fn pax_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Vec<(String, Vec<u8>)>, SnapshotError> {
    let mut out = Vec::new();
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| SnapshotError::io(Path::new("pax"), e))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| SnapshotError::io(Path::new("pax"), e))?;
            if let Ok(key) = ext.key() {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    out.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

/// Owner, then mode (chown clears set-id bits), then xattrs (chown also drops
/// security.capability), then times.
fn finish(
    path: &Path,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
    xattrs: &[(String, Vec<u8>)],
    mtime: Option<i64>,
) -> Result<(), SnapshotError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| SnapshotError::io(path, e))?;
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| SnapshotError::io(path, e))?;
    }
    for (name, value) in xattrs {
        if let Err(e) = set_xattr(path, name, value) {
            // Some filesystems refuse some namespaces (user.* on symlinks); the layer is
            // still usable, so this is not fatal.
            tracing::debug!(path = %path.display(), xattr = %name, error = %e, "xattr not applied");
        }
    }
    if let Some(mtime) = mtime {
        set_times(path, mtime)?;
    }
    Ok(())
}

fn set_times(path: &Path, mtime: i64) -> Result<(), SnapshotError> {
    let t = TimeSpec::new(mtime, 0);
    stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| SnapshotError::io(path, e.into()))
}

/// `lsetxattr`: never follows a symlink at `path`.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), SnapshotError> {
    let bad = |_| SnapshotError::io(path, io::Error::from(io::ErrorKind::InvalidInput));
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(bad)?;
    let c_name = CString::new(name).map_err(bad)?;
    // SAFETY: both strings are NUL-terminated and live across the call; value/len describe
    // a valid byte slice.
    let rc = unsafe {
        nix::libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(SnapshotError::io(path, io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
