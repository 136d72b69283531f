//! Pod spec, container, probe and volume defaults, for Pods and pod templates.
//!
//! Invariant: a pod template gets exactly the PodSpec-level defaults; a Pod additionally gets
//! the Pod-only ones (`enableServiceLinks`, requests from limits, hostNetwork host ports),
//! as upstream keeps those out of templates so workload hashes stay stable.

use serde_json::{json, Map, Value};

use super::json::{
    default_int_nonzero, default_str, default_value, each_obj, ensure_obj, obj_mut, str_field,
};

/// Upstream's pull policy rule: `:latest` or no tag (and no digest) pulls every time.
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, has_digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    // A ':' after the last '/' separates the tag; one before it is a registry port.
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if has_digest => "IfNotPresent",
        None => "Always",
    }
}

fn default_http_get(handler: &mut Map<String, Value>) {
    if let Some(h) = obj_mut(handler, "httpGet") {
        default_str(h, "path", "/");
        default_str(h, "scheme", "HTTP");
    }
}

fn default_probe(probe: &mut Map<String, Value>) {
    default_int_nonzero(probe, "timeoutSeconds", 1);
    default_int_nonzero(probe, "periodSeconds", 10);
    default_int_nonzero(probe, "successThreshold", 1);
    default_int_nonzero(probe, "failureThreshold", 3);
    default_http_get(probe);
    if let Some(g) = obj_mut(probe, "grpc") {
        default_value(g, "service", json!(""));
    }
}

fn default_field_refs(item: &mut Map<String, Value>) {
    if let Some(f) = obj_mut(item, "fieldRef") {
        default_str(f, "apiVersion", "v1");
    }
    if let Some(r) = obj_mut(item, "resourceFieldRef") {
        // A Go resource.Quantity is a struct, so upstream always prints it.
        default_value(r, "divisor", json!("0"));
    }
}

fn default_container(c: &mut Map<String, Value>) {
    if str_field(c, "imagePullPolicy").is_empty() {
        let policy = default_pull_policy(str_field(c, "image"));
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    // `resources` is a struct in Go, so it always serializes, as `{}` when empty.
    ensure_obj(c, "resources");
    each_obj(c, "ports", |p| default_str(p, "protocol", "TCP"));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = obj_mut(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lc) = obj_mut(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = obj_mut(lc, hook) {
                default_http_get(h);
            }
        }
    }
    each_obj(c, "env", |e| {
        if let Some(vf) = obj_mut(e, "valueFrom") {
            default_field_refs(vf);
        }
    });
}

/// Every key of a volume other than `name` is a volume source.
fn default_volume(v: &mut Map<String, Value>) {
    if v.iter().all(|(k, val)| k == "name" || val.is_null()) {
        v.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = obj_mut(v, src) {
            default_value(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = obj_mut(v, "downwardAPI") {
        each_obj(d, "items", default_field_refs);
    }
    // Upstream's SetDefaults_ImageVolumeSource: the container image rule.
    if let Some(i) = obj_mut(v, "image") {
        if str_field(i, "pullPolicy").is_empty() {
            let policy = default_pull_policy(str_field(i, "reference"));
            i.insert("pullPolicy".into(), json!(policy));
        }
    }
    if let Some(p) = obj_mut(v, "projected") {
        each_obj(p, "sources", |s| {
            if let Some(d) = obj_mut(s, "downwardAPI") {
                each_obj(d, "items", default_field_refs);
            }
            if let Some(t) = obj_mut(s, "serviceAccountToken") {
                default_value(t, "expirationSeconds", json!(3600));
            }
        });
    }
    if let Some(h) = obj_mut(v, "hostPath") {
        default_value(h, "type", json!(""));
    }
}

/// Upstream's `SetDefaults_PodSpec` and everything nested in a pod spec.
pub(crate) fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_value(spec, "securityContext", json!({}));
    default_value(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        each_obj(spec, list, default_container);
    }
    each_obj(spec, "volumes", default_volume);
}

/// Defaults of a `PodTemplateSpec` (workloads, Jobs, CronJobs, PodTemplates).
pub(crate) fn default_pod_template(template: &mut Map<String, Value>) {
    if let Some(spec) = ensure_obj(template, "spec") {
        default_pod_spec(spec);
    }
}

/// Requests default to limits for each resource named only in limits.
fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(res) = obj_mut(c, "resources") else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if let Some(req) = ensure_obj(res, "requests") {
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

/// A Pod: PodSpec defaults plus the Pod-only ones.
pub(crate) fn default_pod(obj: &mut Map<String, Value>) {
    let Some(spec) = ensure_obj(obj, "spec") else {
        return;
    };
    default_pod_spec(spec);
    for list in ["containers", "initContainers"] {
        each_obj(spec, list, requests_from_limits);
    }
    default_value(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            each_obj(spec, list, |c| {
                each_obj(c, "ports", |p| {
                    let cp = p.get("containerPort").cloned().unwrap_or(Value::Null);
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 && !cp.is_null()
                    {
                        p.insert("hostPort".into(), cp);
                    }
                });
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_tag() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/app:v2"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox@sha256:abcd"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox:latest@sha256:abcd"), "Always");
    }
}
