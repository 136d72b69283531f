//! The CSR signer, the CSR approver and the legacy token controller running against a
//! real API server state.

use super::testing::{eventually, Cluster};
use crate::pki::csr::tests::request;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};

async fn create_csr(
    c: &Cluster,
    name: &str,
    signer: &str,
    pem: &str,
    usages: &[&str],
    extra_spec: Value,
) -> Api<CertificateSigningRequest> {
    let api = Api::<CertificateSigningRequest>::all(c.client.clone());
    let mut spec = json!({"request": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem),
        "signerName": signer, "usages": usages});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    let csr: CertificateSigningRequest =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    api.create(&PostParams::default(), &csr)
        .await
        .expect("create csr");
    api
}

async fn approve(api: &Api<CertificateSigningRequest>, name: &str) {
    let mut csr = api.get(name).await.unwrap();
    csr.status.get_or_insert_with(Default::default).conditions = Some(vec![serde_json::from_value(
        json!({"type": "Approved", "status": "True", "reason": "Test", "message": "approved by the test"}),
    )
    .unwrap()]);
    api.replace_subresource("approval", name, &PostParams::default(), &csr)
        .await
        .expect("approve");
}

fn condition(csr: &CertificateSigningRequest, kind: &str) -> Option<Value> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| serde_json::to_value(c).unwrap())
}

#[tokio::test]
async fn approved_client_csr_is_signed_and_misfit_usages_fail() {
    let c = Cluster::start_with_signing().await;
    let api = create_csr(
        &c,
        "jane",
        "kubernetes.io/kube-apiserver-client",
        &request("jane", &["devs"], &[]),
        &["client auth"],
        json!({"expirationSeconds": 3600}),
    )
    .await;
    // Not approved: nothing is issued.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(api
        .get("jane")
        .await
        .unwrap()
        .status
        .and_then(|s| s.certificate)
        .is_none());
    approve(&api, "jane").await;
    eventually("the certificate is issued", || async {
        api.get("jane")
            .await
            .unwrap()
            .status
            .and_then(|s| s.certificate)
            .is_some()
    })
    .await;
    let cert = api
        .get("jane")
        .await
        .unwrap()
        .status
        .unwrap()
        .certificate
        .unwrap();
    let der = crate::pki::certs_from_pem(std::str::from_utf8(&cert.0).unwrap()).unwrap();
    assert_eq!(
        crate::pki::client_identity(&der[0]).unwrap(),
        ("jane".into(), vec!["devs".into()])
    );
    let (_, x) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
    assert_eq!(
        x.validity().not_after.timestamp() - x.validity().not_before.timestamp(),
        3600
    );

    let api = create_csr(
        &c,
        "web",
        "kubernetes.io/kube-apiserver-client",
        &request("web", &[], &[]),
        &["server auth"],
        json!({}),
    )
    .await;
    approve(&api, "web").await;
    eventually("the request fails", || async {
        condition(&api.get("web").await.unwrap(), "Failed").is_some()
    })
    .await;
    let failed = api.get("web").await.unwrap();
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond["reason"], "SignerValidationFailure");
    assert_eq!(
        cond["message"],
        "invalid usage for client certificate: server auth"
    );
    assert!(failed.status.unwrap().certificate.is_none());
    c.stop().await;
}

/// The requester is in system:masters (the only group the authorizer allows before the
/// rbac slice lands), so the approver's SubjectAccessReview for `nodeclient` is allowed.
#[tokio::test]
async fn kubelet_client_csr_of_an_authorized_requester_is_auto_approved_and_signed() {
    let c = Cluster::start_with_signing().await;
    let pem = request("system:node:n1", &["system:nodes"], &[]);
    let api = create_csr(&c, "node-n1", "kubernetes.io/kube-apiserver-client-kubelet", &pem,
        &["digital signature", "client auth"],
        json!({"username": "system:bootstrap:abcdef", "groups": ["system:bootstrappers", "system:masters"]})).await;
    eventually("the request is approved and signed", || async {
        let csr = api.get("node-n1").await.unwrap();
        condition(&csr, "Approved").is_some() && csr.status.and_then(|s| s.certificate).is_some()
    })
    .await;
    let cond = condition(&api.get("node-n1").await.unwrap(), "Approved").unwrap();
    assert_eq!(cond["reason"], "AutoApproved");
    // Another signer's requests are not the approver's business.
    let api = create_csr(
        &c,
        "other",
        "kubernetes.io/kube-apiserver-client",
        &request("x", &[], &[]),
        &["client auth"],
        json!({"username": "system:admin", "groups": ["system:masters"]}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(condition(&api.get("other").await.unwrap(), "Approved").is_none());
    c.stop().await;
}

#[tokio::test]
async fn legacy_token_secrets_are_filled_and_go_with_their_service_account() {
    let c = Cluster::start_with_signing().await;
    let sas = Api::<ServiceAccount>::namespaced(c.client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "build"}})).unwrap();
    let sa = sas.create(&PostParams::default(), &sa).await.unwrap();
    let secrets = Api::<Secret>::namespaced(c.client.clone(), "default");
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "build-token", "annotations": {"kubernetes.io/service-account.name": "build"}},
        "type": "kubernetes.io/service-account-token",
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    eventually("the token is filled in", || async {
        secrets
            .get("build-token")
            .await
            .unwrap()
            .data
            .is_some_and(|d| d.contains_key("token"))
    })
    .await;
    let s = secrets.get("build-token").await.unwrap();
    let data = s.data.unwrap();
    assert_eq!(data["namespace"].0, b"default");
    assert!(std::str::from_utf8(&data["ca.crt"].0)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert_eq!(
        s.metadata.annotations.unwrap()["kubernetes.io/service-account.uid"],
        sa.metadata.uid.clone().unwrap()
    );
    let token = String::from_utf8(data["token"].0.clone()).unwrap();
    let state = c.state();
    let user = state.authn.token(state, &token, None).await.unwrap().user;
    assert_eq!(user.name, "system:serviceaccount:default:build");
    sas.delete("build", &DeleteParams::default()).await.unwrap();
    eventually("the secret goes with its service account", || async {
        secrets.get_opt("build-token").await.unwrap().is_none()
    })
    .await;
    assert!(state.authn.token(state, &token, None).await.is_err());
    c.stop().await;
}
