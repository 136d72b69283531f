//! The content store: blobs addressed by their sha256 digest under `content/blobs/sha256/`.
//!
//! Invariant: a file under `blobs/` always has exactly the bytes its name says. Data is
//! written under `content/ingest/` first, hashed while written, and only a verified, fsynced
//! file is renamed into `blobs/`. An interrupted download leaves a partial ingest file that
//! the next attempt continues from; a corrupt one is deleted, never renamed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};

use super::reference::validate_digest;
use super::ImageError;

/// Handle to `<agent>/content`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<ContentStore, ImageError> {
        for sub in ["blobs/sha256", "ingest"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|e| ImageError::io(&dir, e))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    /// Path of a blob whether or not it exists. `digest` must be validated `sha256:<hex>`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    pub fn contains(&self, digest: &str) -> bool {
        validate_digest(digest).is_ok() && self.blob_path(digest).is_file()
    }

    /// Reads a small blob (manifest, config, index) into memory.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        validate_digest(digest).map_err(ImageError::Corrupt)?;
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImageError::MissingBlob(digest.to_string())
            } else {
                ImageError::io(&path, e)
            }
        })
    }

    pub fn open_blob(&self, digest: &str) -> Result<File, ImageError> {
        validate_digest(digest).map_err(ImageError::Corrupt)?;
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImageError::MissingBlob(digest.to_string())
            } else {
                ImageError::io(&path, e)
            }
        })
    }

    /// Stores bytes already in memory (small documents) and returns their digest.
    pub fn write_bytes(&self, data: &[u8]) -> Result<String, ImageError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        if self.contains(&digest) {
            return Ok(digest);
        }
        let mut ingest = self.ingest(&digest, Some(data.len() as u64))?;
        if ingest.already_stored() {
            return Ok(digest);
        }
        if ingest.offset() > 0 {
            ingest.restart()?;
        }
        ingest.write(data)?;
        ingest.commit()?;
        Ok(digest)
    }

    /// Stores a stream whose digest is checked against `expected` (when given) and returns
    /// the digest. Used by import, where blobs come from a local tarball.
    pub fn write_reader(
        &self,
        expected: Option<&str>,
        size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<String, ImageError> {
        if let Some(d) = expected {
            if self.contains(d) {
                std::io::copy(reader, &mut std::io::sink())
                    .map_err(|e| ImageError::io(&self.root, e))?;
                return Ok(d.to_string());
            }
        }
        // Without a known digest the data goes to a uniquely named ingest file first.
        let tmp_name = match expected {
            Some(d) => d.to_string(),
            None => format!("sha256:unknown-{}", rand::random::<u64>()),
        };
        let mut ingest = Ingest::open(self, &tmp_name, size, expected.is_some())?;
        if ingest.already_stored() {
            std::io::copy(reader, &mut std::io::sink())
                .map_err(|e| ImageError::io(&self.root, e))?;
            return Ok(tmp_name);
        }
        if ingest.offset() > 0 {
            ingest.restart()?;
        }
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| ImageError::io(&self.root, e))?;
            if n == 0 {
                break;
            }
            ingest.write(&buf[..n])?;
        }
        ingest.commit()
    }

    /// Starts or resumes writing the blob `digest` of `size` bytes (when known). Blocks
    /// while another process or task ingests the same digest.
    pub fn ingest(&self, digest: &str, size: Option<u64>) -> Result<Ingest, ImageError> {
        validate_digest(digest).map_err(ImageError::Corrupt)?;
        Ingest::open(self, digest, size, true)
    }

    /// Digests of every stored blob with their sizes.
    pub fn list(&self) -> Result<Vec<(String, u64)>, ImageError> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let entry = entry.map_err(|e| ImageError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((format!("sha256:{name}"), size));
        }
        Ok(out)
    }

    pub fn delete(&self, digest: &str) -> Result<(), ImageError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io(&path, e)),
        }
    }

    /// Removes ingest files nobody holds a lock on (left by crashed writers of blobs that
    /// are no longer wanted).
    pub fn clean_ingest(&self) -> Result<u64, ImageError> {
        let dir = self.root.join("ingest");
        let mut freed = 0;
        for entry in fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Ok(file) = OpenOptions::new().write(true).open(&path) else {
                continue;
            };
            if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                freed += lock.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(&path);
            }
        }
        Ok(freed)
    }
}

/// A blob being written. Dropping it without [`Ingest::commit`] keeps the partial file so a
/// retry resumes (for content that was good so far).
pub struct Ingest {
    file: Flock<File>,
    path: PathBuf,
    final_path: PathBuf,
    expected: Option<String>,
    size: Option<u64>,
    hasher: Sha256,
    written: u64,
    done: bool,
}

impl Ingest {
    fn open(
        store: &ContentStore,
        name: &str,
        size: Option<u64>,
        verify: bool,
    ) -> Result<Ingest, ImageError> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let path = store.root.join("ingest").join(format!("{hex}.partial"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        // Two pulls of images sharing a layer must not interleave their writes.
        let mut file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| ImageError::io(&path, errno.into()))?;
        let final_path = if verify {
            store.blob_path(name)
        } else {
            PathBuf::new()
        };
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        if verify && final_path.is_file() {
            // Another writer finished while we waited; the file we locked may now be that
            // very blob (it was renamed), so it must not be touched.
            return Ok(Ingest {
                file,
                path,
                final_path,
                expected: Some(name.to_string()),
                size,
                hasher,
                written,
                done: true,
            });
        }
        // Resume: hash what an earlier attempt left behind.
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|e| ImageError::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            written += n as u64;
        }
        let mut ingest = Ingest {
            file,
            path,
            final_path,
            expected: verify.then(|| name.to_string()),
            size,
            hasher,
            written,
            done: false,
        };
        if size.is_some_and(|s| written > s) {
            ingest.restart()?;
        }
        Ok(ingest)
    }

    /// Bytes already present (the offset a resumed download starts at).
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Whether the blob appeared in the store while we waited for the lock.
    pub fn already_stored(&self) -> bool {
        !self.final_path.as_os_str().is_empty() && self.final_path.is_file()
    }

    /// Throws away partial data (the server ignored a range request, or the data was bad).
    pub fn restart(&mut self) -> Result<(), ImageError> {
        self.file
            .set_len(0)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| ImageError::io(&self.path, e))?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), ImageError> {
        let new_len = self.written + data.len() as u64;
        if let Some(size) = self.size {
            if new_len > size {
                let digest = self.expected.clone().unwrap_or_default();
                self.abort();
                return Err(ImageError::SizeMismatch {
                    digest,
                    expected: size,
                    actual: new_len,
                });
            }
        }
        self.file
            .write_all(data)
            .map_err(|e| ImageError::io(&self.path, e))?;
        self.hasher.update(data);
        self.written = new_len;
        Ok(())
    }

    /// Verifies size and digest, then moves the data into the store atomically. On a
    /// mismatch the partial data is deleted and an error names the blob.
    pub fn commit(mut self) -> Result<String, ImageError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        let expected = self.expected.clone();
        if let Some(size) = self.size {
            if self.written != size {
                let written = self.written;
                self.abort();
                return Err(ImageError::SizeMismatch {
                    digest: expected.unwrap_or(actual),
                    expected: size,
                    actual: written,
                });
            }
        }
        if let Some(expected) = &expected {
            if *expected != actual {
                self.abort();
                return Err(ImageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let final_path = match &expected {
            Some(_) => self.final_path.clone(),
            None => {
                let hex = actual.trim_start_matches("sha256:");
                self.path
                    .parent()
                    .and_then(Path::parent)
                    .map(|root| root.join("blobs/sha256").join(hex))
                    .unwrap_or_default()
            }
        };
        self.file
            .sync_all()
            .map_err(|e| ImageError::io(&self.path, e))?;
        fs::rename(&self.path, &final_path).map_err(|e| ImageError::io(&final_path, e))?;
        if let Some(dir) = final_path.parent() {
            // The rename is durable only once the directory is synced.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.done = true;
        Ok(actual)
    }

    /// Deletes the partial data (a verification failure must not be resumed).
    fn abort(&mut self) {
        let _ = fs::remove_file(&self.path);
        self.done = true;
    }

    /// Like dropping, but deletes the partial file: for failures after which the data
    /// cannot be trusted.
    pub fn discard(mut self) {
        self.abort();
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Content of unknown digest cannot be resumed by name: don't leave it behind.
        if !self.done && self.expected.is_none() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    fn ingest_files(dir: &Path) -> usize {
        fs::read_dir(dir.join("ingest")).unwrap().count()
    }

    #[test]
    fn verified_blob_lands_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"hello layer".repeat(1000);
        let d = digest_of(&data);
        let mut ing = store.ingest(&d, Some(data.len() as u64)).unwrap();
        ing.write(&data[..100]).unwrap();
        ing.write(&data[100..]).unwrap();
        assert_eq!(ing.commit().unwrap(), d);
        assert_eq!(store.read(&d).unwrap(), data);
        assert_eq!(ingest_files(dir.path()), 0);
    }

    #[test]
    fn digest_mismatch_is_rejected_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = digest_of(b"expected");
        let mut ing = store.ingest(&d, Some(8)).unwrap();
        ing.write(b"tampered").unwrap();
        let err = ing.commit().unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&d));
        assert!(!store.contains(&d));
        assert_eq!(ingest_files(dir.path()), 0);
    }

    #[test]
    fn truncated_blob_is_rejected_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"0123456789";
        let d = digest_of(data);
        let mut ing = store.ingest(&d, Some(10)).unwrap();
        ing.write(&data[..5]).unwrap();
        let err = ing.commit().unwrap_err();
        assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err}");
        assert!(!store.contains(&d));
        assert_eq!(ingest_files(dir.path()), 0);
    }

    #[test]
    fn oversized_stream_is_cut_off_at_the_declared_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = digest_of(b"abc");
        let mut ing = store.ingest(&d, Some(3)).unwrap();
        assert!(ing.write(b"abcdef").is_err());
        assert_eq!(ingest_files(dir.path()), 0);
    }

    #[test]
    fn interrupted_ingest_resumes_from_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"resumable content".repeat(100);
        let d = digest_of(&data);
        {
            let mut ing = store.ingest(&d, Some(data.len() as u64)).unwrap();
            ing.write(&data[..700]).unwrap();
            // dropped: simulated connection loss
        }
        let mut ing = store.ingest(&d, Some(data.len() as u64)).unwrap();
        assert_eq!(ing.offset(), 700);
        ing.write(&data[700..]).unwrap();
        ing.commit().unwrap();
        assert_eq!(store.read(&d).unwrap(), data);
    }

    #[test]
    fn write_reader_checks_the_expected_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = digest_of(b"other");
        let err = store
            .write_reader(Some(&d), None, &mut &b"data"[..])
            .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }));
        let got = store.write_reader(None, None, &mut &b"data"[..]).unwrap();
        assert_eq!(got, digest_of(b"data"));
        assert_eq!(ingest_files(dir.path()), 0);
    }
}
