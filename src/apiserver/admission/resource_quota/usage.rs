//! What an object counts against a quota (upstream's quota evaluators,
//! `pkg/quota/v1/evaluator/core` and the generic object-count evaluator): its usage, which
//! quota resource names it can be charged to, which quota scopes it falls in, and the
//! constraints a pod must meet under a cpu/memory quota.
//!
//! Invariant: usage is a pure function of the object, shared by admission (charging one new
//! object) and the quota controller (summing every object in a namespace), so both always
//! agree on what an object costs.

use crate::api::quantity::Quantity;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Quota resource name → amount.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Which evaluator counts a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pods,
    Services,
    Claims,
    /// Any other resource: object counts only (`count/<resource>[.<group>]`, plus the legacy
    /// bare names of a few core types).
    Count,
}

/// The evaluator of `group/plural` (None for resources quota never counts).
pub fn kind_of(group: &str, plural: &str) -> Option<Kind> {
    match (group, plural) {
        ("", "pods") => Some(Kind::Pods),
        ("", "services") => Some(Kind::Services),
        ("", "persistentvolumeclaims") => Some(Kind::Claims),
        // Upstream's default ignored resources.
        ("", "events") | ("events.k8s.io", "events") => None,
        _ => Some(Kind::Count),
    }
}

/// Whether the evaluator charges this operation: every evaluator charges creates; pods,
/// services and claims can also grow on update (resize, type change, expansion).
pub fn charges_updates(kind: Kind) -> bool {
    kind != Kind::Count
}

/// `count/<plural>` for core, `count/<plural>.<group>` otherwise.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// Core kinds whose object count also has a bare quota name (`configmaps: 10`).
const LEGACY_COUNT: [&str; 4] = [
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

const POD_RESOURCES: [&str; 11] = [
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The subset of `names` (a quota's hard resources) this object's evaluator can charge.
pub fn matching_resources<'n>(
    group: &str,
    plural: &str,
    kind: Kind,
    names: impl IntoIterator<Item = &'n String>,
) -> Vec<String> {
    let count = count_name(group, plural);
    names
        .into_iter()
        .filter(|n| match kind {
            Kind::Pods => {
                POD_RESOURCES.contains(&n.as_str())
                    || n.starts_with("hugepages-")
                    || n.starts_with("requests.hugepages-")
                    || is_extended_request(n)
            }
            Kind::Services => matches!(
                n.as_str(),
                "count/services" | "services" | "services.loadbalancers" | "services.nodeports"
            ),
            Kind::Claims => {
                *n == &count
                    || matches!(n.as_str(), "persistentvolumeclaims" | "requests.storage")
                    || n.ends_with(&format!("{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"))
                    || n.ends_with(&format!("{STORAGE_CLASS_SUFFIX}requests.storage"))
            }
            Kind::Count => {
                *n == &count
                    || (group.is_empty() && LEGACY_COUNT.contains(&plural) && n.as_str() == plural)
            }
        })
        .cloned()
        .collect()
}

/// `requests.<extended resource>`: quota names for non-native resources (`requests.nvidia.com/gpu`).
fn is_extended_request(name: &str) -> bool {
    name.strip_prefix("requests.").is_some_and(|r| {
        r.contains('/') && !r.starts_with("kubernetes.io/") && !r.contains(".kubernetes.io/")
    })
}

/// What the object costs.
pub fn usage(group: &str, plural: &str, kind: Kind, obj: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    match kind {
        Kind::Pods => pod_usage(obj, &mut out),
        Kind::Services => service_usage(obj, &mut out),
        Kind::Claims => claim_usage(obj, &mut out),
        Kind::Count => {
            out.insert(count_name(group, plural), Quantity::count(1));
            if group.is_empty() && LEGACY_COUNT.contains(&plural) {
                out.insert(plural.to_owned(), Quantity::count(1));
            }
        }
    }
    out
}

/// A resource list (`{"cpu": "500m"}`) as quantities; unparsable values are skipped
/// (validation refuses them before admission runs).
pub fn resource_list(v: &Value) -> ResourceList {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), Quantity::parse(q.as_str()?).ok()?)))
        .collect()
}

fn add_into(acc: &mut ResourceList, more: &ResourceList) {
    for (k, v) in more {
        let cur = acc.get(k).copied().unwrap_or(Quantity::ZERO);
        acc.insert(k.clone(), cur.plus(*v));
    }
}

fn max_into(acc: &mut ResourceList, other: &ResourceList) {
    for (k, v) in other {
        let cur = acc.get(k).copied().unwrap_or(Quantity::ZERO);
        acc.insert(k.clone(), cur.max(*v));
    }
}

/// Upstream's `PodRequests`/`PodLimits`: the containers' sum, sidecars (restartable init
/// containers) added, at least the largest init container's need, plus overhead; pod-level
/// resources win where set.
fn pod_totals(spec: &Value, which: &str) -> ResourceList {
    let mut total = ResourceList::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        add_into(&mut total, &resource_list(&c["resources"][which]));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let own = resource_list(&c["resources"][which]);
        let need = if c["restartPolicy"] == "Always" {
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut n = own;
            add_into(&mut n, &sidecars);
            n
        };
        max_into(&mut init_max, &need);
    }
    add_into(&mut total, &sidecars);
    max_into(&mut total, &init_max);
    add_into(&mut total, &resource_list(&spec["overhead"]));
    for (k, v) in resource_list(&spec["resources"][which]) {
        if k == "cpu" || k == "memory" {
            total.insert(k, v);
        }
    }
    total
}

/// Whether a pod still counts for compute resources: not terminal, not past its deletion.
pub fn pod_is_live(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    if let Some(ts) = pod["metadata"]["deletionTimestamp"].as_str() {
        let grace = pod["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0);
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) {
            let deadline = t + chrono::Duration::seconds(grace);
            if chrono::Utc::now() > deadline {
                return false;
            }
        }
    }
    true
}

/// Upstream's `podComputeUsageHelper` on a pod's (or container's) requests and limits.
fn compute_usage(requests: &ResourceList, limits: &ResourceList, out: &mut ResourceList) {
    out.insert("pods".into(), Quantity::count(1));
    for (name, aliases) in [
        ("cpu", &["cpu", "requests.cpu"][..]),
        ("memory", &["memory", "requests.memory"][..]),
        (
            "ephemeral-storage",
            &["ephemeral-storage", "requests.ephemeral-storage"][..],
        ),
    ] {
        if let Some(q) = requests.get(name) {
            for a in aliases {
                out.insert((*a).to_owned(), *q);
            }
        }
    }
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = limits.get(name) {
            out.insert(format!("limits.{name}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-")
            || (name.contains('/') && !name.contains("kubernetes.io/"))
        {
            out.insert(format!("requests.{name}"), *q);
        }
    }
}

fn pod_usage(pod: &Value, out: &mut ResourceList) {
    out.insert("count/pods".into(), Quantity::count(1));
    if !pod_is_live(pod) {
        return;
    }
    let spec = &pod["spec"];
    compute_usage(
        &pod_totals(spec, "requests"),
        &pod_totals(spec, "limits"),
        out,
    );
}

fn service_usage(svc: &Value, out: &mut ResourceList) {
    out.insert("count/services".into(), Quantity::count(1));
    out.insert("services".into(), Quantity::count(1));
    out.insert("services.loadbalancers".into(), Quantity::ZERO);
    out.insert("services.nodeports".into(), Quantity::ZERO);
    let ports = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
    let ports = i64::try_from(ports).unwrap_or(i64::MAX);
    match svc["spec"]["type"].as_str() {
        Some("NodePort") => {
            out.insert("services.nodeports".into(), Quantity::count(ports));
        }
        Some("LoadBalancer") => {
            let n = if svc["spec"]["allocateLoadBalancerNodePorts"] == Value::Bool(false) {
                let with = svc["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["nodePort"].as_i64().unwrap_or(0) != 0)
                    .count();
                i64::try_from(with).unwrap_or(i64::MAX)
            } else {
                ports
            };
            out.insert("services.nodeports".into(), Quantity::count(n));
            out.insert("services.loadbalancers".into(), Quantity::count(1));
        }
        _ => {}
    }
}

fn claim_usage(pvc: &Value, out: &mut ResourceList) {
    out.insert("persistentvolumeclaims".into(), Quantity::count(1));
    out.insert("count/persistentvolumeclaims".into(), Quantity::count(1));
    let class = pvc["spec"]["storageClassName"]
        .as_str()
        .or_else(|| {
            pvc["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].as_str()
        })
        .unwrap_or_default();
    if !class.is_empty() {
        out.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Quantity::count(1),
        );
    }
    // The larger of what is requested and what is already allocated (a shrinking resize
    // does not release quota until it is done).
    let requested = resource_list(&pvc["spec"]["resources"]["requests"])
        .get("storage")
        .copied();
    let allocated = resource_list(&pvc["status"]["allocatedResources"])
        .get("storage")
        .copied();
    let storage = match (requested, allocated) {
        (Some(r), Some(a)) => Some(r.max(a)),
        (r, a) => r.or(a),
    };
    if let Some(q) = storage {
        out.insert("requests.storage".into(), q);
        if !class.is_empty() {
            out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), q);
        }
    }
}

/// A quota's scope requirements: `spec.scopes` (as `Exists`) then `spec.scopeSelector`.
pub fn scope_selectors(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_owned(), "Exists".to_owned(), Vec::new()))
        .collect();
    for e in quota["spec"]["scopeSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push((
            e["scopeName"].as_str().unwrap_or_default().to_owned(),
            e["operator"].as_str().unwrap_or_default().to_owned(),
            e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ));
    }
    out
}

/// Whether the quota applies to the object: it constrains at least one resource the object
/// can be charged to, and the object is in every one of its scopes (only pods have scopes;
/// other objects never match a scoped quota).
pub fn quota_matches(group: &str, plural: &str, kind: Kind, quota: &Value, obj: &Value) -> bool {
    let hard = resource_list(&quota["status"]["hard"]);
    if matching_resources(group, plural, kind, hard.keys()).is_empty() {
        return false;
    }
    in_scopes(kind, quota, obj)
}

/// Whether the object is in every scope of the quota (a quota without scopes takes all).
pub fn in_scopes(kind: Kind, quota: &Value, obj: &Value) -> bool {
    scope_selectors(quota)
        .iter()
        .all(|(scope, op, values)| kind == Kind::Pods && pod_in_scope(obj, scope, op, values))
}

/// A pod with an active deadline (the Terminating scope).
pub fn is_terminating(pod: &Value) -> bool {
    pod["spec"]["activeDeadlineSeconds"]
        .as_i64()
        .is_some_and(|s| s >= 0)
}

fn pod_in_scope(pod: &Value, scope: &str, op: &str, values: &[String]) -> bool {
    let spec = &pod["spec"];
    match scope {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => best_effort(spec),
        "NotBestEffort" => !best_effort(spec),
        "PriorityClass" => {
            let class = spec["priorityClassName"].as_str().unwrap_or_default();
            match op {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => !class.is_empty() && values.iter().any(|v| v == class),
                "NotIn" => class.is_empty() || !values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => cross_namespace_affinity(spec),
        _ => false,
    }
}

/// QoS BestEffort: no container or init container requests or limits cpu or memory.
fn best_effort(spec: &Value) -> bool {
    let all = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten());
    let mut compute = all.flat_map(|c| {
        let r = resource_list(&c["resources"]["requests"]);
        let l = resource_list(&c["resources"]["limits"]);
        r.into_iter().chain(l).collect::<Vec<_>>()
    });
    let pod_level = resource_list(&spec["resources"]["requests"])
        .into_iter()
        .chain(resource_list(&spec["resources"]["limits"]))
        .any(|(k, q)| (k == "cpu" || k == "memory") && !q.is_zero());
    !pod_level && !compute.any(|(k, q)| (k == "cpu" || k == "memory") && !q.is_zero())
}

fn cross_namespace_affinity(spec: &Value) -> bool {
    let term = |t: &Value| {
        t["namespaces"].as_array().is_some_and(|a| !a.is_empty())
            || t["namespaceSelector"].is_object()
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|a| {
        let aff = &spec["affinity"][*a];
        aff["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .any(term)
            || aff["preferredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|w| term(&w["podAffinityTerm"]))
    })
}

/// Upstream's pod `Constraints`: under a quota on cpu or memory (requests or limits), every
/// container must say how much it needs (`must specify limits.cpu for: a; memory for: a,b`).
pub fn pod_constraints(required: &[String], pod: &Value) -> Result<(), String> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let spec = &pod["spec"];
    let pod_level = ["requests", "limits"]
        .iter()
        .any(|w| !resource_list(&spec["resources"][*w]).is_empty());
    if pod_level {
        return Ok(());
    }
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| VALIDATED.contains(r))
        .collect();
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
    {
        let mut has = ResourceList::new();
        compute_usage(
            &resource_list(&c["resources"]["requests"]),
            &resource_list(&c["resources"]["limits"]),
            &mut has,
        );
        for r in &required {
            if !has.contains_key(*r) {
                missing
                    .entry(r)
                    .or_default()
                    .insert(c["name"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}
