//! In-place pod resize, as upstream's kubelet does it: the resources a pod's containers
//! run with are its *allocation*, checkpointed in the pod's directory, which follows the
//! spec once the node admits the change (the pod's requests fit the node's allocatable,
//! alone and next to the other pods' allocations). Admitted changes are applied to the
//! running containers' cgroups (the pod cgroup loosened first and tightened last, so a
//! child never exceeds its parent), or by restarting a container whose `resizePolicy`
//! says `RestartContainer` for a resource that changed. Status reports each container's
//! allocation (`allocatedResources`, `resources`), and the `PodResizePending` (Infeasible,
//! Deferred) and `PodResizeInProgress` (Error) conditions while a resize is not done.
//!
//! Left out: the usage check before a memory limit decrease (the kernel refuses it on
//! cgroup v1, where it shows as an Error; on v2 the container may be OOM-killed), and
//! upstream's reporting of cpu values read back from the cgroups (the allocation is
//! reported as it was applied).

use crate::api::resources::pod_requests;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Each container's (and init container's) resources, by name.
pub type Allocation = BTreeMap<String, ResourceRequirements>;

const CHECKPOINT: &str = "allocated.json";

/// Pod condition types and reasons.
pub const PENDING: &str = "PodResizePending";
pub const IN_PROGRESS: &str = "PodResizeInProgress";
pub const INFEASIBLE: &str = "Infeasible";
pub const DEFERRED: &str = "Deferred";
pub const ERROR: &str = "Error";

/// A resize that is not done: (condition type, reason, message).
pub type Unfinished = (&'static str, &'static str, String);

fn requirements(c: &Container) -> ResourceRequirements {
    let r = c.resources.clone().unwrap_or_default();
    ResourceRequirements {
        claims: None,
        requests: r.requests.filter(|m| !m.is_empty()),
        limits: r.limits.filter(|m| !m.is_empty()),
    }
}

/// What the spec asks for.
pub fn desired(pod: &Pod) -> Allocation {
    let Some(spec) = &pod.spec else {
        return Allocation::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| (c.name.clone(), requirements(c)))
        .collect()
}

/// The checkpointed allocation of the pod whose directory is `dir`.
pub fn load(dir: &Path) -> Option<Allocation> {
    let bytes = std::fs::read(dir.join(CHECKPOINT)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn save(dir: &Path, a: &Allocation) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{CHECKPOINT}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(a).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, dir.join(CHECKPOINT))
}

/// The pod as its allocation has it: what its cgroups and new containers are made from.
pub fn allocated_pod(pod: &Pod, a: &Allocation) -> Pod {
    let mut p = pod.clone();
    if let Some(spec) = p.spec.as_mut() {
        for c in spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut())
        {
            if let Some(r) = a.get(&c.name) {
                c.resources = Some(r.clone());
            }
        }
    }
    p
}

/// Requests of a pod as the node admits them (cpu millis, memory bytes).
pub fn requests(pod: &Pod) -> (i64, i64) {
    let r = pod_requests(pod);
    (r.milli_cpu, r.memory)
}

/// Upstream's resize admission: `Infeasible` when the pod alone exceeds the node's
/// allocatable (memory checked first), `Deferred` when it does not fit next to the other
/// pods' allocations (`others`: their summed requests).
pub fn admit(
    wanted: (i64, i64),
    others: (i64, i64),
    allocatable: (i64, i64),
) -> Result<(), (&'static str, String)> {
    let (cpu, mem) = wanted;
    let (cpu_cap, mem_cap) = allocatable;
    if mem > mem_cap {
        return Err((
            INFEASIBLE,
            format!(
                "Node didn't have enough capacity: memory, requested: {mem}, capacity: {mem_cap}"
            ),
        ));
    }
    if cpu > cpu_cap {
        return Err((
            INFEASIBLE,
            format!("Node didn't have enough capacity: cpu, requested: {cpu}, capacity: {cpu_cap}"),
        ));
    }
    for (name, want, used, cap) in [
        ("cpu", cpu, others.0, cpu_cap),
        ("memory", mem, others.1, mem_cap),
    ] {
        if want + used > cap {
            return Err((
                DEFERRED,
                format!(
                    "Node didn't have enough resource: {name}, requested: {want}, used: {used}, capacity: {cap}"
                ),
            ));
        }
    }
    Ok(())
}

fn quantity(r: &ResourceRequirements, part: &str, name: &str) -> Option<String> {
    let m = if part == "limits" {
        &r.limits
    } else {
        &r.requests
    };
    m.as_ref()?.get(name).map(|q| q.0.clone())
}

/// Whether `c` must be restarted to go from `old` to `new`: a changed cpu or memory whose
/// resizePolicy is `RestartContainer`.
pub fn needs_restart(
    c: &Container,
    old: &ResourceRequirements,
    new: &ResourceRequirements,
) -> bool {
    ["cpu", "memory"].iter().any(|name| {
        let changed = ["requests", "limits"]
            .iter()
            .any(|part| quantity(old, part, name) != quantity(new, part, name));
        changed
            && c.resize_policy
                .iter()
                .flatten()
                .any(|p| p.resource_name == *name && p.restart_policy == "RestartContainer")
    })
}

/// The event message upstream's kubelet writes: `<prefix>: {"containers":[...],...}`.
pub fn event_message(prefix: &str, pod: &Pod, generation: i64, error: Option<&str>) -> String {
    let entries = |list: &[Container]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|c| serde_json::json!({"name": c.name, "resources": requirements(c)}))
            .collect()
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let mut summary = serde_json::Map::new();
    let init = entries(spec.init_containers.as_deref().unwrap_or_default());
    if !init.is_empty() {
        summary.insert("initContainers".into(), init.into());
    }
    let regular = entries(&spec.containers);
    if !regular.is_empty() {
        summary.insert("containers".into(), regular.into());
    }
    summary.insert("generation".into(), generation.into());
    if let Some(e) = error {
        summary.insert("error".into(), e.into());
    }
    format!("{prefix}: {}", serde_json::Value::Object(summary))
}

pub use super::admission::{Admitted, Decision};

/// Pods' admitted requests on this node, by uid: what a resize is admitted against, and
/// what the Burstable class's cpu shares are the sum of.
#[derive(Default)]
pub struct NodeAllocations {
    pods: parking_lot::Mutex<HashMap<String, Admitted>>,
    /// The Burstable class's cpu shares as last written.
    burstable_shares: parking_lot::Mutex<Option<u64>>,
}

impl NodeAllocations {
    pub fn set(&self, uid: &str, admitted: Admitted) {
        self.pods.lock().insert(uid.to_owned(), admitted);
    }

    pub fn remove(&self, uid: &str) {
        self.pods.lock().remove(uid);
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.pods.lock().contains_key(uid)
    }

    /// Admits a pod the node has not started yet: `decide` sees what every other admitted
    /// pod holds, and an admitted pod is recorded under the same lock, so two pods admitted
    /// together cannot both take one host port or the last of the cpu. A pod admitted by
    /// preemption is recorded in place of its victims, returned by uid (their workers are to
    /// evict them); a refused one gives the reason and message.
    pub fn admit_new(
        &self,
        uid: &str,
        wanted: Admitted,
        decide: impl FnOnce(&Admitted, &[&Admitted]) -> Decision,
    ) -> Result<Vec<String>, (String, String)> {
        let mut pods = self.pods.lock();
        let (uids, others): (Vec<&String>, Vec<&Admitted>) =
            pods.iter().filter(|(u, _)| u.as_str() != uid).unzip();
        let victims = match decide(&wanted, &others) {
            Decision::Admit => Vec::new(),
            Decision::Preempt(at) => at.into_iter().map(|i| uids[i].clone()).collect(),
            Decision::Refuse(reason, message) => return Err((reason, message)),
        };
        for v in &victims {
            pods.remove(v);
        }
        pods.insert(uid.to_owned(), wanted);
        Ok(victims)
    }

    /// Admits a resize of pod `uid` to `wanted` against `allocatable` and the other pods
    /// ([`admit`]), and on success records it at once, under one lock, so two resizes
    /// admitted together cannot overcommit the node.
    pub fn admit_resize(
        &self,
        uid: &str,
        wanted: Admitted,
        allocatable: (i64, i64),
    ) -> Result<(), (&'static str, String)> {
        let mut pods = self.pods.lock();
        let others = pods
            .iter()
            .filter(|(u, _)| u.as_str() != uid)
            .fold((0, 0), |(c, m), (_, a)| {
                (c + a.requests.milli_cpu, m + a.requests.memory)
            });
        admit(
            (wanted.requests.milli_cpu, wanted.requests.memory),
            others,
            allocatable,
        )?;
        pods.insert(uid.to_owned(), wanted);
        Ok(())
    }

    /// The Burstable class's cpu shares when they differ from what was last written (upstream's
    /// QoS container manager: the shares of the summed cpu requests of Burstable pods); the
    /// caller writes them, then [`NodeAllocations::burstable_written`].
    pub fn burstable_shares_due(&self) -> Option<u64> {
        let milli: i64 = self
            .pods
            .lock()
            .values()
            .filter(|a| a.burstable())
            .map(|a| a.requests.milli_cpu)
            .sum();
        let shares = crate::kubelet::resources::milli_to_shares(milli);
        (*self.burstable_shares.lock() != Some(shares)).then_some(shares)
    }

    pub fn burstable_written(&self, shares: u64) {
        *self.burstable_shares.lock() = Some(shares);
    }
}

/// Writes the Burstable class's cpu shares if the pods' requests changed them.
pub async fn sync_burstable_class(allocations: &NodeAllocations, cri: &dyn super::cri::Cri) {
    let Some(shares) = allocations.burstable_shares_due() else {
        return;
    };
    let class = crate::runtime::containers::Resources {
        cpu_shares: Some(shares),
        ..Default::default()
    };
    match cri
        .ensure_pod_cgroup(super::resources::BURSTABLE_CLASS, class)
        .await
    {
        Ok(()) => allocations.burstable_written(shares),
        Err(e) => tracing::warn!(error = %e, "writing the Burstable class's cpu shares failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerResizePolicy, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn res(cpu: &str, mem: &str) -> ResourceRequirements {
        let m = BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(mem.into())),
        ]);
        ResourceRequirements {
            requests: Some(m.clone()),
            limits: Some(m),
            claims: None,
        }
    }

    #[test]
    fn admission_says_infeasible_before_deferred_with_upstreams_messages() {
        let node = (2000, 4 << 30);
        assert_eq!(admit((500, 1 << 30), (1000, 1 << 30), node), Ok(()));
        assert_eq!(
            admit((500, 5 << 30), (0, 0), node).unwrap_err(),
            (INFEASIBLE, "Node didn't have enough capacity: memory, requested: 5368709120, capacity: 4294967296".into())
        );
        assert_eq!(admit((3000, 1), (0, 0), node).unwrap_err().0, INFEASIBLE);
        assert_eq!(
            admit((1500, 1 << 30), (1000, 0), node).unwrap_err(),
            (DEFERRED, "Node didn't have enough resource: cpu, requested: 1500, used: 1000, capacity: 2000".into())
        );
    }

    #[test]
    fn the_allocation_is_checkpointed_and_substituted_into_the_pod() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(res("100m", "64Mi")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        let a = desired(&pod);
        save(dir.path(), &a).unwrap();
        assert_eq!(load(dir.path()), Some(a.clone()));
        let smaller = Allocation::from([("c".to_owned(), res("50m", "32Mi"))]);
        let p = allocated_pod(&pod, &smaller);
        assert_eq!(requests(&p), (50, 32 << 20));
        assert_eq!(requests(&pod), (100, 64 << 20));
    }

    #[test]
    fn a_resize_is_admitted_against_the_other_pods_and_recorded_at_once() {
        let a = NodeAllocations::default();
        let pod = |cpu| Admitted {
            requests: crate::api::resources::Resources {
                milli_cpu: cpu,
                ..Default::default()
            },
            ..Default::default()
        };
        a.set("p1", pod(500));
        a.set("p2", pod(500));
        assert_eq!(a.admit_resize("p1", pod(1400), (2000, 1 << 30)), Ok(()));
        // p2 now sees p1's new size.
        let err = a.admit_resize("p2", pod(700), (2000, 1 << 30)).unwrap_err();
        assert_eq!(err.0, DEFERRED);
        assert!(err.1.contains("used: 1400"), "{}", err.1);
    }

    #[test]
    fn a_new_pod_is_admitted_against_the_others_and_holds_its_place_until_removed() {
        let a = NodeAllocations::default();
        let holder = |port| Admitted {
            requests: Default::default(),
            ports: vec![crate::scheduler::cache::HostPort {
                protocol: "TCP".into(),
                ip: "0.0.0.0".into(),
                port,
            }],
            ..Default::default()
        };
        let clash = |_: &Admitted, others: &[&Admitted]| {
            if others.iter().any(|o| o.ports.iter().any(|p| p.port == 80)) {
                Decision::Refuse("NodePorts".to_owned(), "taken".to_owned())
            } else {
                Decision::Admit
            }
        };
        assert_eq!(a.admit_new("p1", holder(80), clash), Ok(vec![]));
        assert!(a.contains("p1"));
        // The refused pod is not recorded; its own earlier entry never counts against it.
        assert!(a.admit_new("p2", holder(80), clash).is_err());
        assert!(!a.contains("p2"));
        assert_eq!(a.admit_new("p1", holder(80), clash), Ok(vec![]));
        a.remove("p1");
        assert_eq!(a.admit_new("p2", holder(80), clash), Ok(vec![]));
        // Admitted by preemption: recorded in place of its victims.
        let preempt =
            |_: &Admitted, others: &[&Admitted]| Decision::Preempt((0..others.len()).collect());
        assert_eq!(
            a.admit_new("p3", holder(80), preempt),
            Ok(vec!["p2".to_owned()])
        );
        assert!(a.contains("p3") && !a.contains("p2"));
    }

    #[test]
    fn the_burstable_class_gets_the_shares_of_its_pods_requests() {
        let a = NodeAllocations::default();
        let pod = |cpu, burstable: bool| Admitted {
            requests: crate::api::resources::Resources {
                milli_cpu: cpu,
                ..Default::default()
            },
            qos: if burstable { "Burstable" } else { "Guaranteed" },
            ..Default::default()
        };
        a.set("g", pod(4000, false));
        a.set("b1", pod(250, true));
        a.set("b2", pod(750, true));
        assert_eq!(a.burstable_shares_due(), Some(1024));
        a.burstable_written(1024);
        assert_eq!(a.burstable_shares_due(), None);
        a.remove("b2");
        assert_eq!(a.burstable_shares_due(), Some(256));
        a.remove("b1");
        assert_eq!(
            a.burstable_shares_due(),
            Some(2),
            "the minimum when none is left"
        );
    }

    #[test]
    fn only_a_changed_resource_with_restart_container_restarts() {
        let mut c = Container {
            name: "c".into(),
            resize_policy: Some(vec![ContainerResizePolicy {
                resource_name: "memory".into(),
                restart_policy: "RestartContainer".into(),
            }]),
            ..Default::default()
        };
        assert!(!needs_restart(
            &c,
            &res("100m", "64Mi"),
            &res("200m", "64Mi")
        ));
        assert!(needs_restart(
            &c,
            &res("100m", "64Mi"),
            &res("100m", "128Mi")
        ));
        c.resize_policy = None;
        assert!(!needs_restart(
            &c,
            &res("100m", "64Mi"),
            &res("100m", "128Mi")
        ));
    }
}
