//! Pod admission on the node: upstream's predicate admit handler, the kubelet's share of the
//! scheduler's filters. A pod this node has not started yet is refused (phase Failed, a
//! Warning event) when it names another OS, does not fit in allocatable next to the pods
//! already admitted, does not match the node's selector or required affinity, wants a host
//! port an admitted pod holds, or does not tolerate a NoExecute taint. A pod bound with
//! `spec.nodeName` never met the scheduler, so this is the only check it gets.
//!
//! The reasons and messages are upstream's: the first failing check is reported, resources
//! first (`OutOfcpu`, `OutOfpods`, …), then `NodeAffinity`, `NodePorts`, `TaintToleration`.

use crate::api::resources::{node_allocatable, pod_requests, Resources};
use crate::scheduler::cache::{host_ports, HostPort};
use crate::scheduler::filters::{insufficient_resources, tolerates};
use crate::scheduler::labels::pod_matches_node_selector_and_affinity;
use k8s_openapi::api::core::v1::{Node, Pod};

/// Upstream's `rejectPod` prefixes the status message (not the event) with this.
pub const STATUS_PREFIX: &str = "Pod was rejected: ";

/// The allocatable pod count when the Node has not been seen yet (the kubelet's default).
const DEFAULT_MAX_PODS: i64 = 110;

/// What an admitted pod holds on the node: what the next pod is admitted against.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub requests: Resources,
    pub ports: Vec<HostPort>,
    /// Counted in the Burstable QoS class's cpu shares.
    pub burstable: bool,
}

impl Admitted {
    pub fn of(pod: &Pod) -> Admitted {
        Admitted {
            requests: pod_requests(pod),
            ports: host_ports(pod),
            burstable: super::resources::qos_class(pod) == "Burstable",
        }
    }
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
        match self.node {
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
    if let Some(r) = insufficient(wanted, node, others) {
        return Some(r);
    }
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
    let is_static = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(super::static_pods::SOURCE));
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
    if untolerated && !is_static {
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
    let mut used = Resources::default();
    for o in others {
        used.add(&o.requests);
    }
    used.pods = others.len() as i64;
    let mut req = wanted.requests.clone();
    req.scalar.retain(|name, _| {
        let extended = !name.starts_with("hugepages-") && !name.starts_with("attachable-volumes-");
        node.node.is_some() && (!extended || alloc.scalar.contains_key(name))
    });
    let first = insufficient_resources(&req, &used, &alloc)
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
}
