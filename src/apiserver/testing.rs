//! A real API server state on a temporary store, for unit tests of the handlers and of
//! in-process components (no TLS, no socket).

use super::{ApiConfig, ApiState, TokenAuthenticator, UserInfo};
use crate::store::{Store, StoreConfig};
use std::sync::Arc;

pub struct TestServer {
    pub state: Arc<ApiState>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(StoreConfig::new(dir.path().join("db"))).expect("store opens");
        let state = ApiState::new(ApiConfig {
            store,
            ca_pem: String::new(),
            tokens: TokenAuthenticator::new(vec![]),
            service_cidr: "10.43.0.0/16".into(),
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
}
