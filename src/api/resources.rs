//! Resource arithmetic on pods and nodes, shared by the scheduler and the kubelet: a pod's
//! effective request and limit (upstream's `PodRequests`/`PodLimits`: app containers and
//! sidecars summed, each init container's own value plus the sidecars started before it
//! taken as a floor, pod overhead added) and a node's allocatable, as integers (milli-cpu,
//! bytes, counts).
//!
//! Invariant: pure functions of the objects; the scheduler computes them once per pod object
//! and keeps them in its cache, so filtering and scoring never parse a quantity.

use crate::api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use std::collections::BTreeMap;

/// Upstream's `DefaultMilliCPURequest`: what scoring assumes for a container without a cpu
/// request.
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// Upstream's `DefaultMemoryRequest` (200 MiB).
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// A set of resources: cpu in milli-units, the rest in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended resources, hugepages and attachable volumes, by name.
    pub scalar: BTreeMap<String, i64>,
}

fn parse(q: &K8sQuantity) -> Quantity {
    Quantity::parse(&q.0).unwrap_or(Quantity::ZERO)
}

fn clamp(v: i128) -> i64 {
    v.clamp(0, i128::from(i64::MAX)) as i64
}

/// Upstream's `IsScalarResourceName`: extended (`example.com/gpu`), hugepages and
/// attachable-volumes resources.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

impl Resources {
    /// The resources of a `ResourceList` (requests, allocatable, overhead).
    pub fn from_list(list: Option<&BTreeMap<String, K8sQuantity>>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let q = parse(q);
            match name.as_str() {
                "cpu" => r.milli_cpu = clamp(q.milli_value()),
                "memory" => r.memory = clamp(q.value()),
                "ephemeral-storage" => r.ephemeral_storage = clamp(q.value()),
                "pods" => r.pods = clamp(q.value()),
                n if is_scalar(n) => {
                    r.scalar.insert(n.to_owned(), clamp(q.value()));
                }
                _ => {}
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each resource raised to at least `o`'s.
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// No cpu, memory, ephemeral storage or extended resource requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// A sidecar: an init container that keeps running (`restartPolicy: Always`).
fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let list = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = Resources::from_list(list);
    if non_zero {
        let has = |n: &str| list.is_some_and(|l| l.contains_key(n));
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY;
        }
    }
    r
}

/// Sums `own` over the app containers and sidecars, with each init container's value plus
/// the sidecars started before it as a floor.
fn aggregate(pod: &Pod, own: impl Fn(&Container) -> Resources) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&own(c));
    }
    let mut sidecars = Resources::default();
    let mut init_floor = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = own(c);
        if is_sidecar(c) {
            // A sidecar runs alongside the app containers and every later init container.
            sum.add(&own);
            sidecars.add(&own);
            init_floor.max_with(&sidecars);
        } else {
            let mut during = own;
            during.add(&sidecars);
            init_floor.max_with(&during);
        }
    }
    sum.max_with(&init_floor);
    sum
}

/// `sum` with the pod-level values (cpu and memory only) that replace the containers' sum
/// when set, plus the pod overhead.
fn pod_level(pod: &Pod, mut sum: Resources, limits: bool) -> Resources {
    let Some(spec) = &pod.spec else {
        return sum;
    };
    let pod_list = spec.resources.as_ref().and_then(|r| {
        if limits {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        }
    });
    if let Some(pl) = pod_list {
        let p = Resources::from_list(Some(pl));
        if pl.contains_key("cpu") {
            sum.milli_cpu = p.milli_cpu;
        }
        if pl.contains_key("memory") {
            sum.memory = p.memory;
        }
    }
    sum.add(&Resources::from_list(spec.overhead.as_ref()));
    sum
}

fn requests(pod: &Pod, non_zero: bool) -> Resources {
    let sum = aggregate(pod, |c| container_requests(c, non_zero));
    pod_level(pod, sum, false)
}

/// A pod's limits and whether they bound it: `cpu_bounded`/`memory_bounded` are false when a
/// container (app, init or sidecar) has no limit of that resource and the pod sets none,
/// since its usage is then unbounded whatever the others declare (upstream's
/// `ResourceConfigForPod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLimits {
    pub limits: Resources,
    pub cpu_bounded: bool,
    pub memory_bounded: bool,
}

fn limits_of(c: &Container) -> Option<&BTreeMap<String, K8sQuantity>> {
    c.resources.as_ref().and_then(|r| r.limits.as_ref())
}

pub fn pod_limits(pod: &Pod) -> PodLimits {
    let all = |name: &str| {
        pod.spec.as_ref().is_some_and(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .all(|c| limits_of(c).is_some_and(|l| l.contains_key(name)))
        })
    };
    let pod_sets = |name: &str| {
        pod.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| l.contains_key(name))
    };
    let sum = aggregate(pod, |c| Resources::from_list(limits_of(c)));
    PodLimits {
        limits: pod_level(pod, sum, true),
        cpu_bounded: all("cpu") || pod_sets("cpu"),
        memory_bounded: all("memory") || pod_sets("memory"),
    }
}

/// The pod's effective request as NodeResourcesFit compares it with allocatable.
pub fn pod_requests(pod: &Pod) -> Resources {
    requests(pod, false)
}

/// (milli-cpu, memory) as scoring sees them: containers without a request count as
/// 100m / 200Mi, so best-effort pods still spread.
pub fn non_zero_requests(pod: &Pod) -> (i64, i64) {
    let r = requests(pod, true);
    (r.milli_cpu, r.memory)
}

/// The node's `status.allocatable` (falling back to capacity, as a node that reports only
/// capacity offers all of it).
pub fn node_allocatable(node: &Node) -> Resources {
    let st = node.status.as_ref();
    let list = st
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| st.and_then(|s| s.capacity.as_ref()));
    Resources::from_list(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    #[test]
    fn effective_request_sums_app_containers_and_sidecars_and_adds_overhead() {
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}}
            ],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}
            ],
            "overhead": {"cpu": "10m"}
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 360);
        assert_eq!(r.memory, 64 * 1024 * 1024);
    }

    #[test]
    fn an_init_container_larger_than_the_app_containers_sets_the_floor_with_earlier_sidecars() {
        let p = pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "big", "resources": {"requests": {"cpu": "1", "example.com/gpu": "2"}}}
            ]
        }));
        let r = pod_requests(&p);
        // 1000m for the init container plus the 200m sidecar already running.
        assert_eq!(r.milli_cpu, 1200);
        assert_eq!(r.scalar.get("example.com/gpu"), Some(&2));
    }

    #[test]
    fn scoring_counts_missing_requests_as_the_defaults() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        assert_eq!(non_zero_requests(&p), (1100, 2 * DEFAULT_MEMORY));
        assert!(pod_requests(&p).memory == 0);
    }
}
