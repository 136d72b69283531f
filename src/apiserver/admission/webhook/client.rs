//! Calling a webhook: where it is (`clientConfig`), the pooled HTTPS client trusting its
//! `caBundle`, and one POST with the webhook's timeout, failing with the texts client-go's
//! REST client gives (`Post "https://...?timeout=10s": context deadline exceeded`), since
//! they end up in the messages users and tests read.
//!
//! Invariant: every failure to get a well-formed HTTP 2xx answer is a [`CallError`] (the
//! caller applies the webhook's failurePolicy to it); nothing here decides admission.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A pooled HTTPS (http/1.1) client trusting one set of CAs.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Largest webhook answer read (upstream's REST client has no limit; an AdmissionReview
/// carrying a patch of a large object stays far below this).
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Where a webhook is reached.
pub enum Target {
    /// `clientConfig.url`, with the client trusting its `caBundle` (or why there is none).
    Url {
        url: String,
        client: Result<Arc<HttpsClient>, String>,
    },
    /// `clientConfig.service`: one of the Service's endpoints (see [`super::service`]),
    /// with the client trusting the `caBundle` for the name `<name>.<namespace>.svc`.
    Service {
        namespace: String,
        name: String,
        path: String,
        port: u16,
        client: Result<Arc<HttpsClient>, String>,
    },
    /// Neither (the configuration's validation should have refused it).
    Missing,
}

impl Target {
    /// `client_for(caBundle, server name)` gives the client; the server name is `None` for
    /// a URL (its host is verified).
    pub fn from_client_config(cc: &Value, client_for: &mut ClientFor<'_>) -> Target {
        let ca = cc["caBundle"].as_str().unwrap_or_default();
        if let Some(url) = cc["url"].as_str() {
            return Target::Url {
                url: url.to_owned(),
                client: client_for(ca, None),
            };
        }
        let svc = &cc["service"];
        if svc.is_object() {
            let namespace = svc["namespace"].as_str().unwrap_or_default().to_owned();
            let name = svc["name"].as_str().unwrap_or_default().to_owned();
            let client = client_for(ca, Some(&service_host(&namespace, &name)));
            return Target::Service {
                namespace,
                name,
                path: svc["path"].as_str().unwrap_or("/").to_owned(),
                port: svc["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(443),
                client,
            };
        }
        Target::Missing
    }
}

/// Gives the client for a `caBundle` and a TLS server name to verify instead of the URL's
/// host (see [`new_client`]).
pub type ClientFor<'a> = dyn FnMut(&str, Option<&str>) -> Result<Arc<HttpsClient>, String> + 'a;

/// The name a Service-referenced webhook's certificate is verified against, and its URL's
/// host in messages, as upstream's: `<name>.<namespace>.svc`.
pub fn service_host(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}.svc")
}

/// A call that produced no usable answer: `reason` is upstream's `ErrCallingWebhook.Reason`
/// text (`failed to call webhook: ...`, `received invalid webhook response: ...`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct CallError {
    pub reason: String,
}

impl CallError {
    pub fn new(reason: impl Into<String>) -> CallError {
        CallError {
            reason: reason.into(),
        }
    }
}

/// Builds the client for a `caBundle` (base64 of PEM certificates, as stored). An empty
/// bundle trusts the system roots, as upstream does. With `server_name`, the server's
/// certificate is verified against that name, whatever address the URL names (a Service's
/// endpoint).
pub fn new_client(
    ca_bundle_b64: &str,
    server_name: Option<&str>,
) -> Result<Arc<HttpsClient>, String> {
    use base64::Engine as _;
    use rustls_pki_types::pem::PemObject as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = if ca_bundle_b64.is_empty() {
        builder
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("no system trust roots: {e}"))?
    } else {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca_bundle_b64)
            .map_err(|e| format!("caBundle is not base64: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("unable to load root certificates: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("unable to load root certificates: {e}"))?;
        }
        if roots.is_empty() {
            return Err("unable to load root certificates: no certificates found".into());
        }
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        builder.with_tls_config(cfg)
    };
    let builder = builder.https_only();
    let builder = match server_name {
        Some(name) => {
            let name = rustls_pki_types::ServerName::try_from(name.to_owned())
                .map_err(|e| format!("invalid server name {name:?}: {e}"))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let connector = builder.enable_http1().build();
    Ok(Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector),
    ))
}

/// The URL upstream posts to: the webhook's URL with the `timeout` parameter client-go adds
/// (whole seconds, rounded up).
pub fn post_url(base: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}timeout={secs}s")
}

/// POSTs `body` to `address` and returns the decoded JSON answer of a 2xx response.
/// Messages name `url`, the webhook's URL as configured (for a Service, its
/// `https://<name>.<namespace>.svc:<port>` URL; `address` is then an endpoint's).
pub async fn post(
    client: &HttpsClient,
    address: &str,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Value, CallError> {
    let failed = |what: String| CallError::new(format!("failed to call webhook: {what}"));
    let request = http::Request::post(address)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| failed(format!("Post {url:?}: {e}")))?;
    let exchange = async {
        let resp = client
            .request(request)
            .await
            .map_err(|e| format!("Post {url:?}: {}", transport_error_text(&e, address)))?;
        let status = resp.status();
        let text_like = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.starts_with("text/"));
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("Post {url:?}: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, text_like, bytes))
    };
    let (status, text_like, bytes) = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => return Err(failed(format!("Post {url:?}: context deadline exceeded"))),
        Ok(r) => r.map_err(failed)?,
    };
    if !status.is_success() {
        return Err(failed(unsuccessful_text(
            status.as_u16(),
            text_like,
            &bytes,
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| failed(format!("couldn't get version/kind; json parse error: {e}")))
}

/// Go's wording for the transport failures users meet (refused connection, untrusted
/// certificate); anything else as hyper reports it.
fn transport_error_text(e: &hyper_util::client::legacy::Error, url: &str) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(text) = known_cause(s, url) {
            return text;
        }
        source = s.source();
    }
    let mut text = e.to_string();
    if let Some(s) = std::error::Error::source(e) {
        text = format!("{text}: {s}");
    }
    text
}

/// Looks through `e` and the errors io::Errors wrap (their `source()` skips the wrapped
/// error itself) for a refused connection or a TLS failure.
fn known_cause(e: &(dyn std::error::Error + 'static), url: &str) -> Option<String> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls_error_text(tls));
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    if io.kind() == std::io::ErrorKind::ConnectionRefused {
        let addr = url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| {
                let host = u.host()?.to_owned();
                Some(format!("{host}:{}", u.port_u16().unwrap_or(443)))
            })
            .unwrap_or_default();
        return Some(format!("dial tcp {addr}: connect: connection refused"));
    }
    let inner: &(dyn std::error::Error + 'static) = io.get_ref()?;
    known_cause(inner, url)
}

fn tls_error_text(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .into()
        }
        rustls::Error::InvalidCertificate(c) => {
            format!("tls: failed to verify certificate: x509: {c:?}")
        }
        other => format!("tls: {other}"),
    }
}

/// client-go's error for a non-2xx answer: the Status it carries, else the generic text
/// for the code (`NewGenericServerResponse`).
fn unsuccessful_text(code: u16, text_like: bool, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if v["kind"] == "Status" {
            if let Some(m) = v["message"].as_str().filter(|m| !m.is_empty()) {
                return m.to_owned();
            }
        }
    }
    let server_message = if text_like {
        String::from_utf8_lossy(body).trim().to_owned()
    } else {
        "unknown".to_owned()
    };
    match code {
        409 => "the server reported a conflict".into(),
        404 => "the server could not find the requested resource".into(),
        400 => "the server rejected our request for an unknown reason".into(),
        401 => "the server has asked for the client to provide credentials".into(),
        403 | 415 => server_message,
        405 => "the server does not allow this method on the requested resource".into(),
        422 => "the server rejected our request due to an error in our request".into(),
        503 => "the server is currently unable to handle the request".into(),
        504 => "the server was unable to return a response in the time allotted, but may still be processing the request".into(),
        429 => "the server has received too many requests and has asked us to try again later".into(),
        c if c >= 500 => format!(
            "an error on the server ({server_message:?}) has prevented the request from succeeding"
        ),
        c => format!("the server responded with the status code {c} but did not return more information"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_parameter_is_added_in_whole_seconds() {
        assert_eq!(
            post_url("https://h/x", Duration::from_secs(10)),
            "https://h/x?timeout=10s"
        );
        assert_eq!(
            post_url("https://h/x?a=b", Duration::from_millis(1500)),
            "https://h/x?a=b&timeout=2s"
        );
    }

    #[test]
    fn unsuccessful_answers_read_as_client_go_reports_them() {
        assert_eq!(
            unsuccessful_text(500, true, b"boom\n"),
            "an error on the server (\"boom\") has prevented the request from succeeding"
        );
        assert_eq!(
            unsuccessful_text(
                403,
                false,
                br#"{"kind":"Status","message":"go away","code":403}"#
            ),
            "go away"
        );
        assert_eq!(
            unsuccessful_text(404, true, b""),
            "the server could not find the requested resource"
        );
    }

    #[test]
    fn a_ca_bundle_that_is_not_pem_certificates_gives_no_client() {
        use base64::Engine as _;
        let bad = base64::engine::general_purpose::STANDARD.encode("not a certificate");
        assert!(new_client(&bad, None)
            .unwrap_err()
            .contains("root certificates"));
        assert!(new_client("%%%", None).unwrap_err().contains("base64"));
    }
}
