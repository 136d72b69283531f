//! One sync of one replicated object: claim pods, create or delete the difference, write
//! status (upstream's `syncReplicaSet`, `manageReplicas`, `calculateStatus`).

use super::expectations::Expectations;
use super::kinds::Replicated;
use super::ranking::order_for_deletion;
use crate::controllers::controller_utils::{
    adopt_patch, claim, controller_ref, is_pod_active, is_pod_available, is_pod_ready,
    is_pod_terminating, new_controller_ref, release_patch, slow_start_batch, Claim, Selector,
    BATCH_IN_FLIGHT, BURST_REPLICAS,
};
use crate::controllers::pod_index::PodsByController;
use crate::controllers::{Action, ControllerError, Reconciler};
use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use std::time::Duration;

pub(super) struct Sync<K: Replicated> {
    pub client: kube::Client,
    pub objects: Store<K>,
    pub expectations: Arc<Expectations>,
    pub index: Arc<PodsByController>,
    pub recorder: Recorder,
}

/// What claiming a sync's pods found.
struct Claimed {
    /// Active pods it owns after adopting and releasing.
    owned: Vec<Arc<Pod>>,
    /// Its pods being deleted and not finished.
    terminating: usize,
}

/// Why the pod count could not be brought to `replicas`.
struct ManageError {
    /// `FailedCreate` or `FailedDelete`.
    reason: &'static str,
    error: kube::Error,
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl<K: Replicated> Reconciler for Sync<K> {
    type Key = String;
    const NAME: &'static str = K::CONTROLLER;

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(obj) = self.objects.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let rs = obj.as_replica_set();
        let spec = rs.spec.clone().unwrap_or_default();
        let selector = Selector::new(Some(&spec.selector));
        let satisfied = self.expectations.satisfied(key);
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        // The pods it controls and the namespace's orphans: every other pod is another
        // controller's, which a claim ignores.
        let all = self.index.owned_or_orphaned(&uid, ns);
        let Claimed { owned, terminating } = self.claim_pods(&obj, &rs, &selector, &all).await?;

        let mut manage_err = None;
        if satisfied && rs.metadata.deletion_timestamp.is_none() {
            manage_err = self
                .manage(key, &obj, &rs, &owned, spec.replicas.unwrap_or(1))
                .await;
        }
        let status = self.status(&rs, &owned, terminating, manage_err.as_ref());
        self.write_status(&obj, &rs, status.clone()).await?;
        if let Some(e) = manage_err {
            return Err(ControllerError::Api(e.error));
        }
        if !satisfied {
            return Ok(Action::RequeueAfter(super::expectations::TTL));
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let replicas = spec.replicas.unwrap_or(1);
        if min_ready > 0
            && status.ready_replicas.unwrap_or(0) == replicas
            && status.available_replicas.unwrap_or(0) != replicas
        {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }
}

impl<K: Replicated> Sync<K> {
    /// The active pods this object owns after adopting and releasing, and how many of its
    /// pods are terminating: one pass over the pods, each selector matched once (a sync of a
    /// ReplicaSet of thousands of pods is bound by walking them).
    async fn claim_pods(
        &self,
        obj: &K,
        rs: &ReplicaSet,
        selector: &Selector,
        all: &[Arc<Pod>],
    ) -> Result<Claimed, ControllerError> {
        let meta = &rs.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        let ns = meta.namespace.clone().unwrap_or_default();
        let deleting = meta.deletion_timestamp.is_some();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let owner = new_controller_ref(&K::api_version(&()), &K::kind(&()), meta);
        let mut can_adopt: Option<bool> = None;
        let mut owned = Vec::with_capacity(all.len());
        let mut terminating = 0;
        for pod in all {
            let selected = selector.matches(pod.metadata.labels.as_ref());
            if !is_pod_active(pod) {
                if is_pod_terminating(pod)
                    && selected
                    && controller_ref(&pod.metadata).is_some_and(|r| r.uid == uid)
                {
                    terminating += 1;
                }
                continue;
            }
            let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            match claim(&uid, deleting, &pod.metadata, selected) {
                Claim::Keep => owned.push(pod.clone()),
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.still_current(obj, &uid).await?);
                    }
                    if can_adopt != Some(true) {
                        continue;
                    }
                    let patch = adopt_patch(&owner, pod_uid);
                    match pods
                        .patch(pod_name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        Ok(p) => owned.push(Arc::new(p)),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Release => {
                    let patch = release_patch(&uid, pod_uid);
                    match pods
                        .patch(pod_name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e)
                            if is_not_found(&e)
                                || matches!(&e, kube::Error::Api(s) if s.code == 422) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Ignore => {}
            }
        }
        Ok(Claimed { owned, terminating })
    }

    /// Upstream's adoption recheck: the object read fresh from the API is the one cached and
    /// not being deleted.
    async fn still_current(&self, obj: &K, uid: &str) -> Result<bool, ControllerError> {
        let meta = obj.meta();
        let api: Api<K> = Api::namespaced(
            self.client.clone(),
            meta.namespace.as_deref().unwrap_or_default(),
        );
        match api
            .get_opt(meta.name.as_deref().unwrap_or_default())
            .await?
        {
            Some(fresh) => Ok(fresh.meta().uid.as_deref() == Some(uid)
                && fresh.meta().deletion_timestamp.is_none()),
            None => Ok(false),
        }
    }

    /// Creates or deletes pods to reach `replicas`; the first failure, if any.
    async fn manage(
        &self,
        key: &str,
        obj: &K,
        rs: &ReplicaSet,
        owned: &[Arc<Pod>],
        replicas: i32,
    ) -> Option<ManageError> {
        let diff = owned.len() as i64 - i64::from(replicas);
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if diff < 0 {
            let count = ((-diff) as usize).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, count);
            let template = pod_from_template::<K>(rs);
            let (created, err) = slow_start_batch(count, || {
                let pods = pods.clone();
                let template = template.clone();
                async move {
                    match pods.create(&PostParams::default(), &template).await {
                        Ok(pod) => {
                            self.recorder.event(
                                object_ref(obj),
                                NORMAL,
                                "SuccessfulCreate",
                                format!("Created pod: {}", pod.metadata.name.unwrap_or_default()),
                            );
                            Ok(())
                        }
                        Err(e) => {
                            self.recorder.event(
                                object_ref(obj),
                                WARNING,
                                "FailedCreate",
                                format!("Error creating: {}", api_message(&e)),
                            );
                            Err(e)
                        }
                    }
                }
            })
            .await;
            // Creations that failed or were never attempted will never be observed.
            for _ in created..count {
                self.expectations.creation_observed(key);
            }
            tracing::debug!(key, created, wanted = count, "created pods");
            return err.map(|error| ManageError {
                reason: "FailedCreate",
                error,
            });
        }
        if diff > 0 {
            let count = (diff as usize).min(BURST_REPLICAS);
            let mut ranked: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
            order_for_deletion(&mut ranked, Timestamp::now());
            let victims: Vec<String> = ranked
                .iter()
                .take(count)
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
            self.expectations
                .expect_deletions(key, victims.iter().cloned());
            // Bounded like creations (`BATCH_IN_FLIGHT`).
            let results: Vec<_> = futures::stream::iter(victims.iter().cloned().map(|name| {
                let pods = pods.clone();
                async move {
                    let r = pods.delete(&name, &DeleteParams::default()).await;
                    (name, r)
                }
            }))
            .buffer_unordered(BATCH_IN_FLIGHT)
            .collect()
            .await;
            let mut first_err = None;
            for (name, r) in results {
                match r {
                    Ok(_) => self.recorder.event(
                        object_ref(obj),
                        NORMAL,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    ),
                    Err(e) => {
                        self.expectations.deletion_observed(key, &name);
                        if is_not_found(&e) {
                            continue;
                        }
                        self.recorder.event(
                            object_ref(obj),
                            WARNING,
                            "FailedDelete",
                            format!("Error deleting: {}", api_message(&e)),
                        );
                        first_err.get_or_insert(ManageError {
                            reason: "FailedDelete",
                            error: e,
                        });
                    }
                }
            }
            return first_err;
        }
        None
    }

    /// The status the pods imply (upstream's `calculateStatus`).
    fn status(
        &self,
        rs: &ReplicaSet,
        owned: &[Arc<Pod>],
        terminating: usize,
        manage_err: Option<&ManageError>,
    ) -> ReplicaSetStatusView {
        let spec = rs.spec.clone().unwrap_or_default();
        let template_labels = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let now = Timestamp::now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        // One pass: each pod's memory is visited once.
        let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
        for pod in owned {
            let labels = pod.metadata.labels.as_ref();
            if template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            {
                fully_labeled += 1;
            }
            if is_pod_ready(pod) {
                ready += 1;
                if is_pod_available(pod, min_ready, now) {
                    available += 1;
                }
            }
        }
        let mut conditions = rs
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
        match manage_err {
            Some(e) if !has_failure => conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(e.reason.into()),
                message: Some(api_message(&e.error)),
                last_transition_time: Some(Time(now)),
            }),
            None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
            _ => {}
        }
        ReplicaSetStatusView {
            replicas: owned.len() as i32,
            fully_labeled_replicas: Some(fully_labeled),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            terminating_replicas: K::HAS_TERMINATING_REPLICAS.then_some(terminating as i32),
            observed_generation: rs.metadata.generation,
            conditions,
        }
    }

    async fn write_status(
        &self,
        obj: &K,
        rs: &ReplicaSet,
        new: ReplicaSetStatusView,
    ) -> Result<(), ControllerError> {
        let old = ReplicaSetStatusView::of(rs);
        if old == new {
            return Ok(());
        }
        let meta: &ObjectMeta = obj.meta();
        let api: Api<K> = Api::namespaced(
            self.client.clone(),
            meta.namespace.as_deref().unwrap_or_default(),
        );
        let mut status = serde_json::json!({
            "replicas": new.replicas,
            "fullyLabeledReplicas": new.fully_labeled_replicas,
            "readyReplicas": new.ready_replicas,
            "availableReplicas": new.available_replicas,
            "observedGeneration": new.observed_generation,
        });
        if !new.conditions.is_empty() {
            status["conditions"] = serde_json::to_value(&new.conditions)
                .map_err(|e| ControllerError::Invalid(e.to_string()))?;
        }
        if let Some(t) = new.terminating_replicas {
            status["terminatingReplicas"] = t.into();
        }
        // A whole-status update (upstream's UpdateStatus; the controllers' roles allow
        // `update` on the status): the cached resourceVersion makes a stale write conflict.
        let mut body =
            serde_json::to_value(obj).map_err(|e| ControllerError::Invalid(e.to_string()))?;
        body["status"] = status;
        let updated: K =
            serde_json::from_value(body).map_err(|e| ControllerError::Invalid(e.to_string()))?;
        match api
            .replace_status(
                meta.name.as_deref().unwrap_or_default(),
                &PostParams::default(),
                &updated,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The status fields this controller owns, with absent counts read as 0.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ReplicaSetStatusView {
    replicas: i32,
    fully_labeled_replicas: Option<i32>,
    ready_replicas: Option<i32>,
    available_replicas: Option<i32>,
    terminating_replicas: Option<i32>,
    observed_generation: Option<i64>,
    conditions: Vec<ReplicaSetCondition>,
}

impl ReplicaSetStatusView {
    fn of(rs: &ReplicaSet) -> Self {
        let s = rs.status.clone().unwrap_or_default();
        ReplicaSetStatusView {
            replicas: s.replicas,
            fully_labeled_replicas: Some(s.fully_labeled_replicas.unwrap_or(0)),
            ready_replicas: Some(s.ready_replicas.unwrap_or(0)),
            available_replicas: Some(s.available_replicas.unwrap_or(0)),
            terminating_replicas: s.terminating_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.unwrap_or_default(),
        }
    }
}

/// A pod from `rs`'s template: `generateName` `<name>-`, the template's labels, annotations
/// and finalizers, and `rs` as controller (upstream's `GetPodFromTemplate`).
pub fn pod_from_template<K: Replicated>(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![new_controller_ref(
                &K::api_version(&()),
                &K::kind(&()),
                &rs.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}
