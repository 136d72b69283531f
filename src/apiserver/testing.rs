//! A real API server state on a temporary store, for unit tests of the handlers and of
//! in-process components (no TLS, no socket).

use super::{ApiConfig, ApiState, TokenAuthenticator, UserInfo};
use crate::store::StoreConfig;
use std::sync::Arc;

pub struct TestServer {
    pub state: Arc<ApiState>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with_admission(super::admission::Chain::standard()).await
    }

    /// A server whose writes pass exactly this admission chain.
    pub async fn with_admission(admission: super::admission::Chain) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = ApiState::open(ApiConfig {
            store: StoreConfig::new(dir.path().join("db")),
            ca_pem: String::new(),
            tokens: TokenAuthenticator::new(vec![]),
            service_account_key: Arc::new(
                crate::pki::ServiceAccountKey::generate().expect("service account key"),
            ),
            service_cidr: "10.43.0.0/16".into(),
            max_requests_inflight: crate::apiserver::DEFAULT_MAX_REQUESTS_INFLIGHT,
            advertise: "127.0.0.1:6443".parse().expect("static address"),
            admission,
        })
        .await
        .expect("api state");
        TestServer { state, _dir: dir }
    }

    /// A client with cluster-admin rights.
    pub fn admin(&self) -> kube::Client {
        self.state
            .client(UserInfo::new("system:admin", &["system:masters"]))
    }

    pub fn client_as(&self, user: &str, groups: &[&str]) -> kube::Client {
        self.state.client(UserInfo::new(user, groups))
    }

    /// The `default` namespace's `default` ServiceAccount, which pod admission wants and no
    /// service account controller creates here.
    pub async fn create_default_service_account(&self) {
        use k8s_openapi::api::core::v1::ServiceAccount;
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))
                .expect("service account");
        kube::Api::<ServiceAccount>::namespaced(self.admin(), "default")
            .create(&kube::api::PostParams::default(), &sa)
            .await
            .expect("default service account");
    }
}
