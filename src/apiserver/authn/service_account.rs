//! Service-account tokens: the claims the TokenRequest API and the legacy token controller
//! put in a JWT (shaped as upstream's `pkg/serviceaccount/claims.go` and `legacy.go`), and
//! their validation as bearer tokens.
//!
//! Invariant: a token authenticates only while everything it names still exists with the
//! UID it names (the service account; the pod, secret or node it is bound to; for legacy
//! tokens the Secret holding exactly this token), it is within its validity window (one
//! minute of leeway, as upstream) and one of its audiences is accepted.

use super::{get_object, Authenticated, TokenSource, IDENTITY};
use crate::apiserver::auth::UserInfo;
use crate::apiserver::ApiState;
use crate::pki::{JwtError, ServiceAccountKey};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Issuer of bound tokens (upstream's `--service-account-issuer` default in kubeadm/k3s).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Issuer of legacy Secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Clock skew tolerated on `exp`/`nbf`/`iat` and on deletions (go-jose's DefaultLeeway).
const LEEWAY_SECONDS: i64 = 60;

/// The audiences the API server itself accepts (`--api-audiences`, which upstream defaults
/// to the issuer).
pub fn api_audiences() -> Vec<String> {
    vec![ISSUER.to_owned()]
}

/// `system:serviceaccount:NS:NAME`
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A name and UID, as the `kubernetes.io` claim records objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjRef {
    pub name: String,
    pub uid: String,
}

impl ObjRef {
    pub fn of(obj: &Value) -> ObjRef {
        let m = &obj["metadata"];
        ObjRef {
            name: m["name"].as_str().unwrap_or_default().to_owned(),
            uid: m["uid"].as_str().unwrap_or_default().to_owned(),
        }
    }

    fn json(&self) -> Value {
        json!({"name": self.name, "uid": self.uid})
    }
}

/// What a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Nothing,
    /// A pod, and the node it runs on when it is scheduled.
    Pod {
        pod: ObjRef,
        node: Option<ObjRef>,
    },
    Secret(ObjRef),
    Node(ObjRef),
}

/// What a bound token says, before signing.
pub struct TokenSpec<'a> {
    pub namespace: &'a str,
    pub service_account: ObjRef,
    pub bound: Bound,
    pub audiences: &'a [String],
    pub issued_at: i64,
    pub expiration_seconds: i64,
    /// Non-zero: the extended-expiration warning point, seconds after issue.
    pub warn_after_seconds: i64,
    pub jti: String,
}

/// The claims of a bound token (TokenRequest), in upstream's shape.
pub fn claims(spec: &TokenSpec<'_>) -> Value {
    let mut k = Map::new();
    k.insert("namespace".into(), json!(spec.namespace));
    k.insert("serviceaccount".into(), spec.service_account.json());
    match &spec.bound {
        Bound::Nothing => {}
        Bound::Pod { pod, node } => {
            k.insert("pod".into(), pod.json());
            if let Some(n) = node {
                k.insert("node".into(), n.json());
            }
        }
        Bound::Secret(s) => {
            k.insert("secret".into(), s.json());
        }
        Bound::Node(n) => {
            k.insert("node".into(), n.json());
        }
    }
    if spec.warn_after_seconds != 0 {
        k.insert(
            "warnafter".into(),
            json!(spec.issued_at + spec.warn_after_seconds),
        );
    }
    json!({
        "aud": spec.audiences,
        "exp": spec.issued_at + spec.expiration_seconds,
        "iat": spec.issued_at,
        "iss": ISSUER,
        "jti": spec.jti,
        "kubernetes.io": Value::Object(k),
        "nbf": spec.issued_at,
        "sub": username(spec.namespace, &spec.service_account.name),
    })
}

/// The claims of a legacy token stored in a `kubernetes.io/service-account-token` Secret.
pub fn legacy_claims(namespace: &str, sa: &ObjRef, secret_name: &str) -> Value {
    json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret_name,
        "kubernetes.io/serviceaccount/service-account.name": sa.name,
        "kubernetes.io/serviceaccount/service-account.uid": sa.uid,
        "sub": username(namespace, &sa.name),
    })
}

/// Authenticates a JWT signed by `key`; `audiences` are the ones the caller accepts.
pub async fn authenticate(
    state: &ApiState,
    key: &ServiceAccountKey,
    token: &str,
    audiences: &[String],
) -> TokenSource {
    let claims = match key.verify(token) {
        Ok(c) => c,
        Err(JwtError::Malformed) => return TokenSource::NotMine,
        Err(e) => return TokenSource::Invalid(e.to_string()),
    };
    let now = chrono::Utc::now().timestamp();
    let checked = match claims["iss"].as_str() {
        Some(ISSUER) => validate_bound(state, &claims, now).await,
        Some(LEGACY_ISSUER) => validate_legacy(state, &claims, token).await,
        _ => return TokenSource::NotMine,
    };
    let mut auth = match checked {
        Ok(a) => a,
        Err(why) => return TokenSource::Invalid(why),
    };
    // Tokens without an audience (legacy ones) are meant for the API server itself.
    let token_auds = match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => api_audiences(),
    };
    let accepted: Vec<String> = token_auds
        .into_iter()
        .filter(|a| audiences.contains(a))
        .collect();
    if accepted.is_empty() {
        return TokenSource::Invalid("token audiences is invalid for the target audiences".into());
    }
    auth.audiences = accepted;
    TokenSource::User(auth)
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// True when an object's deletion started more than the leeway ago.
fn deleted(obj: &Value, now: i64) -> bool {
    obj["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() < now - LEEWAY_SECONDS)
}

async fn validate_bound(state: &ApiState, c: &Value, now: i64) -> Result<Authenticated, String> {
    let exp = c["exp"]
        .as_i64()
        .ok_or("service account token has no expiry")?;
    if now > exp + LEEWAY_SECONDS {
        return Err("service account token has expired".into());
    }
    if c["nbf"]
        .as_i64()
        .is_some_and(|nbf| now + LEEWAY_SECONDS < nbf)
    {
        return Err("service account token is not valid yet".into());
    }
    if c["iat"]
        .as_i64()
        .is_some_and(|iat| now + LEEWAY_SECONDS < iat)
    {
        return Err("service account token is issued in the future".into());
    }
    let k = &c["kubernetes.io"];
    let ns = str_of(k, "namespace");
    let sa_ref = &k["serviceaccount"];
    let (sa_name, sa_uid) = (str_of(sa_ref, "name"), str_of(sa_ref, "uid"));
    let sa = get_object(state, "serviceaccounts", Some(ns), sa_name, IDENTITY)
        .await
        .ok_or_else(|| format!("serviceaccounts \"{sa_name}\" not found"))?;
    let uid = str_of(&sa["metadata"], "uid");
    if uid != sa_uid {
        return Err(format!(
            "service account UID ({uid}) does not match claim ({sa_uid})"
        ));
    }
    if deleted(&sa, now) {
        return Err(format!("service account {ns}/{sa_name} has been deleted"));
    }
    let invalidated = || "service account token has been invalidated".to_owned();
    let mut extra = BTreeMap::new();
    if let Some(s) = k.get("secret").filter(|v| v.is_object()) {
        let obj = get_object(state, "secrets", Some(ns), str_of(s, "name"), IDENTITY)
            .await
            .ok_or_else(invalidated)?;
        let uid = str_of(&obj["metadata"], "uid");
        if uid != str_of(s, "uid") {
            return Err(format!(
                "secret UID ({uid}) does not match service account secret ref claim ({})",
                str_of(s, "uid")
            ));
        }
        if deleted(&obj, now) {
            return Err(invalidated());
        }
    }
    let pod = k.get("pod").filter(|v| v.is_object());
    if let Some(p) = pod {
        let obj = get_object(state, "pods", Some(ns), str_of(p, "name"), IDENTITY)
            .await
            .ok_or_else(invalidated)?;
        let uid = str_of(&obj["metadata"], "uid");
        if uid != str_of(p, "uid") {
            return Err(format!(
                "pod UID ({uid}) does not match service account pod ref claim ({})",
                str_of(p, "uid")
            ));
        }
        if deleted(&obj, now) {
            return Err(invalidated());
        }
        extra.insert(EXTRA_POD_NAME.into(), vec![str_of(p, "name").to_owned()]);
        extra.insert(EXTRA_POD_UID.into(), vec![str_of(p, "uid").to_owned()]);
    }
    if let Some(n) = k.get("node").filter(|v| v.is_object()) {
        // With a pod the node is informational; alone it is what the token is bound to.
        if pod.is_none() {
            let obj = get_object(state, "nodes", None, str_of(n, "name"), IDENTITY)
                .await
                .ok_or_else(invalidated)?;
            let uid = str_of(&obj["metadata"], "uid");
            if uid != str_of(n, "uid") {
                return Err(format!(
                    "node UID ({uid}) does not match service account node ref claim ({})",
                    str_of(n, "uid")
                ));
            }
            if deleted(&obj, now) {
                return Err(invalidated());
            }
        }
        extra.insert(EXTRA_NODE_NAME.into(), vec![str_of(n, "name").to_owned()]);
        extra.insert(EXTRA_NODE_UID.into(), vec![str_of(n, "uid").to_owned()]);
    }
    if let Some(jti) = c["jti"].as_str().filter(|j| !j.is_empty()) {
        extra.insert(EXTRA_CREDENTIAL_ID.into(), vec![format!("JTI={jti}")]);
    }
    Ok(Authenticated {
        user: sa_user(ns, sa_name, sa_uid, extra),
        expires: Some(exp),
        audiences: Vec::new(),
    })
}

async fn validate_legacy(
    state: &ApiState,
    c: &Value,
    token: &str,
) -> Result<Authenticated, String> {
    let claim = |k: &str| str_of(c, k);
    let ns = claim("kubernetes.io/serviceaccount/namespace");
    let secret_name = claim("kubernetes.io/serviceaccount/secret.name");
    let sa_name = claim("kubernetes.io/serviceaccount/service-account.name");
    let sa_uid = claim("kubernetes.io/serviceaccount/service-account.uid");
    if ns.is_empty() || secret_name.is_empty() || sa_name.is_empty() || sa_uid.is_empty() {
        return Err("token is missing a kubernetes.io/serviceaccount claim".into());
    }
    if claim("sub") != username(ns, sa_name) {
        return Err("sub claim is invalid".into());
    }
    let secret = get_object(
        state,
        "secrets",
        Some(ns),
        secret_name,
        &["metadata.deletionTimestamp", "data.token"],
    )
    .await
    .ok_or("Token has been invalidated")?;
    if !secret["metadata"]["deletionTimestamp"].is_null() {
        return Err("Token has been invalidated".into());
    }
    use base64::Engine;
    let stored = secret["data"]["token"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    if !super::static_token::constant_time_eq(&stored, token.as_bytes()) {
        return Err("Token does not match server's copy".into());
    }
    let sa = get_object(state, "serviceaccounts", Some(ns), sa_name, IDENTITY)
        .await
        .ok_or_else(|| format!("ServiceAccount {ns}/{sa_name} has been deleted"))?;
    let uid = str_of(&sa["metadata"], "uid");
    if uid != sa_uid {
        return Err(format!(
            "ServiceAccount UID ({uid}) does not match claim ({sa_uid})"
        ));
    }
    if !sa["metadata"]["deletionTimestamp"].is_null() {
        return Err(format!("ServiceAccount {ns}/{sa_name} has been deleted"));
    }
    Ok(Authenticated {
        user: sa_user(ns, sa_name, sa_uid, BTreeMap::new()),
        expires: None,
        audiences: Vec::new(),
    })
}

pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

fn sa_user(ns: &str, name: &str, uid: &str, extra: BTreeMap<String, Vec<String>>) -> UserInfo {
    UserInfo {
        name: username(ns, name),
        uid: uid.to_owned(),
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
        ],
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bound: Bound) -> Value {
        let auds = vec!["https://kubernetes.default.svc.cluster.local".to_string()];
        claims(&TokenSpec {
            namespace: "ns1",
            service_account: ObjRef {
                name: "default".into(),
                uid: "sa-uid".into(),
            },
            bound,
            audiences: &auds,
            issued_at: 1_700_000_000,
            expiration_seconds: 3600,
            warn_after_seconds: 0,
            jti: "j-1".into(),
        })
    }

    #[test]
    fn bound_claims_have_upstreams_shape() {
        let pod = ObjRef {
            name: "p".into(),
            uid: "pod-uid".into(),
        };
        let node = ObjRef {
            name: "n".into(),
            uid: "node-uid".into(),
        };
        let c = spec(Bound::Pod {
            pod,
            node: Some(node),
        });
        assert_eq!(
            c,
            json!({
                "aud": ["https://kubernetes.default.svc.cluster.local"],
                "exp": 1_700_003_600i64, "iat": 1_700_000_000i64, "nbf": 1_700_000_000i64,
                "iss": "https://kubernetes.default.svc.cluster.local",
                "jti": "j-1",
                "sub": "system:serviceaccount:ns1:default",
                "kubernetes.io": {
                    "namespace": "ns1",
                    "serviceaccount": {"name": "default", "uid": "sa-uid"},
                    "pod": {"name": "p", "uid": "pod-uid"},
                    "node": {"name": "n", "uid": "node-uid"},
                }
            })
        );
        let c = spec(Bound::Nothing);
        assert!(c["kubernetes.io"].get("pod").is_none());
        assert!(c["kubernetes.io"].get("warnafter").is_none());
    }

    #[test]
    fn legacy_claims_have_upstreams_shape() {
        let sa = ObjRef {
            name: "build".into(),
            uid: "u".into(),
        };
        let c = legacy_claims("ci", &sa, "build-token");
        assert_eq!(c["iss"], "kubernetes/serviceaccount");
        assert_eq!(c["sub"], "system:serviceaccount:ci:build");
        assert_eq!(c["kubernetes.io/serviceaccount/secret.name"], "build-token");
        assert_eq!(c["kubernetes.io/serviceaccount/service-account.uid"], "u");
    }
}
