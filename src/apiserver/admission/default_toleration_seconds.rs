//! DefaultTolerationSeconds: every pod tolerates the `node.kubernetes.io/not-ready` and
//! `node.kubernetes.io/unreachable` NoExecute taints for 300 s (upstream's
//! `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`),
//! unless it already tolerates them; so its pods are evicted five minutes after their node
//! goes away.

use super::{Admit, Attributes, Operation, Plugin};
use crate::apiserver::ApiState;
use serde_json::{json, Value};
use std::sync::Arc;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub struct DefaultTolerationSeconds {
    pub not_ready_seconds: i64,
    pub unreachable_seconds: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        DefaultTolerationSeconds {
            not_ready_seconds: 300,
            unreachable_seconds: 300,
        }
    }
}

/// Whether a toleration covers `key`'s NoExecute taint (an empty key or effect matches all).
fn tolerates(t: &Value, key: &str) -> bool {
    let k = t["key"].as_str().unwrap_or_default();
    let e = t["effect"].as_str().unwrap_or_default();
    (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
}

impl Plugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        matches!(attrs.operation, Operation::Create | Operation::Update)
            && attrs.is_main()
            && attrs.is("", "pods")
    }

    fn admit<'a>(
        &'a self,
        _state: &'a Arc<ApiState>,
        _attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        let existing = obj["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut add = Vec::new();
        for (key, seconds) in [
            (NOT_READY, self.not_ready_seconds),
            (UNREACHABLE, self.unreachable_seconds),
        ] {
            if !existing.iter().any(|t| tolerates(t, key)) {
                add.push(
                    json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": seconds}),
                );
            }
        }
        if !add.is_empty() {
            let mut all = existing;
            all.extend(add);
            obj["spec"]["tolerations"] = Value::Array(all);
        }
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::admission::Chain;
    use crate::apiserver::testing::TestServer;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};

    fn pod(name: &str, tolerations: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": tolerations}}))
        .unwrap()
    }

    fn tolerations(p: &Pod) -> Value {
        serde_json::to_value(p.spec.as_ref().unwrap().tolerations.clone()).unwrap()
    }

    #[tokio::test]
    async fn pods_get_both_tolerations_unless_they_tolerate_the_taints() {
        let srv = TestServer::with_admission(Chain::of(vec![Box::new(
            DefaultTolerationSeconds::default(),
        )]))
        .await;
        let api: Api<Pod> = Api::namespaced(srv.admin(), "default");
        let p = api
            .create(&PostParams::default(), &pod("a", json!([])))
            .await
            .unwrap();
        assert_eq!(
            tolerations(&p),
            json!([
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let own = json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]);
        let p = api
            .create(&PostParams::default(), &pod("b", own))
            .await
            .unwrap();
        assert_eq!(
            tolerations(&p),
            json!([
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        // A toleration of everything covers both.
        let p = api
            .create(
                &PostParams::default(),
                &pod("c", json!([{"operator": "Exists"}])),
            )
            .await
            .unwrap();
        assert_eq!(tolerations(&p), json!([{"operator": "Exists"}]));
    }
}
