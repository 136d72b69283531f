//! The node's two certificates: the client certificate it talks to the API server with
//! (`kubernetes.io/kube-apiserver-client-kubelet`, CN `system:node:NAME`, O `system:nodes`)
//! and the kubelet serving certificate (`kubernetes.io/kubelet-serving`, SANs = node name
//! and addresses). Each is obtained through a CertificateSigningRequest ([`request`]: a
//! fresh P-256 key, the CSR, a wait until it is issued, denied or failed), kept under
//! `<agent-dir>/` ([`load`], [`store`]), reused while valid and renewed at a jittered 70–90 %
//! of its lifetime ([`renew_at`]), as upstream's certificate manager does.
//!
//! Invariant: a stored pair is used only if it parses, was issued by the cluster CA and is
//! still valid for a while ([`usable`]); the key never leaves this host (only the CSR goes
//! to the server).

use crate::pki::{self, CertPair};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const CLIENT_CERT: &str = "client-kubelet";
pub const SERVING_CERT: &str = "serving-kubelet";
/// How long a CSR may stay undecided before the agent gives up.
pub const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(
        "the server refused the join token (401 Unauthorized): it is wrong, expired or was deleted"
    )]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("certificate signing request {name} was denied: {message}")]
    Denied { name: String, message: String },
    #[error("certificate signing request {name} failed: {message}")]
    Failed { name: String, message: String },
    #[error("certificate signing request {name} was not issued within {ISSUE_TIMEOUT:?} (is the server's CSR approver running?)")]
    Timeout { name: String },
    #[error("API request failed: {0}")]
    Api(kube::Error),
    #[error("generating a key or request: {0}")]
    Generate(rcgen::Error),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> CertError {
        CertError::Generate(e)
    }
}

impl From<kube::Error> for CertError {
    fn from(e: kube::Error) -> CertError {
        match e {
            kube::Error::Api(s) if s.code == 401 => CertError::Unauthorized,
            // `<resource> "<name>" is forbidden: <why>`: the why is what a person acts on.
            kube::Error::Api(s) if s.code == 403 => CertError::Forbidden(
                s.message
                    .split_once(" is forbidden: ")
                    .map_or(s.message.clone(), |(_, why)| why.to_owned()),
            ),
            e => CertError::Api(e),
        }
    }
}

/// What one certificate is for.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub node: String,
    pub signer: &'static str,
    pub usages: &'static [&'static str],
    /// DNS names and IPs (serving only).
    pub sans: Vec<String>,
}

impl Wanted {
    pub fn client(node: &str) -> Wanted {
        Wanted {
            node: node.to_owned(),
            signer: "kubernetes.io/kube-apiserver-client-kubelet",
            usages: &["digital signature", "client auth"],
            sans: Vec::new(),
        }
    }

    pub fn serving(node: &str, sans: Vec<String>) -> Wanted {
        Wanted {
            node: node.to_owned(),
            signer: "kubernetes.io/kubelet-serving",
            usages: &["digital signature", "server auth"],
            sans,
        }
    }

    /// A new key and the PEM request for it.
    pub fn generate(&self) -> Result<(rcgen::KeyPair, String), CertError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(self.sans.clone())?;
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("system:node:{}", self.node),
        );
        let pem = params.serialize_request(&key)?.pem()?;
        Ok((key, pem))
    }
}

/// Asks the API server for a certificate through a CSR and waits until it is issued.
/// `annotations` go on the CSR (the node password of a join).
pub async fn request(
    client: &kube::Client,
    wanted: &Wanted,
    annotations: BTreeMap<String, String>,
) -> Result<CertPair, CertError> {
    let (key, request_pem) = wanted.generate()?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let prefix = if wanted.signer.ends_with("serving") {
        "csr-"
    } else {
        "node-csr-"
    };
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(prefix.to_owned()),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(request_pem.into_bytes()),
            signer_name: wanted.signer.to_owned(),
            usages: Some(wanted.usages.iter().map(|u| u.to_string()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &csr).await?;
    let name = created.metadata.name.unwrap_or_default();
    let deadline = tokio::time::Instant::now() + ISSUE_TIMEOUT;
    loop {
        let csr = api.get(&name).await?;
        let status = csr.status.unwrap_or_default();
        for c in status.conditions.iter().flatten() {
            if c.status != "True" {
                continue;
            }
            let message = c
                .message
                .clone()
                .unwrap_or_else(|| c.reason.clone().unwrap_or_default());
            match c.type_.as_str() {
                "Denied" => return Err(CertError::Denied { name, message }),
                "Failed" => return Err(CertError::Failed { name, message }),
                _ => {}
            }
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok(CertPair {
                cert_pem: String::from_utf8_lossy(&cert.0).into_owned(),
                key_pem: key.serialize_pem(),
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CertError::Timeout { name });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Issues a serving certificate straight from the CA (the server's own node, which holds
/// it), through the same CSR signing code as the controller.
pub fn issue_locally(ca: &CertPair, wanted: &Wanted) -> Result<CertPair, CertError> {
    let (key, request_pem) = wanted.generate()?;
    let usages: Vec<String> = wanted.usages.iter().map(|u| u.to_string()).collect();
    let cert_pem = pki::csr::sign(
        ca,
        request_pem.as_bytes(),
        &usages,
        crate::controllers::csr_signing::SIGNING_DURATION,
    )
    .map_err(|e| CertError::Forbidden(e.to_string()))?;
    Ok(CertPair {
        cert_pem,
        key_pem: key.serialize_pem(),
    })
}

/// `(not_before, not_after)` of the first certificate of a PEM bundle.
pub fn validity(cert_pem: &str) -> Option<(SystemTime, SystemTime)> {
    let der = pki::certs_from_pem(cert_pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.first()?).ok()?;
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    Some((
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    ))
}

/// When to renew a certificate valid from `not_before` to `not_after`: at 70 % of its life
/// plus `jitter` (0..1) × 20 %.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_before + life.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// Whether a stored pair can be used at `now`: it parses, the CA signed it, and it has not
/// expired (one past its renewal time is used and renewed at once with the node's own
/// identity, as upstream's kubelet does, rather than asking a join token that may be gone).
pub fn usable(pair: &CertPair, ca_pem: &str, now: SystemTime) -> bool {
    let Some((nb, na)) = validity(&pair.cert_pem) else {
        return false;
    };
    if pki::key_from_pem(&pair.key_pem).is_err() || now < nb || now >= na {
        return false;
    }
    let (Ok(certs), Ok(cas)) = (
        pki::certs_from_pem(&pair.cert_pem),
        pki::certs_from_pem(ca_pem),
    ) else {
        return false;
    };
    let (Some(cert), Some(ca)) = (certs.first(), cas.first()) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(cert),
        x509_parser::parse_x509_certificate(ca),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// The pair stored under `dir` as `<name>.crt` / `<name>.key`, if any.
pub fn load(dir: &Path, name: &str) -> Option<CertPair> {
    Some(CertPair {
        cert_pem: std::fs::read_to_string(dir.join(format!("{name}.crt"))).ok()?,
        key_pem: std::fs::read_to_string(dir.join(format!("{name}.key"))).ok()?,
    })
}

/// Stores a pair (key 0600, written before the certificate so a crash never leaves a
/// certificate without its key).
pub fn store(dir: &Path, name: &str, pair: &CertPair) -> Result<(), CertError> {
    pki::write_file(
        &dir.join(format!("{name}.key")),
        pair.key_pem.as_bytes(),
        0o600,
    )?;
    pki::write_file(
        &dir.join(format!("{name}.crt")),
        pair.cert_pem.as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// How long to sleep before renewing `pair` (zero when due).
pub fn until_renewal(pair: &CertPair, now: SystemTime) -> Duration {
    let jitter: f64 = rand::random();
    match validity(&pair.cert_pem) {
        Some((nb, na)) => renew_at(nb, na, jitter)
            .duration_since(now)
            .unwrap_or_default(),
        None => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> CertPair {
        let dir = tempfile::tempdir().unwrap();
        pki::ServerPki::ensure(dir.path(), &[]).unwrap().ca
    }

    #[test]
    fn renewal_falls_between_70_and_90_percent_of_the_lifetime() {
        let nb = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let na = nb + Duration::from_secs(1000);
        assert_eq!(renew_at(nb, na, 0.0), nb + Duration::from_secs(700));
        assert_eq!(renew_at(nb, na, 1.0), nb + Duration::from_secs(900));
        assert_eq!(renew_at(nb, na, 0.5), nb + Duration::from_secs(800));
    }

    #[test]
    fn locally_issued_serving_certificates_are_usable_until_renewal_and_only_with_their_ca() {
        let ca = ca();
        let wanted = Wanted::serving("n1", vec!["n1".into(), "10.0.0.5".into()]);
        let pair = issue_locally(&ca, &wanted).unwrap();
        let der = pki::certs_from_pem(&pair.cert_pem).unwrap();
        let (user, groups) = pki::client_identity(&der[0]).unwrap();
        assert_eq!(
            (user.as_str(), groups),
            ("system:node:n1", vec!["system:nodes".to_string()])
        );
        let now = SystemTime::now();
        assert!(usable(&pair, &ca.cert_pem, now));
        assert!(!usable(&pair, &self::ca().cert_pem, now));
        let (nb, na) = validity(&pair.cert_pem).unwrap();
        assert!(usable(&pair, &ca.cert_pem, renew_at(nb, na, 1.0)));
        assert!(!usable(&pair, &ca.cert_pem, na));
        assert!(until_renewal(&pair, renew_at(nb, na, 1.0)).is_zero());
        let wait = until_renewal(&pair, now);
        assert!(wait > Duration::from_secs(200 * 86400), "{wait:?}");
    }

    #[test]
    fn pairs_round_trip_through_the_agent_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), CLIENT_CERT).is_none());
        let pair = issue_locally(&ca(), &Wanted::serving("n1", vec!["n1".into()])).unwrap();
        store(dir.path(), SERVING_CERT, &pair).unwrap();
        let back = load(dir.path(), SERVING_CERT).unwrap();
        assert_eq!(back.cert_pem, pair.cert_pem);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("serving-kubelet.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
