//! VolumeBinding for claims that wait for their first consumer (a WaitForFirstConsumer
//! class), as upstream's plugin:
//! - Filter: a node fits when each such claim has an Available volume whose node affinity
//!   allows the node (a local PersistentVolume made by hand), or else its class's
//!   provisioner can make one there (not `kubernetes.io/no-provisioner`, and the class's
//!   `allowedTopologies` allow the node);
//! - PreBind, once a node is chosen: a chosen volume is pre-bound to its claim (`claimRef`,
//!   which the binder completes); a claim to provision gets the node
//!   (`volume.kubernetes.io/selected-node`, which the binder and the provisioner act on).
//!   The pod is bound only once every claim is Bound, so the kubelet never starts a pod
//!   whose volume does not exist yet.
//!
//! PreBind runs in the binding task, off the scheduling loop; a claim that does not bind
//! within upstream's bind timeout fails the binding and the pod is retried. Two pods that
//! chose one volume at once: the second pre-bind is a conflict (it is conditional on the
//! volume's resourceVersion), and that pod is retried.

use super::filters::{volume_allows_node, Rejection};
use super::framework::Lookups;
use super::labels;
use crate::controllers::persistentvolume::matching::{
    candidates, claim_class, claim_volume, delays_binding,
};
use crate::controllers::persistentvolume::ANN_BOUND_BY_CONTROLLER;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use std::sync::Arc;
use std::time::Duration;

/// The node the first consumer of a claim was scheduled to (read by the PV binder and the
/// provisioners).
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner of classes whose volumes are only made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// Why a pod with unbound claims of an Immediate class waits (PreFilter).
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// Upstream's ErrReasonBindConflict.
pub const REASON_NO_VOLUMES: &str = "node(s) didn't find available persistent volumes to bind";
/// Upstream's `--bind-timeout-seconds` default.
const BIND_TIMEOUT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(200);

/// An unbound claim of the pod whose class binds at the first consumer.
pub struct DelayedClaim {
    pub claim: Arc<PersistentVolumeClaim>,
    pub class: Arc<StorageClass>,
    /// The volumes it could bind to wherever the pod goes, best first
    /// ([`candidates`]): Filter only checks them against the node.
    pub candidates: Vec<Arc<PersistentVolume>>,
}

/// The pod's delayed claims.
#[derive(Default)]
pub struct Delayed {
    pub claims: Vec<DelayedClaim>,
}

/// PreFilter: the pod's unbound claims whose class binds at the first consumer, with the
/// volumes each could bind to; an unbound claim of any other class makes the pod wait for
/// the binder.
pub fn delayed_claims(pod: &Pod, lookups: &dyn Lookups) -> Result<Delayed, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = Delayed::default();
    let mut volumes = None;
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(claim) = &v.persistent_volume_claim else {
            continue;
        };
        let Some(pvc) = lookups.pvc(ns, &claim.claim_name) else {
            continue;
        };
        if !claim_volume(&pvc).is_empty() {
            continue;
        }
        let class_name = claim_class(&pvc);
        if class_name.is_empty() {
            return Err(UNBOUND_IMMEDIATE.into());
        }
        let class = lookups
            .storage_class(class_name)
            .ok_or_else(|| format!("storageclass.storage.k8s.io \"{class_name}\" not found"))?;
        if !delays_binding(Some(&class)) {
            return Err(UNBOUND_IMMEDIATE.into());
        }
        let volumes = volumes.get_or_insert_with(|| lookups.pvs());
        let candidates = candidates(&pvc, volumes).into_iter().cloned().collect();
        out.claims.push(DelayedClaim {
            claim: pvc,
            class,
            candidates,
        });
    }
    Ok(out)
}

impl Delayed {
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// Filter, for `node`: per claim, the volume it would bind to, or `None` where its
    /// class's provisioner makes one; refused if a claim has neither. One volume serves
    /// one claim.
    pub fn find_volumes(
        &self,
        node: &Node,
    ) -> Result<Vec<Option<&Arc<PersistentVolume>>>, Rejection> {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let node_labels = labels::labels_of_node(node);
        let mut chosen: Vec<Option<&Arc<PersistentVolume>>> = Vec::new();
        for d in &self.claims {
            let taken = |v: &PersistentVolume| {
                chosen
                    .iter()
                    .flatten()
                    .any(|c| c.metadata.name == v.metadata.name)
            };
            let found = d
                .candidates
                .iter()
                .find(|v| volume_allows_node(v, name, node_labels) && !taken(v));
            match found {
                Some(v) => chosen.push(Some(v)),
                None if can_provision(&d.class, node_labels) => chosen.push(None),
                None => return Err(Rejection::unresolvable(REASON_NO_VOLUMES)),
            }
        }
        Ok(chosen)
    }
}

/// Whether `class`'s provisioner can make a volume on a node with `node_labels`: it is a
/// real provisioner and the class's `allowedTopologies` (any term, every expression of it)
/// allow the node.
fn can_provision(class: &StorageClass, node_labels: &labels::Labels) -> bool {
    if class.provisioner == NO_PROVISIONER {
        return false;
    }
    let terms = class.allowed_topologies.as_deref().unwrap_or_default();
    terms.is_empty()
        || terms.iter().any(|t| {
            t.match_label_expressions.iter().flatten().all(|e| {
                node_labels
                    .get(&e.key)
                    .is_some_and(|v| e.values.contains(v))
            })
        })
}

/// What PreBind does for one claim on the chosen node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimBinding {
    pub claim: String,
    /// The volume to pre-bind it to (name, resourceVersion seen), or `None`: provision it
    /// on the node.
    pub volume: Option<(String, String)>,
}

impl Delayed {
    /// The PreBind steps on `node` (Filter's choices for it).
    pub fn bindings(&self, node: &Node) -> Result<Vec<ClaimBinding>, Rejection> {
        let volumes = self.find_volumes(node)?;
        Ok(self
            .claims
            .iter()
            .zip(volumes)
            .map(|(d, v)| ClaimBinding {
                claim: d.claim.metadata.name.clone().unwrap_or_default(),
                volume: v.map(|v| {
                    (
                        v.metadata.name.clone().unwrap_or_default(),
                        v.metadata.resource_version.clone().unwrap_or_default(),
                    )
                }),
            })
            .collect())
    }
}

fn is_bound(c: &PersistentVolumeClaim) -> bool {
    !claim_volume(c).is_empty()
        && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// Carries out `claims` (namespace `ns`) for `node` and waits until all are bound.
pub async fn prebind(
    client: &kube::Client,
    ns: &str,
    claims: &[ClaimBinding],
    node: &str,
) -> Result<(), String> {
    if claims.is_empty() {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for b in claims {
        let name = &b.claim;
        let c = api.get(name).await.map_err(|e| e.to_string())?;
        if is_bound(&c) {
            continue;
        }
        if let Some((volume, rv)) = &b.volume {
            // Conditional on the volume as the cycle saw it: another claim may have taken it.
            let patch = serde_json::json!({
                "metadata": {
                    "resourceVersion": rv,
                    "annotations": {ANN_BOUND_BY_CONTROLLER: "yes"},
                },
                "spec": {"claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "namespace": ns,
                    "name": name,
                    "uid": c.metadata.uid,
                    "resourceVersion": c.metadata.resource_version,
                }},
            });
            volumes
                .patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| format!("binding volume {volume} to claim {name}: {e}"))?;
            continue;
        }
        let selected = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_SELECTED_NODE));
        if selected.is_some_and(|n| n == node) {
            continue;
        }
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": c.metadata.resource_version,
            "annotations": {ANN_SELECTED_NODE: node}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("selecting node {node} for claim {name}: {e}"))?;
    }
    let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
    loop {
        let mut waiting = None;
        for b in claims {
            if !is_bound(&api.get(&b.claim).await.map_err(|e| e.to_string())?) {
                waiting = Some(&b.claim);
                break;
            }
        }
        let Some(name) = waiting else { return Ok(()) };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "binding volumes: claim {ns}/{name} was not bound within {}s",
                BIND_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Claims: `later`, `later2`, `small` (local-path, WaitForFirstConsumer), `manual`
    /// (a class without provisioner), `zoned` (a class allowed only in zone a), `now`
    /// (Immediate), `bound`, `nowhere` (missing class).
    struct World {
        volumes: Vec<Arc<PersistentVolume>>,
    }

    impl Lookups for World {
        fn pvc(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
            let (class, volume, size) = match name {
                "later" | "later2" => ("local-path", "", "1Gi"),
                "manual" | "manual2" => ("manual", "", "1Gi"),
                "zoned" => ("zoned", "", "1Gi"),
                "now" => ("fast", "", "1Gi"),
                "bound" => ("fast", "pv-1", "1Gi"),
                "nowhere" => ("missing", "", "1Gi"),
                _ => return None,
            };
            Some(Arc::new(
                serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
                "spec": {"storageClassName": class, "volumeName": volume,
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": size}}}}))
                .unwrap(),
            ))
        }
        fn pv(&self, _: &str) -> Option<Arc<PersistentVolume>> {
            None
        }
        fn pvs(&self) -> Vec<Arc<PersistentVolume>> {
            self.volumes.clone()
        }
        fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
            let (mode, provisioner, topologies) = match name {
                "local-path" => ("WaitForFirstConsumer", "rancher.io/local-path", json!(null)),
                "manual" => ("WaitForFirstConsumer", NO_PROVISIONER, json!(null)),
                "zoned" => (
                    "WaitForFirstConsumer",
                    "example.com/disk",
                    json!([{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}]),
                ),
                "fast" => ("Immediate", "p", json!(null)),
                _ => return None,
            };
            Some(Arc::new(
                serde_json::from_value(json!({
                "metadata": {"name": name}, "provisioner": provisioner,
                "volumeBindingMode": mode, "allowedTopologies": topologies}))
                .unwrap(),
            ))
        }
        fn namespace_labels(&self, _: &str) -> Option<super::super::labels::Labels> {
            None
        }
        fn owner_selector(
            &self,
            _: &Pod,
        ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
            None
        }
    }

    /// A hand-made local volume of class `manual` on node `on`.
    fn local_pv(name: &str, size: &str, on: &str) -> Arc<PersistentVolume> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "resourceVersion": "7"},
                "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                         "storageClassName": "manual", "local": {"path": "/mnt/disk"},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "kubernetes.io/hostname", "operator": "In", "values": [on]}]}]}}},
                "status": {"phase": "Available"}}))
            .unwrap(),
        )
    }

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name, "zone": zone}}}))
        .unwrap()
    }

    fn pod(claims: &[&str]) -> Pod {
        let volumes: Vec<_> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "volumes": volumes}}))
        .unwrap()
    }

    /// PreBind's steps for `pod` on `node`, as a cycle that chose `node` has them.
    fn plan(pod: &Pod, node: &Node, w: &World) -> Result<Vec<ClaimBinding>, Rejection> {
        delayed_claims(pod, w)
            .map_err(Rejection::unresolvable)?
            .bindings(node)
    }

    fn names(d: Result<Delayed, String>) -> Result<Vec<String>, String> {
        d.map(|d| {
            d.claims
                .iter()
                .map(|c| c.claim.metadata.name.clone().unwrap())
                .collect()
        })
    }

    #[test]
    fn first_consumer_claims_wait_for_the_node_and_unbound_immediate_ones_block_the_pod() {
        let w = World { volumes: vec![] };
        assert_eq!(
            names(delayed_claims(&pod(&["bound", "later"]), &w)),
            Ok(vec!["later".to_string()])
        );
        assert_eq!(
            names(delayed_claims(&pod(&["later", "now"]), &w)),
            Err(UNBOUND_IMMEDIATE.to_string())
        );
        assert_eq!(
            names(delayed_claims(&pod(&["nowhere"]), &w)),
            Err("storageclass.storage.k8s.io \"missing\" not found".to_string())
        );
    }

    #[test]
    fn a_claim_without_provisioner_fits_only_nodes_with_an_available_local_volume() {
        let w = World {
            volumes: vec![
                local_pv("on-b", "5Gi", "b"),
                local_pv("on-b-small", "1Gi", "b"),
            ],
        };
        let d = delayed_claims(&pod(&["manual"]), &w).unwrap();
        assert_eq!(
            d.find_volumes(&node("a", "a")).unwrap_err().reasons,
            [REASON_NO_VOLUMES]
        );
        // The smallest volume that is large enough, as the binder would choose.
        let chosen = d.find_volumes(&node("b", "a")).unwrap();
        assert_eq!(
            chosen[0].unwrap().metadata.name.as_deref(),
            Some("on-b-small")
        );
        assert_eq!(
            plan(&pod(&["manual"]), &node("b", "a"), &w).unwrap(),
            [ClaimBinding {
                claim: "manual".into(),
                volume: Some(("on-b-small".into(), "7".into())),
            }]
        );
        // Two claims never share a volume: a third claim finds none left on b.
        let d = delayed_claims(&pod(&["manual", "manual2"]), &w).unwrap();
        let chosen = d.find_volumes(&node("b", "a")).unwrap();
        let got: Vec<_> = chosen
            .iter()
            .map(|v| v.unwrap().metadata.name.clone().unwrap())
            .collect();
        assert_eq!(got, ["on-b-small", "on-b"]);
        let w1 = World {
            volumes: vec![local_pv("on-b", "5Gi", "b")],
        };
        let d = delayed_claims(&pod(&["manual", "manual2"]), &w1).unwrap();
        assert!(d.find_volumes(&node("b", "a")).is_err());
    }

    #[test]
    fn a_provisioned_class_fits_where_its_topologies_allow() {
        let w = World { volumes: vec![] };
        let d = delayed_claims(&pod(&["later", "zoned"]), &w).unwrap();
        assert_eq!(d.find_volumes(&node("a", "a")).unwrap(), [None, None]);
        assert_eq!(
            d.find_volumes(&node("b", "b")).unwrap_err().reasons,
            [REASON_NO_VOLUMES]
        );
        assert!(plan(&pod(&["manual"]), &node("a", "a"), &w).is_err());
        assert_eq!(
            plan(&pod(&["later"]), &node("a", "a"), &w).unwrap(),
            [ClaimBinding {
                claim: "later".into(),
                volume: None,
            }]
        );
    }
}
