//! In-process tests of the authorization reviews (SubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview) through the
//! same path HTTPS requests take.

use crate::apiserver::testing::TestServer;
use crate::apiserver::{InProcessService, UserInfo};
use crate::authz::{index::Index, ClusterAuthorizer};
use http_body_util::BodyExt;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const G: &str = "/apis/authorization.k8s.io/v1";

async fn post(
    srv: &TestServer,
    user: UserInfo,
    uri: &str,
    body: Value,
    accept: &str,
) -> (u16, Value) {
    let svc = InProcessService::new(srv.state.clone(), user);
    let req = http::Request::post(uri)
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .expect("request");
    let resp = svc.oneshot(req).await.expect("infallible");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).expect("json body"))
}

/// A server whose authorizer lets bob get and list pods in namespace `a`.
async fn server_with_bob() -> TestServer {
    let srv = TestServer::start().await;
    let role = Role {
        metadata: kube::api::ObjectMeta {
            name: Some("r".into()),
            namespace: Some("a".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["pods".into()]),
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("b".into()),
            namespace: Some("a".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "r".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "bob".into(),
            ..Default::default()
        }]),
    };
    let p = crate::authz::bootstrap_policy::policy().expect("policy");
    let mut roles: Vec<_> = p.roles.into_iter().map(Arc::new).collect();
    roles.push(Arc::new(role));
    let mut bindings: Vec<_> = p.role_bindings.into_iter().map(Arc::new).collect();
    bindings.push(Arc::new(binding));
    let index = Index::build(
        &p.cluster_roles
            .into_iter()
            .map(Arc::new)
            .collect::<Vec<_>>(),
        &roles,
        &p.cluster_role_bindings
            .into_iter()
            .map(Arc::new)
            .collect::<Vec<_>>(),
        &bindings,
    );
    srv.state
        .set_authorizer(Arc::new(ClusterAuthorizer::with_index(index)));
    srv
}

fn admin() -> UserInfo {
    UserInfo::new("system:admin", &["system:masters"])
}

fn attrs(ns: &str) -> Value {
    json!({"namespace": ns, "verb": "list", "resource": "pods"})
}

#[tokio::test]
async fn self_review_answers_for_the_caller_and_is_not_stored() {
    let srv = server_with_bob().await;
    let uri = format!("{G}/selfsubjectaccessreviews");
    let body = |ns| json!({"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes": attrs(ns)}});
    let (code, r) = post(&srv, admin(), &uri, body("b"), "application/json").await;
    assert_eq!((code, &r["status"]["allowed"]), (201, &json!(true)));
    let bob = || UserInfo::new("bob", &[]);
    let (code, r) = post(&srv, bob(), &uri, body("a"), "application/json").await;
    assert_eq!((code, &r["status"]["allowed"]), (201, &json!(true)), "{r}");
    assert_eq!(r["kind"], "SelfSubjectAccessReview");
    let (code, r) = post(&srv, bob(), &uri, body("b"), "application/json").await;
    assert_eq!((code, &r["status"]["allowed"]), (201, &json!(false)), "{r}");
}

#[tokio::test]
async fn subject_access_reviews_ask_about_the_named_user() {
    let srv = server_with_bob().await;
    let sar = |ns| json!({"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"user":"bob","resourceAttributes": attrs(ns)}});
    let (code, r) = post(
        &srv,
        admin(),
        &format!("{G}/subjectaccessreviews"),
        sar("a"),
        "application/json",
    )
    .await;
    assert_eq!((code, &r["status"]["allowed"]), (201, &json!(true)), "{r}");
    let (_, r) = post(
        &srv,
        admin(),
        &format!("{G}/subjectaccessreviews"),
        sar("b"),
        "application/json",
    )
    .await;
    assert_eq!(r["status"]["allowed"], false);
    let nobody = json!({"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"resourceAttributes": attrs("a")}});
    let (code, r) = post(
        &srv,
        admin(),
        &format!("{G}/subjectaccessreviews"),
        nobody,
        "application/json",
    )
    .await;
    assert_eq!(code, 422, "{r}");
    let local = format!("{G}/namespaces/a/localsubjectaccessreviews");
    let lsar = |ns| json!({"kind":"LocalSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"namespace":"a"},"spec":{"user":"bob","resourceAttributes": attrs(ns)}});
    let (code, r) = post(&srv, admin(), &local, lsar("a"), "application/json").await;
    assert_eq!((code, &r["status"]["allowed"]), (201, &json!(true)), "{r}");
    let (code, _) = post(&srv, admin(), &local, lsar("b"), "application/json").await;
    assert_eq!(code, 422, "the attributes must name the review's namespace");
    // bob himself may not ask about others.
    let (code, r) = post(
        &srv,
        UserInfo::new("bob", &[]),
        &format!("{G}/subjectaccessreviews"),
        sar("a"),
        "application/json",
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        r["message"],
        r#"subjectaccessreviews.authorization.k8s.io is forbidden: User "bob" cannot create resource "subjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope"#
    );
}

#[tokio::test]
async fn self_rules_review_lists_the_callers_rules_in_a_namespace() {
    let srv = server_with_bob().await;
    let uri = format!("{G}/selfsubjectrulesreviews");
    let body = |ns| json!({"kind":"SelfSubjectRulesReview","apiVersion":"authorization.k8s.io/v1","spec":{"namespace": ns}});
    let admin_rules = rules_status(&srv, admin(), body("a")).await;
    assert_eq!(admin_rules["resourceRules"][0]["verbs"], json!(["*"]));
    let (code, r) = post(&srv, admin(), &uri, body("a"), "application/json").await;
    assert_eq!(code, 201);
    assert_eq!(r["status"]["incomplete"], false);
    // bob's rules come from his binding in `a` only.
    let pods = json!({"verbs":["get","list"],"apiGroups":[""],"resources":["pods"]});
    let bob_a = rules_status(&srv, UserInfo::new("bob", &[]), body("a")).await;
    let rules = bob_a["resourceRules"].as_array().unwrap();
    assert!(rules.contains(&pods), "{bob_a}");
    assert!(rules
        .iter()
        .any(|r| r["resources"][0] == "selfsubjectaccessreviews"));
    assert!(bob_a["nonResourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["nonResourceURLs"]
            .as_array()
            .unwrap()
            .contains(&json!("/version"))));
    let bob_b = rules_status(&srv, UserInfo::new("bob", &[]), body("b")).await;
    assert!(!bob_b["resourceRules"].as_array().unwrap().contains(&pods));
}

/// The status of a SelfSubjectRulesReview posted as `user`.
async fn rules_status(srv: &TestServer, user: UserInfo, body: Value) -> Value {
    let (code, r) = post(
        srv,
        user,
        &format!("{G}/selfsubjectrulesreviews"),
        body,
        "application/json",
    )
    .await;
    assert_eq!(code, 201, "{r}");
    r["status"].clone()
}

#[tokio::test]
async fn review_asked_for_as_a_table_is_406() {
    let srv = TestServer::start().await;
    let body = json!({"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"nonResourceAttributes":{"path":"/","verb":"get"}}});
    let (code, body) = post(
        &srv,
        admin(),
        &format!("{G}/selfsubjectaccessreviews"),
        body,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .await;
    assert_eq!(code, 406);
    assert_eq!(body["reason"], "NotAcceptable");
}
