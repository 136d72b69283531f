//! Authentication: who is making a request. The chain runs in upstream's order:
//! x509 client certificates (established per connection by rustls, see [`x509`]), then the
//! bearer-token authenticators — static tokens ([`static_token`]), bootstrap tokens
//! ([`bootstrap`]), service-account JWTs ([`service_account`]) — with their successes cached
//! briefly ([`cache`]). A request with no credentials is `system:anonymous` in
//! `system:unauthenticated`; whether anonymous may do anything is the authorizer's call.
//!
//! Invariant: a bearer token that no authenticator accepts is a 401, never anonymous (as
//! upstream); every identity this module hands out, except anonymous, is in
//! `system:authenticated`.

pub mod bootstrap;
mod cache;
pub mod service_account;
mod static_token;
pub mod x509;

pub(crate) use static_token::constant_time_eq;
pub use static_token::TokenAuthenticator;

use super::auth::UserInfo;
use super::status::ApiError;
use super::ApiState;
use crate::pki::ServiceAccountKey;
use serde_json::Value;
use std::sync::Arc;

pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The identity of a request without credentials.
pub fn anonymous() -> UserInfo {
    UserInfo::new(ANONYMOUS_USER, &[UNAUTHENTICATED_GROUP])
}

pub fn is_anonymous(user: &UserInfo) -> bool {
    user.name == ANONYMOUS_USER
}

/// Adds `system:authenticated` (upstream's AuthenticatedGroupAdder).
pub fn authenticated(mut user: UserInfo) -> UserInfo {
    if !user.in_group(AUTHENTICATED_GROUP) && !is_anonymous(&user) {
        user.groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    user
}

/// A token an authenticator accepted.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: UserInfo,
    /// When the credential stops being valid (unix seconds), if it says.
    pub expires: Option<i64>,
    /// The accepted audiences the token was meant for.
    pub audiences: Vec<String>,
}

/// One token authenticator's answer.
#[derive(Debug)]
pub enum TokenSource {
    /// Not a token of this kind: let the next authenticator try.
    NotMine,
    /// Of this kind but not valid, and why (for TokenReview and logs, never for the client).
    Invalid(String),
    User(Authenticated),
}

/// The bearer-token half of the chain, plus the service-account signing key.
pub struct Authenticator {
    static_tokens: TokenAuthenticator,
    sa_key: Arc<ServiceAccountKey>,
    api_audiences: Vec<String>,
    cache: cache::TokenCache,
}

impl Authenticator {
    pub fn new(static_tokens: TokenAuthenticator, sa_key: Arc<ServiceAccountKey>) -> Authenticator {
        Authenticator {
            static_tokens,
            sa_key,
            api_audiences: service_account::api_audiences(),
            cache: cache::TokenCache::default(),
        }
    }

    pub fn service_account_key(&self) -> &Arc<ServiceAccountKey> {
        &self.sa_key
    }

    /// The audiences the API server accepts (`--api-audiences`).
    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    /// Authenticates a bearer token for the API server (cached).
    pub async fn bearer(&self, state: &ApiState, token: &str) -> Result<UserInfo, String> {
        if let Some(u) = self.cache.get(token) {
            return Ok((*u).clone());
        }
        let a = self.token(state, token, None).await?;
        self.cache.put(token, Arc::new(a.user.clone()), a.expires);
        Ok(a.user)
    }

    /// Runs the token chain (uncached): `audiences` are those the caller accepts (a
    /// TokenReview's `spec.audiences`), `None` for the API server's own.
    pub async fn token(
        &self,
        state: &ApiState,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<Authenticated, String> {
        let wanted = audiences
            .filter(|a| !a.is_empty())
            .unwrap_or(&self.api_audiences);
        // Static and bootstrap tokens are for the API server only: they are accepted for a
        // request naming one of its audiences (upstream's audience-agnostic wrapper).
        let implicit: Vec<String> = wanted
            .iter()
            .filter(|a| self.api_audiences.contains(a))
            .cloned()
            .collect();
        let mut errors = Vec::new();
        if let Some(user) = self.static_tokens.lookup(token) {
            if implicit.is_empty() {
                errors.push("token audiences is invalid for the target audiences".to_owned());
            } else {
                return Ok(Authenticated {
                    user: authenticated(user),
                    expires: None,
                    audiences: implicit,
                });
            }
        }
        let sources = [
            bootstrap::authenticate(state, token).await,
            service_account::authenticate(state, &self.sa_key, token, wanted).await,
        ];
        for (i, source) in sources.into_iter().enumerate() {
            match source {
                TokenSource::NotMine => {}
                TokenSource::Invalid(why) => errors.push(why),
                TokenSource::User(mut a) => {
                    if i == 0 {
                        if implicit.is_empty() {
                            errors.push(
                                "token audiences is invalid for the target audiences".to_owned(),
                            );
                            continue;
                        }
                        a.audiences = implicit.clone();
                    }
                    a.user = authenticated(a.user);
                    return Ok(a);
                }
            }
        }
        Err(match errors.len() {
            0 => "invalid bearer token".to_owned(),
            1 => errors.remove(0),
            _ => format!("[{}]", errors.join(", ")),
        })
    }
}

/// The request's identity: the connection's verified certificate, else a bearer token,
/// else anonymous. A bearer token that is not valid is a 401.
pub(crate) async fn authenticate(
    state: &ApiState,
    cert_user: Option<&UserInfo>,
    authorization: Option<&http::HeaderValue>,
) -> Result<UserInfo, ApiError> {
    if let Some(u) = cert_user {
        return Ok(u.clone());
    }
    let Some(token) = authorization.and_then(bearer_token) else {
        return Ok(anonymous());
    };
    state.authn.bearer(state, token).await.map_err(|why| {
        tracing::debug!(reason = %why, "bearer token refused");
        ApiError::unauthorized()
    })
}

/// The token of an `Authorization: Bearer <token>` header; other schemes and empty tokens
/// are not bearer credentials (upstream's bearertoken authenticator ignores them).
fn bearer_token(v: &http::HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?.trim();
    let (scheme, token) = s.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The fields identity checks read of an object they look up: who it is and whether it
/// is going.
pub(crate) const IDENTITY: &[&str] = &[
    "metadata.name",
    "metadata.uid",
    "metadata.deletionTimestamp",
];

/// Reads the fields `keep` names of one core/v1 object from the store, or all of it for an
/// empty `keep` (`None` when absent or unreadable).
pub(crate) async fn get_object(
    state: &ApiState,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
    keep: &[&str],
) -> Option<Value> {
    if name.is_empty() {
        return None;
    }
    super::admission::support::get_fields(state, "", plural, namespace, name, keep)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests;
