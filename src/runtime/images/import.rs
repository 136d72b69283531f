//! Import of airgap tarballs: `docker save` archives and OCI image layouts, plain or
//! gzip/zstd compressed, read in one streaming pass.
//!
//! Invariant: every blob taken from an archive is hashed on its way into the content store
//! (OCI blobs must match their file name, docker-save layers must match the config's
//! diff ids), and names are returned only for images whose blobs are all stored.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path};

use oci_spec::image::{ImageConfiguration, ImageIndex};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::manifest::{self, Document};
use super::reference::normalize_reference;
use super::{ImageError, ImageStore, Platform};

/// JSON documents larger than this are not kept in memory (and are not metadata).
const MAX_DOCUMENT: u64 = 16 << 20;
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What one pass over the archive collected.
#[derive(Default)]
struct Archive {
    /// Small files (JSON documents) by archive path.
    documents: HashMap<String, Vec<u8>>,
    /// Other regular files, now in the content store: archive path → (digest, size).
    stored: HashMap<String, (String, u64)>,
    /// Symlinks: archive path → archive path of the target.
    links: HashMap<String, String>,
}

impl Archive {
    fn resolve<'a>(&'a self, mut path: &'a str) -> &'a str {
        for _ in 0..16 {
            match self.links.get(path) {
                Some(t) => path = t,
                None => break,
            }
        }
        path
    }
}

/// Imports `path` and returns (name, manifest digest) for each image found.
pub fn import(store: &ImageStore, path: &Path) -> Result<Vec<(String, String)>, ImageError> {
    let fail = |reason: String| ImageError::Import {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let reader =
        decompress(BufReader::with_capacity(1 << 20, file)).map_err(|e| fail(e.to_string()))?;
    let archive = read_archive(store, reader).map_err(|e| match e {
        ImageError::Io { .. } | ImageError::DigestMismatch { .. } => fail(e.to_string()),
        other => other,
    })?;
    let images = if archive.documents.contains_key("index.json")
        && archive.documents.contains_key("oci-layout")
    {
        import_oci_layout(store, &archive)
    } else if archive.documents.contains_key("manifest.json") {
        import_docker_save(store, &archive)
    } else {
        Err(ImageError::Corrupt(
            "neither an OCI layout (index.json) nor a docker save archive (manifest.json)".into(),
        ))
    };
    let images = images.map_err(|e| fail(e.to_string()))?;
    if images.is_empty() {
        return Err(fail("the archive names no image".into()));
    }
    Ok(images)
}

/// Wraps the reader in a gzip or zstd decoder when the magic bytes say so.
fn decompress<R: BufRead + Send + 'static>(mut r: R) -> std::io::Result<Box<dyn Read + Send>> {
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(r)?))
    } else {
        Ok(Box::new(r))
    }
}

/// `./a/../b` style names are refused: archive paths are keys, never filesystem paths.
fn clean_path(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

fn read_archive(store: &ImageStore, reader: Box<dyn Read + Send>) -> Result<Archive, ImageError> {
    let mut tar = tar::Archive::new(reader);
    let mut out = Archive::default();
    let here = Path::new("archive");
    let entries = tar.entries().map_err(|e| ImageError::io(here, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::io(here, e))?;
        let raw = entry
            .path()
            .map_err(|e| ImageError::io(here, e))?
            .into_owned();
        let name = clean_path(&raw)
            .ok_or_else(|| ImageError::Corrupt(format!("unsafe path {:?} in archive", raw)))?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| ImageError::io(here, e))?
                .unwrap_or_default()
                .into_owned();
            let base = if kind.is_symlink() {
                Path::new(&name)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(&target)
            } else {
                target
            };
            let resolved = lexical(&base).ok_or_else(|| {
                ImageError::Corrupt(format!("link {name} points outside the archive"))
            })?;
            out.links.insert(name, resolved);
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        let blob_digest = name
            .strip_prefix("blobs/sha256/")
            .filter(|h| h.len() == 64 && h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
            .map(|h| format!("sha256:{h}"));
        let is_document = size <= MAX_DOCUMENT
            && (name.ends_with(".json") || name == "oci-layout" || name == "repositories");
        if is_document || (blob_digest.is_some() && size <= 64 * 1024) {
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| ImageError::io(here, e))?;
            if let Some(d) = &blob_digest {
                store
                    .content()
                    .write_reader(Some(d), Some(size), &mut &buf[..])?;
                out.stored.insert(name.clone(), (d.clone(), size));
            }
            out.documents.insert(name, buf);
        } else {
            let digest =
                store
                    .content()
                    .write_reader(blob_digest.as_deref(), Some(size), &mut entry)?;
            out.stored.insert(name, (digest, size));
        }
    }
    Ok(out)
}

/// Resolves `.`/`..` without touching the filesystem; None if it climbs above the root.
fn lexical(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

fn import_oci_layout(
    store: &ImageStore,
    archive: &Archive,
) -> Result<Vec<(String, String)>, ImageError> {
    let index: ImageIndex = serde_json::from_slice(&archive.documents["index.json"])
        .map_err(|e| ImageError::Corrupt(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        let annotations = desc.annotations().clone().unwrap_or_default();
        let name = annotations
            .get(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| annotations.get(ANNOTATION_REF_NAME))
            .filter(|n| n.contains(':') || n.contains('/') || n.contains('@'))
            .and_then(|n| normalize_reference(n).ok())
            .map(|r| r.to_string());
        let digest = resolve_platform(store, desc.digest().as_ref())?;
        let image_name = match name {
            Some(n) => n,
            None => store.manifest(&digest)?.config().digest().to_string(),
        };
        check_complete(store, &digest)?;
        out.push((image_name, digest));
    }
    Ok(out)
}

/// For an index digest, the host platform's manifest digest; for a manifest, itself.
fn resolve_platform(store: &ImageStore, digest: &str) -> Result<String, ImageError> {
    let mut digest = digest.to_string();
    for _ in 0..4 {
        match manifest::parse(&store.content().read(&digest)?)? {
            Document::Manifest(_) => return Ok(digest),
            Document::Index(index) => {
                let host = Platform::host();
                digest = manifest::select(&index, &host)
                    .ok_or_else(|| ImageError::NoMatchingPlatform {
                        reference: digest.clone(),
                        platform: host.to_string(),
                        available: manifest::platforms(&index),
                    })?
                    .0;
            }
        }
    }
    Err(ImageError::Corrupt("image indexes nested too deep".into()))
}

fn check_complete(store: &ImageStore, manifest_digest: &str) -> Result<(), ImageError> {
    let m = store.manifest(manifest_digest)?;
    for d in std::iter::once(m.config()).chain(m.layers()) {
        if !store.content().contains(d.digest().as_ref()) {
            return Err(ImageError::MissingBlob(d.digest().to_string()));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker_save(
    store: &ImageStore,
    archive: &Archive,
) -> Result<Vec<(String, String)>, ImageError> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&archive.documents["manifest.json"])
            .map_err(|e| ImageError::Corrupt(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let config_path = archive.resolve(&entry.config);
        let config_bytes = match archive.documents.get(config_path) {
            Some(b) => b.clone(),
            None => match archive.stored.get(config_path) {
                Some((d, _)) => store.content().read(d)?,
                None => {
                    return Err(ImageError::Corrupt(format!(
                        "missing config {}",
                        entry.config
                    )))
                }
            },
        };
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::Corrupt(format!("config {}: {e}", entry.config)))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(ImageError::Corrupt(format!(
                "{} layers but {} diff ids in the config",
                entry.layers.len(),
                diff_ids.len()
            )));
        }
        let config_digest = store.content().write_bytes(&config_bytes)?;
        let mut layers = Vec::new();
        for (layer, diff_id) in entry.layers.iter().zip(diff_ids) {
            let (digest, size) = archive
                .stored
                .get(archive.resolve(layer))
                .cloned()
                .ok_or_else(|| ImageError::Corrupt(format!("missing layer {layer}")))?;
            let media_type = layer_media_type(store, &digest)?;
            if media_type == manifest::OCI_LAYER_TAR && digest != *diff_id {
                return Err(ImageError::DigestMismatch {
                    expected: diff_id.clone(),
                    actual: digest,
                });
            }
            layers.push(serde_json::json!({
                "mediaType": media_type, "digest": digest, "size": size,
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {
                "mediaType": manifest::OCI_CONFIG,
                "digest": config_digest,
                "size": config_bytes.len(),
            },
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::Corrupt(format!("building a manifest: {e}")))?;
        let manifest_digest = store.content().write_bytes(&bytes)?;
        let tags: Vec<String> = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .filter_map(|t| normalize_reference(t).ok())
            .map(|r| r.to_string())
            .collect();
        if tags.is_empty() {
            out.push((config_digest.clone(), manifest_digest.clone()));
        }
        for t in tags {
            out.push((t, manifest_digest.clone()));
        }
    }
    Ok(out)
}

/// docker-save layers are usually plain tars, but newer docker versions may compress them.
fn layer_media_type(store: &ImageStore, digest: &str) -> Result<&'static str, ImageError> {
    let mut head = [0u8; 4];
    let mut f = store.content().open_blob(digest)?;
    let n = f
        .read(&mut head)
        .map_err(|e| ImageError::io(&store.content().blob_path(digest), e))?;
    Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        manifest::OCI_LAYER_TAR
    })
}

/// sha256 of bytes in the `sha256:<hex>` form (used by tests building archives).
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[cfg(test)]
mod tests {
    use super::super::RegistriesConfig;
    use super::*;

    fn tar_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn layer_and_config() -> (Vec<u8>, Vec<u8>) {
        let layer = tar_bytes(&[("hello.txt", b"hi")]);
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(&layer)]},
            "config": {"Cmd": ["/hello"]}
        })
        .to_string()
        .into_bytes();
        (layer, config)
    }

    #[test]
    fn docker_save_archive_is_imported_with_its_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path(), RegistriesConfig::default()).unwrap();
        let (layer, config) = layer_and_config();
        let manifest =
            br#"[{"Config":"cfg.json","RepoTags":["example/app:v1"],"Layers":["l1/layer.tar"]}]"#;
        let tarball = tar_bytes(&[
            ("manifest.json", manifest),
            ("cfg.json", &config),
            ("l1/layer.tar", &layer),
        ]);
        let path = dir.path().join("save.tar");
        std::fs::write(&path, tarball).unwrap();
        let got = import(&store, &path).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "docker.io/example/app:v1");
        let image = store.tag(&got[0].0, &got[0].1).unwrap();
        assert_eq!(image.id, digest_of(&config));
        assert_eq!(image.chain_ids, vec![digest_of(&layer)]);
    }

    #[test]
    fn gzipped_oci_layout_is_imported_and_named_from_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path(), RegistriesConfig::default()).unwrap();
        let (layer, config) = layer_and_config();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &layer).unwrap();
        let layer_gz = gz.finish().unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": manifest::OCI_CONFIG, "digest": digest_of(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": digest_of(&layer_gz), "size": layer_gz.len()}]
        })
        .to_string()
        .into_bytes();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": manifest::OCI_MANIFEST, "digest": digest_of(&manifest),
                "size": manifest.len(),
                "annotations": {ANNOTATION_REF_NAME: "example.com/app:2"}}]
        })
        .to_string()
        .into_bytes();
        let blob = |d: &[u8]| format!("blobs/sha256/{}", &digest_of(d)[7..]);
        let (b1, b2, b3) = (blob(&config), blob(&layer_gz), blob(&manifest));
        let tarball = tar_bytes(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", &index),
            (&b1, &config),
            (&b2, &layer_gz),
            (&b3, &manifest),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tarball).unwrap();
        let path = dir.path().join("oci.tar.gz");
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let got = import(&store, &path).unwrap();
        assert_eq!(
            got,
            vec![("example.com/app:2".to_string(), digest_of(&manifest))]
        );
    }

    #[test]
    fn oci_blob_not_matching_its_name_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path(), RegistriesConfig::default()).unwrap();
        let name = format!("blobs/sha256/{}", &digest_of(b"real")[7..]);
        let tarball = tar_bytes(&[
            ("oci-layout", b"{}"),
            ("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
            (&name, b"fake"),
        ]);
        let path = dir.path().join("bad.tar");
        std::fs::write(&path, tarball).unwrap();
        let err = import(&store, &path).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(!store.content().contains(&digest_of(b"real")));
    }
}
