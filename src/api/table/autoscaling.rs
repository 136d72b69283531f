//! `autoscaling` printers: HorizontalPodAutoscaler (v1 and v2 object shapes)
//! and the Scale subresource.
//!
//! Invariant: TARGETS pairs `spec.metrics[i]` with `status.currentMetrics[i]`
//! by position, as upstream does, and shows at most two metrics.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{created, get, int_at, list_at, n, name, opt_int, quantity, s, str_at};
use super::{col, no_conditions, Col, Spec, AGE, NAME, NAME_DESC};

pub static HPA: Spec = Spec {
    columns: &[
        NAME,
        col("Reference", "string", "The scaled resource, as kind/name."),
        col(
            "Targets",
            "string",
            "Current and target values of the scaling metrics (current/target).",
        ),
        col(
            "MinPods",
            "string",
            "Lower bound for the number of replicas.",
        ),
        col(
            "MaxPods",
            "string",
            "Upper bound for the number of replicas.",
        ),
        col(
            "Replicas",
            "string",
            "Number of replicas the autoscaler last observed.",
        ),
        AGE,
    ],
    cells: hpa_cells,
    conditions: no_conditions,
    list: None,
};

/// A quantity as upstream's `(*Quantity).String()` prints it, `<nil>` if unset.
fn q(v: Option<&Value>) -> String {
    quantity(v).unwrap_or_else(|| "<nil>".to_string())
}

fn percent(v: Option<i64>) -> Option<String> {
    v.map(|p| format!("{p}%"))
}

/// Metrics and current values in the autoscaling/v2 shape. A v1 object's
/// `targetCPUUtilizationPercentage` becomes a CPU utilization metric, as the
/// v1→internal conversion does.
fn metrics(hpa: &Value) -> (Vec<Value>, Vec<Value>) {
    let spec_metrics = list_at(hpa, &["spec", "metrics"]);
    if !spec_metrics.is_empty() {
        return (
            spec_metrics.to_vec(),
            list_at(hpa, &["status", "currentMetrics"]).to_vec(),
        );
    }
    let Some(target) = opt_int(hpa, &["spec", "targetCPUUtilizationPercentage"]) else {
        return (Vec::new(), Vec::new());
    };
    let spec = serde_json::json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": target}}});
    let status = match opt_int(hpa, &["status", "currentCPUUtilizationPercentage"]) {
        Some(cur) => vec![
            serde_json::json!({"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": cur}}}),
        ],
        None => Vec::new(),
    };
    (vec![spec], status)
}

/// `current/target` for one metric (upstream `formatHPAMetrics`).
fn metric_text(spec: &Value, status: Option<&Value>) -> String {
    let ty = str_at(spec, &["type"]);
    // The status entry of the same source type, if the controller wrote one.
    let key = match ty {
        "External" => "external",
        "Pods" => "pods",
        "Object" => "object",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        _ => return "<unknown type>".to_string(),
    };
    let source = get(spec, &[key]).unwrap_or(&Value::Null);
    let current = status
        .and_then(|st| get(st, &[key]))
        .filter(|c| c.is_object());
    let target = get(source, &["target"]).unwrap_or(&Value::Null);
    let cur_field = |field: &str| current.and_then(|c| get(c, &["current", field]));
    match ty {
        "External" | "Object" => match get(target, &["averageValue"]).filter(|v| !v.is_null()) {
            Some(avg) => {
                let cur = quantity(cur_field("averageValue")).unwrap_or_else(|| "<unknown>".into());
                format!("{cur}/{} (avg)", q(Some(avg)))
            }
            None => {
                let cur = match current {
                    Some(_) => q(cur_field("value")),
                    None => "<unknown>".to_string(),
                };
                format!("{cur}/{}", q(get(target, &["value"])))
            }
        },
        "Pods" => {
            let cur = match current {
                Some(_) => q(cur_field("averageValue")),
                None => "<unknown>".to_string(),
            };
            format!("{cur}/{}", q(get(target, &["averageValue"])))
        }
        _ => {
            let resource = str_at(source, &["name"]);
            match get(target, &["averageValue"]).filter(|v| !v.is_null()) {
                Some(avg) => {
                    let cur = match current {
                        Some(_) => q(cur_field("averageValue")),
                        None => "<unknown>".to_string(),
                    };
                    format!("{resource}: {cur}/{}", q(Some(avg)))
                }
                None => {
                    let cur = percent(cur_field("averageUtilization").and_then(Value::as_i64))
                        .unwrap_or_else(|| "<unknown>".into());
                    let tgt = percent(opt_int(target, &["averageUtilization"]))
                        .unwrap_or_else(|| "<auto>".into());
                    format!("{resource}: {cur}/{tgt}")
                }
            }
        }
    }
}

fn format_metrics(hpa: &Value) -> String {
    const MAX: usize = 2;
    let (specs, statuses) = metrics(hpa);
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| metric_text(spec, statuses.get(i)))
        .collect();
    if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
    }
}

fn hpa_cells(hpa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(hpa, &["spec", "scaleTargetRef", "kind"]),
        str_at(hpa, &["spec", "scaleTargetRef", "name"])
    );
    let min = opt_int(hpa, &["spec", "minReplicas"])
        .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    vec![
        s(name(hpa)),
        s(reference),
        s(format_metrics(hpa)),
        s(min),
        n(int_at(hpa, &["spec", "maxReplicas"])),
        n(int_at(hpa, &["status", "currentReplicas"])),
        s(since(created(hpa), now)),
    ]
}

static SCALE_COLUMNS: [Col; 4] = [
    // Upstream's Scale printer gives its Name column no "name" format.
    col("Name", "string", NAME_DESC),
    col("Desired", "integer", "Number of replicas wanted."),
    col("Available", "integer", "Number of replicas observed."),
    AGE,
];

pub static SCALE: Spec = Spec {
    columns: &SCALE_COLUMNS,
    cells: |scale, now| {
        vec![
            s(name(scale)),
            n(int_at(scale, &["spec", "replicas"])),
            n(int_at(scale, &["status", "replicas"])),
            s(since(created(scale), now)),
        ]
    },
    conditions: no_conditions,
    list: None,
};

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::cells;
    use serde_json::{json, Value};

    fn hpa(metrics: Value, current: Value) -> Value {
        json!({"apiVersion": "autoscaling/v2", "metadata": {"name": "some-hpa"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                     "minReplicas": 2, "maxReplicas": 10, "metrics": metrics},
            "status": {"currentReplicas": 4, "desiredReplicas": 5, "currentMetrics": current}})
    }

    fn targets(h: &Value) -> Value {
        cells(&printers::HPA, h)[2].clone()
    }

    #[test]
    fn hpa_without_metrics_or_min_prints_placeholders() {
        let h = json!({"metadata": {"name": "some-hpa"},
            "spec": {"scaleTargetRef": {"kind": "ReplicationController", "name": "some-rc"}, "maxReplicas": 10},
            "status": {"currentReplicas": 4}});
        assert_eq!(
            Value::Array(cells(&printers::HPA, &h)),
            json!([
                "some-hpa",
                "ReplicationController/some-rc",
                "<none>",
                "<unset>",
                10,
                4,
                "<unknown>"
            ])
        );
    }

    #[test]
    fn resource_utilization_shows_percentages() {
        let spec = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]);
        assert_eq!(targets(&hpa(spec.clone(), json!([]))), "cpu: <unknown>/80%");
        let current = json!([{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 50, "averageValue": "40m"}}}]);
        let h = hpa(spec, current);
        assert_eq!(
            Value::Array(cells(&printers::HPA, &h)),
            json!([
                "some-hpa",
                "Deployment/web",
                "cpu: 50%/80%",
                "2",
                10,
                4,
                "<unknown>"
            ])
        );
    }

    #[test]
    fn value_metrics_show_quantities() {
        let ext_avg = json!([{"type": "External", "external": {"metric": {"name": "m"},
            "target": {"type": "AverageValue", "averageValue": "100m"}}}]);
        assert_eq!(
            targets(&hpa(ext_avg.clone(), json!([]))),
            "<unknown>/100m (avg)"
        );
        let cur = json!([{"type": "External", "external": {"metric": {"name": "m"}, "current": {"averageValue": "50m"}}}]);
        assert_eq!(targets(&hpa(ext_avg, cur)), "50m/100m (avg)");
        let obj = json!([{"type": "Object", "object": {"describedObject": {"kind": "Service", "name": "s"},
            "metric": {"name": "m"}, "target": {"type": "Value", "value": "100m"}}}]);
        let cur = json!([{"type": "Object", "object": {"current": {"value": "50m"}}}]);
        assert_eq!(targets(&hpa(obj, cur)), "50m/100m");
        let res = json!([{"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]);
        assert_eq!(targets(&hpa(res, json!([]))), "memory: <unknown>/100Mi");
    }

    #[test]
    fn more_than_two_metrics_are_elided() {
        let spec = json!([
            {"type": "Pods", "pods": {"metric": {"name": "a"}, "target": {"type": "AverageValue", "averageValue": "100m"}}},
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
            {"type": "Pods", "pods": {"metric": {"name": "b"}, "target": {"type": "AverageValue", "averageValue": "400m"}}}]);
        let current = json!([
            {"type": "Pods", "pods": {"metric": {"name": "a"}, "current": {"averageValue": "50m"}}},
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 50}}}]);
        assert_eq!(
            targets(&hpa(spec, current)),
            "50m/100m, cpu: 50%/80% + 1 more..."
        );
    }

    #[test]
    fn v1_hpa_uses_cpu_percentage_fields() {
        let h = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "v1"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1,
                     "maxReplicas": 5, "targetCPUUtilizationPercentage": 60},
            "status": {"currentReplicas": 2, "currentCPUUtilizationPercentage": 12}});
        assert_eq!(
            Value::Array(cells(&printers::HPA, &h)),
            json!([
                "v1",
                "Deployment/web",
                "cpu: 12%/60%",
                "1",
                5,
                2,
                "<unknown>"
            ])
        );
    }

    #[test]
    fn scale_shows_desired_and_available() {
        let sc = json!({"kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 2}, "status": {"replicas": 1}});
        assert_eq!(
            Value::Array(cells(&printers::SCALE, &sc)),
            json!(["web", 2, 1, "<unknown>"])
        );
    }
}
