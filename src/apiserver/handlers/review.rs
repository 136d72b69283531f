//! SelfSubjectAccessReview (`kubectl auth can-i`): the caller asks whether it may do
//! something; the authorizer answers for the caller's own identity. Reviews are answered,
//! never stored.

use super::write::read_body;
use crate::apiserver::auth::{Attributes, Decision, UserInfo};
use crate::apiserver::body::decode_object;
use crate::apiserver::request::{ResourceRequest, Verb};
use crate::apiserver::response::{self, Body};
use crate::apiserver::status::ApiError;
use crate::apiserver::{ApiState, RequestBody};
use http::{Request, Response};
use serde_json::{json, Value};

pub async fn self_subject_access_review(
    state: &ApiState,
    rr: &ResourceRequest,
    user: &UserInfo,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let raw = read_body(req).await?;
    let mut review = decode_object(raw.content_type.as_deref(), &raw.bytes)?;
    let status = decide(state, rr, user, &review["spec"])?;
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    review["status"] = status;
    Ok(response::json(201, &review))
}

/// The review's `status`: allowed, or not with the authorizer's reason.
pub(super) fn decide(
    state: &ApiState,
    rr: &ResourceRequest,
    user: &UserInfo,
    spec: &Value,
) -> Result<Value, ApiError> {
    let resource = spec["resourceAttributes"].as_object();
    let non_resource = spec["nonResourceAttributes"].as_object();
    let text = |o: &serde_json::Map<String, Value>, k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let decision = match (resource, non_resource) {
        (Some(r), None) => {
            let verb = text(r, "verb").unwrap_or_default();
            let Some(v) = Verb::from_name(&verb) else {
                return Ok(json!({"allowed": false,
                    "reason": format!("verb {verb:?} is not one this server authorizes")}));
            };
            let (group, resource, sub) = (
                text(r, "group"),
                text(r, "resource"),
                text(r, "subresource"),
            );
            let (namespace, name) = (text(r, "namespace"), text(r, "name"));
            state.authorizer.authorize(
                user,
                &Attributes {
                    verb: v,
                    group: group.as_deref().unwrap_or_default(),
                    resource: resource.as_deref().unwrap_or_default(),
                    subresource: sub.as_deref(),
                    namespace: namespace.as_deref(),
                    name: name.as_deref(),
                },
            )
        }
        (None, Some(n)) => state.authorizer.authorize_non_resource(
            user,
            &text(n, "verb").unwrap_or_default(),
            &text(n, "path").unwrap_or_default(),
        ),
        _ => {
            let message =
                "exactly one of nonResourceAttributes or resourceAttributes must be specified";
            return Err(ApiError::invalid(
                &rr.rt,
                "",
                format!("SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": {message}"),
                json!([{"reason": "FieldValueInvalid", "message": message, "field": "spec.resourceAttributes"}]),
            ));
        }
    };
    Ok(match decision {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) => json!({"allowed": false, "reason": reason}),
    })
}

#[cfg(test)]
mod tests {
    use crate::apiserver::testing::TestServer;
    use crate::apiserver::{InProcessService, UserInfo};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    const URI: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    const BODY: &str = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
        "spec":{"nonResourceAttributes":{"path":"/","verb":"get"}}}"#;

    async fn post(srv: &TestServer, user: UserInfo, accept: &str) -> (u16, Value) {
        let svc = InProcessService::new(srv.state.clone(), user);
        let req = http::Request::post(URI)
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                BODY.as_bytes(),
            )))
            .expect("request");
        let resp = svc.oneshot(req).await.expect("infallible");
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (code, serde_json::from_slice(&bytes).expect("json body"))
    }

    #[tokio::test]
    async fn review_answers_for_the_caller_and_is_not_stored() {
        let srv = TestServer::start().await;
        let admin = UserInfo::new("system:admin", &["system:masters"]);
        let (code, body) = post(&srv, admin, "application/json").await;
        assert_eq!(code, 201);
        assert_eq!(body["status"]["allowed"], true);
        let (code, body) = post(&srv, UserInfo::new("bob", &[]), "application/json").await;
        assert_eq!(code, 201);
        assert_eq!(body["status"]["allowed"], false);
        assert!(body["status"]["reason"].as_str().unwrap().contains("bob"));
    }

    #[tokio::test]
    async fn review_asked_for_as_a_table_is_406() {
        let srv = TestServer::start().await;
        let admin = UserInfo::new("system:admin", &["system:masters"]);
        let (code, body) = post(&srv, admin, "application/json;as=Table;v=v1;g=meta.k8s.io").await;
        assert_eq!(code, 406);
        assert_eq!(body["reason"], "NotAcceptable");
    }
}
