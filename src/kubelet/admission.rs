//! Pod admission on the node: upstream's predicate admit handler, the kubelet's share of the
//! scheduler's filters. A pod this node has not started yet is refused (phase Failed, a
//! Warning event) when it names another OS, does not fit in allocatable next to the pods
//! already admitted, does not match the node's selector or required affinity, wants a host
//! port an admitted pod holds, or does not tolerate a NoExecute taint. A pod bound with
//! `spec.nodeName` never met the scheduler, so this is the only check it gets.
//!
//! The reasons and messages are upstream's: the first failing check is reported, resources
//! first (`OutOfcpu`, `OutOfpods`, …), then `NodeAffinity`, `NodePorts`, `TaintToleration`.
//!
//! A critical pod (static, or priority at or above system-cluster-critical's) refused for
//! resources alone is admitted instead, and pods it may preempt are evicted to make the room
//! (upstream's CriticalPodAdmissionHandler, [`decide`]).

use crate::api::resources::{node_allocatable, pod_requests, Resources};
use crate::scheduler::cache::{host_ports, HostPort};
use crate::scheduler::filters::{insufficient_resources, tolerates};
use crate::scheduler::labels::pod_matches_node_selector_and_affinity;
use k8s_openapi::api::core::v1::{Node, Pod};

/// Upstream's `rejectPod` prefixes the status message (not the event) with this.
pub const STATUS_PREFIX: &str = "Pod was rejected: ";

/// The allocatable pod count when the Node has not been seen yet (the kubelet's default).
const DEFAULT_MAX_PODS: i64 = 110;

/// Upstream's `SystemCriticalPriority`: a pod at or above it is critical.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Upstream's `IsCriticalPod`: a static pod, or priority at or above
/// system-cluster-critical's. Node pressure never evicts or refuses one; it may preempt.
pub fn is_critical(pod: &Pod) -> bool {
    is_static(pod)
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.priority)
            .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// A pod from the node's manifest directory.
fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(super::static_pods::SOURCE))
}

/// What an admitted pod holds on the node: what the next pod is admitted against.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Admitted {
    pub requests: Resources,
    pub ports: Vec<HostPort>,
    /// The QoS class: `Burstable` pods are counted in that class's cpu shares.
    pub qos: &'static str,
    /// Upstream's `IsCriticalPod`.
    pub critical: bool,
    pub priority: Option<i32>,
}

impl Admitted {
    pub fn of(pod: &Pod) -> Admitted {
        Admitted {
            requests: pod_requests(pod),
            ports: host_ports(pod),
            qos: super::resources::qos_class(pod),
            critical: is_critical(pod),
            priority: pod.spec.as_ref().and_then(|s| s.priority),
        }
    }

    pub fn burstable(&self) -> bool {
        self.qos == "Burstable"
    }

    /// Upstream's `Preemptable`: a critical pod may preempt any pod that is not, otherwise
    /// only a lower priority may be preempted.
    fn may_preempt(&self, other: &Admitted) -> bool {
        (self.critical && !other.critical)
            || matches!((self.priority, other.priority), (Some(a), Some(b)) if a > b)
    }

    /// The pod's request of `resource` as upstream's `GetResourceRequest` counts it (a pod
    /// is one of `pods`).
    fn request(&self, resource: &str) -> i64 {
        let r = &self.requests;
        match resource {
            "cpu" => r.milli_cpu,
            "memory" => r.memory,
            "ephemeral-storage" => r.ephemeral_storage,
            "pods" => 1,
            other => r.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// What admission decided for a new pod.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Admit,
    /// Admitted once these pods (indices into the admitted pods it was decided against) are
    /// evicted: a critical pod's room.
    Preempt(Vec<usize>),
    /// Refused: reason and message.
    Refuse(String, String),
}

/// [`refuse`], except that a critical pod refused for resources alone is admitted with the
/// pods to preempt for it, when evicting pods it may preempt can make the room (upstream's
/// CriticalPodAdmissionHandler). Otherwise it is refused as any pod.
pub fn decide(pod: &Pod, wanted: &Admitted, node: &NodeView, others: &[&Admitted]) -> Decision {
    let Some((reason, message)) = refuse(pod, wanted, node, others) else {
        return Decision::Admit;
    };
    if wanted.critical && reason.starts_with("OutOf") {
        // Resources are no reason to refuse a critical pod: any other reason is the one
        // given (upstream reports only those).
        if let Some((reason, message)) =
            os_refusal(pod).or_else(|| predicate_refusal(pod, wanted, node, others))
        {
            return Decision::Refuse(reason, message);
        }
        let alloc = node.allocatable();
        let shortfall: Vec<(String, i64)> = insufficient_resources(
            &requests_known_to(wanted, node, &alloc),
            &used_by(others),
            &alloc,
        )
        .into_iter()
        .map(|i| (i.resource, i.requested - (i.capacity - i.used)))
        .collect();
        return match pods_to_preempt(wanted, others, &shortfall) {
            Some(victims) => Decision::Preempt(victims),
            // Upstream's words for a critical pod no preemption can make room for.
            None => Decision::Refuse(
                "UnexpectedAdmissionError".into(),
                format!(
                    "Unexpected error while attempting to recover from admission failure: \
                     preemption: error finding a set of pods to preempt: no set of running \
                     pods found to reclaim resources: [{}]",
                    shortfall
                        .iter()
                        .map(|(r, q)| format!("(res: {r}, q: {q}), "))
                        .collect::<String>()
                ),
            ),
        };
    }
    Decision::Refuse(reason, message)
}

/// Upstream's `getPodsToPreempt`: the fewest pods, lowest QoS class first, whose requests
/// cover `shortfall` (resource, amount); `None` when all the preemptable pods together do
/// not.
fn pods_to_preempt(
    wanted: &Admitted,
    others: &[&Admitted],
    shortfall: &[(String, i64)],
) -> Option<Vec<usize>> {
    let class = |qos: &str| -> Vec<usize> {
        (0..others.len())
            .filter(|&i| others[i].qos == qos && wanted.may_preempt(others[i]))
            .collect()
    };
    let (best_effort, burstable, guaranteed) =
        (class("BestEffort"), class("Burstable"), class("Guaranteed"));
    let left = |pods: &[usize]| subtract(shortfall, pods.iter().map(|&i| others[i]));
    let all: Vec<usize> = [&best_effort[..], &burstable, &guaranteed].concat();
    if !left(&all).is_empty() {
        return None;
    }
    // Guaranteed pods only for what all the others cannot cover, then Burstable, then
    // BestEffort for the rest.
    let g = by_distance(
        others,
        guaranteed,
        left(&[&best_effort[..], &burstable].concat()),
    )?;
    let b = by_distance(others, burstable, left(&[&best_effort[..], &g].concat()))?;
    let e = by_distance(others, best_effort, left(&[&b[..], &g].concat()))?;
    Some([e, b, g].concat())
}

/// What is left of `shortfall` once `pods` are gone.
fn subtract<'a>(
    shortfall: &[(String, i64)],
    pods: impl Iterator<Item = &'a Admitted> + Clone,
) -> Vec<(String, i64)> {
    shortfall
        .iter()
        .filter_map(|(r, q)| {
            let left = q - pods.clone().map(|p| p.request(r)).sum::<i64>();
            (left > 0).then(|| (r.clone(), left))
        })
        .collect()
}

/// Upstream's `getPodsToPreemptByDistance`: repeatedly the pod that covers most of what is
/// left (the least squared share of each requirement left), the smaller one (memory, then
/// cpu) on a tie.
fn by_distance(
    others: &[&Admitted],
    mut pods: Vec<usize>,
    mut shortfall: Vec<(String, i64)>,
) -> Option<Vec<usize>> {
    let distance = |short: &[(String, i64)], p: &Admitted| -> f64 {
        short
            .iter()
            .map(|(r, q)| {
                let left = (q - p.request(r)) as f64;
                if left > 0.0 {
                    (left / *q as f64).powi(2)
                } else {
                    0.0
                }
            })
            .sum()
    };
    let smaller = |a: &Admitted, b: &Admitted| {
        (a.requests.memory, a.requests.milli_cpu) <= (b.requests.memory, b.requests.milli_cpu)
    };
    let mut chosen = Vec::new();
    while !shortfall.is_empty() {
        let mut best: Option<(usize, f64)> = None;
        for (at, &i) in pods.iter().enumerate() {
            let d = distance(&shortfall, others[i]);
            let better = match best {
                None => true,
                Some((b, bd)) => d < bd || (d == bd && smaller(others[i], others[pods[b]])),
            };
            if better {
                best = Some((at, d));
            }
        }
        let i = pods.swap_remove(best?.0);
        shortfall = subtract(&shortfall, std::iter::once(others[i]));
        chosen.push(i);
    }
    Some(chosen)
}

/// The node as admission sees it: the Node when known, else the kubelet's own figures
/// (then nothing label-, taint- or extended-resource-related is checked).
pub struct NodeView<'a> {
    pub node: Option<&'a Node>,
    pub cpu_milli: i64,
    pub memory_bytes: i64,
}

impl NodeView<'_> {
    fn allocatable(&self) -> Resources {
        // A Node no kubelet has reported resources for yet (created bare, before this
        // kubelet's first status update) says nothing about capacity: the kubelet's own
        // figures stand in, as for a Node not seen yet.
        let reported = self.node.filter(|n| {
            n.status
                .as_ref()
                .is_some_and(|s| s.allocatable.is_some() || s.capacity.is_some())
        });
        match reported {
            Some(n) => node_allocatable(n),
            None => Resources {
                milli_cpu: self.cpu_milli,
                memory: self.memory_bytes,
                ephemeral_storage: i64::MAX,
                pods: DEFAULT_MAX_PODS,
                ..Default::default()
            },
        }
    }
}

/// Why `pod` (holding `wanted`: [`Admitted::of`] the pod) may not run next to `others`
/// (reason, message), or `None` to admit it.
pub fn refuse(
    pod: &Pod,
    wanted: &Admitted,
    node: &NodeView,
    others: &[&Admitted],
) -> Option<(String, String)> {
    pod.spec.as_ref()?;
    os_refusal(pod)
        .or_else(|| insufficient(wanted, node, others))
        .or_else(|| predicate_refusal(pod, wanted, node, others))
}

/// The pod names another OS.
fn os_refusal(pod: &Pod) -> Option<(String, String)> {
    let spec = pod.spec.as_ref()?;
    let os_label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/os"));
    if os_label.is_some_and(|os| os != "linux") {
        return Some((
            "PodOSSelectorNodeLabelDoesNotMatch".into(),
            "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label".into(),
        ));
    }
    if spec.os.as_ref().is_some_and(|os| os.name != "linux") {
        return Some((
            "PodOSNotSupported".into(),
            "Failed to admit pod as the OS field doesn't match node OS".into(),
        ));
    }
    None
}

/// NodeAffinity, NodePorts and TaintToleration.
fn predicate_refusal(
    pod: &Pod,
    wanted: &Admitted,
    node: &NodeView,
    others: &[&Admitted],
) -> Option<(String, String)> {
    let spec = pod.spec.as_ref()?;
    let predicate = |name: &str, desc: &str| {
        Some((name.to_owned(), format!("Predicate {name} failed: {desc}")))
    };
    if let Some(n) = node.node {
        if !pod_matches_node_selector_and_affinity(pod, n) {
            return predicate(
                "NodeAffinity",
                "node(s) didn't match Pod's node affinity/selector",
            );
        }
    }
    let taken = others.iter().flat_map(|o| &o.ports);
    if taken
        .into_iter()
        .any(|t| wanted.ports.iter().any(|w| w.conflicts(t)))
    {
        return predicate(
            "NodePorts",
            "node(s) didn't have free ports for the requested pod ports",
        );
    }
    // Static pods run whatever the node's taints say (upstream skips them here).
    let taints = node
        .node
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)));
    if untolerated && !is_static(pod) {
        return predicate(
            "TaintToleration",
            "node(s) had taints that the pod didn't tolerate",
        );
    }
    None
}

/// The first resource short (upstream's `noderesources.Fits`, reported with the kubelet's
/// `OutOf<resource>` reason). Extended resources the node does not know are left out of the
/// request first (upstream's `removeMissingExtendedResources`); without the Node, every
/// scalar resource is.
fn insufficient(
    wanted: &Admitted,
    node: &NodeView,
    others: &[&Admitted],
) -> Option<(String, String)> {
    let alloc = node.allocatable();
    let req = requests_known_to(wanted, node, &alloc);
    let first = insufficient_resources(&req, &used_by(others), &alloc)
        .into_iter()
        .next()?;
    Some((
        format!("OutOf{}", first.resource),
        format!(
            "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
            first.resource, first.requested, first.used, first.capacity
        ),
    ))
}

/// What `others` hold together, pods counted.
fn used_by(others: &[&Admitted]) -> Resources {
    let mut used = Resources::default();
    for o in others {
        used.add(&o.requests);
    }
    used.pods = others.len() as i64;
    used
}

/// `wanted`'s requests without the extended resources the node does not know.
fn requests_known_to(wanted: &Admitted, node: &NodeView, alloc: &Resources) -> Resources {
    let mut req = wanted.requests.clone();
    req.scalar.retain(|name, _| {
        let extended = !name.starts_with("hugepages-") && !name.starts_with("attachable-volumes-");
        node.node.is_some() && (!extended || alloc.scalar.contains_key(name))
    });
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, NodeSpec, NodeStatus, PodSpec, ResourceRequirements, Taint,
        Toleration,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn node(cpu: &str, pods: &str, taints: Vec<Taint>) -> Node {
        let alloc: BTreeMap<String, Quantity> = [
            ("cpu", cpu),
            ("memory", "4Gi"),
            ("pods", pods),
            ("ephemeral-storage", "10Gi"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Quantity(v.into())))
        .collect();
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                labels: Some([("disk".to_owned(), "ssd".to_owned())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(alloc),
                ..Default::default()
            }),
        }
    }

    fn pod(cpu: Option<&str>, host_port: Option<i32>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    resources: cpu.map(|c| ResourceRequirements {
                        requests: Some([("cpu".to_owned(), Quantity(c.into()))].into()),
                        ..Default::default()
                    }),
                    ports: host_port.map(|p| {
                        vec![ContainerPort {
                            container_port: 80,
                            host_port: Some(p),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// [`refuse`] for a pod that holds what it asks for.
    fn check(p: &Pod, node: &NodeView, others: &[&Admitted]) -> Option<(String, String)> {
        refuse(p, &Admitted::of(p), node, others)
    }

    fn view(n: &Node) -> NodeView<'_> {
        NodeView {
            node: Some(n),
            cpu_milli: 0,
            memory_bytes: 0,
        }
    }

    #[test]
    fn a_host_port_held_by_an_admitted_pod_is_refused_with_upstreams_words() {
        let n = node("2", "110", vec![]);
        let holder = Admitted::of(&pod(None, Some(8080)));
        let refused = check(&pod(None, Some(8080)), &view(&n), &[&holder]).unwrap();
        assert_eq!(refused.0, "NodePorts");
        assert_eq!(
            refused.1,
            "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
        );
        assert_eq!(check(&pod(None, Some(8081)), &view(&n), &[&holder]), None);
        assert_eq!(check(&pod(None, Some(8080)), &view(&n), &[]), None);
    }

    #[test]
    fn requests_beyond_what_the_other_pods_leave_are_out_of_that_resource() {
        let n = node("2", "110", vec![]);
        let big = Admitted::of(&pod(Some("1500m"), None));
        let (reason, msg) = check(&pod(Some("1"), None), &view(&n), &[&big]).unwrap();
        assert_eq!(reason, "OutOfcpu");
        assert_eq!(
            msg,
            "Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000"
        );
        assert_eq!(check(&pod(Some("500m"), None), &view(&n), &[&big]), None);

        let full = node("2", "1", vec![]);
        let (reason, msg) = check(&pod(None, None), &view(&full), &[&big]).unwrap();
        assert_eq!(reason, "OutOfpods");
        assert_eq!(
            msg,
            "Node didn't have enough resource: pods, requested: 1, used: 1, capacity: 1"
        );
    }

    #[test]
    fn selector_mismatch_and_untolerated_no_execute_taints_are_refused() {
        let n = node("2", "110", vec![]);
        let mut p = pod(None, None);
        p.spec.as_mut().unwrap().node_selector = Some([("disk".into(), "hdd".into())].into());
        assert_eq!(check(&p, &view(&n), &[]).unwrap().0, "NodeAffinity");

        let taint = |effect: &str| Taint {
            key: "dedicated".into(),
            effect: effect.into(),
            ..Default::default()
        };
        let tainted = node("2", "110", vec![taint("NoSchedule"), taint("NoExecute")]);
        let (reason, msg) = check(&pod(None, None), &view(&tainted), &[]).unwrap();
        assert_eq!(reason, "TaintToleration");
        assert_eq!(
            msg,
            "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate"
        );
        // NoSchedule is the scheduler's business; NoExecute tolerated is admitted.
        let mut tolerant = pod(None, None);
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        }]);
        assert_eq!(check(&tolerant, &view(&tainted), &[]), None);
    }

    #[test]
    fn without_the_node_only_cpu_memory_pods_and_ports_are_checked() {
        let mut p = pod(Some("3"), None);
        p.spec.as_mut().unwrap().node_selector = Some([("disk".into(), "hdd".into())].into());
        let unknown = NodeView {
            node: None,
            cpu_milli: 4000,
            memory_bytes: 1 << 30,
        };
        assert_eq!(check(&p, &unknown, &[]), None);
        let small = NodeView {
            cpu_milli: 2000,
            ..unknown
        };
        assert_eq!(check(&p, &small, &[]).unwrap().0, "OutOfcpu");
    }

    #[test]
    fn a_node_without_reported_resources_is_sized_by_the_kubelets_own_figures() {
        // A Node created before its kubelet's first status update: no allocatable, no
        // capacity. Its pods fit as on a Node not seen yet, and a static pod is not
        // refused for want of room.
        let mut bare = node("4", "110", vec![]);
        bare.status = None;
        let view = NodeView {
            node: Some(&bare),
            cpu_milli: 4000,
            memory_bytes: 1 << 30,
        };
        let p = pod(Some("1"), None);
        assert_eq!(check(&p, &view, &[]), None);
        let mut static_pod = pod(None, None);
        static_pod.metadata.annotations = Some(
            [(
                crate::kubelet::static_pods::SOURCE.to_owned(),
                "file".to_owned(),
            )]
            .into(),
        );
        assert!(matches!(
            decide(&static_pod, &Admitted::of(&static_pod), &view, &[]),
            Decision::Admit
        ));
        // Once resources are reported, they decide.
        let reported = node("500m", "110", vec![]);
        assert_eq!(
            check(&p, &self::view(&reported), &[]).unwrap().0,
            "OutOfcpu"
        );
    }

    fn held(qos: &'static str, milli_cpu: i64, memory: i64) -> Admitted {
        Admitted {
            requests: Resources {
                milli_cpu,
                memory,
                ..Default::default()
            },
            qos,
            ..Default::default()
        }
    }

    fn critical(mut p: Pod) -> Pod {
        p.spec.as_mut().unwrap().priority = Some(SYSTEM_CRITICAL_PRIORITY);
        p
    }

    #[test]
    fn a_critical_pod_short_of_resources_preempts_the_fewest_pods_lowest_class_first() {
        let n = node("2", "110", vec![]);
        let (be, bu, gu) = (
            held("BestEffort", 0, 0),
            held("Burstable", 500, 0),
            held("Guaranteed", 1000, 0),
        );
        // 1.5 cpu in use, 1.5 wanted: 1 cpu short. All the BestEffort and Burstable pods
        // cover only 0.5 of it, so the Guaranteed one goes, and then nothing else.
        let p = critical(pod(Some("1500m"), None));
        let wanted = Admitted::of(&p);
        assert_eq!(
            decide(&p, &wanted, &view(&n), &[&be, &bu, &gu]),
            Decision::Preempt(vec![2])
        );
        // 0.5 short: the Burstable pod is enough; the Guaranteed one is spared.
        let p = critical(pod(Some("1000m"), None));
        let wanted = Admitted::of(&p);
        assert_eq!(
            decide(&p, &wanted, &view(&n), &[&be, &bu, &gu]),
            Decision::Preempt(vec![1])
        );
        // A pod short: one BestEffort pod, the smaller (memory first) of two.
        let full = node("2", "3", vec![]);
        let (be_big, be_small) = (held("BestEffort", 0, 64 << 20), held("BestEffort", 0, 0));
        let p = critical(pod(None, None));
        let wanted = Admitted::of(&p);
        assert_eq!(
            decide(&p, &wanted, &view(&full), &[&be_big, &be_small, &gu]),
            Decision::Preempt(vec![1])
        );
    }

    #[test]
    fn only_a_critical_pod_refused_for_resources_alone_may_preempt_pods_it_outranks() {
        let n = node("2", "110", vec![]);
        let gu = held("Guaranteed", 1500, 0);
        // Not critical: refused as before.
        let p = pod(Some("1000m"), None);
        let r = decide(&p, &Admitted::of(&p), &view(&n), &[&gu]);
        assert!(
            matches!(r, Decision::Refuse(ref reason, _) if reason == "OutOfcpu"),
            "{r:?}"
        );
        // Critical, but also short of a host port the other pod holds: no preemption, and
        // the port is the reason given.
        let mut holder = gu.clone();
        holder.ports = host_ports(&pod(None, Some(8080)));
        let p = critical(pod(Some("1000m"), Some(8080)));
        let r = decide(&p, &Admitted::of(&p), &view(&n), &[&holder]);
        assert!(
            matches!(r, Decision::Refuse(ref reason, _) if reason == "NodePorts"),
            "{r:?}"
        );
        // Critical, but the pods in the way are critical too: refused as upstream words it.
        let mut other_critical = gu.clone();
        other_critical.critical = true;
        let p = critical(pod(Some("1000m"), None));
        let r = decide(&p, &Admitted::of(&p), &view(&n), &[&other_critical]);
        assert_eq!(
            r,
            Decision::Refuse(
                "UnexpectedAdmissionError".into(),
                "Unexpected error while attempting to recover from admission failure: \
                 preemption: error finding a set of pods to preempt: no set of running pods \
                 found to reclaim resources: [(res: cpu, q: 500), ]"
                    .into()
            )
        );
        // A critical pod that fits is simply admitted.
        let p = critical(pod(Some("100m"), None));
        assert_eq!(
            decide(&p, &Admitted::of(&p), &view(&n), &[&gu]),
            Decision::Admit
        );
        // A static pod is critical whatever its priority.
        let mut s = pod(Some("1000m"), None);
        s.metadata.annotations = Some(
            [(
                super::super::static_pods::SOURCE.to_owned(),
                "file".to_owned(),
            )]
            .into(),
        );
        assert_eq!(
            decide(&s, &Admitted::of(&s), &view(&n), &[&gu]),
            Decision::Preempt(vec![0])
        );
    }
}
