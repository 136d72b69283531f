//! Custom resource cleanup (upstream's CRD finalizer controller): when a
//! CustomResourceDefinition is deleted, the API server marks it Terminating and keeps it
//! (finalizer `customresourcecleanup.apiextensions.k8s.io`); this controller deletes every
//! custom resource of it through the API — so the resources' own finalizers are honoured —
//! and removes the finalizer once none is left, which lets the definition go.

use super::{run_on_informer, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The finalizer the API server puts on a CRD being deleted.
pub const FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// How often a definition whose resources are still going away is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

pub struct CrdCleanupController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl CrdCleanupController {
    pub fn new(ctx: Context) -> CrdCleanupController {
        CrdCleanupController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let informer = self.ctx.informers.typed::<CustomResourceDefinition>();
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.loopback.clone(),
            crds: informer.store(),
        });
        // Only definitions being deleted are this controller's business.
        let key_of = |change: &Change<CustomResourceDefinition>| match change {
            Change::Applied(crd) if crd.metadata.deletion_timestamp.is_some() => {
                crd.metadata.name.clone()
            }
            _ => None,
        };
        run_on_informer(informer, key_of, reconciler, self.queue, 2, shutdown).await
    }
}

struct Reconcile {
    client: kube::Client,
    crds: kube::runtime::reflector::Store<CustomResourceDefinition>,
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "crd-cleanup";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let key = kube::runtime::reflector::ObjectRef::new(name);
        let Some(crd) = self.crds.get(&key) else {
            return Ok(Action::Done);
        };
        let finalizers = crd.metadata.finalizers.clone().unwrap_or_default();
        if crd.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(Action::Done);
        }
        let ar = storage_resource(&crd)?;
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let remaining = match api.list_metadata(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if !remaining.is_empty() {
            self.set_terminating(
                &crd,
                "InstanceDeletionInProgress",
                &format!(
                    "CustomResource deletion is in progress: {} remaining",
                    remaining.len()
                ),
            )
            .await?;
            for item in &remaining {
                if item.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let ns = item.metadata.namespace.as_deref();
                let name = item.metadata.name.as_deref().unwrap_or_default();
                let api: Api<DynamicObject> = match ns {
                    Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                    None => Api::all_with(self.client.clone(), &ar),
                };
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Action::RequeueAfter(RECHECK));
        }
        // Nothing left: drop our finalizer (guarded by resourceVersion against a racing edit).
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
        let patch = json!({"metadata": {
            "finalizers": kept,
            "resourceVersion": crd.metadata.resource_version,
        }});
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        match crds
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
            // Changed meanwhile: the informer brings the new version back.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}

impl Reconcile {
    /// Sets the `Terminating` condition upstream shows while instances are deleted.
    async fn set_terminating(
        &self,
        crd: &CustomResourceDefinition,
        reason: &str,
        message: &str,
    ) -> Result<(), ControllerError> {
        let mut updated = crd.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        if conditions.iter().any(|c| {
            c.type_ == "Terminating"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
        }) {
            return Ok(());
        }
        conditions.retain(|c| c.type_ != "Terminating");
        conditions.push(CustomResourceDefinitionCondition {
            type_: "Terminating".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            observed_generation: None,
        });
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        match api
            .replace_status(
                crd.metadata.name.as_deref().unwrap_or_default(),
                &PostParams::default(),
                &updated,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The API resource under which the definition's objects are stored.
fn storage_resource(crd: &CustomResourceDefinition) -> Result<ApiResource, ControllerError> {
    let spec = &crd.spec;
    let version = spec
        .versions
        .iter()
        .find(|v| v.storage)
        .or_else(|| spec.versions.first())
        .ok_or_else(|| ControllerError::Invalid("definition has no versions".into()))?;
    Ok(ApiResource {
        group: spec.group.clone(),
        version: version.name.clone(),
        api_version: format!("{}/{}", spec.group, version.name),
        kind: spec.names.kind.clone(),
        plural: spec.names.plural.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::controllers::testing::{eventually, example_crd, Cluster};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
    use serde_json::json;

    #[tokio::test]
    async fn deleting_a_crd_deletes_its_resources_through_the_api_honouring_finalizers() {
        let c = Cluster::start().await;
        let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
        let widgets = example_crd(&c.client, "Widget", "widgets", json!({})).await;
        for (name, finalizers) in [("free", json!([])), ("held", json!(["example.com/hold"]))] {
            let w: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": name, "finalizers": finalizers}
            }))
            .unwrap();
            widgets.create(&PostParams::default(), &w).await.unwrap();
        }
        crds.delete("widgets.example.com", &DeleteParams::default())
            .await
            .unwrap();
        eventually(
            "the free widget is gone, the held one is deleting",
            || async {
                widgets.get_opt("free").await.unwrap().is_none()
                    && widgets
                        .get_opt("held")
                        .await
                        .unwrap()
                        .is_some_and(|w| w.metadata.deletion_timestamp.is_some())
            },
        )
        .await;
        let crd = crds
            .get("widgets.example.com")
            .await
            .expect("the definition waits");
        assert!(crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Terminating" && c.status == "True"));
        let late: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "late"}
        }))
        .unwrap();
        match widgets.create(&PostParams::default(), &late).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 405);
                assert_eq!(
                    s.message,
                    "create not allowed while custom resource definition is terminating"
                );
            }
            other => panic!("expected 405, got {other:?}"),
        }
        widgets
            .patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
        eventually("the definition is gone", || async {
            crds.get_opt("widgets.example.com").await.unwrap().is_none()
        })
        .await;
        // The type stops being served just after the definition's delete commits (the
        // deleting request unregisters it next; upstream's handler drops it when its
        // informer sees the delete), so a list in between may still answer.
        eventually("the type is no longer served (404)", || async {
            matches!(
                widgets.list(&Default::default()).await,
                Err(kube::Error::Api(s)) if s.code == 404
            )
        })
        .await;
        c.stop().await;
    }
}
