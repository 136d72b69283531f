//! The pod worker: one task per pod UID, level-triggered. Each pass compares the desired
//! pod (latest from the watch) with what the runtime has, does the next steps (volumes,
//! sandbox, init containers in order, sidecars, regular containers, restarts with
//! CrashLoopBackOff, liveness kills, activeDeadlineSeconds, graceful termination) and
//! writes the status if it changed. It runs again on a pod update, a container exit, a
//! probe verdict and its own timers (back-off expiry, deadline, token refresh).
//!
//! Invariant: the worker is the only actor that creates, starts, stops or removes its
//! pod's containers; everything it decides is derived from the runtime's state and the
//! pod, so a new worker (after an agent restart) continues where the old one stopped
//! without restarting anything that runs.

use super::backoff::{go_duration, Backoff};
use super::container::{self, format_pod};
use super::cri::ImageInfo;
use super::events;
use super::probes::{self, ProbeSink, Probes};
use super::status::{self, Observed, RuntimePod};
use super::{downward, env, labels, volumes, Context};
use crate::network::{Sandbox, SandboxRequest};
use crate::runtime::containers::Status;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
/// How often a running pod is looked at even if nothing happened: content volumes
/// (configMap, secret, projected) are refreshed at this pace.
const RESYNC: Duration = Duration::from_secs(15);

pub struct Worker {
    ctx: Arc<Context>,
    /// The API as this pod sees it (a static pod's status goes to its mirror pod).
    api: Arc<dyn super::api::PodApi>,
    uid: String,
    pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    pod: Arc<Pod>,
    sandbox: Option<Sandbox>,
    backoff: Backoff,
    pull_backoff: Backoff,
    /// When each exited container was first seen exited (the back-off's event time).
    exit_seen: HashMap<String, Instant>,
    waiting: HashMap<String, (String, String)>,
    image_refs: HashMap<String, String>,
    waited: HashSet<String>,
    probe_tasks: HashMap<String, AbortHandle>,
    sink: ProbeSink,
    start_time: Option<Time>,
    failed: Option<(String, String)>,
    last_status: Option<PodStatus>,
    volumes: Option<volumes::Volumes>,
    volumes_at: Option<Instant>,
    deleted_sent: bool,
    /// Termination messages of exited instances (read once, by runtime id).
    messages: HashMap<String, String>,
}

enum Next {
    /// Run again at the latest after this long.
    After(Duration),
    /// The pod is gone and cleaned up.
    Done,
}

fn pod_name(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

impl Worker {
    pub fn new(
        ctx: Arc<Context>,
        uid: String,
        pod_rx: watch::Receiver<Option<Arc<Pod>>>,
        pod: Arc<Pod>,
    ) -> Worker {
        let start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        Worker {
            api: ctx.api.clone(),
            ctx,
            uid,
            pod_rx,
            pod,
            sandbox: None,
            backoff: Backoff::crash_loop(),
            pull_backoff: Backoff::crash_loop(),
            exit_seen: HashMap::new(),
            waiting: HashMap::new(),
            image_refs: HashMap::new(),
            waited: HashSet::new(),
            probe_tasks: HashMap::new(),
            sink: ProbeSink::default(),
            start_time,
            failed: None,
            last_status: None,
            volumes: None,
            volumes_at: None,
            deleted_sent: false,
            messages: HashMap::new(),
        }
    }

    /// Routes this pod's API writes through `api` (static pods).
    pub fn with_api(mut self, api: Arc<dyn super::api::PodApi>) -> Worker {
        self.api = api;
        self
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let gone = self.pod_rx.borrow_and_update().clone();
            let next = match gone {
                Some(p) => {
                    let span = tracing::debug_span!("pod sync", pod = %pod_name(&p));
                    self.pod = p;
                    tracing::Instrument::instrument(self.sync(), span).await
                }
                None => self.cleanup().await,
            };
            let wait = match next {
                Next::Done => break,
                Next::After(d) => d,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.pod_rx.changed() => if r.is_err() { break },
                _ = self.sink.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        for (_, h) in self.probe_tasks.drain() {
            h.abort();
        }
    }

    fn pod_dir(&self) -> std::path::PathBuf {
        self.ctx.root_dir.join(&self.uid)
    }

    async fn view(&self) -> RuntimePod {
        let mut out: RuntimePod = HashMap::new();
        let all = match self.ctx.cri.list_containers().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(pod = %pod_name(&self.pod), error = %e, "listing containers failed");
                return out;
            }
        };
        for st in all {
            let Some(r) = labels::container_ref(&st.labels) else {
                continue;
            };
            if r.pod_uid != self.uid {
                continue;
            }
            let name = r.container.to_owned();
            out.entry(name).or_default().push(st);
        }
        let rc = |s: &crate::runtime::containers::ContainerState| {
            labels::container_ref(&s.labels)
                .map(|r| r.restart_count)
                .unwrap_or(0)
        };
        for v in out.values_mut() {
            v.sort_by_key(|s| std::cmp::Reverse(rc(s)));
        }
        out
    }

    fn event(&self, c: Option<&str>, type_: &'static str, reason: &'static str, message: String) {
        let r = match c {
            Some(c) => events::container_ref(&self.pod, c),
            None => events::pod_ref(&self.pod),
        };
        self.ctx.recorder.event(r, type_, reason, message);
    }

    fn fields(&self) -> downward::Fields {
        downward::Fields {
            host_ips: self.ctx.host_ips.clone(),
            pod_ips: self.pod_ips(),
            ..self.ctx.node_fields.clone()
        }
    }

    fn pod_ips(&self) -> Vec<String> {
        if self.host_network() {
            return self.ctx.host_ips.clone();
        }
        self.sandbox
            .as_ref()
            .and_then(|s| s.ip)
            .map(|ip| vec![ip.to_string()])
            .unwrap_or_default()
    }

    fn host_network(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
    }

    fn grace(&self) -> Duration {
        let s = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(s.max(0) as u64)
    }

    async fn sync(&mut self) -> Next {
        let pod = self.pod.clone();
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate_and_delete().await;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let view = self.view().await;
        // A terminal pod never runs again, even if its containers are gone.
        let terminal = self.failed.is_some() || matches!(phase, Some("Succeeded" | "Failed"));
        if self.start_time.is_none() {
            self.start_time = Some(status::now());
        }
        // activeDeadlineSeconds counts from the start time.
        let mut next = RESYNC;
        if let (Some(ads), Some(st), None) = (
            pod.spec.as_ref().and_then(|s| s.active_deadline_seconds),
            &self.start_time,
            &self.failed,
        ) {
            let elapsed = status::since(st);
            let deadline = Duration::from_secs(ads.max(0) as u64);
            if elapsed >= deadline {
                self.event(
                    None,
                    events::NORMAL,
                    "DeadlineExceeded",
                    DEADLINE_MESSAGE.into(),
                );
                self.failed = Some(("DeadlineExceeded".into(), DEADLINE_MESSAGE.into()));
            } else {
                next = next.min(deadline - elapsed);
            }
        }
        if terminal || self.failed.is_some() {
            self.stop_all(&view, self.grace()).await;
            let view = self.view().await;
            // Without its containers the kubelet cannot say more than the API has.
            if !view.is_empty() || self.failed.is_some() {
                self.write_status(&view, true).await;
            }
            return Next::After(RESYNC);
        }
        // Volumes: prepared once, then refreshed on resync and token expiry.
        let fields = self.fields();
        let refresh = self
            .volumes
            .as_ref()
            .and_then(|v| v.refresh_at)
            .is_some_and(|t| t <= chrono::Utc::now());
        if self.volumes.is_none()
            || refresh
            || self.volumes_at.is_some_and(|t| t.elapsed() >= RESYNC)
        {
            match volumes::setup(
                &pod,
                self.api.as_ref(),
                &self.pod_dir(),
                &fields,
                self.volumes.as_ref(),
            )
            .await
            {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.volumes_at = Some(Instant::now());
                }
                Err(e) if self.volumes.is_none() => {
                    self.event(
                        None,
                        events::WARNING,
                        "FailedMount",
                        format!("MountVolume.SetUp failed: {e}"),
                    );
                    self.write_status(&view, false).await;
                    return Next::After(Duration::from_secs(2));
                }
                Err(e) => tracing::warn!(error = %e, "refreshing volumes failed"),
            }
        }
        if let Some(at) = self.volumes.as_ref().and_then(|v| v.refresh_at) {
            next = next.min((at - chrono::Utc::now()).to_std().unwrap_or_default());
        }
        if self.sandbox.is_none() {
            match self.ctx.network.setup(self.sandbox_request()).await {
                Ok(s) => self.sandbox = Some(s),
                Err(e) => {
                    self.event(
                        None,
                        events::WARNING,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    self.write_status(&view, false).await;
                    return Next::After(Duration::from_secs(2));
                }
            }
        }
        // Liveness/startup failures: kill, the restart logic below does the rest.
        let unhealthy: Vec<(String, String)> = self.sink.unhealthy.lock().drain().collect();
        for (id, why) in unhealthy {
            if let Some((name, st)) = view.iter().find_map(|(n, v)| {
                v.first()
                    .filter(|s| s.id == id)
                    .map(|s| (n.clone(), s.clone()))
            }) {
                if st.status == Status::Running {
                    let spec = self.spec_of(&name);
                    let restarts = spec
                        .as_ref()
                        .is_some_and(|(c, init)| status::should_restart(&pod, c, *init, 137));
                    let msg = format!(
                        "Container {name} {why}{}",
                        if restarts { ", will be restarted" } else { "" }
                    );
                    self.event(Some(&name), events::NORMAL, "Killing", msg);
                    let g = self.probe_grace(&name);
                    let _ = self.ctx.cri.stop_container(&id, g).await;
                }
            }
        }
        let view = self.view().await;
        let now = Instant::now();
        for v in view.values() {
            if let Some(s) = v.first() {
                if matches!(s.status, Status::Stopped | Status::Unknown) {
                    self.exit_seen.entry(s.id.clone()).or_insert(now);
                }
            }
        }
        if let Some(d) = self.reconcile(&view).await {
            next = next.min(d);
        }
        let view = self.view().await;
        self.gc_instances(&view).await;
        self.watch_exits(&view);
        self.write_status(&view, false).await;
        Next::After(next)
    }

    fn spec_of(&self, name: &str) -> Option<(Container, bool)> {
        let s = self.pod.spec.as_ref()?;
        s.init_containers
            .iter()
            .flatten()
            .find(|c| c.name == name)
            .map(|c| (c.clone(), true))
            .or_else(|| {
                s.containers
                    .iter()
                    .find(|c| c.name == name)
                    .map(|c| (c.clone(), false))
            })
    }

    fn probe_grace(&self, name: &str) -> Duration {
        let probe = self
            .spec_of(name)
            .and_then(|(c, _)| c.liveness_probe.or(c.startup_probe));
        probe
            .and_then(|p| p.termination_grace_period_seconds)
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or_else(|| self.grace())
    }

    /// Starts what should run; returns when to look again for back-offs.
    async fn reconcile(&mut self, view: &RuntimePod) -> Option<Duration> {
        let pod = self.pod.clone();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut wake: Option<Duration> = None;
        let mut min = |d: Duration| wake = Some(wake.map_or(d, |w: Duration| w.min(d)));
        let regular_started = spec.containers.iter().any(|c| view.contains_key(&c.name));
        let mut initialized = true;
        for c in spec.init_containers.iter().flatten() {
            let latest = view.get(&c.name).and_then(|v| v.first());
            if status::is_sidecar(c) {
                match latest {
                    Some(s) if s.status == Status::Running => {
                        let started = self
                            .sink
                            .states
                            .lock()
                            .get(&s.id)
                            .is_some_and(|p| p.started);
                        if !started && !regular_started {
                            initialized = false;
                            break;
                        }
                    }
                    Some(s) if s.status == Status::Created => {
                        initialized = false;
                        break;
                    }
                    _ => {
                        let waiting = self.start(c, true, latest).await;
                        if let Some(d) = waiting {
                            min(d);
                        }
                        // Without a startup probe a sidecar counts as started at once.
                        let started = waiting.is_none() && c.startup_probe.is_none();
                        if !regular_started && !started {
                            initialized = false;
                            break;
                        }
                    }
                }
                continue;
            }
            if regular_started {
                continue;
            }
            match latest {
                Some(s)
                    if matches!(s.status, Status::Stopped | Status::Unknown)
                        && s.exit_code == Some(0) =>
                {
                    continue
                }
                Some(s) if matches!(s.status, Status::Stopped | Status::Unknown) => {
                    if status::should_restart(&pod, c, true, s.exit_code.unwrap_or(255)) {
                        if let Some(d) = self.start(c, true, latest).await {
                            min(d);
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if let Some(d) = self.start(c, true, None).await {
                        min(d);
                    }
                }
            }
            initialized = false;
            break;
        }
        if !initialized {
            return wake;
        }
        for c in &spec.containers {
            let latest = view.get(&c.name).and_then(|v| v.first());
            let go = match latest {
                None => true,
                Some(s) if matches!(s.status, Status::Stopped | Status::Unknown) => {
                    status::should_restart(&pod, c, false, s.exit_code.unwrap_or(255))
                }
                Some(_) => false,
            };
            if go {
                if let Some(d) = self.start(c, false, latest).await {
                    min(d);
                }
            }
        }
        wake
    }

    /// Pulls, creates and starts the next instance of `c`. Returns a back-off to wait.
    async fn start(
        &mut self,
        c: &Container,
        init: bool,
        prev: Option<&crate::runtime::containers::ContainerState>,
    ) -> Option<Duration> {
        let pod = self.pod.clone();
        let now = Instant::now();
        let restart_count = prev
            .and_then(|s| labels::container_ref(&s.labels))
            .map(|r| r.restart_count + 1)
            .unwrap_or(0);
        if let Some(p) = prev.filter(|p| matches!(p.status, Status::Stopped | Status::Unknown)) {
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
        let services = super::service_env::for_pod(&pod, self.ctx.services.read().values());
        for (k, v) in services {
            if !envs.iter().any(|(n, _)| *n == k) {
                envs.push((k, v));
            }
        }
        let mounts = match self
            .volumes
            .as_ref()
            .map(|v| volumes::mounts(c, v))
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
        let _ = init;
        None
    }

    fn config_error(&mut self, c: &Container, msg: String) -> Option<Duration> {
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
    async fn ensure_image(&mut self, c: &Container) -> Result<ImageInfo, Option<Duration>> {
        let image = c.image.clone().unwrap_or_default();
        let tag_latest = !image.contains('@')
            && !image.rsplit('/').next().unwrap_or("").contains(':')
            || image.ends_with(":latest");
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| if tag_latest { "Always" } else { "IfNotPresent" }.into());
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
        if let Some(d) = self.pull_backoff.in_backoff_since(&key, now, now) {
            let _ = d;
            let msg = format!("Back-off pulling image \"{image}\"");
            self.event(Some(&c.name), events::NORMAL, "BackOff", msg.clone());
            let prev = self
                .waiting
                .get(&c.name)
                .map(|w| w.1.clone())
                .unwrap_or_default();
            self.waiting.insert(
                c.name.clone(),
                (
                    "ImagePullBackOff".into(),
                    if prev.is_empty() {
                        msg
                    } else {
                        format!("{msg}: {prev}")
                    },
                ),
            );
            return Err(Some(Duration::from_secs(1)));
        }
        self.event(
            Some(&c.name),
            events::NORMAL,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let started = std::time::Instant::now();
        let creds = super::pull_secrets::credentials(&self.pod, self.api.as_ref(), &image).await;
        match self.ctx.cri.pull_image(&image, creds).await {
            Ok(i) => {
                let d = started.elapsed();
                self.event(Some(&c.name), events::NORMAL, "Pulled", format!(
                    "Successfully pulled image \"{image}\" in {}ms ({}ms including waiting). Image size: 0 bytes.", d.as_millis(), d.as_millis()
                ));
                self.image_refs.insert(image, i.image_ref.clone());
                Ok(i)
            }
            Err(e) => {
                self.event(
                    Some(&c.name),
                    events::WARNING,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {e}"),
                );
                self.event(
                    Some(&c.name),
                    events::WARNING,
                    "Failed",
                    "Error: ErrImagePull".into(),
                );
                self.pull_backoff.next(&key, now, now);
                self.waiting
                    .insert(c.name.clone(), ("ErrImagePull".into(), e.to_string()));
                Err(Some(Duration::from_secs(10)))
            }
        }
    }

    fn start_probes(&mut self, c: &Container, id: &str) {
        if let Some(h) = self.probe_tasks.remove(id) {
            h.abort();
        }
        let p = Probes {
            startup: c.startup_probe.clone(),
            liveness: c.liveness_probe.clone(),
            readiness: c.readiness_probe.clone(),
        };
        // Known at once: the status written right after the start already shows it.
        self.sink.states.lock().insert(
            id.to_owned(),
            super::status::ProbeState {
                started: p.startup.is_none(),
                ready: p.readiness.is_none(),
            },
        );
        let recorder = self.ctx.recorder.clone();
        let obj = events::container_ref(&self.pod, &c.name);
        let on_failure: probes::OnFailure = Arc::new(move |kind, msg| {
            recorder.event(
                obj.clone(),
                events::WARNING,
                "Unhealthy",
                format!("{} probe failed: {msg}", kind.name()),
            );
        });
        let task = tokio::spawn(probes::run_probes(
            self.ctx.cri.clone(),
            id.to_owned(),
            self.pod_ips().first().cloned(),
            ports_of(c),
            p,
            self.sink.clone(),
            on_failure,
        ));
        self.probe_tasks.insert(id.to_owned(), task.abort_handle());
    }

    /// One waiter per running container wakes the worker on its exit.
    fn watch_exits(&mut self, view: &RuntimePod) {
        let mut live = HashSet::new();
        for v in view.values() {
            for s in v {
                live.insert(s.id.clone());
                if s.status == Status::Running && !self.probe_tasks.contains_key(&s.id) {
                    // Adopted after a restart: its probes start again.
                    if let Some(name) =
                        labels::container_ref(&s.labels).map(|r| r.container.to_owned())
                    {
                        if let Some((c, _)) = self.spec_of(&name) {
                            self.start_probes(&c, &s.id);
                        }
                    }
                }
                if s.status == Status::Running && self.waited.insert(s.id.clone()) {
                    let (cri, id, wake) =
                        (self.ctx.cri.clone(), s.id.clone(), self.sink.wake.clone());
                    tokio::spawn(async move {
                        let _ = cri.wait_container(&id).await;
                        wake.notify_one();
                    });
                }
            }
        }
        self.waited.retain(|id| live.contains(id));
        self.probe_tasks.retain(|id, h| {
            let keep = view
                .values()
                .any(|v| v.iter().any(|s| s.id == *id && s.status == Status::Running));
            if !keep {
                h.abort();
            }
            keep
        });
        probes::forget(&self.sink, &live);
        self.exit_seen.retain(|id, _| live.contains(id));
    }

    /// Keeps the two newest instances of each container (`logs --previous` needs one).
    async fn gc_instances(&self, view: &RuntimePod) {
        for v in view.values() {
            for old in v.iter().skip(2) {
                let _ = self.ctx.cri.remove_container(&old.id).await;
            }
        }
    }

    fn sandbox_request(&self) -> SandboxRequest {
        let pod = &self.pod;
        let spec = pod.spec.clone().unwrap_or_default();
        SandboxRequest {
            id: self.uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            hostname: container::hostname(pod),
            fqdn: None,
            host_network: spec.host_network.unwrap_or(false),
            port_mappings: Vec::new(),
            dns: Default::default(),
            host_aliases: Vec::new(),
        }
    }

    async fn write_status(&mut self, view: &RuntimePod, terminal: bool) {
        self.read_termination_messages(view);
        let probes = self.sink.states.lock().clone();
        let o = Observed {
            pod: &self.pod,
            containers: view,
            waiting: &self.waiting,
            probes: &probes,
            image_refs: &self.image_refs,
            sandbox_ready: self.sandbox.is_some(),
            pod_ips: self.pod_ips(),
            host_ips: self.ctx.host_ips.clone(),
            start_time: self.start_time.clone(),
            failed: self.failed.clone(),
            terminal,
            old: self.last_status.as_ref().or(self.pod.status.as_ref()),
            messages: &self.messages,
        };
        let st = status::generate(&o);
        if self.last_status.as_ref() == Some(&st) || self.pod.status.as_ref() == Some(&st) {
            return;
        }
        match self.api.patch_status(&self.pod, &st).await {
            Ok(()) => self.last_status = Some(st),
            Err(e) => {
                tracing::warn!(pod = %pod_name(&self.pod), error = %e, "writing pod status failed")
            }
        }
    }

    /// Reads the terminationMessagePath file of each newly exited instance (and, with
    /// FallbackToLogsOnError, the log tail of a failed one with an empty file).
    fn read_termination_messages(&mut self, view: &RuntimePod) {
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

    async fn stop_all(&mut self, view: &RuntimePod, grace: Duration) {
        let pod = self.pod.clone();
        let mut stops = Vec::new();
        for (name, v) in view {
            let Some(s) = v
                .first()
                .filter(|s| matches!(s.status, Status::Running | Status::Created))
            else {
                continue;
            };
            let c = self.spec_of(name).map(|(c, _)| c);
            let (cri, id, rec, obj, name) = (
                self.ctx.cri.clone(),
                s.id.clone(),
                self.ctx.recorder.clone(),
                events::container_ref(&pod, name),
                name.clone(),
            );
            let pod_ip = self.pod_ips().first().cloned();
            stops.push(async move {
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
            });
        }
        futures::future::join_all(stops).await;
    }

    /// Graceful deletion: preStop + stop signal + SIGKILL after the grace period, final
    /// status, then the pod object goes (grace 0) and the worker cleans up on its removal.
    async fn terminate_and_delete(&mut self) -> Next {
        let view = self.view().await;
        self.stop_all(&view, self.grace()).await;
        let view = self.view().await;
        let terminal_status = self.pod.status.as_ref().and_then(|s| s.phase.clone());
        let _ = terminal_status;
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
    async fn cleanup(&mut self) -> Next {
        let view = self.view().await;
        self.stop_all(&view, Duration::from_secs(2).min(self.grace()))
            .await;
        cleanup_pod(&self.ctx, &self.uid, &view, Some(&self.pod)).await;
        Next::Done
    }
}

/// Removes a pod's containers, network, volumes and logs (also for pods found at start
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
    if let Err(e) = ctx.network.teardown(uid).await {
        tracing::warn!(pod = %uid, error = %e, "tearing down the pod network failed");
    }
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

fn ports_of(c: &Container) -> HashMap<String, i32> {
    c.ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
        .collect()
}
