//! The image store: pulls images from registries, imports airgap tarballs, and names them.
//!
//! Layout under the agent dir: `content/` (verified blobs, see [`content`]), `metadata/`
//! (reference → manifest digest, see [`store`]), `images/` (tarballs imported at start).
//!
//! Invariant: a reference is recorded only after its manifest, config and every layer are
//! verified and in the content store, so [`ImageStore::get`] never returns a half-pulled
//! image; content is removed only by [`ImageStore::gc`].

pub mod content;
pub mod import;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{ImageConfiguration, ImageManifest};
use sha2::{Digest as _, Sha256};

pub use self::content::ContentStore;
pub use self::reference::{normalize_reference, Reference};
pub use self::registries::RegistriesConfig;

use self::store::{MetadataStore, Record};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("{}: {reason}", path.display())]
    RegistriesConfig { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt image data: {0}")]
    Corrupt(String),
    #[error("blob {0} is not in the content store")]
    MissingBlob(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("registry {registry} rejected the credentials: {reason}")]
    Unauthorized { registry: String, reason: String },
    #[error("{reference}: not found in registry {registry}")]
    NotFound { reference: String, registry: String },
    #[error("{reference}: no manifest for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
    #[error("pulling {reference} failed on every endpoint: {errors}")]
    AllEndpointsFailed { reference: String, errors: String },
    #[error("unsupported media type {0}")]
    UnsupportedMediaType(String),
    #[error("importing {}: {reason}", path.display())]
    Import { path: PathBuf, reason: String },
    #[error("image {0} not found")]
    ImageNotFound(String),
}

impl ImageError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// An os/architecture/variant triple, as in OCI image indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on, in OCI (GOARCH) spelling.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(String::from),
        }
    }

    /// Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform, ImageError> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || ImageError::InvalidReference {
            reference: s.to_string(),
            reason: "platform must be os/arch[/variant]".into(),
        };
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Progress callbacks of a pull (the CLI draws a bar from them). Called from tasks that
/// download in parallel, so implementations must be cheap and thread-safe.
pub trait PullProgress: Send + Sync {
    /// The manifest is known: `total_bytes` of `layers` layers, `present_bytes` already stored.
    fn start(&self, total_bytes: u64, layers: usize, present_bytes: u64);
    /// `bytes` more were downloaded.
    fn advance(&self, bytes: u64);
    /// One layer was verified and stored.
    fn layer_done(&self, digest: &str);
}

/// A stored image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Normalized reference, e.g. `docker.io/library/busybox:1.36` (the id for unnamed images).
    pub reference: String,
    /// Digest of the platform-specific manifest.
    pub manifest_digest: String,
    /// The config digest (`sha256:…`), docker's image id.
    pub id: String,
    pub config: ImageConfiguration,
    /// Chain ids of the layers, bottom first (snapshot names).
    pub chain_ids: Vec<String>,
    /// Compressed size of config and layers.
    pub size: u64,
}

/// What [`ImageStore::gc`] did.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// References removed.
    pub removed_images: Vec<String>,
    /// Bytes of blobs and snapshots deleted.
    pub freed_bytes: u64,
    /// Bytes still used by content and snapshots afterwards.
    pub disk_usage: u64,
}

/// Handle to the image store of one agent directory. Cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    agent_dir: PathBuf,
    content: ContentStore,
    metadata: MetadataStore,
    registries: RegistriesConfig,
}

impl ImageStore {
    pub fn open(agent_dir: &Path, registries: RegistriesConfig) -> Result<ImageStore, ImageError> {
        let content = ContentStore::open(&agent_dir.join("content"))?;
        let metadata = MetadataStore::open(&agent_dir.join("metadata"))?;
        let drop_dir = agent_dir.join("images");
        std::fs::create_dir_all(&drop_dir).map_err(|e| ImageError::io(&drop_dir, e))?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                agent_dir: agent_dir.to_path_buf(),
                content,
                metadata,
                registries,
            }),
        })
    }

    pub fn agent_dir(&self) -> &Path {
        &self.inner.agent_dir
    }

    pub fn content(&self) -> &ContentStore {
        &self.inner.content
    }

    pub fn registries(&self) -> &RegistriesConfig {
        &self.inner.registries
    }

    /// Pulls `reference` for `platform` (default: the host's), records it and returns it.
    pub async fn pull(
        &self,
        reference: &str,
        platform: Option<&Platform>,
        progress: Option<Arc<dyn PullProgress>>,
    ) -> Result<Image, ImageError> {
        let r = normalize_reference(reference)?;
        let platform = platform.cloned().unwrap_or_else(Platform::host);
        let manifest_digest = pull::pull(self, &r, &platform, progress).await?;
        self.tag(&r.to_string(), &manifest_digest)
    }

    /// [`ImageStore::pull`] with the caller's credentials for endpoints `registries.yaml`
    /// has none for (the kubelet's imagePullSecrets).
    pub async fn pull_with_credentials(
        &self,
        reference: &str,
        credentials: Option<registries::Credentials>,
    ) -> Result<Image, ImageError> {
        let r = normalize_reference(reference)?;
        let manifest_digest =
            pull::pull_with_credentials(self, &r, &Platform::host(), None, credentials).await?;
        self.tag(&r.to_string(), &manifest_digest)
    }

    /// Imports a `docker save` or OCI-layout tarball (optionally gzip/zstd compressed).
    pub async fn import(&self, tarball: &Path) -> Result<Vec<Image>, ImageError> {
        let store = self.clone();
        let path = tarball.to_path_buf();
        let named = tokio::task::spawn_blocking(move || import::import(&store, &path))
            .await
            .map_err(|e| ImageError::Import {
                path: tarball.to_path_buf(),
                reason: format!("import task failed: {e}"),
            })??;
        named
            .into_iter()
            .map(|(name, digest)| self.tag(&name, &digest))
            .collect()
    }

    /// Imports every tarball in `dir` (the airgap drop dir `<agent>/images`). A bad file is
    /// logged and skipped so one broken tarball does not stop the agent.
    pub async fn import_dir(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        let mut files = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                for entry in rd.flatten() {
                    let path = entry.path();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let is_tarball = [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"]
                        .iter()
                        .any(|ext| name.ends_with(ext));
                    if is_tarball && path.is_file() {
                        files.push(path);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io(dir, e)),
        }
        files.sort();
        let mut out = Vec::new();
        for f in files {
            match self.import(&f).await {
                Ok(images) => out.extend(images),
                Err(e) => tracing::warn!(file = %f.display(), error = %e, "airgap import failed"),
            }
        }
        Ok(out)
    }

    /// Looks an image up by reference (any spelling), by id (`sha256:…`, full hex or a hex
    /// prefix of at least 12 digits), or by manifest digest.
    pub fn get(&self, reference_or_id: &str) -> Result<Option<Image>, ImageError> {
        let records = self.inner.metadata.load()?;
        if let Ok(r) = normalize_reference(reference_or_id) {
            if let Some(rec) = records.get(&r.to_string()) {
                return self.image(&r.to_string(), rec).map(Some);
            }
        }
        let needle = reference_or_id.trim_start_matches("sha256:");
        if needle.len() >= 12 && needle.chars().all(|c| c.is_ascii_hexdigit()) {
            for (name, rec) in &records {
                let id = rec.id.trim_start_matches("sha256:");
                let md = rec.manifest_digest.trim_start_matches("sha256:");
                if id.starts_with(needle) || md == needle {
                    return self.image(name, rec).map(Some);
                }
            }
        }
        Ok(None)
    }

    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let records = self.inner.metadata.load()?;
        records
            .iter()
            .map(|(name, rec)| self.image(name, rec))
            .collect()
    }

    /// Removes a reference (or, given an id, every reference to that image). Blobs and
    /// snapshots stay until [`ImageStore::gc`].
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let image = self
            .get(reference)?
            .ok_or_else(|| ImageError::ImageNotFound(reference.to_string()))?;
        let by_id = !normalize_reference(reference).is_ok_and(|r| r.to_string() == image.reference);
        self.inner.metadata.update(|records| {
            if by_id {
                records.retain(|_, rec| rec.id != image.id);
            } else {
                records.remove(&image.reference);
            }
        })
    }

    /// Removes every image whose id is not in `in_use`, then every blob and snapshot no
    /// remaining image needs (snapshots still mounted as an overlay lower dir are kept).
    pub fn gc(&self, in_use: &[String]) -> Result<GcReport, ImageError> {
        let in_use: Vec<&str> = in_use.iter().map(|s| bare_digest(s)).collect();
        self.collect(|id| !in_use.contains(&id))
    }

    /// Removes the images with these ids (every reference to each), then every blob and
    /// snapshot no remaining image needs. Images stored meanwhile are left alone.
    pub fn remove_ids(&self, ids: &[String]) -> Result<GcReport, ImageError> {
        let ids: Vec<&str> = ids.iter().map(|s| bare_digest(s)).collect();
        self.collect(|id| ids.contains(&id))
    }

    /// Drops the records whose (bare) id `doomed` picks, then the content nothing needs.
    fn collect(&self, doomed: impl Fn(&str) -> bool) -> Result<GcReport, ImageError> {
        let mut report = GcReport::default();
        self.inner.metadata.update(|records| {
            records.retain(|name, rec| {
                let keep = !doomed(bare_digest(&rec.id));
                if !keep {
                    report.removed_images.push(name.clone());
                }
                keep
            });
        })?;
        let (freed, usage) = store::collect_garbage(self)?;
        report.freed_bytes = freed;
        report.disk_usage = usage;
        Ok(report)
    }

    /// Reads a manifest from the content store.
    pub fn manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        let bytes = self.inner.content.read(digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Corrupt(format!("manifest {digest}: {e}")))
    }

    /// Records `name` → manifest and returns the image.
    pub(crate) fn tag(&self, name: &str, manifest_digest: &str) -> Result<Image, ImageError> {
        let manifest = self.manifest(manifest_digest)?;
        let rec = Record {
            manifest_digest: manifest_digest.to_string(),
            id: manifest.config().digest().to_string(),
        };
        let image = self.image(name, &rec)?;
        self.inner.metadata.update(|records| {
            records.insert(name.to_string(), rec);
        })?;
        Ok(image)
    }

    fn image(&self, name: &str, rec: &Record) -> Result<Image, ImageError> {
        let manifest = self.manifest(&rec.manifest_digest)?;
        let config_digest = manifest.config().digest().to_string();
        let config_bytes = self.inner.content.read(&config_digest)?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::Corrupt(format!("config {config_digest}: {e}")))?;
        let chain_ids = chain_ids(config.rootfs().diff_ids());
        if chain_ids.len() != manifest.layers().len() {
            return Err(ImageError::Corrupt(format!(
                "image {name}: {} layers but {} diff ids",
                manifest.layers().len(),
                chain_ids.len()
            )));
        }
        let size =
            manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        Ok(Image {
            reference: name.to_string(),
            manifest_digest: rec.manifest_digest.clone(),
            id: config_digest,
            config,
            chain_ids,
            size,
        })
    }
}

/// A digest without its `sha256:` prefix (ids are stored both ways).
fn bare_digest(d: &str) -> &str {
    d.trim_start_matches("sha256:")
}

/// OCI chain ids: `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {diff}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_formula() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let want = hex::encode(Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(ids[1], format!("sha256:{want}"));
    }

    #[test]
    fn platforms_parse_and_print() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.architecture, "arm64");
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//").is_err());
    }
}
