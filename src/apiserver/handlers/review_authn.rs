//! TokenReview (`authentication.k8s.io/v1`: "who is this token?", asked by webhooks and
//! aggregated servers) and SelfSubjectReview (`kubectl auth whoami`). Both are answered,
//! never stored.
//!
//! Invariant: a TokenReview runs the same token chain as a request's bearer token (for the
//! review's audiences), so its answer is what the token would get from this server.

use super::write::read_body;
use crate::apiserver::auth::UserInfo;
use crate::apiserver::body::decode_object;
use crate::apiserver::request::ResourceRequest;
use crate::apiserver::response::{self, Body};
use crate::apiserver::status::ApiError;
use crate::apiserver::{ApiState, RequestBody};
use http::{Request, Response};
use serde_json::{json, Value};

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`
pub async fn token_review(
    state: &ApiState,
    rr: &ResourceRequest,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    if let Some(ns) = &rr.namespace {
        return Err(ApiError::bad_request(format!(
            "namespace is not allowed on this type: {ns}"
        )));
    }
    let raw = read_body(req).await?;
    let mut review = decode_object(raw.content_type.as_deref(), &raw.bytes)?;
    let token = review["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let audiences: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let status = match state.authn.token(state, &token, Some(&audiences)).await {
        Ok(a) => {
            json!({"authenticated": true, "user": user_json(&a.user), "audiences": a.audiences})
        }
        Err(why) => json!({"user": {}, "error": why}),
    };
    review["apiVersion"] = json!("authentication.k8s.io/v1");
    review["kind"] = json!("TokenReview");
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["status"] = status;
    Ok(response::json(201, &review))
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: the caller's own identity.
pub async fn self_subject_review(
    user: &UserInfo,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let raw = read_body(req).await?;
    // The body carries nothing the answer depends on, but it must be a valid object.
    decode_object(raw.content_type.as_deref(), &raw.bytes)?;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let info = user_json(user);
    Ok(response::json(
        201,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": now},
            "status": {"userInfo": info},
        }),
    ))
}
