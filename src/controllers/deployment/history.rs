//! Old replica sets beyond `revisionHistoryLimit` (upstream's `cleanupDeployment`): the
//! oldest revisions go first, and only replica sets that are scaled to zero, have no
//! pods and whose spec is observed are deleted, so history never costs a running pod.

use super::sync::Sync;
use super::util::{revision_of, rs_replicas, rs_status_replicas};
use crate::controllers::ControllerError;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams};

impl Sync {
    pub(super) async fn cleanup(
        &self,
        d: &Deployment,
        old: &[ReplicaSet],
    ) -> Result<(), ControllerError> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut alive: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = alive.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        alive.sort_by(|a, b| {
            revision_of(a).cmp(&revision_of(b)).then_with(|| {
                a.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            })
        });
        for rs in alive.into_iter().take(diff as usize) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let api: Api<ReplicaSet> = Api::namespaced(
                self.client.clone(),
                rs.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let name = rs.metadata.name.as_deref().unwrap_or_default();
            tracing::debug!(
                rs = name,
                "deleting old replica set beyond the history limit"
            );
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
