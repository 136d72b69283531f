//! Who may call the kubelet API, decided as upstream's kubelet does with webhook authn/authz:
//! a client certificate from the cluster CA (CN = user, O = groups) or a bearer token checked
//! by a TokenReview, then one SubjectAccessReview on `nodes/<subresource>` of this node,
//! with the verb from the HTTP method.
//!
//! Invariant: decisions are cached briefly (allowed 5 min, denied 30 s, token reviews 2 min,
//! upstream's webhook defaults), keyed by everything the API server sees, so a revoked
//! permission stops working within those windows and never later.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);
const TOKEN_TTL: Duration = Duration::from_secs(120);
const MAX_CACHE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// What one request asks of the node, upstream's attributes for the kubelet API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
}

/// Whether `path` is `prefix` or below it (upstream's isSubpath).
fn is_subpath(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The attributes to try, in order (the first allowed one wins): `/pods` and `/healthz`
/// have their own fine-grained subresource first (KubeletFineGrainedAuthz, on in 1.35), then
/// stats, metrics, log, checkpoint, or proxy for everything else.
pub fn attributes(method: &http::Method, path: &str) -> Vec<Attributes> {
    let verb = match method.as_str() {
        "POST" => "create",
        "GET" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    };
    let mut subs = Vec::new();
    if is_subpath(path, "/pods") || is_subpath(path, "/runningpods/") {
        subs.push("pods");
    } else if is_subpath(path, "/healthz") {
        subs.push("healthz");
    } else if is_subpath(path, "/configz") {
        subs.push("configz");
    }
    subs.push(if is_subpath(path, "/stats/") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs/") {
        "log"
    } else if is_subpath(path, "/checkpoint/") {
        "checkpoint"
    } else if is_subpath(path, "/statusz") {
        "statusz"
    } else if is_subpath(path, "/flagz") {
        "configz"
    } else {
        "proxy"
    });
    subs.into_iter()
        .map(|subresource| Attributes { verb, subresource })
        .collect()
}

/// Upstream's 403 body.
pub fn forbidden_text(user: &User, attrs: &[Attributes]) -> String {
    let verb = attrs.first().map(|a| a.verb).unwrap_or_default();
    let subs: Vec<&str> = attrs.iter().map(|a| a.subresource).collect();
    format!(
        "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{}])\n",
        user.name,
        subs.join(" ")
    )
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Unauthorized")]
    Unauthorized,
    #[error(
        "Authorization error (user={user}, verb={verb}, resource=nodes, subresource={subresource})"
    )]
    Review {
        user: String,
        verb: &'static str,
        subresource: &'static str,
    },
}

/// The API server's verdicts, cached.
pub struct Authority {
    client: kube::Client,
    node_name: String,
    decisions: Mutex<HashMap<(User, Attributes), (bool, Instant)>>,
    tokens: Mutex<HashMap<String, (Option<User>, Instant)>>,
}

impl Authority {
    pub fn new(client: kube::Client, node_name: String) -> Authority {
        Authority {
            client,
            node_name,
            decisions: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A bearer token's user (TokenReview), or `Unauthorized`.
    pub async fn authenticate_token(&self, token: &str) -> Result<User, AuthError> {
        let key = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            token.as_bytes(),
        ));
        if let Some((u, at)) = self.tokens.lock().get(&key) {
            if at.elapsed() < TOKEN_TTL {
                return u.clone().ok_or(AuthError::Unauthorized);
            }
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let answer = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "kubelet API: TokenReview failed");
                AuthError::Unauthorized
            })?;
        let user = answer.status.and_then(|s| {
            if s.authenticated != Some(true) {
                return None;
            }
            let u = s.user?;
            Some(User {
                name: u.username?,
                uid: u.uid.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
            })
        });
        let mut cache = self.tokens.lock();
        if cache.len() >= MAX_CACHE {
            cache.clear();
        }
        cache.insert(key, (user.clone(), Instant::now()));
        user.ok_or(AuthError::Unauthorized)
    }

    /// Whether `user` may do any of `attrs` (tried in order).
    pub async fn authorize(&self, user: &User, attrs: &[Attributes]) -> Result<bool, AuthError> {
        for a in attrs {
            if self.allowed(user, a).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn allowed(&self, user: &User, a: &Attributes) -> Result<bool, AuthError> {
        let key = (user.clone(), a.clone());
        if let Some((ok, at)) = self.decisions.lock().get(&key) {
            let ttl = if *ok { ALLOWED_TTL } else { DENIED_TTL };
            if at.elapsed() < ttl {
                return Ok(*ok);
            }
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(a.verb.to_owned()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(a.subresource.to_owned()),
                    name: Some(self.node_name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let answer = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "kubelet API: SubjectAccessReview failed");
                AuthError::Review {
                    user: user.name.clone(),
                    verb: a.verb,
                    subresource: a.subresource,
                }
            })?;
        let ok = answer.status.map(|s| s.allowed).unwrap_or(false);
        let mut cache = self.decisions.lock();
        if cache.len() >= MAX_CACHE {
            cache.clear();
        }
        cache.insert(key, (ok, Instant::now()));
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(method: http::Method, path: &str) -> Vec<(&'static str, &'static str)> {
        attributes(&method, path)
            .into_iter()
            .map(|a| (a.verb, a.subresource))
            .collect()
    }

    #[test]
    fn paths_map_to_node_subresources_as_upstream() {
        use http::Method;
        assert_eq!(subs(Method::GET, "/stats/summary"), [("get", "stats")]);
        assert_eq!(subs(Method::GET, "/metrics/resource"), [("get", "metrics")]);
        assert_eq!(subs(Method::GET, "/metrics"), [("get", "metrics")]);
        assert_eq!(subs(Method::GET, "/logs/syslog"), [("get", "log")]);
        assert_eq!(
            subs(Method::GET, "/containerLogs/ns/p/c"),
            [("get", "proxy")]
        );
        assert_eq!(subs(Method::POST, "/exec/ns/p/c"), [("create", "proxy")]);
        assert_eq!(subs(Method::GET, "/portForward/ns/p"), [("get", "proxy")]);
        assert_eq!(
            subs(Method::GET, "/pods"),
            [("get", "pods"), ("get", "proxy")]
        );
        assert_eq!(
            subs(Method::GET, "/healthz"),
            [("get", "healthz"), ("get", "proxy")]
        );
        // Not a subpath: /statsfoo and /podsx are proxy.
        assert_eq!(subs(Method::GET, "/statsfoo"), [("get", "proxy")]);
        assert_eq!(subs(Method::GET, "/podsx"), [("get", "proxy")]);
        assert_eq!(subs(Method::PUT, "/run/a/b/c"), [("update", "proxy")]);
    }

    #[test]
    fn forbidden_text_is_upstreams() {
        let u = User {
            name: "bob".into(),
            uid: String::new(),
            groups: vec![],
        };
        assert_eq!(
            forbidden_text(&u, &attributes(&http::Method::GET, "/pods")),
            "Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
        );
    }
}
