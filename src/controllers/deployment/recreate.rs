//! One step of a Recreate rollout (upstream's `recreate.go`): scale every old replica set
//! to zero, wait until none of their pods is left, then scale the new one up.
//!
//! Invariant: no pod of the new template is created while an old pod still exists.

use super::progress::deployment_complete;
use super::sync::Sync;
use super::util::{d_replicas, rs_replicas, rs_status_replicas};
use crate::controllers::{Action, ControllerError};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

impl Sync {
    pub(super) async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        rs_list: Vec<ReplicaSet>,
    ) -> Result<Action, ControllerError> {
        let mut sets = self.sets(d, rs_list.clone(), false).await?;
        let mut scaled_down = false;
        for rs in sets.old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
            scaled_down |= self.scale_rs(d, rs, 0).await?;
        }
        if scaled_down {
            return self.sync_rollout_status(d, &sets).await;
        }
        if self.old_pods_running(&sets.old) {
            return self.sync_rollout_status(d, &sets).await;
        }
        if sets.new.is_none() {
            sets = self.sets(d, rs_list, true).await?;
        }
        if let Some(new) = sets.new.as_mut() {
            let replicas = d_replicas(d);
            if rs_replicas(new) != replicas {
                self.scale_rs(d, new, replicas).await?;
            }
        }
        let status = super::progress::calculate_status(d, &sets.all(), sets.new.as_ref());
        if deployment_complete(d, &status) {
            self.cleanup(d, &sets.old).await?;
        }
        self.sync_rollout_status(d, &sets).await
    }

    /// Whether any old replica set still reports or owns a pod that has not finished.
    fn old_pods_running(&self, old: &[ReplicaSet]) -> bool {
        if old.iter().map(rs_status_replicas).sum::<i32>() > 0 {
            return true;
        }
        old.iter().any(|rs| {
            self.pods_of(rs).iter().any(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Failed") | Some("Succeeded"))
            })
        })
    }
}
