//! rustls server configuration: the serving certificate, optional client certificates
//! verified against the cluster CA, ALPN h2 and http/1.1.

use crate::pki::{certs_from_pem, key_from_pem, PkiError, ServerPki};
use std::sync::Arc;

pub fn server_tls_config(pki: &ServerPki) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(&pki.ca.cert_pem)? {
        roots.add(c)?;
    }
    // Client certificates are optional: bearer tokens and anonymous health checks are
    // decided later, per request.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?;
    let mut chain = certs_from_pem(&pki.serving.cert_pem)?;
    chain.extend(certs_from_pem(&pki.ca.cert_pem)?);
    let key = key_from_pem(&pki.serving.key_pem)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
