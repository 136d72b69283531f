//! Who a request is ([`UserInfo`], established by [`super::authn`]) and authorization.
//!
//! Invariant: every request has an identity before routing (possibly `system:anonymous`).
//! The [`Authorizer`] trait is the seam where node identities and RBAC plug in later.

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
}
