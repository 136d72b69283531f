//! RuntimeClass: a pod created with `spec.runtimeClassName` must name an existing
//! RuntimeClass (else it is refused); it gets the class's `overhead.podFixed` as
//! `spec.overhead` (a pod giving a different overhead is refused), the class's
//! `scheduling.nodeSelector` merged into its node selector (a conflicting value is refused)
//! and the class's tolerations merged into its own, as upstream.

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::api::quantity::Quantity;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub struct RuntimeClass;

async fn class_of(
    state: &ApiState,
    attrs: &Attributes<'_>,
    pod: &Value,
) -> Result<Option<Value>, ApiError> {
    let Some(name) = pod["spec"]["runtimeClassName"].as_str() else {
        return Ok(None);
    };
    match support::get(state, "node.k8s.io", "runtimeclasses", None, name).await? {
        Some(c) => Ok(Some(c)),
        None => Err(attrs.forbidden(format!("pod rejected: RuntimeClass \"{name}\" not found"))),
    }
}

/// Resource lists equal as quantities (`1000m` equals `1`), as `Semantic.DeepEqual`.
fn same_resources(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a.as_object().is_none_or(Map::is_empty) && b.as_object().is_none_or(Map::is_empty);
    };
    a.len() == b.len()
        && a.iter().all(|(k, va)| {
            let q = |v: &Value| v.as_str().and_then(|s| Quantity::parse(s).ok());
            b.get(k).is_some_and(|vb| q(va).is_some() && q(va) == q(vb))
        })
}

const OVERHEAD_MISMATCH: &str =
    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead";

/// Upstream's `isSuperset(ss, t)` on tolerations.
fn is_superset(ss: &Value, t: &Value) -> bool {
    if ss == t {
        return true;
    }
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    if s(t, "key") != s(ss, "key") && (!s(ss, "key").is_empty() || s(ss, "operator") != "Exists") {
        return false;
    }
    if s(t, "effect") != s(ss, "effect") && !s(ss, "effect").is_empty() {
        return false;
    }
    if s(ss, "effect") == "NoExecute" {
        if let Some(limit) = ss["tolerationSeconds"].as_i64() {
            match t["tolerationSeconds"].as_i64() {
                Some(ts) if ts <= limit => {}
                _ => return false,
            }
        }
    }
    match s(ss, "operator").as_str() {
        "Equal" | "" => s(t, "operator") == "Equal" && s(t, "value") == s(ss, "value"),
        "Exists" => true,
        _ => false,
    }
}

/// Upstream's `MergeTolerations`: the union without tolerations another one covers.
fn merge_tolerations(first: &[Value], second: &[Value]) -> Vec<Value> {
    let all: Vec<&Value> = first.iter().chain(second).collect();
    let mut merged: Vec<Value> = Vec::new();
    'next: for (i, t) in all.iter().enumerate() {
        if merged.iter().any(|m| is_superset(m, t)) {
            continue;
        }
        for t2 in &all[i + 1..] {
            if t != t2 && is_superset(t2, t) {
                continue 'next;
            }
        }
        merged.push((*t).clone());
    }
    merged
}

impl Plugin for RuntimeClass {
    fn name(&self) -> &'static str {
        "RuntimeClass"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.operation == Operation::Create && attrs.is_main() && attrs.is("", "pods")
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        pod: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let Some(class) = class_of(state, attrs, pod).await? else {
                return Ok(());
            };
            let fixed = &class["overhead"]["podFixed"];
            if !class["overhead"].is_null() {
                let have = &pod["spec"]["overhead"];
                if have.as_object().is_some_and(|m| !m.is_empty()) && !same_resources(fixed, have) {
                    return Err(attrs.forbidden(OVERHEAD_MISMATCH));
                }
                pod["spec"]["overhead"] = fixed.clone();
            }
            let scheduling = &class["scheduling"];
            if scheduling.is_null() {
                return Ok(());
            }
            let runtime_selector = support::str_map(&scheduling["nodeSelector"]);
            if pod["spec"]["nodeSelector"].is_object() {
                let selector = &mut pod["spec"]["nodeSelector"];
                for (k, v) in &runtime_selector {
                    if let Some(have) = selector[k].as_str() {
                        if have != v {
                            return Err(attrs.forbidden(format!("conflict: runtimeClass.scheduling.nodeSelector[{k}] = {v}; pod.spec.nodeSelector[{k}] = {have}")));
                        }
                    }
                    selector[k] = json!(v);
                }
            } else if !scheduling["nodeSelector"].is_null() {
                pod["spec"]["nodeSelector"] = scheduling["nodeSelector"].clone();
            }
            let own = pod["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let extra = scheduling["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let merged = merge_tolerations(&own, &extra);
            if merged.is_empty() {
                if let Some(m) = pod["spec"].as_object_mut() {
                    m.remove("tolerations");
                }
            } else {
                pod["spec"]["tolerations"] = Value::Array(merged);
            }
            Ok(())
        })
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        pod: Option<&'a Value>,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let Some(pod) = pod else { return Ok(()) };
            let class = class_of(state, attrs, pod).await?;
            let have = &pod["spec"]["overhead"];
            match class.as_ref().filter(|c| !c["overhead"].is_null()) {
                Some(c) if !same_resources(&c["overhead"]["podFixed"], have) => {
                    Err(attrs.forbidden(OVERHEAD_MISMATCH))
                }
                Some(_) => Ok(()),
                None if !have.is_null() => Err(attrs.forbidden(
                    "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead",
                )),
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::admission::Chain;
    use crate::apiserver::testing::TestServer;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ApiResource, DynamicObject, PostParams};

    fn pod(name: &str, spec_extra: Value) -> Pod {
        let mut v = json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        for (k, val) in spec_extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn message(e: kube::Error) -> String {
        match e {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 403, "{}", s.message);
                s.message
            }
            other => panic!("{other:?}"),
        }
    }

    async fn server() -> (TestServer, Api<Pod>) {
        let srv = TestServer::with_admission(Chain::of(vec![Box::new(RuntimeClass)])).await;
        let ar = ApiResource {
            group: "node.k8s.io".into(),
            version: "v1".into(),
            api_version: "node.k8s.io/v1".into(),
            kind: "RuntimeClass".into(),
            plural: "runtimeclasses".into(),
        };
        let classes: Api<DynamicObject> = Api::all_with(srv.admin(), &ar);
        let rc: DynamicObject = serde_json::from_value(json!({"apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass", "metadata": {"name": "kata"}, "handler": "kata",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
            "scheduling": {"nodeSelector": {"runtime": "kata"},
                           "tolerations": [{"key": "kata", "operator": "Exists", "effect": "NoSchedule"}]}}))
        .unwrap();
        classes.create(&PostParams::default(), &rc).await.unwrap();
        let pods = Api::namespaced(srv.admin(), "default");
        (srv, pods)
    }

    #[tokio::test]
    async fn the_class_sets_overhead_node_selector_and_tolerations() {
        let (_srv, pods) = server().await;
        let p = pods
            .create(
                &PostParams::default(),
                &pod(
                    "a",
                    json!({"runtimeClassName": "kata",
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "other", "operator": "Exists"}]}),
                ),
            )
            .await
            .unwrap();
        let spec = serde_json::to_value(p.spec.unwrap()).unwrap();
        assert_eq!(spec["overhead"], json!({"cpu": "250m", "memory": "64Mi"}));
        assert_eq!(
            spec["nodeSelector"],
            json!({"disk": "ssd", "runtime": "kata"})
        );
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "other", "operator": "Exists"},
                   {"key": "kata", "operator": "Exists", "effect": "NoSchedule"}])
        );
        // The same overhead written differently is accepted.
        pods.create(
            &PostParams::default(),
            &pod(
                "b",
                json!({"runtimeClassName": "kata",
            "overhead": {"cpu": "0.25", "memory": "64Mi"}}),
            ),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn unknown_classes_and_mismatches_are_refused() {
        let (_srv, pods) = server().await;
        let e = pods
            .create(
                &PostParams::default(),
                &pod("x", json!({"runtimeClassName": "gvisor"})),
            )
            .await
            .unwrap_err();
        assert_eq!(
            message(e),
            r#"pods "x" is forbidden: pod rejected: RuntimeClass "gvisor" not found"#
        );
        let e = pods
            .create(
                &PostParams::default(),
                &pod(
                    "y",
                    json!({"runtimeClassName": "kata",
                "overhead": {"cpu": "1"}}),
                ),
            )
            .await
            .unwrap_err();
        assert_eq!(
            message(e),
            format!(r#"pods "y" is forbidden: {OVERHEAD_MISMATCH}"#)
        );
        let e = pods
            .create(
                &PostParams::default(),
                &pod(
                    "z",
                    json!({"runtimeClassName": "kata",
                "nodeSelector": {"runtime": "runc"}}),
                ),
            )
            .await
            .unwrap_err();
        assert_eq!(
            message(e),
            r#"pods "z" is forbidden: conflict: runtimeClass.scheduling.nodeSelector[runtime] = kata; pod.spec.nodeSelector[runtime] = runc"#
        );
        let e = pods
            .create(
                &PostParams::default(),
                &pod("w", json!({"overhead": {"cpu": "1"}})),
            )
            .await
            .unwrap_err();
        assert_eq!(
            message(e),
            r#"pods "w" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"#
        );
    }
}
