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
    prepare_for_subresource_update: pod_spec_subresource_update,
    validate_create_only: crate::api::validation::pod::validate_pod_create,
    validate_subresource_update: pod_spec_update,
    printer: Printing::Builtin(&printers::POD),
    delete: Delete {
        graceful: Some(Graceful {
            node: bound_node,
            node_fields: &["spec.nodeName"],
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
    use crate::api::registry::Subresource;
    use crate::api::validation::pod_update;
    match sub {
        None => pod_update::validate_pod_spec_update(old, new, errs),
        Some(Subresource::EphemeralContainers) => {
            pod_update::validate_ephemeral_containers_update(old, new, errs)
        }
        Some(Subresource::Resize) => pod_update::validate_resize(old, new, errs),
        _ => {}
    }
}

/// Upstream's ephemeral-containers and resize strategies: the stored pod with, from the
/// request, only `spec.ephemeralContainers` (ephemeralcontainers) or each container's
/// `resources` and `resizePolicy` (resize); labels, annotations, finalizers and owners stay.
/// A resize that adds, removes, renames or reorders containers keeps the request's lists,
/// so validation refuses it.
fn pod_spec_subresource_update(
    sub: crate::api::registry::Subresource,
    old: &Value,
    new: &mut Value,
) {
    use crate::api::registry::Subresource;
    let mut merged = old.clone();
    merged["metadata"] = new["metadata"].clone();
    keep_metadata(
        old,
        &mut merged,
        &["labels", "annotations", "finalizers", "ownerReferences"],
    );
    let spec = &mut merged["spec"];
    match sub {
        Subresource::EphemeralContainers => match new["spec"].get("ephemeralContainers") {
            Some(list) => spec["ephemeralContainers"] = list.clone(),
            None => {
                if let Some(m) = spec.as_object_mut() {
                    m.remove("ephemeralContainers");
                }
            }
        },
        Subresource::Resize => {
            for key in ["containers", "initContainers"] {
                let olds = old["spec"][key].as_array().cloned().unwrap_or_default();
                let news = new["spec"][key].as_array().cloned().unwrap_or_default();
                let same_shape = olds.len() == news.len()
                    && olds.iter().zip(&news).all(|(o, n)| o["name"] == n["name"]);
                if !same_shape {
                    spec[key] = new["spec"][key].clone();
                    continue;
                }
                for (i, n) in news.iter().enumerate() {
                    for f in ["resources", "resizePolicy"] {
                        let Some(c) = spec[key][i].as_object_mut() else {
                            continue;
                        };
                        match n.get(f) {
                            Some(v) => {
                                c.insert(f.to_owned(), v.clone());
                            }
                            None => {
                                c.remove(f);
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
    *new = merged;
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
