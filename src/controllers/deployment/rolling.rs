//! One step of a RollingUpdate (upstream's `rolling.go`): scale the new replica set up
//! within maxSurge, then the old ones down within maxUnavailable, unhealthy pods first.
//!
//! Invariant: available pods never drop below `replicas - maxUnavailable` through this
//! controller's scale-downs, and replica-set sizes never sum above `replicas + maxSurge`.

use super::progress::deployment_complete;
use super::sync::{Sets, Sync};
use super::util::{d_replicas, max_unavailable, new_rs_new_replicas, rs_available, rs_replicas};
use crate::controllers::{Action, ControllerError};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

impl Sync {
    pub(super) async fn rollout_rolling(
        &self,
        d: &mut Deployment,
        rs_list: Vec<ReplicaSet>,
    ) -> Result<Action, ControllerError> {
        let mut sets = self.sets(d, rs_list, true).await?;
        if self.reconcile_new(d, &mut sets).await? {
            return self.sync_rollout_status(d, &sets).await;
        }
        if self.reconcile_old(d, &mut sets).await? {
            return self.sync_rollout_status(d, &sets).await;
        }
        let status = super::progress::calculate_status(d, &sets.all(), sets.new.as_ref());
        if deployment_complete(d, &status) {
            self.cleanup(d, &sets.old).await?;
        }
        self.sync_rollout_status(d, &sets).await
    }

    /// Scales the new replica set toward `replicas` as far as maxSurge allows.
    async fn reconcile_new(
        &self,
        d: &Deployment,
        sets: &mut Sets,
    ) -> Result<bool, ControllerError> {
        let replicas = d_replicas(d);
        let Some(new_replicas) = sets.new.as_ref().map(rs_replicas) else {
            return Ok(false);
        };
        if new_replicas == replicas {
            return Ok(false);
        }
        let target = if new_replicas > replicas {
            replicas
        } else {
            new_rs_new_replicas(d, &sets.all(), new_replicas)
        };
        let Some(new) = sets.new.as_mut() else {
            return Ok(false);
        };
        self.scale_rs(d, new, target).await
    }

    /// Scales old replica sets down as far as maxUnavailable allows.
    async fn reconcile_old(
        &self,
        d: &Deployment,
        sets: &mut Sets,
    ) -> Result<bool, ControllerError> {
        let old_count: i32 = sets.old.iter().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count: i32 = sets.all().iter().map(|r| rs_replicas(r)).sum();
        let min_available = d_replicas(d) - max_unavailable(d);
        let new_unavailable = sets
            .new
            .as_ref()
            .map(|n| rs_replicas(n) - rs_available(n))
            .unwrap_or(0);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        sort_by_creation(&mut sets.old);
        let cleaned = self
            .cleanup_unhealthy(d, &mut sets.old, max_scaled_down)
            .await?;
        let scaled = self.scale_down_old(d, sets).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Removes old replica sets' unavailable replicas first, oldest set first, so they
    /// cannot block the rollout.
    async fn cleanup_unhealthy(
        &self,
        d: &Deployment,
        old: &mut [ReplicaSet],
        max_cleanup: i32,
    ) -> Result<i32, ControllerError> {
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let replicas = rs_replicas(rs);
            let down = unhealthy_to_remove(replicas, rs_available(rs), max_cleanup - total);
            if down == 0 {
                continue;
            }
            self.scale_rs(d, rs, replicas - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// Scales old replica sets down by the available pods above `replicas - maxUnavailable`.
    async fn scale_down_old(
        &self,
        d: &Deployment,
        sets: &mut Sets,
    ) -> Result<i32, ControllerError> {
        let min_available = d_replicas(d) - max_unavailable(d);
        let available: i32 = sets.all().iter().map(|r| staying_available(r)).sum();
        if available <= min_available {
            return Ok(0);
        }
        let budget = available - min_available;
        let mut total = 0;
        for rs in sets.old.iter_mut() {
            if total >= budget {
                break;
            }
            let replicas = rs_replicas(rs);
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(budget - total);
            self.scale_rs(d, rs, replicas - down).await?;
            total += down;
        }
        Ok(total)
    }
}

/// The available pods of `rs` that stay: a size just lowered leaves its status counting
/// pods about to be deleted, and counting them would let the next step scale down past
/// maxUnavailable.
pub(super) fn staying_available(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs))
}

/// How many of an old replica set's `replicas` to remove as unhealthy, at most `room`.
/// Its status can still count more available pods than a size just lowered (the pods
/// are not gone yet): that is no unhealthy pod, and never a reason to scale up.
pub(super) fn unhealthy_to_remove(replicas: i32, available: i32, room: i32) -> i32 {
    (replicas - available).min(room).max(0)
}

pub(super) fn sort_by_creation(rss: &mut [ReplicaSet]) {
    rss.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}
