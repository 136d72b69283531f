//! Makes sled's writes durable for real.
//!
//! sled 0.34's `flush` writes its log with `sync_file_range`, which neither persists file
//! metadata (the size of a growing file) nor flushes the device cache, and it writes large
//! pages (over ~128 KiB, e.g. big CRDs) to separate `blobs/<lsn>` files that it never fsyncs.
//! Invariant kept here: when [`DiskSync::flush`] returns, everything sled holds in memory
//! is on stable storage: new blob files and their directory entries first, then the log,
//! then `fdatasync` of the log file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::StoreError;

/// A directory mtime younger than this may still change within the same clock tick, so it
/// is not trusted as "nothing new since".
const MTIME_SETTLE: Duration = Duration::from_secs(1);

pub(super) struct DiskSync {
    log_file: File,
    blobs_dir: PathBuf,
    blobs: Mutex<BlobsSeen>,
}

#[derive(Default)]
struct BlobsSeen {
    /// Directory mtime at the last scan, once it is old enough to be trusted.
    settled_mtime: Option<SystemTime>,
    /// Highest blob id already fsynced (blob files are named by increasing log position).
    synced_up_to: Option<i64>,
}

impl DiskSync {
    /// `path` is the sled directory, already opened by sled.
    pub(super) fn open(path: &Path) -> Result<DiskSync, StoreError> {
        let log_file = File::open(path.join("db"))?;
        // sled may just have created the directory and its files: make the entries durable.
        sync_dir(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        let disk = DiskSync {
            log_file,
            blobs_dir: path.join("blobs"),
            blobs: Mutex::new(BlobsSeen::default()),
        };
        // Blobs left by an earlier run are synced once so the watermark starts past them.
        disk.sync_new_blobs()?;
        Ok(disk)
    }

    pub(super) fn flush(&self, db: &sled::Db) -> Result<(), StoreError> {
        self.sync_new_blobs()?;
        db.flush()?;
        self.log_file.sync_data()?;
        Ok(())
    }

    fn sync_new_blobs(&self) -> Result<(), StoreError> {
        let mut seen = self.blobs.lock();
        let mtime = match std::fs::metadata(&self.blobs_dir) {
            Ok(meta) => meta.modified()?,
            // sled creates it at open; without it there is nothing to sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if seen.settled_mtime == Some(mtime) {
            return Ok(());
        }
        let mut newest = seen.synced_up_to;
        for entry in std::fs::read_dir(&self.blobs_dir)? {
            let entry = entry?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if seen.synced_up_to.is_none_or(|done| id > done) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    // sled garbage-collects blobs of overwritten pages concurrently.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                }
                newest = newest.max(Some(id));
            }
        }
        sync_dir(&self.blobs_dir)?;
        seen.synced_up_to = newest;
        let age = SystemTime::now()
            .duration_since(mtime)
            .unwrap_or(Duration::ZERO);
        seen.settled_mtime = (age > MTIME_SETTLE).then_some(mtime);
        Ok(())
    }
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_values_land_in_fsynced_blobs_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let big = vec![42u8; 600 << 10];
        // No sled flusher thread, as the store configures it: that thread holds the database
        // (and its file lock) for up to its period after the last handle is dropped, and the
        // reopen below then failed with "could not acquire lock" now and then.
        let config = || sled::Config::new().path(&path).flush_every_ms(None);
        {
            let db = config().open().expect("sled opens");
            let disk = DiskSync::open(&path).expect("disk sync opens");
            db.insert("big", big.clone()).expect("insert");
            disk.flush(&db).expect("flush");
            // The value is large enough that sled stored it as a blob file, which this
            // module had to find and sync.
            assert!(
                disk.blobs.lock().synced_up_to.is_some(),
                "a blob was synced"
            );
        }
        // sled's background pool may still hold the last handle (and the file lock) for a
        // moment after the drop, even without the flusher.
        let db = crate::store::open_when_unlocked(|| config().open());
        assert_eq!(db.get("big").expect("get").as_deref(), Some(&big[..]));
    }
}
