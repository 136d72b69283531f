//! REST handlers for resources: one file per family of verbs.

mod delete;
mod eviction;
pub mod live;
pub mod openid;
pub mod read;
pub mod review;
pub mod review_authn;
pub mod review_authz;
#[cfg(test)]
mod review_authz_tests;
mod subresources;
mod token_request;
mod write;

use super::request::{Output, Query, ResourceRequest, Verb};
use super::response::Body;
use super::status::ApiError;
use super::ApiState;
use crate::api::registry::Subresource;
use crate::apiserver::auth::UserInfo;
use crate::apiserver::RequestBody;
use http::{Request, Response};
use std::sync::Arc;

/// Field manager name when the client sets none: upstream derives it from the User-Agent
/// (`kubectl/v1.35.2 (linux/amd64) …` → `kubectl`).
fn default_manager(req: &Request<RequestBody>) -> String {
    req.headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

pub async fn resource(
    state: &Arc<ApiState>,
    rr: ResourceRequest,
    query: Query,
    output: Output,
    req: Request<RequestBody>,
    client: Option<String>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    if super::kubelet_proxy::handles(&rr) {
        return super::kubelet_proxy::serve(state, &rr, req, user).await;
    }
    if super::pod_proxy::handles(&rr) {
        return super::pod_proxy::serve(state, &rr, req).await;
    }
    let manager = query
        .field_manager
        .clone()
        .unwrap_or_else(|| default_manager(&req));
    // Reads encode protobuf themselves (straight from the stored objects); every other
    // handler answers one JSON object, re-encoded here when protobuf was negotiated.
    match (rr.verb, rr.subresource) {
        (Verb::Watch, None) => {
            return super::watch::watch(state, &rr, &query, output, client).await
        }
        (Verb::List, None) => return read::list(state, &rr, &query, output).await,
        (Verb::Get, sub) if sub.is_none_or(Subresource::is_object_view) => {
            return read::get(state, &rr, output).await
        }
        _ => {}
    }
    let resp = match (rr.verb, rr.subresource) {
        (Verb::Get, Some(Subresource::Scale)) => subresources::get_scale(state, &rr).await,
        (Verb::Update | Verb::Patch, Some(Subresource::Scale)) => {
            subresources::write_scale(state, &rr, &query, req, user).await
        }
        (Verb::Create, Some(Subresource::Binding)) => {
            subresources::bind(state, &rr, &query, req, user).await
        }
        (Verb::Create, Some(Subresource::Eviction)) => {
            eviction::evict(state, &rr, &query, req, user).await
        }
        (Verb::Create, Some(Subresource::Token)) => {
            token_request::create(state, &rr, req, user).await
        }
        // The older form of pods/binding, still served upstream: it binds, stores nothing.
        (Verb::Create, None) if rr.rt.group.is_empty() && rr.rt.plural == "bindings" => {
            subresources::bind(state, &rr, &query, req, user).await
        }
        (Verb::Create, None) => write::create(state, &rr, &query, req, manager, user).await,
        (Verb::Update, sub)
            if sub.is_none_or(|s| s.is_object_view() || s == Subresource::Finalize) =>
        {
            write::update(state, &rr, &query, req, manager, user).await
        }
        (Verb::Patch, sub) if sub.is_none_or(Subresource::is_object_view) => {
            write::patch(state, &rr, &query, req, manager, user).await
        }
        (Verb::Delete, None) => delete::delete(state, &rr, &query, req, user).await,
        (Verb::DeleteCollection, None) => {
            delete::delete_collection(state, &rr, &query, req, user).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }?;
    Ok(if output == Output::Protobuf {
        super::response::to_protobuf(resp).await
    } else {
        resp
    })
}
