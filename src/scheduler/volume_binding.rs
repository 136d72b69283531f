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
