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
use super::sandbox;
use super::status::{self, Observed, RuntimePod};
use super::{admission, downward, env, eviction, labels, volumes, Context};
use crate::network::{Sandbox, SandboxRequest};
use crate::runtime::containers::Status;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a critical pod looks whether the pods it preempted have stopped.
const VICTIM_POLL: Duration = Duration::from_millis(200);
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
/// How often a running pod is looked at even if nothing happened: content volumes
/// (configMap, secret, projected) are refreshed at this pace.
const RESYNC: Duration = Duration::from_secs(15);

mod resize;
mod start;
mod stop;

pub use stop::{cleanup_pod, log_tail};

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
    /// The DisruptionTarget message of a pod this node evicted (`failed` is then an
    /// eviction of a running pod, not a refusal to admit it).
    disruption: Option<String>,
    /// The pod's admission was settled: admitted here, or its holdings restored after an
    /// agent restart (never again: a preempted pod must not take its place back).
    allocation_checked: bool,
    last_status: Option<PodStatus>,
    volumes: Option<volumes::Volumes>,
    volumes_at: Option<Instant>,
    deleted_sent: bool,
    /// Termination messages of exited instances (read once, by runtime id).
    messages: HashMap<String, String>,
    /// The pod cgroup exists (created by this worker, or found and updated).
    pod_cgroup_ready: bool,
    /// When the emptyDir sizeLimits were last checked.
    storage_checked: Option<Instant>,
    /// Image volumes pulled and mounted, by volume name.
    image_volumes: HashSet<String>,
    /// The resources the containers run with (checkpointed; follows the spec once a resize
    /// is admitted and applied). Loaded on the first pass.
    allocation: Option<super::resize::Allocation>,
    /// A resize that is pending or failed, for the status conditions.
    resize_unfinished: Option<super::resize::Unfinished>,
    /// Containers a resize stopped (RestartContainer): started again at once, whatever the
    /// restart policy and back-off say.
    resize_restarts: HashSet<String>,
    /// The pod will not run again and gave back what it held on the node (see `release`).
    released: bool,
    /// Pods preempted to admit this (critical) pod that may still hold their room: it
    /// starts nothing until they have stopped and given it back.
    victims: Vec<String>,
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
        let sink = ProbeSink::default();
        ctx.evictions.register(&uid, sink.wake.clone());
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
            sink,
            start_time,
            failed: None,
            disruption: None,
            allocation_checked: false,
            last_status: None,
            volumes: None,
            volumes_at: None,
            deleted_sent: false,
            messages: HashMap::new(),
            pod_cgroup_ready: false,
            storage_checked: None,
            image_volumes: HashSet::new(),
            allocation: None,
            resize_unfinished: None,
            resize_restarts: HashSet::new(),
            released: false,
            victims: Vec::new(),
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
        self.ctx.evictions.unregister(&self.uid);
    }

    fn pod_dir(&self) -> std::path::PathBuf {
        self.ctx.root_dir.join(&self.uid)
    }

    async fn view(&self) -> RuntimePod {
        let mut out: RuntimePod = HashMap::new();
        let all = match self
            .ctx
            .cri
            .list_containers_labelled(&[(labels::POD_UID, &self.uid)])
            .await
        {
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

    fn event(
        &self,
        c: Option<&str>,
        type_: &'static str,
        reason: impl Into<std::borrow::Cow<'static, str>>,
        message: String,
    ) {
        let r = match c {
            Some(c) => events::container_ref(&self.pod, c),
            None => events::pod_ref(&self.pod),
        };
        self.ctx.recorder.event(r, type_, reason, message);
    }

    /// The kubelet's admission of a pod it has not started: node pressure, sysctls, then
    /// upstream's general predicates against the pods already admitted ([`admission`]). A
    /// critical pod short of resources is admitted in place of pods it preempts: they are
    /// handed to their workers to evict.
    fn admit(&mut self, pod: &Pod) -> Option<(String, String)> {
        if let Some(m) = eviction::refuse(pod, *self.ctx.pressure.lock()) {
            return Some((eviction::REASON.into(), m));
        }
        if let Some(m) = super::sysctls::refuse(pod) {
            return Some((super::sysctls::REASON.into(), m));
        }
        let node = self.ctx.node.read().clone();
        let view = admission::NodeView {
            node: node.as_deref(),
            cpu_milli: self.ctx.node_fields.node_cpu_milli,
            memory_bytes: self.ctx.node_fields.node_memory_bytes,
        };
        let wanted = admission::Admitted::of(pod);
        let victims = self
            .ctx
            .allocations
            .admit_new(&self.uid, wanted, |wanted, others| {
                admission::decide(pod, wanted, &view, others)
            });
        match victims {
            Err(refused) => Some(refused),
            Ok(victims) => {
                for uid in &victims {
                    tracing::info!(pod = %pod_name(pod), victim = %uid, "preempting a pod to admit a critical pod");
                    self.ctx
                        .evictions
                        .choose(uid, eviction::Eviction::preempted());
                }
                self.victims = victims;
                None
            }
        }
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
        if let Some(ip) = self.sandbox.as_ref().and_then(|s| s.ip) {
            return vec![ip.to_string()];
        }
        if self.released {
            // Released before this worker saw its sandbox (an agent restart): the status
            // keeps the addresses the pod had, as upstream's does.
            let old = self.last_status.as_ref().or(self.pod.status.as_ref());
            return old
                .and_then(|s| s.pod_ips.as_ref())
                .map(|ips| ips.iter().map(|p| p.ip.clone()).collect())
                .unwrap_or_default();
        }
        Vec::new()
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
        let chosen = self.ctx.evictions.take(&self.uid);
        if let (Some(e), None) = (chosen, &self.failed) {
            return self.evict(e).await;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let view = self.view().await;
        // A terminal pod never runs again, even if its containers are gone.
        let terminal = self.failed.is_some() || matches!(phase, Some("Succeeded" | "Failed"));
        if self.start_time.is_none() {
            // A pod no kubelet has started yet: admitted only if the node can take it.
            if view.is_empty() && !terminal {
                if let Some((reason, msg)) = self.admit(&pod) {
                    self.event(None, events::WARNING, reason.clone(), msg.clone());
                    self.failed = Some((reason, format!("{}{msg}", admission::STATUS_PREFIX)));
                }
            }
            self.start_time = Some(status::now());
        } else if !terminal && !self.allocation_checked && !self.ctx.allocations.contains(&self.uid)
        {
            // A pod started before (this agent restarted): it holds its ports and requests
            // from the first pass, before any new pod is admitted against them. Only then:
            // a pod preempted meanwhile must not take its place back.
            let allocated = self.allocated_pod();
            self.ctx
                .allocations
                .set(&self.uid, admission::Admitted::of(&allocated));
        }
        self.allocation_checked = true;
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
            self.resize_unfinished = None;
            self.stop_all(&view, self.grace()).await;
            let view = self.view().await;
            let released = self.release().await;
            // Without its containers the kubelet cannot say more than the API has.
            if !view.is_empty() || self.failed.is_some() {
                self.write_status(&view, true).await;
            }
            return Next::After(if released { RESYNC } else { stop::STOP_RETRY });
        }
        // Upstream's admission kills the pods a critical pod preempts before admitting it:
        // here their workers stop them, and this pod starts once they have.
        if !self.victims.is_empty() {
            if self.victims_hold_room().await {
                self.write_status(&view, false).await;
                return Next::After(VICTIM_POLL);
            }
            self.victims.clear();
        }
        match self.mount_image_volumes().await {
            Ok(()) => {}
            Err(Some(msg)) => return self.setup_failed(&view, "FailedMount", msg).await,
            // Backing off a failed pull: nothing new to report yet.
            Err(None) => {
                self.write_status(&view, false).await;
                return Next::After(Duration::from_secs(1));
            }
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
                self.ctx.cri.binds_host_paths(),
            )
            .await
            {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.volumes_at = Some(Instant::now());
                }
                Err(e) if self.volumes.is_none() => {
                    let msg = format!("MountVolume.SetUp failed: {e}");
                    return self.setup_failed(&view, "FailedMount", msg).await;
                }
                Err(e) => tracing::warn!(error = %e, "refreshing volumes failed"),
            }
        }
        if let Some(at) = self.volumes.as_ref().and_then(|v| v.refresh_at) {
            next = next.min((at - chrono::Utc::now()).to_std().unwrap_or_default());
        }
        let limits = eviction::storage_limits(&pod);
        if !limits.is_empty() {
            next = next.min(eviction::CHECK_EVERY);
            if let Some(msg) = self.local_storage_violation(&limits, &view).await {
                return self
                    .evict(eviction::Eviction::for_pressure(msg, Duration::ZERO))
                    .await;
            }
        }
        if self.sandbox.is_none() {
            match self.ctx.network.setup(self.sandbox_request()).await {
                Ok(s) => self.sandbox = Some(s),
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {e}");
                    return self
                        .setup_failed(&view, "FailedCreatePodSandBox", msg)
                        .await;
                }
            }
        }
        if !self.pod_cgroup_ready {
            let allocated = self.allocated_pod();
            if let Some(cg) = super::resources::pod_cgroup(&allocated) {
                let mut ensure = Ok(());
                if let Some((class, class_res)) = cg.class {
                    ensure = self.ctx.cri.ensure_pod_cgroup(class, class_res).await;
                }
                if ensure.is_ok() {
                    ensure = self.ctx.cri.ensure_pod_cgroup(&cg.path, cg.resources).await;
                }
                if let Err(e) = ensure {
                    let msg = format!("unable to ensure pod container exists: {e}");
                    return self
                        .setup_failed(&view, "FailedCreatePodContainer", msg)
                        .await;
                }
            }
            self.pod_cgroup_ready = true;
        }
        self.sync_resize(&view).await;
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

    /// Pulls (per the volume's pullPolicy, with the pod's pull secrets, failed pulls backing
    /// off as containers' do) and mounts each image volume not mounted yet. The error says
    /// what failed, or is `None` while a failed pull backs off.
    async fn mount_image_volumes(&mut self) -> Result<(), Option<String>> {
        let pod = self.pod.clone();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(src) = &v.image else { continue };
            if self.image_volumes.contains(&v.name) {
                continue;
            }
            let image = src.reference.clone().unwrap_or_default();
            let policy = src
                .pull_policy
                .clone()
                .unwrap_or_else(|| crate::api::defaults::pod::default_pull_policy(&image).into());
            let dir = volumes::image_volume_dir(&self.pod_dir(), &v.name);
            // Mounted by this node before an agent restart: adopted as it is, not pulled
            // again (a registry that is down must not stall a running pod).
            if !volumes::is_mountpoint(&dir) {
                let present = self.ctx.cri.image_status(&image).await.ok().flatten();
                match (policy.as_str(), present) {
                    ("Never", None) => {
                        return Err(Some(format!(
                            "image volume {}: image \"{image}\" is not present with pull policy of Never",
                            v.name
                        )))
                    }
                    ("Always", _) | (_, None) => {
                        let key = format!("{}_volume_{image}", self.uid);
                        let backing_off = self
                            .pull_backoff
                            .in_backoff_since_update(&key, Instant::now())
                            .is_some();
                        if backing_off {
                            return Err(None);
                        }
                        if let Err(e) = self.pull(&image, None, &key).await {
                            let msg = format!("Failed to pull image \"{image}\": {e}");
                            return Err(Some(format!("image volume {}: {msg}", v.name)));
                        }
                    }
                    _ => {}
                }
            }
            self.ctx
                .cri
                .mount_image(&image, &dir)
                .await
                .map_err(|e| Some(format!("image volume {}: {e}", v.name)))?;
            self.image_volumes.insert(v.name.clone());
        }
        Ok(())
    }

    /// Whether a pod this one preempted still runs a container or holds its network.
    async fn victims_hold_room(&self) -> bool {
        stop::any_running(&self.ctx, &self.victims).await || {
            let held = self.ctx.network.pods();
            self.victims.iter().any(|v| held.contains(v))
        }
    }

    /// Measures what the pod's local-storage limits need (at most every
    /// [`eviction::CHECK_EVERY`]): limited emptyDirs and containers, or everything on disk
    /// when the pod as a whole is limited; says why the pod must be evicted, if it must.
    async fn local_storage_violation(
        &mut self,
        limits: &eviction::StorageLimits,
        view: &RuntimePod,
    ) -> Option<String> {
        if self
            .storage_checked
            .is_some_and(|t| t.elapsed() < eviction::CHECK_EVERY)
        {
            return None;
        }
        self.storage_checked = Some(Instant::now());
        let whole_pod = limits.pod.is_some();
        let memory_backed: HashSet<String> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter(|v| {
                v.empty_dir
                    .as_ref()
                    .is_some_and(|e| e.medium.as_deref() == Some("Memory"))
            })
            .map(|v| v.name.clone())
            .collect();
        let dirs: Vec<(String, std::path::PathBuf)> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter(|v| v.empty_dir.is_some() && !memory_backed.contains(&v.name))
            .filter(|v| whole_pod || limits.empty_dirs.contains_key(&v.name))
            .filter_map(|v| {
                let prepared = self.volumes.as_ref()?.by_name.get(&v.name)?;
                Some((v.name.clone(), prepared.host_path.clone()))
            })
            .collect();
        let mut usage = eviction::StorageUsage::default();
        let mut logs = Vec::new();
        for (name, instances) in view {
            if !whole_pod && !limits.containers.contains_key(name) {
                continue;
            }
            let Some(latest) = instances.first() else {
                continue;
            };
            let layer = self
                .ctx
                .cri
                .writable_layer_usage(&latest.id)
                .await
                .unwrap_or(0);
            usage.containers.insert(name.clone(), layer);
            logs.push((name.clone(), latest.log_path.clone()));
        }
        let (dir_usage, log_usage): (BTreeMap<String, u64>, Vec<(String, u64)>) =
            tokio::task::spawn_blocking(move || {
                let dirs = dirs
                    .into_iter()
                    .map(|(n, d)| (n, eviction::disk_usage(&d)))
                    .collect();
                let logs = logs
                    .into_iter()
                    .map(|(n, l)| (n, eviction::disk_usage(&l)))
                    .collect();
                (dirs, logs)
            })
            .await
            .ok()?;
        usage.empty_dirs = dir_usage;
        for (name, bytes) in log_usage {
            *usage.containers.entry(name).or_default() += bytes;
        }
        eviction::storage_violation(limits, &usage)
    }

    /// Evicts the pod: every container killed at once (a hard eviction has no grace
    /// period), phase Failed with the eviction's reason, a Warning event, a DisruptionTarget
    /// condition.
    async fn evict(&mut self, e: eviction::Eviction) -> Next {
        tracing::info!(pod = %pod_name(&self.pod), reason = %e.message, "evicting");
        self.event(None, events::WARNING, e.reason, e.message.clone());
        self.failed = Some((e.reason.into(), e.message));
        self.disruption = Some(e.condition);
        // A victim of preemption left the allocations already; a pod under node pressure
        // leaves them once its containers are stopped.
        self.allocation_checked = true;
        let view = self.view().await;
        let grace = e.grace.map_or(self.grace(), |cap| cap.min(self.grace()));
        self.stop_all(&view, grace).await;
        let view = self.view().await;
        let released = self.release().await;
        self.write_status(&view, true).await;
        Next::After(if released { RESYNC } else { stop::STOP_RETRY })
    }

    /// A pod-level step (volumes, sandbox, pod cgroup) failed: a Warning event, the status
    /// as it is, and another try soon.
    async fn setup_failed(&mut self, view: &RuntimePod, reason: &'static str, msg: String) -> Next {
        self.event(None, events::WARNING, reason, msg);
        self.write_status(view, false).await;
        Next::After(Duration::from_secs(2))
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
        // Ephemeral containers start once, whatever the init containers do, and are never
        // restarted: any instance (running or exited) means done.
        for ec in spec.ephemeral_containers.iter().flatten() {
            if !view.contains_key(&ec.name) {
                let c = container::from_ephemeral(ec);
                if let Some(d) = self
                    .start(&c, ec.target_container_name.as_deref(), None)
                    .await
                {
                    min(d);
                }
            }
        }
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
                        let waiting = self.start(c, None, latest).await;
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
                        if let Some(d) = self.start(c, None, latest).await {
                            min(d);
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if let Some(d) = self.start(c, None, None).await {
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
                    self.resize_restarts.contains(&c.name)
                        || status::should_restart(&pod, c, false, s.exit_code.unwrap_or(255))
                }
                Some(_) => false,
            };
            if go {
                if let Some(d) = self.start(c, None, latest).await {
                    min(d);
                }
            }
        }
        wake
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
            fqdn: container::fqdn(pod, container::CLUSTER_DOMAIN),
            host_network: spec.host_network.unwrap_or(false),
            port_mappings: sandbox::port_mappings(&spec),
            dns: sandbox::dns_config(&spec),
            host_aliases: sandbox::host_aliases(&spec),
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
            sandbox_ready: self.sandbox.is_some() && !self.released,
            pod_ips: self.pod_ips(),
            host_ips: self.ctx.host_ips.clone(),
            start_time: self.start_time.clone(),
            failed: self.failed.clone(),
            disruption: self.disruption.clone(),
            terminal,
            old: self.last_status.as_ref().or(self.pod.status.as_ref()),
            messages: &self.messages,
            allocation: self.allocation.as_ref(),
            resize: self.resize_unfinished.as_ref(),
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
}
fn ports_of(c: &Container) -> HashMap<String, i32> {
    c.ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
        .collect()
}
