//! Eviction, as upstream's eviction manager does it. An evicted pod has its containers
//! killed (at once for a hard threshold or a local-storage limit), phase Failed with reason
//! `Evicted` and upstream's message, a `DisruptionTarget` condition and an `Evicted`
//! Warning event. Two causes:
//! - local storage, per pod: an emptyDir whose usage exceeds its `sizeLimit` (checked by
//!   the pod's own worker);
//! - node pressure: memory.available or nodefs.available under its `--eviction-hard`
//!   threshold, or under its `--eviction-soft` threshold for the whole of that threshold's
//!   grace period (the pod then gets its own grace period, capped by
//!   `--eviction-max-pod-grace-period`). Every [`CHECK_EVERY`] the kubelet evicts one pod,
//!   ranked as upstream does:
//!   pods using more than they request first, then by lower priority, then by how far
//!   usage exceeds the request (memory: the pod's working set; disk: its emptyDirs and
//!   logs). Memory is relieved before disk.
//!
//! Usage on disk is measured as `du` does (allocated blocks, hard links once, not crossing
//! into other filesystems).
//!
//! Invariant: [`violation`], [`starved`] and [`rank`] are pure functions of the pods and
//! the measured usage; only the measuring touches the host.

use super::admission::is_critical;
use super::node_status::{
    bytes_quantity, pressure, EvictionHard, EvictionSoft, Measurements, Pressure, Threshold,
};
use crate::api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Upstream's eviction manager looks every 10 s (`housekeeping-interval`).
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The pod status reason and event reason of an eviction.
pub const REASON: &str = "Evicted";

/// A pod this node chose to evict: the status (and event) reason and message, and the
/// message of its DisruptionTarget condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    pub reason: &'static str,
    pub message: String,
    pub condition: String,
    /// The longest grace period the kill gives (the pod's own if shorter); `None`: the
    /// pod's own.
    pub grace: Option<Duration>,
}

impl Eviction {
    /// A node-pressure eviction giving at most `grace` (zero for a hard threshold); the
    /// condition says what the status says.
    pub fn for_pressure(message: String, grace: Duration) -> Eviction {
        Eviction {
            reason: REASON,
            condition: message.clone(),
            message,
            grace: Some(grace),
        }
    }

    /// Room made for a critical pod (upstream's CriticalPodAdmissionHandler): upstream's
    /// words, and the pod's own grace period.
    pub fn preempted() -> Eviction {
        Eviction {
            reason: "Preempting",
            message: "Preempted in order to admit critical pod".into(),
            condition: "Pod was preempted by Kubelet to accommodate a critical pod.".into(),
            grace: None,
        }
    }
}

/// The pods this node chose to evict (node pressure, a critical pod's room), by uid: each
/// pod's worker takes its own and is woken for it at once.
#[derive(Default)]
pub struct Chosen {
    pods: parking_lot::Mutex<std::collections::HashMap<String, Eviction>>,
    wakers: parking_lot::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>,
}

impl Chosen {
    /// Hands `eviction` to the worker of pod `uid`; a pod without a worker (gone
    /// meanwhile) has nothing left to evict.
    pub fn choose(&self, uid: &str, eviction: Eviction) {
        let wakers = self.wakers.lock();
        if let Some(w) = wakers.get(uid) {
            self.pods.lock().insert(uid.to_owned(), eviction);
            w.notify_one();
        }
    }

    pub fn take(&self, uid: &str) -> Option<Eviction> {
        self.pods.lock().remove(uid)
    }

    /// Chosen and not taken yet.
    pub fn pending(&self) -> HashSet<String> {
        self.pods.lock().keys().cloned().collect()
    }

    /// `wake` is notified when the pod `uid` is chosen (its worker's wake-up).
    pub fn register(&self, uid: &str, wake: Arc<tokio::sync::Notify>) {
        self.wakers.lock().insert(uid.to_owned(), wake);
    }

    pub fn unregister(&self, uid: &str) {
        let mut wakers = self.wakers.lock();
        wakers.remove(uid);
        self.pods.lock().remove(uid);
    }
}

/// emptyDir volume name → its sizeLimit in bytes, and as written (for the message).
pub type Limits = BTreeMap<String, (u64, String)>;

/// The emptyDir volumes of `pod` that have a sizeLimit.
pub fn limited_empty_dirs(pod: &Pod) -> Limits {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let q = v.empty_dir.as_ref()?.size_limit.as_ref()?;
            let bytes = Quantity::parse(&q.0).ok()?.value().max(0) as u64;
            Some((v.name.clone(), (bytes, q.0.clone())))
        })
        .collect()
}

/// Why the pod must be evicted, given each limited emptyDir's usage in bytes; `None` when
/// every volume is within its limit (or was not measured).
pub fn violation(limits: &Limits, usage: &BTreeMap<String, u64>) -> Option<String> {
    limits
        .iter()
        .find(|(name, (limit, _))| usage.get(*name).is_some_and(|u| u > limit))
        .map(|(name, (_, written))| {
            format!("Usage of EmptyDir volume {name:?} exceeds the limit {written:?}. ")
        })
}

/// A pod's local ephemeral-storage limits: its emptyDirs' sizeLimits, each container's
/// `ephemeral-storage` limit, and the pod's (the sum of its containers').
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StorageLimits {
    pub empty_dirs: Limits,
    /// container name → (bytes, as written).
    pub containers: BTreeMap<String, (u64, String)>,
    pub pod: Option<(u64, String)>,
}

impl StorageLimits {
    pub fn is_empty(&self) -> bool {
        self.empty_dirs.is_empty() && self.containers.is_empty()
    }
}

/// What a pod uses on local disk, in bytes: each disk-backed emptyDir (by volume name) and
/// each container's writable layer plus logs (by container name).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StorageUsage {
    pub empty_dirs: BTreeMap<String, u64>,
    pub containers: BTreeMap<String, u64>,
}

pub fn storage_limits(pod: &Pod) -> StorageLimits {
    let limit = |c: &Container| {
        let q = c
            .resources
            .as_ref()?
            .limits
            .as_ref()?
            .get("ephemeral-storage")?;
        Some((Quantity::parse(&q.0).ok()?, q.0.clone()))
    };
    let (init, regular) = match &pod.spec {
        Some(s) => (
            s.init_containers.as_deref().unwrap_or_default(),
            &s.containers[..],
        ),
        None => (&[][..], &[][..]),
    };
    let bytes = |q: &Quantity| q.value().max(0) as u64;
    let mut containers = BTreeMap::new();
    // Upstream's pod limit: the larger of the biggest init container's limit and the sum
    // of the regular containers' and sidecars' (the two never run together), printed as
    // the summed quantity is.
    let (mut running, mut init_max) = (Quantity::zero(), Quantity::zero());
    for (c, is_init) in init
        .iter()
        .map(|c| (c, true))
        .chain(regular.iter().map(|c| (c, false)))
    {
        let Some((q, written)) = limit(c) else {
            continue;
        };
        containers.insert(c.name.clone(), (bytes(&q), written));
        if is_init && !super::status::is_sidecar(c) {
            init_max = init_max.max(q);
        } else {
            running = running.plus(q);
        }
    }
    let total = running.max(init_max);
    StorageLimits {
        empty_dirs: limited_empty_dirs(pod),
        pod: (!containers.is_empty()).then(|| (bytes(&total), total.to_string())),
        containers,
    }
}

/// Upstream's local-storage eviction, in its order: an emptyDir over its sizeLimit, then
/// the pod over the sum of its containers' limits (emptyDirs, writable layers and logs),
/// then a container over its own limit. The message is the eviction's.
pub fn storage_violation(limits: &StorageLimits, usage: &StorageUsage) -> Option<String> {
    if let Some(m) = violation(&limits.empty_dirs, &usage.empty_dirs) {
        return Some(m);
    }
    if let Some((limit, written)) = &limits.pod {
        let total: u64 =
            usage.empty_dirs.values().sum::<u64>() + usage.containers.values().sum::<u64>();
        if total > *limit {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {written}. "
            ));
        }
    }
    limits
        .containers
        .iter()
        .find(|(name, (limit, _))| usage.containers.get(*name).is_some_and(|u| u > limit))
        .map(|(name, (_, written))| {
            format!("Container {name} exceeded its local ephemeral storage limit {written:?}. ")
        })
}

/// Bytes allocated under `dir` (as `du -s`): each inode once, without crossing into other
/// filesystems. A missing directory is 0.
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![(dir.to_path_buf(), root)];
    while let Some((path, meta)) = stack.pop() {
        if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if !meta.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata() {
                if m.dev() == meta.dev() {
                    stack.push((e.path(), m));
                }
            }
        }
    }
    total
}

/// A resource the node is short of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Memory,
    EphemeralStorage,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral-storage",
        }
    }
}

/// What node pressure must reclaim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Starved {
    pub resource: Resource,
    /// The threshold crossed, and what is available, in bytes.
    pub threshold: u64,
    pub available: u64,
    /// A soft threshold's cap on the evicted pod's grace period (`None`: a hard threshold,
    /// no grace period).
    pub grace_cap: Option<Duration>,
}

/// What to reclaim, memory first and a hard threshold before a soft one (`soft_met`: the
/// soft thresholds crossed for their whole grace period), or `None` when no threshold is.
pub fn starved(
    m: &Measurements,
    hard: &EvictionHard,
    soft: &EvictionSoft,
    soft_met: Pressure,
) -> Option<Starved> {
    let p = pressure(m, hard);
    let memory = |t: Threshold, grace_cap| Starved {
        resource: Resource::Memory,
        threshold: t.bytes_of(m.memory_capacity),
        available: m.memory_available,
        grace_cap,
    };
    let disk = |t: Threshold, grace_cap| Starved {
        resource: Resource::EphemeralStorage,
        threshold: t.bytes_of(m.fs_capacity),
        available: m.fs_available,
        grace_cap,
    };
    let cap = Some(soft.max_pod_grace);
    match (soft.memory_available, soft.nodefs_available) {
        _ if p.memory => Some(memory(hard.memory_available, None)),
        (Some((t, _)), _) if soft_met.memory => Some(memory(t, cap)),
        _ if p.disk => Some(disk(hard.nodefs_available, None)),
        (_, Some((t, _))) if soft_met.disk => Some(disk(t, cap)),
        _ => None,
    }
}

/// A pod that may be evicted, with its usage of the starved resource in bytes.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub uid: String,
    pub pod: Arc<Pod>,
    pub usage: u64,
}

fn request(pod: &Pod, r: Resource) -> u64 {
    let req = crate::api::resources::pod_requests(pod);
    let v = match r {
        Resource::Memory => req.memory,
        Resource::EphemeralStorage => req.ephemeral_storage,
    };
    v.max(0) as u64
}

/// The candidates in eviction order (upstream's `rankMemoryPressure` and
/// `rankDiskPressureFunc`): usage over the request first, then lower priority, then the
/// larger excess over the request.
pub fn rank(mut pods: Vec<Candidate>, r: Resource) -> Vec<Candidate> {
    pods.sort_by_key(|c| {
        let req = request(&c.pod, r);
        let priority = c.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        (
            c.usage <= req,
            priority,
            std::cmp::Reverse(c.usage.saturating_sub(req)),
        )
    });
    pods
}

/// Whether node pressure may evict `pod`: not one that is finished or being deleted, and
/// not a critical one.
pub fn may_evict(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    !finished && pod.metadata.deletion_timestamp.is_none() && !is_critical(pod)
}

/// Why a new pod is refused under node pressure (upstream's eviction admission): under
/// disk pressure every pod, under memory pressure BestEffort pods that do not tolerate
/// the memory-pressure taint; critical pods never.
pub fn refuse(pod: &Pod, p: Pressure) -> Option<String> {
    if is_critical(pod) || !(p.memory || p.disk) {
        return None;
    }
    let tolerates_memory_pressure = pod
        .spec
        .iter()
        .flat_map(|s| s.tolerations.iter().flatten())
        .any(|t| {
            t.key.as_deref() == Some("node.kubernetes.io/memory-pressure")
                && t.operator.as_deref() == Some("Exists")
        });
    let memory_ok =
        !p.memory || super::resources::qos_class(pod) != "BestEffort" || tolerates_memory_pressure;
    if memory_ok && !p.disk {
        return None;
    }
    let mut conditions = Vec::new();
    if p.memory {
        conditions.push("MemoryPressure");
    }
    if p.disk {
        conditions.push("DiskPressure");
    }
    Some(format!(
        "The node had condition: [{}]. ",
        conditions.join(" ")
    ))
}

/// Upstream's message for a node-pressure eviction.
pub fn pressure_message(r: Resource, threshold: u64, available: u64) -> String {
    format!(
        "The node was low on resource: {}. Threshold quantity: {}, available: {}. ",
        r.name(),
        bytes_quantity(threshold).0,
        bytes_quantity(available).0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chosen_pod_wakes_its_worker_and_a_pod_without_one_is_not_kept() {
        let chosen = Chosen::default();
        chosen.choose("gone", Eviction::for_pressure("m".into(), Duration::ZERO));
        assert!(chosen.pending().is_empty());
        let wake = Arc::new(tokio::sync::Notify::new());
        chosen.register("p", wake.clone());
        chosen.choose(
            "p",
            Eviction::for_pressure("low on memory".into(), Duration::ZERO),
        );
        assert_eq!(chosen.pending(), HashSet::from(["p".to_owned()]));
        tokio::time::timeout(Duration::from_secs(1), wake.notified())
            .await
            .expect("the worker is woken");
        assert_eq!(chosen.take("p").unwrap().condition, "low on memory");
        chosen.choose("p", Eviction::for_pressure("again".into(), Duration::ZERO));
        chosen.unregister("p");
        assert!(chosen.pending().is_empty() && chosen.take("p").is_none());
    }

    #[test]
    fn storage_limits_are_checked_in_upstreams_order_with_its_messages() {
        use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
        let limited = |name: &str, limit: &str| Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                limits: Some([("ephemeral-storage".to_owned(), Q(limit.into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![limited("a", "1Mi"), limited("b", "3Mi")],
                ..Default::default()
            }),
            ..Default::default()
        };
        let limits = storage_limits(&pod);
        assert_eq!(limits.pod, Some((4 << 20, "4Mi".to_owned())));
        let usage = |a: u64, b: u64, dir: u64| StorageUsage {
            empty_dirs: [("scratch".to_owned(), dir)].into(),
            containers: [("a".to_owned(), a), ("b".to_owned(), b)].into(),
        };
        assert_eq!(
            storage_violation(&limits, &usage(1 << 20, 1 << 20, 0)),
            None
        );
        assert_eq!(
            storage_violation(&limits, &usage(2 << 20, 0, 0)).unwrap(),
            "Container a exceeded its local ephemeral storage limit \"1Mi\". "
        );
        // An init container runs before the others: the pod's limit is the larger of it and
        // the regular containers' sum, not all of them added up.
        let mut with_init = pod.clone();
        with_init.spec.as_mut().unwrap().init_containers = Some(vec![limited("setup", "8Mi")]);
        assert_eq!(
            storage_limits(&with_init).pod,
            Some((8 << 20, "8Mi".to_owned()))
        );
        // The pod's total counts its emptyDirs too, and is checked before containers.
        assert_eq!(
            storage_violation(&limits, &usage(2 << 20, 1 << 20, 2 << 20)).unwrap(),
            "Pod ephemeral local storage usage exceeds the total limit of containers 4Mi. "
        );
    }
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "c"}],
                "volumes": [
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
                    {"name": "free", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "x"}}
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_empty_dirs_with_a_size_limit_are_watched() {
        let l = limited_empty_dirs(&pod());
        assert_eq!(
            l.into_iter().collect::<Vec<_>>(),
            vec![("scratch".to_string(), (1 << 20, "1Mi".to_string()))]
        );
    }

    #[test]
    fn usage_over_the_limit_evicts_with_upstreams_message() {
        let p = limited_empty_dirs(&pod());
        let usage = |n: u64| BTreeMap::from([("scratch".to_string(), n), ("free".into(), 1 << 30)]);
        assert_eq!(violation(&p, &usage(1 << 20)), None, "at the limit is fine");
        assert_eq!(
            violation(&p, &usage((1 << 20) + 4096)).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ")
        );
        assert_eq!(violation(&p, &BTreeMap::new()), None);
    }

    fn candidate(uid: &str, priority: i32, memory_request: &str, usage_mi: u64) -> Candidate {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": uid, "uid": uid},
            "spec": {"priority": priority, "containers": [{"name": "c",
                "resources": {"requests": {"memory": memory_request}}}]}
        }))
        .unwrap();
        Candidate {
            uid: uid.into(),
            pod: Arc::new(pod),
            usage: usage_mi << 20,
        }
    }

    #[test]
    fn pods_over_their_request_go_first_then_low_priority_then_the_largest_excess() {
        let ranked = rank(
            vec![
                candidate("within-low-prio", -10, "500Mi", 100),
                candidate("over-high-prio", 1000, "10Mi", 300),
                candidate("over-small", 0, "100Mi", 150),
                candidate("over-large", 0, "100Mi", 400),
            ],
            Resource::Memory,
        );
        let order: Vec<&str> = ranked.iter().map(|c| c.uid.as_str()).collect();
        assert_eq!(
            order,
            [
                "over-large",
                "over-small",
                "over-high-prio",
                "within-low-prio"
            ]
        );
    }

    #[test]
    fn memory_is_relieved_before_disk_and_the_message_is_upstreams() {
        let m = Measurements {
            memory_capacity: 8 << 30,
            memory_available: 50 << 20,
            fs_capacity: 100 << 30,
            fs_available: 1 << 30,
            pids: 1,
            pid_max: 1000,
        };
        let e = EvictionHard::default();
        let none = (EvictionSoft::default(), Pressure::default());
        let s = starved(&m, &e, &none.0, none.1).unwrap();
        assert_eq!((s.resource, s.grace_cap), (Resource::Memory, None));
        assert_eq!(
            pressure_message(s.resource, s.threshold, s.available),
            "The node was low on resource: memory. Threshold quantity: 102400Ki, available: 51200Ki. "
        );
        let disk_only = Measurements {
            memory_available: 4 << 30,
            ..m
        };
        assert_eq!(
            starved(&disk_only, &e, &none.0, none.1).map(|s| s.resource),
            Some(Resource::EphemeralStorage)
        );
        let fine = Measurements {
            fs_available: 50 << 30,
            ..disk_only
        };
        assert_eq!(starved(&fine, &e, &none.0, none.1), None);

        // A soft threshold counts once crossed for its grace period, after any hard one,
        // and caps the evicted pod's grace period.
        let soft = EvictionSoft::parse("nodefs.available<60%", "nodefs.available=30s", 5).unwrap();
        let met = Pressure {
            disk: true,
            ..Pressure::default()
        };
        assert_eq!(starved(&fine, &e, &soft, Pressure::default()), None);
        let s = starved(&fine, &e, &soft, met).unwrap();
        assert_eq!(
            (s.resource, s.threshold, s.grace_cap),
            (
                Resource::EphemeralStorage,
                60 << 30,
                Some(Duration::from_secs(5))
            )
        );
        assert_eq!(
            starved(&m, &e, &soft, met).unwrap().resource,
            Resource::Memory
        );
    }

    #[test]
    fn new_pods_are_refused_under_disk_pressure_and_best_effort_ones_under_memory_pressure() {
        let best_effort = pod();
        let burstable = candidate("b", 0, "64Mi", 0).pod;
        let memory = Pressure {
            memory: true,
            ..Pressure::default()
        };
        let disk = Pressure {
            disk: true,
            ..Pressure::default()
        };
        assert_eq!(refuse(&best_effort, Pressure::default()), None);
        assert_eq!(
            refuse(&best_effort, memory).as_deref(),
            Some("The node had condition: [MemoryPressure]. ")
        );
        assert_eq!(refuse(&burstable, memory), None);
        assert_eq!(
            refuse(&burstable, disk).as_deref(),
            Some("The node had condition: [DiskPressure]. ")
        );
        let mut critical = (*burstable).clone();
        critical.spec.as_mut().unwrap().priority = Some(2_000_001_000);
        assert_eq!(refuse(&critical, disk), None);
    }

    #[test]
    fn disk_usage_counts_allocated_blocks_and_hard_links_once() {
        let d = tempfile::tempdir().unwrap();
        let empty = disk_usage(d.path());
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/a"), vec![1u8; 256 * 1024]).unwrap();
        std::fs::hard_link(d.path().join("sub/a"), d.path().join("b")).unwrap();
        // A sparse file allocates (almost) nothing.
        let f = std::fs::File::create(d.path().join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        let used = disk_usage(d.path()) - empty;
        assert!(
            (256 * 1024..256 * 1024 + 64 * 1024).contains(&used),
            "{used}"
        );
        assert_eq!(disk_usage(&d.path().join("missing")), 0);
    }
}
