//! The authorization reviews of `authorization.k8s.io/v1`, answered by the server's
//! authorizer and never stored: SelfSubjectAccessReview (`kubectl auth can-i`),
//! SubjectAccessReview (any user, for webhooks and proxies), LocalSubjectAccessReview (the
//! same, limited to one namespace) and SelfSubjectRulesReview (`kubectl auth can-i --list`).
//!
//! Invariant: a review asks exactly the question a real request with the same attributes
//! would ask, of the same authorizer, so its answer is the request's answer.

use super::write::read_body;
use crate::apiserver::auth::{Attributes, Authorizer, Decision, UserInfo};
use crate::apiserver::body::decode_object;
use crate::apiserver::request::ResourceRequest;
use crate::apiserver::response::{self, Body};
use crate::apiserver::status::ApiError;
use crate::apiserver::{ApiState, RequestBody};
use http::{Request, Response};
use serde_json::{json, Map, Value};

const GROUP: &str = "authorization.k8s.io";

/// Whether `rr` is one of the reviews answered here.
pub fn handles(rr: &ResourceRequest) -> bool {
    rr.rt.group == GROUP
        && matches!(
            rr.rt.plural.as_str(),
            "selfsubjectaccessreviews"
                | "subjectaccessreviews"
                | "localsubjectaccessreviews"
                | "selfsubjectrulesreviews"
        )
}

/// Answers one review posted by `caller` (already authorized to create it).
pub async fn review(
    _state: &ApiState,
    authorizer: &dyn Authorizer,
    rr: &ResourceRequest,
    caller: &UserInfo,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let raw = read_body(req).await?;
    let mut review = decode_object(raw.content_type.as_deref(), &raw.bytes)?;
    if !review.is_object() {
        return Err(ApiError::bad_request("the review must be a JSON object"));
    }
    let kind = rr.rt.kind.clone();
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let status = match rr.rt.plural.as_str() {
        "selfsubjectaccessreviews" => access(authorizer, rr, caller, &spec, None)?,
        "selfsubjectrulesreviews" => rules(authorizer, caller, &spec),
        "subjectaccessreviews" => {
            let subject = subject_of(rr, &spec)?;
            access(authorizer, rr, &subject, &spec, None)?
        }
        _ => {
            let ns = rr.namespace.as_deref().unwrap_or_default();
            if let Some(meta_ns) = review["metadata"]["namespace"]
                .as_str()
                .filter(|n| !n.is_empty() && *n != ns)
            {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({meta_ns}) does not match the namespace sent on the request ({ns})"
                )));
            }
            let subject = subject_of(rr, &spec)?;
            access(authorizer, rr, &subject, &spec, Some(ns))?
        }
    };
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!(kind);
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    review["status"] = status;
    Ok(response::json(201, &review))
}

fn text(o: &Map<String, Value>, k: &str) -> Option<String> {
    o.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn invalid(rr: &ResourceRequest, field: &str, value: &str, message: &str) -> ApiError {
    ApiError::invalid(
        &rr.rt,
        "",
        format!(
            "{}.{GROUP} \"\" is invalid: {field}: Invalid value: {value}: {message}",
            rr.rt.kind
        ),
        json!([{"reason": "FieldValueInvalid", "message": format!("Invalid value: {value}: {message}"), "field": field}]),
    )
}

/// The user a (Local)SubjectAccessReview asks about.
fn subject_of(rr: &ResourceRequest, spec: &Value) -> Result<UserInfo, ApiError> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let name = spec["user"].as_str().unwrap_or_default().to_owned();
    let groups = strings(&spec["groups"]);
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            rr,
            "spec.user",
            "\"\"",
            "at least one of user or group must be specified",
        ));
    }
    let extra = spec["extra"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
        .unwrap_or_default();
    Ok(UserInfo {
        name,
        uid: spec["uid"].as_str().unwrap_or_default().to_owned(),
        groups,
        extra,
    })
}

/// An access review's `status` for `user`. `local_ns` is a LocalSubjectAccessReview's
/// namespace, which the attributes must name.
fn access(
    authorizer: &dyn Authorizer,
    rr: &ResourceRequest,
    user: &UserInfo,
    spec: &Value,
    local_ns: Option<&str>,
) -> Result<Value, ApiError> {
    let resource = spec["resourceAttributes"].as_object();
    let non_resource = spec["nonResourceAttributes"].as_object();
    let decision = match (resource, non_resource) {
        (Some(r), None) => {
            let (verb, group) = (text(r, "verb"), text(r, "group"));
            let (res, sub) = (text(r, "resource"), text(r, "subresource"));
            let (namespace, name) = (text(r, "namespace"), text(r, "name"));
            let field_selector = r
                .get("fieldSelector")
                .and_then(|f| f["rawSelector"].as_str());
            if let Some(ns) = local_ns {
                if namespace.as_deref().unwrap_or_default() != ns {
                    return Err(invalid(
                        rr,
                        "spec.resourceAttributes.namespace",
                        &format!("{:?}", namespace.as_deref().unwrap_or_default()),
                        &format!("must match metadata.namespace: {ns:?}"),
                    ));
                }
            }
            authorizer.authorize(
                user,
                &Attributes {
                    verb: verb.as_deref().unwrap_or_default(),
                    group: group.as_deref().unwrap_or_default(),
                    resource: res.as_deref().unwrap_or_default(),
                    subresource: sub.as_deref(),
                    namespace: namespace.as_deref(),
                    name: name.as_deref(),
                    field_selector,
                },
            )
        }
        (None, Some(n)) if local_ns.is_none() => authorizer.authorize_non_resource(
            user,
            &text(n, "verb").unwrap_or_default(),
            &text(n, "path").unwrap_or_default(),
        ),
        (None, Some(_)) => {
            return Err(invalid(
                rr,
                "spec.nonResourceAttributes",
                "\"\"",
                "disallowed on this kind of request",
            ))
        }
        _ => {
            return Err(invalid(
                rr,
                "spec.resourceAttributes",
                "\"null\"",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    Ok(match decision {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::Deny(reason) => json!({"allowed": false, "reason": reason}),
    })
}

/// A SelfSubjectRulesReview's `status`: the caller's rules in `spec.namespace`, resource
/// rules and non-resource rules apart, as upstream converts them.
fn rules(authorizer: &dyn Authorizer, user: &UserInfo, spec: &Value) -> Value {
    let ns = spec["namespace"].as_str().unwrap_or_default();
    let found = authorizer.rules_for(user, ns);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in &found.rules {
        if let Some(urls) = r.non_resource_urls.as_ref().filter(|u| !u.is_empty()) {
            non_resource_rules.push(json!({"verbs": r.verbs, "nonResourceURLs": urls}));
            continue;
        }
        let mut rule = json!({
            "verbs": r.verbs,
            "apiGroups": r.api_groups.clone().unwrap_or_default(),
            "resources": r.resources.clone().unwrap_or_default(),
        });
        if let Some(names) = r.resource_names.as_ref().filter(|n| !n.is_empty()) {
            rule["resourceNames"] = json!(names);
        }
        resource_rules.push(rule);
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": found.incomplete,
    });
    if let Some(e) = found.evaluation_error {
        status["evaluationError"] = json!(e);
    }
    status
}
