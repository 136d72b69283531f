//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`; the `Impersonate-User`,
//! `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-<key>` headers), as
//! upstream's impersonation filter: each requested part is authorized as the `impersonate`
//! verb on `users`, `groups`, `serviceaccounts`, `uids` or `userextras/<key>`, and the request
//! then runs as the impersonated user.
//!
//! Invariant: a request without impersonation headers costs one header lookup per name; a
//! refused part answers 403 with upstream's text and nothing of the request runs.

use super::auth::{forbidden_message, Attributes, Authorizer, Decision, UserInfo};
use super::status::ApiError;
use http::HeaderMap;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Whether the request asks to impersonate anyone (cheap: the common case is no).
pub fn requested(headers: &HeaderMap) -> bool {
    headers.contains_key(USER)
        || headers.contains_key(GROUP)
        || headers.contains_key(UID)
        || headers.keys().any(|k| k.as_str().starts_with(EXTRA_PREFIX))
}

/// The user the request runs as: `requestor` authorized to impersonate everything asked.
pub fn impersonate(
    authorizer: &dyn Authorizer,
    requestor: &UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let text = |v: &http::HeaderValue| v.to_str().unwrap_or_default().to_owned();
    let name = headers.get(USER).map(text).filter(|s| !s.is_empty());
    let groups: Vec<String> = headers.get_all(GROUP).iter().map(text).collect();
    let uid = headers.get(UID).map(text).filter(|s| !s.is_empty());
    let mut extra: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix(EXTRA_PREFIX) {
            let key = percent_decode(key);
            extra.entry(key).or_default().push(text(v));
        }
    }
    let Some(name) = name else {
        return Err(ApiError::bad_request(format!(
            "requested {} without impersonating a user",
            describe(&groups, &extra, uid.as_deref())
        )));
    };
    let check =
        |resource: &str, group: &str, namespace: Option<&str>, name: &str, sub: Option<&str>| {
            let attrs = Attributes {
                verb: "impersonate",
                group,
                resource,
                subresource: sub,
                namespace,
                name: Some(name),
                field_selector: None,
            };
            match authorizer.authorize(requestor, &attrs) {
                Decision::Allow => Ok(()),
                Decision::Deny(reason) => Err(ApiError::forbidden_resource(
                    group,
                    resource,
                    name,
                    &forbidden_message(requestor, &attrs, &reason),
                )),
            }
        };
    let mut new_groups = Vec::new();
    match service_account(&name) {
        Some((ns, sa)) => {
            check("serviceaccounts", "", Some(ns), sa, None)?;
            if groups.is_empty() {
                new_groups = vec![
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
        None => check("users", "", None, &name, None)?,
    }
    for g in &groups {
        check("groups", "", None, g, None)?;
        new_groups.push(g.clone());
    }
    for (k, values) in &extra {
        for v in values {
            check("userextras", "authentication.k8s.io", None, v, Some(k))?;
        }
    }
    if let Some(u) = &uid {
        check("uids", "authentication.k8s.io", None, u, None)?;
    }
    if name == "system:anonymous" {
        if !new_groups.iter().any(|g| g == "system:unauthenticated") {
            new_groups.push("system:unauthenticated".to_owned());
        }
    } else if !new_groups
        .iter()
        .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        new_groups.push("system:authenticated".to_owned());
    }
    Ok(UserInfo {
        name,
        uid: uid.unwrap_or_default(),
        groups: new_groups,
        extra,
    })
}

/// `system:serviceaccount:NS:NAME` → (NS, NAME).
fn service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

fn describe(
    groups: &[String],
    extra: &std::collections::BTreeMap<String, Vec<String>>,
    uid: Option<&str>,
) -> String {
    let mut parts: Vec<String> = groups.iter().map(|g| format!("{{Group {g}}}")).collect();
    for (k, vs) in extra {
        parts.extend(vs.iter().map(|v| format!("{{UserExtra {v} {k}}}")));
    }
    parts.extend(uid.map(|u| format!("{{UID {u}}}")));
    format!("[{}]", parts.join(" "))
}

/// Extra keys travel percent-encoded in header names (`Impersonate-Extra-Foo%2fbar`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allows `alice` to impersonate the user `bob` and the group `devs` only.
    struct OnlyBob;
    impl Authorizer for OnlyBob {
        fn authorize(&self, user: &UserInfo, a: &Attributes<'_>) -> Decision {
            let ok = user.name == "alice"
                && a.verb == "impersonate"
                && matches!(
                    (a.resource, a.name),
                    ("users", Some("bob")) | ("groups", Some("devs"))
                );
            if ok {
                Decision::Allow
            } else {
                Decision::Deny(String::new())
            }
        }
        fn authorize_non_resource(&self, _: &UserInfo, _: &str, _: &str) -> Decision {
            Decision::Deny(String::new())
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn an_allowed_impersonation_runs_as_the_user_with_authenticated_added() {
        let alice = UserInfo::new("alice", &[]);
        let h = headers(&[("Impersonate-User", "bob"), ("Impersonate-Group", "devs")]);
        assert!(requested(&h));
        let u = impersonate(&OnlyBob, &alice, &h).unwrap();
        assert_eq!(u.name, "bob");
        assert_eq!(u.groups, vec!["devs", "system:authenticated"]);
    }

    #[test]
    fn a_refused_impersonation_is_403_with_upstreams_text() {
        let alice = UserInfo::new("alice", &[]);
        let e =
            impersonate(&OnlyBob, &alice, &headers(&[("Impersonate-User", "carol")])).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"users "carol" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let e = impersonate(
            &OnlyBob,
            &alice,
            &headers(&[("Impersonate-User", "system:serviceaccount:ns1:robot")]),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            r#"serviceaccounts "robot" is forbidden: User "alice" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "ns1""#
        );
    }

    #[test]
    fn groups_without_a_user_are_a_bad_request() {
        let e = impersonate(
            &OnlyBob,
            &UserInfo::new("alice", &[]),
            &headers(&[("Impersonate-Group", "devs")]),
        )
        .unwrap_err();
        assert_eq!(e.code, 400);
        assert!(!requested(&HeaderMap::new()));
        assert_eq!(percent_decode("foo%2fbar"), "foo/bar");
    }
}
