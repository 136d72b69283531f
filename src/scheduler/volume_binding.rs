//! VolumeBinding's PreBind for claims that wait for their first consumer: the chosen node
//! is written on each such claim (`volume.kubernetes.io/selected-node`, which the binder and
//! the provisioner act on), and the pod is bound only once every claim is Bound, so the
//! kubelet never starts a pod whose volume does not exist yet.
//!
//! Runs in the binding task, off the scheduling loop; a claim that does not bind within
//! upstream's bind timeout fails the binding and the pod is retried.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams};
use std::time::Duration;

/// The node the first consumer of a claim was scheduled to (read by the PV binder and the
/// provisioners).
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Upstream's `--bind-timeout-seconds` default.
const BIND_TIMEOUT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(200);

fn is_bound(c: &PersistentVolumeClaim) -> bool {
    let named = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    named && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// Selects `node` for each of `claims` (namespace `ns`) and waits until all are bound.
pub async fn prebind(
    client: &kube::Client,
    ns: &str,
    claims: &[String],
    node: &str,
) -> Result<(), String> {
    if claims.is_empty() {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for name in claims {
        let c = api.get(name).await.map_err(|e| e.to_string())?;
        let selected = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_SELECTED_NODE));
        if is_bound(&c) || selected.is_some_and(|n| n == node) {
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
        for name in claims {
            if !is_bound(&api.get(name).await.map_err(|e| e.to_string())?) {
                waiting = Some(name);
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
    use super::super::framework::{delayed_claims, Lookups, UNBOUND_IMMEDIATE};
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
    use k8s_openapi::api::storage::v1::StorageClass;
    use serde_json::json;
    use std::sync::Arc;

    struct Claims;

    impl Lookups for Claims {
        fn pvc(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
            let (class, volume) = match name {
                "later" => ("local-path", ""),
                "now" => ("fast", ""),
                "bound" => ("fast", "pv-1"),
                "nowhere" => ("missing", ""),
                _ => return None,
            };
            Some(Arc::new(
                serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"storageClassName": class, "volumeName": volume}}))
                .unwrap(),
            ))
        }
        fn pv(&self, _: &str) -> Option<Arc<PersistentVolume>> {
            None
        }
        fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
            let mode = match name {
                "local-path" => "WaitForFirstConsumer",
                "fast" => "Immediate",
                _ => return None,
            };
            Some(Arc::new(
                serde_json::from_value(json!({
                "metadata": {"name": name}, "provisioner": "p", "volumeBindingMode": mode}))
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

    fn pod(claims: &[&str]) -> Pod {
        let volumes: Vec<_> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "volumes": volumes}}))
        .unwrap()
    }

    #[test]
    fn first_consumer_claims_wait_for_the_node_and_unbound_immediate_ones_block_the_pod() {
        assert_eq!(
            delayed_claims(&pod(&["bound", "later"]), &Claims),
            Ok(vec!["later".to_string()])
        );
        assert_eq!(
            delayed_claims(&pod(&["later", "now"]), &Claims),
            Err(UNBOUND_IMMEDIATE.to_string())
        );
        assert_eq!(
            delayed_claims(&pod(&["nowhere"]), &Claims),
            Err("storageclass.storage.k8s.io \"missing\" not found".to_string())
        );
    }
}
