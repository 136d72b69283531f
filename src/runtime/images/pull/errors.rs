//! What a failed pull tells the user: oci-client and reqwest errors turned into messages
//! that name the registry and say what to change in registries.yaml (an untrusted
//! certificate, refused credentials, a server that does not speak TLS).

use oci_client::errors::OciDistributionError;

use super::super::reference::Reference;
use super::super::registries::Endpoint;
use super::super::ImageError;

/// Turns an oci-client error into ours, naming the registry.
pub(super) fn registry_error(
    ep: &Endpoint,
    reference: &Reference,
    e: OciDistributionError,
) -> ImageError {
    let registry = ep.host.clone();
    let text = e.to_string();
    match e {
        OciDistributionError::AuthenticationFailure(body) => unauthorized(
            ep,
            format!(
                "the token server refused them: {}",
                auth_failure_text(&body)
            ),
        ),
        OciDistributionError::UnauthorizedError { url } => {
            unauthorized(ep, format!("401 Unauthorized from {url}"))
        }
        OciDistributionError::ServerError { code: 401, .. } => unauthorized(ep, text),
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
                self::unauthorized(ep, text)
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
            reason: tls_problem(ep, &re).unwrap_or_else(|| request_error_text(&re)),
        },
        _ => ImageError::Registry {
            registry,
            reason: text,
        },
    }
}

/// Whether the registry's answer is about access or existence, which a retry will not
/// change (the same answers [`registry_error`] reports as auth or not-found problems).
pub(super) fn is_final(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode as C;
    match e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::ImageManifestNotFoundError(_)
        | OciDistributionError::ServerError {
            code: 401 | 404, ..
        } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|er| {
            matches!(
                er.code,
                C::Unauthorized | C::Denied | C::ManifestUnknown | C::NameUnknown
            )
        }),
        _ => false,
    }
}

/// A 401: rejected credentials when some were configured, otherwise a hint to add them.
pub(super) fn unauthorized(ep: &Endpoint, reason: String) -> ImageError {
    if ep.config.auth.is_some() {
        ImageError::Unauthorized {
            registry: ep.host.clone(),
            reason,
        }
    } else {
        ImageError::Registry {
            registry: ep.host.clone(),
            reason: format!(
                "authentication required ({reason}); give credentials as \
                 configs.\"{}\".auth in registries.yaml",
                ep.host
            ),
        }
    }
}

/// The gist of a token server's refusal: JSON error bodies (distribution's `errors`,
/// Docker Hub's `details`, OAuth's `error_description`) are reduced to their message.
pub(super) fn auth_failure_text(body: &str) -> String {
    let body = body.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let messages: Vec<&str> = v["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str())
            .chain(
                ["details", "error_description", "error", "message"]
                    .iter()
                    .filter_map(|k| v[*k].as_str()),
            )
            .collect();
        if let Some(first) = messages.first() {
            return (*first).to_string();
        }
    }
    if body.is_empty() {
        return "no reason given".to_string();
    }
    body.chars().take(200).collect()
}

/// A readable message for a failed TLS handshake (reqwest buries rustls' reason deep in a
/// chain of "error sending request" wrappers), with what to change in registries.yaml.
pub(super) fn tls_problem(ep: &Endpoint, e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(e);
    let mut found = None;
    'chain: while let Some(err) = current {
        // rustls errors travel inside io::Errors (hyper-rustls wraps tokio-rustls' one in
        // another), and `io::Error::source()` skips the wrapped error: unwrap by hand.
        let mut inner: &(dyn std::error::Error + 'static) = err;
        loop {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                found = Some(r);
                break 'chain;
            }
            match inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(wrapped) => inner = wrapped,
                None => break,
            }
        }
        current = err.source();
    }
    let host = &ep.host;
    let skip = format!(
        "set configs.\"{host}\".tls.insecure_skip_verify: true in registries.yaml to skip \
         verification"
    );
    use rustls::CertificateError as C;
    let (why, fix) = match found? {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => (
            "it is signed by an unknown certificate authority".to_string(),
            format!(
                "give that authority's certificate as configs.\"{host}\".tls.ca_file in \
                 registries.yaml (or {skip})"
            ),
        ),
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    format!("it is not valid for the name {host}")
                }
                C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
                other => format!("it is invalid ({other:?})"),
            };
            (
                why,
                format!("the registry needs a valid certificate (or {skip})"),
            )
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            return Some(format!(
                "TLS handshake with {host} failed: it does not seem to speak TLS; \
                 if it serves plain HTTP, name it as an http://{host} endpoint"
            ))
        }
        other => return Some(format!("TLS handshake with {host} failed: {other}")),
    };
    Some(format!(
        "the registry's TLS certificate is not trusted: {why}; {fix}"
    ))
}

/// reqwest's top-level message hides the cause ("error sending request"); include it.
pub(super) fn request_error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
