//! Stopping: termination messages of exited instances, preStop + stop signal + SIGKILL
//! after the grace period, the final delete of the pod object, and the removal of
//! everything a pod had on the node.

use super::*;

impl Worker {
    /// Reads the terminationMessagePath file of each newly exited instance (and, with
    /// FallbackToLogsOnError, the log tail of a failed one with an empty file).
    pub(super) fn read_termination_messages(&mut self, view: &RuntimePod) {
        for (name, v) in view {
            for s in v
                .iter()
                .filter(|s| matches!(s.status, Status::Stopped | Status::Unknown))
            {
                if self.messages.contains_key(&s.id) {
                    continue;
                }
                let restart = labels::container_ref(&s.labels)
                    .map(|r| r.restart_count)
                    .unwrap_or(0);
                let file = self
                    .pod_dir()
                    .join("containers")
                    .join(name)
                    .join(format!("{restart}.term"));
                let mut msg = read_capped(&file, MAX_MESSAGE);
                let fallback = self
                    .spec_of(name)
                    .and_then(|(c, _)| c.termination_message_policy)
                    .is_some_and(|p| p == "FallbackToLogsOnError");
                if msg.is_empty() && fallback && s.exit_code.unwrap_or(0) != 0 {
                    msg = log_tail(&s.log_path, FALLBACK_LINES, FALLBACK_BYTES);
                }
                self.messages.insert(s.id.clone(), msg);
            }
        }
    }

    /// Stops every running container within `grace`: ephemeral, regular and init
    /// containers first, all at once; sidecars (restartable init containers) after them,
    /// in reverse order, so a preStop hook can still reach a sidecar that serves it (as
    /// upstream, each sidecar gets at least 2 s).
    pub(super) async fn stop_all(&mut self, view: &RuntimePod, grace: Duration) {
        let started = Instant::now();
        let sidecars: Vec<String> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter(|c| status::is_sidecar(c))
            .map(|c| c.name.clone())
            .collect();
        let first: Vec<_> = view
            .keys()
            .filter(|n| !sidecars.contains(n))
            .filter_map(|n| self.stop_one(view, n, grace))
            .collect();
        futures::future::join_all(first).await;
        for name in sidecars.iter().rev() {
            let left = grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(2));
            if let Some(stop) = self.stop_one(view, name, left) {
                stop.await;
            }
        }
    }

    /// preStop hook, stop signal and SIGKILL after `grace` for container `name`, if it runs.
    fn stop_one(
        &self,
        view: &RuntimePod,
        name: &str,
        grace: Duration,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let s = view
            .get(name)?
            .first()
            .filter(|s| matches!(s.status, Status::Running | Status::Created))?;
        let c = self.spec_of(name).map(|(c, _)| c);
        let (cri, id, rec, obj, name) = (
            self.ctx.cri.clone(),
            s.id.clone(),
            self.ctx.recorder.clone(),
            events::container_ref(&self.pod, name),
            name.to_owned(),
        );
        let pod_ip = self.pod_ips().first().cloned();
        Some(async move {
            let started = Instant::now();
            if let Some(h) = c
                .as_ref()
                .and_then(|c| c.lifecycle.as_ref())
                .and_then(|l| l.pre_stop.as_ref())
                .and_then(probes::hook_handler)
            {
                let ports = c.as_ref().map(ports_of).unwrap_or_default();
                let t = probes::Target {
                    cri: cri.as_ref(),
                    container_id: &id,
                    pod_ip,
                    ports: &ports,
                };
                match tokio::time::timeout(
                    grace,
                    probes::run(&h, &t, grace.max(Duration::from_secs(1))),
                )
                .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(msg)) => rec.event(
                        obj.clone(),
                        events::WARNING,
                        "FailedPreStopHook",
                        format!("PreStopHook failed: {msg}"),
                    ),
                    Err(_) => {}
                }
            }
            rec.event(
                obj,
                events::NORMAL,
                "Killing",
                format!("Stopping container {name}"),
            );
            // The hook's time comes out of the grace period, as upstream.
            let left = grace.saturating_sub(started.elapsed());
            let _ = cri.stop_container(&id, left).await;
        })
    }

    /// Once none of its containers runs, a pod that will not run again gives back what it
    /// holds on the node, as upstream's kubelet does once it has killed a pod (whether its
    /// object is being deleted or it is terminal): its requests and host ports for
    /// admission, its address and host-port mappings (the network), and its image volumes
    /// (which keep their images from garbage collection). The status keeps the pod's
    /// addresses. While a container still runs (its stop failed) nothing is given back and
    /// this says `false`: the caller stops again a little later.
    pub(super) async fn release(&mut self) -> bool {
        // Nothing of a released pod runs again: no need to ask the runtime every resync.
        if self.released {
            return true;
        }
        if any_running(&self.ctx, std::slice::from_ref(&self.uid)).await {
            tracing::warn!(pod = %pod_name(&self.pod), "a container may still run after its stop; trying again");
            return false;
        }
        // The network first: a host port goes back to admission only once the NAT rules
        // no longer send it to this pod.
        if let Err(e) = self.ctx.network.teardown(&self.uid).await {
            tracing::warn!(pod = %pod_name(&self.pod), error = %e, "tearing down the pod network failed");
            return false;
        }
        self.ctx.allocations.remove(&self.uid);
        crate::kubelet::resize::sync_burstable_class(&self.ctx.allocations, self.ctx.cri.as_ref())
            .await;
        // Sub-path pins may reach into image volumes: they go first, and while one stays
        // the image volumes stay mounted (their images in use).
        if volumes::unpin_sub_paths(&self.pod_dir()) {
            unmount_image_volumes(&self.ctx, &self.uid).await;
            self.image_volumes.clear();
        } else {
            tracing::warn!(pod = %pod_name(&self.pod), "a pinned sub path stays mounted; image volumes are kept");
        }
        self.released = true;
        true
    }

    /// Graceful deletion: preStop + stop signal + SIGKILL after the grace period, final
    /// status, then the pod object goes (grace 0) and the worker cleans up on its removal.
    pub(super) async fn terminate_and_delete(&mut self) -> Next {
        let view = self.view().await;
        self.stop_all(&view, self.grace()).await;
        let view = self.view().await;
        // Stopped, it no longer holds its requests, host ports or address: upstream admits
        // new pods against active pods only, not ones whose deletion the API has yet to
        // finish. Not stopped, it keeps them, and its object stays.
        if !self.release().await {
            return Next::After(STOP_RETRY);
        }
        self.write_status(&view, true).await;
        if !self.deleted_sent {
            match self.api.delete_pod(&self.pod).await {
                Ok(()) => self.deleted_sent = true,
                Err(e) => {
                    tracing::warn!(pod = %pod_name(&self.pod), error = %e, "deleting the pod failed");
                    return Next::After(Duration::from_secs(1));
                }
            }
        }
        Next::After(Duration::from_secs(5))
    }

    /// The pod is gone from the API: stop and remove everything it had on this node.
    pub(super) async fn cleanup(&mut self) -> Next {
        let view = self.view().await;
        self.stop_all(&view, Duration::from_secs(2).min(self.grace()))
            .await;
        let view = self.view().await;
        if !self.release().await {
            return Next::After(STOP_RETRY);
        }
        cleanup_pod(&self.ctx, &self.uid, &view, Some(&self.pod)).await;
        Next::Done
    }
}

/// Whether any of the pods `uids` still has a container running (or created, about to),
/// asked of the runtime afresh: a listing that fails counts as running.
pub(super) async fn any_running(ctx: &Context, uids: &[String]) -> bool {
    match ctx.cri.list_containers().await {
        Ok(all) => all.iter().any(|s| {
            matches!(s.status, Status::Running | Status::Created)
                && labels::container_ref(&s.labels)
                    .is_some_and(|r| uids.iter().any(|u| u == r.pod_uid))
        }),
        Err(e) => {
            tracing::warn!(error = %e, "listing containers failed");
            true
        }
    }
}

/// How soon a pod whose containers did not all stop is stopped again.
pub(super) const STOP_RETRY: Duration = Duration::from_secs(1);

/// Unmounts a pod's image volumes through the runtime, which then stops counting their
/// images as in use.
async fn unmount_image_volumes(ctx: &Context, uid: &str) {
    if let Ok(rd) = std::fs::read_dir(volumes::image_volume_root(&ctx.root_dir.join(uid))) {
        for e in rd.flatten() {
            if let Err(e) = ctx.cri.unmount_image(&e.path()).await {
                tracing::warn!(pod = %uid, error = %e, "unmounting an image volume failed");
            }
        }
    }
}

/// Removes a pod's containers, cgroup, network, volumes and logs (also for pods found at start
/// that no longer exist).
pub async fn cleanup_pod(ctx: &Context, uid: &str, view: &RuntimePod, pod: Option<&Pod>) {
    let mut log_dirs = HashSet::new();
    for v in view.values() {
        for s in v {
            if let Some(r) = labels::container_ref(&s.labels) {
                log_dirs.insert(labels::pod_log_dir(
                    &ctx.pod_log_dir,
                    r.namespace,
                    r.pod,
                    r.pod_uid,
                ));
            }
            if let Err(e) = ctx.cri.remove_container(&s.id).await {
                tracing::warn!(container = %s.id, error = %e, "removing a container failed");
            }
        }
    }
    if let Some(p) = pod {
        log_dirs.insert(labels::pod_log_dir(
            &ctx.pod_log_dir,
            p.metadata.namespace.as_deref().unwrap_or(""),
            p.metadata.name.as_deref().unwrap_or(""),
            uid,
        ));
    }
    // Whichever QoS class the pod had (a pod found at start is known only by its uid).
    for path in crate::kubelet::resources::pod_cgroup_paths(uid) {
        if let Err(e) = ctx.cri.remove_pod_cgroup(&path).await {
            tracing::warn!(pod = %uid, error = %e, "removing the pod cgroup failed");
        }
    }
    if let Err(e) = ctx.network.teardown(uid).await {
        tracing::warn!(pod = %uid, error = %e, "tearing down the pod network failed");
    }
    unmount_image_volumes(ctx, uid).await;
    volumes::teardown(&ctx.root_dir.join(uid));
    for d in log_dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Upstream's limits: 4 KiB from the file; 80 lines / 2 KiB of log as the fallback.
const MAX_MESSAGE: usize = 4096;
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

fn read_capped(path: &std::path::Path, max: usize) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(max as u64).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last lines of a CRI log, without the CRI prefixes (`<time> <stream> <tag> `).
pub fn log_tail(path: &std::path::Path, lines: usize, max: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let mut out = String::new();
    let all: Vec<&str> = text.lines().collect();
    for l in &all[all.len().saturating_sub(lines)..] {
        let mut parts = l.splitn(4, ' ');
        let (_, _, tag, msg) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next().unwrap_or(""),
        );
        out.push_str(msg);
        if tag != Some("P") {
            out.push('\n');
        }
    }
    if out.len() > max {
        let mut cut = out.len() - max;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_string();
    }
    out
}
