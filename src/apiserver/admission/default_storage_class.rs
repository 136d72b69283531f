//! DefaultStorageClass: a PersistentVolumeClaim created without a storage class (neither
//! `spec.storageClassName` nor the beta annotation) gets the default StorageClass, the one
//! annotated `storageclass.kubernetes.io/is-default-class: "true"` — the newest when there
//! are several, by name when they are as new (upstream's `GetDefaultClass`).

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::apiserver::ApiState;
use serde_json::{json, Value};
use std::sync::Arc;

pub const IS_DEFAULT: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_IS_DEFAULT: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

pub struct DefaultStorageClass;

impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.operation == Operation::Create
            && attrs.is_main()
            && attrs.is("", "persistentvolumeclaims")
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        _attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let has_class = obj["metadata"]["annotations"].get(BETA_CLASS).is_some()
                || !obj["spec"]["storageClassName"].is_null();
            if has_class {
                return Ok(());
            }
            let classes = support::list(state, "storage.k8s.io", "storageclasses", None).await?;
            let mut defaults: Vec<&Value> = classes
                .iter()
                .filter(|c| {
                    let a = &c["metadata"]["annotations"];
                    a[IS_DEFAULT] == "true" || a[BETA_IS_DEFAULT] == "true"
                })
                .collect();
            // Newest first (RFC 3339 at one precision sorts as text), then by name.
            defaults.sort_by(|a, b| {
                let ts = |v: &Value| {
                    v["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                };
                ts(b).cmp(&ts(a)).then_with(|| {
                    a["metadata"]["name"]
                        .as_str()
                        .cmp(&b["metadata"]["name"].as_str())
                })
            });
            if let Some(def) = defaults.first() {
                obj["spec"]["storageClassName"] = json!(def["metadata"]["name"]);
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
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use k8s_openapi::api::storage::v1::StorageClass;
    use kube::api::{Api, PostParams};

    fn pvc(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}});
        if let Some(c) = class {
            v["spec"]["storageClassName"] = json!(c);
        }
        serde_json::from_value(v).unwrap()
    }

    async fn class(api: &Api<StorageClass>, name: &str, default: bool) {
        let mut v = json!({"metadata": {"name": name}, "provisioner": "p"});
        if default {
            v["metadata"]["annotations"] = json!({IS_DEFAULT: "true"});
        }
        api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn claims_without_a_class_get_the_default_one() {
        let srv = TestServer::with_admission(Chain::of(vec![Box::new(DefaultStorageClass)])).await;
        let classes: Api<StorageClass> = Api::all(srv.admin());
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(srv.admin(), "default");
        let class_of = |p: PersistentVolumeClaim| p.spec.unwrap().storage_class_name;
        // The server's own default class goes first.
        classes
            .delete("local-path", &Default::default())
            .await
            .unwrap();
        // No default class: nothing is set.
        let p = claims
            .create(&PostParams::default(), &pvc("a", None))
            .await
            .unwrap();
        assert_eq!(class_of(p), None);
        class(&classes, "slow", false).await;
        class(&classes, "fast", true).await;
        class(&classes, "alpha", true).await;
        // Two defaults created in the same second: the first by name.
        let p = claims
            .create(&PostParams::default(), &pvc("b", None))
            .await
            .unwrap();
        assert_eq!(class_of(p).as_deref(), Some("alpha"));
        let p = claims
            .create(&PostParams::default(), &pvc("c", Some("slow")))
            .await
            .unwrap();
        assert_eq!(class_of(p).as_deref(), Some("slow"));
        // An explicit empty class means "no class" and stays.
        let p = claims
            .create(&PostParams::default(), &pvc("d", Some("")))
            .await
            .unwrap();
        assert_eq!(class_of(p).as_deref(), Some(""));
    }
}
