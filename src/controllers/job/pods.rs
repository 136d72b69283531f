//! The Job controller's writes to pods: create from the template (owner reference, tracking
//! finalizer, index), delete, and remove the tracking finalizer; each recorded as upstream's
//! pod control records it.
//!
//! Invariant: every write is noted in the [`Expectations`] before the controller looks at
//! its cache again, and a failed write is not (the cache will never show it).

use super::expectations::Expectations;
use super::indexed;
use super::status::TRACKING_FINALIZER;
use crate::controllers::ControllerError;
use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

pub struct PodControl<'a> {
    pub client: &'a kube::Client,
    pub recorder: &'a Recorder,
    pub expectations: &'a Expectations,
    pub key: &'a str,
}

/// Per-index failure counts a replacement pod inherits (backoffLimitPerIndex).
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexCounts {
    pub failures: u32,
    pub ignored: u32,
}

impl PodControl<'_> {
    fn api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates one pod of `job` (with `index` for Indexed Jobs).
    pub async fn create(
        &self,
        job: &Job,
        index: Option<(u32, Option<IndexCounts>)>,
    ) -> Result<(), ControllerError> {
        let name = job.metadata.name.clone().unwrap_or_default();
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let mut template: PodTemplateSpec = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut generate_name = format!("{name}-");
        if let Some((i, counts)) = index {
            indexed::add_index_env(&mut template);
            indexed::set_index(&mut template, &name, i);
            generate_name = format!("{name}-{i}-");
            if let Some(c) = counts {
                let ann = template
                    .metadata
                    .get_or_insert_with(Default::default)
                    .annotations
                    .get_or_insert_with(Default::default);
                ann.insert(indexed::INDEX_FAILURE_COUNT.into(), c.failures.to_string());
                if c.ignored > 0 {
                    ann.insert(
                        indexed::INDEX_IGNORED_FAILURE_COUNT.into(),
                        c.ignored.to_string(),
                    );
                }
            }
        }
        let tmeta = template.metadata.unwrap_or_default();
        let mut finalizers = tmeta.finalizers.unwrap_or_default();
        if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
            finalizers.push(TRACKING_FINALIZER.into());
        }
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(generate_name),
                namespace: Some(ns.clone()),
                labels: tmeta.labels,
                annotations: tmeta.annotations,
                finalizers: Some(finalizers),
                owner_references: Some(vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "Job".into(),
                    name: name.clone(),
                    uid: job.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        };
        match self.api(&ns).create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let pod_name = created.metadata.name.unwrap_or_default();
                self.expectations.created(self.key, pod_name.clone());
                self.recorder.event(
                    object_ref(job),
                    NORMAL,
                    "SuccessfulCreate",
                    format!("Created pod: {pod_name}"),
                );
                Ok(())
            }
            Err(e) => {
                self.recorder.event(
                    object_ref(job),
                    WARNING,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                );
                Err(e.into())
            }
        }
    }

    /// Deletes a pod (its tracking finalizer stays until the Job counted it).
    pub async fn delete(&self, job: &Job, pod: &Pod) -> Result<(), ControllerError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match self.api(ns).delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.expectations
                    .deleted(self.key, pod.metadata.uid.clone().unwrap_or_default());
                self.recorder.event(
                    object_ref(job),
                    NORMAL,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                );
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                self.recorder.event(
                    object_ref(job),
                    WARNING,
                    "FailedDelete",
                    format!("Error deleting: {e}"),
                );
                Err(e.into())
            }
        }
    }

    /// Removes the tracking finalizer; a pod already gone counts as done.
    pub async fn remove_finalizer(&self, pod: &Pod) -> Result<(), ControllerError> {
        self.remove_finalizer_from(pod, None).await
    }

    /// [`PodControl::remove_finalizer`] only from the version of the pod given (else nothing
    /// happens: the change that made it newer is seen and decided on again).
    pub async fn remove_finalizer_if_unchanged(&self, pod: &Pod) -> Result<(), ControllerError> {
        match self
            .remove_finalizer_from(pod, pod.metadata.resource_version.as_deref())
            .await
        {
            Err(ControllerError::Api(kube::Error::Api(s))) if s.code == 409 => Ok(()),
            other => other,
        }
    }

    async fn remove_finalizer_from(
        &self,
        pod: &Pod,
        resource_version: Option<&str>,
    ) -> Result<(), ControllerError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let mut patch = serde_json::json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}
        });
        if let Some(rv) = resource_version {
            patch["metadata"]["resourceVersion"] = rv.into();
        }
        match self
            .api(ns)
            .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {
                self.expectations
                    .unfinalized(self.key, pod.metadata.uid.clone().unwrap_or_default());
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
