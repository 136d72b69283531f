//! Topology-aware hints (upstream's `staging/src/k8s.io/endpointslice/topologycache`): for a
//! service annotated `service.kubernetes.io/topology-mode: Auto`, each ready endpoint gets a
//! `hints.forZones` entry so that every zone receives a share of endpoints proportional to
//! the allocatable CPU of its ready nodes, and no endpoint takes more than 20% over its fair
//! share of traffic. When that cannot be done (nodes without zone or CPU, one zone only,
//! fewer endpoints than zones, an endpoint without zone) every hint is removed and a
//! `TopologyAwareHintsDisabled` warning says why.
//!
//! Invariant: hints change only on slices the sync writes anyway, unless an unchanged
//! slice's hints are no longer valid (then it is rewritten too), so a steady service causes
//! no writes.

use super::reconciler::Plan;
use crate::api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, EndpointSlice, ForZone};
use std::collections::BTreeMap;

pub const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
/// The annotation `topology-mode` replaced; still honoured.
pub const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// The most an endpoint may be overloaded relative to its zone's fair share.
const OVERLOAD_THRESHOLD: f64 = 0.2;

pub const NO_ZONE_SPECIFIED: &str = "One or more endpoints do not have a zone specified";
pub const NO_ALLOCATED_HINTS: &str = "No hints allocated for zones";
pub const HINTS_ENABLED: &str = "Topology Aware Hints has been enabled";
pub const HINTS_DISABLED: &str = "Topology Aware Hints has been disabled";
pub const INSUFFICIENT_NODE_INFO: &str =
    "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes";
pub const ONE_ZONE_ONLY: &str = "Nodes only ready in one zone";
pub const INSUFFICIENT_ENDPOINTS: &str = "Insufficient number of endpoints";
pub const MIN_EXCEEDS_THRESHOLD: &str =
    "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold";

/// Whether the service asks for hints (`Auto`, or `auto`, in either annotation).
pub fn hints_enabled(svc: &Service) -> bool {
    let a = svc.metadata.annotations.as_ref();
    let get = |k: &str| a.and_then(|a| a.get(k)).map(String::as_str);
    match get(ANNOTATION_TOPOLOGY_MODE) {
        Some(v) => v == "Auto" || v == "auto",
        None => matches!(get(ANNOTATION_TOPOLOGY_AWARE_HINTS), Some("Auto" | "auto")),
    }
}

/// Each zone's share of the allocatable CPU of the ready worker nodes; `None` when some
/// ready node has no zone or no CPU, or fewer than two zones have any (no hints then).
pub fn cpu_ratios(nodes: &[std::sync::Arc<Node>]) -> Option<BTreeMap<String, f64>> {
    let mut by_zone: BTreeMap<String, i128> = BTreeMap::new();
    let mut total = 0i128;
    for node in nodes {
        let labels = node.metadata.labels.as_ref();
        let has = |k: &str| labels.is_some_and(|l| l.contains_key(k));
        if has("node-role.kubernetes.io/control-plane") || has("node-role.kubernetes.io/master") {
            continue;
        }
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if !ready {
            continue;
        }
        let cpu = status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("cpu"))
            .and_then(|q| Quantity::parse(&q.0).ok())
            .map(|q| q.milli_value())
            .unwrap_or(0);
        let zone = labels
            .and_then(|l| l.get(LABEL_ZONE))
            .filter(|z| !z.is_empty());
        let zone = zone.filter(|_| cpu > 0)?;
        *by_zone.entry(zone.clone()).or_default() += cpu;
        total += cpu;
    }
    if total == 0 || by_zone.len() < 2 {
        return None;
    }
    Some(
        by_zone
            .into_iter()
            .map(|(z, c)| (z, c as f64 / total as f64))
            .collect(),
    )
}

/// A warning or notice about hints, recorded on the service.
#[derive(Debug, Clone, PartialEq)]
pub struct HintEvent {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn disabled(message: String) -> HintEvent {
    HintEvent {
        type_: crate::events::WARNING,
        reason: "TopologyAwareHintsDisabled",
        message,
    }
}

#[derive(Debug, Clone, Copy)]
struct Allocation {
    minimum: usize,
    maximum: usize,
    desired: f64,
}

fn allocations(
    ratios: Option<&BTreeMap<String, f64>>,
    n: usize,
) -> Result<BTreeMap<String, Allocation>, String> {
    let Some(ratios) = ratios else {
        return Err(INSUFFICIENT_NODE_INFO.into());
    };
    if ratios.len() < 2 {
        return Err(ONE_ZONE_ONLY.into());
    }
    if ratios.len() > n {
        return Err(format!(
            "{INSUFFICIENT_ENDPOINTS} ({n} endpoints, {} zones)",
            ratios.len()
        ));
    }
    let mut out = BTreeMap::new();
    let mut min_total = 0usize;
    for (zone, ratio) in ratios {
        let desired = ratio * n as f64;
        let minimum = (desired / (1.0 + OVERLOAD_THRESHOLD)).ceil() as usize;
        min_total += minimum;
        if min_total > n {
            return Err(format!(
                "{MIN_EXCEEDS_THRESHOLD} ({n} endpoints, {} zones)",
                ratios.len()
            ));
        }
        out.insert(
            zone.clone(),
            Allocation {
                minimum,
                maximum: 0,
                desired: desired.max(minimum as f64),
            },
        );
    }
    for a in out.values_mut() {
        a.maximum = a.minimum + n - min_total;
    }
    Ok(out)
}

fn is_ready(ep: &Endpoint) -> bool {
    ep.conditions.as_ref().and_then(|c| c.ready) == Some(true)
}

fn zone_hint(zone: &str) -> Option<EndpointHints> {
    Some(EndpointHints {
        for_zones: Some(vec![ForZone { name: zone.into() }]),
        for_nodes: None,
    })
}

/// Removes every hint: from the slices being written, and from unchanged slices that have
/// some (which then are written too).
pub fn remove_hints(plan: &mut Plan) {
    for s in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        for ep in &mut s.endpoints {
            ep.hints = None;
        }
    }
    let (with, without): (Vec<EndpointSlice>, Vec<EndpointSlice>) =
        std::mem::take(&mut plan.unchanged)
            .into_iter()
            .partition(|s| s.endpoints.iter().any(|e| e.hints.is_some()));
    plan.unchanged = without;
    for mut s in with {
        for ep in &mut s.endpoints {
            ep.hints = None;
        }
        plan.update.push(s);
    }
}

/// Hints a zone's unchanged slice already gives, or `None` if they are no longer valid.
fn hints_by_zone(
    slice: &EndpointSlice,
    already: &BTreeMap<String, usize>,
    alloc: &BTreeMap<String, Allocation>,
) -> Option<BTreeMap<String, usize>> {
    let mut by_zone: BTreeMap<String, usize> = BTreeMap::new();
    for ep in slice.endpoints.iter().filter(|e| is_ready(e)) {
        let zones = ep.hints.as_ref().and_then(|h| h.for_zones.as_ref())?;
        if zones.is_empty() {
            return None;
        }
        for z in zones {
            alloc.get(&z.name)?;
            *by_zone.entry(z.name.clone()).or_default() += 1;
        }
    }
    for (zone, n) in &by_zone {
        if n + already.get(zone).copied().unwrap_or(0) > alloc.get(zone)?.maximum {
            return None;
        }
    }
    Some(by_zone)
}

/// Upstream's `AddHints` for one address type's part of a plan. `Err` carries the warning
/// after every hint was removed.
pub fn add_hints(
    plan: &mut Plan,
    ratios: Option<&BTreeMap<String, f64>>,
    address_type: &str,
) -> Result<(), HintEvent> {
    let ready = plan
        .create
        .iter()
        .chain(&plan.update)
        .chain(&plan.unchanged)
        .flat_map(|s| &s.endpoints)
        .filter(|e| is_ready(e))
        .count();
    let with_type = |m: &str| format!("{m}, addressType: {address_type}");
    let alloc = match allocations(ratios, ready) {
        Ok(a) => a,
        Err(m) => {
            remove_hints(plan);
            return Err(disabled(with_type(&m)));
        }
    };
    // Unchanged slices keep valid hints and count towards the zones; invalid ones are rewritten.
    let mut allocated: BTreeMap<String, usize> = BTreeMap::new();
    let mut keep = Vec::new();
    for s in std::mem::take(&mut plan.unchanged) {
        match hints_by_zone(&s, &allocated, &alloc) {
            Some(h) => {
                for (z, n) in h {
                    *allocated.entry(z).or_default() += n;
                }
                keep.push(s);
            }
            None => plan.update.push(s),
        }
    }
    plan.unchanged = keep;
    // Step 1: every ready endpoint serves its own zone.
    for s in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        for ep in &mut s.endpoints {
            if !is_ready(ep) {
                ep.hints = None;
                continue;
            }
            let Some(zone) = ep.zone.clone().filter(|z| !z.is_empty()) else {
                remove_hints(plan);
                return Err(disabled(with_type(NO_ZONE_SPECIFIED)));
            };
            *allocated.entry(zone.clone()).or_default() += 1;
            ep.hints = zone_hint(&zone);
        }
    }
    // Steps 2 and 3: zones over their share give endpoints to zones under it.
    let (mut giving, mut receiving) = giving_and_receiving(&alloc, &allocated);
    'slices: for s in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        for ep in &mut s.endpoints {
            if !is_ready(ep) {
                continue;
            }
            if giving.is_empty() || receiving.is_empty() {
                break 'slices;
            }
            let Some(from) = ep.zone.clone() else {
                continue;
            };
            if giving.get(&from).copied().unwrap_or(0) == 0 {
                continue;
            }
            let Some(to) = receiving
                .iter()
                .find(|(_, n)| **n > 0)
                .map(|(z, _)| z.clone())
            else {
                continue;
            };
            ep.hints = zone_hint(&to);
            decrement(&mut giving, &from);
            decrement(&mut receiving, &to);
            *allocated.entry(to).or_default() += 1;
            if let Some(n) = allocated.get_mut(&from) {
                *n = n.saturating_sub(1);
            }
        }
    }
    if allocated.is_empty() {
        remove_hints(plan);
        return Err(disabled(with_type(NO_ALLOCATED_HINTS)));
    }
    Ok(())
}

fn decrement(m: &mut BTreeMap<String, usize>, k: &str) {
    if let Some(n) = m.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            m.remove(k);
        }
    }
}

/// How many endpoints each zone should give away and receive: whole endpoints moved from
/// the zone most over its desired share to the one most under it while both differ by at
/// least half an endpoint.
fn giving_and_receiving(
    alloc: &BTreeMap<String, Allocation>,
    allocated: &BTreeMap<String, usize>,
) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut give_want: BTreeMap<String, f64> = BTreeMap::new();
    let mut recv_want: BTreeMap<String, f64> = BTreeMap::new();
    for (zone, a) in alloc {
        let have = allocated.get(zone).copied().unwrap_or(0) as f64;
        if have > a.desired {
            give_want.insert(zone.clone(), have - a.desired);
        } else if have < a.desired {
            recv_want.insert(zone.clone(), a.desired - have);
        }
    }
    let most = |m: &BTreeMap<String, f64>| {
        m.iter()
            .filter(|(_, n)| **n > 0.0)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(z, n)| (z.clone(), *n))
    };
    let mut giving = BTreeMap::new();
    let mut receiving = BTreeMap::new();
    while let (Some((gz, gn)), Some((rz, rn))) = (most(&give_want), most(&recv_want)) {
        if (gn < 1.0 && rn < 1.0) || gn < 0.5 || rn < 0.5 {
            break;
        }
        *giving.entry(gz.clone()).or_default() += 1;
        *receiving.entry(rz.clone()).or_default() += 1;
        *give_want.entry(gz).or_default() -= 1.0;
        *recv_want.entry(rz).or_default() -= 1.0;
    }
    (giving, receiving)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointConditions;

    fn ep(ip: &str, zone: &str) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            zone: Some(zone.into()),
            ..Default::default()
        }
    }

    fn plan_of(endpoints: Vec<Endpoint>) -> Plan {
        Plan {
            create: vec![EndpointSlice {
                endpoints,
                address_type: "IPv4".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn hinted_zones(plan: &Plan) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in plan.create.iter().flat_map(|s| &s.endpoints) {
            for z in e
                .hints
                .as_ref()
                .and_then(|h| h.for_zones.clone())
                .unwrap_or_default()
            {
                *m.entry(z.name).or_default() += 1;
            }
        }
        m
    }

    #[test]
    fn endpoints_are_hinted_to_zones_in_proportion_to_their_cpu() {
        // Zone a has 3/4 of the CPU but one endpoint; b has three: b gives a two.
        let ratios = BTreeMap::from([("a".to_string(), 0.75), ("b".to_string(), 0.25)]);
        let mut plan = plan_of(vec![
            ep("10.0.0.1", "a"),
            ep("10.0.0.2", "b"),
            ep("10.0.0.3", "b"),
            ep("10.0.0.4", "b"),
        ]);
        add_hints(&mut plan, Some(&ratios), "IPv4").expect("hints allocated");
        assert_eq!(
            hinted_zones(&plan),
            BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 1)])
        );
    }

    #[test]
    fn hints_are_removed_with_a_reason_when_they_cannot_be_allocated() {
        let ratios = BTreeMap::from([("a".to_string(), 0.5), ("b".to_string(), 0.5)]);
        let mut plan = plan_of(vec![ep("10.0.0.1", "a")]);
        plan.create[0].endpoints[0].hints = zone_hint("a");
        let err = add_hints(&mut plan, Some(&ratios), "IPv4").expect_err("too few endpoints");
        assert_eq!(err.reason, "TopologyAwareHintsDisabled");
        assert_eq!(
            err.message,
            "Insufficient number of endpoints (1 endpoints, 2 zones), addressType: IPv4"
        );
        assert!(plan.create[0].endpoints[0].hints.is_none());
        let mut plan = plan_of(vec![ep("10.0.0.1", "a"), ep("10.0.0.2", "")]);
        let err = add_hints(&mut plan, Some(&ratios), "IPv4").expect_err("no zone");
        assert_eq!(
            err.message,
            format!("{NO_ZONE_SPECIFIED}, addressType: IPv4")
        );
        let err = add_hints(&mut plan_of(vec![]), None, "IPv4").expect_err("no node info");
        assert_eq!(
            err.message,
            format!("{INSUFFICIENT_NODE_INFO}, addressType: IPv4")
        );
    }

    #[test]
    fn node_cpu_ratios_need_a_zone_on_every_ready_worker() {
        let node = |zone: Option<&str>, cpu: &str, ready: &str| -> std::sync::Arc<Node> {
            let mut labels = serde_json::Map::new();
            if let Some(z) = zone {
                labels.insert(LABEL_ZONE.into(), z.into());
            }
            std::sync::Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "n", "labels": labels},
                    "status": {"allocatable": {"cpu": cpu},
                               "conditions": [{"type": "Ready", "status": ready}]}}))
                .expect("valid node"),
            )
        };
        let ratios = cpu_ratios(&[
            node(Some("a"), "3", "True"),
            node(Some("b"), "1000m", "True"),
        ])
        .expect("two zones");
        assert_eq!(ratios["a"], 0.75);
        assert!(cpu_ratios(&[node(Some("a"), "3", "True"), node(None, "1", "True")]).is_none());
        // A NotReady node without zone does not count.
        assert!(cpu_ratios(&[
            node(Some("a"), "1", "True"),
            node(Some("b"), "1", "True"),
            node(None, "1", "False")
        ])
        .is_some());
    }
}
