//! A StatefulSet pod's stable identity and storage (upstream's `stateful_set_utils.go`):
//! name `<set>-<ordinal>`, the `statefulset.kubernetes.io/pod-name` and
//! `apps.kubernetes.io/pod-index` labels, hostname and subdomain from `serviceName`, one
//! PersistentVolumeClaim `<template>-<set>-<ordinal>` per volume claim template, and the
//! claims' owner references that implement `persistentVolumeClaimRetentionPolicy`.

use crate::controllers::controller_utils::{controller_ref, new_controller_ref};
use crate::controllers::history::CONTROLLER_REVISION_HASH;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The first ordinal (`spec.ordinals.start`, default 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The ordinal of a pod named `<set>-<n>`, if the pod belongs to `set` by name.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse::<i32>().ok().filter(|n| *n >= 0)
}

pub fn pod_name(set_name: &str, ordinal: i32) -> String {
    format!("{set_name}-{ordinal}")
}

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set_name: &str, ordinal: i32) -> String {
    format!("{template}-{set_name}-{ordinal}")
}

/// The revision a pod was made from (its `controller-revision-hash` label).
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_REVISION_HASH))
        .map(String::as_str)
        .unwrap_or_default()
}

/// The pod of ordinal `ordinal` made from `template` (the template of the revision it is to
/// have, named `revision`): identity, storage, revision label, `set` as controller.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = pod_name(&set_name, ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    let spec_of = set.spec.as_ref();
    spec.subdomain = spec_of
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let claims = spec_of
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    if !claims.is_empty() {
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        for c in &claims {
            let vol_name = c.metadata.name.clone().unwrap_or_default();
            volumes.retain(|v| v.name != vol_name);
            volumes.push(Volume {
                name: vol_name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&vol_name, &set_name, ordinal),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![new_controller_ref(
                "apps/v1",
                "StatefulSet",
                &set.metadata,
            )]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The claims ordinal `ordinal` needs: each template's spec, its labels plus the set's
/// `matchLabels`, named `<template>-<set>-<ordinal>`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.as_ref();
    let match_labels = spec
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    spec.and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(match_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, &set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec,
                status: None,
            }
        })
        .collect()
}

/// A non-controlling reference (retention owners never claim the PVC as its controller).
fn owner_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        controller: None,
        ..new_controller_ref(api_version, kind, owner)
    }
}

/// The retention owner references a claim of a pod should carry, per
/// `persistentVolumeClaimRetentionPolicy`: the set when `whenDeleted: Delete` (the claim
/// goes with the set), the pod when `whenScaled: Delete` and the pod's ordinal is condemned
/// by a scale-down (the claim goes with the pod).
pub fn retention_owners(set: &StatefulSet, pod: &Pod, condemned: bool) -> Vec<OwnerReference> {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
        .unwrap_or_default();
    let is_delete = |p: &Option<String>| p.as_deref() == Some("Delete");
    let mut refs = Vec::new();
    if is_delete(&policy.when_deleted) {
        refs.push(owner_ref("apps/v1", "StatefulSet", &set.metadata));
    }
    if condemned && is_delete(&policy.when_scaled) {
        refs.push(owner_ref("v1", "Pod", &pod.metadata));
    }
    refs
}

/// The claim's owner references with the retention references of `set` and `pod` made to
/// equal `wanted`, or `None` if they already do. References of other owners are kept.
pub fn reconcile_claim_owners(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
    wanted: &[OwnerReference],
) -> Option<Vec<OwnerReference>> {
    let ours = [
        set.metadata.uid.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    ];
    let current = claim.metadata.owner_references.clone().unwrap_or_default();
    let mut desired: Vec<OwnerReference> = current
        .iter()
        .filter(|r| !ours.contains(&r.uid.as_str()) || controller_ref_is(r))
        .cloned()
        .collect();
    desired.extend(wanted.iter().cloned());
    let uids = |refs: &[OwnerReference]| {
        let mut u: Vec<String> = refs.iter().map(|r| r.uid.clone()).collect();
        u.sort();
        u
    };
    (uids(&current) != uids(&desired)).then_some(desired)
}

fn controller_ref_is(r: &OwnerReference) -> bool {
    r.controller == Some(true)
}

/// The identity labels a live pod of ordinal `ordinal` lacks or has wrong (an adopted
/// orphan, a label edited away), to be patched back; `None` if it has them all (upstream's
/// `identityMatches`, for what may change on a live pod).
pub fn identity_repair(set_name: &str, pod: &Pod, ordinal: i32) -> Option<serde_json::Value> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let want = [
        (POD_NAME_LABEL, pod_name(set_name, ordinal)),
        (POD_INDEX_LABEL, ordinal.to_string()),
    ];
    let wrong: serde_json::Map<String, serde_json::Value> = want
        .into_iter()
        .filter(|(k, v)| labels.get(*k) != Some(v))
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    (!wrong.is_empty()).then(|| serde_json::json!({"metadata": {"labels": wrong}}))
}

/// Whether the pod is ours by controller reference.
pub fn owned_by(pod: &Pod, set: &StatefulSet) -> bool {
    controller_ref(&pod.metadata).is_some_and(|r| Some(&r.uid) == set.metadata.uid.as_ref())
}
