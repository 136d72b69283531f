//! Conversion between the served versions of a built-in kind whose versions differ in
//! shape: HorizontalPodAutoscaler `autoscaling/v1` ⇄ `autoscaling/v2` (upstream
//! `pkg/apis/autoscaling/v1/conversion.go`), and Event `v1` ⇄ `events.k8s.io/v1`, one
//! resource in two groups (upstream `pkg/apis/events/v1/conversion.go`). Objects are
//! stored in the version they were written in; every read, list, watch event and the
//! current object of every write is brought to the requested version here, so a client of
//! either version sees (and writes back) a complete object.
//!
//! Invariant: v2 → v1 → v2 keeps everything: what v1 has no field for (metrics other than
//! the CPU utilization target, behavior, conditions, current metrics) rides in v1's
//! `autoscaling.alpha.kubernetes.io/*` annotations and comes back out of them.
//! The metric annotations hold v1's own `MetricSpec` / `MetricStatus` shape
//! (`targetAverageUtilization`, `metricName`, ...), as upstream writes them.

use serde_json::{json, Map, Value};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// Brings `obj` to `api_version` (converting when its kind has shapes per version) and sets
/// its apiVersion.
pub fn to_version(obj: &mut Value, api_version: &str) {
    let from = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if from != api_version && has_shapes_per_version(obj) {
        match (from, api_version) {
            ("autoscaling/v1", "autoscaling/v2") => hpa_v1_to_v2(obj),
            ("autoscaling/v2", "autoscaling/v1") => hpa_v2_to_v1(obj),
            ("v1", "events.k8s.io/v1") => rename_event_fields(obj, true),
            ("events.k8s.io/v1", "v1") => rename_event_fields(obj, false),
            _ => {}
        }
    }
    obj["apiVersion"] = json!(api_version);
}

/// The fields a core/v1 Event and an events.k8s.io/v1 Event name differently (upstream's
/// `pkg/apis/events/v1` conversion); the rest are the same in both.
pub const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// core/v1 → events.k8s.io/v1 (`to_events`) or back. Unset values (null, "") are left out,
/// as the target version's empty fields are omitted.
fn rename_event_fields(obj: &mut Value, to_events: bool) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    for (core, events) in EVENT_RENAMES {
        let (from, to) = if to_events {
            (core, events)
        } else {
            (events, core)
        };
        if let Some(v) = map.remove(*from) {
            if !(v.is_null() || v == "") {
                map.insert((*to).to_owned(), v);
            }
        }
    }
}

/// The v1 field of a metric source and the path of the same value in v2.
type Fields = &'static [(&'static str, &'static [&'static str])];

/// The source key of a metric type (`Resource` → `resource`).
fn source_key(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => return None,
    })
}

/// Each source's fields; `@` stands for `target` (spec) or `current` (status), in v1's
/// field name (`@AverageValue`) and in v2's path (`@.averageValue`) alike.
fn fields(key: &str) -> Fields {
    match key {
        "resource" => &[
            ("name", &["name"]),
            ("@AverageUtilization", &["@", "averageUtilization"]),
            ("@AverageValue", &["@", "averageValue"]),
        ],
        "containerResource" => &[
            ("name", &["name"]),
            ("container", &["container"]),
            ("@AverageUtilization", &["@", "averageUtilization"]),
            ("@AverageValue", &["@", "averageValue"]),
        ],
        "pods" => &[
            ("metricName", &["metric", "name"]),
            ("selector", &["metric", "selector"]),
            ("@AverageValue", &["@", "averageValue"]),
        ],
        "object" => &[
            ("target", &["describedObject"]),
            ("metricName", &["metric", "name"]),
            ("selector", &["metric", "selector"]),
            ("@Value", &["@", "value"]),
            ("averageValue", &["@", "averageValue"]),
        ],
        _ => &[
            ("metricName", &["metric", "name"]),
            ("metricSelector", &["metric", "selector"]),
            ("@Value", &["@", "value"]),
            ("@AverageValue", &["@", "averageValue"]),
        ],
    }
}

/// `fields(key)` with `@` spelled out for the spec (`target`) or status (`current`) side.
fn fields_of(key: &str, spec: bool) -> Vec<(String, Vec<&'static str>)> {
    let side = if spec { "target" } else { "current" };
    fields(key)
        .iter()
        .map(|(v1, v2)| {
            let path = v2
                .iter()
                .map(|p| if *p == "@" { side } else { p })
                .collect();
            (v1.replace('@', side), path)
        })
        .collect()
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .filter(|v| !v.is_null())
}

fn set_at(v: &mut Value, path: &[&str], value: Value) {
    // Indexing a null or missing key with a string makes it an object (serde_json).
    let slot = path.iter().fold(v, |cur, k| &mut cur[*k]);
    *slot = value;
}

/// A v2 metric (spec or status entry) in v1's annotation shape.
fn metric_to_v1(m: &Value, spec: bool) -> Value {
    let ty = m["type"].as_str().unwrap_or_default();
    let Some(key) = source_key(ty) else {
        return m.clone();
    };
    let mut source = json!({});
    for (v1, v2) in fields_of(key, spec) {
        if let Some(v) = at(&m[key], &v2) {
            source[v1] = v.clone();
        }
    }
    json!({"type": ty, key: source})
}

/// A v1 annotation metric in the v2 shape; `spec` entries get their target type back.
fn metric_to_v2(m: &Value, spec: bool) -> Value {
    let ty = m["type"].as_str().unwrap_or_default();
    let Some(key) = source_key(ty) else {
        return m.clone();
    };
    let mut source = json!({});
    for (v1, v2) in fields_of(key, spec) {
        if let Some(v) = m[key].get(&v1).filter(|v| !v.is_null()) {
            set_at(&mut source, &v2, v.clone());
        }
    }
    if spec {
        let target = &source["target"];
        let target_type = if !target["averageUtilization"].is_null() {
            "Utilization"
        } else if !target["averageValue"].is_null() {
            "AverageValue"
        } else {
            "Value"
        };
        set_at(&mut source, &["target", "type"], json!(target_type));
    }
    json!({"type": ty, key: source})
}

/// Whether `obj`'s kind differs in shape between its versions (and so is converted).
pub fn has_shapes_per_version(obj: &Value) -> bool {
    obj["kind"] == "HorizontalPodAutoscaler" || obj["kind"] == "Event"
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
        && metric["resource"]["target"]["averageUtilization"].is_i64()
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

fn annotate(obj: &mut Value, key: &str, value: &Value) {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"][key] = json!(value.to_string());
}

/// Removes and parses an annotation written by [`hpa_v2_to_v1`].
fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let annotations = obj_mut(obj, "metadata").and_then(|m| m.get_mut("annotations"))?;
    let map = annotations.as_object_mut()?;
    let raw = map.remove(key)?;
    if map.is_empty() {
        if let Some(m) = obj_mut(obj, "metadata") {
            m.remove("annotations");
        }
    }
    serde_json::from_str(raw.as_str()?).ok()
}

fn hpa_v2_to_v1(obj: &mut Value) {
    let mut spec = obj.get_mut("spec").map(Value::take).unwrap_or(json!({}));
    let metrics = spec
        .as_object_mut()
        .and_then(|s| s.remove("metrics"))
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    let cpu = metrics.iter().position(is_cpu_utilization);
    if let Some(i) = cpu {
        spec["targetCPUUtilizationPercentage"] =
            metrics[i]["resource"]["target"]["averageUtilization"].clone();
    }
    let others: Vec<Value> = metrics
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != cpu)
        .map(|(_, m)| m.clone())
        .collect();
    if !others.is_empty() {
        let v1: Vec<Value> = others.iter().map(|m| metric_to_v1(m, true)).collect();
        annotate(obj, METRICS, &json!(v1));
    }
    if let Some(b) = spec.as_object_mut().and_then(|s| s.remove("behavior")) {
        if !b.is_null() {
            annotate(obj, BEHAVIOR, &b);
        }
    }
    obj["spec"] = spec;
    let Some(mut status) = obj
        .get_mut("status")
        .map(Value::take)
        .filter(Value::is_object)
    else {
        return;
    };
    let current = status
        .as_object_mut()
        .and_then(|s| s.remove("currentMetrics"))
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    let cpu = current.iter().position(|m| {
        m["type"] == "Resource"
            && m["resource"]["name"] == "cpu"
            && m["resource"]["current"]["averageUtilization"].is_i64()
    });
    if let Some(i) = cpu {
        status["currentCPUUtilizationPercentage"] =
            current[i]["resource"]["current"]["averageUtilization"].clone();
    }
    // Upstream keeps every current metric in the annotation, the CPU one too (its raw
    // value has no v1 field).
    if !current.is_empty() {
        let v1: Vec<Value> = current.iter().map(|m| metric_to_v1(m, false)).collect();
        annotate(obj, CURRENT_METRICS, &json!(v1));
    }
    if let Some(conds) = status.as_object_mut().and_then(|s| s.remove("conditions")) {
        if conds.as_array().is_some_and(|c| !c.is_empty()) {
            annotate(obj, CONDITIONS, &conds);
        }
    }
    if status["desiredReplicas"].is_null() {
        status["desiredReplicas"] = json!(0);
    }
    obj["status"] = status;
}

fn hpa_v1_to_v2(obj: &mut Value) {
    let mut spec = obj.get_mut("spec").map(Value::take).unwrap_or(json!({}));
    let mut metrics = Vec::new();
    if let Some(target) = spec
        .as_object_mut()
        .and_then(|s| s.remove("targetCPUUtilizationPercentage"))
        .filter(Value::is_i64)
    {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}}));
    }
    if let Some(Value::Array(more)) = take_annotation(obj, METRICS) {
        metrics.extend(more.iter().map(|m| metric_to_v2(m, true)));
    }
    if !metrics.is_empty() {
        spec["metrics"] = json!(metrics);
    }
    if let Some(b) = take_annotation(obj, BEHAVIOR) {
        spec["behavior"] = b;
    }
    obj["spec"] = spec;
    let annotated_current = take_annotation(obj, CURRENT_METRICS);
    let conditions = take_annotation(obj, CONDITIONS);
    let Some(mut status) = obj
        .get_mut("status")
        .map(Value::take)
        .filter(Value::is_object)
    else {
        return;
    };
    let cpu = status
        .as_object_mut()
        .and_then(|s| s.remove("currentCPUUtilizationPercentage"))
        .filter(Value::is_i64);
    let current = match (annotated_current, cpu) {
        (Some(Value::Array(all)), _) => all.iter().map(|m| metric_to_v2(m, false)).collect(),
        (_, Some(cpu)) => vec![json!({"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": cpu}}})],
        _ => Vec::new(),
    };
    if !current.is_empty() {
        status["currentMetrics"] = json!(current);
    }
    if let Some(c) = conditions {
        status["conditions"] = c;
    }
    obj["status"] = status;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_converts_between_its_two_groups_and_back() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started", "message": "Started container c", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
            "count": 2, "eventTime": null, "reportingComponent": "", "reportingInstance": "n1",
        });
        let mut v = core.clone();
        to_version(&mut v, "events.k8s.io/v1");
        assert_eq!(
            v,
            json!({
                "apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "e", "namespace": "default"},
                "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
                "reason": "Started", "note": "Started container c", "type": "Normal",
                "deprecatedSource": {"component": "kubelet", "host": "n1"},
                "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
                "deprecatedLastTimestamp": "2026-01-01T00:01:00Z",
                "deprecatedCount": 2, "eventTime": null, "reportingInstance": "n1",
            })
        );
        to_version(&mut v, "v1");
        let mut expected = core;
        expected
            .as_object_mut()
            .unwrap()
            .remove("reportingComponent");
        assert_eq!(v, expected);
    }

    fn v2() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"keep": "me"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "100Mi"}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3, "observedGeneration": 1,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu",
                        "current": {"averageUtilization": 250, "averageValue": "125m"}}},
                    {"type": "Resource", "resource": {"name": "memory",
                        "current": {"averageValue": "50Mi"}}}
                ],
                "conditions": [{"type": "AbleToScale", "status": "True",
                    "reason": "SucceededRescale", "message": "m",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }
        })
    }

    #[test]
    fn v2_reads_as_v1_with_the_cpu_target_in_fields_and_the_rest_in_annotations() {
        let mut v = v2();
        to_version(&mut v, "autoscaling/v1");
        assert_eq!(v["apiVersion"], "autoscaling/v1");
        assert_eq!(v["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(v["spec"].get("metrics").is_none() && v["spec"].get("behavior").is_none());
        assert_eq!(v["status"]["currentCPUUtilizationPercentage"], 250);
        assert!(v["status"].get("conditions").is_none());
        let a = &v["metadata"]["annotations"];
        assert_eq!(a["keep"], "me");
        let metrics: Value =
            serde_json::from_str(a[METRICS].as_str().expect("metrics")).expect("JSON");
        assert_eq!(
            metrics,
            json!([{"type": "Resource",
                "resource": {"name": "memory", "targetAverageValue": "100Mi"}}])
        );
        assert!(a[BEHAVIOR].is_string() && a[CONDITIONS].is_string());
    }

    #[test]
    fn v2_to_v1_and_back_keeps_everything() {
        let mut v = v2();
        to_version(&mut v, "autoscaling/v1");
        to_version(&mut v, "autoscaling/v2");
        assert_eq!(v, v2());
    }

    #[test]
    fn pods_object_and_external_metrics_round_trip_through_v1_annotations() {
        let metrics = json!([
            {"type": "Pods", "pods": {"metric": {"name": "qps"},
                "target": {"type": "AverageValue", "averageValue": "10"}}},
            {"type": "Object", "object": {
                "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "s"},
                "metric": {"name": "hits", "selector": {"matchLabels": {"a": "b"}}},
                "target": {"type": "Value", "value": "5"}}},
            {"type": "External", "external": {"metric": {"name": "queue"},
                "target": {"type": "AverageValue", "averageValue": "3"}}},
            {"type": "ContainerResource", "containerResource": {"name": "cpu",
                "container": "app", "target": {"type": "Utilization", "averageUtilization": 10}}}
        ]);
        let mut original = v2();
        original["spec"]["metrics"] = metrics;
        let mut v = original.clone();
        to_version(&mut v, "autoscaling/v1");
        let annotated = v["metadata"]["annotations"][METRICS]
            .as_str()
            .expect("metrics");
        assert!(annotated.contains(r#""metricName":"qps""#), "{annotated}");
        assert!(annotated.contains(r#""targetValue":"5""#), "{annotated}");
        to_version(&mut v, "autoscaling/v2");
        assert_eq!(v, original);
    }

    #[test]
    fn a_plain_v1_object_becomes_a_cpu_utilization_metric() {
        let mut v = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                     "maxReplicas": 3, "targetCPUUtilizationPercentage": 70},
            "status": {"currentReplicas": 1, "desiredReplicas": 1,
                       "currentCPUUtilizationPercentage": 20}
        });
        to_version(&mut v, "autoscaling/v2");
        assert_eq!(
            v["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70}}}])
        );
        assert_eq!(
            v["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            20
        );
        assert!(v["metadata"]["annotations"].is_null());
    }
}
