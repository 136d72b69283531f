//! Certificate signing requests: reading the subject and names of a PKCS#10 request and
//! issuing a certificate for it from the cluster CA (what kube-controller-manager's
//! `csrsigning` does with `--cluster-signing-cert-file`).
//!
//! Invariant: the issued certificate carries the request's subject, names and public key,
//! exactly the usages granted (never CA rights), and never outlives the CA.

use super::CertPair;
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotPem,
    #[error("{0}")]
    Parse(String),
    #[error("invalid usage {0:?}")]
    Usage(String),
    #[error("signing: {0}")]
    Sign(#[from] rcgen::Error),
}

/// What a request asks to be certified.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CsrInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

fn der_of(pem: &[u8]) -> Result<Vec<u8>, CsrError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| CsrError::NotPem)?;
    if p.label != "CERTIFICATE REQUEST" {
        return Err(CsrError::NotPem);
    }
    Ok(p.contents)
}

/// Parses a PEM `CERTIFICATE REQUEST` and checks its self-signature.
pub fn parse(pem: &[u8]) -> Result<CsrInfo, CsrError> {
    let der = der_of(pem)?;
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| CsrError::Parse(format!("x509: malformed certificate request: {e}")))?;
    req.verify_signature()
        .map_err(|_| CsrError::Parse("x509: invalid signature on certificate request".into()))?;
    let subject = &req.certification_request_info.subject;
    let mut info = CsrInfo {
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_owned(),
        organizations: subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect(),
        ..CsrInfo::default()
    };
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => info.emails.push(e.to_string()),
                    GeneralName::URI(u) => info.uris.push(u.to_string()),
                    GeneralName::IPAddress(ip) => info.ip_addresses.push(match ip.len() {
                        4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                        16 => {
                            let mut b = [0u8; 16];
                            b.copy_from_slice(ip);
                            std::net::Ipv6Addr::from(b).to_string()
                        }
                        _ => hex::encode(ip),
                    }),
                    _ => {}
                }
            }
        }
    }
    Ok(info)
}

/// Maps Kubernetes key usage names to X.509 key usages and extended key usages.
fn usages(
    names: &[String],
) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), CsrError> {
    let mut ku = Vec::new();
    let mut eku = Vec::new();
    for n in names {
        match n.as_str() {
            "signing" | "digital signature" => ku.push(KeyUsagePurpose::DigitalSignature),
            "content commitment" => ku.push(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => ku.push(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => ku.push(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => ku.push(KeyUsagePurpose::DataEncipherment),
            "cert sign" => ku.push(KeyUsagePurpose::KeyCertSign),
            "crl sign" => ku.push(KeyUsagePurpose::CrlSign),
            "encipher only" => ku.push(KeyUsagePurpose::EncipherOnly),
            "decipher only" => ku.push(KeyUsagePurpose::DecipherOnly),
            "any" => eku.push(ExtendedKeyUsagePurpose::Any),
            "server auth" => eku.push(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => eku.push(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => eku.push(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" | "s/mime" => eku.push(ExtendedKeyUsagePurpose::EmailProtection),
            "timestamping" => eku.push(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => eku.push(ExtendedKeyUsagePurpose::OcspSigning),
            "ipsec end system" => eku.push(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 5,
            ])),
            "ipsec tunnel" => eku.push(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 6,
            ])),
            "ipsec user" => eku.push(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 7,
            ])),
            "microsoft sgc" => eku.push(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 4, 1, 311, 10, 3, 3,
            ])),
            "netscape sgc" => eku.push(ExtendedKeyUsagePurpose::Other(vec![
                2, 16, 840, 1, 113730, 4, 1,
            ])),
            other => return Err(CsrError::Usage(other.to_owned())),
        }
    }
    Ok((ku, eku))
}

/// Issues a certificate for the PEM request from `ca`, valid for `ttl` (backdated as
/// upstream: 5 minutes, or 1% of a TTL under 8 hours) and never past the CA's own expiry.
pub fn sign(
    ca: &CertPair,
    request_pem: &[u8],
    usage_names: &[String],
    ttl: std::time::Duration,
) -> Result<String, CsrError> {
    let der = der_of(request_pem)?;
    let mut req = CertificateSigningRequestParams::from_der(&der.into())?;
    let (ku, eku) = usages(usage_names)?;
    let p = &mut req.params;
    p.key_usages = ku;
    p.extended_key_usages = eku;
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    let serial: [u8; 16] = rand::random();
    // A positive INTEGER: clear the top bit.
    let mut serial = serial.to_vec();
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    let ttl = Duration::seconds(ttl.as_secs() as i64);
    let backdate = if ttl < Duration::hours(8) {
        ttl / 100
    } else {
        Duration::minutes(5)
    };
    let now = OffsetDateTime::now_utc();
    p.not_before = now - backdate;
    p.not_after = p.not_before + ttl;
    let ca_der = super::certs_from_pem(&ca.cert_pem).map_err(|e| CsrError::Parse(e.to_string()))?;
    if let Some(ca_cert) = ca_der.first() {
        if let Ok((_, c)) = x509_parser::parse_x509_certificate(ca_cert) {
            let ca_end = OffsetDateTime::from_unix_timestamp(c.validity().not_after.timestamp())
                .unwrap_or(p.not_after);
            if p.not_after > ca_end {
                p.not_after = ca_end;
            }
        }
    }
    let key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, key)?;
    Ok(req.signed_by(&issuer)?.pem())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType};

    /// A PEM request for `cn`/`orgs` with optional DNS names, and its key.
    pub fn request(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut dn = DistinguishedName::new();
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn parse_reads_subject_and_names() {
        let info = parse(request("system:node:n1", &["system:nodes"], &["n1.example"]).as_bytes())
            .unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.organizations, ["system:nodes"]);
        assert_eq!(info.dns_names, ["n1.example"]);
        assert!(matches!(parse(b"garbage"), Err(CsrError::NotPem)));
    }

    #[test]
    fn signed_certificate_keeps_subject_and_gets_usages_and_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::ServerPki::ensure(dir.path(), &[]).unwrap();
        let csr = request("jane", &["devs"], &[]);
        let ttl = std::time::Duration::from_secs(3600);
        let pem = sign(
            &pki.ca,
            csr.as_bytes(),
            &["client auth".into(), "digital signature".into()],
            ttl,
        )
        .unwrap();
        let der = crate::pki::certs_from_pem(&pem).unwrap();
        assert_eq!(
            crate::pki::client_identity(&der[0]).unwrap(),
            ("jane".to_string(), vec!["devs".to_string()])
        );
        let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
        let v = cert.validity();
        assert_eq!(v.not_after.timestamp() - v.not_before.timestamp(), 3600);
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(sign(&pki.ca, csr.as_bytes(), &["bogus".into()], ttl).is_err());
    }
}
