//! NamespaceLifecycle (upstream's `namespace/lifecycle` plugin): nothing is created in a
//! namespace that does not exist (404) or is being terminated (403 with the
//! `NamespaceTerminating` cause), and the immortal namespaces cannot be deleted.
//!
//! Invariant: only creates of namespaced objects and deletes of the immortal namespaces
//! reach this plugin; updates and deletes of other objects never pay for it.

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use serde_json::{json, Value};
use std::sync::Arc;

/// Namespaces that may never be deleted (upstream's `--immortal-namespaces` default).
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

pub struct NamespaceLifecycle;

impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        match attrs.operation {
            Operation::Create => {
                attrs.namespace.is_some()
                    && attrs.rt.namespaced
                    // Access reviews must not reveal whether a namespace exists.
                    && !attrs.is("authorization.k8s.io", "localsubjectaccessreviews")
            }
            Operation::Delete => {
                attrs.is("", "namespaces") && attrs.is_main() && IMMORTAL.contains(&attrs.name)
            }
            _ => false,
        }
    }

    /// Upstream runs this in the mutating phase: a missing namespace answers before the
    /// object's validation.
    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        _obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let ns = attrs.namespace.unwrap_or_default();
            // Every create in a namespace asks: only the two fields that tell are read.
            let fields = ["status.phase", "metadata.deletionTimestamp"];
            let namespace = support::get_fields(state, "", "namespaces", None, ns, &fields);
            let Some(namespace) = namespace.await? else {
                return Err(ApiError::namespace_not_found(ns));
            };
            let terminating = namespace["status"]["phase"] == "Terminating"
                || !namespace["metadata"]["deletionTimestamp"].is_null();
            if terminating {
                let mut err = attrs.forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ));
                if let Some(d) = err.details.as_mut() {
                    d["causes"] = json!([{
                        "reason": "NamespaceTerminating",
                        "message": format!("namespace {ns} is being terminated"),
                        "field": "metadata.namespace",
                    }]);
                }
                return Err(err);
            }
            Ok(())
        })
    }

    /// Deletes have no mutating phase; only immortal namespaces' deletes get here.
    fn validate<'a>(
        &'a self,
        _state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        _obj: Option<&'a Value>,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            if attrs.operation == Operation::Delete {
                return Err(attrs.forbidden("this namespace may not be deleted"));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::admission::Chain;
    use crate::apiserver::testing::TestServer;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

    async fn server() -> TestServer {
        TestServer::with_admission(Chain::of(vec![Box::new(NamespaceLifecycle)])).await
    }

    fn cm(name: &str) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
    }

    fn api_err(e: kube::Error) -> kube::core::Status {
        match e {
            kube::Error::Api(s) => *s,
            other => panic!("not an API error: {other:?}"),
        }
    }

    #[tokio::test]
    async fn creates_in_a_missing_namespace_are_not_found() {
        let srv = server().await;
        let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "nowhere");
        let e = api_err(
            api.create(&PostParams::default(), &cm("a"))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, 404);
        assert_eq!(e.message, r#"namespaces "nowhere" not found"#);
        // Server-side apply creating the object is refused the same way.
        let e = api_err(
            api.patch(
                "a",
                &PatchParams::apply("t"),
                &Patch::Apply(
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
                ),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(e.code, 404, "{}", e.message);
    }

    #[tokio::test]
    async fn creates_in_a_terminating_namespace_are_forbidden_but_updates_pass() {
        let srv = server().await;
        let nss: Api<Namespace> = Api::all(srv.admin());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
        let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "doomed");
        api.create(&PostParams::default(), &cm("kept"))
            .await
            .unwrap();
        nss.delete("doomed", &DeleteParams::default())
            .await
            .unwrap();
        let e = api_err(
            api.create(&PostParams::default(), &cm("b"))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            r#"configmaps "b" is forbidden: unable to create new content in namespace doomed because it is being terminated"#
        );
        let e = api_err(
            api.patch(
                "c",
                &PatchParams::apply("t"),
                &Patch::Apply(
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
                ),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(e.code, 403, "{}", e.message);
        // Changing what is already there is still allowed while the namespace drains.
        api.patch(
            "kept",
            &PatchParams::apply("t"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"k": "v"}})),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn the_terminating_refusal_carries_upstreams_cause() {
        let srv = server().await;
        let nss: Api<Namespace> = Api::all(srv.admin());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "gone"}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
        nss.delete("gone", &DeleteParams::default()).await.unwrap();
        let svc = crate::apiserver::InProcessService::new(
            srv.state.clone(),
            crate::apiserver::UserInfo::new("system:admin", &["system:masters"]),
        );
        use tower::ServiceExt;
        let req = http::Request::builder()
            .method("POST")
            .uri("/api/v1/namespaces/gone/configmaps")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                r#"{"metadata":{"name":"x"}}"#,
            )))
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 403);
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let status: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            status["details"],
            json!({"name": "x", "kind": "configmaps", "causes": [{
                "reason": "NamespaceTerminating",
                "message": "namespace gone is being terminated",
                "field": "metadata.namespace"}]})
        );
    }

    #[tokio::test]
    async fn immortal_namespaces_cannot_be_deleted() {
        let srv = server().await;
        let nss: Api<Namespace> = Api::all(srv.admin());
        for name in IMMORTAL {
            let e = api_err(
                nss.delete(name, &DeleteParams::default())
                    .await
                    .unwrap_err(),
            );
            assert_eq!(e.code, 403);
            assert_eq!(
                e.message,
                format!(r#"namespaces "{name}" is forbidden: this namespace may not be deleted"#)
            );
            let ns = nss.get(name).await.unwrap();
            assert!(ns.metadata.deletion_timestamp.is_none());
        }
        // Others can.
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "mortal"}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
        nss.delete("mortal", &DeleteParams::default())
            .await
            .unwrap();
    }
}
