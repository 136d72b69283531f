//! Who a request is ([`UserInfo`], established by [`super::authn`]) and authorization.
//!
//! Invariant: every request has an identity before routing (possibly `system:anonymous`,
//! which the authorizers allow only upstream's public endpoints). The [`Authorizer`] trait is the seam the
//! authorizers of `crate::authz` (Node, RBAC) implement; the texts of a refusal are
//! upstream's and built here, once.

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

/// What a request wants to do, for authorization (upstream's `authorizer.Attributes` of a
/// resource request). `verb` is the API verb (`get`, `list`, ...) or an RBAC-only one
/// (`escalate`, `bind`, `impersonate`, `approve`, ...).
#[derive(Debug, Clone, Copy, Default)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The raw `fieldSelector` of a list or watch (the Node authorizer lets a node list
    /// only the pods selected by `spec.nodeName=<itself>`).
    pub field_selector: Option<&'a str>,
}

/// An authorizer's answer. `Deny` carries the reason (often empty: no rule allowed it), which
/// follows upstream's fixed text in a 403.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

/// The rules that apply to a user in one namespace (SelfSubjectRulesReview, escalation
/// checks).
#[derive(Debug, Default, Clone)]
pub struct SubjectRules {
    pub rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
    /// Some authorizer could not list its rules (upstream's `incomplete`).
    pub incomplete: bool,
    /// Why, when `incomplete` (upstream's `evaluationError`).
    pub evaluation_error: Option<String>,
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision;
    /// A request for a path outside the resource API (`/healthz`, `/version`, `/`).
    fn authorize_non_resource(&self, user: &UserInfo, verb: &str, path: &str) -> Decision;
    /// Every rule granted to `user` in `namespace` (cluster-wide ones included).
    fn rules_for(&self, _user: &UserInfo, _namespace: &str) -> SubjectRules {
        SubjectRules {
            rules: Vec::new(),
            incomplete: true,
            evaluation_error: Some("this authorizer does not list rules".to_owned()),
        }
    }
}

/// Upstream's `system:masters`: holds every permission, never consults RBAC.
pub const MASTERS_GROUP: &str = "system:masters";

/// Identities of the in-process control plane.
pub const CONTROL_PLANE_USERS: &[&str] = &[CONTROLLER_MANAGER_USER, SCHEDULER_USER];
/// The identity controllers act as.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// The identity the scheduler acts as.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";

/// The authorizer a server starts with, until its RBAC caches have synced (and the one unit
/// tests of the handlers run with): `system:masters` and the in-process control plane may do
/// anything, everyone else is forbidden.
pub struct MastersAuthorizer;

impl Authorizer for MastersAuthorizer {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision {
        if user.in_group(MASTERS_GROUP) || CONTROL_PLANE_USERS.contains(&user.name.as_str()) {
            return Decision::Allow;
        }
        // Every identity may ask about itself (upstream's system:basic-user).
        if attrs.group == "authorization.k8s.io"
            && attrs.verb == "create"
            && matches!(
                attrs.resource,
                "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
            )
        {
            return Decision::Allow;
        }
        Decision::Deny(String::new())
    }

    /// Discovery, version and OpenAPI are every identity's (upstream's system:discovery).
    fn authorize_non_resource(&self, _user: &UserInfo, _verb: &str, _path: &str) -> Decision {
        Decision::Allow
    }
}

/// Upstream's 403 text for a refused resource request (`responsewriters.forbiddenMessage`):
/// `User "bob" cannot list resource "pods" in API group "" in the namespace "default"`,
/// followed by `: reason` when the authorizer gave one.
pub fn forbidden_message(user: &UserInfo, attrs: &Attributes<'_>, reason: &str) -> String {
    let res = match attrs.subresource.filter(|s| !s.is_empty()) {
        Some(s) => format!("{}/{}", attrs.resource, s),
        None => attrs.resource.to_owned(),
    };
    let scope = match attrs.namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_owned(),
    };
    let msg = format!(
        "User {:?} cannot {} resource {res:?} in API group {:?} {scope}",
        user.name, attrs.verb, attrs.group
    );
    if reason.is_empty() {
        msg
    } else {
        format!("{msg}: {reason}")
    }
}

/// Upstream's 403 text for a refused non-resource request.
pub fn forbidden_path_message(user: &UserInfo, verb: &str, path: &str, reason: &str) -> String {
    let msg = format!("User {:?} cannot {verb} path {path:?}", user.name);
    if reason.is_empty() {
        msg
    } else {
        format!("{msg}: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_masters_and_the_control_plane_are_allowed() {
        let attrs = Attributes {
            verb: "list",
            group: "",
            resource: "pods",
            subresource: None,
            namespace: Some("default"),
            name: None,
            field_selector: None,
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
        assert_eq!(
            MastersAuthorizer.authorize(&bob, &attrs),
            Decision::Deny(String::new())
        );
        assert_eq!(
            forbidden_message(&bob, &attrs, ""),
            r#"User "bob" cannot list resource "pods" in API group "" in the namespace "default""#
        );
    }
}
