//! Bootstrap tokens (`<id>.<secret>`, 6 + 16 characters of `[a-z0-9]`), upstream's
//! `plugin/pkg/auth/authenticator/token/bootstrap`: the token names the Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`, whose
//! `token-secret` must match, whose `expiration` must not have passed and which must carry
//! `usage-bootstrap-authentication: "true"`. The user is `system:bootstrap:<id>` in
//! `system:bootstrappers` plus the Secret's `auth-extra-groups`.
//!
//! Invariant: any mismatch means "not a token of this authenticator" (the chain then
//! answers 401), never an identity.

use super::static_token::constant_time_eq;
use super::{Authenticated, TokenSource};
use crate::apiserver::auth::UserInfo;
use crate::apiserver::ApiState;
use base64::Engine;
use serde_json::Value;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const GROUP: &str = "system:bootstrappers";
pub const USER_PREFIX: &str = "system:bootstrap:";

/// Splits a token of the bootstrap shape into (id, secret).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// Authenticates a bootstrap-shaped token against its Secret.
pub async fn authenticate(state: &ApiState, token: &str) -> TokenSource {
    let Some((id, secret)) = parse(token) else {
        return TokenSource::NotMine;
    };
    let name = format!("{SECRET_PREFIX}{id}");
    match super::get_object(state, "secrets", Some("kube-system"), &name, &[]).await {
        Some(obj) => check(&obj, id, secret, chrono::Utc::now()),
        None => TokenSource::Invalid(format!("secret kube-system/{name} not found")),
    }
}

/// The identity a bootstrap token Secret grants for `id.secret` at `now`.
pub fn check(
    obj: &Value,
    id: &str,
    secret: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> TokenSource {
    let invalid = |why: &str| TokenSource::Invalid(format!("bootstrap token {id}: {why}"));
    if obj["type"] != SECRET_TYPE {
        return invalid("secret has the wrong type");
    }
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return invalid("secret is being deleted");
    }
    let data = |k: &str| -> String {
        obj["data"][k]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    if !constant_time_eq(data("token-secret").as_bytes(), secret.as_bytes()) {
        return invalid("invalid token-secret");
    }
    if data("token-id") != id {
        return invalid("invalid token-id");
    }
    let expires = match data("expiration").as_str() {
        "" => None,
        e => match chrono::DateTime::parse_from_rfc3339(e) {
            Ok(t) if t < now => return invalid("expired"),
            Ok(t) => Some(t.timestamp()),
            // Upstream treats an unparseable expiration as expired.
            Err(_) => return invalid("expired"),
        },
    };
    if data("usage-bootstrap-authentication") != "true" {
        return invalid("not marked usage-bootstrap-authentication=true");
    }
    let mut groups = vec![GROUP.to_owned()];
    for g in data("auth-extra-groups").split(',').map(str::trim) {
        if g.is_empty() {
            continue;
        }
        if !valid_extra_group(g) {
            return invalid(&format!("auth-extra-groups: {g:?} is not a valid group"));
        }
        if !groups.iter().any(|x| x == g) {
            groups.push(g.to_owned());
        }
    }
    TokenSource::User(Authenticated {
        user: UserInfo {
            name: format!("{USER_PREFIX}{id}"),
            groups,
            ..UserInfo::default()
        },
        expires,
        audiences: Vec::new(),
    })
}

/// `^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$`
fn valid_extra_group(g: &str) -> bool {
    let Some(rest) = g.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !rest.is_empty()
        && rest.len() <= 256
        && rest.bytes().all(|b| ok(b) || b == b':' || b == b'-')
        && rest.bytes().last().is_some_and(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: Option<&str>, usage: &str, extra: &str) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"),
            "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64(usage),
            "auth-extra-groups": b64(extra),
        });
        if let Some(e) = expiration {
            data["expiration"] = json!(b64(e));
        }
        json!({"type": SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef"}, "data": data})
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn token_shape_is_six_dot_sixteen_lowercase_alphanumerics() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert_eq!(parse("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse("abcde.0123456789abcdef"), None);
        assert_eq!(parse("abcdef.0123456789abcde"), None);
        assert_eq!(parse("abcdef0123456789abcdef"), None);
        assert_eq!(parse("a.b.c"), None);
    }

    #[test]
    fn valid_secret_grants_bootstrap_user_and_groups() {
        let s = secret(
            Some("2026-01-02T00:00:00Z"),
            "true",
            "system:bootstrappers:worker,system:bootstrappers:worker",
        );
        match check(&s, "abcdef", "0123456789abcdef", now()) {
            TokenSource::User(a) => {
                assert_eq!(a.user.name, "system:bootstrap:abcdef");
                assert_eq!(
                    a.user.groups,
                    ["system:bootstrappers", "system:bootstrappers:worker"]
                );
                assert_eq!(a.expires, Some(now().timestamp() + 86400));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_wrong_secret_unmarked_or_bad_groups_are_refused() {
        let refused = |s: &Value, secret: &str| {
            matches!(check(s, "abcdef", secret, now()), TokenSource::Invalid(_))
        };
        assert!(refused(
            &secret(Some("2025-12-31T23:59:59Z"), "true", ""),
            "0123456789abcdef"
        ));
        assert!(refused(
            &secret(Some("garbage"), "true", ""),
            "0123456789abcdef"
        ));
        assert!(refused(&secret(None, "true", ""), "0123456789abcdeX"));
        assert!(refused(&secret(None, "false", ""), "0123456789abcdef"));
        assert!(refused(
            &secret(None, "true", "system:masters"),
            "0123456789abcdef"
        ));
        let mut wrong_type = secret(None, "true", "");
        wrong_type["type"] = json!("Opaque");
        assert!(refused(&wrong_type, "0123456789abcdef"));
        assert!(!refused(&secret(None, "true", ""), "0123456789abcdef"));
    }
}
