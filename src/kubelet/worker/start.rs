//! Starting one container instance: back-off check, image per pull policy (with pull
//! secrets and upstream's events), environment, mounts, config, create, start, probes and
//! the postStart hook.

use super::*;

impl Worker {
    /// Pulls, creates and starts the next instance of `c`. Returns a back-off to wait.
    /// `target`: an ephemeral container's target, whose PID namespace it joins.
    pub(super) async fn start(
        &mut self,
        c: &Container,
        target: Option<&str>,
        prev: Option<&crate::runtime::containers::ContainerState>,
    ) -> Option<Duration> {
        // Created with its allocated resources, which a pending resize has not changed yet.
        let allocated = self.allocated_container(c);
        let c = &allocated;
        let pod = self.pod.clone();
        let now = Instant::now();
        let restart_count = prev
            .and_then(|s| labels::container_ref(&s.labels))
            .map(|r| r.restart_count + 1)
            .unwrap_or(0);
        // A restart a resize asked for is not a crash: no back-off.
        let resized = self.resize_restarts.contains(&c.name);
        if let Some(p) = prev
            .filter(|p| matches!(p.status, Status::Stopped | Status::Unknown))
            .filter(|_| !resized)
        {
            let event = self.exit_seen.get(&p.id).copied().unwrap_or(now);
            if let Some(d) = self.backoff.in_backoff_since(&c.name, event, now) {
                let msg = format!(
                    "back-off {} restarting failed container={} pod={}",
                    go_duration(d),
                    c.name,
                    format_pod(&pod)
                );
                if self.waiting.get(&c.name).map(|w| w.0.as_str()) != Some("CrashLoopBackOff") {
                    self.event(
                        Some(&c.name),
                        events::WARNING,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}",
                            c.name,
                            format_pod(&pod)
                        ),
                    );
                }
                self.waiting
                    .insert(c.name.clone(), ("CrashLoopBackOff".into(), msg));
                return Some((event + d).saturating_duration_since(now));
            }
            self.backoff.next(&c.name, event, now);
        }
        let image = match self.ensure_image(c).await {
            Ok(i) => i,
            Err(wait) => return wait,
        };
        let fields = self.fields();
        let envs = match env::build(&pod, c, self.api.as_ref(), &fields).await {
            Ok(e) => e,
            Err(e) => return self.config_error(c, e.to_string()),
        };
        // Service variables the container does not define itself (upstream's order).
        let mut envs = envs;
        let services =
            crate::kubelet::service_env::for_pod(&pod, self.ctx.services.read().values());
        for (k, v) in services {
            if !envs.iter().any(|(n, _)| *n == k) {
                envs.push((k, v));
            }
        }
        let mounts = match self
            .volumes
            .as_ref()
            .map(|v| {
                let pin_in = self.ctx.cri.binds_host_paths().then(|| self.pod_dir());
                volumes::mounts(c, v, &envs, pin_in.as_deref())
            })
            .unwrap_or(Ok(Vec::new()))
        {
            Ok(m) => m,
            Err(e) => return self.config_error(c, e),
        };
        let term = self
            .pod_dir()
            .join("containers")
            .join(&c.name)
            .join(format!("{restart_count}.term"));
        if let Some(parent) = term.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&term, b"");
        // Any user the container runs as may write its termination message (upstream: 0666).
        let _ =
            std::fs::set_permissions(&term, std::os::unix::fs::PermissionsExt::from_mode(0o666));
        // Looked up last, right before the create, so the pid is the target's own.
        let pid_namespace = match target.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => {
                let running = self.view().await.get(t).and_then(|v| v.first()).cloned();
                match running.filter(|s| s.status == Status::Running && s.pid > 0) {
                    Some(s) => Some(std::path::PathBuf::from(format!("/proc/{}/ns/pid", s.pid))),
                    None => {
                        return self.config_error(c, format!("unable to find target container {t}"))
                    }
                }
            }
        };
        let cfg = match container::build(container::Inputs {
            pod: &pod,
            container: c,
            restart_count,
            env: envs,
            sandbox: self.sandbox.as_ref(),
            mounts,
            image: &image,
            pod_log_dir: &self.ctx.pod_log_dir,
            termination_log: Some(&term),
            pid_namespace,
        }) {
            Ok(cfg) => cfg,
            Err(e) => return self.config_error(c, e),
        };
        if let Some(parent) = cfg.log_path.as_ref().and_then(|p| p.parent()) {
            let _ = std::fs::create_dir_all(parent);
        }
        let id = cfg.id.clone();
        // A leftover of a failed earlier attempt at this same instance.
        let _ = self.ctx.cri.remove_container(&id).await;
        if let Err(e) = self.ctx.cri.create_container(cfg).await {
            self.event(
                Some(&c.name),
                events::WARNING,
                "Failed",
                format!("Error: {e}"),
            );
            self.waiting.insert(
                c.name.clone(),
                ("CreateContainerError".into(), e.to_string()),
            );
            return Some(Duration::from_secs(1));
        }
        self.event(
            Some(&c.name),
            events::NORMAL,
            "Created",
            "Container created".into(),
        );
        if let Err(e) = self.ctx.cri.start_container(&id).await {
            self.event(
                Some(&c.name),
                events::WARNING,
                "Failed",
                format!("Error: {e}"),
            );
            self.waiting
                .insert(c.name.clone(), ("RunContainerError".into(), e.to_string()));
            return Some(Duration::from_secs(1));
        }
        self.event(
            Some(&c.name),
            events::NORMAL,
            "Started",
            "Container started".into(),
        );
        self.waiting.remove(&c.name);
        self.resize_restarts.remove(&c.name);
        self.start_probes(c, &id);
        if let Some(h) = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            .and_then(probes::hook_handler)
        {
            let ports = ports_of(c);
            let t = probes::Target {
                cri: self.ctx.cri.as_ref(),
                container_id: &id,
                pod_ip: self.pod_ips().first().cloned(),
                ports: &ports,
            };
            if let Err(msg) = probes::run(&h, &t, self.grace().max(Duration::from_secs(1))).await {
                self.event(Some(&c.name), events::WARNING, "FailedPostStartHook", msg);
                self.event(
                    Some(&c.name),
                    events::NORMAL,
                    "Killing",
                    "FailedPostStartHook".to_string(),
                );
                let _ = self.ctx.cri.stop_container(&id, self.grace()).await;
            }
        }
        None
    }

    pub(super) fn config_error(&mut self, c: &Container, msg: String) -> Option<Duration> {
        self.event(
            Some(&c.name),
            events::WARNING,
            "Failed",
            format!("Error: {msg}"),
        );
        self.waiting
            .insert(c.name.clone(), ("CreateContainerConfigError".into(), msg));
        Some(Duration::from_secs(2))
    }

    /// The image per pull policy. `Err(wait)` = not now (waiting reason recorded).
    pub(super) async fn ensure_image(
        &mut self,
        c: &Container,
    ) -> Result<ImageInfo, Option<Duration>> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| crate::api::defaults::pod::default_pull_policy(&image).into());
        let present = self.ctx.cri.image_status(&image).await.ok().flatten();
        if policy != "Always" {
            if let Some(i) = present {
                self.image_refs.insert(image.clone(), i.image_ref.clone());
                if self
                    .waiting
                    .get(&c.name)
                    .is_none_or(|w| w.0 != "CrashLoopBackOff")
                {
                    self.event(
                        Some(&c.name),
                        events::NORMAL,
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                }
                return Ok(i);
            }
            if policy == "Never" {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.event(
                    Some(&c.name),
                    events::WARNING,
                    "ErrImageNeverPull",
                    msg.clone(),
                );
                self.waiting
                    .insert(c.name.clone(), ("ErrImageNeverPull".into(), msg));
                return Err(Some(Duration::from_secs(10)));
            }
        }
        let key = format!("{}_{image}", self.uid);
        let now = Instant::now();
        if let Some(left) = self.pull_backoff.in_backoff_since_update(&key, now) {
            let msg = format!("Back-off pulling image \"{image}\"");
            self.event(Some(&c.name), events::NORMAL, "BackOff", msg.clone());
            // The pull's error stays in the message, once.
            let prev = self
                .waiting
                .get(&c.name)
                .map(|w| w.1.clone())
                .unwrap_or_default();
            let message = if prev.is_empty() || prev.starts_with(&msg) {
                if prev.is_empty() {
                    msg
                } else {
                    prev
                }
            } else {
                format!("{msg}: {prev}")
            };
            self.waiting
                .insert(c.name.clone(), ("ImagePullBackOff".into(), message));
            // Next look when the back-off has passed: then the pull is retried.
            return Err(Some(left));
        }
        match self.pull(&image, Some(&c.name), &key).await {
            Ok(i) => Ok(i),
            Err(e) => {
                self.event(
                    Some(&c.name),
                    events::WARNING,
                    "Failed",
                    "Error: ErrImagePull".into(),
                );
                self.waiting
                    .insert(c.name.clone(), ("ErrImagePull".into(), e));
                // Soon again: the status then says ImagePullBackOff until the retry.
                Err(Some(Duration::from_secs(1)))
            }
        }
    }

    /// One pull with the pod's pull secrets: upstream's Pulling, Pulled and Failed events
    /// about container `about` (or the pod), the image's id remembered for the status, and
    /// a failure recorded in the pull back-off under `key`.
    pub(super) async fn pull(
        &mut self,
        image: &str,
        about: Option<&str>,
        key: &str,
    ) -> Result<ImageInfo, String> {
        self.event(
            about,
            events::NORMAL,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let started = std::time::Instant::now();
        let creds =
            crate::kubelet::pull_secrets::credentials(&self.pod, self.api.as_ref(), image).await;
        match self.ctx.cri.pull_image(image, creds).await {
            Ok(i) => {
                let ms = started.elapsed().as_millis();
                self.event(about, events::NORMAL, "Pulled", format!(
                    "Successfully pulled image \"{image}\" in {ms}ms ({ms}ms including waiting). Image size: 0 bytes."
                ));
                self.image_refs
                    .insert(image.to_owned(), i.image_ref.clone());
                Ok(i)
            }
            Err(e) => {
                self.event(
                    about,
                    events::WARNING,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {e}"),
                );
                let now = Instant::now();
                self.pull_backoff.next(key, now, now);
                Err(e.to_string())
            }
        }
    }
}
