//! RBAC escalation prevention (upstream's `pkg/registry/rbac/*/policybased` storage): a user
//! may only create or update a Role/ClusterRole granting rules it already holds, unless it
//! may `escalate` that role; and may only bind a role whose rules it holds, unless it may
//! `bind` that role. `system:masters` is exempt (it holds everything).
//!
//! Invariant: the check runs in the validating phase on the final object, and reads the
//! referenced role from the store (not a cache), so a role created a moment ago is seen.

use super::{Admit, Attributes, Operation, Plugin};
use crate::apiserver::auth::{Attributes as AuthzAttributes, Decision, UserInfo, MASTERS_GROUP};
use crate::apiserver::objects::parse_record;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use crate::authz::rbac::{describe, uncovered};
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;
use std::sync::Arc;

const GROUP: &str = "rbac.authorization.k8s.io";

pub struct RbacEscalation;

impl Plugin for RbacEscalation {
    fn name(&self) -> &'static str {
        "RBACEscalation"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.rt.group == GROUP
            && matches!(attrs.operation, Operation::Create | Operation::Update)
            && attrs.subresource.is_none()
            && !attrs.user.in_group(MASTERS_GROUP)
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let Some(obj) = obj else { return Ok(()) };
            match attrs.rt.plural.as_str() {
                "roles" | "clusterroles" => check_role(state, attrs, obj, old),
                "rolebindings" | "clusterrolebindings" => {
                    check_binding(state, attrs, obj, old).await
                }
                _ => Ok(()),
            }
        })
    }
}

fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(obj["rules"].clone()).unwrap_or_default()
}

fn check_role(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let rules = rules_of(obj);
    // An update that grants nothing new (labels, or removing rules) needs no check.
    if let Some(old) = old {
        if uncovered(&rules_of(old), &rules).is_empty() {
            return Ok(());
        }
    }
    let authorizer = state.authorizer();
    let escalate = AuthzAttributes {
        verb: "escalate",
        group: GROUP,
        resource: &attrs.rt.plural,
        subresource: None,
        namespace: attrs.namespace,
        name: Some(attrs.name),
        field_selector: None,
    };
    if authorizer.authorize(attrs.user, &escalate) == Decision::Allow {
        return Ok(());
    }
    confirm_no_escalation(state, attrs, &rules)
}

async fn check_binding(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    // An update is checked like a create: new subjects are granted the role (upstream too).
    let _ = old;
    let role_ref = &obj["roleRef"];
    let kind = role_ref["kind"].as_str().unwrap_or_default();
    let name = role_ref["name"].as_str().unwrap_or_default();
    let resource = match kind {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return Ok(()), // validation refuses it
    };
    let authorizer = state.authorizer();
    let bind = AuthzAttributes {
        verb: "bind",
        group: role_ref["apiGroup"].as_str().unwrap_or(GROUP),
        resource,
        subresource: None,
        namespace: attrs.namespace,
        name: Some(name),
        field_selector: None,
    };
    if authorizer.authorize(attrs.user, &bind) == Decision::Allow {
        return Ok(());
    }
    let Some(rt) = state.registry.lookup(GROUP, "v1", resource) else {
        return Ok(());
    };
    let key = rt.key(
        (kind == "Role").then_some(attrs.namespace.unwrap_or_default()),
        name,
    );
    let role = match state.store.get(&key).await? {
        Some(r) => parse_record(&r)?,
        None => {
            let qualified = format!("{resource}.{GROUP}");
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("{qualified} {name:?} not found"),
            ));
        }
    };
    confirm_no_escalation(state, attrs, &rules_of(&role))
}

/// Refuses with upstream's text unless `attrs.user` holds every rule of `rules` in the
/// request's namespace.
fn confirm_no_escalation(
    state: &ApiState,
    attrs: &Attributes<'_>,
    rules: &[PolicyRule],
) -> Result<(), ApiError> {
    let held = state
        .authorizer()
        .rules_for(attrs.user, attrs.namespace.unwrap_or_default());
    let missing = uncovered(&held.rules, rules);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden_resource(
        GROUP,
        &attrs.rt.plural,
        attrs.name,
        &escalation_message(attrs.user, &missing),
    ))
}

/// `user "bob" (groups=["system:authenticated"]) is attempting to grant RBAC permissions
/// not currently held:\n{...}` with the missing rules compacted (verbs of the same
/// resource joined) and sorted, as upstream lists them.
pub fn escalation_message(user: &UserInfo, missing: &[PolicyRule]) -> String {
    let mut compact: Vec<PolicyRule> = Vec::new();
    for piece in missing {
        let same = compact.iter_mut().find(|c| {
            c.api_groups == piece.api_groups
                && c.resources == piece.resources
                && c.resource_names == piece.resource_names
                && c.non_resource_urls == piece.non_resource_urls
        });
        match same {
            Some(c) => {
                for v in &piece.verbs {
                    if !c.verbs.contains(v) {
                        c.verbs.push(v.clone());
                    }
                }
            }
            None => compact.push(piece.clone()),
        }
    }
    let mut lines: Vec<String> = compact.iter().map(describe).collect();
    lines.sort();
    lines.dedup();
    let groups = user
        .groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "user {:?} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_lists_missing_rules_compacted_and_sorted() {
        let bob = UserInfo::new("bob", &["system:authenticated"]);
        let piece = |verb: &str, res: &str| PolicyRule {
            verbs: vec![verb.into()],
            api_groups: Some(vec!["".into()]),
            resources: Some(vec![res.into()]),
            ..PolicyRule::default()
        };
        let msg = escalation_message(
            &bob,
            &[
                piece("get", "secrets"),
                piece("list", "secrets"),
                piece("get", "pods"),
            ],
        );
        assert_eq!(
            msg,
            "user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
        );
    }
}
