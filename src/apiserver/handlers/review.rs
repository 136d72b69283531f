//! The review kinds (`*.authorization.k8s.io`, `*.authentication.k8s.io`): answered, never
//! stored. The authorization reviews live in [`super::review_authz`]; this file keeps the
//! end-to-end tests of the in-process path and is where the other review kinds are routed.

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
