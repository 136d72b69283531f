//! Authentication (client certificates, bearer tokens) and authorization.
//!
//! Invariant: every request has an identity before routing; anonymous requests are refused
//! except for the health and CA endpoints. The [`Authorizer`] trait is the seam where node
//! identities and RBAC plug in later.

use super::request::Verb;

/// Who is making a request (upstream's `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// A unique id for the user when the authenticator has one (a service account's UID).
    pub uid: String,
    pub groups: Vec<String>,
    /// Authenticator-specific facts (`authentication.kubernetes.io/pod-name`, ...).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_owned(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// This user as a strategy that records its requester sees it.
    pub fn requester(&self) -> crate::api::requester::Requester {
        crate::api::requester::Requester {
            name: self.name.clone(),
            uid: String::new(),
            groups: self.groups.clone(),
            extra: Default::default(),
        }
    }
}

/// Static bearer tokens (the admin token file).
pub struct TokenAuthenticator {
    tokens: Vec<(String, UserInfo)>,
}

impl TokenAuthenticator {
    pub fn new(tokens: Vec<(String, UserInfo)>) -> TokenAuthenticator {
        TokenAuthenticator { tokens }
    }

    /// Looks a bearer token up in constant time per candidate.
    pub fn authenticate(&self, authorization: &str) -> Option<UserInfo> {
        let token = authorization.strip_prefix("Bearer ")?.trim();
        self.tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, u)| u.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request wants to do, for authorization.
#[derive(Debug)]
pub struct Attributes<'a> {
    pub verb: Verb,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision;
    /// A request for a path outside the resource API (`/healthz`, `/version`, `/`), as
    /// SelfSubjectAccessReviews ask about.
    fn authorize_non_resource(&self, user: &UserInfo, verb: &str, path: &str) -> Decision;
}

/// Identities of the in-process control plane, allowed everything until RBAC lands (upstream
/// grants them broad bootstrap ClusterRoles; the identity issue replaces this list with those).
pub const CONTROL_PLANE_USERS: &[&str] = &[CONTROLLER_MANAGER_USER, SCHEDULER_USER];
/// The identity controllers act as.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// The identity the scheduler acts as.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";

/// For now `system:masters` and the control-plane identities may do anything; everyone else
/// (nodes included) is forbidden.
pub struct MastersAuthorizer;

impl Authorizer for MastersAuthorizer {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision {
        if user.in_group("system:masters") || CONTROL_PLANE_USERS.contains(&user.name.as_str()) {
            return Decision::Allow;
        }
        let res = match attrs.subresource {
            Some(s) => format!("{}/{}", attrs.resource, s),
            None => attrs.resource.to_owned(),
        };
        let group = if attrs.group.is_empty() {
            "the core API group".to_owned()
        } else {
            format!("API group \"{}\"", attrs.group)
        };
        let scope = match attrs.namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_owned(),
        };
        Decision::Deny(format!(
            "{res}{} is forbidden: User \"{}\" cannot {} resource \"{res}\" in {group}{scope}",
            attrs.name.map(|n| format!(" \"{n}\"")).unwrap_or_default(),
            user.name,
            attrs.verb.as_str(),
        ))
    }

    fn authorize_non_resource(&self, user: &UserInfo, verb: &str, path: &str) -> Decision {
        if user.in_group("system:masters") || CONTROL_PLANE_USERS.contains(&user.name.as_str()) {
            return Decision::Allow;
        }
        Decision::Deny(format!(
            "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
            user.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_masters_and_the_control_plane_are_allowed() {
        let attrs = Attributes {
            verb: Verb::List,
            group: "",
            resource: "pods",
            subresource: None,
            namespace: Some("default"),
            name: None,
        };
        let admin = UserInfo::new("system:admin", &["system:masters"]);
        let bob = UserInfo::new("bob", &[]);
        let kcm = UserInfo::new(CONTROLLER_MANAGER_USER, &[]);
        let node = UserInfo::new("system:node:n1", &["system:nodes"]);
        assert_eq!(MastersAuthorizer.authorize(&admin, &attrs), Decision::Allow);
        assert_eq!(MastersAuthorizer.authorize(&kcm, &attrs), Decision::Allow);
        assert!(matches!(
            MastersAuthorizer.authorize(&node, &attrs),
            Decision::Deny(_)
        ));
        match MastersAuthorizer.authorize(&bob, &attrs) {
            Decision::Deny(m) => assert!(m.contains("User \"bob\" cannot list resource \"pods\"")),
            Decision::Allow => panic!("bob must be denied"),
        }
    }

    #[test]
    fn bearer_tokens_map_to_users() {
        let a = TokenAuthenticator::new(vec![(
            "s3cret".into(),
            UserInfo::new("admin", &["system:masters"]),
        )]);
        assert_eq!(a.authenticate("Bearer s3cret").unwrap().name, "admin");
        assert!(a.authenticate("Bearer nope").is_none());
        assert!(a.authenticate("Basic s3cret").is_none());
    }
}
