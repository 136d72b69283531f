//! The field labels each resource supports in field selectors, and their values.
//!
//! Invariant: the supported sets, renames and error wording mirror the field-label
//! conversion functions registered upstream (core/v1, batch/v1, events/v1, certificates/v1,
//! resource/v1);
//! every other resource, custom resources included, gets upstream's default
//! (`metadata.name`, `metadata.namespace`). Values are rendered as upstream's field sets do
//! (booleans `true`/`false`, counters as decimal, `None` for an unset string).

use serde_json::Value;

use super::SelectorError;

/// How a resource words its "unsupported field" error.
#[derive(Clone, Copy)]
enum Wording {
    /// `field label not supported: foo` (core kinds, events, CSRs).
    Plain,
    /// `field label "foo" not supported for Job`.
    Job,
    /// `field label not supported for resource.k8s.io/v1, Kind=ResourceSlice: foo`.
    ResourceSlice,
    /// `"foo" is not a known field selector: only "metadata.name", "metadata.namespace"`.
    Default,
}

/// Supported labels for a resource, and the label each one is stored under.
fn table(group: &str, resource: &str) -> (&'static [(&'static str, &'static str)], Wording) {
    const META: &[(&str, &str)] = &[
        ("metadata.name", "metadata.name"),
        ("metadata.namespace", "metadata.namespace"),
    ];
    match (group, resource) {
        ("", "pods") => (
            &[
                ("metadata.name", "metadata.name"),
                ("metadata.namespace", "metadata.namespace"),
                ("spec.nodeName", "spec.nodeName"),
                ("spec.restartPolicy", "spec.restartPolicy"),
                ("spec.schedulerName", "spec.schedulerName"),
                ("spec.serviceAccountName", "spec.serviceAccountName"),
                ("spec.hostNetwork", "spec.hostNetwork"),
                ("status.phase", "status.phase"),
                ("status.podIP", "status.podIP"),
                ("status.podIPs", "status.podIPs"),
                ("status.nominatedNodeName", "status.nominatedNodeName"),
                // Old v1 clients still send spec.host.
                ("spec.host", "spec.nodeName"),
            ],
            Wording::Plain,
        ),
        ("", "nodes") => (
            &[
                ("metadata.name", "metadata.name"),
                ("spec.unschedulable", "spec.unschedulable"),
            ],
            Wording::Plain,
        ),
        ("", "replicationcontrollers") => (
            &[
                ("metadata.name", "metadata.name"),
                ("metadata.namespace", "metadata.namespace"),
                ("status.replicas", "status.replicas"),
            ],
            Wording::Plain,
        ),
        ("", "events") => (
            &[
                ("involvedObject.kind", "involvedObject.kind"),
                ("involvedObject.namespace", "involvedObject.namespace"),
                ("involvedObject.name", "involvedObject.name"),
                ("involvedObject.uid", "involvedObject.uid"),
                ("involvedObject.apiVersion", "involvedObject.apiVersion"),
                (
                    "involvedObject.resourceVersion",
                    "involvedObject.resourceVersion",
                ),
                ("involvedObject.fieldPath", "involvedObject.fieldPath"),
                ("reason", "reason"),
                ("reportingComponent", "reportingComponent"),
                ("source", "source"),
                ("type", "type"),
                ("metadata.namespace", "metadata.namespace"),
                ("metadata.name", "metadata.name"),
            ],
            Wording::Plain,
        ),
        ("events.k8s.io", "events") => (
            &[
                ("reason", "reason"),
                ("regarding.kind", "regarding.kind"),
                ("regarding.namespace", "regarding.namespace"),
                ("regarding.name", "regarding.name"),
                ("regarding.uid", "regarding.uid"),
                ("regarding.apiVersion", "regarding.apiVersion"),
                ("regarding.resourceVersion", "regarding.resourceVersion"),
                ("regarding.fieldPath", "regarding.fieldPath"),
                ("reportingController", "reportingController"),
                ("type", "type"),
                ("metadata.namespace", "metadata.namespace"),
                ("metadata.name", "metadata.name"),
            ],
            Wording::Plain,
        ),
        ("", "namespaces") => (
            &[
                ("status.phase", "status.phase"),
                ("metadata.name", "metadata.name"),
            ],
            Wording::Plain,
        ),
        ("", "secrets") => (
            &[
                ("type", "type"),
                ("metadata.namespace", "metadata.namespace"),
                ("metadata.name", "metadata.name"),
            ],
            Wording::Plain,
        ),
        ("", "services") => (
            &[
                ("metadata.namespace", "metadata.namespace"),
                ("metadata.name", "metadata.name"),
                ("spec.clusterIP", "spec.clusterIP"),
                ("spec.type", "spec.type"),
            ],
            Wording::Plain,
        ),
        ("batch", "jobs") => (
            &[
                ("metadata.name", "metadata.name"),
                ("metadata.namespace", "metadata.namespace"),
                ("status.successful", "status.successful"),
            ],
            Wording::Job,
        ),
        ("certificates.k8s.io", "certificatesigningrequests") => (
            &[
                ("metadata.name", "metadata.name"),
                ("spec.signerName", "spec.signerName"),
            ],
            Wording::Plain,
        ),
        ("resource.k8s.io", "resourceslices") => (
            &[
                ("metadata.name", "metadata.name"),
                ("spec.nodeName", "spec.nodeName"),
                ("spec.driver", "spec.driver"),
            ],
            Wording::ResourceSlice,
        ),
        _ => (META, Wording::Default),
    }
}

/// Checks that `resource` supports `field` and returns the label it is evaluated under
/// (the same label, except for upstream's renames such as pods' `spec.host`).
pub fn check_field_label(
    group: &str,
    resource: &str,
    field: &str,
) -> Result<String, SelectorError> {
    let (labels, wording) = table(group, resource);
    if let Some((_, canonical)) = labels.iter().find(|(l, _)| *l == field) {
        return Ok((*canonical).to_string());
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    Err(SelectorError::UnsupportedField(match wording {
        Wording::Plain => format!("field label not supported: {field}"),
        Wording::Job => format!("field label {} not supported for Job", q(field)),
        Wording::ResourceSlice => {
            format!("field label not supported for resource.k8s.io/v1, Kind=ResourceSlice: {field}")
        }
        Wording::Default => format!(
            "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            q(field)
        ),
    }))
}

/// The scalar at a dotted `path` of `obj`, printed as a field set holds it (also used for
/// custom resources' selectable fields).
pub fn path_value(obj: &Value, path: &str) -> Option<String> {
    scalar(lookup(obj, path))
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |cur, part| cur.get(part))
}

fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A field of an Event's object reference, in either Event shape (`involvedObject` or
/// `regarding`).
fn referenced(event: &Value, field: &str) -> Option<String> {
    scalar(
        event
            .get("involvedObject")
            .or_else(|| event.get("regarding"))
            .and_then(|r| r.get(field)),
    )
}

fn bool_or_false(v: Option<&Value>) -> Option<String> {
    Some(v.and_then(Value::as_bool).unwrap_or(false).to_string())
}

fn count_or_zero(v: Option<&Value>) -> Option<String> {
    Some(v.and_then(Value::as_i64).unwrap_or(0).to_string())
}

/// The value of field label `field` on `obj` (a `group`/`resource` object), or an
/// unsupported-field error. `Ok(None)` means the field is supported but unset; it compares
/// equal to the empty string.
pub fn field_value(
    group: &str,
    resource: &str,
    obj: &Value,
    field: &str,
) -> Result<Option<String>, SelectorError> {
    let label = check_field_label(group, resource, field)?;
    let label = label.as_str();
    Ok(match (group, resource, label) {
        ("", "pods", "spec.hostNetwork") => bool_or_false(lookup(obj, label)),
        ("", "pods", "status.podIP") => {
            let first = obj
                .pointer("/status/podIPs/0/ip")
                .or_else(|| obj.pointer("/status/podIP"));
            scalar(first)
        }
        // Upstream never fills this one into the pod's field set.
        ("", "pods", "status.podIPs") => None,
        ("", "nodes", "spec.unschedulable") => bool_or_false(lookup(obj, label)),
        ("", "replicationcontrollers", "status.replicas") => count_or_zero(lookup(obj, label)),
        ("batch", "jobs", "status.successful") => count_or_zero(obj.pointer("/status/succeeded")),
        // core and events.k8s.io Events share their objects, each stored in the shape that
        // wrote it: either shape answers either group's labels.
        ("", "events", "source") => scalar(obj.pointer("/source/component"))
            .or_else(|| scalar(obj.pointer("/deprecatedSource/component")))
            .filter(|s| !s.is_empty())
            .or_else(|| scalar(obj.get("reportingComponent")))
            .or_else(|| scalar(obj.get("reportingController"))),
        ("", "events", l) if l.starts_with("involvedObject.") => {
            referenced(obj, &l["involvedObject.".len()..])
        }
        ("", "events", "reportingComponent") => scalar(
            obj.get("reportingComponent")
                .or_else(|| obj.get("reportingController")),
        ),
        ("events.k8s.io", "events", l) if l.starts_with("regarding.") => {
            referenced(obj, &l["regarding.".len()..])
        }
        ("events.k8s.io", "events", "reportingController") => scalar(
            obj.get("reportingController")
                .or_else(|| obj.get("reportingComponent")),
        ),
        _ => scalar(lookup(obj, label)),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pods_support_upstream_labels_with_defaults() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}]}
        });
        let get = |f: &str| field_value("", "pods", &pod, f).expect(f);
        assert_eq!(get("spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(get("spec.host").as_deref(), Some("n1"));
        assert_eq!(get("spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(get("status.podIP").as_deref(), Some("10.42.0.5"));
        assert_eq!(get("spec.schedulerName"), None);
        assert_eq!(get("metadata.namespace").as_deref(), Some("ns"));
    }

    #[test]
    fn unsupported_labels_use_each_resources_wording() {
        let err = |g: &str, r: &str, f: &str| check_field_label(g, r, f).expect_err(f).to_string();
        assert_eq!(err("", "pods", "foo"), "field label not supported: foo");
        assert_eq!(
            err("", "nodes", "metadata.namespace"),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            err("batch", "jobs", "status.active"),
            "field label \"status.active\" not supported for Job"
        );
        assert_eq!(
            err("networking.k8s.io", "ingresses", "foo.bar"),
            "\"foo.bar\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(
            err("resource.k8s.io", "resourceslices", "spec.pool"),
            "field label not supported for resource.k8s.io/v1, Kind=ResourceSlice: spec.pool"
        );
        let slice = json!({"metadata": {"name": "s"}, "spec": {"nodeName": "n1", "driver": "gpu.example.com"}});
        assert_eq!(
            field_value("resource.k8s.io", "resourceslices", &slice, "spec.nodeName"),
            Ok(Some("n1".to_string()))
        );
        assert_eq!(
            err("apps", "deployments", "status.replicas"),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }

    #[test]
    fn custom_resources_support_only_metadata() {
        let obj = json!({"metadata": {"name": "c1", "namespace": "ns"}, "spec": {"x": "y"}});
        assert_eq!(
            field_value("example.com", "crontabs", &obj, "metadata.name"),
            Ok(Some("c1".to_string()))
        );
        assert!(field_value("example.com", "crontabs", &obj, "spec.x").is_err());
    }

    #[test]
    fn event_source_falls_back_to_reporting_component() {
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"},
                        "reportingComponent": "kubelet", "source": {}});
        assert_eq!(
            field_value("", "events", &ev, "source"),
            Ok(Some("kubelet".into()))
        );
        assert_eq!(
            field_value("", "events", &ev, "involvedObject.kind"),
            Ok(Some("Pod".into()))
        );
        let ev2 = json!({"regarding": {"name": "p"}, "reportingController": "x"});
        assert_eq!(
            field_value("events.k8s.io", "events", &ev2, "regarding.name"),
            Ok(Some("p".into()))
        );
        // One storage for both groups: each group's labels read the other shape too.
        assert_eq!(
            field_value("", "events", &ev2, "involvedObject.name"),
            Ok(Some("p".into()))
        );
        assert_eq!(
            field_value("", "events", &ev2, "reportingComponent"),
            Ok(Some("x".into()))
        );
        assert_eq!(
            field_value("", "events", &ev2, "source"),
            Ok(Some("x".into()))
        );
        assert_eq!(
            field_value("events.k8s.io", "events", &ev, "regarding.kind"),
            Ok(Some("Pod".into()))
        );
    }

    #[test]
    fn counters_and_flags_default_like_upstream() {
        let job = json!({"status": {"succeeded": 2}});
        assert_eq!(
            field_value("batch", "jobs", &job, "status.successful"),
            Ok(Some("2".into()))
        );
        assert_eq!(
            field_value("batch", "jobs", &json!({}), "status.successful"),
            Ok(Some("0".into()))
        );
        let node = json!({"spec": {"unschedulable": true}});
        assert_eq!(
            field_value("", "nodes", &node, "spec.unschedulable"),
            Ok(Some("true".into()))
        );
        let secret = json!({"type": "Opaque"});
        assert_eq!(
            field_value("", "secrets", &secret, "type"),
            Ok(Some("Opaque".into()))
        );
    }
}
