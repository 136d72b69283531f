//! Snapshots: image layers unpacked once into `<agent>/snapshots/<chainid-hex>/fs`, and
//! container root filesystems as overlayfs mounts over them (see [`overlay`]).
//!
//! Invariant: a snapshot directory exists under its final name only when its `committed`
//! marker is inside it: layers are unpacked into a temporary directory, checked against the
//! image's diff id, then renamed into place, so a crash never leaves a half-unpacked layer
//! that looks complete.

pub mod overlay;
pub mod unpack;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::images::{Image, ImageError, ImageStore};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing layer entry {}: {reason}", path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("layer {layer} unpacked to diff id {actual}, the image config says {expected}")]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("mounting {}: {reason}", target.display())]
    Mount { target: PathBuf, reason: String },
    #[error("invalid container id {0:?}")]
    InvalidId(String),
}

impl SnapshotError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> SnapshotError {
        SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Unpacks layers and mounts container root filesystems under one agent dir.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    agent_dir: PathBuf,
}

impl Snapshotter {
    pub fn new(agent_dir: &Path) -> Snapshotter {
        Snapshotter {
            agent_dir: agent_dir.to_path_buf(),
        }
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.agent_dir.join("snapshots")
    }

    /// Directory of a committed snapshot's files.
    pub fn layer_dir(&self, chain_id: &str) -> PathBuf {
        self.snapshots_dir()
            .join(chain_id.trim_start_matches("sha256:"))
            .join("fs")
    }

    /// Unpacks every layer of `image` that is not unpacked yet and returns the layer
    /// directories, top layer first (overlayfs `lowerdir` order).
    pub fn ensure_unpacked(
        &self,
        store: &ImageStore,
        image: &Image,
    ) -> Result<Vec<PathBuf>, SnapshotError> {
        let manifest = store.manifest(&image.manifest_digest)?;
        let diff_ids = image.config.rootfs().diff_ids();
        let dir = self.snapshots_dir();
        fs::create_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
        let mut out = Vec::with_capacity(image.chain_ids.len());
        for ((layer, chain_id), diff_id) in
            manifest.layers().iter().zip(&image.chain_ids).zip(diff_ids)
        {
            self.unpack_one(store, layer.digest().as_ref(), chain_id, diff_id)?;
            out.push(self.layer_dir(chain_id));
        }
        out.reverse();
        Ok(out)
    }

    fn unpack_one(
        &self,
        store: &ImageStore,
        blob_digest: &str,
        chain_id: &str,
        diff_id: &str,
    ) -> Result<(), SnapshotError> {
        let hex = chain_id.trim_start_matches("sha256:");
        let final_dir = self.snapshots_dir().join(hex);
        if final_dir.join("committed").is_file() {
            return Ok(());
        }
        // Two pods starting from one image at once must not unpack the same layer twice.
        let lock_path = self.snapshots_dir().join(format!(".lock-{hex}"));
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SnapshotError::io(&lock_path, e))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| SnapshotError::io(&lock_path, errno.into()))?;
        if final_dir.join("committed").is_file() {
            return Ok(());
        }
        if final_dir.exists() {
            // Left by a crash between rename and marker (cannot happen with the marker
            // written before the rename, but older layouts or manual edits might).
            fs::remove_dir_all(&final_dir).map_err(|e| SnapshotError::io(&final_dir, e))?;
        }
        let tmp = self
            .snapshots_dir()
            .join(format!(".tmp-{hex}-{}", rand::random::<u32>()));
        let result = (|| {
            let fs_dir = tmp.join("fs");
            fs::create_dir_all(&fs_dir).map_err(|e| SnapshotError::io(&fs_dir, e))?;
            let blob = store.content().open_blob(blob_digest)?;
            let actual = unpack::unpack_layer(blob, &fs_dir)?;
            if actual != diff_id {
                return Err(SnapshotError::DiffIdMismatch {
                    layer: blob_digest.to_string(),
                    expected: diff_id.to_string(),
                    actual,
                });
            }
            let marker = tmp.join("committed");
            File::create(&marker)
                .and_then(|f| f.sync_all())
                .map_err(|e| SnapshotError::io(&marker, e))?;
            fs::rename(&tmp, &final_dir).map_err(|e| SnapshotError::io(&final_dir, e))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        // The lock file stays: deleting it would let a waiter holding the old inode and a
        // newcomer creating a new one unpack at the same time.
        result
    }

    /// Creates `<agent>/containers/<id>/{upper,work}` and mounts an overlay at
    /// `<agent>/containers/<id>/rootfs` with `layers` (top first) as lower dirs.
    pub fn mount_rootfs(
        &self,
        container_id: &str,
        layers: &[PathBuf],
    ) -> Result<PathBuf, SnapshotError> {
        overlay::mount_rootfs(&self.container_dir(container_id)?, layers)
    }

    /// Unmounts the container's rootfs (lazily if busy) and removes its upper and work dirs.
    pub fn remove_rootfs(&self, container_id: &str) -> Result<(), SnapshotError> {
        overlay::remove_rootfs(&self.container_dir(container_id)?)
    }

    fn container_dir(&self, id: &str) -> Result<PathBuf, SnapshotError> {
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && !id.starts_with('.');
        if !ok {
            return Err(SnapshotError::InvalidId(id.to_string()));
        }
        Ok(self.agent_dir.join("containers").join(id))
    }
}
