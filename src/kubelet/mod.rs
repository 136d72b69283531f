//! The kubelet: pod workers, probes, volumes, status and the node's heartbeat, driving the
//! embedded runtime (`crate::runtime`) through a small CRI-shaped interface and the pod
//! network (`crate::network`). The kubelet API (:10250) lives here too.
//!
//! [`labels`] is the one contract between the pieces: how a pod's containers are named and
//! labelled in the runtime and where their logs go, so that the pod workers, the kubelet
//! API (logs, exec, attach) and restart re-adoption agree.
//!
//! The node itself: [`node_status`] computes the Node and its status (capacity, conditions,
//! labels) from [`host`]'s readings; [`heartbeat`] registers it and reports; [`lease`]
//! keeps the `kube-node-lease` Lease.
//!
//! [`Kubelet::run`] watches the pods bound to this node (`spec.nodeName=<node>`, the only
//! pods the Node authorizer lets a node list) and keeps one [`worker`] per pod UID. At
//! start, once the first list is in, everything the runtime, the network and the pod
//! directory hold for pods that no longer exist is removed; containers of pods that still
//! exist are adopted as they are (running ones keep running, restart counts unchanged).

pub mod admission;
pub mod api;
pub mod backoff;
pub mod container;
pub mod cri;
pub mod downward;
pub mod env;
pub mod events;
pub mod eviction;
pub mod fake_cri;
pub mod heartbeat;
pub mod host;
pub mod image_gc;
pub mod labels;
pub mod lease;
pub mod local_path;
pub mod node_status;
pub mod object_cache;
pub mod probes;
pub mod pull_secrets;
pub mod resize;
pub mod resources;
pub mod runtime_cri;
pub mod sandbox;
pub mod server;
pub mod service_env;
pub mod static_pods;
pub mod status;
pub mod sysctls;
pub mod volumes;
pub mod watched_pod;
pub mod worker;

#[cfg(test)]
mod worker_tests;

use crate::network::PodNetwork;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// What a kubelet is built from.
pub struct KubeletConfig {
    pub node_name: String,
    /// Acts as `system:node:<name>` in the product.
    pub client: kube::Client,
    /// The container runtime: [`runtime_cri::RuntimeCri`] over `crate::runtime`.
    pub runtime: Arc<dyn cri::Cri>,
    pub network: Arc<dyn PodNetwork>,
    /// `/var/log/pods` layout root.
    pub pod_log_dir: PathBuf,
    /// `<agent-dir>/pods`: per-pod volumes and termination-message files.
    pub root_dir: PathBuf,
    /// The node's addresses (`status.hostIP(s)`).
    pub host_ips: Vec<String>,
    /// Node allocatable for resourceFieldRef defaults (0 = read from the host).
    pub allocatable_cpu_milli: i64,
    pub allocatable_memory_bytes: i64,
    /// `<agent-dir>/pod-manifests`: static pods (None = no static pods).
    pub static_pod_dir: Option<PathBuf>,
    /// Node-pressure eviction (None: never, as on simulated nodes).
    pub eviction: Option<NodeEviction>,
    /// Image garbage collection (None: never, as on simulated nodes).
    pub image_gc: Option<image_gc::ImageGcPolicy>,
}

/// What node-pressure eviction measures against.
#[derive(Debug, Clone)]
pub struct NodeEviction {
    pub thresholds: node_status::EvictionHard,
    pub soft: node_status::EvictionSoft,
    /// A directory on the node's filesystem (nodefs), as the heartbeat measures it.
    pub fs_dir: PathBuf,
}

/// How long the eviction loop waits for an evicted pod to give back its room before it
/// evicts another (upstream's podCleanupTimeout).
const POD_CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often the static pod directory is read again (upstream's file check frequency).
const STATIC_POD_CHECK: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listing the runtime's containers: {0}")]
    Runtime(#[from] cri::CriError),
}

/// What every pod worker shares.
pub struct Context {
    pub cri: Arc<dyn cri::Cri>,
    pub network: Arc<dyn PodNetwork>,
    pub api: Arc<dyn api::PodApi>,
    pub recorder: events::Recorder,
    pub pod_log_dir: PathBuf,
    pub root_dir: PathBuf,
    pub host_ips: Vec<String>,
    pub node_fields: downward::Fields,
    /// Every Service, by namespace/name, for service environment variables.
    pub services:
        Arc<parking_lot::RwLock<HashMap<(String, String), k8s_openapi::api::core::v1::Service>>>,
    /// Pods this node chose to evict (node pressure, a critical pod's room): their workers
    /// evict them at once.
    pub evictions: eviction::Chosen,
    /// Every live pod's admitted requests, what an in-place resize is admitted against.
    pub allocations: resize::NodeAllocations,
    /// The pressure the last eviction pass measured (what new pods are admitted against).
    pub pressure: parking_lot::Mutex<node_status::Pressure>,
    /// This node's Node object as last watched (labels, taints and allocatable for
    /// admission); `None` until the first sighting.
    pub node: parking_lot::RwLock<Option<Arc<k8s_openapi::api::core::v1::Node>>>,
    /// Image garbage collection's state, shared by its periodic passes and disk-pressure
    /// reclaim (None: no image GC).
    pub image_gc: Option<tokio::sync::Mutex<image_gc::ImageGc>>,
}

pub struct Kubelet {
    config: KubeletConfig,
}

fn host_cpu_milli() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64 * 1000)
        .unwrap_or(1000)
}

fn host_memory() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl Kubelet {
    pub fn new(config: KubeletConfig) -> Kubelet {
        Kubelet { config }
    }

    /// Runs the pod workers until `shutdown`. Containers keep running when it returns
    /// (an agent restart re-adopts them).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KubeletError> {
        let c = self.config;
        for d in [&c.root_dir, &c.pod_log_dir] {
            std::fs::create_dir_all(d).map_err(|source| KubeletError::Dir {
                path: d.clone(),
                source,
            })?;
        }
        let (recorder, writer) = events::Recorder::new(
            c.client.clone(),
            crate::events::Source {
                component: "kubelet".into(),
                host: Some(c.node_name.clone()),
            },
        );
        tokio::spawn(writer);
        let ctx = Arc::new(Context {
            cri: c.runtime.clone(),
            network: c.network.clone(),
            api: Arc::new(api::NodeApi::new(c.client.clone())),
            recorder,
            pod_log_dir: c.pod_log_dir.clone(),
            root_dir: c.root_dir.clone(),
            host_ips: c.host_ips.clone(),
            node_fields: downward::Fields {
                node_cpu_milli: if c.allocatable_cpu_milli > 0 {
                    c.allocatable_cpu_milli
                } else {
                    host_cpu_milli()
                },
                node_memory_bytes: if c.allocatable_memory_bytes > 0 {
                    c.allocatable_memory_bytes
                } else {
                    host_memory()
                },
                ..Default::default()
            },
            services: Default::default(),
            evictions: Default::default(),
            allocations: Default::default(),
            pressure: Default::default(),
            node: Default::default(),
            image_gc: c
                .image_gc
                .map(|p| tokio::sync::Mutex::new(image_gc::ImageGc::new(p))),
        });
        if ctx.image_gc.is_some() {
            tokio::spawn(collect_images(
                ctx.clone(),
                c.node_name.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(local_path::run(
            c.client.clone(),
            local_path::records_dir(&c.root_dir),
            shutdown.clone(),
        ));
        tokio::spawn(watch_own_node(
            c.client.clone(),
            c.node_name.clone(),
            ctx.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(watch_services(
            c.client.clone(),
            ctx.services.clone(),
            shutdown.clone(),
        ));
        let pods: kube::Api<watched_pod::WatchedPod> = kube::Api::all(c.client.clone());
        let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", c.node_name));
        let mut stream = std::pin::pin!(watcher(pods, wc).default_backoff());
        let mut supervisor = Supervisor::new(ctx.clone(), shutdown.clone());
        let mut listing: HashSet<String> = HashSet::new();
        let mut first_list_done = false;
        let mirror_api: Arc<dyn api::PodApi> = Arc::new(static_pods::MirrorApi {
            client: c.client.clone(),
        });
        let mut statics: std::collections::BTreeMap<String, Pod> = Default::default();
        let mut static_tick = tokio::time::interval(STATIC_POD_CHECK);
        let mut eviction_tick = tokio::time::interval(eviction::CHECK_EVERY);
        let mut eviction_state = EvictionState::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = eviction_tick.tick(), if c.eviction.is_some() && first_list_done => {
                    if let Some(e) = &c.eviction {
                        evict_for_node_pressure(&ctx, &supervisor, e, &mut eviction_state).await;
                    }
                }
                _ = static_tick.tick(), if c.static_pod_dir.is_some() => {
                    let dir = c.static_pod_dir.clone().unwrap_or_default();
                    let now = static_pods::read_dir(&dir, &c.node_name);
                    for (uid, p) in &now {
                        if !statics.contains_key(uid) {
                            supervisor.apply_with(p.clone(), Some(mirror_api.clone()));
                        }
                    }
                    for uid in statics.keys().filter(|u| !now.contains_key(*u)) {
                        supervisor.delete(uid);
                    }
                    let (client, node, pods, known) = (c.client.clone(), c.node_name.clone(), now.clone(), statics.clone());
                    tokio::spawn(async move { static_pods::sync_mirrors(&client, &node, &pods, &known).await });
                    statics = now;
                }
                Some(uid) = supervisor.done_rx.recv() => { supervisor.workers.remove(&uid); }
                ev = stream.next() => match ev {
                    None => break,
                    Some(Err(e)) => tracing::warn!(error = %e, "watching this node's pods failed; retrying"),
                    Some(Ok(watcher::Event::Init)) => listing.clear(),
                    Some(Ok(watcher::Event::InitApply(watched_pod::WatchedPod(p)))) => {
                        if let Some(uid) = p.metadata.uid.clone() {
                            listing.insert(uid);
                        }
                        supervisor.apply(p);
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        // Pods deleted while we were not watching (static pods are not
                        // the API's to delete).
                        let mut live = listing.clone();
                        live.extend(statics.keys().cloned());
                        supervisor.forget_except(&live);
                        if !first_list_done {
                            first_list_done = true;
                            // Static pods are read before the first cleanup (their
                            // containers must not be taken for orphans).
                            if let Some(dir) = &c.static_pod_dir {
                                live.extend(static_pods::read_dir(dir, &c.node_name).into_keys());
                            }
                            clean_orphans(&ctx, &live).await;
                        }
                    }
                    Some(Ok(watcher::Event::Apply(watched_pod::WatchedPod(p)))) => supervisor.apply(p),
                    Some(Ok(watcher::Event::Delete(watched_pod::WatchedPod(p)))) => {
                        if let Some(uid) = p.metadata.uid.as_deref() {
                            supervisor.delete(uid);
                        }
                    }
                },
            }
        }
        Ok(())
    }
}

/// The workers, by pod UID.
struct Supervisor {
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    done_tx: mpsc::UnboundedSender<String>,
    done_rx: mpsc::UnboundedReceiver<String>,
}

impl Supervisor {
    fn new(ctx: Arc<Context>, shutdown: CancellationToken) -> Supervisor {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Supervisor {
            ctx,
            shutdown,
            workers: HashMap::new(),
            done_tx,
            done_rx,
        }
    }

    fn apply(&mut self, pod: Pod) {
        // A mirror pod is our own copy of a static pod, not a pod to run.
        if static_pods::is_mirror(&pod) {
            return;
        }
        self.apply_with(pod, None);
    }

    fn apply_with(&mut self, pod: Pod, api: Option<Arc<dyn api::PodApi>>) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(pod);
        if let Some(tx) = self.workers.get(&uid) {
            // A worker that already ended (pod cleaned up) does not come back to life.
            let _ = tx.send(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let mut w = worker::Worker::new(self.ctx.clone(), uid.clone(), rx, pod);
        if let Some(api) = api {
            w = w.with_api(api);
        }
        let (done, shutdown) = (self.done_tx.clone(), self.shutdown.child_token());
        tokio::spawn(async move {
            w.run(shutdown).await;
            let _ = done.send(uid);
        });
        self.workers.insert(pod_uid_key(&tx), tx);
    }

    fn delete(&mut self, uid: &str) {
        if let Some(tx) = self.workers.get(uid) {
            let _ = tx.send(None);
        }
    }

    fn forget_except(&mut self, keep: &HashSet<String>) {
        for (uid, tx) in &self.workers {
            if !keep.contains(uid) {
                let _ = tx.send(None);
            }
        }
    }
}

fn pod_uid_key(tx: &watch::Sender<Option<Arc<Pod>>>) -> String {
    tx.borrow()
        .as_ref()
        .and_then(|p| p.metadata.uid.clone())
        .unwrap_or_default()
}

/// Image garbage collection every policy period (the first pass at once, as upstream; the
/// minimum age keeps it from removing anything seen only now).
async fn collect_images(ctx: Arc<Context>, node: String, shutdown: CancellationToken) {
    let Some(gc) = &ctx.image_gc else {
        return;
    };
    let period = gc.lock().await.policy().period;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pass = gc.lock().await.run_once(ctx.cri.as_ref()).await;
        match pass {
            Ok((plan, _)) if plan.victims.is_empty() => {}
            Ok((plan, freed)) => tracing::info!(
                images = ?plan.victims,
                freed_bytes = freed,
                wanted_bytes = plan.to_free,
                "image garbage collection removed unused images"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "image garbage collection");
                ctx.recorder.event(
                    events::node_ref(&node),
                    crate::events::WARNING,
                    e.reason(),
                    e.to_string(),
                );
            }
        }
    }
}

/// What the eviction loop carries from one pass to the next.
#[derive(Default)]
struct EvictionState {
    /// When each soft threshold was first seen crossed.
    soft_observed: node_status::SoftObserved,
    /// The pod last evicted for node pressure, and when.
    last_evicted: Option<(String, std::time::Instant)>,
}

/// One pass of node-pressure eviction: when a hard threshold is crossed, the first pod in
/// upstream's order is handed to its worker to evict (one per pass, as upstream).
async fn evict_for_node_pressure(
    ctx: &Arc<Context>,
    sup: &Supervisor,
    e: &NodeEviction,
    state: &mut EvictionState,
) {
    let fs_dir = e.fs_dir.clone();
    let Ok(m) = tokio::task::spawn_blocking(move || host::measure(&fs_dir)).await else {
        return;
    };
    let (soft_crossed, soft_met) =
        state
            .soft_observed
            .observe(&m, &e.soft, std::time::Instant::now());
    // Pressure (admission here, the node's conditions in the heartbeat) from every
    // threshold crossed now, as upstream; eviction waits for a soft threshold's grace
    // period.
    *ctx.pressure.lock() = node_status::pressure(&m, &e.thresholds).or(soft_crossed);
    let Some(starved) = eviction::starved(&m, &e.thresholds, &e.soft, soft_met) else {
        return;
    };
    // One pod at a time, as upstream waits for an evicted pod to be cleaned up: the last
    // one must have stopped and given back its room first (at most POD_CLEANUP_TIMEOUT).
    if let Some((uid, at)) = &state.last_evicted {
        if ctx.allocations.contains(uid) && at.elapsed() < POD_CLEANUP_TIMEOUT {
            return;
        }
    }
    let resource = starved.resource;
    // Disk: unused images go before any pod (the image store is on the node's disk).
    if resource == eviction::Resource::EphemeralStorage {
        if let Some(gc) = &ctx.image_gc {
            match gc.lock().await.remove_unused(ctx.cri.as_ref()).await {
                Ok(0) => {}
                Ok(freed) => {
                    tracing::info!(freed_bytes = freed, "disk pressure: removed unused images");
                    // Measured again on the next pass: the pods wait for it.
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "disk pressure: removing unused images"),
            }
        }
    }
    // A pod handed to its worker is not chosen again; once evicted, it is Failed.
    let pending = ctx.evictions.pending();
    let pods: Vec<(String, Arc<Pod>)> = sup
        .workers
        .iter()
        .filter(|(uid, _)| !pending.contains(*uid))
        .filter_map(|(uid, tx)| Some((uid.clone(), tx.borrow().clone()?)))
        .filter(|(_, p)| eviction::may_evict(p))
        .collect();
    if pods.is_empty() {
        return;
    }
    let containers = ctx.cri.list_containers().await.unwrap_or_default();
    let (root, logs) = (ctx.root_dir.clone(), ctx.pod_log_dir.clone());
    let measured = tokio::task::spawn_blocking(move || {
        let h = crate::runtime::containers::cgroups::Hierarchies::detect();
        pods.into_iter()
            .map(|(uid, pod)| {
                let usage = match resource {
                    eviction::Resource::Memory => containers
                        .iter()
                        .filter(|s| {
                            labels::container_ref(&s.labels).is_some_and(|r| r.pod_uid == uid)
                        })
                        .filter(|s| {
                            s.pid > 0 && s.status == crate::runtime::containers::Status::Running
                        })
                        .filter_map(|s| server::stats::cgroup_usage(&h, s.pid).working_set)
                        .sum(),
                    eviction::Resource::EphemeralStorage => {
                        let log_dir = labels::pod_log_dir(
                            &logs,
                            pod.metadata.namespace.as_deref().unwrap_or(""),
                            pod.metadata.name.as_deref().unwrap_or(""),
                            &uid,
                        );
                        eviction::disk_usage(&volumes::empty_dir_root(&root.join(&uid)))
                            + eviction::disk_usage(&log_dir)
                    }
                };
                eviction::Candidate { uid, pod, usage }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let Some(first) = eviction::rank(measured, resource).into_iter().next() else {
        return;
    };
    let msg = eviction::pressure_message(resource, starved.threshold, starved.available);
    tracing::info!(pod_uid = %first.uid, %msg, "node pressure: evicting");
    // A soft threshold gives the pod its own grace period, capped (upstream's
    // evictionMaxPodGracePeriod); a hard one none.
    let grace = starved.grace_cap.unwrap_or_default();
    ctx.evictions
        .choose(&first.uid, eviction::Eviction::for_pressure(msg, grace));
    state.last_evicted = Some((first.uid.clone(), std::time::Instant::now()));
}

/// Removes runtime containers, network state and pod directories of pods that are not
/// bound to this node any more (deleted while the agent was down).
async fn clean_orphans(ctx: &Context, live: &HashSet<String>) {
    let all = match ctx.cri.list_containers().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "listing containers for cleanup failed");
            return;
        }
    };
    let mut by_pod: HashMap<String, status::RuntimePod> = HashMap::new();
    for st in all {
        let Some(r) = labels::container_ref(&st.labels) else {
            continue;
        };
        if live.contains(r.pod_uid) {
            continue;
        }
        let (uid, name) = (r.pod_uid.to_owned(), r.container.to_owned());
        by_pod
            .entry(uid)
            .or_default()
            .entry(name)
            .or_default()
            .push(st);
    }
    let mut uids: HashSet<String> = by_pod.keys().cloned().collect();
    uids.extend(ctx.network.pods().into_iter().filter(|u| !live.contains(u)));
    if let Ok(rd) = std::fs::read_dir(&ctx.root_dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !live.contains(&n) {
                uids.insert(n);
            }
        }
    }
    for uid in uids {
        tracing::info!(pod_uid = %uid, "removing what is left of a pod that is gone");
        let view = by_pod.remove(&uid).unwrap_or_default();
        worker::cleanup_pod(ctx, &uid, &view, None).await;
    }
}

/// Feeds every event of a watch of `api` to `on` until `shutdown` (failures are retried
/// with the watcher's backoff).
async fn follow<K>(
    api: kube::Api<K>,
    config: watcher::Config,
    what: &str,
    shutdown: CancellationToken,
    mut on: impl FnMut(watcher::Event<K>),
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        match ev {
            None => return,
            Some(Err(e)) => tracing::debug!(error = %e, "watching {what} failed; retrying"),
            Some(Ok(ev)) => on(ev),
        }
    }
}

/// Keeps [`Context::node`] current: what admission checks labels, taints and allocatable
/// against.
async fn watch_own_node(
    client: kube::Client,
    name: String,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    follow(
        kube::Api::all(client),
        config,
        "the node",
        shutdown,
        |ev| match ev {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                *ctx.node.write() = Some(Arc::new(n));
            }
            watcher::Event::Delete(_) => *ctx.node.write() = None,
            watcher::Event::Init | watcher::Event::InitDone => {}
        },
    )
    .await
}

/// Keeps `cache` equal to the API's Services (the source of service env vars).
async fn watch_services(
    client: kube::Client,
    cache: Arc<parking_lot::RwLock<HashMap<(String, String), k8s_openapi::api::core::v1::Service>>>,
    shutdown: CancellationToken,
) {
    use k8s_openapi::api::core::v1::Service;
    let key = |s: &Service| {
        (
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default(),
        )
    };
    let mut listing = HashMap::new();
    let config = watcher::Config::default();
    follow(
        kube::Api::all(client),
        config,
        "services",
        shutdown,
        |ev| match ev {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(s) => {
                listing.insert(key(&s), s);
            }
            watcher::Event::InitDone => *cache.write() = std::mem::take(&mut listing),
            watcher::Event::Apply(s) => {
                cache.write().insert(key(&s), s);
            }
            watcher::Event::Delete(s) => {
                cache.write().remove(&key(&s));
            }
        },
    )
    .await
}
