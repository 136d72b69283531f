//! Controllers running against a real API server state on a temporary store.

use super::{Context, ControllerManager, Stats};
use crate::apiserver::testing::TestServer;
use crate::informers::Informers;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Cluster {
    /// Keeps the store's temporary directory alive.
    _server: TestServer,
    pub client: kube::Client,
    pub gc: Arc<Stats>,
    pub namespace: Arc<Stats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), super::ControllerError>>,
}

impl Cluster {
    /// A server with every controller running, acting as the controller manager, except
    /// those that need signing keys.
    pub async fn start() -> Cluster {
        Cluster::start_inner(false, None).await
    }

    /// [`Cluster::start`] with the batch controllers (Job, CronJob, TTL) reading `clock`.
    pub async fn start_with_clock(clock: super::clock::Clock) -> Cluster {
        Cluster::start_inner(false, Some(clock)).await
    }

    /// [`Cluster::start`] plus the CSR signer and approver and the legacy token controller.
    pub async fn start_with_signing() -> Cluster {
        Cluster::start_inner(true, None).await
    }

    async fn start_inner(signing: bool, clock: Option<super::clock::Clock>) -> Cluster {
        let server = TestServer::start().await;
        let stop = CancellationToken::new();
        let kcm = server.client_as(crate::apiserver::CONTROLLER_MANAGER_USER, &[]);
        let informers = Informers::new(kcm.clone(), stop.clone());
        // The handlers' test authorizer allows the controller manager everything; every
        // controller acts as it here (RBAC of the per-controller identities is tested
        // end to end).
        let as_kcm = kcm.clone();
        let pki_dir = tempfile::tempdir().expect("temp dir");
        let pki = crate::pki::ServerPki::ensure(pki_dir.path(), &[]).expect("test PKI");
        let mut manager = ControllerManager::new(Context {
            client: kcm.clone(),
            informers: informers.clone(),
            clients: Arc::new(move |_| as_kcm.clone()),
            loopback: kcm,
            root_ca: server.state.ca_pem.as_str().into(),
            signing: signing.then(|| {
                Arc::new(super::Signing {
                    ca: pki.ca.clone(),
                    service_account_key: server.state.authn.service_account_key().clone(),
                })
            }),
        });
        if let Some(clock) = clock {
            manager.set_batch_clock(clock);
        }
        let gc = manager.stats("garbage-collector").expect("gc registered");
        let namespace = manager
            .stats("namespace")
            .expect("namespace controller registered");
        tokio::spawn(informers.run());
        let task = tokio::spawn(manager.run(stop.clone()));
        Cluster {
            client: server.admin(),
            _server: server,
            gc,
            namespace,
            stop,
            task,
        }
    }

    /// The API server state the controllers run against.
    pub fn state(&self) -> &Arc<crate::apiserver::ApiState> {
        &self._server.state
    }

    /// Stops the controllers and fails the test if one of them failed.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("controllers did not panic")
            .expect("controllers stopped cleanly");
    }
}

/// Polls `check` until it returns true, for up to 30 s (the in-process clusters of
/// parallel tests share two cores with the end-to-end tests).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pods of `default` not being deleted, sorted by name.
pub async fn live_pods(client: &kube::Client) -> Vec<k8s_openapi::api::core::v1::Pod> {
    use k8s_openapi::api::core::v1::Pod;
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    let mut pods: Vec<Pod> = api
        .list(&Default::default())
        .await
        .expect("listing pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by_key(|p| p.metadata.name.clone());
    pods
}

/// Marks every pod of `ns` that is not Ready yet Running and Ready (condition and
/// `startTime` now), as a kubelet would; there is no kubelet in controller tests.
pub async fn mark_pods_ready(client: &kube::Client, ns: &str) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&Default::default())
        .await
        .expect("listing pods to mark ready");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for p in list.items {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let patch = serde_json::json!({"status": {
            "phase": "Running",
            "startTime": now,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        }});
        let name = p.metadata.name.clone().unwrap_or_default();
        let _ = pods
            .patch_status(&name, &Default::default(), &kube::api::Patch::Merge(&patch))
            .await;
    }
}

/// Creates the namespaced custom resource type `<plural>.example.com` (version v1, kind
/// `kind`, any fields kept, with `subresources`) and returns its API in `default`. The API
/// server serves a type as soon as its definition is created.
pub async fn example_crd(
    client: &kube::Client,
    kind: &str,
    plural: &str,
    subresources: serde_json::Value,
) -> kube::Api<kube::api::DynamicObject> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": subresources}]}}))
    .expect("a CustomResourceDefinition");
    kube::Api::<CustomResourceDefinition>::all(client.clone())
        .create(&Default::default(), &crd)
        .await
        .expect("creating the CustomResourceDefinition");
    let ar = kube::api::ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    kube::Api::namespaced_with(client.clone(), "default", &ar)
}
