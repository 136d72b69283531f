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
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_client::RegistryOperation;
use rustls_pki_types::pem::PemObject as _;
use sha2::{Digest as _, Sha256};

mod errors;

#[cfg(test)]
use errors::{auth_failure_text, tls_problem};
use errors::{is_final, registry_error, request_error_text};

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
    pull_with_credentials(store, reference, platform, progress, None).await
}

/// [`pull`] with credentials from the caller (the kubelet's imagePullSecrets): they are
/// used for every endpoint that `registries.yaml` gives no credentials of its own.
pub async fn pull_with_credentials(
    store: &ImageStore,
    reference: &Reference,
    platform: &Platform,
    progress: Option<Arc<dyn PullProgress>>,
    credentials: Option<Credentials>,
) -> Result<String, ImageError> {
    install_crypto_provider();
    let mut endpoints = store.registries().endpoints(reference);
    if let Some(c) = credentials {
        for ep in endpoints.iter_mut().filter(|e| e.config.auth.is_none()) {
            ep.config.auth = Some(c.clone());
        }
    }
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

/// The HTTP client for one endpoint, with its TLS settings. Settings it cannot honour are
/// an error here, before any request: a registry that wants a client certificate would
/// otherwise fail later with an obscure handshake error, or a mirror be skipped silently.
fn client_for(ep: &Endpoint) -> Result<Client, ImageError> {
    let tls = &ep.config.tls;
    let fail = |reason: String| ImageError::Registry {
        registry: ep.host.clone(),
        reason,
    };
    if tls.cert_file.is_some() || tls.key_file.is_some() {
        // oci-client builds its own reqwest client and has no way to give it an identity.
        return Err(fail(format!(
            "client certificates for registries are not supported: remove \
             tls.cert_file/tls.key_file from configs.\"{}\" in registries.yaml",
            ep.host
        )));
    }
    let mut extra_root_certificates = Vec::new();
    if let Some(ca) = &tls.ca_file {
        let data = std::fs::read(ca)
            .map_err(|e| fail(format!("reading tls.ca_file {}: {e}", ca.display())))?;
        // Checked here: a CA file reqwest cannot use would only show up as "unknown issuer".
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&data)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("tls.ca_file {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(fail(format!(
                "tls.ca_file {} holds no PEM certificate",
                ca.display()
            )));
        }
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
    // Not `Client::new`: it falls back to a default client (no CA, verification on) when
    // the configuration is unusable, which would hide the real problem.
    Client::try_from(config).map_err(|e| fail(format!("TLS client setup: {e}")))
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
    if matches!(auth, RegistryAuth::Basic(..)) {
        // With a token-auth registry, oci-client swallows a refused token request and goes
        // on anonymously, ending in a bare 401. Asking for the token first reports the
        // refusal itself; the token is cached for the requests below.
        client
            .auth(
                &oci_ref(ep, reference.manifest_ref()),
                &auth,
                RegistryOperation::Pull,
            )
            .await
            .map_err(err)?;
    }

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
                let retry = !is_final(&e);
                let e = registry_error(ep, reference, e);
                if !retry {
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

#[cfg(test)]
mod tests {
    use super::super::registries::{HostConfig, TlsConfig};
    use super::*;

    fn endpoint(tls: TlsConfig) -> Endpoint {
        Endpoint {
            host: "registry.example.com:5000".into(),
            plain_http: false,
            repository: "app".into(),
            config: HostConfig { auth: None, tls },
            upstream: true,
        }
    }

    #[test]
    fn client_certificates_are_refused_up_front_naming_the_registry() {
        for tls in [
            TlsConfig {
                cert_file: Some("/etc/skiff/client.crt".into()),
                key_file: Some("/etc/skiff/client.key".into()),
                ..Default::default()
            },
            TlsConfig {
                key_file: Some("/etc/skiff/client.key".into()),
                ..Default::default()
            },
        ] {
            match client_for(&endpoint(tls)) {
                Err(ImageError::Registry { registry, reason }) => {
                    assert_eq!(registry, "registry.example.com:5000");
                    assert!(
                        reason.contains("client certificates for registries are not supported"),
                        "{reason}"
                    );
                    assert!(reason.contains("registry.example.com:5000"), "{reason}");
                }
                Err(other) => panic!("wrong error: {other}"),
                Ok(_) => panic!("a client certificate must not be ignored"),
            }
        }
    }

    #[test]
    fn ca_file_without_a_pem_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let ep = endpoint(TlsConfig {
            ca_file: Some(ca.clone()),
            ..Default::default()
        });
        let err = client_for(&ep).err().expect("an unusable CA is an error");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");

        let missing = endpoint(TlsConfig {
            ca_file: Some(dir.path().join("absent.pem")),
            ..Default::default()
        });
        let err = client_for(&missing)
            .err()
            .expect("a missing CA is an error");
        assert!(err.to_string().contains("tls.ca_file"), "{err}");
    }

    #[test]
    fn insecure_skip_verify_alone_builds_a_client() {
        let ep = endpoint(TlsConfig {
            insecure_skip_verify: true,
            ..Default::default()
        });
        install_crypto_provider();
        assert!(client_for(&ep).is_ok());
    }

    /// A wrapper like reqwest's and hyper's, to check the chain is walked.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error sending request")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn untrusted_certificate_gets_a_message_that_says_what_to_configure() {
        let ep = endpoint(TlsConfig::default());
        // As hyper-rustls reports it: tokio-rustls' io::Error inside another one.
        let e = Wrapped(std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        )));
        let text = tls_problem(&ep, &e).expect("a TLS problem is recognized");
        assert!(text.contains("not trusted"), "{text}");
        assert!(text.contains("unknown certificate authority"), "{text}");
        assert!(
            text.contains("configs.\"registry.example.com:5000\".tls.ca_file"),
            "{text}"
        );

        let plain = Wrapped(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ));
        let text = tls_problem(&ep, &plain).expect("a non-TLS server is recognized");
        assert!(text.contains("http://registry.example.com:5000"), "{text}");

        let refused = Wrapped(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(tls_problem(&ep, &refused), None);
    }

    #[test]
    fn token_server_refusals_are_reduced_to_their_message() {
        assert_eq!(
            auth_failure_text(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad password"}]}"#),
            "bad password"
        );
        assert_eq!(
            auth_failure_text(r#"{"details":"incorrect username or password"}"#),
            "incorrect username or password"
        );
        assert_eq!(auth_failure_text("  nope \n"), "nope");
        assert_eq!(auth_failure_text(""), "no reason given");
    }
}
