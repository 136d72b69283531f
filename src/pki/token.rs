//! Join tokens in the k3s format `K10<sha256 of the CA PEM>::server:<secret>`.
//!
//! The hash lets a joining agent pin the CA it downloads from `/cacerts`; the secret
//! proves it may join.

use super::PkiError;
use sha2::{Digest, Sha256};

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the CA bundle PEM, when the token is in the full form.
    pub ca_hash: Option<String>,
    pub username: String,
    pub secret: String,
}

impl JoinToken {
    /// A new token for the given CA with a random secret.
    pub fn generate(ca_pem: &str) -> JoinToken {
        JoinToken {
            ca_hash: Some(ca_hash(ca_pem)),
            username: "server".into(),
            secret: random_secret(),
        }
    }

    pub fn render(&self) -> String {
        match &self.ca_hash {
            Some(h) => format!("K10{h}::{}:{}", self.username, self.secret),
            None => self.secret.clone(),
        }
    }
}

/// Hex SHA-256 of the CA certificate PEM, as embedded in full tokens.
pub fn ca_hash(ca_pem: &str) -> String {
    hex::encode(Sha256::digest(ca_pem.as_bytes()))
}

/// 32 random bytes as hex: used for join secrets and the admin bearer token.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Parses `K10<hash>::<user>:<secret>` or a bare secret.
pub fn parse_join_token(s: &str) -> Result<JoinToken, PkiError> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("K10") {
        let (hash, creds) = rest
            .split_once("::")
            .ok_or_else(|| PkiError::Token("expected K10<hash>::<user>:<secret>".into()))?;
        let (user, secret) = creds
            .split_once(':')
            .ok_or_else(|| PkiError::Token("expected <user>:<secret> after ::".into()))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::Token("CA hash must be 64 hex digits".into()));
        }
        if secret.is_empty() {
            return Err(PkiError::Token("empty secret".into()));
        }
        return Ok(JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            username: user.to_owned(),
            secret: secret.to_owned(),
        });
    }
    if s.is_empty() {
        return Err(PkiError::Token("empty token".into()));
    }
    Ok(JoinToken {
        ca_hash: None,
        username: "server".into(),
        secret: s.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_token_round_trips() {
        let t = JoinToken::generate("-----BEGIN CERTIFICATE-----\nx\n");
        let parsed = parse_join_token(&t.render()).unwrap();
        assert_eq!(parsed, t);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        assert!(parse_join_token("K10abc::server:x").is_err());
        assert!(parse_join_token("").is_err());
        assert_eq!(parse_join_token("plain").unwrap().secret, "plain");
    }
}
