//! Image references normalized the way docker does it.
//!
//! Invariant: a [`Reference`] always has a registry host, a full repository path (with
//! `library/` for official Docker Hub images) and a tag or a digest, so two spellings of the
//! same image (`busybox`, `docker.io/library/busybox:latest`) produce the same string.

use std::fmt;

use super::ImageError;

/// The registry short names without a host resolve to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const DEFAULT_TAG: &str = "latest";

/// A normalized image reference, e.g. `docker.io/library/busybox:1.36`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with an optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference pins a manifest digest.
    pub digest: Option<String>,
}

impl Reference {
    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag or digest a registry is asked for (`/v2/<repo>/manifests/<this>`); the digest
    /// wins when both are present because it is what the user pinned.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        normalize_reference(s)
    }
}

/// Parses and normalizes an image reference: `busybox` → `docker.io/library/busybox:latest`,
/// `quay.io/a/b@sha256:…`, `127.0.0.1:5000/x:tag`.
pub fn normalize_reference(s: &str) -> Result<Reference, ImageError> {
    let invalid = |why: &str| ImageError::InvalidReference {
        reference: s.to_string(),
        reason: why.to_string(),
    };
    let s_trim = s.trim();
    if s_trim.is_empty() {
        return Err(invalid("empty reference"));
    }
    let (name_tag, digest) = match s_trim.split_once('@') {
        Some((n, d)) => {
            validate_digest(d).map_err(|why| invalid(&why))?;
            (n, Some(d.to_string()))
        }
        None => (s_trim, None),
    };
    // A ':' after the last '/' starts the tag; one before it belongs to a host:port.
    let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => {
            let split = last_slash + i;
            (&name_tag[..split], Some(name_tag[split + 1..].to_string()))
        }
        None => (name_tag, None),
    };
    if let Some(tag) = &tag {
        validate_tag(tag).map_err(|why| invalid(&why))?;
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if looks_like_host(first) => (first.to_string(), rest.to_string()),
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == LEGACY_DEFAULT_REGISTRY {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    validate_repository(&repository).map_err(|why| invalid(&why))?;
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (tag, _) => tag,
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// Docker's rule: the first path component is a host when it has a dot or a port, or is
/// `localhost`.
fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("empty repository".into());
    }
    for part in repo.split('/') {
        if part.is_empty() {
            return Err("empty path component".into());
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        {
            return Err(format!(
                "repository component {part:?} must be lowercase letters, digits, '.', '_' or '-'"
            ));
        }
        let first = part.chars().next().unwrap_or('.');
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(format!(
                "repository component {part:?} must start with a letter or digit"
            ));
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag {tag:?}"))
    }
}

/// Accepts `sha256:<64 lowercase hex>`; other algorithms are not stored by the content store.
pub fn validate_digest(d: &str) -> Result<(), String> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "invalid digest {d:?}: expected sha256:<64 hex digits>"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_normalize_like_docker() {
        let table = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            ("rancher/pause:3.6", "docker.io/rancher/pause:3.6"),
            ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
            ("localhost/foo", "localhost/foo:latest"),
            ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
            (
                "127.0.0.1:5000/a/b/c:t-1.2_x",
                "127.0.0.1:5000/a/b/c:t-1.2_x",
            ),
            ("ghcr.io/o/r:tag", "ghcr.io/o/r:tag"),
        ];
        for (input, want) in table {
            let got = normalize_reference(input).expect(input).to_string();
            assert_eq!(got, want, "normalizing {input}");
        }
    }

    #[test]
    fn digest_references_keep_the_digest_and_get_no_default_tag() {
        let r = normalize_reference(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.manifest_ref(), D);
        let r = normalize_reference(&format!("127.0.0.1:5000/x:1@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.manifest_ref(), D);
    }

    #[test]
    fn invalid_references_are_rejected() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox@sha256:xyz",
            "busybox@md5:0123",
            "a//b",
            "busybox:-bad",
            "127.0.0.1:5000/",
        ] {
            assert!(
                normalize_reference(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
