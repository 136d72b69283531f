//! One scheduling cycle of the default profile as a pure function of the cache: PreFilter
//! (volumes, topology spread and inter-pod affinity counts), Filter over every node,
//! Score of the feasible ones with the default weights, and the choice of the best node
//! (ties broken at random, as upstream's reservoir sampling does).
//!
//! Invariant: no I/O and no mutation: the caller assumes the pod onto the chosen node.
//! Everything outside pods and nodes comes through [`Lookups`], so tests run on plain
//! values.

use super::affinity;
use super::cache::{Cache, NodeInfo, PodInfo};
use super::diagnosis::{Diagnosis, NO_NODES};
use super::filters::{self, FilterResult};
use super::hints::Plugins;
use super::labels::Labels;
use super::scores::{self, *};
use super::spread;
use super::volume_binding;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Toleration};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rand::Rng;
use std::sync::Arc;

/// What the scheduler reads besides pods and nodes.
pub trait Lookups {
    fn pvc(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    /// Every PersistentVolume (those a claim waiting for its first consumer may bind to).
    fn pvs(&self) -> Vec<Arc<PersistentVolume>> {
        Vec::new()
    }
    /// StorageClasses (whether an unbound claim waits for its first consumer).
    fn storage_class(&self, _name: &str) -> Option<Arc<StorageClass>> {
        None
    }
    fn namespace_labels(&self, ns: &str) -> Option<Labels>;
    /// The merged selector of the Services, ReplicationController, ReplicaSet or
    /// StatefulSet that select or own the pod (system default spreading); `None` if empty.
    fn owner_selector(&self, pod: &Pod) -> Option<LabelSelector>;
}

/// A world with nothing but pods and nodes.
pub struct NoLookups;

impl Lookups for NoLookups {
    fn pvc(&self, _: &str, _: &str) -> Option<Arc<PersistentVolumeClaim>> {
        None
    }
    fn pv(&self, _: &str) -> Option<Arc<PersistentVolume>> {
        None
    }
    fn namespace_labels(&self, _: &str) -> Option<Labels> {
        None
    }
    fn owner_selector(&self, _: &Pod) -> Option<LabelSelector> {
        None
    }
}

/// The PreFilter results of one cycle.
pub struct Cycle<'p> {
    pub pod: &'p Pod,
    pub info: Arc<PodInfo>,
    pub tolerations: &'p [Toleration],
    pub volumes: Vec<Arc<PersistentVolume>>,
    /// The pod's unbound claims that wait for their first consumer.
    pub delayed: volume_binding::Delayed,
    pub spread: Option<spread::FilterState>,
    pub affinity: Option<affinity::FilterState>,
}

/// PreFilter: fails with upstream's message when a claim the pod uses is missing, being
/// deleted, or unbound in a class that binds at once (the binder has to bind it first).
pub fn prefilter<'p>(
    cache: &Cache,
    pod: &'p Arc<Pod>,
    lookups: &dyn Lookups,
) -> Result<Cycle<'p>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut volumes = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(claim) = &v.persistent_volume_claim else {
            continue;
        };
        let name = &claim.claim_name;
        let Some(pvc) = lookups.pvc(ns, name) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let bound = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref());
        if let Some(pv) = bound.filter(|n| !n.is_empty()).and_then(|n| lookups.pv(n)) {
            volumes.push(pv);
        }
    }
    // Claims waiting for their first consumer: each node needs an Available volume it can
    // reach for each, or a provisioner that makes one there (Filter).
    let delayed = volume_binding::delayed_claims(pod, lookups)?;
    let ns_labels = |ns: &str| lookups.namespace_labels(ns);
    Ok(Cycle {
        pod,
        info: Arc::new(PodInfo::new(pod.clone())),
        tolerations: filters::tolerations(pod),
        volumes,
        delayed,
        spread: spread::prefilter(pod, cache.nodes()),
        affinity: affinity::prefilter(pod, cache.nodes(), &ns_labels),
    })
}

/// Every filter of the default profile, in upstream's order; the first rejection wins.
pub fn filter_node(c: &Cycle, node: &NodeInfo) -> FilterResult {
    let Some(n) = &node.node else {
        return Err(filters::Rejection::unresolvable("node(s) not found").by(Plugins::NODE_NAME));
    };
    let by = |p: Plugins| move |r: filters::Rejection| r.by(p);
    filters::node_unschedulable(c.pod, n).map_err(by(Plugins::NODE_UNSCHEDULABLE))?;
    filters::node_name(c.pod, n).map_err(by(Plugins::NODE_NAME))?;
    filters::taint_toleration(c.tolerations, &node.taints)
        .map_err(by(Plugins::TAINT_TOLERATION))?;
    filters::node_affinity(c.pod, n).map_err(by(Plugins::NODE_AFFINITY))?;
    filters::node_ports(&c.info.ports, node).map_err(by(Plugins::NODE_PORTS))?;
    filters::resources_fit(&c.info.requests, node).map_err(by(Plugins::RESOURCES_FIT))?;
    filters::volume_node_affinity(&c.volumes, n).map_err(by(Plugins::VOLUME_BINDING))?;
    if !c.delayed.is_empty() {
        c.delayed
            .find_volumes(n)
            .map_err(by(Plugins::VOLUME_BINDING))?;
    }
    if let Some(s) = &c.spread {
        spread::filter(s, node).map_err(by(Plugins::TOPOLOGY_SPREAD))?;
    }
    if let Some(a) = &c.affinity {
        affinity::filter(a, node).map_err(by(Plugins::INTER_POD_AFFINITY))?;
    }
    Ok(())
}

/// [`filter_node`] with the pods nominated to the node at the pod's priority or above
/// counted as if placed there (then again without them, as upstream's
/// RunFilterPluginsWithNominatedPods does): a pod that preempted keeps the room it made
/// from lower-priority pods scheduled meanwhile. Topology spread and inter-pod affinity
/// see the nominated pods only through their PreFilter counts (not added here).
pub fn filter_with_nominated(cache: &Cache, c: &Cycle, node: &NodeInfo) -> FilterResult {
    if cache.has_nominations() {
        let mut nominated = cache
            .nominated_at_least(&node.name, c.info.priority, &c.info.uid)
            .peekable();
        if nominated.peek().is_some() {
            let mut sim = node.clone_for_simulation();
            for p in nominated {
                sim.add_pod(p.clone());
            }
            filter_node(c, &sim)?;
        }
    }
    filter_node(c, node)
}

/// The feasible nodes, and why the others were rejected.
pub fn find_feasible<'c>(cache: &'c Cache, c: &Cycle) -> (Vec<&'c NodeInfo>, Diagnosis) {
    let mut diag = Diagnosis {
        num_nodes: cache.num_nodes(),
        ..Default::default()
    };
    let mut feasible = Vec::new();
    for node in cache.nodes() {
        match filter_with_nominated(cache, c, node) {
            Ok(()) => feasible.push(node),
            Err(r) => {
                diag.nodes.insert(node.name.clone(), r);
            }
        }
    }
    (feasible, diag)
}

/// The weighted total score of each feasible node.
pub fn score_nodes(
    cache: &Cache,
    c: &Cycle,
    feasible: &[&NodeInfo],
    lookups: &dyn Lookups,
) -> Vec<i64> {
    let pod = c.pod;
    let n = feasible.len();
    let mut total = vec![0i64; n];
    let mut add = |scores: Vec<i64>, w: i64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += s * w;
        }
    };
    // NodeResourcesFit (LeastAllocated) and BalancedAllocation.
    add(
        feasible
            .iter()
            .map(|ni| least_allocated(c.info.non_zero, ni))
            .collect(),
        W_FIT,
    );
    let req = (c.info.requests.milli_cpu, c.info.requests.memory);
    if req != (0, 0) {
        add(
            feasible
                .iter()
                .map(|ni| balanced_allocation(req, ni))
                .collect(),
            W_BALANCED,
        );
    }
    // NodeAffinity (preferred).
    let mut na: Vec<i64> = feasible
        .iter()
        .map(|ni| {
            ni.node
                .as_ref()
                .map_or(0, |node| scores::node_affinity(pod, node))
        })
        .collect();
    default_normalize(&mut na, false);
    add(na, W_NODE_AFFINITY);
    // TaintToleration (PreferNoSchedule).
    let mut tt: Vec<i64> = feasible
        .iter()
        .map(|ni| intolerable_taints(c.tolerations, ni))
        .collect();
    default_normalize(&mut tt, true);
    add(tt, W_TAINT);
    // PodTopologySpread.
    let (soft, defaulted) = spread::soft_constraints(pod, {
        let has_own = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|v| !v.is_empty());
        if has_own {
            None
        } else {
            lookups.owner_selector(pod)
        }
    });
    if let Some(st) = spread::prescore(pod, soft, defaulted, feasible, cache.nodes()) {
        let mut s: Vec<i64> = feasible.iter().map(|ni| spread::score(&st, ni)).collect();
        let names: Vec<&str> = feasible.iter().map(|ni| ni.name.as_str()).collect();
        spread::normalize(&st, &names, &mut s);
        add(s, W_SPREAD);
    }
    // InterPodAffinity (preferred).
    let ns_labels = |ns: &str| lookups.namespace_labels(ns);
    if let Some(st) = affinity::prescore(pod, cache.nodes(), &ns_labels) {
        let mut s: Vec<i64> = feasible.iter().map(|ni| affinity::score(&st, ni)).collect();
        affinity::normalize(&mut s);
        add(s, W_INTER_POD);
    }
    // ImageLocality.
    let total_nodes = cache.num_nodes();
    let images = pod_images(pod);
    add(
        feasible
            .iter()
            .map(|ni| image_locality(&images, ni, total_nodes, |img| cache.nodes_with_image(img)))
            .collect(),
        W_IMAGE,
    );
    total
}

/// The best-scored index; ties go to a uniformly random one of the best.
pub fn select(scores: &[i64], rng: &mut impl Rng) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        match best {
            Some(b) if *s < scores[b] => {}
            Some(b) if *s == scores[b] => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some(i);
                }
            }
            _ => {
                best = Some(i);
                ties = 1;
            }
        }
    }
    best
}

/// Where a pod goes.
#[derive(Debug)]
pub struct Placement {
    pub node: String,
    /// The pod's cache entry.
    pub info: Arc<PodInfo>,
    /// What PreBind does for the pod's claims that wait for their first consumer: the
    /// choices Filter made for this node, on the same snapshot.
    pub claims: Vec<volume_binding::ClaimBinding>,
}

/// Where the pod goes, or why nothing fits.
pub fn schedule(
    cache: &Cache,
    pod: &Arc<Pod>,
    lookups: &dyn Lookups,
    rng: &mut impl Rng,
) -> Result<Placement, Diagnosis> {
    if cache.num_nodes() == 0 {
        return Err(Diagnosis {
            pre_filter: None,
            ..Default::default()
        });
    }
    let cycle = match prefilter(cache, pod, lookups) {
        Ok(c) => c,
        Err(msg) => {
            return Err(Diagnosis {
                num_nodes: cache.num_nodes(),
                pre_filter: Some(msg),
                ..Default::default()
            })
        }
    };
    let (feasible, mut diag) = find_feasible(cache, &cycle);
    let chosen = match feasible.len() {
        0 => return Err(diag),
        1 => 0,
        _ => {
            let s = score_nodes(cache, &cycle, &feasible, lookups);
            select(&s, rng).unwrap_or(0)
        }
    };
    let node = feasible[chosen];
    // The node passed Filter on the same state, so its volume choices are there to be had;
    // were they not, binding without them would leave the claims unprepared.
    let claims = match &node.node {
        Some(n) if !cycle.delayed.is_empty() => match cycle.delayed.bindings(n) {
            Ok(claims) => claims,
            Err(r) => {
                diag.nodes
                    .insert(node.name.clone(), r.by(Plugins::VOLUME_BINDING));
                return Err(diag);
            }
        },
        _ => Vec::new(),
    };
    Ok(Placement {
        node: node.name.clone(),
        info: cycle.info,
        claims,
    })
}

/// The message of a diagnosis, with upstream's special case of an empty cluster.
pub fn failure_message(d: &Diagnosis) -> String {
    if d.num_nodes == 0 && d.pre_filter.is_none() {
        NO_NODES.to_owned()
    } else {
        d.message()
    }
}
