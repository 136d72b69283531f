//! Pure decisions of the deployment controller (upstream's `deployment/util`): surge and
//! unavailability arithmetic, the pod-template hash, the replica-set annotations, counts
//! over replica sets, proportional scaling and the new replica set's size.
//!
//! Invariant: nothing here talks to the API; every function is a decision on values.

use crate::controllers::controller_utils::scaled_value;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// Upstream's limit on the length of the revision-history annotation.
pub const REVISION_HISTORY_LIMIT_CHARS: usize = 2000;

/// `spec.replicas` of a deployment (defaulted to 1 by the API).
pub fn d_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a replica set.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn rs_terminating(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.terminating_replicas)
        .unwrap_or(0)
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// (maxSurge, maxUnavailable) resolved against `desired`: surge rounds up, unavailability
/// down, and both zero becomes unavailability 1 (upstream's `ResolveFenceposts`).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let default = IntOrString::String("25%".into());
    let surge = scaled_value(max_surge.unwrap_or(&default), desired, true).unwrap_or(0);
    let unavailable =
        scaled_value(max_unavailable.unwrap_or(&default), desired, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        d_replicas(d),
    )
}

/// How many pods above `replicas` a rolling update may run (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// How many of `replicas` may be unavailable during a rolling update (0 for Recreate or
/// no replicas), never more than `replicas`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || d_replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(d_replicas(d))
}

/// FNV-1a, 32 bits.
pub(crate) fn fnv32a(data: &[u8], mut hash: u32) -> u32 {
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

pub(crate) const FNV32_OFFSET: u32 = 0x811c_9dc5;

/// Upstream's `rand.SafeEncodeString`: each byte mapped into an alphabet without vowels
/// or look-alikes, so hashes never spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template: FNV-32a over the template's canonical JSON
/// (struct fields in schema order, map keys sorted) followed, when there is one, by the
/// collision count as 8 little-endian bytes, printed in decimal and safe-encoded.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv32a(&bytes, FNV32_OFFSET);
    if let Some(c) = collision_count {
        let mut cc = [0u8; 8];
        cc[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv32a(&cc, h);
    }
    safe_encode(&h.to_string())
}

/// Whether two templates are the same apart from the `pod-template-hash` label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> serde_json::Value {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut() {
            if let Some(l) = m.labels.as_mut() {
                l.remove(POD_TEMPLATE_HASH);
                if l.is_empty() {
                    m.labels = None;
                }
            }
        }
        serde_json::to_value(t).unwrap_or_default()
    }
    strip(a) == strip(b)
}

pub fn revision_of(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key).and_then(|v| v.parse().ok())
}

/// Copies the deployment's annotations except the controller's own and kubectl's
/// last-applied configuration; true if anything changed.
fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let skip = [
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        ROLLBACK_TO,
    ];
    let mut changed = false;
    let target = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip.contains(&k.as_str()) || target.get(k) == Some(v) {
            continue;
        }
        target.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Sets the desired/max replicas annotations; true if they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    int_annotation(rs, DESIRED_REPLICAS) != Some(desired)
        || int_annotation(rs, MAX_REPLICAS) != Some(max)
}

pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS)
}

/// Upstream's `SetNewReplicaSetAnnotations`: copies the deployment's annotations, raises
/// the revision to `new_revision` when lower (keeping the old one in revision-history, as
/// a rollback to this replica set does), and on creation sets the replicas annotations.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = a.get(REVISION).cloned();
    let old_int: i64 = old.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    if old_int < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|s| !s.is_empty()).collect();
            let mut total = history.len() + old.len() + 1;
            while total > REVISION_HISTORY_LIMIT_CHARS && !revisions.is_empty() {
                total -= revisions[0].len() + 1;
                revisions.remove(0);
            }
            if total <= REVISION_HISTORY_LIMIT_CHARS {
                revisions.push(&old);
                let joined = revisions.join(",");
                a.insert(REVISION_HISTORY.into(), joined);
            }
        }
    }
    if !exists {
        let replicas = d_replicas(d);
        changed |= set_replicas_annotations(rs, replicas, replicas + max_surge(d));
    }
    changed
}

/// The size of the new replica set a rollout step allows (upstream's `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs_replicas: i32) -> i32 {
    let replicas = d_replicas(d);
    if !is_rolling(d) {
        return replicas;
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas + max_surge(d);
    if current >= max_total {
        return new_rs_replicas;
    }
    let up = (max_total - current).min(replicas - new_rs_replicas);
    new_rs_replicas + up
}

/// The sizes of `rss` (active replica sets, old and new) after a change of the
/// deployment's replicas during a rollout, spreading the change in proportion to each
/// replica set's share and giving leftovers to the largest (upstream's proportional
/// scaling in `scale`). Returns (index into `rss`, new size) for every replica set.
pub fn proportional_sizes(
    d: &Deployment,
    status_replicas: i32,
    rss: &[&ReplicaSet],
) -> Vec<(usize, i32)> {
    let replicas = d_replicas(d);
    let current: i32 = rss.iter().map(|rs| rs_replicas(rs)).sum();
    let allowed = if replicas > 0 {
        replicas + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - current;
    let mut order: Vec<usize> = (0..rss.len()).collect();
    let created = |i: usize| rss[i].metadata.creation_timestamp.as_ref().map(|t| t.0);
    if to_add > 0 {
        // Larger first; among equals the newer first.
        order.sort_by(|&a, &b| {
            rs_replicas(rss[b])
                .cmp(&rs_replicas(rss[a]))
                .then_with(|| created(b).cmp(&created(a)))
        });
    } else if to_add < 0 {
        // Larger first; among equals the older first.
        order.sort_by(|&a, &b| {
            rs_replicas(rss[b])
                .cmp(&rs_replicas(rss[a]))
                .then_with(|| created(a).cmp(&created(b)))
        });
    }
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::with_capacity(rss.len());
    for &i in &order {
        let rs = rss[i];
        let mut size = rs_replicas(rs);
        if to_add != 0 {
            let p = proportion(d, rs, status_replicas, to_add, added);
            size += p;
            added += p;
        }
        sizes.push((i, size));
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

/// Upstream's `GetProportion`.
fn proportion(
    d: &Deployment,
    rs: &ReplicaSet,
    status_replicas: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(d, rs, status_replicas);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream's `getReplicaSetFraction`.
fn fraction(d: &Deployment, rs: &ReplicaSet, status_replicas: i32) -> i32 {
    let replicas = d_replicas(d);
    if replicas == 0 {
        return -rs_replicas(rs);
    }
    let max = replicas + max_surge(d);
    let before = match int_annotation(rs, MAX_REPLICAS) {
        Some(v) if v != 0 => v,
        _ => status_replicas,
    };
    if before == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(max) / f64::from(before);
    size.round() as i32 - rs_replicas(rs)
}
