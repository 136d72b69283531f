//! Manifest documents: telling image manifests from indexes (OCI and Docker v2 schema 2)
//! and choosing an index entry for a platform.
//!
//! Invariant: only schema-2 manifests whose config and layers are sha256 descriptors are
//! accepted; anything else is an error before any blob is fetched.

use oci_spec::image::{ImageIndex, ImageManifest};

use super::reference::validate_digest;
use super::{ImageError, Platform};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What the accept header of a manifest request lists.
pub const ACCEPTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A parsed manifest document.
pub enum Document {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Parses manifest bytes, using the `mediaType` field or, when absent (allowed by OCI), the
/// shape of the document.
pub fn parse(bytes: &[u8]) -> Result<Document, ImageError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Corrupt(format!("manifest is not JSON: {e}")))?;
    let schema = value.get("schemaVersion").and_then(|v| v.as_i64());
    if schema != Some(2) {
        return Err(ImageError::UnsupportedMediaType(format!(
            "manifest schemaVersion {schema:?} (only schema 2 is supported)"
        )));
    }
    let media_type = value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let is_index = match media_type {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => value.get("manifests").is_some(),
        other => return Err(ImageError::UnsupportedMediaType(other.to_string())),
    };
    if is_index {
        let index: ImageIndex = serde_json::from_value(value)
            .map_err(|e| ImageError::Corrupt(format!("image index: {e}")))?;
        Ok(Document::Index(Box::new(index)))
    } else {
        let manifest: ImageManifest = serde_json::from_value(value)
            .map_err(|e| ImageError::Corrupt(format!("image manifest: {e}")))?;
        for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
            validate_digest(d.digest().as_ref()).map_err(ImageError::Corrupt)?;
        }
        Ok(Document::Manifest(Box::new(manifest)))
    }
}

/// Picks the index entry for `want`: same os and architecture, and the same variant when
/// both sides name one (an exact variant match wins).
pub fn select(index: &ImageIndex, want: &Platform) -> Option<(String, u64)> {
    let mut fallback = None;
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        if p.os().to_string() != want.os || p.architecture().to_string() != want.architecture {
            continue;
        }
        let entry = (m.digest().to_string(), m.size());
        match (p.variant().as_deref(), want.variant.as_deref()) {
            (Some(a), Some(b)) if a == b => return Some(entry),
            (Some(_), Some(_)) => {}
            _ => {
                fallback.get_or_insert(entry);
            }
        }
    }
    fallback
}

/// `os/arch[/variant]` of every entry, for error messages.
pub fn platforms(index: &ImageIndex) -> String {
    index
        .manifests()
        .iter()
        .filter_map(|m| m.platform().as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_json() -> String {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d('a'), "size": 10,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
                {"mediaType": OCI_MANIFEST, "digest": d('b'), "size": 11,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": OCI_MANIFEST, "digest": d('c'), "size": 12,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": d('d'), "size": 13,
                 "platform": {"os": "linux", "architecture": "arm64"}},
            ]
        })
        .to_string()
    }

    #[test]
    fn index_entries_are_chosen_by_os_arch_and_variant() {
        let Document::Index(index) = parse(index_json().as_bytes()).unwrap() else {
            panic!("expected an index");
        };
        let pick = |s: &str| select(&index, &Platform::parse(s).unwrap()).map(|e| e.0);
        assert_eq!(
            pick("linux/arm/v7").unwrap(),
            format!("sha256:{}", "b".repeat(64))
        );
        assert_eq!(
            pick("linux/amd64").unwrap(),
            format!("sha256:{}", "c".repeat(64))
        );
        assert_eq!(
            pick("linux/arm64/v8").unwrap(),
            format!("sha256:{}", "d".repeat(64)),
            "an entry without variant matches any variant"
        );
        assert!(pick("linux/s390x").is_none());
        assert!(platforms(&index).contains("linux/arm/v7"));
    }

    #[test]
    fn schema1_and_unknown_media_types_are_rejected() {
        assert!(parse(br#"{"schemaVersion":1,"name":"x"}"#).is_err());
        assert!(parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#).is_err());
        assert!(parse(b"not json").is_err());
    }
}
