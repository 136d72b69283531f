//! LimitRanger: the LimitRange objects of a namespace default and bound the resources of
//! what is created in it, as upstream's plugin does.
//! - Mutating, pods: containers and init containers without a request or limit for a
//!   resource get the `defaultRequest` / `default` of every `Container` limit, and the pod
//!   is annotated `kubernetes.io/limit-ranger: LimitRanger plugin set: ...`.
//! - Validating: `min`, `max` and `maxLimitRequestRatio` of `Container` limits (each
//!   container), `Pod` limits (the pod's effective totals) and `PersistentVolumeClaim`
//!   limits (the claim's storage request), with upstream's messages.

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::api::quantity::Quantity;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// resource name → quantity
type Resources = BTreeMap<String, Quantity>;

pub struct LimitRanger;

fn resources(v: &Value) -> Resources {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), Quantity::parse(q.as_str()?).ok()?)))
        .collect()
}

fn limits_of<'v>(lr: &'v Value, kind: &'v str) -> impl Iterator<Item = &'v Value> + 'v {
    lr["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |l| l["type"] == kind)
}

/// Upstream's `requestLimitEnforcedValues`: milli-units unless a value is too large.
fn compared(a: &Quantity, b: &Quantity, c: &Quantity) -> (i128, i128, i128) {
    const MAX_MILLI: i128 = (i64::MAX / 1000) as i128;
    if a.value() <= MAX_MILLI && b.value() <= MAX_MILLI && c.value() <= MAX_MILLI {
        (a.milli_value(), b.milli_value(), c.milli_value())
    } else {
        (a.value(), b.value(), c.value())
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let zero = Quantity::zero();
    let (r, l) = (req.get(name), lim.get(name));
    let (rv, lv, ev) = compared(r.unwrap_or(&zero), l.unwrap_or(&zero), enforced);
    let Some(r) = r else {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if rv < ev {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {r}"
        ));
    }
    match l {
        Some(l) if lv < ev => Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_request_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
) -> Option<String> {
    let zero = Quantity::zero();
    let r = req.get(name);
    let (rv, _, ev) = compared(r.unwrap_or(&zero), &zero, enforced);
    let Some(r) = r else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    (rv > ev).then(|| format!("maximum {name} usage per {kind} is {enforced}, but request is {r}"))
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let zero = Quantity::zero();
    let (r, l) = (req.get(name), lim.get(name));
    let (rv, lv, ev) = compared(r.unwrap_or(&zero), l.unwrap_or(&zero), enforced);
    let Some(l) = l else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if lv > ev {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    match r {
        Some(r) if rv > ev => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {r}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let zero = Quantity::zero();
    let (r, l) = (req.get(name), lim.get(name));
    let (rv, lv, _) = compared(r.unwrap_or(&zero), l.unwrap_or(&zero), enforced);
    if r.is_none() || rv == 0 {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    }
    if l.is_none() || lv == 0 {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    }
    let shown = lv as f64 / rv as f64;
    let (mut observed, mut max) = (shown, enforced.value() as f64);
    if enforced.value() <= (i64::MAX / 1000) as i128 {
        observed *= 1000.0;
        max = enforced.milli_value() as f64;
    }
    (observed > max).then(|| format!("{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {shown:.6}"))
}

/// The checks of one limit (`min`, `max`, `maxLimitRequestRatio`) against one set of
/// requests and limits.
fn check_limit(
    limit: &Value,
    kind: &str,
    req: &Resources,
    lim: &Resources,
    errs: &mut Vec<String>,
) {
    for (name, q) in resources(&limit["min"]) {
        errs.extend(min_constraint(kind, &name, &q, req, lim));
    }
    for (name, q) in resources(&limit["max"]) {
        errs.extend(max_constraint(kind, &name, &q, req, lim));
    }
    for (name, q) in resources(&limit["maxLimitRequestRatio"]) {
        errs.extend(ratio_constraint(kind, &name, &q, req, lim));
    }
}

fn containers<'v>(pod: &'v Value, list: &'v str) -> impl Iterator<Item = &'v Value> + 'v {
    pod["spec"][list].as_array().into_iter().flatten()
}

fn add_all(to: &mut Resources, from: &Resources) {
    for (k, q) in from {
        to.entry(k.clone()).or_insert_with(Quantity::zero).add(q);
    }
}

fn max_all(to: &mut Resources, from: &Resources) {
    for (k, q) in from {
        match to.get(k) {
            Some(have) if have >= q => {}
            _ => {
                to.insert(k.clone(), *q);
            }
        }
    }
}

/// A pod's effective requests or limits (`field`): containers and sidecars add up, plain
/// init containers count by their maximum, pod-level cpu/memory override (upstream's
/// `podRequests` / `podLimits` with PodLevelResources on, as in v1.35).
fn pod_total(pod: &Value, field: &str) -> Resources {
    let mut total = Resources::new();
    for c in containers(pod, "containers") {
        add_all(&mut total, &resources(&c["resources"][field]));
    }
    let mut sidecars = Resources::new();
    let mut init = Resources::new();
    for c in containers(pod, "initContainers") {
        let own = resources(&c["resources"][field]);
        if c["restartPolicy"] == "Always" {
            add_all(&mut total, &own);
            add_all(&mut sidecars, &own);
            max_all(&mut init, &sidecars);
        } else {
            let mut tmp = own;
            add_all(&mut tmp, &sidecars);
            max_all(&mut init, &tmp);
        }
    }
    max_all(&mut total, &init);
    for (k, q) in resources(&pod["spec"]["resources"][field]) {
        if k == "cpu" || k == "memory" {
            total.insert(k, q);
        }
    }
    total
}

fn validate_pod(lr: &Value, pod: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for limit in lr["spec"]["limits"].as_array().into_iter().flatten() {
        match limit["type"].as_str() {
            Some("Container") => {
                for list in ["containers", "initContainers"] {
                    for c in containers(pod, list) {
                        let req = resources(&c["resources"]["requests"]);
                        let lim = resources(&c["resources"]["limits"]);
                        check_limit(limit, "Container", &req, &lim, &mut errs);
                    }
                }
            }
            Some("Pod") => {
                let req = pod_total(pod, "requests");
                let lim = pod_total(pod, "limits");
                check_limit(limit, "Pod", &req, &lim, &mut errs);
            }
            _ => {}
        }
    }
    errs
}

fn validate_claim(lr: &Value, pvc: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let req = resources(&pvc["spec"]["resources"]["requests"]);
    for limit in limits_of(lr, "PersistentVolumeClaim") {
        for (name, q) in resources(&limit["min"]) {
            errs.extend(min_constraint(
                "PersistentVolumeClaim",
                &name,
                &q,
                &req,
                &Resources::new(),
            ));
        }
        for (name, q) in resources(&limit["max"]) {
            errs.extend(max_request_constraint(
                "PersistentVolumeClaim",
                &name,
                &q,
                &req,
            ));
        }
    }
    errs
}

/// Sets missing requests/limits of one container; returns upstream's annotation parts.
fn default_container(
    c: &mut Value,
    requests: &Map<String, Value>,
    limits: &Map<String, Value>,
    what: &str,
) -> Vec<String> {
    let cname = c["name"].as_str().unwrap_or_default().to_owned();
    let mut notes = Vec::new();
    for (field, defaults, word) in [
        ("requests", requests, "request"),
        ("limits", limits, "limit"),
    ] {
        let mut set: Vec<&str> = Vec::new();
        for (k, v) in defaults {
            if c["resources"][field].get(k).is_none() {
                c["resources"][field][k] = v.clone();
                set.push(k);
            }
        }
        if !set.is_empty() {
            set.sort_unstable();
            notes.push(format!("{} {word} for {what} {cname}", set.join(", ")));
        }
    }
    notes
}

fn default_pod(lr: &Value, pod: &mut Value) {
    let mut requests = Map::new();
    let mut limits = Map::new();
    for limit in limits_of(lr, "Container") {
        if let Some(m) = limit["defaultRequest"].as_object() {
            requests.extend(m.clone());
        }
        if let Some(m) = limit["default"].as_object() {
            limits.extend(m.clone());
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    // Containers first, then init containers, as upstream writes the annotation.
    for (list, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        if let Some(cs) = pod["spec"][list].as_array_mut() {
            for c in cs {
                notes.extend(default_container(c, &requests, &limits, what));
            }
        }
    }
    if !notes.is_empty() {
        pod["metadata"]["annotations"][ANNOTATION] =
            json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

impl LimitRanger {
    async fn ranges(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
    ) -> Result<Vec<Value>, ApiError> {
        support::list(state, "", "limitranges", attrs.namespace).await
    }
}

fn being_deleted(old: Option<&Value>) -> bool {
    old.is_some_and(|o| !o["metadata"]["deletionTimestamp"].is_null())
}

impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.is_main()
            && match attrs.operation {
                Operation::Create => attrs.is("", "pods") || attrs.is("", "persistentvolumeclaims"),
                Operation::Update => attrs.is("", "persistentvolumeclaims"),
                _ => false,
            }
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            if !attrs.is("", "pods") || being_deleted(old) {
                return Ok(());
            }
            for lr in self.ranges(state, attrs).await? {
                default_pod(&lr, obj);
            }
            Ok(())
        })
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let Some(obj) = obj else { return Ok(()) };
            if being_deleted(old) {
                return Ok(());
            }
            for lr in self.ranges(state, attrs).await? {
                let errs = if attrs.is("", "pods") {
                    validate_pod(&lr, obj)
                } else {
                    validate_claim(&lr, obj)
                };
                if let Some(msg) = support::aggregate(&errs) {
                    return Err(attrs.forbidden(msg));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
