//! NodePassword (k3s's node password, not an upstream plugin): a host that joins with a
//! token proves it is the same host as the last one that joined under that node name.
//!
//! Why here: a join token (the server token, or a bootstrap token) may create node-client
//! CSRs for *any* node name, and the auto-approver approves them, so a second host holding a
//! token could take over an existing node's identity. Every such CSR is created through the
//! API server by a `system:bootstrappers` identity, so admission of that create is the one
//! point no joining host can go around (the approver only sees the stored object; a separate
//! endpoint could be skipped by creating the CSR directly).
//!
//! How: the agent keeps a random password in `<agent-dir>/node-password` and sends it in the
//! annotation [`ANNOTATION`] of its node-client CSR. On the first join of node `N` this
//! plugin records a salted SHA-256 of it in the Secret `kube-system/N.node-password.skiff`;
//! later joins of `N` must present the same password, else the create is refused (403) with
//! [`mismatch_message`]. The annotation is removed before the CSR is stored, so the password
//! never lands where other bootstrappers (who may read CSRs) could see it. A node renewing
//! its certificate uses its own identity (`system:node:N`), not a token, and is not asked.
//! An administrator lets a rebuilt host rejoin under the old name by deleting the Secret
//! (as with k3s).
//!
//! Invariant: only creates of `kube-apiserver-client-kubelet` CSRs by users in
//! `system:bootstrappers` are looked at (`handles` is a few comparisons); a dry run checks
//! but records nothing.

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::apiserver::status::ApiError;
use crate::apiserver::{ApiState, UserInfo};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The CSR annotation carrying the node password (removed before storage).
pub const ANNOTATION: &str = "skiff.io/node-password";
/// Type of the Secrets holding node password hashes.
pub const SECRET_TYPE: &str = "skiff.io/node-password";
const NAMESPACE: &str = "kube-system";
const BOOTSTRAPPERS: &str = "system:bootstrappers";
const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";

pub struct NodePassword;

/// The Secret recording node `node`'s password hash.
pub fn secret_name(node: &str) -> String {
    format!("{node}.node-password.skiff")
}

/// The refusal a joining host sees.
pub fn mismatch_message(node: &str) -> String {
    format!(
        "node password rejected: node {node:?} has already joined from another host (or its \
         node-password file changed); use a unique --node-name, or delete the Secret \
         {NAMESPACE}/{} to let this host take the name over",
        secret_name(node)
    )
}

fn hash(salt: &str, password: &str) -> String {
    hex::encode(Sha256::digest(format!("{salt}:{password}").as_bytes()))
}

/// Whether `password` matches the recorded `sha256:<salt>:<hash>`.
fn matches(recorded: &str, password: &str) -> bool {
    let mut parts = recorded.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sha256"), Some(salt), Some(h)) => {
            crate::apiserver::authn::constant_time_eq(h.as_bytes(), hash(salt, password).as_bytes())
        }
        _ => false,
    }
}

fn record(password: &str) -> String {
    let salt = hex::encode(rand::random::<[u8; 16]>());
    format!("sha256:{salt}:{}", hash(&salt, password))
}

/// The node name a CSR body asks for (`system:node:<name>`), if it is one.
fn requested_node(obj: &Value) -> Option<String> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(obj["spec"]["request"].as_str()?)
        .ok()?;
    let info = crate::pki::csr::parse(&pem).ok()?;
    info.common_name
        .strip_prefix("system:node:")
        .map(str::to_owned)
}

impl NodePassword {
    async fn check(
        &self,
        state: &Arc<ApiState>,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let password = obj["metadata"]["annotations"][ANNOTATION]
            .as_str()
            .map(str::to_owned);
        if let Some(a) = obj["metadata"]["annotations"].as_object_mut() {
            a.remove(ANNOTATION);
        }
        // Not a node-client request (the signer validates its shape): nothing to protect.
        let Some(node) = requested_node(obj) else {
            return Ok(());
        };
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return Err(attrs.forbidden(format!(
                "a node joining with a token must send its node password (annotation {ANNOTATION})"
            )));
        };
        let name = secret_name(&node);
        let stored = support::get(state, "", "secrets", Some(NAMESPACE), &name).await?;
        if let Some(secret) = stored {
            let recorded = secret["data"]["hash"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if matches(&recorded, &password) {
                return Ok(());
            }
            tracing::warn!(node = %node, user = %attrs.user.name, "node password mismatch; join refused");
            return Err(attrs.forbidden(mismatch_message(&node)));
        }
        if attrs.dry_run {
            return Ok(());
        }
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "type": SECRET_TYPE,
            "stringData": {"hash": record(&password)},
        });
        let loopback = state.client(UserInfo::new(
            crate::authz::LOOPBACK_USER,
            &[crate::apiserver::MASTERS_GROUP],
        ));
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
            loopback,
            NAMESPACE,
            &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        );
        let obj: kube::api::DynamicObject = serde_json::from_value(secret)
            .map_err(|e| ApiError::internal(format!("node password Secret: {e}")))?;
        match api.create(&kube::api::PostParams::default(), &obj).await {
            Ok(_) => Ok(()),
            // Another join of the same name got there first: it decides.
            Err(kube::Error::Api(s)) if s.code == 409 => Err(attrs.forbidden(format!(
                "node {node:?} is joining concurrently from another host; retry"
            ))),
            Err(e) => Err(ApiError::internal(format!(
                "recording the node password of {node:?}: {e}"
            ))),
        }
    }
}

impl Plugin for NodePassword {
    fn name(&self) -> &'static str {
        "NodePassword"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.operation == Operation::Create
            && attrs.is_main()
            && attrs.is("certificates.k8s.io", "certificatesigningrequests")
            && attrs.user.in_group(BOOTSTRAPPERS)
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            if obj["spec"]["signerName"] != KUBELET_CLIENT {
                return Ok(());
            }
            self.check(state, attrs, obj).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_hashes_match_only_their_password() {
        let r = record("pw1");
        assert!(r.starts_with("sha256:"));
        assert!(matches(&r, "pw1"));
        assert!(!matches(&r, "pw2"));
        assert!(!matches("garbage", "pw1"));
        // Salted: the same password records differently.
        assert_ne!(record("pw1"), r);
    }

    struct AllowAll;
    impl crate::apiserver::Authorizer for AllowAll {
        fn authorize(
            &self,
            _: &UserInfo,
            _: &crate::apiserver::AuthzAttributes<'_>,
        ) -> crate::apiserver::Decision {
            crate::apiserver::Decision::Allow
        }
        fn authorize_non_resource(
            &self,
            _: &UserInfo,
            _: &str,
            _: &str,
        ) -> crate::apiserver::Decision {
            crate::apiserver::Decision::Allow
        }
    }

    fn csr(
        node: &str,
        password: Option<&str>,
    ) -> k8s_openapi::api::certificates::v1::CertificateSigningRequest {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        serde_json::from_value(json!({
            "metadata": {
                "generateName": "node-csr-",
                "annotations": password.map(|p| json!({ANNOTATION: p})).unwrap_or(json!({})),
            },
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(pem),
                "signerName": KUBELET_CLIENT,
                "usages": ["digital signature", "client auth"],
            }
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_second_host_cannot_take_over_a_node_name() {
        use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
        let s = crate::apiserver::testing::TestServer::start().await;
        s.state.set_authorizer(Arc::new(AllowAll));
        let joiner = s.client_as("system:bootstrap:abcdef", &[BOOTSTRAPPERS]);
        let api: kube::Api<CertificateSigningRequest> = kube::Api::all(joiner);
        let pp = kube::api::PostParams::default();
        let first = api.create(&pp, &csr("n1", Some("pw-a"))).await.unwrap();
        // The password is checked, recorded and never stored with the CSR.
        assert!(!first
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ANNOTATION));
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(s.admin(), NAMESPACE);
        let rec = secrets.get(&secret_name("n1")).await.unwrap();
        assert_eq!(rec.type_.as_deref(), Some(SECRET_TYPE));
        // The same host again: fine.
        api.create(&pp, &csr("n1", Some("pw-a"))).await.unwrap();
        // Another host under the same name: refused with the way out.
        match api.create(&pp, &csr("n1", Some("pw-b"))).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 403);
                assert!(e.message.contains(&mismatch_message("n1")), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        // No password at all: refused.
        match api.create(&pp, &csr("n2", None)).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 403),
            other => panic!("{other:?}"),
        }
        // A node renewing with its own identity is not asked.
        let node: kube::Api<CertificateSigningRequest> =
            kube::Api::all(s.client_as("system:node:n1", &["system:nodes"]));
        node.create(&pp, &csr("n1", None)).await.unwrap();
    }

    #[test]
    fn the_refusal_names_the_node_and_the_way_out() {
        let m = mismatch_message("n2");
        assert!(m.starts_with("node password rejected"));
        assert!(m.contains("kube-system/n2.node-password.skiff"));
    }
}
