//! PVC protection (upstream's `pvc-protection-controller`): a PersistentVolumeClaim keeps
//! its `kubernetes.io/pvc-protection` finalizer while a scheduled pod uses it, so deleting a
//! claim under a running pod leaves it Terminating until the pod is gone, and the claim's
//! data is never released from under a container. Claims created without the finalizer
//! (before the admission plugin added it) get it.
//!
//! Keys are `namespace/claim`, queued by claim changes and by pods that may stop blocking a
//! claim (deleted, terminated, or never scheduled). Invariant: the finalizer is removed only
//! when neither the pod cache nor a live list of the namespace's pods has a user, so a pod
//! the cache has not shown yet still protects its claim.

use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const FINALIZER: &str = "kubernetes.io/pvc-protection";
pub const NAME: &str = "pvc-protection-controller";
const WORKERS: usize = 2;

pub struct PvcProtectionController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl PvcProtectionController {
    pub fn new(ctx: Context) -> PvcProtectionController {
        PvcProtectionController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let claims = self.ctx.informers.typed::<PersistentVolumeClaim>();
        let pods = self.ctx.informers.typed::<Pod>();
        claims.synced().await?;
        pods.synced().await?;
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for(NAME),
            claims: claims.store(),
            pods: pods.store(),
        });
        let mut claim_changes = claims.subscribe();
        let mut pod_changes = pods.subscribe();
        let feed = self.queue.clone();
        let feeder = async move {
            loop {
                tokio::select! {
                    Some(c) = claim_changes.next() => {
                        if let Change::Applied(pvc) = c {
                            if deletion_candidate(&pvc) || needs_finalizer(&pvc) {
                                feed.add(key(&pvc.metadata));
                            }
                        }
                    }
                    Some(c) = pod_changes.next() => {
                        let (pod, deleted) = match &c {
                            Change::Applied(p) => (p, false),
                            Change::Deleted(p) => (p, true),
                        };
                        for claim in claims_to_recheck(pod, deleted) {
                            feed.add(claim);
                        }
                    }
                    else => return,
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid(format!("{}: the informers' change feeds ended", Reconcile::NAME))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

fn has_finalizer(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// Being deleted and held by this finalizer (upstream's `IsDeletionCandidate`).
fn deletion_candidate(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata.deletion_timestamp.is_some() && has_finalizer(pvc)
}

/// Not being deleted and missing the finalizer (upstream's `NeedToAddFinalizer`).
fn needs_finalizer(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata.deletion_timestamp.is_none() && !has_finalizer(pvc)
}

/// The claims (`ns/name`) of a pod whose change may unblock them: one deleted, terminated
/// or not scheduled. A running pod's update changes nothing for its claims.
pub fn claims_to_recheck(pod: &Pod, deleted: bool) -> Vec<String> {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if !deleted && !is_terminated(pod) && scheduled {
        return Vec::new();
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(format!("{ns}/{}", c.claim_name))
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{ns}/{pod_name}-{}", v.name))
            }
        })
        .collect()
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The kubelet is done with the pod or it was force-deleted (upstream's `podIsShutDown`):
/// its generic ephemeral claim no longer holds, which breaks a cycle of a pod finalizer
/// waiting for the claim.
fn is_shut_down(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod.metadata.deletion_grace_period_seconds == Some(0)
}

/// Whether `pod` keeps `pvc` from being deleted (upstream's `podUsesPVCForDeletion`): only
/// a scheduled pod can have the volume mounted, and the kubelet does not start a pod on a
/// claim already being deleted.
pub fn pod_uses(pod: &Pod, pvc: &PersistentVolumeClaim) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if spec.node_name.as_deref().unwrap_or_default().is_empty()
        || pod.metadata.namespace != pvc.metadata.namespace
    {
        return false;
    }
    let claim = pvc.metadata.name.as_deref().unwrap_or_default();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    spec.volumes.iter().flatten().any(|v| {
        if let Some(c) = &v.persistent_volume_claim {
            return c.claim_name == claim;
        }
        // A generic ephemeral volume's claim is `<pod>-<volume>`, owned by that pod.
        v.ephemeral.is_some()
            && !is_shut_down(pod)
            && format!("{pod_name}-{}", v.name) == claim
            && super::controller_utils::controller_ref(&pvc.metadata)
                .is_some_and(|r| Some(&r.uid) == pod.metadata.uid.as_ref())
    })
}

struct Reconcile {
    client: kube::Client,
    claims: Store<PersistentVolumeClaim>,
    pods: Store<Pod>,
}

impl Reconcile {
    async fn in_use(&self, pvc: &PersistentVolumeClaim) -> Result<bool, ControllerError> {
        if self.pods.state().iter().any(|p| pod_uses(p, pvc)) {
            return Ok(true);
        }
        // The cache may not show a pod created a moment ago: ask the API before letting
        // the claim go.
        let ns = pvc.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let live = api.list(&ListParams::default()).await?;
        Ok(live.items.iter().any(|p| pod_uses(p, pvc)))
    }
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "pvc-protection";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let Some(cached) = self.claims.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        let mut pvc = (*cached).clone();
        let finalizers = pvc.metadata.finalizers.get_or_insert_with(Vec::new);
        if deletion_candidate(&cached) {
            if self.in_use(&cached).await? {
                return Ok(Action::Done);
            }
            finalizers.retain(|f| f != FINALIZER);
        } else if needs_finalizer(&cached) {
            finalizers.push(FINALIZER.to_string());
        } else {
            return Ok(Action::Done);
        }
        // A whole-object update on the version read: a conflicting write retries the key.
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        match api.replace(name, &PostParams::default(), &pvc).await {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: Option<&str>, volumes: serde_json::Value, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "pod-uid"},
            "spec": {"nodeName": node, "containers": [{"name": "c"}], "volumes": volumes},
            "status": {"phase": phase}
        }))
        .expect("pod")
    }

    fn claim(name: &str, owner_uid: Option<&str>) -> PersistentVolumeClaim {
        let owners = owner_uid.map(|u| {
            serde_json::json!([{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": u, "controller": true}])
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": owners},
            "spec": {}
        }))
        .expect("claim")
    }

    #[test]
    fn a_scheduled_pod_uses_its_claims_and_its_own_ephemeral_claim() {
        let vols = serde_json::json!([
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
        ]);
        let running = pod(Some("n1"), vols.clone(), "Running");
        assert!(pod_uses(&running, &claim("data", None)));
        assert!(!pod_uses(&running, &claim("other", None)));
        assert!(pod_uses(&running, &claim("p-scratch", Some("pod-uid"))));
        // Same name, another pod's claim.
        assert!(!pod_uses(
            &running,
            &claim("p-scratch", Some("someone-else"))
        ));
        // A finished pod still holds a claim it names (upstream), not before scheduling.
        assert!(pod_uses(
            &pod(Some("n1"), vols.clone(), "Succeeded"),
            &claim("data", None)
        ));
        assert!(!pod_uses(
            &pod(None, vols.clone(), "Pending"),
            &claim("data", None)
        ));
        // A pod the kubelet is done with lets its ephemeral claim go.
        let mut done = running.clone();
        done.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        done.metadata.deletion_grace_period_seconds = Some(0);
        assert!(!pod_uses(&done, &claim("p-scratch", Some("pod-uid"))));
    }

    #[test]
    fn only_pods_that_may_unblock_a_claim_requeue_it() {
        let vols = serde_json::json!([
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
        ]);
        let running = pod(Some("n1"), vols.clone(), "Running");
        assert!(claims_to_recheck(&running, false).is_empty());
        assert_eq!(
            claims_to_recheck(&running, true),
            ["ns/data", "ns/p-scratch"]
        );
        assert_eq!(
            claims_to_recheck(&pod(Some("n1"), vols.clone(), "Failed"), false).len(),
            2
        );
        assert_eq!(
            claims_to_recheck(&pod(None, vols, "Pending"), false).len(),
            2
        );
    }
}
