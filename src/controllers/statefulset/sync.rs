//! One sync of one StatefulSet (upstream's `defaultStatefulSetControl.UpdateStatefulSet`):
//! claim pods and revisions, settle the update and current revisions, take the steps
//! [`plan`](super::plan) decides, keep claims' retention owners, write status, trim history.

use super::identity::{
    claims_for, identity_repair, new_pod, ordinal_of, pod_revision, reconcile_claim_owners,
    replicas, retention_owners, start_ordinal,
};
use super::plan::{plan, Input, PodView, Step, Update};
use crate::controllers::controller_utils::{
    api_code, is_pod_available, is_pod_ready, new_controller_ref, update_status, Selector,
};
use crate::controllers::history::{
    claim_all, ensure_update_revision, revision_template, revisions_to_delete, History,
};
use crate::controllers::pod_index::PodsByController;
use crate::controllers::{Action, ControllerError, Reconciler};
use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Upstream's controller (and service account) name.
pub const CONTROLLER: &str = "statefulset-controller";

pub(super) struct Sync {
    pub client: kube::Client,
    pub sets: Store<StatefulSet>,
    /// The pods of each controller and each namespace's orphans, so that a sync does not
    /// scan every pod of the cluster.
    pub index: Arc<PodsByController>,
    pub claims: Store<PersistentVolumeClaim>,
    pub history: History,
    pub recorder: Recorder,
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

impl Reconciler for Sync {
    type Key = String;
    const NAME: &'static str = CONTROLLER;

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(set) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        if set.metadata.deletion_timestamp.is_some() {
            // The garbage collector removes the pods; nothing is created meanwhile.
            return Ok(Action::Done);
        }
        let spec = set.spec.clone().unwrap_or_default();
        let owner = new_controller_ref("apps/v1", "StatefulSet", &set.metadata);
        // Its own pods and the namespace's orphans (any other pod is another controller's),
        // named as one of its ordinals.
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        let candidates = self
            .index
            .owned_or_orphaned(uid, ns)
            .into_iter()
            .filter(|p| ordinal_of(name, p.metadata.name.as_deref().unwrap_or_default()).is_some());
        let selector = Selector::new(Some(&spec.selector));
        let pods = claim_all(
            &self.client,
            &owner,
            &set.metadata,
            &selector,
            candidates,
            None,
        )
        .await?;

        let mut revisions = self
            .history
            .owned(&set.metadata, Some(&spec.selector))
            .await?;
        let status = set.status.clone().unwrap_or_default();
        let mut collisions = status.collision_count.unwrap_or(0);
        let template = spec.template.clone();
        let update_rev = ensure_update_revision(
            &self.history,
            &set.metadata,
            &template,
            &revisions,
            &mut collisions,
        )
        .await?;
        let update_name = update_rev.metadata.name.clone().unwrap_or_default();
        revisions.retain(|r| r.metadata.name.as_deref() != Some(update_name.as_str()));
        revisions.push(Arc::new(update_rev.clone()));
        let current_rev = status
            .current_revision
            .as_deref()
            .and_then(|c| {
                revisions
                    .iter()
                    .find(|r| r.metadata.name.as_deref() == Some(c))
            })
            .map(|r| (**r).clone())
            .unwrap_or_else(|| update_rev.clone());

        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = Timestamp::now();
        let views: Vec<PodView> = pods
            .iter()
            .filter_map(|p| view(name, p, min_ready, now))
            .collect();
        let update = match spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
        {
            Some("OnDelete") => Update::OnDelete,
            _ => {
                let ru = spec
                    .update_strategy
                    .as_ref()
                    .and_then(|s| s.rolling_update.as_ref());
                let partition = ru.and_then(|r| r.partition).unwrap_or(0);
                let max_unavailable = ru
                    .and_then(|r| r.max_unavailable.as_ref())
                    .map(|v| {
                        crate::controllers::controller_utils::scaled_value(v, replicas(&set), false)
                            .unwrap_or(1)
                    })
                    .unwrap_or(1);
                Update::RollingUpdate {
                    partition,
                    max_unavailable: max_unavailable.max(1),
                }
            }
        };
        let input = Input {
            start: start_ordinal(&set),
            replicas: replicas(&set),
            parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
            update,
            update_revision: update_name.clone(),
            pods: views.clone(),
        };
        self.repair_identities(&set, &pods).await?;
        self.sync_claim_owners(&set, &pods, &input).await?;
        let steps = plan(&input);
        let mut failure = None;
        for step in steps {
            let r = match step {
                Step::Create { ordinal, update } => {
                    let rev = if update { &update_rev } else { &current_rev };
                    self.create_pod(&set, rev, ordinal).await
                }
                Step::Delete { name: pod } => self.delete_pod(&set, &pod).await,
            };
            if let Err(e) = r {
                failure = Some(e);
                break;
            }
        }

        let current_name = current_rev.metadata.name.clone().unwrap_or_default();
        let new_status = compute_status(
            &set,
            &views,
            &current_name,
            &update_name,
            collisions,
            matches!(update, Update::RollingUpdate { .. }),
        );
        self.write_status(&set, new_status.clone()).await?;
        let live: HashSet<String> = views
            .iter()
            .map(|v| v.revision.clone())
            .chain([
                new_status.current_revision.clone().unwrap_or_default(),
                update_name,
            ])
            .collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        let doomed = revisions_to_delete(&revisions, &live, limit);
        self.history.delete(ns, &doomed).await?;
        if let Some(e) = failure {
            return Err(e);
        }
        if min_ready > 0 && views.iter().any(|v| v.running_ready && !v.available) {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }
}

/// The plan's view of a pod of set `set_name`.
fn view(set_name: &str, pod: &Pod, min_ready: i32, now: Timestamp) -> Option<PodView> {
    let name = pod.metadata.name.clone()?;
    let ordinal = ordinal_of(set_name, &name)?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let running_ready = phase == Some("Running") && is_pod_ready(pod);
    Some(PodView {
        ordinal,
        revision: pod_revision(pod).into(),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        finished: matches!(phase, Some("Succeeded") | Some("Failed")),
        running_ready,
        available: running_ready && is_pod_available(pod, min_ready, now),
        name,
    })
}

/// Upstream's status: counts over the pods, and once every pod is updated and ready under
/// `RollingUpdate` the update revision becomes the current one.
fn compute_status(
    set: &StatefulSet,
    views: &[PodView],
    current: &str,
    update: &str,
    collisions: i32,
    rolling: bool,
) -> StatefulSetStatus {
    let count = |f: &dyn Fn(&PodView) -> bool| views.iter().filter(|v| f(v)).count() as i32;
    let mut s = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: views.len() as i32,
        ready_replicas: Some(count(&|v| v.running_ready)),
        available_replicas: Some(count(&|v| v.available)),
        current_replicas: Some(count(&|v| !v.terminating && v.revision == current)),
        updated_replicas: Some(count(&|v| !v.terminating && v.revision == update)),
        current_revision: Some(current.into()),
        update_revision: Some(update.into()),
        collision_count: Some(collisions),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if rolling && s.updated_replicas == Some(s.replicas) && s.ready_replicas == Some(s.replicas) {
        s.current_revision = s.update_revision.clone();
        s.current_replicas = s.updated_replicas;
    }
    s
}

impl Sync {
    fn event(&self, set: &StatefulSet, type_: &'static str, reason: &'static str, msg: String) {
        self.recorder.event(object_ref(set), type_, reason, msg);
    }

    /// Records upstream's failure event (`<what> in StatefulSet <set> failed error: ...`)
    /// and turns the error into the sync's.
    fn failed(
        &self,
        set: &StatefulSet,
        reason: &'static str,
        what: &str,
        e: kube::Error,
    ) -> ControllerError {
        let name = set.metadata.name.as_deref().unwrap_or_default();
        let msg = format!(
            "{what} in StatefulSet {name} failed error: {}",
            api_message(&e)
        );
        self.event(set, WARNING, reason, msg);
        e.into()
    }

    /// Creates the claims of `ordinal` that do not exist yet, then its pod from `rev`.
    async fn create_pod(
        &self,
        set: &StatefulSet,
        rev: &ControllerRevision,
        ordinal: i32,
    ) -> Result<(), ControllerError> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let set_name = set.metadata.name.as_deref().unwrap_or_default();
        let template = revision_template(rev)
            .or_else(|| set.spec.as_ref().map(|s| s.template.clone()))
            .unwrap_or_default();
        let rev_name = rev.metadata.name.as_deref().unwrap_or_default();
        let pod = new_pod(set, &template, rev_name, ordinal);
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        for mut claim in claims_for(set, ordinal) {
            let cname = claim.metadata.name.clone().unwrap_or_default();
            if self
                .claims
                .get(&ObjectRef::new(&cname).within(ns))
                .is_some()
            {
                continue;
            }
            let owners = retention_owners(set, &pod, false);
            if !owners.is_empty() {
                claim.metadata.owner_references = Some(owners);
            }
            match claims.create(&PostParams::default(), &claim).await {
                Ok(_) => self.event(
                    set,
                    NORMAL,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cname} Pod {pod_name} in StatefulSet {set_name} success"
                    ),
                ),
                Err(e) if api_code(&e) == Some(409) => {}
                Err(e) => {
                    let what = format!("create Claim {cname} for Pod {pod_name}");
                    return Err(self.failed(set, "FailedCreate", &what, e));
                }
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.event(
                    set,
                    NORMAL,
                    "SuccessfulCreate",
                    format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                );
                Ok(())
            }
            // The cache lags behind an earlier creation: its event requeues the set.
            Err(e) if api_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(self.failed(set, "FailedCreate", &format!("create Pod {pod_name}"), e)),
        }
    }

    async fn delete_pod(&self, set: &StatefulSet, pod_name: &str) -> Result<(), ControllerError> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let set_name = set.metadata.name.as_deref().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match pods.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                self.event(
                    set,
                    NORMAL,
                    "SuccessfulDelete",
                    format!("delete Pod {pod_name} in StatefulSet {set_name} successful"),
                );
                Ok(())
            }
            Err(e) if api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.failed(set, "FailedDelete", &format!("delete Pod {pod_name}"), e)),
        }
    }

    /// Patches back the identity labels live pods lack.
    async fn repair_identities(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
    ) -> Result<(), ControllerError> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let set_name = set.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let Some(patch) =
                ordinal_of(set_name, name).and_then(|o| identity_repair(set_name, pod, o))
            else {
                continue;
            };
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if api_code(&e) == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Brings the retention owner references of every existing pod's claims in line with
    /// the policy, before any condemned pod is deleted (so a `whenScaled: Delete` claim is
    /// owned by its pod when the pod goes).
    async fn sync_claim_owners(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        input: &Input,
    ) -> Result<(), ControllerError> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let set_name = set.metadata.name.as_deref().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let end = input.start + input.replicas;
        for pod in pods {
            let Some(ordinal) =
                ordinal_of(set_name, pod.metadata.name.as_deref().unwrap_or_default())
            else {
                continue;
            };
            let condemned = ordinal < input.start || ordinal >= end;
            let wanted = retention_owners(set, pod, condemned);
            for c in claims_for(set, ordinal) {
                let cname = c.metadata.name.unwrap_or_default();
                let Some(existing) = self.claims.get(&ObjectRef::new(&cname).within(ns)) else {
                    continue;
                };
                let Some(refs) = reconcile_claim_owners(&existing, set, pod, &wanted) else {
                    continue;
                };
                let mut updated = (*existing).clone();
                updated.metadata.owner_references = Some(refs);
                match api.replace(&cname, &PostParams::default(), &updated).await {
                    Ok(_) => {}
                    Err(e) if matches!(api_code(&e), Some(404) | Some(409)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// A whole-status update (the role allows `update` on the status) when it changed.
    async fn write_status(
        &self,
        set: &StatefulSet,
        status: StatefulSetStatus,
    ) -> Result<(), ControllerError> {
        if set.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = set.clone();
        updated.status = Some(status);
        Ok(update_status(&self.client, &updated).await?)
    }
}
