//! Which webhooks a request goes to: rules (operations, apiGroups, apiVersions, resources
//! with subresources and wildcards, scope), matchPolicy Equivalent, and the exemption of
//! the admission configuration kinds themselves, as upstream's `predicates/rules` and
//! `generic.Webhook.ShouldCallHook`. The selectors need other objects and are applied by the
//! dispatcher ([`super::dispatch`]).
//!
//! Invariant: [`may_match`] is true whenever [`invocation_for`] can find a match (it is the
//! cheap, registry-free over-approximation `handles()` uses).

use super::config::{Hook, Rule, Scope};
use crate::api::registry::{Registry, ResourceType};
use crate::apiserver::admission::Attributes;

/// Kinds whose writes never go to webhooks, so a broken webhook cannot lock an
/// administrator out of fixing it (upstream's `IsExemptAdmissionConfigurationResource`).
const EXEMPT_KINDS: &[&str] = &[
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
];

pub fn exempt(attrs: &Attributes<'_>) -> bool {
    attrs.rt.group == "admissionregistration.k8s.io" && EXEMPT_KINDS.contains(&&*attrs.rt.kind)
}

/// The Namespace object itself (core/v1 namespaces): cluster-scoped, yet selected by its own
/// labels and named as its own namespace in upstream's attributes.
pub fn is_namespace_object(attrs: &Attributes<'_>) -> bool {
    attrs.rt.group.is_empty() && attrs.rt.version == "v1" && attrs.rt.plural == "namespaces"
}

fn exact_or_wildcard(items: &[String], requested: &str) -> bool {
    items.iter().any(|i| i == "*" || i == requested)
}

/// Whether `rule` matches the request, with the resource seen at `version` (`None`: at
/// any version).
fn rule_matches(rule: &Rule, attrs: &Attributes<'_>, version: Option<&str>) -> bool {
    let namespaced = attrs.namespace.is_some_and(|n| !n.is_empty());
    let scope = match rule.scope {
        Scope::All => true,
        Scope::Namespaced => !is_namespace_object(attrs) && namespaced,
        Scope::Cluster => is_namespace_object(attrs) || !namespaced,
    };
    let op = attrs.operation.as_str();
    let operation = rule.operations.iter().any(|o| o == "*" || o == op);
    let sub = attrs.subresource.unwrap_or_default();
    let resource = rule.resources.iter().any(|r| {
        let (res, rsub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == attrs.rt.plural) && (rsub == "*" || rsub == sub)
    });
    scope
        && operation
        && exact_or_wildcard(&rule.api_groups, &attrs.rt.group)
        && version.is_none_or(|v| exact_or_wildcard(&rule.api_versions, v))
        && resource
}

/// Cheap pre-check for `handles()`: a rule matches exactly, or (Equivalent) would match the
/// same group and resource at some version.
pub fn may_match(hook: &Hook, attrs: &Attributes<'_>) -> bool {
    hook.rules.iter().any(|r| {
        rule_matches(r, attrs, Some(&attrs.rt.version))
            || (hook.equivalent && rule_matches(r, attrs, None))
    })
}

/// The resource and kind a webhook is called with (`request.kind`/`request.resource`):
/// the requested one, or for matchPolicy Equivalent the equivalent version a rule names.
/// The kind is the request object's: a subresource's own (autoscaling/v1 Scale for
/// `deployments/scale`) or the resource's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub kind_group: String,
    pub kind_version: String,
    pub kind: String,
}

impl Invocation {
    fn of(rt: &ResourceType, subresource: Option<&str>) -> Invocation {
        let (kind_group, kind_version, kind) = rt.object_kind(subresource);
        Invocation {
            group: rt.group.clone(),
            version: rt.version.clone(),
            resource: rt.plural.clone(),
            kind_group: kind_group.to_owned(),
            kind_version: kind_version.to_owned(),
            kind: kind.to_owned(),
        }
    }
}

/// Whether the webhook's rules select the request, and how it is called.
///
/// Equivalent resources here are the other served versions of the same group and resource
/// (skiff serves no resource under two groups); the object is sent as requested, since
/// skiff has no conversion between versions of a built-in kind.
pub fn invocation_for(
    hook: &Hook,
    attrs: &Attributes<'_>,
    registry: &Registry,
) -> Option<Invocation> {
    let rt = attrs.rt;
    if hook
        .rules
        .iter()
        .any(|r| rule_matches(r, attrs, Some(&rt.version)))
    {
        return Some(Invocation::of(rt, attrs.subresource));
    }
    if !hook.equivalent {
        return None;
    }
    let others: Vec<_> = registry
        .all()
        .into_iter()
        .filter(|o| o.group == rt.group && o.plural == rt.plural && o.version != rt.version)
        .collect();
    hook.rules.iter().find_map(|r| {
        others
            .iter()
            .find(|o| rule_matches(r, attrs, Some(&o.version)))
            .map(|o| Invocation::of(o, attrs.subresource))
    })
}
