//! The binder's two sync functions (upstream's `syncClaim` and `syncVolume`), acting on one
//! claim or one volume from the caches and writing through the API.

use super::matching::{
    check_satisfies, claim_capacity, claim_class, claim_volume, delays_binding, find_best_match,
    is_bound_to, volume_capacity,
};
use super::*;
use crate::controllers::Action;
use crate::events::{object_ref, NORMAL, WARNING};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaimStatus};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::time::Duration;

/// Upstream's resync period: claims waiting on something that sends no event (a volume
/// named by the user that does not exist yet) are looked at again this often.
const RESYNC: Duration = Duration::from_secs(15);

pub struct Binder {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub volumes: Store<PersistentVolume>,
    pub claims: Store<PersistentVolumeClaim>,
    pub classes: Store<StorageClass>,
    pub queue: WorkQueue<Key>,
}

fn has_ann(meta: &kube::api::ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn set_ann(meta: &mut kube::api::ObjectMeta, key: &str, value: &str) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

impl Binder {
    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        (!name.is_empty())
            .then(|| self.classes.get(&ObjectRef::new(name)))
            .flatten()
    }

    fn event(
        &self,
        c: &PersistentVolumeClaim,
        type_: &'static str,
        reason: &'static str,
        msg: String,
    ) {
        self.recorder.event(object_ref(c), type_, reason, msg);
    }

    pub async fn sync_claim(&self, ns: &str, name: &str) -> Result<Action, ControllerError> {
        let Some(claim) = self.claims.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        if has_ann(&claim.metadata, ANN_BIND_COMPLETED) {
            self.sync_bound_claim(&claim).await
        } else {
            self.sync_unbound_claim(&claim).await
        }
    }

    async fn sync_unbound_claim(
        &self,
        claim: &PersistentVolumeClaim,
    ) -> Result<Action, ControllerError> {
        let wanted = claim_volume(claim);
        if wanted.is_empty() {
            let class_name = claim_class(claim);
            let class = self.class(class_name);
            let delay = delays_binding(class.as_deref());
            let volumes = self.volumes.state();
            if let Some(v) = find_best_match(claim, volumes.iter().map(|v| v.as_ref()), delay) {
                self.bind(v, claim).await?;
                return Ok(Action::Done);
            }
            if delay && !has_ann(&claim.metadata, ANN_SELECTED_NODE) {
                self.event(
                    claim,
                    NORMAL,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding".into(),
                );
            } else if !class_name.is_empty() {
                if class.is_none() {
                    // Classes send the binder no events: look again at upstream's resync.
                    self.provision(claim, class_name, None).await?;
                    return Ok(Action::RequeueAfter(RESYNC));
                }
                self.provision(claim, class_name, class.as_deref()).await?;
            } else {
                self.event(
                    claim,
                    NORMAL,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set"
                        .into(),
                );
            }
            return Ok(Action::Done);
        }
        // The user named the volume.
        let Some(v) = self.volumes.get(&ObjectRef::new(wanted)) else {
            return Ok(Action::RequeueAfter(RESYNC));
        };
        let claim_ref = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_none() {
            if let Err(why) = check_satisfies(&v, claim) {
                self.event(
                    claim,
                    WARNING,
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume {wanted:?}: {why}"),
                );
                return Ok(Action::RequeueAfter(RESYNC));
            }
        } else if !is_bound_to(&v, claim) {
            self.event(
                claim,
                WARNING,
                "FailedBinding",
                format!("volume {wanted:?} already bound to a different claim."),
            );
            return Ok(Action::RequeueAfter(RESYNC));
        }
        self.bind(&v, claim).await?;
        Ok(Action::Done)
    }

    async fn sync_bound_claim(
        &self,
        claim: &PersistentVolumeClaim,
    ) -> Result<Action, ControllerError> {
        let wanted = claim_volume(claim);
        if wanted.is_empty() {
            self.lost(
                claim,
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(Action::Done);
        }
        let Some(v) = self.volumes.get(&ObjectRef::new(wanted)) else {
            self.lost(
                claim,
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(Action::Done);
        };
        let claim_ref = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_none() || is_bound_to(&v, claim) {
            self.bind(&v, claim).await?;
        } else {
            self.event(
                claim,
                WARNING,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly".into(),
            );
            self.claim_status(claim, "Lost", None).await?;
        }
        Ok(Action::Done)
    }

    async fn lost(&self, claim: &PersistentVolumeClaim, msg: &str) -> Result<(), ControllerError> {
        self.event(claim, WARNING, "ClaimLost", msg.into());
        self.claim_status(claim, "Lost", None).await?;
        Ok(())
    }

    /// Hands the claim to its class's provisioner (upstream's `provisionClaim` for a
    /// provisioner outside the controller manager, which every provisioner here is).
    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        class_name: &str,
        class: Option<&StorageClass>,
    ) -> Result<(), ControllerError> {
        let Some(class) = class else {
            self.event(
                claim,
                WARNING,
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io {class_name:?} not found"),
            );
            return Ok(());
        };
        let provisioner = class.provisioner.as_str();
        let annotated = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_STORAGE_PROVISIONER))
            .is_some_and(|p| p == provisioner);
        if !annotated {
            let mut c = claim.clone();
            set_ann(&mut c.metadata, ANN_STORAGE_PROVISIONER, provisioner);
            set_ann(&mut c.metadata, ANN_BETA_STORAGE_PROVISIONER, provisioner);
            self.replace_claim(&c).await?;
        }
        self.event(
            claim,
            NORMAL,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner \
                 '{provisioner}' or manually by the system administrator. If volume creation \
                 is delayed, please verify that the provisioner is running and correctly \
                 registered."
            ),
        );
        Ok(())
    }

    /// Completes the link volume → claim, then claim → volume, then both phases; each step
    /// only when it is not already so.
    async fn bind(
        &self,
        v: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<(), ControllerError> {
        let vname = v.metadata.name.clone().unwrap_or_default();
        let mut vol = v.clone();
        let spec = vol.spec.get_or_insert_with(Default::default);
        let want_ref = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: claim.metadata.namespace.clone(),
            name: claim.metadata.name.clone(),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            field_path: None,
        };
        let complete = spec
            .claim_ref
            .as_ref()
            .is_some_and(|r| r.uid.is_some() && r.uid == claim.metadata.uid);
        // Every later sync of a bound pair comes here too: tell of the binding only when
        // this sync wrote something.
        let mut wrote = false;
        if !complete {
            let by_controller = spec.claim_ref.is_none();
            spec.claim_ref = Some(want_ref);
            if by_controller {
                set_ann(&mut vol.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            vol = self.replace_volume(&vol).await?;
            wrote = true;
        }
        if volume_phase(&vol) != "Bound" {
            vol = self.volume_status(&vol, "Bound").await?;
            wrote = true;
        }
        let mut c = claim.clone();
        if claim_volume(claim) != vname || !has_ann(&claim.metadata, ANN_BIND_COMPLETED) {
            let spec = c.spec.get_or_insert_with(Default::default);
            if spec.volume_name.as_deref().unwrap_or_default().is_empty() {
                set_ann(&mut c.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            spec.volume_name = Some(vname.clone());
            set_ann(&mut c.metadata, ANN_BIND_COMPLETED, "yes");
            c = self.replace_claim(&c).await?;
            wrote = true;
        }
        if self.claim_status(&c, "Bound", Some(&vol)).await? || wrote {
            tracing::info!(volume = %vname, claim = ?claim.metadata.name, "bound");
        }
        Ok(())
    }

    pub async fn sync_volume(&self, name: &str) -> Result<Action, ControllerError> {
        let Some(v) = self.volumes.get(&ObjectRef::new(name)) else {
            return Ok(Action::Done);
        };
        if v.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            if volume_phase(&v) != "Available" {
                self.volume_status(&v, "Available").await?;
            }
            return Ok(Action::Done);
        };
        let ns = r.namespace.clone().unwrap_or_default();
        let cname = r.name.clone().unwrap_or_default();
        if r.uid.as_deref().unwrap_or_default().is_empty() {
            // Pre-bound by the user: the claim's sync binds it.
            if volume_phase(&v) != "Available" {
                self.volume_status(&v, "Available").await?;
            }
            self.queue.add(Key::Claim { ns, name: cname });
            return Ok(Action::Done);
        }
        let mut claim = self.claims.get(&ObjectRef::new(&cname).within(&ns));
        if claim.as_ref().is_none_or(|c| c.metadata.uid != r.uid) {
            // The cache may lag a claim just created: ask the API before releasing.
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
            claim = api.get_opt(&cname).await?.map(Arc::new);
        }
        let claim = claim.filter(|c| c.metadata.uid == r.uid);
        let Some(claim) = claim else {
            return self.release(&v).await;
        };
        let bound_to = claim_volume(&claim);
        if bound_to.is_empty() {
            self.queue.add(Key::Claim { ns, name: cname });
        } else if bound_to == name {
            if volume_phase(&v) != "Bound" {
                self.volume_status(&v, "Bound").await?;
            }
        } else if has_ann(&v.metadata, ANN_BOUND_BY_CONTROLLER) {
            // The claim went to another volume: this one was only half bound.
            if has_ann(&v.metadata, ANN_PROVISIONED_BY) {
                return self.release(&v).await;
            }
            let mut vol = (*v).clone();
            if let Some(s) = vol.spec.as_mut() {
                s.claim_ref = None;
            }
            if let Some(a) = vol.metadata.annotations.as_mut() {
                a.remove(ANN_BOUND_BY_CONTROLLER);
            }
            let vol = self.replace_volume(&vol).await?;
            self.volume_status(&vol, "Available").await?;
        }
        Ok(Action::Done)
    }

    /// The claim is gone: Released, then the reclaim policy. A volume a provisioner made is
    /// deleted by that provisioner; any other with Delete or Recycle has no plugin here.
    async fn release(&self, v: &PersistentVolume) -> Result<Action, ControllerError> {
        let phase = volume_phase(v);
        if phase == "Failed" {
            return Ok(Action::Done);
        }
        let v = if phase != "Released" {
            self.volume_status(v, "Released").await?
        } else {
            v.clone()
        };
        let policy = v
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        let (reason, message) = match policy {
            "Delete" if has_ann(&v.metadata, ANN_PROVISIONED_BY) => return Ok(Action::Done),
            "Delete" => (
                "VolumeFailedDelete",
                format!(
                    "error getting deleter volume plugin for volume {:?}: no deletable volume \
                     plugin matched",
                    v.metadata.name.as_deref().unwrap_or_default()
                ),
            ),
            "Recycle" => (
                "VolumeFailedRecycle",
                "No recycler plugin found for the volume!".into(),
            ),
            _ => return Ok(Action::Done),
        };
        self.recorder
            .event(object_ref(&v), WARNING, reason, message);
        self.volume_status(&v, "Failed").await?;
        Ok(Action::Done)
    }

    async fn replace_volume(
        &self,
        v: &PersistentVolume,
    ) -> Result<PersistentVolume, ControllerError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let name = v.metadata.name.clone().unwrap_or_default();
        Ok(api.replace(&name, &PostParams::default(), v).await?)
    }

    async fn volume_status(
        &self,
        v: &PersistentVolume,
        phase: &str,
    ) -> Result<PersistentVolume, ControllerError> {
        let mut vol = v.clone();
        let st = vol.status.get_or_insert_with(Default::default);
        st.phase = Some(phase.into());
        st.message = None;
        st.reason = None;
        st.last_phase_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let name = v.metadata.name.clone().unwrap_or_default();
        Ok(api
            .replace_status(&name, &PostParams::default(), &vol)
            .await?)
    }

    async fn replace_claim(
        &self,
        c: &PersistentVolumeClaim,
    ) -> Result<PersistentVolumeClaim, ControllerError> {
        let ns = c.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let name = c.metadata.name.clone().unwrap_or_default();
        Ok(api.replace(&name, &PostParams::default(), c).await?)
    }

    /// Writes the claim's phase and what goes with it ([`claim_status_for`]) when changed;
    /// whether it wrote.
    async fn claim_status(
        &self,
        c: &PersistentVolumeClaim,
        phase: &str,
        v: Option<&PersistentVolume>,
    ) -> Result<bool, ControllerError> {
        let mut claim = c.clone();
        let before = claim.status.take().unwrap_or_default();
        let st = claim.status.insert(claim_status_for(&before, phase, v));
        if *st == before {
            return Ok(false);
        }
        let ns = c.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let name = c.metadata.name.clone().unwrap_or_default();
        api.replace_status(&name, &PostParams::default(), &claim)
            .await?;
        Ok(true)
    }
}

/// A claim's status in `phase`, its volume `v` when it has one (upstream's
/// `updateClaimStatus`): the volume's access modes; its capacity only as the claim becomes
/// Bound and when larger than the claim's (afterwards the resizer owns it: a volume grown
/// before its claim must not look like a finished resize); neither without a volume.
pub(super) fn claim_status_for(
    before: &PersistentVolumeClaimStatus,
    phase: &str,
    v: Option<&PersistentVolume>,
) -> PersistentVolumeClaimStatus {
    let mut st = before.clone();
    let becoming = st.phase.as_deref() != Some(phase);
    st.phase = Some(phase.into());
    let Some((v, spec)) = v.and_then(|v| Some((v, v.spec.as_ref()?))) else {
        st.access_modes = None;
        st.capacity = None;
        return st;
    };
    st.access_modes = spec.access_modes.clone();
    let claimed = claim_capacity(Some(&st));
    if becoming && claimed.is_none_or(|c| volume_capacity(v) > c) {
        st.capacity = spec.capacity.clone();
    }
    st
}
