//! Join tokens in the k3s format `K10<sha256 of the CA PEM>::server:<secret>`.
//!
//! The hash lets a joining agent pin the CA it downloads from `/cacerts`; the secret
//! proves it may join. A bootstrap token (`skiff token create`) has the same shape with the
//! credential `<id>.<secret>` in place of `server:<secret>` (`K10<hash>::<id>.<secret>`, as
//! `k3s token create` prints it), or is given bare (`<id>.<secret>`).

use super::PkiError;
use sha2::{Digest, Sha256};

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the CA bundle PEM, when the token is in the full form.
    pub ca_hash: Option<String>,
    /// `server` for the server token; empty for a bootstrap token.
    pub username: String,
    /// The server token's secret, or the whole `<id>.<secret>` of a bootstrap token.
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

    /// A bootstrap token for `<id>.<secret>`, pinned to the CA.
    pub fn bootstrap(ca_pem: &str, id_and_secret: &str) -> JoinToken {
        JoinToken {
            ca_hash: Some(ca_hash(ca_pem)),
            username: String::new(),
            secret: id_and_secret.to_owned(),
        }
    }

    pub fn render(&self) -> String {
        match (&self.ca_hash, self.username.is_empty()) {
            (Some(h), false) => format!("K10{h}::{}:{}", self.username, self.secret),
            (Some(h), true) => format!("K10{h}::{}", self.secret),
            (None, _) => self.secret.clone(),
        }
    }

    /// Whether this is a bootstrap token (`<id>.<secret>`) rather than the server token.
    pub fn is_bootstrap(&self) -> bool {
        self.username.is_empty()
    }

    /// The bearer credential an agent presents: the server token's secret, or the whole
    /// bootstrap token.
    pub fn bearer(&self) -> &str {
        &self.secret
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
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::Token("CA hash must be 64 hex digits".into()));
        }
        if is_bootstrap_shape(creds) {
            return Ok(JoinToken {
                ca_hash: Some(hash.to_ascii_lowercase()),
                username: String::new(),
                secret: creds.to_owned(),
            });
        }
        let (user, secret) = creds.split_once(':').ok_or_else(|| {
            PkiError::Token("expected <user>:<secret> or <id>.<secret> after ::".into())
        })?;
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
        username: if is_bootstrap_shape(s) {
            String::new()
        } else {
            "server".into()
        },
        secret: s.to_owned(),
    })
}

/// `<6 of [a-z0-9]>.<16 of [a-z0-9]>`, the bootstrap token shape.
pub fn is_bootstrap_shape(s: &str) -> bool {
    let Some((id, secret)) = s.split_once('.') else {
        return false;
    };
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    ok(id, 6) && ok(secret, 16)
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
        assert!(parse_join_token(&format!("K10{}::abc.def", "a".repeat(64))).is_err());
    }

    #[test]
    fn bootstrap_tokens_parse_with_and_without_the_ca_hash() {
        let t = JoinToken::bootstrap("ca", "abcdef.0123456789abcdef");
        assert!(t.render().ends_with("::abcdef.0123456789abcdef"));
        let parsed = parse_join_token(&t.render()).unwrap();
        assert_eq!(parsed, t);
        assert!(parsed.is_bootstrap());
        assert_eq!(parsed.bearer(), "abcdef.0123456789abcdef");
        let bare = parse_join_token("abcdef.0123456789abcdef").unwrap();
        assert!(bare.is_bootstrap() && bare.ca_hash.is_none());
        let server = parse_join_token(&JoinToken::generate("ca").render()).unwrap();
        assert!(!server.is_bootstrap());
        assert_eq!(server.bearer(), server.secret);
    }
}
