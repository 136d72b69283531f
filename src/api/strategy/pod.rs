//! Pods (and pod templates): pod defaults and validation, the initial Pending status with
//! its QoS class, what a status write (the kubelet's) may change, and graceful deletion.

use super::{keep_metadata, set_status, Delete, Graceful, Printing, Strategy};
use crate::api::defaults::{json::ensure_obj, pod as pod_defaults};
use crate::api::table::printers;
use crate::api::validation::pod::validate_pod;
use serde_json::{json, Map, Value};

pub static POD: Strategy = Strategy {
    kind: "Pod",
    defaults: pod_defaults::default_pod,
    validate: validate_pod,
    initial_status: pod_initial_status,
    prepare_for_status_update: pod_status_update,
    validate_subresource_update: pod_spec_update,
    printer: Printing::Builtin(&printers::POD),
    delete: Delete {
        graceful: Some(Graceful {
            node: bound_node,
            period: grace_period,
        }),
        ..Delete::IMMEDIATE
    },
    ..Strategy::GENERIC
};

pub static POD_TEMPLATE: Strategy = Strategy {
    kind: "PodTemplate",
    defaults: pod_template_defaults,
    validate: crate::api::validation::workloads::validate_pod_template_kind,
    printer: Printing::Builtin(&printers::POD_TEMPLATE),
    ..Strategy::GENERIC
};

/// A write of the pod itself (not `status`, `binding`, ...) changes only what upstream
/// lets a pod update change.
fn pod_spec_update(
    sub: Option<crate::api::registry::Subresource>,
    old: &Value,
    new: &Value,
    errs: &mut Vec<crate::api::validation::FieldError>,
) {
    if sub.is_none() {
        crate::api::validation::pod_update::validate_pod_spec_update(old, new, errs);
    }
}

fn pod_template_defaults(o: &mut Map<String, Value>) {
    if let Some(t) = ensure_obj(o, "template") {
        pod_defaults::default_pod_template(t);
    }
}

fn pod_initial_status(pod: &mut Value) {
    let qos = qos_class(pod);
    set_status(pod, json!({"phase": "Pending", "qosClass": qos}));
}

/// Upstream's pod status strategy: the spec and the owner references stay (old kubelets
/// corrupted them), and a status without QoS class keeps the old one.
fn pod_status_update(old: &Value, new: &mut Value) {
    super::status_only(old, new);
    keep_metadata(old, new, &["ownerReferences"]);
    let qos = &old["status"]["qosClass"];
    if new["status"].is_object() && new["status"].get("qosClass").is_none() && !qos.is_null() {
        new["status"]["qosClass"] = qos.clone();
    }
}

fn bound_node(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// The requested grace period, else the pod's own (30 s by default); never negative.
fn grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let own = pod["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(30);
    requested.unwrap_or(own).max(0)
}

/// Pod QoS class from requests/limits, as the kubelet and API server compute it.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| pod["spec"][*k].as_array().into_iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let (rq, lm) = (req.get(r), lim.get(r));
            if rq.is_some() || lm.is_some() {
                any = true;
            }
            match (rq, lm) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if a != b => guaranteed = false,
                _ => {}
            }
        }
    }
    if guaranteed && any {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}
