//! Upstream's bootstrap RBAC policy (kube-apiserver's `rbac/bootstrap-roles` post-start hook):
//! the default ClusterRoles (cluster-admin, admin, edit, view, system:discovery, system:node,
//! ...), one `system:controller:*` role per controller, their bindings, and the few
//! namespaced roles of kube-system and kube-public, created and reconciled at every start.
//!
//! The data is upstream's own generated expectation (`bootstrappolicy/testdata/*.yaml` of
//! v1.36, less the OpenShift-only `system:openshift:*` entries; no role differs from v1.35),
//! kept beside this file in `policy/` and compiled in.
//!
//! Reconciling (upstream's `reconciliation.ReconcileRole`/`ReconcileRoleBinding`): a missing
//! object is created; one annotated `rbac.authorization.kubernetes.io/autoupdate: "false"`
//! is left alone; otherwise missing labels, annotations, rules (those the existing rules do
//! not cover), aggregation selectors and subjects are added, and nothing a user added is
//! removed. A binding whose roleRef differs is recreated (roleRef is immutable).
//!
//! Invariant: runs through a kube client with the privileged loopback identity, so every
//! write passes validation exactly as a user's would.

use super::rbac::uncovered;
use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Annotation that stops reconciliation of one object.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the compiled-in bootstrap policy {file} does not parse: {why}")]
    Parse { file: &'static str, why: String },
    #[error("reconciling {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// The whole default policy.
pub struct Policy {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
}

#[derive(serde::Deserialize)]
struct List<T> {
    items: Vec<T>,
}

fn parse<T: DeserializeOwned>(file: &'static str, text: &str) -> Result<Vec<T>, PolicyError> {
    let err = |why: String| PolicyError::Parse { file, why };
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))?;
    let list: List<T> = serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
    Ok(list.items)
}

/// Parses the compiled-in policy.
pub fn policy() -> Result<Policy, PolicyError> {
    macro_rules! file {
        ($name:literal) => {
            parse($name, include_str!(concat!("policy/", $name)))?
        };
    }
    let mut cluster_roles: Vec<ClusterRole> = file!("cluster-roles.yaml");
    cluster_roles.extend(file!("controller-roles.yaml") as Vec<ClusterRole>);
    let mut cluster_role_bindings: Vec<ClusterRoleBinding> = file!("cluster-role-bindings.yaml");
    cluster_role_bindings.extend(file!("controller-role-bindings.yaml") as Vec<ClusterRoleBinding>);
    // Not upstream's policy but kubeadm's: what lets a host join with a token.
    cluster_role_bindings.extend(super::join_bindings::bindings());
    Ok(Policy {
        cluster_roles,
        cluster_role_bindings,
        roles: file!("namespace-roles.yaml"),
        role_bindings: file!("namespace-role-bindings.yaml"),
    })
}

impl Policy {
    /// The rules of `system:node`, which the Node authorizer applies to what its graph does
    /// not subdivide.
    pub fn node_rules(&self) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
        self.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("system:node"))
            .and_then(|r| r.rules.clone())
            .unwrap_or_default()
    }
}

/// What one reconcile did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Left alone because of `autoupdate: "false"`.
    pub skipped: usize,
}

/// Creates and reconciles the whole policy.
pub async fn reconcile(client: &Client, policy: &Policy) -> Result<Outcome, PolicyError> {
    let mut out = Outcome::default();
    let cr = (
        (|c: &Client, _: &str| Api::all(c.clone())) as fn(&Client, &str) -> Api<ClusterRole>,
        merge_cluster_role as Merge<_>,
    );
    let crb = (
        (|c: &Client, _: &str| Api::all(c.clone())) as fn(&Client, &str) -> Api<ClusterRoleBinding>,
        merge_cluster_binding as Merge<_>,
    );
    let r = (
        (|c: &Client, ns: &str| Api::namespaced(c.clone(), ns)) as fn(&Client, &str) -> Api<Role>,
        merge_role as Merge<_>,
    );
    let rb = (
        (|c: &Client, ns: &str| Api::namespaced(c.clone(), ns))
            as fn(&Client, &str) -> Api<RoleBinding>,
        merge_binding as Merge<_>,
    );
    reconcile_kind(client, &policy.cluster_roles, cr, &mut out).await?;
    reconcile_kind(client, &policy.roles, r, &mut out).await?;
    reconcile_kind(client, &policy.cluster_role_bindings, crb, &mut out).await?;
    reconcile_kind(client, &policy.role_bindings, rb, &mut out).await?;
    Ok(out)
}

/// The reconciled object, `None` when `existing` already holds everything of `expected`;
/// `Err(())` when it must be recreated.
type Merge<K> = fn(&K, &K) -> Result<Option<K>, ()>;
/// How one kind is reached (by namespace) and merged.
type Handlers<K> = (fn(&Client, &str) -> Api<K>, Merge<K>);

async fn reconcile_kind<K>(
    client: &Client,
    expected: &[K],
    (api_for, merge): Handlers<K>,
    out: &mut Outcome,
) -> Result<(), PolicyError>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api_err = |what: String| move |source| PolicyError::Api { what, source };
    let api_err = &api_err;
    let all: Api<K> = Api::all(client.clone());
    let existing: BTreeMap<(String, String), K> = all
        .list(&ListParams::default())
        .await
        .map_err(api_err(K::plural(&()).into_owned()))?
        .items
        .into_iter()
        .map(|k| (key(k.meta()), k))
        .collect();
    // Writes go out concurrently: each is durable before it is acknowledged, and the
    // store commits concurrent writes together (a first start creates ~200 objects).
    let existing = &existing;
    let results: Vec<Result<Step, PolicyError>> = futures::stream::iter(expected)
        .map(|want| async move {
            let k = key(want.meta());
            let what = format!("{} {}/{}", K::kind(&()), k.0, k.1);
            let api = api_for(client, &k.0);
            let Some(have) = existing.get(&k) else {
                api.create(&PostParams::default(), want)
                    .await
                    .map_err(api_err(what))?;
                return Ok(Step::Created);
            };
            if annotation(have.meta(), AUTOUPDATE) == Some("false") {
                return Ok(Step::Skipped);
            }
            match merge(have, want) {
                Ok(None) => Ok(Step::Unchanged),
                Ok(Some(merged)) => {
                    api.replace(&k.1, &PostParams::default(), &merged)
                        .await
                        .map_err(api_err(what))?;
                    Ok(Step::Updated)
                }
                Err(()) => {
                    api.delete(&k.1, &Default::default())
                        .await
                        .map_err(api_err(what.clone()))?;
                    api.create(&PostParams::default(), want)
                        .await
                        .map_err(api_err(what))?;
                    Ok(Step::Updated)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for r in results {
        match r? {
            Step::Created => out.created += 1,
            Step::Updated => out.updated += 1,
            Step::Unchanged => out.unchanged += 1,
            Step::Skipped => out.skipped += 1,
        }
    }
    Ok(())
}

/// Writes in flight at once while reconciling.
const CONCURRENCY: usize = 32;

enum Step {
    Created,
    Updated,
    Unchanged,
    Skipped,
}

fn key(m: &ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn annotation<'a>(m: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(String::as_str)
}

/// Adds the labels and annotations of `want` missing from `have`; whether any were.
fn merge_meta(have: &mut ObjectMeta, want: &ObjectMeta) -> bool {
    let mut changed = false;
    for (mine, theirs) in [
        (&mut have.labels, &want.labels),
        (&mut have.annotations, &want.annotations),
    ] {
        for (k, v) in theirs.iter().flatten() {
            let m = mine.get_or_insert_with(Default::default);
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    changed
}

fn merge_rules(
    have: &mut Option<Vec<k8s_openapi::api::rbac::v1::PolicyRule>>,
    want: &Option<Vec<k8s_openapi::api::rbac::v1::PolicyRule>>,
) -> bool {
    let mut changed = false;
    for rule in want.iter().flatten() {
        let current = have.get_or_insert_with(Vec::new);
        if !uncovered(current, std::slice::from_ref(rule)).is_empty() {
            current.push(rule.clone());
            changed = true;
        }
    }
    changed
}

fn merge_cluster_role(have: &ClusterRole, want: &ClusterRole) -> Result<Option<ClusterRole>, ()> {
    let mut m = have.clone();
    let mut changed = merge_meta(&mut m.metadata, &want.metadata);
    match (&want.aggregation_rule, &mut m.aggregation_rule) {
        (Some(w), Some(h)) => {
            for sel in w.cluster_role_selectors.iter().flatten() {
                let sels = h.cluster_role_selectors.get_or_insert_with(Vec::new);
                if !sels.contains(sel) {
                    sels.push(sel.clone());
                    changed = true;
                }
            }
        }
        (Some(w), None) => {
            m.aggregation_rule = Some(w.clone());
            changed = true;
        }
        // Rules of an aggregated role belong to the aggregation controller.
        (None, _) => changed |= merge_rules(&mut m.rules, &want.rules),
    }
    Ok(changed.then_some(m))
}

fn merge_role(have: &Role, want: &Role) -> Result<Option<Role>, ()> {
    let mut m = have.clone();
    let changed =
        merge_meta(&mut m.metadata, &want.metadata) | merge_rules(&mut m.rules, &want.rules);
    Ok(changed.then_some(m))
}

fn merge_subjects(
    have: &mut Option<Vec<k8s_openapi::api::rbac::v1::Subject>>,
    want: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>,
) -> bool {
    // The API defaults a ServiceAccount subject's apiGroup to "": compare without it.
    let same = |a: &k8s_openapi::api::rbac::v1::Subject,
                b: &k8s_openapi::api::rbac::v1::Subject| {
        a.kind == b.kind
            && a.name == b.name
            && a.namespace.as_deref().unwrap_or_default()
                == b.namespace.as_deref().unwrap_or_default()
            && a.api_group.as_deref().unwrap_or_default()
                == b.api_group.as_deref().unwrap_or_default()
    };
    let mut changed = false;
    for s in want.iter().flatten() {
        let current = have.get_or_insert_with(Vec::new);
        if !current.iter().any(|c| same(c, s)) {
            current.push(s.clone());
            changed = true;
        }
    }
    changed
}

fn merge_cluster_binding(
    have: &ClusterRoleBinding,
    want: &ClusterRoleBinding,
) -> Result<Option<ClusterRoleBinding>, ()> {
    if have.role_ref != want.role_ref {
        return Err(());
    }
    let mut m = have.clone();
    let changed = merge_meta(&mut m.metadata, &want.metadata)
        | merge_subjects(&mut m.subjects, &want.subjects);
    Ok(changed.then_some(m))
}

fn merge_binding(have: &RoleBinding, want: &RoleBinding) -> Result<Option<RoleBinding>, ()> {
    if have.role_ref != want.role_ref {
        return Err(());
    }
    let mut m = have.clone();
    let changed = merge_meta(&mut m.metadata, &want.metadata)
        | merge_subjects(&mut m.subjects, &want.subjects);
    Ok(changed.then_some(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_policy_parses_and_holds_the_well_known_roles() {
        let p = policy().unwrap();
        let names: Vec<&str> = p
            .cluster_roles
            .iter()
            .filter_map(|r| r.metadata.name.as_deref())
            .collect();
        for want in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:discovery",
            "system:basic-user",
            "system:public-info-viewer",
            "system:node",
            "system:kube-controller-manager",
            "system:controller:namespace-controller",
            "system:controller:generic-garbage-collector",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
        assert!(!names.iter().any(|n| n.starts_with("system:openshift")));
        assert!(p.cluster_role_bindings.len() > 40);
        assert!(!p.roles.is_empty() && !p.role_bindings.is_empty());
        let admin = p
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("admin"));
        assert!(admin.unwrap().aggregation_rule.is_some());
    }

    #[test]
    fn reconcile_adds_missing_rules_and_subjects_and_keeps_user_additions() {
        let p = policy().unwrap();
        let want = p
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("system:basic-user"))
            .unwrap();
        let mut have = want.clone();
        let user_rule = k8s_openapi::api::rbac::v1::PolicyRule {
            verbs: vec!["get".into()],
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["pods".into()]),
            ..Default::default()
        };
        have.rules = Some(vec![user_rule.clone()]);
        have.metadata.labels = None;
        let merged = merge_cluster_role(&have, want).unwrap().unwrap();
        let rules = merged.rules.unwrap();
        assert_eq!(rules[0], user_rule, "user additions stay");
        assert_eq!(rules.len(), 1 + want.rules.as_ref().unwrap().len());
        assert!(merged
            .metadata
            .labels
            .unwrap()
            .contains_key("kubernetes.io/bootstrapping"));
        assert_eq!(merge_cluster_role(want, want), Ok(None), "nothing to do");

        let b = &p.cluster_role_bindings[0];
        let mut bare = b.clone();
        bare.subjects = None;
        let merged = merge_cluster_binding(&bare, b).unwrap().unwrap();
        assert_eq!(merged.subjects, b.subjects);
        let mut defaulted = b.clone();
        for s in defaulted.subjects.iter_mut().flatten() {
            s.api_group.get_or_insert_with(String::new);
        }
        assert_eq!(
            merge_cluster_binding(&defaulted, b),
            Ok(None),
            "apiGroup \"\" is no change"
        );
        let mut other = b.clone();
        other.role_ref.name = "something-else".into();
        assert_eq!(merge_cluster_binding(&other, b), Err(()));
    }
}
