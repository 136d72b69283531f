//! Cluster PKI: the CA, the API server's serving certificate, the admin client
//! certificate, join/admin tokens and kubeconfig files.
//!
//! Invariant: everything is generated once under `<data-dir>/server/tls` and reused on
//! restart; only the serving certificate is re-issued, and only when the wanted SANs are no
//! longer all covered (a new `--tls-san`, a new host IP).

pub mod csr;
mod kubeconfig;
mod sa_key;
mod token;

pub use kubeconfig::{write_kubeconfig, KubeconfigSpec};
pub use sa_key::{JwtError, ServiceAccountKey, SA_KEY_FILE};
pub use token::{ca_hash, is_bootstrap_shape, parse_join_token, random_secret, JoinToken};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: invalid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid join token: {0}")]
    Token(String),
}

/// PEM-encoded certificate and private key.
#[derive(Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The server's certificate material, loaded or created by [`ServerPki::ensure`].
pub struct ServerPki {
    pub dir: PathBuf,
    pub ca: CertPair,
    pub serving: CertPair,
    pub admin: CertPair,
}

const CA_YEARS: i64 = 10;
const LEAF_DAYS: i64 = 365;

impl ServerPki {
    /// Loads the PKI from `dir`, creating whatever is missing. `sans` are the serving
    /// certificate's subject alternative names (DNS names or IP addresses).
    pub fn ensure(dir: &Path, sans: &[String]) -> Result<ServerPki, PkiError> {
        create_dir(dir)?;
        let ca = match read_pair(dir, "server-ca")? {
            Some(ca) => ca,
            None => {
                let ca = generate_ca("skiff-server-ca")?;
                write_pair(dir, "server-ca", &ca)?;
                ca
            }
        };
        let san_file = dir.join("serving-kube-apiserver.sans");
        let recorded: Vec<String> = fs::read_to_string(&san_file)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        let serving = match read_pair(dir, "serving-kube-apiserver")? {
            Some(pair) if sans.iter().all(|s| recorded.contains(s)) => pair,
            _ => {
                // Keep the SANs we issued before so that clients using an old name keep working.
                let mut all: Vec<String> = recorded.clone();
                for s in sans {
                    if !all.contains(s) {
                        all.push(s.clone());
                    }
                }
                let pair = issue_leaf(&ca, "kube-apiserver", &[], &all, true)?;
                write_pair(dir, "serving-kube-apiserver", &pair)?;
                write_file(&san_file, all.join("\n").as_bytes(), 0o600)?;
                pair
            }
        };
        let admin = match read_pair(dir, "client-admin")? {
            Some(pair) => pair,
            None => {
                let pair = issue_leaf(&ca, "system:admin", &["system:masters"], &[], false)?;
                write_pair(dir, "client-admin", &pair)?;
                pair
            }
        };
        Ok(ServerPki {
            dir: dir.to_owned(),
            ca,
            serving,
            admin,
        })
    }

    /// The API server's client certificate for kubelets (`kube-apiserver-kubelet-client`,
    /// O=system:masters, as kubeadm issues it), created on first use and kept in the PKI dir.
    pub fn kubelet_client(&self) -> Result<CertPair, PkiError> {
        const NAME: &str = "client-kube-apiserver-kubelet-client";
        if let Some(pair) = read_pair(&self.dir, NAME)? {
            return Ok(pair);
        }
        let pair = issue_leaf(
            &self.ca,
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            &[],
            false,
        )?;
        write_pair(&self.dir, NAME, &pair)?;
        Ok(pair)
    }

    /// Issues a serving certificate signed by the cluster CA for `sans` (DNS names or IPs).
    pub fn issue_serving(&self, common_name: &str, sans: &[String]) -> Result<CertPair, PkiError> {
        issue_leaf(&self.ca, common_name, &[], sans, true)
    }

    /// Issues a client certificate signed by the cluster CA (CN = user, O = groups).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertPair, PkiError> {
        issue_leaf(&self.ca, user, groups, &[], false)
    }
}

fn generate_ca(common_name: &str) -> Result<CertPair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!(
            "{common_name}@{}",
            OffsetDateTime::now_utc().unix_timestamp()
        ),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365 * CA_YEARS);
    let cert = params.self_signed(&key)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issue_leaf(
    ca: &CertPair,
    common_name: &str,
    organizations: &[&str],
    sans: &[String],
    server: bool,
) -> Result<CertPair, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    let mut dn = DistinguishedName::new();
    for org in organizations {
        dn.push(DnType::OrganizationName, *org);
    }
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(LEAF_DAYS);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn read_pair(dir: &Path, name: &str) -> Result<Option<CertPair>, PkiError> {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    if !cert_path.exists() || !key_path.exists() {
        return Ok(None);
    }
    Ok(Some(CertPair {
        cert_pem: read_string(&cert_path)?,
        key_pem: read_string(&key_path)?,
    }))
}

fn write_pair(dir: &Path, name: &str, pair: &CertPair) -> Result<(), PkiError> {
    write_file(
        &dir.join(format!("{name}.key")),
        pair.key_pem.as_bytes(),
        0o600,
    )?;
    write_file(
        &dir.join(format!("{name}.crt")),
        pair.cert_pem.as_bytes(),
        0o644,
    )
}

pub(crate) fn read_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes a file atomically (temp file + fsync + rename) with the given mode, so a crash
/// never leaves a half-written key or kubeconfig behind.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let io_err = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err)?;
    f.write_all(contents).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    // The mode passed to open() is filtered by the umask; set it explicitly.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)
}

/// Parses every certificate of a PEM bundle into DER.
pub fn certs_from_pem(
    pem: &str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, PkiError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            path: PathBuf::from("<memory>"),
            message: e.to_string(),
        })
}

/// Parses a PEM private key.
pub fn key_from_pem(pem: &str) -> Result<rustls_pki_types::PrivateKeyDer<'static>, PkiError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Pem {
        path: PathBuf::from("<memory>"),
        message: e.to_string(),
    })
}

/// The subject of a client certificate as Kubernetes reads it: CN = user, O = groups.
pub fn client_identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some((user, groups))
}

/// Accepts any server certificate (signatures are still checked): for the agent's download
/// of `/cacerts`, whose bytes are then checked against the token's hash, and for HTTPS and
/// gRPC probes, which upstream's kubelet sends without verifying the pod's certificate.
#[derive(Debug)]
struct AcceptAny(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration that accepts any server certificate (see [`AcceptAny`]).
pub fn insecure_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_reuses_material_and_reissues_serving_cert_for_new_sans() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServerPki::ensure(dir.path(), &["127.0.0.1".into()]).unwrap();
        let b = ServerPki::ensure(dir.path(), &["127.0.0.1".into()]).unwrap();
        assert_eq!(a.ca.cert_pem, b.ca.cert_pem);
        assert_eq!(a.serving.cert_pem, b.serving.cert_pem);
        assert_eq!(a.admin.cert_pem, b.admin.cert_pem);
        let c = ServerPki::ensure(dir.path(), &["example.test".into()]).unwrap();
        assert_eq!(a.ca.cert_pem, c.ca.cert_pem);
        assert_ne!(a.serving.cert_pem, c.serving.cert_pem);
    }

    #[test]
    fn admin_certificate_carries_user_and_masters_group() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ServerPki::ensure(dir.path(), &[]).unwrap();
        let der = certs_from_pem(&pki.admin.cert_pem).unwrap();
        let (user, groups) = client_identity(&der[0]).unwrap();
        assert_eq!(user, "system:admin");
        assert_eq!(groups, vec!["system:masters".to_string()]);
    }
}
