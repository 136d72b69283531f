//! The slice packing of upstream's EndpointSlice reconciler
//! (`staging/src/k8s.io/endpointslice/reconciler.go`), as a pure function: given a service's
//! desired endpoints (grouped by address type and port set) and its existing slices, which
//! slices to create, update, delete and leave alone.
//!
//! It minimises churn the way upstream does, because every slice write fans out to every
//! service proxy in the cluster:
//! 1. an existing slice keeps the desired endpoints it already holds; it is updated only if
//!    one of them changed (conditions, node, zone, target) or went away, and deleted if none
//!    is left;
//! 2. endpoints still unplaced first fill the slices already being updated, fullest first;
//! 3. what remains goes, if fewer than a slice holds, into the unchanged slice it fits best,
//!    else into new slices of at most [`MAX_ENDPOINTS_PER_SLICE`];
//! 4. a slice that would be created while another is deleted reuses the deleted one's name
//!    (one update instead of a create and a delete);
//! 5. a service with no endpoints keeps one empty placeholder slice per address type.

use super::pods::Family;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, BTreeSet};

/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// `endpointslice.kubernetes.io/managed-by` of the slices this controller owns.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";

/// A port set, as the grouping key of slices (ports sorted by name).
pub type PortsKey = String;

/// The key of a set of ports: slices are grouped by it, so order must not matter.
pub fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut sorted: Vec<(&str, i32, &str, &str)> = ports
        .iter()
        .map(|p| {
            (
                p.name.as_deref().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.as_deref().unwrap_or("TCP"),
                p.app_protocol.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(n, p, proto, app)| format!("{n}:{p}/{proto}/{app}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The identity of an endpoint across syncs (upstream's endpoint hash): its addresses,
/// hostname and target. Everything else about it may change in place.
pub fn endpoint_key(ep: &Endpoint) -> String {
    let mut addrs = ep.addresses.clone();
    addrs.sort();
    let target = ep
        .target_ref
        .as_ref()
        .map(|r| {
            format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    format!(
        "{target}|{}|{}",
        addrs.join(","),
        ep.hostname.as_deref().unwrap_or_default()
    )
}

/// Upstream's `EndpointsEqualBeyondHash`: hints are not compared (the topology step owns them).
fn equal_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    a.node_name == b.node_name
        && a.zone == b.zone
        && a.conditions
            .as_ref()
            .map(|c| (c.ready, c.serving, c.terminating))
            == b.conditions
                .as_ref()
                .map(|c| (c.ready, c.serving, c.terminating))
        && a.target_ref == b.target_ref
}

/// The endpoints one group of slices should hold.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub ports: Vec<EndpointPort>,
    /// By [`endpoint_key`]; ordered so packing is deterministic.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// Desired endpoints of one service, by address type and port set.
pub type Desired = BTreeMap<Family, BTreeMap<PortsKey, Group>>;

/// What a sync writes.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
    /// Slices left as they are (topology hints count the endpoints in them).
    pub unchanged: Vec<EndpointSlice>,
}

/// The labels a slice of `svc` carries: the service's own (less the reserved ones), the
/// headless marker, the service name and the manager; and whether `current` differs.
pub fn slice_labels(
    current: Option<&BTreeMap<String, String>>,
    svc: &Service,
) -> (BTreeMap<String, String>, bool) {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if super::pods::is_headless(svc) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    let changed = current != Some(&labels);
    (labels, changed)
}

/// A new, unnamed slice of `svc` (named by the API server from `generateName: <svc>-`),
/// controlled by the service so it goes away with it.
pub fn new_slice(svc: &Service, family: Family, ports: &[EndpointPort]) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let (labels, _) = slice_labels(None, svc);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![
                crate::controllers::controller_utils::new_controller_ref(
                    "v1",
                    "Service",
                    &svc.metadata,
                ),
            ]),
            ..Default::default()
        },
        address_type: family.address_type().into(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

/// Whether `slice` is controlled by `svc` (same uid), not by a deleted namesake.
pub fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice.metadata.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.kind == "Service"
            && Some(&r.uid) == svc.metadata.uid.as_ref()
    })
}

/// The whole plan for one service: every address type, placeholders, and name reuse.
/// `existing` must hold only this controller's slices of the service.
pub fn plan(svc: &Service, desired: Desired, existing: Vec<EndpointSlice>, max: usize) -> Plan {
    let mut out = Plan::default();
    let mut by_family: BTreeMap<Family, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        match Family::from_address_type(&slice.address_type) {
            Some(f) if desired.contains_key(&f) && owned_by(&slice, svc) => {
                by_family.entry(f).or_default().push(slice)
            }
            _ => out.delete.push(slice),
        }
    }
    for (family, groups) in desired {
        let existing = by_family.remove(&family).unwrap_or_default();
        let p = plan_family(svc, family, groups, existing, max);
        out.create.extend(p.create);
        out.update.extend(p.update);
        out.delete.extend(p.delete);
        out.unchanged.extend(p.unchanged);
    }
    reuse_deleted_names(svc, &mut out);
    out
}

fn plan_family(
    svc: &Service,
    family: Family,
    mut groups: BTreeMap<PortsKey, Group>,
    mut existing: Vec<EndpointSlice>,
    max: usize,
) -> Plan {
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut by_ports: BTreeMap<PortsKey, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        let key = ports_key(slice.ports.as_deref().unwrap_or_default());
        by_ports.entry(key).or_default().push(slice);
    }
    let mut out = Plan::default();
    let total_existing: usize = by_ports.values().map(Vec::len).sum();
    for (key, group) in std::mem::take(&mut groups) {
        let slices = by_ports.remove(&key).unwrap_or_default();
        let p = plan_ports(svc, family, group, slices, max);
        out.create.extend(p.create);
        out.update.extend(p.update);
        out.delete.extend(p.delete);
        out.unchanged.extend(p.unchanged);
    }
    // Port sets no longer wanted.
    out.delete.extend(by_ports.into_values().flatten());
    // A service with nothing to serve keeps one empty slice, so watchers see it exists.
    if out.delete.len() == total_existing && out.create.is_empty() && out.update.is_empty() {
        let placeholder = new_slice(svc, family, &[]);
        match out
            .delete
            .iter()
            .position(|s| is_placeholder_of(s, &placeholder))
        {
            Some(i) => {
                let kept = out.delete.remove(i);
                out.unchanged.push(kept);
            }
            None => out.create.push(placeholder),
        }
    }
    out
}

/// An empty slice with no ports and the labels a placeholder would get.
fn is_placeholder_of(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    slice.endpoints.is_empty()
        && slice.ports.as_deref().unwrap_or_default().is_empty()
        && slice.address_type == placeholder.address_type
        && slice.metadata.labels == placeholder.metadata.labels
}

/// Upstream's `reconcileByPortMapping`, steps 1–3 of the module docs.
fn plan_ports(
    svc: &Service,
    family: Family,
    mut group: Group,
    existing: Vec<EndpointSlice>,
    max: usize,
) -> Plan {
    let mut out = Plan::default();
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();
    for slice in existing {
        let mut kept = Vec::with_capacity(slice.endpoints.len());
        let mut changed = false;
        for ep in &slice.endpoints {
            if let Some(want) = group.endpoints.remove(&endpoint_key(ep)) {
                changed |= !equal_beyond_key(&want, ep);
                kept.push(want);
            }
        }
        let (labels, labels_changed) = slice_labels(slice.metadata.labels.as_ref(), svc);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                out.delete.push(slice);
            } else {
                let mut s = slice;
                s.endpoints = kept;
                s.metadata.labels = Some(labels);
                to_update.push(s);
            }
        } else if labels_changed {
            let mut s = slice;
            s.metadata.labels = Some(labels);
            to_update.push(s);
        } else {
            unchanged.push(slice);
        }
    }
    let mut remaining = group.endpoints.into_values();
    let mut pending: Vec<Endpoint> = remaining.by_ref().collect();
    pending.reverse(); // pop() then takes them in key order
                       // Step 2: fill the slices being written anyway, fullest first.
    to_update.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for s in &mut to_update {
        while s.endpoints.len() < max {
            match pending.pop() {
                Some(ep) => s.endpoints.push(ep),
                None => break,
            }
        }
    }
    // Step 3: the best-fitting unchanged slice for a small remainder, else new slices.
    while !pending.is_empty() {
        let fill = if pending.len() < max {
            best_fit(&unchanged, pending.len(), max).map(|i| unchanged.remove(i))
        } else {
            None
        };
        let (mut slice, is_new) = match fill {
            Some(s) => (s, false),
            None => (new_slice(svc, family, &group.ports), true),
        };
        while slice.endpoints.len() < max {
            match pending.pop() {
                Some(ep) => slice.endpoints.push(ep),
                None => break,
            }
        }
        if is_new {
            out.create.push(slice);
        } else {
            to_update.push(slice);
        }
    }
    out.update = to_update;
    out.unchanged = unchanged;
    out
}

/// Upstream's `getSliceToFill`: the slice left with the least room after taking `n`.
fn best_fit(slices: &[EndpointSlice], n: usize, max: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, s) in slices.iter().enumerate() {
        let Some(room) = max.checked_sub(n + s.endpoints.len()) else {
            continue;
        };
        if best.is_none_or(|(_, r)| room < r) {
            best = Some((i, room));
        }
    }
    best.map(|(i, _)| i)
}

/// Step 4: turn a create plus a delete of the same address type into one update.
fn reuse_deleted_names(svc: &Service, plan: &mut Plan) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let old = &plan.delete[i];
        let reusable = owned_by(old, svc)
            && plan
                .create
                .last()
                .is_some_and(|c| c.address_type == old.address_type);
        if !reusable {
            i += 1;
            continue;
        }
        let old = plan.delete.remove(i);
        if let Some(mut new) = plan.create.pop() {
            new.metadata.name = old.metadata.name;
            new.metadata.generate_name = None;
            new.metadata.resource_version = old.metadata.resource_version;
            new.metadata.uid = old.metadata.uid;
            new.metadata.annotations = old.metadata.annotations;
            plan.update.push(new);
        }
    }
}

/// Names of the slices a plan touches, for logs.
pub fn summary(plan: &Plan) -> String {
    let names = |v: &[EndpointSlice]| -> BTreeSet<String> {
        v.iter()
            .map(|s| s.metadata.name.clone().unwrap_or_else(|| "<new>".into()))
            .collect()
    };
    format!(
        "create {}, update {:?}, delete {:?}",
        plan.create.len(),
        names(&plan.update),
        names(&plan.delete)
    )
}

#[cfg(test)]
#[path = "reconciler_tests.rs"]
mod tests;
