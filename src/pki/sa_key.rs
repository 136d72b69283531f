//! The service-account signing key and the JWS compact tokens it signs.
//!
//! Upstream (and k3s) sign with RSA (RS256); skiff signs with ECDSA P-256 (ES256): `ring`
//! generates such a key in microseconds, its signatures are 64 bytes (shorter tokens), and
//! every JWT/OIDC library a workload may use to verify a token through `/openid/v1/jwks`
//! accepts ES256 (it is one of the algorithms the JOSE spec recommends).
//!
//! Invariant: the key is generated once as `service-account.key` (PKCS#8 PEM, mode 0600) in
//! the server PKI directory and reused on every restart, so tokens survive restarts; a token
//! verifies only if its header names this key's id and `ES256`.

use super::{read_string, write_file, PkiError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The file name of the key in the PKI directory.
pub const SA_KEY_FILE: &str = "service-account.key";

/// DER prefix of a SubjectPublicKeyInfo holding an uncompressed P-256 point (the key id is
/// computed over the SPKI, as upstream's `keyIDFromPublicKey` does).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a token was not accepted as one signed by this key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is not a JWT")]
    Malformed,
    #[error("token was not signed by this server's service account key")]
    UnknownKey,
    #[error("invalid signature")]
    BadSignature,
}

/// An ES256 signing key.
pub struct ServiceAccountKey {
    pair: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl ServiceAccountKey {
    /// Loads `dir/service-account.key`, creating it when missing.
    pub fn ensure(dir: &Path) -> Result<ServiceAccountKey, PkiError> {
        let path = dir.join(SA_KEY_FILE);
        if path.exists() {
            let pem = read_string(&path)?;
            let der = pem_body(&pem).ok_or_else(|| PkiError::Pem {
                path: path.clone(),
                message: "expected a PKCS#8 PRIVATE KEY block".into(),
            })?;
            return ServiceAccountKey::from_pkcs8(&der).map_err(|message| PkiError::Pem {
                path: path.clone(),
                message,
            });
        }
        let pkcs8 = generate_pkcs8()?;
        write_file(&path, pem_encode(&pkcs8).as_bytes(), 0o600)?;
        ServiceAccountKey::from_pkcs8(&pkcs8).map_err(|message| PkiError::Pem { path, message })
    }

    /// A fresh key kept only in memory (tests, and servers without a PKI directory).
    pub fn generate() -> Result<ServiceAccountKey, PkiError> {
        ServiceAccountKey::from_pkcs8(&generate_pkcs8()?).map_err(|message| PkiError::Pem {
            path: "<memory>".into(),
            message,
        })
    }

    fn from_pkcs8(der: &[u8]) -> Result<ServiceAccountKey, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let key_id = B64.encode(Sha256::digest(&spki));
        Ok(ServiceAccountKey { pair, key_id, rng })
    }

    /// The `kid` every token header and the JWKS carry.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `claims` as a JWS compact token (`header.payload.signature`).
    pub fn sign(&self, claims: &Value) -> Result<String, PkiError> {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let mut token = B64.encode(header.to_string());
        token.push('.');
        token.push_str(&B64.encode(claims.to_string()));
        let sig = self
            .pair
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| PkiError::Token("signing the token failed".into()))?;
        token.push('.');
        token.push_str(&B64.encode(sig.as_ref()));
        Ok(token)
    }

    /// Checks the header and signature of a token and returns its claims (not yet validated:
    /// expiry, audience and the objects it names are the caller's business).
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        if header["alg"] != "ES256" || header["kid"] != self.key_id.as_str() {
            return Err(JwtError::UnknownKey);
        }
        let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
        let signed = &token[..h.len() + 1 + p.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| JwtError::BadSignature)?;
        B64.decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(Value::is_object)
            .ok_or(JwtError::Malformed)
    }

    /// The public key as a JWK (RFC 7517), as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.key_id,
            "crv": "P-256",
            "alg": "ES256",
            "x": B64.encode(&point[1..33]),
            "y": B64.encode(&point[33..65]),
        })
    }
}

fn generate_pkcs8() -> Result<Vec<u8>, PkiError> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| PkiError::Token("generating the service account key failed".into()))
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = pem.find("-----END PRIVATE KEY-----")?;
    let b64: String = pem
        .get(start..end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServiceAccountKey::ensure(dir.path()).unwrap();
        let b = ServiceAccountKey::ensure(dir.path()).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        let token = a.sign(&json!({"sub": "x"})).unwrap();
        assert_eq!(b.verify(&token).unwrap()["sub"], "x");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn tokens_of_another_key_or_tampered_tokens_are_refused() {
        let a = ServiceAccountKey::generate().unwrap();
        let b = ServiceAccountKey::generate().unwrap();
        let token = a.sign(&json!({"sub": "alice"})).unwrap();
        assert_eq!(b.verify(&token), Err(JwtError::UnknownKey));
        // Same header (kid), other payload: the signature no longer matches.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(r#"{"sub":"mallory"}"#),
            parts[2]
        );
        assert_eq!(a.verify(&forged), Err(JwtError::BadSignature));
        assert_eq!(a.verify("a.b"), Err(JwtError::Malformed));
        assert_eq!(a.verify("not-a-jwt"), Err(JwtError::Malformed));
    }

    #[test]
    fn jwk_holds_the_public_point_and_key_id() {
        let k = ServiceAccountKey::generate().unwrap();
        let jwk = k.jwk();
        assert_eq!(jwk["kid"], k.key_id());
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(B64.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(B64.decode(jwk["y"].as_str().unwrap()).unwrap().len(), 32);
    }
}
