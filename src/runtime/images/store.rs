//! Image metadata (`metadata/images.json`: reference → manifest digest and image id) and
//! garbage collection of content no image needs.
//!
//! Invariant: the metadata file is replaced atomically (temp file + fsync + rename) under an
//! exclusive `flock`, so the agent and a concurrent `skiff images` command never lose each
//! other's updates or see a torn file.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{ImageError, ImageStore};

/// One named image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub manifest_digest: String,
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct MetadataStore {
    dir: PathBuf,
}

impl MetadataStore {
    pub fn open(dir: &Path) -> Result<MetadataStore, ImageError> {
        fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        Ok(MetadataStore {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self) -> PathBuf {
        self.dir.join("images.json")
    }

    fn lock(&self, arg: FlockArg) -> Result<Flock<File>, ImageError> {
        let path = self.dir.join("images.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        Flock::lock(f, arg).map_err(|(_, errno)| ImageError::io(&path, errno.into()))
    }

    pub fn load(&self) -> Result<BTreeMap<String, Record>, ImageError> {
        let _guard = self.lock(FlockArg::LockShared)?;
        self.read_unlocked()
    }

    fn read_unlocked(&self) -> Result<BTreeMap<String, Record>, ImageError> {
        let path = self.file();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::Corrupt(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::io(&path, e)),
        }
    }

    /// Read-modify-write under the exclusive lock.
    pub fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Record>),
    ) -> Result<(), ImageError> {
        let _guard = self.lock(FlockArg::LockExclusive)?;
        let mut records = self.read_unlocked()?;
        change(&mut records);
        let bytes = serde_json::to_vec_pretty(&records)
            .map_err(|e| ImageError::Corrupt(format!("serializing image metadata: {e}")))?;
        let tmp = self.dir.join("images.json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.file())?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| ImageError::io(&tmp, e))
    }
}

/// Deletes blobs and snapshots that no recorded image references; returns (freed bytes,
/// remaining disk usage).
pub(super) fn collect_garbage(store: &ImageStore) -> Result<(u64, u64), ImageError> {
    let mut live_blobs = HashSet::new();
    let mut live_snapshots = HashSet::new();
    for image in store.list()? {
        let manifest = store.manifest(&image.manifest_digest)?;
        live_blobs.insert(image.manifest_digest.clone());
        live_blobs.insert(manifest.config().digest().to_string());
        for l in manifest.layers() {
            live_blobs.insert(l.digest().to_string());
        }
        for c in &image.chain_ids {
            live_snapshots.insert(c.trim_start_matches("sha256:").to_string());
        }
    }
    let content = store.content();
    let mut freed = content.clean_ingest()?;
    let mut usage = 0;
    for (digest, size) in content.list()? {
        if live_blobs.contains(&digest) {
            usage += size;
        } else {
            content.delete(&digest)?;
            freed += size;
        }
    }
    let snapshots = store.agent_dir().join("snapshots");
    let mounted = mounted_overlay_options();
    if let Ok(rd) = fs::read_dir(&snapshots) {
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let size = dir_size(&path);
            if name.starts_with(".deleting-") || name.starts_with(".tmp-") {
                // Left by a crash: a delete that did not finish, or an unpack whose
                // layer lock nobody holds any more.
                if abandoned(&snapshots, &name) {
                    let _ = fs::remove_dir_all(&path);
                    freed += size;
                } else {
                    usage += size;
                }
                continue;
            }
            let is_snapshot = name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit());
            // A snapshot under a mounted overlay stays even when its image is gone: the
            // running container still reads it.
            if !is_snapshot || live_snapshots.contains(&name) || mounted.contains(&name) {
                usage += size;
                continue;
            }
            let doomed = snapshots.join(format!(".deleting-{name}"));
            if fs::rename(&path, &doomed).is_ok() {
                fs::remove_dir_all(&doomed).map_err(|e| ImageError::io(&doomed, e))?;
                freed += size;
            }
        }
    }
    Ok((freed, usage))
}

/// Whether a `.tmp-<chain>-<n>` unpack dir (or a `.deleting-` dir) has no live owner.
fn abandoned(snapshots: &Path, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(".tmp-") else {
        return true;
    };
    let chain = rest.split('-').next().unwrap_or_default();
    let Ok(f) = OpenOptions::new()
        .write(true)
        .open(snapshots.join(format!(".lock-{chain}")))
    else {
        return true;
    };
    Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
}

/// The full text of every overlay mount's options on this host; snapshot names (64 hex
/// digits) found in it are in use.
fn mounted_overlay_options() -> String {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(" - overlay "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Apparent size of a directory tree (symlinks not followed).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            total += dir_size(&e.path());
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_updates_are_persisted_and_merged() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetadataStore::open(dir.path()).unwrap();
        let rec = |d: &str| Record {
            manifest_digest: d.into(),
            id: "sha256:id".into(),
        };
        m.update(|r| {
            r.insert("a".into(), rec("1"));
        })
        .unwrap();
        let m2 = MetadataStore::open(dir.path()).unwrap();
        m2.update(|r| {
            r.insert("b".into(), rec("2"));
        })
        .unwrap();
        let all = m.load().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"], rec("1"));
        assert!(!dir.path().join("images.json.tmp").exists());
    }
}
