//! The subject → rules index RBAC decisions are made from: for each user and group, the rule
//! lists its ClusterRoleBindings grant cluster-wide, and per namespace those its
//! RoleBindings grant. Rebuilt whole from the informer caches when any role or binding
//! changes, so a decision is a handful of hash lookups and a scan of the caller's rules.
//!
//! Invariant: an index is immutable once built; readers hold an `Arc` of the current one and
//! a rebuild swaps in a new one. A binding whose role does not exist (yet) grants nothing.

use super::rbac::{rule_allows, Request};
use crate::apiserver::UserInfo;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use std::collections::HashMap;
use std::sync::Arc;

type Rules = Arc<[PolicyRule]>;

/// The rules granted to users and groups in one scope (cluster-wide or one namespace).
#[derive(Default, Debug)]
struct Scope {
    users: HashMap<String, Vec<Rules>>,
    groups: HashMap<String, Vec<Rules>>,
}

impl Scope {
    fn add(&mut self, subject: &Subject, binding_ns: Option<&str>, rules: &Rules) {
        let (map, key) = match subject.kind.as_str() {
            "User" => (&mut self.users, subject.name.clone()),
            "Group" => (&mut self.groups, subject.name.clone()),
            "ServiceAccount" => {
                // A RoleBinding's service account defaults to the binding's namespace.
                let ns = subject
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .or(binding_ns)
                    .unwrap_or_default();
                (
                    &mut self.users,
                    format!("system:serviceaccount:{ns}:{}", subject.name),
                )
            }
            _ => return,
        };
        map.entry(key).or_default().push(rules.clone());
    }

    /// Every rule list that applies to `user` in this scope.
    fn each<'a>(&'a self, user: &'a UserInfo) -> impl Iterator<Item = &'a Rules> + 'a {
        let by_name = self.users.get(&user.name).into_iter().flatten();
        let by_group = user
            .groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flatten();
        by_name.chain(by_group)
    }
}

/// An immutable snapshot of who is granted what.
#[derive(Default, Debug)]
pub struct Index {
    cluster: Scope,
    namespaces: HashMap<String, Scope>,
}

impl Index {
    /// Builds the index from the current roles and bindings.
    pub fn build(
        cluster_roles: &[Arc<ClusterRole>],
        roles: &[Arc<Role>],
        cluster_bindings: &[Arc<ClusterRoleBinding>],
        bindings: &[Arc<RoleBinding>],
    ) -> Index {
        let cluster_rules: HashMap<&str, Rules> = cluster_roles
            .iter()
            .filter_map(|r| {
                let name = r.metadata.name.as_deref()?;
                Some((name, r.rules.clone().unwrap_or_default().into()))
            })
            .collect();
        let role_rules: HashMap<(&str, &str), Rules> = roles
            .iter()
            .filter_map(|r| {
                let ns = r.metadata.namespace.as_deref()?;
                let name = r.metadata.name.as_deref()?;
                Some(((ns, name), r.rules.clone().unwrap_or_default().into()))
            })
            .collect();
        let mut index = Index::default();
        for b in cluster_bindings {
            if b.role_ref.kind != "ClusterRole" {
                continue;
            }
            let Some(rules) = cluster_rules.get(b.role_ref.name.as_str()) else {
                continue;
            };
            for s in b.subjects.iter().flatten() {
                index.cluster.add(s, None, rules);
            }
        }
        for b in bindings {
            let Some(ns) = b.metadata.namespace.as_deref() else {
                continue;
            };
            let Some(rules) = resolve(&b.role_ref, ns, &cluster_rules, &role_rules) else {
                continue;
            };
            let scope = index.namespaces.entry(ns.to_owned()).or_default();
            for s in b.subjects.iter().flatten() {
                scope.add(s, Some(ns), rules);
            }
        }
        index
    }

    /// Whether any rule granted to `user` (cluster-wide, or in `namespace`) allows `req`.
    pub fn allows(&self, user: &UserInfo, namespace: Option<&str>, req: &Request<'_>) -> bool {
        let mut lists = self.cluster.each(user).chain(
            namespace
                .and_then(|ns| self.namespaces.get(ns))
                .into_iter()
                .flat_map(|s| s.each(user)),
        );
        lists.any(|rules| rules.iter().any(|r| rule_allows(r, req)))
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide ones included), as
    /// SelfSubjectRulesReview and escalation checks need them.
    pub fn rules_for(&self, user: &UserInfo, namespace: Option<&str>) -> Vec<PolicyRule> {
        let mut out: Vec<PolicyRule> = Vec::new();
        let scoped = namespace
            .filter(|ns| !ns.is_empty())
            .and_then(|ns| self.namespaces.get(ns));
        for rules in self
            .cluster
            .each(user)
            .chain(scoped.into_iter().flat_map(|s| s.each(user)))
        {
            for r in rules.iter() {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
        out
    }
}

fn resolve<'a>(
    role_ref: &'a RoleRef,
    ns: &'a str,
    cluster_rules: &'a HashMap<&'a str, Rules>,
    role_rules: &'a HashMap<(&'a str, &'a str), Rules>,
) -> Option<&'a Rules> {
    match role_ref.kind.as_str() {
        "ClusterRole" => cluster_rules.get(role_ref.name.as_str()),
        "Role" => role_rules.get(&(ns, role_ref.name.as_str())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(Into::into),
            ..ObjectMeta::default()
        }
    }

    fn pods_reader() -> PolicyRule {
        PolicyRule {
            verbs: vec!["get".into()],
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["pods".into()]),
            ..PolicyRule::default()
        }
    }

    fn subject(kind: &str, name: &str, ns: Option<&str>) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(Into::into),
            ..Subject::default()
        }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    const GET_PODS: Request<'static> = Request::Resource {
        verb: "get",
        group: "",
        resource: "pods",
        subresource: None,
        name: None,
    };

    #[test]
    fn role_bindings_grant_only_in_their_namespace() {
        let roles = vec![Arc::new(Role {
            metadata: meta(Some("a"), "reader"),
            rules: Some(vec![pods_reader()]),
        })];
        let bindings = vec![Arc::new(RoleBinding {
            metadata: meta(Some("a"), "bob-reads"),
            role_ref: role_ref("Role", "reader"),
            subjects: Some(vec![
                subject("User", "bob", None),
                subject("ServiceAccount", "robot", None),
            ]),
        })];
        let idx = Index::build(&[], &roles, &[], &bindings);
        let bob = UserInfo::new("bob", &[]);
        assert!(idx.allows(&bob, Some("a"), &GET_PODS));
        assert!(!idx.allows(&bob, Some("b"), &GET_PODS));
        assert!(!idx.allows(&bob, None, &GET_PODS));
        let sa = UserInfo::new("system:serviceaccount:a:robot", &[]);
        assert!(
            idx.allows(&sa, Some("a"), &GET_PODS),
            "SA defaults to the binding's namespace"
        );
        assert!(!idx.allows(&UserInfo::new("alice", &[]), Some("a"), &GET_PODS));
    }

    #[test]
    fn cluster_bindings_grant_everywhere_and_groups_match() {
        let crs = vec![Arc::new(ClusterRole {
            metadata: meta(None, "pod-reader"),
            rules: Some(vec![pods_reader()]),
            ..ClusterRole::default()
        })];
        let crbs = vec![Arc::new(ClusterRoleBinding {
            metadata: meta(None, "devs"),
            role_ref: role_ref("ClusterRole", "pod-reader"),
            subjects: Some(vec![subject("Group", "devs", None)]),
        })];
        let idx = Index::build(&crs, &[], &crbs, &[]);
        let dev = UserInfo::new("carol", &["devs"]);
        assert!(idx.allows(&dev, Some("any"), &GET_PODS));
        assert!(idx.allows(&dev, None, &GET_PODS));
        assert!(!idx.allows(&UserInfo::new("carol", &[]), None, &GET_PODS));
        assert_eq!(idx.rules_for(&dev, Some("x")), vec![pods_reader()]);
    }

    #[test]
    fn a_binding_to_a_missing_role_grants_nothing_until_the_role_appears() {
        let rbs = vec![Arc::new(RoleBinding {
            metadata: meta(Some("a"), "b"),
            role_ref: role_ref("ClusterRole", "later"),
            subjects: Some(vec![subject("User", "bob", None)]),
        })];
        let bob = UserInfo::new("bob", &[]);
        let idx = Index::build(&[], &[], &[], &rbs);
        assert!(!idx.allows(&bob, Some("a"), &GET_PODS));
        let crs = vec![Arc::new(ClusterRole {
            metadata: meta(None, "later"),
            rules: Some(vec![pods_reader()]),
            ..ClusterRole::default()
        })];
        let idx = Index::build(&crs, &[], &[], &rbs);
        assert!(
            idx.allows(&bob, Some("a"), &GET_PODS),
            "rebuilt index sees the role"
        );
        assert!(!idx.allows(&bob, Some("b"), &GET_PODS));
    }
}
