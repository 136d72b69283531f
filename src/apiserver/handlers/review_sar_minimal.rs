//! A minimal SubjectAccessReview (`authorization.k8s.io/v1`): the authorizer's answer for
//! the user named in the spec. It exists so the CSR approver (authn slice) can ask its
//! question through the API before the rbac slice serves the real one, which replaces this
//! file at merge.
//!
//! Invariant: answered, never stored; the decision is exactly the server authorizer's.

use super::write::read_body;
use crate::apiserver::auth::UserInfo;
use crate::apiserver::body::decode_object;
use crate::apiserver::request::ResourceRequest;
use crate::apiserver::response::{self, Body};
use crate::apiserver::status::ApiError;
use crate::apiserver::{ApiState, RequestBody};
use http::{Request, Response};
use serde_json::{json, Value};

pub async fn subject_access_review(
    state: &ApiState,
    rr: &ResourceRequest,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let raw = read_body(req).await?;
    let mut review = decode_object(raw.content_type.as_deref(), &raw.bytes)?;
    let spec = &review["spec"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let user = UserInfo {
        name: spec["user"].as_str().unwrap_or_default().to_owned(),
        uid: spec["uid"].as_str().unwrap_or_default().to_owned(),
        groups: strings(&spec["groups"]),
        extra: spec["extra"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default(),
    };
    let status = super::review::decide(state, rr, &user, spec)?;
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SubjectAccessReview");
    review["status"] = status;
    Ok(response::json(201, &review))
}
