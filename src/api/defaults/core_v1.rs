//! Defaults of core/v1 kinds other than pods: Service, Secret, Namespace, PV, PVC,
//! Endpoints, Node.
//!
//! Invariant: only fields upstream defaults (or that its registry fills on create and users
//! see, like a Namespace's finalizer and a Service's IP family fields) are touched; cluster IP
//! allocation is the API server's job, not this module's.

use serde_json::{json, Map, Value};

use super::json::{default_str, default_value, each_obj, ensure_obj, obj_mut, str_field};

pub(crate) fn service(obj: &mut Map<String, Value>) {
    let Some(spec) = ensure_obj(obj, "spec") else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match str_field(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    each_obj(spec, "ports", |p| {
        default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset {
            let port = p.get("port").cloned().unwrap_or(json!(0));
            p.insert("targetPort".into(), port);
        }
    });
    let ty = str_field(spec, "type").to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        ty == "NodePort" || ty == "LoadBalancer" || (ty == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_str(spec, "internalTrafficPolicy", "Cluster");
        // Set by the registry when it allocates IPs; this cluster is single-stack IPv4.
        default_str(spec, "ipFamilyPolicy", "SingleStack");
        default_value(spec, "ipFamilies", json!(["IPv4"]));
    }
    if ty == "LoadBalancer" {
        default_value(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

pub(crate) fn secret(obj: &mut Map<String, Value>) {
    // kubectl create secret sends `type: ""`, which upstream treats as unset.
    default_str(obj, "type", "Opaque");
}

pub(crate) fn namespace(obj: &mut Map<String, Value>) {
    if let Some(spec) = ensure_obj(obj, "spec") {
        default_value(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = ensure_obj(obj, "status") {
        default_str(status, "phase", "Active");
    }
}

pub(crate) fn pv(obj: &mut Map<String, Value>) {
    if let Some(status) = ensure_obj(obj, "status") {
        default_str(status, "phase", "Pending");
    }
    if let Some(spec) = ensure_obj(obj, "spec") {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_str(spec, "volumeMode", "Filesystem");
    }
}

/// Also used for a StatefulSet's `volumeClaimTemplates`.
pub(crate) fn pvc(obj: &mut Map<String, Value>) {
    if let Some(status) = ensure_obj(obj, "status") {
        default_str(status, "phase", "Pending");
    }
    if let Some(spec) = ensure_obj(obj, "spec") {
        default_str(spec, "volumeMode", "Filesystem");
    }
}

pub(crate) fn endpoints(obj: &mut Map<String, Value>) {
    each_obj(obj, "subsets", |s| {
        each_obj(s, "ports", |p| default_str(p, "protocol", "TCP"));
    });
}

pub(crate) fn node(obj: &mut Map<String, Value>) {
    if let Some(status) = obj_mut(obj, "status") {
        if let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned() {
            default_value(status, "allocatable", cap);
        }
    }
}
