//! Pulling from registries over the OCI distribution API (via `oci-client`): endpoint
//! fallback (mirrors, then upstream), auth, index → platform resolution, and parallel,
//! resumable, verified layer downloads streamed into the content store.
//!
//! Invariant: bytes from the network reach `blobs/` only through a verified
//! [`Ingest`](super::content::Ingest); the manifest is stored after every blob it names, and
//! the caller records the reference only after this returns Ok.

use std::sync::Arc;

use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use sha2::{Digest as _, Sha256};

use super::manifest::{self, Document};
use super::reference::Reference;
use super::registries::{Credentials, Endpoint};
use super::{ImageError, ImageStore, Platform, PullProgress};

/// Layers downloaded at the same time (containerd's default is 3).
const PARALLEL_LAYERS: usize = 3;
/// Attempts per layer; each retry resumes from the bytes already on disk.
const LAYER_ATTEMPTS: usize = 3;

/// Pulls `reference` and returns the digest of the stored platform manifest.
pub async fn pull(
    store: &ImageStore,
    reference: &Reference,
    platform: &Platform,
    progress: Option<Arc<dyn PullProgress>>,
) -> Result<String, ImageError> {
    install_crypto_provider();
    let endpoints = store.registries().endpoints(reference);
    let mut errors = Vec::new();
    for ep in &endpoints {
        match pull_from(store, ep, reference, platform, progress.clone()).await {
            Ok(digest) => return Ok(digest),
            Err(e) => {
                tracing::warn!(endpoint = %ep.host, image = %reference, error = %e, "pull attempt failed");
                // Verification failures are not the endpoint's fault alone, but another
                // endpoint may well serve good data: keep trying.
                errors.push((ep.host.clone(), e));
            }
        }
    }
    if errors.len() == 1 {
        let (_, e) = errors.remove(0);
        return Err(e);
    }
    Err(ImageError::AllEndpointsFailed {
        reference: reference.to_string(),
        errors: errors
            .iter()
            .map(|(h, e)| format!("{h}: {e}"))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// The process-wide rustls provider (ring). Installing twice is harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client_for(ep: &Endpoint) -> Result<Client, ImageError> {
    let mut extra_root_certificates = Vec::new();
    if let Some(ca) = &ep.config.tls.ca_file {
        let data = std::fs::read(ca).map_err(|e| ImageError::io(ca, e))?;
        extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let config = ClientConfig {
        protocol: if ep.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: ep.config.tls.insecure_skip_verify,
        extra_root_certificates,
        max_concurrent_download: PARALLEL_LAYERS,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        ..Default::default()
    };
    Ok(Client::new(config))
}

fn auth_for(ep: &Endpoint) -> RegistryAuth {
    match &ep.config.auth {
        None => RegistryAuth::Anonymous,
        Some(Credentials::Basic { username, password }) => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        Some(Credentials::IdentityToken(t)) => RegistryAuth::Bearer(t.clone()),
    }
}

fn oci_ref(ep: &Endpoint, manifest_ref: &str) -> oci_client::Reference {
    if manifest_ref.starts_with("sha256:") {
        oci_client::Reference::with_digest(
            ep.host.clone(),
            ep.repository.clone(),
            manifest_ref.to_string(),
        )
    } else {
        oci_client::Reference::with_tag(
            ep.host.clone(),
            ep.repository.clone(),
            manifest_ref.to_string(),
        )
    }
}

/// Turns an oci-client error into ours, naming the registry.
fn registry_error(ep: &Endpoint, reference: &Reference, e: OciDistributionError) -> ImageError {
    let registry = ep.host.clone();
    let text = e.to_string();
    match e {
        OciDistributionError::AuthenticationFailure(reason) => {
            ImageError::Unauthorized { registry, reason }
        }
        OciDistributionError::UnauthorizedError { url } => ImageError::Unauthorized {
            registry,
            reason: format!("401 Unauthorized from {url}"),
        },
        OciDistributionError::ServerError { code: 401, .. } => ImageError::Unauthorized {
            registry,
            reason: text,
        },
        OciDistributionError::ImageManifestNotFoundError(_)
        | OciDistributionError::ServerError { code: 404, .. } => ImageError::NotFound {
            reference: reference.to_string(),
            registry,
        },
        OciDistributionError::RegistryError { ref envelope, .. } => {
            let unauthorized = envelope.errors.iter().any(|er| {
                matches!(
                    er.code,
                    oci_client::errors::OciErrorCode::Unauthorized
                        | oci_client::errors::OciErrorCode::Denied
                )
            });
            let unknown = envelope.errors.iter().any(|er| {
                matches!(
                    er.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                )
            });
            if unauthorized {
                ImageError::Unauthorized {
                    registry,
                    reason: text,
                }
            } else if unknown {
                ImageError::NotFound {
                    reference: reference.to_string(),
                    registry,
                }
            } else {
                ImageError::Registry {
                    registry,
                    reason: text,
                }
            }
        }
        OciDistributionError::RequestError(re) => ImageError::Registry {
            registry,
            reason: request_error_text(&re),
        },
        _ => ImageError::Registry {
            registry,
            reason: text,
        },
    }
}

/// reqwest's top-level message hides the cause ("error sending request"); include it.
fn request_error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn pull_from(
    store: &ImageStore,
    ep: &Endpoint,
    reference: &Reference,
    platform: &Platform,
    progress: Option<Arc<dyn PullProgress>>,
) -> Result<String, ImageError> {
    let client = client_for(ep)?;
    let auth = auth_for(ep);
    let err = |e| registry_error(ep, reference, e);

    let (mut bytes, _) = client
        .pull_manifest_raw(
            &oci_ref(ep, reference.manifest_ref()),
            &auth,
            &manifest::ACCEPTED,
        )
        .await
        .map_err(err)?;
    let mut digest = sha256_of(&bytes);
    if let Some(pinned) = &reference.digest {
        if *pinned != digest {
            return Err(ImageError::DigestMismatch {
                expected: pinned.clone(),
                actual: digest,
            });
        }
    }
    let manifest = match manifest::parse(&bytes)? {
        Document::Manifest(m) => m,
        Document::Index(index) => {
            let (entry, size) = manifest::select(&index, platform).ok_or_else(|| {
                ImageError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: manifest::platforms(&index),
                }
            })?;
            let (b, _) = client
                .pull_manifest_raw(&oci_ref(ep, &entry), &auth, &manifest::ACCEPTED)
                .await
                .map_err(err)?;
            digest = sha256_of(&b);
            if digest != entry || b.len() as u64 != size {
                return Err(ImageError::DigestMismatch {
                    expected: entry,
                    actual: digest,
                });
            }
            bytes = b;
            match manifest::parse(&bytes)? {
                Document::Manifest(m) => m,
                Document::Index(_) => {
                    return Err(ImageError::Corrupt(format!(
                        "{reference}: index entry {digest} is another index"
                    )))
                }
            }
        }
    };

    let image_ref = oci_ref(ep, &digest);
    let config = manifest.config();
    if !store.content().contains(config.digest().as_ref()) {
        fetch_blob(
            store,
            &client,
            ep,
            reference,
            &image_ref,
            config.digest().as_ref(),
            config.size(),
            None,
        )
        .await?;
    }

    let layers: Vec<(String, u64)> = manifest
        .layers()
        .iter()
        .map(|l| (l.digest().to_string(), l.size()))
        .collect();
    let total: u64 = layers.iter().map(|l| l.1).sum();
    let present: u64 = layers
        .iter()
        .filter(|l| store.content().contains(&l.0))
        .map(|l| l.1)
        .sum();
    if let Some(p) = &progress {
        p.start(total, layers.len(), present);
    }
    let missing: Vec<(String, u64)> = layers
        .into_iter()
        .filter(|l| !store.content().contains(&l.0))
        .collect();
    futures::stream::iter(missing)
        .map(|(d, size)| {
            let client = &client;
            let image_ref = &image_ref;
            let progress = progress.clone();
            async move {
                fetch_blob(
                    store,
                    client,
                    ep,
                    reference,
                    image_ref,
                    &d,
                    size,
                    progress.clone(),
                )
                .await?;
                if let Some(p) = &progress {
                    p.layer_done(&d);
                }
                Ok::<(), ImageError>(())
            }
        })
        .buffer_unordered(PARALLEL_LAYERS)
        .try_collect::<Vec<()>>()
        .await?;

    // Last: the manifest, now that everything it names is present.
    let stored = store.content().write_bytes(&bytes)?;
    debug_assert_eq!(stored, digest);
    Ok(digest)
}

fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Downloads one blob into the content store, resuming a partial ingest and retrying
/// transport failures; verification failures are final (the partial data is deleted).
#[allow(clippy::too_many_arguments)]
async fn fetch_blob(
    store: &ImageStore,
    client: &Client,
    ep: &Endpoint,
    reference: &Reference,
    image_ref: &oci_client::Reference,
    digest: &str,
    size: u64,
    progress: Option<Arc<dyn PullProgress>>,
) -> Result<(), ImageError> {
    let mut last_error = None;
    for attempt in 0..LAYER_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64)).await;
        }
        let content = store.content().clone();
        let d = digest.to_string();
        // Taking the ingest lock can block on another process: not on a runtime thread.
        let mut ingest = tokio::task::spawn_blocking(move || content.ingest(&d, Some(size)))
            .await
            .map_err(|e| ImageError::Corrupt(format!("ingest task: {e}")))??;
        if ingest.already_stored() {
            return Ok(());
        }
        let offset = ingest.offset();
        if let Some(p) = &progress {
            p.advance(offset);
        }
        let desc = OciDescriptor {
            digest: digest.to_string(),
            size: size as i64,
            ..Default::default()
        };
        let stream = if offset > 0 && offset < size {
            match client
                .pull_blob_stream_partial(image_ref, &desc, offset, None)
                .await
            {
                Ok(BlobResponse::Partial(s)) => Ok(s),
                Ok(BlobResponse::Full(s)) => {
                    // The server ignored the range: start over.
                    ingest.restart()?;
                    Ok(s)
                }
                Err(e) => Err(e),
            }
        } else {
            if offset >= size {
                ingest.restart()?;
            }
            client.pull_blob_stream(image_ref, &desc).await
        };
        let mut stream = match stream {
            Ok(s) => s.stream,
            Err(e) => {
                let e = registry_error(ep, reference, e);
                if matches!(
                    e,
                    ImageError::Unauthorized { .. } | ImageError::NotFound { .. }
                ) {
                    return Err(e);
                }
                last_error = Some(e);
                continue;
            }
        };
        let mut broken = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    ingest.write(&bytes)?;
                    if let Some(p) = &progress {
                        p.advance(bytes.len() as u64);
                    }
                }
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = broken {
            // oci-client's verifying stream reports a digest mismatch as an I/O error at
            // the end; such data must not be resumed.
            let text = request_error_text(&e);
            if ingest.offset() >= size {
                ingest.discard();
                return Err(ImageError::Registry {
                    registry: ep.host.clone(),
                    reason: format!("blob {digest}: {text}"),
                });
            }
            last_error = Some(ImageError::Registry {
                registry: ep.host.clone(),
                reason: format!(
                    "blob {digest} interrupted after {} bytes: {text}",
                    ingest.offset()
                ),
            });
            continue;
        }
        return tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(|e| ImageError::Corrupt(format!("commit task: {e}")))?
            .map(|_| ());
    }
    Err(last_error.unwrap_or_else(|| ImageError::Registry {
        registry: ep.host.clone(),
        reason: format!("blob {digest}: download failed"),
    }))
}
