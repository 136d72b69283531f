//! Priority: a pod's `spec.priorityClassName` (or the `globalDefault` class, or none) is
//! resolved into `spec.priority` and `spec.preemptionPolicy` when it is created; a pod
//! naming an unknown class, or setting a priority or policy other than its class's, is
//! refused. On the PriorityClass side, only one class may be the global default.
//!
//! As in upstream since v1.17, the `system-node-critical` / `system-cluster-critical`
//! classes are not limited to `kube-system` here (that limit moved to ResourceQuota's
//! `limitedResources` configuration).

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use serde_json::{json, Value};
use std::sync::Arc;

const GROUP: &str = "scheduling.k8s.io";
const PLURAL: &str = "priorityclasses";
/// Upstream's `DefaultPriorityWhenNoDefaultClassExists`.
const NO_DEFAULT_PRIORITY: i64 = 0;
const PREEMPT_LOWER: &str = "PreemptLowerPriority";

pub struct Priority;

/// The global default class: the lowest-valued of those marked `globalDefault`.
async fn default_class(state: &ApiState) -> Result<Option<Value>, ApiError> {
    // Every pod create without a class asks: only the fields that decide are read.
    let fields = [
        "metadata.name",
        "globalDefault",
        "value",
        "preemptionPolicy",
    ];
    let classes = support::list_fields(state, GROUP, PLURAL, None, &fields).await?;
    Ok(classes
        .into_iter()
        .filter(|c| c["globalDefault"] == true)
        .min_by_key(|c| c["value"].as_i64().unwrap_or_default()))
}

fn policy_of(class: &Value) -> &str {
    class["preemptionPolicy"].as_str().unwrap_or(PREEMPT_LOWER)
}

impl Priority {
    async fn admit_pod_create(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        let name = pod["spec"]["priorityClassName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (class_name, priority, policy) = if name.is_empty() {
            match default_class(state).await? {
                Some(c) => (
                    c["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    c["value"].as_i64().unwrap_or_default(),
                    policy_of(&c).to_owned(),
                ),
                None => (String::new(), NO_DEFAULT_PRIORITY, PREEMPT_LOWER.to_owned()),
            }
        } else {
            let Some(c) = support::get(state, GROUP, PLURAL, None, &name).await? else {
                return Err(attrs.forbidden(format!("no PriorityClass with name {name} was found")));
            };
            (
                name,
                c["value"].as_i64().unwrap_or_default(),
                policy_of(&c).to_owned(),
            )
        };
        let spec = &mut pod["spec"];
        if class_name.is_empty() {
            if let Some(m) = spec.as_object_mut() {
                m.remove("priorityClassName");
            }
        } else {
            spec["priorityClassName"] = json!(class_name);
        }
        if let Some(given) = spec["priority"].as_i64() {
            if given != priority {
                return Err(attrs.forbidden(format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name")));
            }
        }
        spec["priority"] = json!(priority);
        if let Some(given) = spec["preemptionPolicy"].as_str() {
            if given != policy {
                return Err(attrs.forbidden(format!("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name")));
            }
        }
        spec["preemptionPolicy"] = json!(policy);
        Ok(())
    }
}

impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        matches!(attrs.operation, Operation::Create | Operation::Update)
            && attrs.is_main()
            && (attrs.is("", "pods") || attrs.is(GROUP, PLURAL))
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            if !attrs.is("", "pods") {
                return Ok(());
            }
            match (attrs.operation, old) {
                (Operation::Update, Some(old)) => {
                    // An update that leaves them out keeps what admission set at create.
                    for field in ["priority", "preemptionPolicy"] {
                        if obj["spec"][field].is_null() && !old["spec"][field].is_null() {
                            obj["spec"][field] = old["spec"][field].clone();
                        }
                    }
                    Ok(())
                }
                (Operation::Create, _) => self.admit_pod_create(state, attrs, obj).await,
                _ => Ok(()),
            }
        })
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let Some(pc) = obj.filter(|_| attrs.is(GROUP, PLURAL)) else {
                return Ok(());
            };
            if pc["globalDefault"] != true {
                return Ok(());
            }
            if let Some(dpc) = default_class(state).await? {
                let dname = dpc["metadata"]["name"].as_str().unwrap_or_default();
                if attrs.operation == Operation::Create || dname != attrs.name {
                    return Err(attrs.forbidden(format!(
                        "PriorityClass {dname} is already marked as default. Only one default can exist"
                    )));
                }
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

    fn classes(client: kube::Client) -> Api<DynamicObject> {
        let ar = ApiResource {
            group: GROUP.into(),
            version: "v1".into(),
            api_version: format!("{GROUP}/v1"),
            kind: "PriorityClass".into(),
            plural: PLURAL.into(),
        };
        Api::all_with(client, &ar)
    }

    async fn class(
        api: &Api<DynamicObject>,
        name: &str,
        value: i64,
        default: bool,
    ) -> Result<DynamicObject, kube::Error> {
        let obj: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass", "metadata": {"name": name}, "value": value,
            "globalDefault": default}))
            .unwrap();
        api.create(&PostParams::default(), &obj).await
    }

    fn forbidden(e: kube::Error) -> String {
        match e {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 403, "{}", s.message);
                s.message
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn priority_classes_resolve_into_the_pod_spec() {
        let srv = TestServer::with_admission(Chain::of(vec![Box::new(Priority)])).await;
        let pcs = classes(srv.admin());
        let pods: Api<Pod> = Api::namespaced(srv.admin(), "default");
        // No class and no default: priority 0.
        let p = pods
            .create(&PostParams::default(), &pod("zero", json!({})))
            .await
            .unwrap();
        let spec = p.spec.unwrap();
        assert_eq!(spec.priority, Some(0));
        assert_eq!(spec.priority_class_name, None);
        assert_eq!(
            spec.preemption_policy.as_deref(),
            Some("PreemptLowerPriority")
        );
        class(&pcs, "high", 1000, false).await.unwrap();
        let p = pods
            .create(
                &PostParams::default(),
                &pod("high", json!({"priorityClassName": "high"})),
            )
            .await
            .unwrap();
        assert_eq!(p.spec.unwrap().priority, Some(1000));
        let e = pods
            .create(
                &PostParams::default(),
                &pod("x", json!({"priorityClassName": "nope"})),
            )
            .await
            .unwrap_err();
        assert_eq!(
            forbidden(e),
            r#"pods "x" is forbidden: no PriorityClass with name nope was found"#
        );
        let e = pods
            .create(
                &PostParams::default(),
                &pod("y", json!({"priorityClassName": "high", "priority": 5})),
            )
            .await
            .unwrap_err();
        assert_eq!(
            forbidden(e),
            r#"pods "y" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"#
        );
        // The same value as the class is accepted.
        pods.create(
            &PostParams::default(),
            &pod("z", json!({"priorityClassName": "high", "priority": 1000})),
        )
        .await
        .unwrap();
        // A global default applies to pods naming no class.
        class(&pcs, "normal", 10, true).await.unwrap();
        let p = pods
            .create(&PostParams::default(), &pod("d", json!({})))
            .await
            .unwrap();
        let spec = p.spec.unwrap();
        assert_eq!(spec.priority, Some(10));
        assert_eq!(spec.priority_class_name.as_deref(), Some("normal"));
    }

    #[tokio::test]
    async fn only_one_global_default_class() {
        let srv = TestServer::with_admission(Chain::of(vec![Box::new(Priority)])).await;
        let pcs = classes(srv.admin());
        class(&pcs, "first", 1, true).await.unwrap();
        let e = class(&pcs, "second", 2, true).await.unwrap_err();
        assert_eq!(
            forbidden(e),
            r#"priorityclasses.scheduling.k8s.io "second" is forbidden: PriorityClass first is already marked as default. Only one default can exist"#
        );
        class(&pcs, "third", 3, false).await.unwrap();
    }
}
