//! The authentication review kinds (TokenReview, SelfSubjectReview): each create is
//! answered from the request and never stored. The authorization reviews live in
//! [`super::review_authz`].

use crate::api::registry::ResourceType;
use crate::apiserver::auth::UserInfo;
use crate::apiserver::request::ResourceRequest;
use crate::apiserver::response::Body;
use crate::apiserver::status::ApiError;
use crate::apiserver::{ApiState, RequestBody};
use http::{Request, Response};
use serde_json::json;

/// Answers a create of an authentication review kind (the authorization reviews are
/// answered by [`super::review_authz`]).
pub async fn create(
    _state: &ApiState,
    rr: &ResourceRequest,
    _user: &UserInfo,
    _req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    Err(not_implemented(&rr.rt))
}

/// 501 for a review kind this server registers but does not answer yet.
fn not_implemented(rt: &ResourceType) -> ApiError {
    let mut err = ApiError::new(
        501,
        "NotImplemented",
        format!(
            "{} are not implemented by this server yet",
            rt.qualified_plural()
        ),
    );
    err.details = Some(json!({"group": rt.group, "kind": rt.plural}));
    err
}
