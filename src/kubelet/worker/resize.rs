//! The worker's part of in-place resize ([`crate::kubelet::resize`]): keeping the pod's
//! allocation, admitting a changed spec against the node, and applying it to the running
//! containers.

use super::*;
use crate::kubelet::resize::{self, Allocation};
use crate::runtime::containers::Resources;

/// The larger of two settings, for the pod cgroup while its containers change: `None` (no
/// write, the cgroup keeps its value) when either side is unbounded.
fn loosest(a: &Resources, b: &Resources) -> Resources {
    let max = |x: Option<i64>, y: Option<i64>| x.zip(y).map(|(x, y)| x.max(y));
    Resources {
        memory_limit_bytes: max(a.memory_limit_bytes, b.memory_limit_bytes),
        cpu_quota_us: max(a.cpu_quota_us, b.cpu_quota_us),
        cpu_period_us: b.cpu_period_us,
        cpu_shares: a.cpu_shares.zip(b.cpu_shares).map(|(x, y)| x.max(y)),
        pids_limit: b.pids_limit,
    }
}

impl Worker {
    /// Records the pod's admitted requests for the node, and the Burstable class's shares.
    async fn admitted(&self, pod: &Pod) {
        self.ctx
            .allocations
            .set(&self.uid, resize::Admitted::of(pod));
        // Also after a resize's admission recorded the new requests: cheap when unchanged.
        resize::sync_burstable_class(&self.ctx.allocations, self.ctx.cri.as_ref()).await;
    }

    /// The allocation, loaded from the pod's checkpoint (or taken from the spec, for a pod
    /// this node starts now) on first use.
    pub(super) fn allocation(&mut self) -> &Allocation {
        if self.allocation.is_none() {
            let dir = self.pod_dir();
            let a = resize::load(&dir).unwrap_or_else(|| {
                let a = resize::desired(&self.pod);
                if let Err(e) = resize::save(&dir, &a) {
                    tracing::warn!(error = %e, "checkpointing the pod's allocation failed");
                }
                a
            });
            self.allocation = Some(a);
        }
        self.allocation.get_or_insert_with(Allocation::new)
    }

    pub(super) fn allocated_pod(&mut self) -> Pod {
        let a = self.allocation().clone();
        resize::allocated_pod(&self.pod, &a)
    }

    pub(super) fn allocated_container(&mut self, c: &Container) -> Container {
        let mut c = c.clone();
        if let Some(r) = self.allocation().get(&c.name) {
            c.resources = Some(r.clone());
        }
        c
    }

    /// Admits and applies a changed spec (see the module docs); records what is pending or
    /// failed for the status.
    pub(super) async fn sync_resize(&mut self, view: &RuntimePod) {
        let pod = self.pod.clone();
        let desired = resize::desired(&pod);
        if *self.allocation() == desired {
            // The common case on every pass: nothing to resize, the spec is the allocation.
            self.resize_unfinished = None;
            self.admitted(&pod).await;
            return;
        }
        let current = self.allocation().clone();
        let generation = pod.metadata.generation.unwrap_or(0);
        let old_pod = resize::allocated_pod(&pod, &current);
        let allocatable = (
            self.ctx.node_fields.node_cpu_milli,
            self.ctx.node_fields.node_memory_bytes,
        );
        let wanted = resize::Admitted::of(&pod);
        if let Err((reason, msg)) =
            self.ctx
                .allocations
                .admit_resize(&self.uid, wanted, allocatable)
        {
            let known = self
                .resize_unfinished
                .as_ref()
                .is_some_and(|(_, r, m)| *r == reason && *m == msg);
            if !known {
                let event = if reason == resize::INFEASIBLE {
                    "ResizeInfeasible"
                } else {
                    "ResizeDeferred"
                };
                let text = resize::event_message(
                    &format!("Pod resize {reason}"),
                    &pod,
                    generation,
                    Some(&msg),
                );
                self.event(None, events::WARNING, event, text);
            }
            self.resize_unfinished = Some((resize::PENDING, reason, msg));
            self.admitted(&old_pod).await;
            return;
        }
        // A retry after an error says nothing new until the error changes.
        let retrying = self
            .resize_unfinished
            .as_ref()
            .is_some_and(|(t, _, _)| *t == resize::IN_PROGRESS);
        if !retrying {
            self.event(
                None,
                events::NORMAL,
                "ResizeStarted",
                resize::event_message("Pod resize started", &pod, generation, None),
            );
        }
        match self
            .apply_resize(view, &old_pod, &pod, &current, &desired)
            .await
        {
            Ok(()) => {
                if let Err(e) = resize::save(&self.pod_dir(), &desired) {
                    tracing::warn!(error = %e, "checkpointing the pod's allocation failed");
                }
                self.allocation = Some(desired);
                self.resize_unfinished = None;
                self.admitted(&pod).await;
                self.event(
                    None,
                    events::NORMAL,
                    "ResizeCompleted",
                    resize::event_message("Pod resize completed", &pod, generation, None),
                );
            }
            Err(e) => {
                let known = self
                    .resize_unfinished
                    .as_ref()
                    .is_some_and(|(_, _, m)| *m == e);
                if !known {
                    tracing::warn!(pod = %pod_name(&pod), error = %e, "resize failed");
                    let text =
                        resize::event_message("Pod resize error", &pod, generation, Some(&e));
                    self.event(None, events::WARNING, "ResizeError", text);
                }
                self.resize_unfinished = Some((resize::IN_PROGRESS, resize::ERROR, e));
            }
        }
    }

    /// Writes the new limits: the pod cgroup loosened to cover both, each changed running
    /// container (or, for `RestartContainer`, the container stopped first, to be started
    /// again by the next pass whatever the restart policy), then the pod cgroup at its new
    /// values, which no stopped container can be over any more.
    async fn apply_resize(
        &mut self,
        view: &RuntimePod,
        old_pod: &Pod,
        new_pod: &Pod,
        current: &Allocation,
        desired: &Allocation,
    ) -> Result<(), String> {
        use crate::kubelet::resources::{container_resources, pod_cgroup};
        let (old_cg, new_cg) = (pod_cgroup(old_pod), pod_cgroup(new_pod));
        if let (Some(o), Some(n)) = (&old_cg, &new_cg) {
            self.ctx
                .cri
                .ensure_pod_cgroup(&n.path, loosest(&o.resources, &n.resources))
                .await
                .map_err(|e| e.to_string())?;
        }
        let spec = new_pod.spec.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            let (Some(old), Some(new)) = (current.get(&c.name), desired.get(&c.name)) else {
                continue;
            };
            if old == new {
                continue;
            }
            // Not running: its next instance is created with the new allocation.
            let Some(running) = view
                .get(&c.name)
                .and_then(|v| v.first())
                .filter(|s| s.status == Status::Running)
            else {
                continue;
            };
            if resize::needs_restart(c, old, new) {
                let name = c.name.clone();
                self.event(
                    Some(&name),
                    events::NORMAL,
                    "Killing",
                    format!("Container {name} resize requires restart"),
                );
                self.resize_restarts.insert(name);
                let _ = self.ctx.cri.stop_container(&running.id, self.grace()).await;
                continue;
            }
            self.ctx
                .cri
                .update_container_resources(
                    new_cg.as_ref().map(|g| g.path.as_str()),
                    &running.id,
                    container_resources(c),
                )
                .await
                .map_err(|e| format!("updating container {}: {e}", c.name))?;
        }
        if let Some(n) = &new_cg {
            self.ctx
                .cri
                .ensure_pod_cgroup(&n.path, n.resources.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
