//! The admission seam through the in-process client: order of the phases, refusals, retries
//! of updates whose object changed while admission ran, and warnings.

use super::{Admit, Attributes, Chain, Operation, Plugin};
use crate::apiserver::status::ApiError;
use crate::apiserver::testing::TestServer;
use crate::apiserver::{ApiState, InProcessService, UserInfo};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

/// Labels every ConfigMap with `admitted=<operation>`; refuses deleting one named `keep`;
/// warns on creates; counts its calls.
#[derive(Default)]
struct Labeller {
    admitted: AtomicUsize,
    /// On the first update only: writes the object behind admission's back, as a concurrent
    /// client would, so the admitted write must be computed again.
    interfere_once: AtomicUsize,
}

impl Plugin for Labeller {
    fn name(&self) -> &'static str {
        "Labeller"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.is("", "configmaps")
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            self.admitted.fetch_add(1, Ordering::SeqCst);
            obj["metadata"]["labels"]["admitted"] = json!(attrs.operation.as_str().to_lowercase());
            if attrs.operation == Operation::Create {
                attrs.warn("labelled by the test plugin");
            }
            if attrs.operation == Operation::Update
                && self.interfere_once.fetch_add(1, Ordering::SeqCst) == 0
            {
                let other = Api::<ConfigMap>::namespaced(admin(state), "default");
                other
                    .patch(
                        attrs.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"concurrent": "yes"}})),
                    )
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            }
            Ok(())
        })
    }

    fn validate<'a>(
        &'a self,
        _state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            if attrs.operation == Operation::Delete {
                assert!(obj.is_none());
                if old.is_some_and(|o| o["metadata"]["name"] == "keep") {
                    return Err(ApiError::forbidden("the test plugin keeps \"keep\""));
                }
            }
            Ok(())
        })
    }
}

fn admin(state: &Arc<ApiState>) -> kube::Client {
    state.client(UserInfo::new("system:admin", &["system:masters"]))
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .expect("configmap")
}

async fn server() -> (TestServer, Arc<Labeller>) {
    let plugin = Arc::new(Labeller::default());
    let srv = TestServer::with_admission(Chain::of(vec![Box::new(Shared(plugin.clone()))])).await;
    (srv, plugin)
}

/// Lets the test keep a handle on the plugin the chain owns.
struct Shared(Arc<Labeller>);

impl Plugin for Shared {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        self.0.handles(attrs)
    }
    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        self.0.admit(state, attrs, obj, old)
    }
    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        self.0.validate(state, attrs, obj, old)
    }
}

#[tokio::test]
async fn mutating_admission_changes_what_is_stored_on_create_and_update() {
    let (srv, plugin) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert_eq!(created.metadata.labels.unwrap()["admitted"], "create");
    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "w"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["admitted"], "update");
    let data = patched.data.unwrap();
    assert_eq!(data["k"], "w");
    // The concurrent write made while admission ran is kept: the update was recomputed.
    assert_eq!(data["concurrent"], "yes");
    // The create, the update twice (its first attempt lost the race) and the interfering
    // patch itself, which is admitted like any write.
    assert_eq!(plugin.admitted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn validating_admission_refuses_a_delete_and_the_object_stays() {
    let (srv, _) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    api.create(&PostParams::default(), &cm("keep"))
        .await
        .unwrap();
    let err = api
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert!(s.message.contains("keeps \"keep\""), "{}", s.message);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(api.get_opt("keep").await.unwrap().is_some());
    api.create(&PostParams::default(), &cm("other"))
        .await
        .unwrap();
    api.delete("other", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn requests_no_plugin_handles_skip_admission() {
    let (srv, plugin) = server().await;
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(srv.admin(), "default");
    let s: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    let created = api.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.metadata.labels.is_none());
    assert_eq!(plugin.admitted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn admission_warnings_reach_the_client_as_warning_headers() {
    let (srv, _) = server().await;
    let svc = InProcessService::new(
        srv.state.clone(),
        UserInfo::new("system:admin", &["system:masters"]),
    );
    let req = http::Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            r#"{"metadata":{"name":"w"}}"#,
        )))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<_> = resp
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(warnings, vec![r#"299 - "labelled by the test plugin""#]);
    let _ = resp.into_body().collect().await;
}

#[tokio::test]
async fn validation_runs_after_mutating_admission() {
    /// Sets a label value no validation accepts.
    struct Breaker;
    impl Plugin for Breaker {
        fn name(&self) -> &'static str {
            "Breaker"
        }
        fn handles(&self, attrs: &Attributes<'_>) -> bool {
            attrs.is("", "configmaps")
        }
        fn admit<'a>(
            &'a self,
            _: &'a Arc<ApiState>,
            _: &'a Attributes<'a>,
            obj: &'a mut Value,
            _: Option<&'a Value>,
        ) -> Admit<'a> {
            obj["metadata"]["labels"]["bad"] = json!("not a valid value!");
            Box::pin(async { Ok(()) })
        }
    }
    let srv = TestServer::with_admission(Chain::of(vec![Box::new(Breaker)])).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    match api
        .create(&PostParams::default(), &cm("x"))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!(s.code, 422, "{}", s.message),
        other => panic!("unexpected {other:?}"),
    }
    assert!(api.get_opt("x").await.unwrap().is_none());
}
