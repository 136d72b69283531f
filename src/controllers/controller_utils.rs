//! What the workload controllers share (upstream's `controller_utils.go` and
//! `controller_ref_manager.go`): label-selector matching of typed selectors, controller
//! references, the claim decision (adopt orphans the selector matches, release owned objects
//! it no longer matches), the adoption/release patches, pod readiness and availability, and
//! slow-start batching of creations.
//!
//! Invariant: adoption and release are strategic-merge patches of `ownerReferences` carrying
//! the object's `uid` as a precondition, so a patch never lands on a recreated namesake.

use crate::api::selector::LabelSelector as Parsed;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::future::Future;

/// Largest number of creations or deletions one sync issues (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// `namespace/name`, the work-queue key of a namespaced object.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The key of the `kind` (apps/v1) controlling `meta`, if one does.
pub fn owner_key(meta: &ObjectMeta, kind: &str) -> Option<String> {
    let r = controller_ref(meta)?;
    (r.kind == kind && r.api_version == "apps/v1").then(|| {
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            r.name
        )
    })
}

/// The keys of the `kind` (apps/v1) objects a pod change concerns: its controller's, or for
/// an orphan those in its namespace whose selector matches it (each may adopt it). A pod
/// controlled by something else concerns none.
pub fn pod_owner_keys<T>(
    pod: &ObjectMeta,
    kind: &str,
    owners: impl FnOnce() -> Vec<std::sync::Arc<T>>,
    meta: impl Fn(&T) -> &ObjectMeta,
    selector: impl Fn(&T) -> Option<&LabelSelector>,
) -> Vec<String> {
    if let Some(k) = owner_key(pod, kind) {
        return vec![k];
    }
    if controller_ref(pod).is_some() {
        return Vec::new();
    }
    owners()
        .into_iter()
        .filter(|o| {
            let m = meta(o);
            m.namespace == pod.namespace && Selector::new(selector(o)).matches(pod.labels.as_ref())
        })
        .map(|o| key_of(meta(&o)))
        .collect()
}

/// A typed selector parsed once; an invalid selector matches nothing.
pub struct Selector(Parsed);

impl Selector {
    pub fn new(sel: Option<&LabelSelector>) -> Selector {
        let parsed = sel
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| Parsed::from_json(&v).ok())
            .unwrap_or_else(Parsed::nothing);
        Selector(parsed)
    }

    /// A selector already parsed from its string form (a scale subresource's
    /// `status.selector`).
    pub fn parsed(sel: Parsed) -> Selector {
        Selector(sel)
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.0.matches_map(labels)
    }

    /// The empty selector `{}` (selects everything; workloads refuse it).
    pub fn is_everything(&self) -> bool {
        self.0.is_empty()
    }
}

/// A protection finalizer's next list for an object (upstream's pv-, pvc- and
/// vac-protection): without `finalizer` once the object is being deleted and no longer
/// `needed`, with it while it is not being deleted; `None` when the list is already right.
pub fn protection_finalizers(
    meta: &ObjectMeta,
    finalizer: &str,
    needed: bool,
) -> Option<Vec<String>> {
    let current = meta.finalizers.clone().unwrap_or_default();
    let has = current.iter().any(|f| f == finalizer);
    match (meta.deletion_timestamp.is_some(), has) {
        (true, true) if !needed => Some(current.into_iter().filter(|f| f != finalizer).collect()),
        (false, false) => Some(current.into_iter().chain([finalizer.to_string()]).collect()),
        _ => None,
    }
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The controller reference a workload puts on what it creates or adopts.
pub fn new_controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller does with one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Owned and selected.
    Keep,
    /// Orphan the selector matches: becomes owned.
    Adopt,
    /// Owned but no longer selected: the controller reference is removed.
    Release,
    /// Someone else's, or not ours to touch now.
    Ignore,
}

/// Upstream's `ClaimObject` decision for `obj` and an owner with `owner_uid`.
pub fn claim(owner_uid: &str, owner_deleting: bool, obj: &ObjectMeta, selected: bool) -> Claim {
    match controller_ref(obj) {
        Some(r) if r.uid == owner_uid => {
            if selected {
                Claim::Keep
            } else if owner_deleting {
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None => {
            if !selected || owner_deleting || obj.deletion_timestamp.is_some() {
                Claim::Ignore
            } else {
                Claim::Adopt
            }
        }
    }
}

/// The strategic-merge patch that makes `owner` the controller of the object with `uid`.
pub fn adopt_patch(owner: &OwnerReference, uid: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"ownerReferences": [owner], "uid": uid}})
}

/// The strategic-merge patch that removes `owner_uid`'s reference from the object with `uid`.
pub fn release_patch(owner_uid: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
        "uid": uid,
    }})
}

/// Running or pending, not being deleted (upstream's `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted but not finished (upstream's `IsPodTerminating`).
pub fn is_pod_terminating(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_some()
}

/// When the pod's Ready condition last became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => {
            let ready_for = now.as_second() - t.as_second();
            ready_for >= i64::from(min_ready_seconds)
        }
    }
}

/// The most calls of one [`slow_start_batch`] in flight at once. Upstream's controllers
/// reach the same bound through their clients' rate limits; without it a batch of 256 pod
/// creates queued each create behind the others (server-side p50 124 ms, p99 564 ms under
/// `bench.sh scale`) for no more throughput, the server's CPU being the limit.
pub const BATCH_IN_FLIGHT: usize = 16;

/// Runs `count` calls of `f` in batches of 1, 2, 4, ... (upstream's `slowStartBatch`): a
/// batch runs concurrently (at most [`BATCH_IN_FLIGHT`] calls at once); after a batch with
/// a failure no more batches start, so a systematic failure (quota, admission) costs one
/// request, not `count`. Returns the number of successes and the first error.
pub async fn slow_start_batch<F, Fut, E>(count: usize, f: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    use futures::StreamExt;
    let mut remaining = count;
    let mut batch = 1usize.min(count);
    let mut successes = 0;
    while batch > 0 {
        let results: Vec<Result<(), E>> = futures::stream::iter((0..batch).map(|_| f()))
            .buffer_unordered(BATCH_IN_FLIGHT)
            .collect()
            .await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = (batch * 2).min(remaining);
    }
    (successes, None)
}

/// The API's Status code of a failed request, if the API answered.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Writes `obj` (as cached, its status replaced) as a whole-status update: upstream's
/// `UpdateStatus`, which the controllers' roles allow; the cached resourceVersion makes a
/// stale write conflict. An object gone meanwhile is no error.
pub async fn update_status<K>(client: &kube::Client, obj: &K) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let meta = obj.meta();
    let api: kube::Api<K> = kube::Api::namespaced(
        client.clone(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    let name = meta.name.as_deref().unwrap_or_default();
    match api
        .replace_status(name, &kube::api::PostParams::default(), obj)
        .await
    {
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// Writes `cached` (a cluster-scoped object) with `finalizers` as a whole-object update on
/// the version read, so a conflicting write fails and the caller's key is retried; an
/// object gone meanwhile is no error. The write of the pv- and vac-protection controllers.
pub async fn replace_finalizers<K>(
    client: &kube::Client,
    cached: &K,
    finalizers: Vec<String>,
) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut obj = cached.clone();
    obj.meta_mut().finalizers = Some(finalizers);
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: kube::Api<K> = kube::Api::all(client.clone());
    match api
        .replace(&name, &kube::api::PostParams::default(), &obj)
        .await
    {
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// `value` as a count of `total`: an int as is, `"N%"` scaled, rounded up when `round_up`
/// (upstream's `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let scaled = pct * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(v).map_err(|_| format!("scaled value of {s:?} out of range"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn meta_owned_by(uid: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            owner_references: uid.map(|u| {
                vec![OwnerReference {
                    uid: u.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn orphans_the_selector_matches_are_adopted_and_owned_mismatches_released() {
        assert_eq!(claim("a", false, &meta_owned_by(None), true), Claim::Adopt);
        assert_eq!(
            claim("a", false, &meta_owned_by(None), false),
            Claim::Ignore
        );
        assert_eq!(
            claim("a", false, &meta_owned_by(Some("a")), true),
            Claim::Keep
        );
        assert_eq!(
            claim("a", false, &meta_owned_by(Some("a")), false),
            Claim::Release
        );
        assert_eq!(
            claim("a", true, &meta_owned_by(Some("a")), false),
            Claim::Ignore
        );
        assert_eq!(claim("a", true, &meta_owned_by(None), true), Claim::Ignore);
        assert_eq!(
            claim("a", false, &meta_owned_by(Some("b")), true),
            Claim::Ignore
        );
    }

    #[tokio::test]
    async fn slow_start_batches_double_and_stop_after_a_failing_batch() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        })
        .await;
        assert_eq!((ok, err), (10, None));
        assert_eq!(calls.load(Ordering::SeqCst), 10);

        // Batches 1, 2, 4: the 5th call fails, so the batch of 4 finishes and nothing more.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(20, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n == 4 {
                Err("quota")
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(ok, 6);
        assert_eq!(err, Some("quota"));
        assert_eq!(calls.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn a_batch_has_at_most_batch_in_flight_calls_at_once() {
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (ok, err) = slow_start_batch(100, || async {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            tokio::task::yield_now().await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        })
        .await;
        assert_eq!((ok, err), (100, None));
        assert_eq!(most.load(Ordering::SeqCst), BATCH_IN_FLIGHT);
    }

    #[test]
    fn selectors_match_typed_labels_and_a_missing_selector_matches_nothing() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        };
        let s = Selector::new(Some(&sel));
        let labels: BTreeMap<String, String> =
            [("app".into(), "web".into()), ("x".into(), "y".into())].into();
        assert!(s.matches(Some(&labels)));
        assert!(!s.matches(None));
        assert!(!Selector::new(None).matches(Some(&labels)));
        assert!(Selector::new(Some(&LabelSelector::default())).is_everything());
    }
}
