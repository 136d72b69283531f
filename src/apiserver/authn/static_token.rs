//! Static bearer tokens (the admin token file), upstream's `--token-auth-file`.
//!
//! Invariant: tokens are compared in constant time per candidate, so the time a lookup
//! takes says nothing about how much of a guess was right.

use crate::apiserver::auth::UserInfo;

pub struct TokenAuthenticator {
    tokens: Vec<(String, UserInfo)>,
}

impl TokenAuthenticator {
    pub fn new(tokens: Vec<(String, UserInfo)>) -> TokenAuthenticator {
        TokenAuthenticator { tokens }
    }

    /// The user of a bearer token (without the `Bearer ` prefix), if it is one of ours.
    pub fn lookup(&self, token: &str) -> Option<UserInfo> {
        self.tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, u)| u.clone())
    }

    /// Looks up an `Authorization` header value (`Bearer <token>`).
    pub fn authenticate(&self, authorization: &str) -> Option<UserInfo> {
        self.lookup(authorization.strip_prefix("Bearer ")?.trim())
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_map_to_users() {
        let a = TokenAuthenticator::new(vec![(
            "s3cret".into(),
            UserInfo::new("admin", &["system:masters"]),
        )]);
        assert_eq!(a.authenticate("Bearer s3cret").unwrap().name, "admin");
        assert!(a.authenticate("Bearer nope").is_none());
        assert!(a.authenticate("Basic s3cret").is_none());
        assert!(a.lookup("s3cre").is_none());
    }
}
