//! Which PersistentVolume a claim may bind to (upstream's `FindMatchingVolume` and
//! `checkVolumeSatisfyClaim`): pure functions of the claim and the cached volumes, so the
//! rules are tested on plain values.
//!
//! Invariant: a volume pre-bound to the claim (its `claimRef` names the claim) wins over
//! every other; otherwise the smallest Available volume that satisfies the claim is chosen,
//! and none when the claim's class binds at the first consumer (the scheduler decides).

use crate::api::quantity::Quantity;
use crate::controllers::controller_utils::Selector;
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;

/// A claim's or volume's storage quantity (`requests` for a claim, `capacity` for a volume).
pub fn claim_request(c: &PersistentVolumeClaim) -> Quantity {
    requested_storage(c)
        .and_then(|q| Quantity::parse(q).ok())
        .unwrap_or_else(Quantity::zero)
}

/// The claim's storage request as written.
pub fn requested_storage(c: &PersistentVolumeClaim) -> Option<&str> {
    c.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.as_str())
}

/// The storage a claim's status says it has (`None` before it is bound).
pub fn claim_capacity(status: Option<&PersistentVolumeClaimStatus>) -> Option<Quantity> {
    status
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
}

pub fn volume_capacity(v: &PersistentVolume) -> Quantity {
    v.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or_else(Quantity::zero)
}

/// The volume a claim names (`""` for none).
pub fn claim_volume(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// Whether the claim's class binds at its first consumer.
pub fn delays_binding(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The class a claim asks for (`""` for none).
pub fn claim_class(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

pub fn volume_class(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

fn claim_mode(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

fn volume_mode(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

/// Whether the volume's `claimRef` names this claim (by namespace and name, and by uid when
/// the reference carries one).
pub fn is_bound_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == c.metadata.name
        && r.namespace == c.metadata.namespace
        && r.uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|u| Some(u) == c.metadata.uid.as_deref())
}

/// Every access mode the claim asks for is one the volume offers.
fn modes_satisfied(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let offered = v.spec.as_ref().and_then(|s| s.access_modes.as_ref());
    c.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .into_iter()
        .flatten()
        .all(|m| offered.is_some_and(|o| o.contains(m)))
}

/// Upstream's `checkVolumeSatisfyClaim`: why `v` cannot serve `c` (user-chosen volumes).
pub fn check_satisfies(v: &PersistentVolume, c: &PersistentVolumeClaim) -> Result<(), String> {
    if volume_capacity(v) < claim_request(c) {
        return Err("requested PV is too small".into());
    }
    if volume_class(v) != claim_class(c) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode(v) != claim_mode(c) {
        return Err("incompatible volumeMode".into());
    }
    if !modes_satisfied(v, c) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// The volume the binder binds `claim` to, if any (`delay_binding`: its class is
/// WaitForFirstConsumer, so only a volume already pre-bound to it qualifies: the scheduler
/// chooses the others, see [`candidates`]).
pub fn find_best_match<'v>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'v PersistentVolume>,
    delay_binding: bool,
) -> Option<&'v PersistentVolume> {
    best_match(claim, volumes, !delay_binding)
}

/// The volumes `claim` could bind to wherever its pod is placed, in the order
/// [`find_best_match`] prefers them: the one pre-bound to it first, then Available ones by
/// capacity, smallest first. The scheduler's question for a claim that waits for its first
/// consumer, asked once per pod; per node it takes the first whose node affinity allows the
/// node and that the pod's other claims have not taken.
pub fn candidates<'v, V: std::ops::Deref<Target = PersistentVolume>>(
    claim: &PersistentVolumeClaim,
    volumes: &'v [V],
) -> Vec<&'v V> {
    let wanted = Wanted::of(claim);
    let mut fits: Vec<(bool, Quantity, &V)> = volumes
        .iter()
        .filter_map(|v| match wanted.fit(claim, v, true)? {
            Fit::PreBound => Some((false, Quantity::zero(), v)),
            Fit::Available(capacity) => Some((true, capacity, v)),
        })
        .collect();
    // Stable: among equal capacities the first listed wins, as in `best_match`.
    fits.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    fits.into_iter().map(|(_, _, v)| v).collect()
}

/// What a claim asks of a volume, read once for a scan of many.
struct Wanted {
    requested: Quantity,
    selector: Option<Selector>,
}

/// How a volume fits a claim.
enum Fit {
    /// Its `claimRef` names the claim: it wins over every other.
    PreBound,
    /// Available and matching, with this capacity.
    Available(Quantity),
}

impl Wanted {
    fn of(claim: &PersistentVolumeClaim) -> Wanted {
        let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
        Wanted {
            requested: claim_request(claim),
            selector: selector.map(|s| Selector::new(Some(s))),
        }
    }

    /// How `v` fits `claim` (`None`: not at all); Available volumes only when `unbound_too`.
    fn fit(
        &self,
        claim: &PersistentVolumeClaim,
        v: &PersistentVolume,
        unbound_too: bool,
    ) -> Option<Fit> {
        let spec = v.spec.as_ref();
        if spec.and_then(|s| s.claim_ref.as_ref()).is_some() && !is_bound_to(v, claim) {
            return None;
        }
        let capacity = volume_capacity(v);
        if capacity < self.requested
            || volume_mode(v) != claim_mode(claim)
            || v.metadata.deletion_timestamp.is_some()
        {
            return None;
        }
        if is_bound_to(v, claim) {
            return Some(Fit::PreBound);
        }
        let available = v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        if !unbound_too
            || !available
            || self
                .selector
                .as_ref()
                .is_some_and(|s| !s.matches(v.metadata.labels.as_ref()))
            || volume_class(v) != claim_class(claim)
            || !modes_satisfied(v, claim)
        {
            return None;
        }
        Some(Fit::Available(capacity))
    }
}

fn best_match<'v>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'v PersistentVolume>,
    unbound_too: bool,
) -> Option<&'v PersistentVolume> {
    let wanted = Wanted::of(claim);
    let mut best: Option<(&PersistentVolume, Quantity)> = None;
    for v in volumes {
        match wanted.fit(claim, v, unbound_too) {
            None => {}
            Some(Fit::PreBound) => return Some(v),
            Some(Fit::Available(capacity)) if best.as_ref().is_none_or(|(_, q)| capacity < *q) => {
                best = Some((v, capacity));
            }
            Some(Fit::Available(_)) => {}
        }
    }
    best.map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let v = json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "hostPath": {"path": "/tmp/x"}},
            "status": {"phase": "Available"},
        });
        serde_json::from_value(crate::api::patch::merge_patch(&v, &extra)).unwrap()
    }

    fn pvc(size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let v = json!({
            "metadata": {"name": "data", "namespace": "app", "uid": "u1"},
            "spec": {"resources": {"requests": {"storage": size}},
                     "accessModes": ["ReadWriteOnce"], "storageClassName": "manual"},
        });
        serde_json::from_value(crate::api::patch::merge_patch(&v, &extra)).unwrap()
    }

    fn names(found: Option<&PersistentVolume>) -> Option<&str> {
        found.and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn the_smallest_available_volume_that_is_large_enough_wins() {
        let vols = [
            pv("big", "10Gi", json!({})),
            pv("small", "1Gi", json!({})),
            pv("fits", "2Gi", json!({})),
            pv("released", "2Gi", json!({"status": {"phase": "Released"}})),
        ];
        assert_eq!(
            names(find_best_match(&pvc("1500Mi", json!({})), &vols, false)),
            Some("fits")
        );
    }

    #[test]
    fn class_access_modes_selector_and_volume_mode_must_match() {
        let c = pvc(
            "1Gi",
            json!({"spec": {"selector": {"matchLabels": {"tier": "fast"}}}}),
        );
        let other_class = pv("a", "1Gi", json!({"spec": {"storageClassName": "other"}}));
        let read_only = pv(
            "b",
            "1Gi",
            json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
        );
        let slow = pv(
            "c",
            "1Gi",
            json!({"metadata": {"labels": {"tier": "slow"}}}),
        );
        let block = pv("d", "1Gi", json!({"spec": {"volumeMode": "Block"}}));
        for v in [&other_class, &read_only, &slow, &block] {
            assert_eq!(
                find_best_match(&c, [v], false),
                None,
                "{:?}",
                v.metadata.name
            );
        }
        let good = pv("e", "1Gi", json!({}));
        assert_eq!(names(find_best_match(&c, [&good], false)), Some("e"));
    }

    #[test]
    fn a_volume_bound_to_another_claim_is_never_chosen_and_one_prebound_always_is() {
        let c = pvc("1Gi", json!({}));
        let taken = pv(
            "taken",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "app", "name": "other"}}}),
        );
        let stale_uid = pv(
            "stale",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "app", "name": "data", "uid": "old"}}}),
        );
        assert_eq!(find_best_match(&c, [&taken, &stale_uid], false), None);
        // Pre-bound wins even in another phase and with delayed binding.
        let mine = pv(
            "mine",
            "5Gi",
            json!({"spec": {"claimRef": {"namespace": "app", "name": "data"}},
                                             "status": {"phase": "Pending"}}),
        );
        let smaller = pv("smaller", "1Gi", json!({}));
        assert_eq!(
            names(find_best_match(&c, [&smaller, &mine], false)),
            Some("mine")
        );
        assert_eq!(
            names(find_best_match(&c, [&smaller, &mine], true)),
            Some("mine")
        );
    }

    #[test]
    fn a_claim_waiting_for_its_first_consumer_binds_nothing_by_itself() {
        let c = pvc("1Gi", json!({}));
        assert_eq!(
            find_best_match(&c, [&pv("free", "1Gi", json!({}))], true),
            None
        );
    }

    #[test]
    fn a_user_chosen_volume_that_does_not_fit_says_why() {
        let c = pvc("2Gi", json!({}));
        assert_eq!(
            check_satisfies(&pv("v", "1Gi", json!({})), &c),
            Err("requested PV is too small".into())
        );
        assert_eq!(
            check_satisfies(
                &pv("v", "2Gi", json!({"spec": {"storageClassName": "x"}})),
                &c
            ),
            Err("storageClassName does not match".into())
        );
        assert!(check_satisfies(&pv("v", "2Gi", json!({})), &c).is_ok());
    }
}
