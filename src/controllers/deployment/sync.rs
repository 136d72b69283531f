//! One sync of one deployment (upstream's `syncDeployment` and `sync.go`): claim replica
//! sets, find or create the new one, and pick the path — status only (being deleted),
//! scaling (paused, or replicas changed), or a rollout step of the strategy.

use super::progress::{
    get_condition, new_condition, progress_deadline, requeue_stuck, rollout_status, set_condition,
    FAILED_RS_CREATE, FOUND_NEW_RS, NEW_RS_CREATED, PAUSED, PROGRESSING, RESUMED, TIMED_OUT,
};
use super::util::{
    compute_hash, d_replicas, desired_replicas_annotation, equal_ignore_hash, is_rolling,
    max_surge, new_rs_new_replicas, proportional_sizes, replicas_annotations_need_update,
    revision_of, rs_replicas, set_new_rs_annotations, set_replicas_annotations, POD_TEMPLATE_HASH,
    REVISION,
};
use crate::controllers::controller_utils::{
    adopt_patch, claim, controller_ref, new_controller_ref, release_patch, Claim, Selector,
};
use crate::controllers::{Action, ControllerError, Reconciler};
use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;

pub(super) struct Sync {
    pub client: kube::Client,
    pub deployments: Store<Deployment>,
    pub replica_sets: Store<ReplicaSet>,
    pub pods: Store<Pod>,
    pub recorder: Recorder,
    /// Replica sets (keyed `ns/name`) this controller wrote and its cache has not shown yet.
    /// A sync over an older cached copy decides on numbers it already changed (a stale
    /// desired-replicas annotation looked like a scaling event and scaled an old replica
    /// set up mid-rollout, past maxSurge), so it waits for the cache instead.
    pub written: super::super::staleness::Staleness,
}

/// The replica sets of one deployment during a sync: the new one (template equal to the
/// deployment's) and the others.
pub(super) struct Sets {
    pub new: Option<ReplicaSet>,
    pub old: Vec<ReplicaSet>,
}

impl Sets {
    pub fn all(&self) -> Vec<&ReplicaSet> {
        self.old.iter().chain(self.new.as_ref()).collect()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl Reconciler for Sync {
    type Key = String;
    const NAME: &'static str = "deployment";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(cached) = self.deployments.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        let mut d = (*cached).clone();
        let selector = Selector::new(d.spec.as_ref().map(|s| &s.selector));
        if selector.is_everything() {
            self.recorder.event(
                object_ref(&d),
                WARNING,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let mut s = d.status.clone().unwrap_or_default();
            if s.observed_generation < d.metadata.generation {
                s.observed_generation = d.metadata.generation;
                self.write_status(&mut d, s).await?;
            }
            return Ok(Action::Done);
        }
        let rs_list = self.claim_replica_sets(&d, &selector).await?;
        if rs_list.iter().any(|rs| self.is_stale(rs)) {
            // The written version is on its way; its arrival queues this deployment again.
            return Ok(Action::Done);
        }
        if d.metadata.deletion_timestamp.is_some() {
            let sets = self.sets(&mut d, rs_list, false).await?;
            return self.sync_rollout_status(&mut d, &sets).await;
        }
        self.check_paused_conditions(&mut d).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || is_scaling_event(&d, &rs_list) {
            return self.sync_scale(&mut d, rs_list, paused).await;
        }
        if is_rolling(&d) {
            self.rollout_rolling(&mut d, rs_list).await
        } else {
            self.rollout_recreate(&mut d, rs_list).await
        }
    }
}

/// A replica set with replicas whose desired-replicas annotation is not the deployment's
/// replicas: the user scaled the deployment.
fn is_scaling_event(d: &Deployment, rs_list: &[ReplicaSet]) -> bool {
    rs_list
        .iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .any(|rs| desired_replicas_annotation(rs).is_some_and(|v| v != d_replicas(d)))
}

impl Sync {
    /// Notes a replica set this controller just wrote.
    pub(super) fn wrote(&self, rs: &ReplicaSet) {
        self.written.written(&rs_key(rs), &rs.metadata);
    }

    /// Whether the cached `rs` predates what this controller last wrote to it.
    fn is_stale(&self, rs: &ReplicaSet) -> bool {
        self.written.is_stale(&rs_key(rs), [&rs.metadata])
    }

    /// The replica sets this deployment owns after adopting and releasing.
    async fn claim_replica_sets(
        &self,
        d: &Deployment,
        selector: &Selector,
    ) -> Result<Vec<ReplicaSet>, ControllerError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let owner = new_controller_ref("apps/v1", "Deployment", &d.metadata);
        let mut can_adopt = None;
        let mut owned = Vec::new();
        let mut candidates: Vec<Arc<ReplicaSet>> = self
            .replica_sets
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
            .collect();
        candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for rs in candidates {
            let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
            let rs_name = rs.metadata.name.clone().unwrap_or_default();
            match claim(
                &uid,
                deleting,
                &rs.metadata,
                selector.matches(rs.metadata.labels.as_ref()),
            ) {
                Claim::Keep => owned.push((*rs).clone()),
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        let fresh: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                        let current = fresh
                            .get_opt(d.metadata.name.as_deref().unwrap_or_default())
                            .await?;
                        can_adopt = Some(current.is_some_and(|c| {
                            c.metadata.uid == d.metadata.uid
                                && c.metadata.deletion_timestamp.is_none()
                        }));
                    }
                    if can_adopt != Some(true) {
                        continue;
                    }
                    let patch = adopt_patch(&owner, &rs_uid);
                    match api
                        .patch(&rs_name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        Ok(adopted) => {
                            self.wrote(&adopted);
                            owned.push(adopted)
                        }
                        Err(e) if is_status(&e, 404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Release => {
                    let patch = release_patch(&uid, &rs_uid);
                    match api
                        .patch(&rs_name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_status(&e, 404) || is_status(&e, 422) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// The pods of this deployment's replica sets (Recreate waits for old ones to go).
    pub(super) fn pods_of(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let uid = rs.metadata.uid.as_deref();
        self.pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace == rs.metadata.namespace)
            .filter(|p| controller_ref(&p.metadata).map(|r| r.uid.as_str()) == uid)
            .collect()
    }

    /// Splits `rs_list` into the new replica set and the old ones, syncing the new one's
    /// revision and creating it when `create` (upstream's
    /// `getAllReplicaSetsAndSyncRevision`).
    pub(super) async fn sets(
        &self,
        d: &mut Deployment,
        mut rs_list: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Sets, ControllerError> {
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        rs_list.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let new_idx = rs_list.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let existing = new_idx.map(|i| rs_list.remove(i));
        let old = rs_list;
        let max_old = old.iter().map(revision_of).max().unwrap_or(0);
        let new = self
            .new_replica_set(d, existing, &old, max_old + 1, create)
            .await?;
        Ok(Sets { new, old })
    }

    async fn new_replica_set(
        &self,
        d: &mut Deployment,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        new_revision: i64,
        create: bool,
    ) -> Result<Option<ReplicaSet>, ControllerError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(mut rs) = existing {
            let mut changed = set_new_rs_annotations(d, &mut rs, new_revision, true);
            let spec = rs.spec.get_or_insert_with(Default::default);
            if spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            if changed {
                rs = api
                    .replace(
                        rs.metadata.name.as_deref().unwrap_or_default(),
                        &PostParams::default(),
                        &rs,
                    )
                    .await?;
                self.wrote(&rs);
            }
            let revision = super::util::annotation(&rs, REVISION)
                .unwrap_or_default()
                .to_string();
            self.set_deployment_revision(d, &revision).await?;
            let mut status = d.status.clone().unwrap_or_default();
            if progress_deadline(d).is_some() && get_condition(&status, PROGRESSING).is_none() {
                let msg = format!(
                    "Found new replica set {:?}",
                    rs.metadata.name.as_deref().unwrap_or_default()
                );
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", FOUND_NEW_RS, msg),
                );
                self.write_status(d, status).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let hash = compute_hash(&template, collision);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or_default());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![new_controller_ref(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().collect();
        let replicas = new_rs_new_replicas(d, &all, 0);
        set_new_rs_annotations(d, &mut rs, new_revision, false);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        let mut status = d.status.clone().unwrap_or_default();
        let created = match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.wrote(&created);
                created
            }
            Err(e) if is_status(&e, 409) => {
                // Ours from an earlier sync whose cache entry has not arrived, or a hash
                // collision with someone else's replica set.
                let theirs = api.get(&name).await?;
                let ours = controller_ref(&theirs.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same = theirs
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .zip(d.spec.as_ref().map(|s| &s.template))
                    .is_some_and(|(a, b)| equal_ignore_hash(a, b));
                if ours && same {
                    return Ok(Some(theirs));
                }
                status.collision_count = Some(collision.unwrap_or(0) + 1);
                self.write_status(d, status).await?;
                return Err(ControllerError::Invalid(format!(
                    "hash collision creating replica set {name}; collision count raised"
                )));
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {e}");
                if progress_deadline(d).is_some() {
                    set_condition(
                        &mut status,
                        new_condition(PROGRESSING, "False", FAILED_RS_CREATE, msg.clone()),
                    );
                    self.write_status(d, status).await?;
                }
                self.recorder
                    .event(object_ref(d), WARNING, FAILED_RS_CREATE, msg);
                return Err(e.into());
            }
        };
        if replicas > 0 {
            self.recorder.event(
                object_ref(d),
                NORMAL,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
        }
        self.set_deployment_revision(d, &new_revision.to_string())
            .await?;
        if progress_deadline(d).is_some() {
            let msg = format!("Created new replica set {name:?}");
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "True", NEW_RS_CREATED, msg),
            );
            self.write_status(d, status).await?;
        }
        Ok(Some(created))
    }

    /// Keeps the deployment's revision annotation at its new replica set's.
    async fn set_deployment_revision(
        &self,
        d: &mut Deployment,
        revision: &str,
    ) -> Result<(), ControllerError> {
        let current = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if current.map(String::as_str) == Some(revision) || revision.is_empty() {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        );
        // A whole-object update (upstream's Update; the role allows `update`, not `patch`).
        let mut copy = d.clone();
        copy.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REVISION.into(), revision.into());
        let updated = api
            .replace(
                d.metadata.name.as_deref().unwrap_or_default(),
                &PostParams::default(),
                &copy,
            )
            .await?;
        d.metadata.annotations = updated.metadata.annotations;
        d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Writes the deployment's whole status.
    pub(super) async fn write_status(
        &self,
        d: &mut Deployment,
        status: DeploymentStatus,
    ) -> Result<(), ControllerError> {
        let api: Api<Deployment> = Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        );
        // A whole-status update (upstream's UpdateStatus; the role allows `update`): the
        // resourceVersion of what this sync read makes a stale write conflict and retry.
        let mut copy = d.clone();
        copy.status = Some(status.clone());
        let updated = api
            .replace_status(
                d.metadata.name.as_deref().unwrap_or_default(),
                &PostParams::default(),
                &copy,
            )
            .await?;
        d.metadata.resource_version = updated.metadata.resource_version;
        d.status = Some(status);
        Ok(())
    }

    /// Upstream's `checkPausedConditions`.
    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), ControllerError> {
        if progress_deadline(d).is_none() {
            return Ok(());
        }
        let mut status = d.status.clone().unwrap_or_default();
        let reason = get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let paused_cond = reason.as_deref() == Some(PAUSED);
        let cond = if paused && !paused_cond {
            new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
            )
        } else if !paused && paused_cond {
            new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
            )
        } else {
            return Ok(());
        };
        set_condition(&mut status, cond);
        self.write_status(d, status).await
    }

    /// Scales a replica set to `size`, keeping its replicas annotations current, and
    /// reports a size change as `ScalingReplicaSet`; true if the size changed.
    pub(super) async fn scale_rs(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        size: i32,
    ) -> Result<bool, ControllerError> {
        let old = rs_replicas(rs);
        let desired = d_replicas(d);
        let max = desired + max_surge(d);
        if old == size && !replicas_annotations_need_update(rs, desired, max) {
            return Ok(false);
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(size);
        set_replicas_annotations(&mut copy, desired, max);
        let api: Api<ReplicaSet> = Api::namespaced(
            self.client.clone(),
            rs.metadata.namespace.as_deref().unwrap_or_default(),
        );
        *rs = api
            .replace(
                rs.metadata.name.as_deref().unwrap_or_default(),
                &PostParams::default(),
                &copy,
            )
            .await?;
        self.wrote(rs);
        if old != size {
            let op = if old < size { "up" } else { "down" };
            self.recorder.event(
                object_ref(d),
                NORMAL,
                "ScalingReplicaSet",
                format!(
                    "Scaled {op} replica set {} from {old} to {size}",
                    rs.metadata.name.as_deref().unwrap_or_default()
                ),
            );
        }
        Ok(old != size)
    }

    /// Upstream's `sync`: scaling without a rollout (paused, or replicas changed).
    async fn sync_scale(
        &self,
        d: &mut Deployment,
        rs_list: Vec<ReplicaSet>,
        paused: bool,
    ) -> Result<Action, ControllerError> {
        let mut sets = self.sets(d, rs_list, false).await?;
        self.scale(d, &mut sets).await?;
        if paused {
            self.cleanup(d, &sets.old).await?;
        }
        self.sync_rollout_status(d, &sets).await
    }

    /// Upstream's `scale`.
    async fn scale(&self, d: &Deployment, sets: &mut Sets) -> Result<(), ControllerError> {
        let replicas = d_replicas(d);
        let active_count = sets.all().iter().filter(|rs| rs_replicas(rs) > 0).count();
        // One active replica set (or none: the newest) takes all replicas.
        let only = if active_count == 1 {
            sets.old
                .iter_mut()
                .chain(sets.new.as_mut())
                .find(|rs| rs_replicas(rs) > 0)
        } else if active_count == 0 {
            match sets.new.as_mut() {
                Some(n) => Some(n),
                None => sets
                    .old
                    .iter_mut()
                    .max_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            }
        } else {
            None
        };
        if let Some(rs) = only {
            if rs_replicas(rs) != replicas {
                self.scale_rs(d, rs, replicas).await?;
            }
            return Ok(());
        }
        let saturated = sets.new.as_ref().is_some_and(|n| {
            rs_replicas(n) == replicas && super::util::rs_available(n) == replicas
        });
        if saturated {
            for rs in sets.old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
                self.scale_rs(d, rs, 0).await?;
            }
            return Ok(());
        }
        if !is_rolling(d) {
            return Ok(());
        }
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut active: Vec<&mut ReplicaSet> = sets
            .old
            .iter_mut()
            .chain(sets.new.as_mut())
            .filter(|rs| rs_replicas(rs) > 0)
            .collect();
        let sizes = {
            let view: Vec<&ReplicaSet> = active.iter().map(|r| &**r).collect();
            proportional_sizes(d, status_replicas, &view)
        };
        for (i, size) in sizes {
            self.scale_rs(d, active[i], size).await?;
        }
        Ok(())
    }

    /// Upstream's `syncRolloutStatus`: writes the status if it changed, and says when to
    /// look again for the progress deadline.
    pub(super) async fn sync_rollout_status(
        &self,
        d: &mut Deployment,
        sets: &Sets,
    ) -> Result<Action, ControllerError> {
        let status = rollout_status(d, &sets.all(), sets.new.as_ref());
        if d.status.as_ref().map(normalized) == Some(normalized(&status)) {
            return Ok(match requeue_stuck(d, &status, Timestamp::now()) {
                Some(after) => Action::RequeueAfter(after),
                None => Action::Done,
            });
        }
        self.write_status(d, status).await?;
        let again = d
            .status
            .as_ref()
            .and_then(|s| requeue_stuck(d, s, Timestamp::now()));
        Ok(again.map(Action::RequeueAfter).unwrap_or(Action::Done))
    }
}

/// A status with zero counts read as absent: the API omits zero counts (`omitempty`), so a
/// written status must compare equal to what is read back.
fn normalized(s: &DeploymentStatus) -> DeploymentStatus {
    let z = |v: Option<i32>| v.filter(|n| *n != 0);
    DeploymentStatus {
        observed_generation: s.observed_generation.filter(|g| *g != 0),
        replicas: z(s.replicas),
        updated_replicas: z(s.updated_replicas),
        ready_replicas: z(s.ready_replicas),
        available_replicas: z(s.available_replicas),
        unavailable_replicas: z(s.unavailable_replicas),
        terminating_replicas: z(s.terminating_replicas),
        collision_count: s.collision_count,
        conditions: s.conditions.clone().filter(|c| !c.is_empty()),
    }
}

fn rs_key(rs: &ReplicaSet) -> String {
    format!(
        "{}/{}",
        rs.metadata.namespace.as_deref().unwrap_or_default(),
        rs.metadata.name.as_deref().unwrap_or_default()
    )
}
