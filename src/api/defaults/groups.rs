//! Defaults of kinds in the smaller API groups: autoscaling, networking, storage, discovery,
//! RBAC, apiextensions.
//!
//! Invariant: mirrors each group's `SetDefaults_*`, writing only unset fields.

use serde_json::{json, Map, Value};

use super::json::{default_str, default_value, each_obj, ensure_obj, obj_mut};

fn scale_up_rules() -> Value {
    json!({
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}
        ]
    })
}

fn scale_down_rules() -> Value {
    // No stabilization window: the controller's flag supplies it.
    json!({
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    })
}

/// Fills the unset parts of one scaling-rules object from upstream's defaults.
fn fill_rules(behavior: &mut Map<String, Value>, key: &str, defaults: Value) {
    match behavior.get_mut(key).and_then(Value::as_object_mut) {
        Some(rules) => {
            if let Value::Object(d) = defaults {
                for (k, v) in d {
                    default_value(rules, &k, v);
                }
            }
        }
        None => {
            behavior.insert(key.to_string(), defaults);
        }
    }
}

/// autoscaling/v1 only defaults `minReplicas`; v2 also the CPU metric and behavior rules.
pub(crate) fn hpa(obj: &mut Map<String, Value>) {
    let v1 = obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1");
    let Some(spec) = ensure_obj(obj, "spec") else {
        return;
    };
    default_value(spec, "minReplicas", json!(1));
    if v1 {
        return;
    }
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(behavior) = obj_mut(spec, "behavior") {
        fill_rules(behavior, "scaleUp", scale_up_rules());
        fill_rules(behavior, "scaleDown", scale_down_rules());
    }
}

pub(crate) fn network_policy(obj: &mut Map<String, Value>) {
    let Some(spec) = ensure_obj(obj, "spec") else {
        return;
    };
    for dir in ["ingress", "egress"] {
        each_obj(spec, dir, |rule| {
            each_obj(rule, "ports", |p| default_str(p, "protocol", "TCP"));
        });
    }
    let no_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_types {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
}

pub(crate) fn ingress_class(obj: &mut Map<String, Value>) {
    if let Some(params) = obj_mut(obj, "spec").and_then(|s| obj_mut(s, "parameters")) {
        default_str(params, "scope", "Cluster");
    }
}

pub(crate) fn storage_class(obj: &mut Map<String, Value>) {
    default_str(obj, "reclaimPolicy", "Delete");
    default_str(obj, "volumeBindingMode", "Immediate");
}

pub(crate) fn endpoint_slice(obj: &mut Map<String, Value>) {
    each_obj(obj, "ports", |p| {
        default_value(p, "name", json!(""));
        default_str(p, "protocol", "TCP");
    });
}

pub(crate) fn role_binding(obj: &mut Map<String, Value>) {
    const RBAC: &str = "rbac.authorization.k8s.io";
    if let Some(r) = obj_mut(obj, "roleRef") {
        default_str(r, "apiGroup", RBAC);
    }
    each_obj(obj, "subjects", |s| {
        let group = match s.get("kind").and_then(Value::as_str) {
            Some("ServiceAccount") => "",
            Some("User" | "Group") => RBAC,
            _ => return,
        };
        if s.get("apiGroup")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            s.insert("apiGroup".into(), json!(group));
        }
    });
}

pub(crate) fn crd(obj: &mut Map<String, Value>) {
    let Some(spec) = ensure_obj(obj, "spec") else {
        return;
    };
    if let Some(names) = obj_mut(spec, "names") {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        default_str(names, "singular", &kind.to_lowercase());
        if !kind.is_empty() {
            default_str(names, "listKind", &format!("{kind}List"));
        }
    }
    default_value(spec, "conversion", json!({"strategy": "None"}));
    if let Some(svc) = obj_mut(spec, "conversion")
        .and_then(|c| obj_mut(c, "webhook"))
        .and_then(|w| obj_mut(w, "clientConfig"))
        .and_then(|cc| obj_mut(cc, "service"))
    {
        default_value(svc, "port", json!(443));
    }
}
