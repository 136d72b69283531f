//! The token chain against a real API server state: service-account JWTs (bound and
//! legacy), bootstrap tokens, static tokens, anonymous, and the cost of authenticating.

use super::service_account::{self, Bound, ObjRef, TokenSpec};
use crate::apiserver::testing::TestServer;
use crate::apiserver::ApiState;
use crate::pki::ServiceAccountKey;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use std::time::Instant;

async fn create_sa(client: &kube::Client, ns: &str, name: &str) -> ServiceAccount {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create service account")
}

async fn token_request(client: &kube::Client, ns: &str, sa: &str, spec: Value) -> Value {
    let body =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let req = http::Request::post(format!(
        "/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&body).unwrap())
    .unwrap();
    client.request::<Value>(req).await.expect("token request")
}

fn sign(key: &ServiceAccountKey, sa: &ServiceAccount, auds: &[&str], iat: i64, exp: i64) -> String {
    let auds: Vec<String> = auds.iter().map(|s| s.to_string()).collect();
    key.sign(&service_account::claims(&TokenSpec {
        namespace: "default",
        service_account: ObjRef {
            name: sa.metadata.name.clone().unwrap(),
            uid: sa.metadata.uid.clone().unwrap(),
        },
        bound: Bound::Nothing,
        audiences: &auds,
        issued_at: iat,
        expiration_seconds: exp,
        warn_after_seconds: 0,
        jti: "jti-1".into(),
    }))
    .unwrap()
}

async fn user_of(state: &ApiState, token: &str) -> Result<crate::apiserver::UserInfo, String> {
    state.authn.token(state, token, None).await.map(|a| a.user)
}

#[tokio::test]
async fn token_request_tokens_authenticate_as_the_service_account() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    let sa = create_sa(&admin, "default", "build").await;
    let tr = token_request(&admin, "default", "build", json!({})).await;
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert_eq!(tr["spec"]["audiences"], json!([service_account::ISSUER]));
    let token = tr["status"]["token"].as_str().unwrap();
    let u = user_of(&srv.state, token).await.unwrap();
    assert_eq!(u.name, "system:serviceaccount:default:build");
    assert_eq!(u.uid, sa.metadata.uid.clone().unwrap());
    assert_eq!(
        u.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]
    );
    assert!(u.extra[service_account::EXTRA_CREDENTIAL_ID][0].starts_with("JTI="));
    // The claims are upstream's.
    let claims = srv.state.authn.service_account_key().verify(token).unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:default:build");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"],
        json!(sa.metadata.uid)
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
}

#[tokio::test]
async fn expired_foreign_and_wrong_audience_tokens_are_refused() {
    let srv = TestServer::start().await;
    let sa = create_sa(&srv.admin(), "default", "build").await;
    let key = srv.state.authn.service_account_key();
    let now = chrono::Utc::now().timestamp();
    let api = service_account::ISSUER;
    assert!(user_of(&srv.state, &sign(key, &sa, &[api], now, 600))
        .await
        .is_ok());
    let expired = sign(key, &sa, &[api], now - 7200, 600);
    assert_eq!(
        user_of(&srv.state, &expired).await.unwrap_err(),
        "service account token has expired"
    );
    let other = ServiceAccountKey::generate().unwrap();
    let foreign = sign(&other, &sa, &[api], now, 600);
    assert!(user_of(&srv.state, &foreign).await.is_err());
    let vault = sign(key, &sa, &["vault"], now, 600);
    assert!(user_of(&srv.state, &vault).await.is_err());
    // ... but a review asking for that audience accepts it.
    let auds = vec!["vault".to_string()];
    let a = srv
        .state
        .authn
        .token(&srv.state, &vault, Some(&auds))
        .await
        .unwrap();
    assert_eq!(a.audiences, auds);
    assert!(user_of(&srv.state, "garbage").await.is_err());
}

#[tokio::test]
async fn tokens_stop_working_when_what_they_name_is_gone() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    create_sa(&admin, "default", "build").await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"serviceAccountName": "build", "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(admin.clone(), "default");
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let tr = token_request(
        &admin,
        "default",
        "build",
        json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p"}}),
    )
    .await;
    let bound = tr["status"]["token"].as_str().unwrap().to_owned();
    let u = user_of(&srv.state, &bound).await.unwrap();
    assert_eq!(u.extra[service_account::EXTRA_POD_NAME], ["p"]);
    assert_eq!(
        u.extra[service_account::EXTRA_POD_UID],
        [pod.metadata.uid.clone().unwrap()]
    );
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(
        user_of(&srv.state, &bound).await.unwrap_err(),
        "service account token has been invalidated"
    );
    // A token for a service account that was deleted and recreated (new UID) is refused.
    let plain = token_request(&admin, "default", "build", json!({})).await;
    let plain = plain["status"]["token"].as_str().unwrap();
    let sas = Api::<ServiceAccount>::namespaced(admin.clone(), "default");
    sas.delete("build", &DeleteParams::default()).await.unwrap();
    create_sa(&admin, "default", "build").await;
    assert!(user_of(&srv.state, plain)
        .await
        .unwrap_err()
        .contains("does not match claim"));
}

#[tokio::test]
async fn legacy_secret_tokens_are_valid_while_their_secret_holds_them() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    let sa = create_sa(&admin, "default", "build").await;
    let sa_ref = ObjRef {
        name: "build".into(),
        uid: sa.metadata.uid.clone().unwrap(),
    };
    let key = srv.state.authn.service_account_key();
    let token = key
        .sign(&service_account::legacy_claims(
            "default",
            &sa_ref,
            "build-token",
        ))
        .unwrap();
    assert_eq!(
        user_of(&srv.state, &token).await.unwrap_err(),
        "Token has been invalidated"
    );
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "build-token",
            "annotations": {"kubernetes.io/service-account.name": "build"}},
        "type": "kubernetes.io/service-account-token",
        "stringData": {"token": token},
    }))
    .unwrap();
    let secrets = Api::<Secret>::namespaced(admin.clone(), "default");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let u = user_of(&srv.state, &token).await.unwrap();
    assert_eq!(u.name, "system:serviceaccount:default:build");
    secrets
        .delete("build-token", &DeleteParams::default())
        .await
        .unwrap();
    assert!(user_of(&srv.state, &token).await.is_err());
}

#[tokio::test]
async fn bootstrap_and_static_tokens_and_anonymous() {
    let srv = TestServer::start().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {"token-id": "abcdef", "token-secret": "0123456789abcdef",
            "usage-bootstrap-authentication": "true"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(srv.admin(), "kube-system")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let u = user_of(&srv.state, "abcdef.0123456789abcdef")
        .await
        .unwrap();
    assert_eq!(u.name, "system:bootstrap:abcdef");
    assert_eq!(u.groups, ["system:bootstrappers", "system:authenticated"]);
    assert!(user_of(&srv.state, "abcdef.0123456789abcdex")
        .await
        .is_err());

    let state = &srv.state;
    let anon = super::authenticate(state, None, None).await.unwrap();
    assert_eq!(anon.name, "system:anonymous");
    assert_eq!(anon.groups, ["system:unauthenticated"]);
    let basic = http::HeaderValue::from_static("Basic Zm9vOmJhcg==");
    assert!(super::is_anonymous(
        &super::authenticate(state, None, Some(&basic))
            .await
            .unwrap()
    ));
    let bad = http::HeaderValue::from_static("Bearer nope");
    assert_eq!(
        super::authenticate(state, None, Some(&bad))
            .await
            .unwrap_err()
            .code,
        401
    );
    let good = http::HeaderValue::from_static("bearer abcdef.0123456789abcdef");
    assert_eq!(
        super::authenticate(state, None, Some(&good))
            .await
            .unwrap()
            .name,
        "system:bootstrap:abcdef"
    );
}

/// Prints what authenticating a service-account bearer token costs, uncached (signature
/// and object lookups) and cached (what every request after the first pays).
#[tokio::test]
async fn service_account_token_authentication_cost() {
    let srv = TestServer::start().await;
    let admin = srv.admin();
    create_sa(&admin, "default", "build").await;
    let tr = token_request(&admin, "default", "build", json!({})).await;
    let token = tr["status"]["token"].as_str().unwrap();
    let header = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    const N: u32 = 200;
    let t = Instant::now();
    for _ in 0..N {
        srv.state
            .authn
            .token(&srv.state, token, None)
            .await
            .unwrap();
    }
    let uncached = t.elapsed() / N;
    super::authenticate(&srv.state, None, Some(&header))
        .await
        .unwrap();
    let t = Instant::now();
    for _ in 0..N * 10 {
        super::authenticate(&srv.state, None, Some(&header))
            .await
            .unwrap();
    }
    let cached = t.elapsed() / (N * 10);
    println!(
        "service-account bearer token: uncached {:.1} µs, cached {:.2} µs",
        uncached.as_secs_f64() * 1e6,
        cached.as_secs_f64() * 1e6
    );
    assert!(cached < uncached, "the cache must make lookups cheaper");
}
