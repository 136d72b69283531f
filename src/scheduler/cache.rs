//! The scheduler's view of the cluster: one [`NodeInfo`] per node with the pods bound or
//! assumed onto it and their summed requests, ports and images (upstream's scheduler
//! cache).
//!
//! Invariants:
//! - A pod the scheduler bound counts against its node from the moment it was *assumed*
//!   (before the binding is written), so back-to-back decisions see each other; the
//!   informer's later sighting of the bound pod confirms it instead of adding it twice.
//! - A node's totals are always the sum over its pods: pods are only added and removed
//!   through [`Cache`], which updates both.
//! - Terminated pods (`Succeeded`/`Failed`) hold nothing and are not in the cache.

use super::hints::{self, Plugins};
use crate::api::resources::{node_allocatable, non_zero_requests, pod_requests, Resources};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// A host port a pod uses: (protocol, host IP, port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two uses clash on the same protocol and port when either binds every address.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// What the scheduler derives from a pod once: its requests, priority and host ports.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub requests: Resources,
    pub non_zero: (i64, i64),
    pub priority: i32,
    pub ports: Vec<HostPort>,
    /// Any pod (anti-)affinity term: the pod matters to InterPodAffinity beyond its labels.
    pub has_pod_affinity: bool,
}

pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = &pod.spec else {
        return vec![];
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| HostPort {
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            ip: p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into()),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let has_pod_affinity =
            affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some());
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            requests: pod_requests(&pod),
            non_zero: non_zero_requests(&pod),
            priority: priority(&pod),
            ports: host_ports(&pod),
            has_pod_affinity,
            pod,
        }
    }

    pub fn is_terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }
}

/// One node and what is placed on it.
#[derive(Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while pods are known to be bound to a node the informer has not shown yet.
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    /// `spec.taints` plus the not-ready/unreachable taint its Ready condition implies.
    pub taints: Vec<Taint>,
    pub pods: Vec<Arc<PodInfo>>,
    pub requested: Resources,
    pub non_zero: (i64, i64),
    pub used_ports: Vec<HostPort>,
    /// Normalized image name → size in bytes.
    pub images: HashMap<String, i64>,
    /// The last (namespace + selector, matching pods) count asked of this node: consecutive
    /// pods of one workload ask the same question, and only the node that changed (which
    /// clears this) must count again.
    pub match_memo: std::sync::Mutex<Option<(String, i64)>>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut ni = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            ..Default::default()
        };
        ni.set_node(node);
        ni
    }

    fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = node_allocatable(&node);
        self.taints = effective_taints(&node);
        self.images.clear();
        for img in node.status.iter().flat_map(|s| s.images.iter().flatten()) {
            for name in img.names.iter().flatten() {
                self.images
                    .insert(normalize_image(name), img.size_bytes.unwrap_or(0));
            }
        }
        self.node = Some(node);
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.requested.pods += 1;
        self.non_zero.0 += p.non_zero.0;
        self.non_zero.1 += p.non_zero.1;
        self.used_ports.extend(p.ports.iter().cloned());
        self.pods.push(p);
        self.clear_memo();
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let p = self.pods.swap_remove(i);
        self.clear_memo();
        self.requested.sub(&p.requests);
        self.requested.pods -= 1;
        self.non_zero.0 -= p.non_zero.0;
        self.non_zero.1 -= p.non_zero.1;
        for port in &p.ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == port) {
                self.used_ports.swap_remove(j);
            }
        }
        Some(p)
    }

    fn clear_memo(&mut self) {
        if let Ok(m) = self.match_memo.get_mut() {
            *m = None;
        }
    }

    /// A copy for what-if evaluation (preemption): shares the pods, owns the totals.
    pub fn clone_for_simulation(&self) -> NodeInfo {
        NodeInfo {
            name: self.name.clone(),
            node: self.node.clone(),
            allocatable: self.allocatable.clone(),
            taints: self.taints.clone(),
            pods: self.pods.clone(),
            requested: self.requested.clone(),
            non_zero: self.non_zero,
            used_ports: self.used_ports.clone(),
            images: HashMap::new(),
            match_memo: Default::default(),
        }
    }

    pub fn labels(&self) -> &super::labels::Labels {
        static EMPTY: super::labels::Labels = BTreeMap::new();
        self.node
            .as_ref()
            .map(|n| super::labels::labels_of_node(n))
            .unwrap_or(&EMPTY)
    }
}

/// Upstream's image name normalization: a name without tag or digest means `:latest`.
pub fn normalize_image(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// The node's taints, with the taint its Ready condition implies when the node lifecycle
/// controller has not put it there (skiff has no such controller: a node that is not Ready
/// must still repel pods that do not tolerate it).
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let implied = match ready {
        Some("True") => None,
        Some("False") => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    };
    if let Some(key) = implied {
        if !taints.iter().any(|t| t.key == key) {
            taints.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
    }
    taints
}

struct PodPlace {
    node: String,
    assumed: bool,
}

/// A pending pod nominated to a node (upstream's nominator): preemption chose the node and
/// is waiting for the victims to go.
struct Nomination {
    node: String,
    info: Arc<PodInfo>,
    /// Read from `status.nominatedNodeName` (rather than only decided here, not yet written).
    from_status: bool,
}

/// All nodes and the pods placed on them.
#[derive(Default)]
pub struct Cache {
    nodes: BTreeMap<String, NodeInfo>,
    pods: HashMap<String, PodPlace>,
    /// Normalized image → how many nodes have it (ImageLocality's spread factor).
    image_nodes: HashMap<String, usize>,
    /// Pending pods nominated to a node, by uid.
    nominations: HashMap<String, Nomination>,
}

impl Cache {
    /// Adds or updates a node; returns the plugins whose rejections the change may undo.
    pub fn set_node(&mut self, node: Arc<Node>) -> Plugins {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = self.nodes.entry(name.clone()).or_insert_with(|| NodeInfo {
            name,
            ..Default::default()
        });
        let helps = match &info.node {
            Some(old) => hints::node_changed(old, &node),
            None => hints::NODE_ADDED,
        };
        for img in info.images.keys() {
            if let Some(n) = self.image_nodes.get_mut(img) {
                *n = n.saturating_sub(1);
            }
        }
        info.set_node(node);
        for img in info.images.keys() {
            *self.image_nodes.entry(img.clone()).or_default() += 1;
        }
        helps
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(info) = self.nodes.get_mut(name) else {
            return;
        };
        for img in info.images.keys() {
            if let Some(n) = self.image_nodes.get_mut(img) {
                *n = n.saturating_sub(1);
            }
        }
        info.node = None;
        info.images.clear();
        if info.pods.is_empty() {
            self.nodes.remove(name);
        }
    }

    /// Places a pod the scheduler just decided on, before its binding is written.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.uid);
        self.pods.insert(
            pod.uid.clone(),
            PodPlace {
                node: node.to_owned(),
                assumed: true,
            },
        );
        self.node_entry(node).add_pod(pod);
    }

    /// Undoes [`Cache::assume`] after a failed binding (unless the informer confirmed it).
    /// Drops an assumed pod (its binding failed); true when it was assumed.
    pub fn forget(&mut self, uid: &str) -> bool {
        let assumed = self.is_assumed(uid);
        if assumed {
            self.remove_pod(uid);
        }
        assumed
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// The informer saw a pod bound to a node (or it changed there).
    pub fn add_or_update_bound_pod(&mut self, pod: Arc<Pod>) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let info = Arc::new(PodInfo::new(pod));
        self.remove_pod(&info.uid);
        self.pods.insert(
            info.uid.clone(),
            PodPlace {
                node: node.clone(),
                assumed: false,
            },
        );
        self.node_entry(&node).add_pod(info);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let place = self.pods.remove(uid)?;
        let ni = self.nodes.get_mut(&place.node)?;
        let removed = ni.remove_pod(uid);
        if ni.node.is_none() && ni.pods.is_empty() {
            self.nodes.remove(&place.node);
        }
        removed
    }

    fn node_entry(&mut self, node: &str) -> &mut NodeInfo {
        self.nodes
            .entry(node.to_owned())
            .or_insert_with(|| NodeInfo {
                name: node.to_owned(),
                ..Default::default()
            })
    }

    /// Records that preemption nominated `info`'s pod to `node` (before the status says so).
    pub fn nominate(&mut self, info: Arc<PodInfo>, node: &str) {
        let uid = info.uid.clone();
        let n = Nomination {
            node: node.to_owned(),
            info,
            from_status: false,
        };
        self.nominations.insert(uid, n);
    }

    /// Follows a pending pod's `status.nominatedNodeName`. A nomination decided here and not
    /// yet written is kept while the status has none (upstream's UpdateNominatedPod); one
    /// the status had and dropped is gone.
    pub fn update_nomination(&mut self, pod: &Arc<Pod>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        match node {
            Some(node) => {
                let n = Nomination {
                    node: node.to_owned(),
                    info: Arc::new(PodInfo::new(pod.clone())),
                    from_status: true,
                };
                self.nominations.insert(uid, n);
            }
            None => {
                if self.nominations.get(&uid).is_some_and(|n| n.from_status) {
                    self.nominations.remove(&uid);
                }
            }
        }
    }

    /// The pod was bound, deleted or finished: it no longer reserves a node.
    /// Forgets the pod's nomination; true when it had one (the room it held is free).
    pub fn clear_nomination(&mut self, uid: &str) -> bool {
        self.nominations.remove(uid).is_some()
    }

    /// Pods nominated to `node` whose priority is at least `priority`, other than `uid`:
    /// what a pod is filtered against besides the node's own pods (upstream's
    /// addGENominatedPods).
    pub fn nominated_at_least<'a>(
        &'a self,
        node: &'a str,
        priority: i32,
        uid: &'a str,
    ) -> impl Iterator<Item = &'a Arc<PodInfo>> + 'a {
        self.nominations
            .iter()
            .filter(move |(u, n)| n.node == node && n.info.priority >= priority && *u != uid)
            .map(|(_, n)| &n.info)
    }

    pub fn has_nominations(&self) -> bool {
        !self.nominations.is_empty()
    }

    /// The nodes that exist (in name order).
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.node.is_some())
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|n| n.node.is_some())
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes().count()
    }

    pub fn nodes_with_image(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }
}

/// Whether the informer's pod belongs in the cache: bound and not terminated.
pub fn is_bound_and_live(pod: &Pod) -> bool {
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    bound && !matches!(phase, Some("Succeeded") | Some("Failed"))
}
