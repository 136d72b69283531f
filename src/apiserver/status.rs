//! Kubernetes `Status` errors: the only place where failures become HTTP status codes.
//!
//! Invariant: every error a client sees is a `v1 Status` with the upstream `reason`, `code`
//! and message wording, so kubectl prints exactly what it prints against kube-apiserver.

use crate::api::registry::ResourceType;
use serde_json::{json, Value};

/// A failure answered with a `Status` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// `metadata.continue` of the Status: a list whose continue token expired offers a
    /// fresh one here.
    pub continue_token: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

fn details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.plural});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            continue_token: None,
        }
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError {
            details: Some(details(rt, name)),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", rt.qualified_plural()),
            )
        }
    }

    /// The namespace of a request does not exist.
    pub fn namespace_not_found(ns: &str) -> ApiError {
        ApiError {
            details: Some(json!({"name": ns, "kind": "namespaces"})),
            ..ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
        }
    }

    /// Unknown path or resource: upstream's generic 404.
    pub fn no_route() -> ApiError {
        ApiError {
            details: Some(json!({})),
            ..ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> ApiError {
        ApiError {
            details: Some(details(rt, name)),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.qualified_plural()),
            )
        }
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::conflict_because(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict_because(rt: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(details(rt, name)),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    rt.qualified_plural()
                ),
            )
        }
    }

    /// 422 with field causes; `message` is the already formatted upstream summary.
    pub fn invalid(rt: &ResourceType, name: &str, message: String, causes: Value) -> ApiError {
        let mut d = json!({"name": name, "kind": rt.kind, "causes": causes});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        ApiError {
            details: Some(d),
            ..ApiError::new(422, "Invalid", message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// Upstream's `NewForbidden` for a resource request: `pods "x" is forbidden: <why>`
    /// (`deployments.apps is forbidden: ...` without a name), with the group, kind and name
    /// in the details.
    pub fn forbidden_resource(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
        let qualified = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        let message = if name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} {name:?} is forbidden: {why}")
        };
        let mut d = json!({"kind": resource});
        if !name.is_empty() {
            d["name"] = json!(name);
        }
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        ApiError {
            details: Some(d),
            ..ApiError::new(403, "Forbidden", message)
        }
    }

    /// Upstream's `NewForbidden` without a resource (non-resource paths).
    pub fn forbidden_path(why: &str) -> ApiError {
        ApiError {
            details: Some(json!({})),
            ..ApiError::new(403, "Forbidden", format!("forbidden: {why}"))
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn too_many_requests(message: impl Into<String>) -> ApiError {
        ApiError::new(429, "TooManyRequests", message)
    }

    /// A watch or list asked for a revision older than the compacted history.
    pub fn expired(requested: u64, compacted: u64) -> ApiError {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({compacted})"),
        )
    }

    /// A list (`resourceVersionMatch=Exact`) at a revision older than the compacted history.
    pub fn list_expired() -> ApiError {
        ApiError::new(
            410,
            "Expired",
            "The resourceVersion for the provided list is too old.",
        )
    }

    /// A continue token whose revision was compacted; `fresh` continues from the same key
    /// at the current revision (upstream's wording).
    pub fn continue_expired(fresh: String) -> ApiError {
        ApiError {
            continue_token: Some(fresh),
            ..ApiError::new(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter, or use the continue \
                 token in this response to retrieve the remainder of the results. Continuing \
                 with the provided token results in an inconsistent list - objects that were \
                 created, modified, or deleted between the time the first chunk was returned \
                 and now may show up in the list.",
            )
        }
    }

    /// A read at a revision the store has not reached: upstream's retryable 504.
    pub fn too_large_resource_version(requested: u64, current: u64) -> ApiError {
        ApiError {
            details: Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            ..ApiError::new(
                504,
                "Timeout",
                format!("Timeout: Too large resource version: {requested}, current: {current}"),
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// The `v1 Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        if let Some(c) = &self.continue_token {
            s["metadata"]["continue"] = json!(c);
        }
        s
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        match e {
            crate::store::StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::expired(requested, compacted),
            crate::store::StoreError::FutureRevision { requested, current } => {
                ApiError::too_large_resource_version(requested, current)
            }
            // Shutting down: the request may be retried against the server once it is back.
            crate::store::StoreError::Closed => {
                ApiError::service_unavailable("the server is shutting down")
            }
            other => ApiError::internal(format!("storage error: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;
    use crate::store::StoreError;

    #[test]
    fn a_closed_store_is_unavailable_and_other_store_failures_are_internal() {
        let closed = ApiError::from(StoreError::Closed);
        assert_eq!((closed.code, closed.reason), (503, "ServiceUnavailable"));
        let corrupt = ApiError::from(StoreError::Corrupt("bad record".into()));
        assert_eq!(corrupt.code, 500);
        assert!(
            corrupt.message.contains("bad record"),
            "{}",
            corrupt.message
        );
    }
}
