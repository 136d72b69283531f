//! Events, as upstream validates them: leniently through core/v1 (old clients write events
//! without `eventTime`), strictly through `events.k8s.io/v1`, whose writers must fill in
//! what the newer API requires and leave the deprecated fields to the server.
//!
//! Both APIs share one storage and each object is checked in the shape it arrived in
//! (`involvedObject` or `regarding`, `message` or `note`, ...): fields are read through
//! [`get`], which knows both names. Error paths use the core names, as upstream's (it
//! validates the internal type, which has the core shape) — except `reportingComponent`,
//! which upstream names as the core/v1 client wrote it.

use super::strings::{is_dns1123_subdomain, is_qualified_name};
use super::FieldError;
use crate::api::conversion::EVENT_RENAMES;
use serde_json::Value;

const REPORTING_INSTANCE_MAX: usize = 128;
const ACTION_MAX: usize = 128;
const REASON_MAX: usize = 128;
const NOTE_MAX: usize = 1024;

/// The field `core` names (a core/v1 name) in whichever shape `ev` has.
fn get<'a>(ev: &'a Value, core: &str) -> &'a Value {
    match &ev[core] {
        Value::Null => match EVENT_RENAMES.iter().find(|(c, _)| *c == core) {
            Some((_, newer)) => &ev[*newer],
            None => &Value::Null,
        },
        v => v,
    }
}

fn text<'a>(ev: &'a Value, core: &str) -> &'a str {
    get(ev, core).as_str().unwrap_or_default()
}

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_i64() != Some(0),
        Value::Object(o) => o.values().any(is_set),
        _ => true,
    }
}

/// Whether the event came through `events.k8s.io` (the strict API).
fn strict(ev: &Value) -> bool {
    ev["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("events.k8s.io/"))
}

/// A create: what every event must satisfy, then what the strict API adds.
pub fn validate_event_create(ev: &Value, errs: &mut Vec<FieldError>) {
    validate_event(ev, errs);
    if !strict(ev) {
        return;
    }
    series(ev, errs);
    if !is_set(&ev["eventTime"]) {
        errs.push(FieldError::required("eventTime", ""));
    }
    let type_ = text(ev, "type");
    if type_ != "Normal" && type_ != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            "",
            &format!("has invalid value: {type_}"),
        ));
    }
    for f in ["firstTimestamp", "lastTimestamp", "count", "source"] {
        if is_set(get(ev, f)) {
            errs.push(FieldError::invalid(f, "", "needs to be unset"));
        }
    }
}

/// An update through `events.k8s.io`: what the event says is fixed once written (a series
/// may grow). [`validate_event`] checks the new object too, through either API.
pub fn validate_event_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if !strict(new) {
        return;
    }
    if get(new, "series") != get(old, "series") {
        series(new, errs);
    }
    for f in [
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "type",
        "action",
        "related",
        "reportingComponent",
        "reportingInstance",
    ] {
        if get(new, f) != get(old, f) {
            let path = if f == "reportingComponent" {
                "reportingController"
            } else {
                f
            };
            errs.push(FieldError::invalid(path, get(new, f), "field is immutable"));
        }
    }
    // Compared to the microsecond: clients that truncate nanoseconds are not changing it.
    if micros(get(new, "eventTime")) != micros(get(old, "eventTime")) {
        errs.push(FieldError::invalid(
            "eventTime",
            get(new, "eventTime"),
            "field is immutable",
        ));
    }
}

/// A MicroTime to the microsecond (`None` if unset or not a time).
fn micros(v: &Value) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok()?;
    Some(t.timestamp_micros())
}

/// What every event must satisfy, through either API, at create and update.
pub fn validate_event(ev: &Value, errs: &mut Vec<FieldError>) {
    let reporting = if strict(ev) {
        "reportingController"
    } else {
        "reportingComponent"
    };
    let namespace = ev["metadata"]["namespace"].as_str().unwrap_or_default();
    let object_namespace = get(ev, "involvedObject")["namespace"]
        .as_str()
        .unwrap_or_default();
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            object_namespace,
            "does not match event.namespace",
        )
    };
    if !is_set(&ev["eventTime"]) {
        // An event of the old API: about a cluster-scoped object it lives in `default`.
        let agrees = if object_namespace.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == object_namespace
        };
        if !agrees {
            errs.push(mismatch());
        }
    } else {
        if object_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(mismatch());
        }
        let controller = text(ev, "reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required(reporting, ""));
        }
        for msg in is_qualified_name(controller) {
            errs.push(FieldError::invalid(reporting, controller, &msg));
        }
        bounded(ev, "reportingInstance", REPORTING_INSTANCE_MAX, true, errs);
        bounded(ev, "action", ACTION_MAX, true, errs);
        bounded(ev, "reason", REASON_MAX, true, errs);
        bounded(ev, "message", NOTE_MAX, false, errs);
    }
    for msg in is_dns1123_subdomain(namespace) {
        errs.push(FieldError::invalid("namespace", namespace, &msg));
    }
}

/// A string field of at most `max` characters (and, if `required`, not empty).
fn bounded(ev: &Value, field: &str, max: usize, required: bool, errs: &mut Vec<FieldError>) {
    let value = text(ev, field);
    if required && value.is_empty() {
        errs.push(FieldError::required(field, ""));
    }
    if value.chars().count() > max {
        errs.push(FieldError::invalid(
            field,
            "",
            &format!("can have at most {max} characters"),
        ));
    }
}

/// A series counts at least two occurrences and says when it saw the last.
fn series(ev: &Value, errs: &mut Vec<FieldError>) {
    let s = get(ev, "series");
    if s.is_null() {
        return;
    }
    if s["count"].as_i64().unwrap_or(0) < 2 {
        errs.push(FieldError::invalid(
            "series.count",
            "",
            "should be at least 2",
        ));
    }
    if !is_set(&s["lastObservedTime"]) {
        errs.push(FieldError::required("series.lastObservedTime", ""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    fn create(ev: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate_event_create(ev, &mut errs);
        messages(&errs)
    }

    #[test]
    fn an_old_style_core_event_needs_only_its_namespace_to_match_its_object() {
        let ev = json!({"apiVersion": "v1", "metadata": {"namespace": "ns1"},
            "involvedObject": {"kind": "Pod", "namespace": "ns1", "name": "p"},
            "reason": "", "firstTimestamp": "2026-12-07T00:00:00Z", "count": 3});
        assert!(create(&ev).is_empty(), "{:?}", create(&ev));
        let elsewhere = json!({"apiVersion": "v1", "metadata": {"namespace": "ns2"},
            "involvedObject": {"kind": "Pod", "namespace": "ns1", "name": "p"}});
        assert_eq!(
            create(&elsewhere),
            vec![
                r#"involvedObject.namespace: Invalid value: "ns1": does not match event.namespace"#
            ]
        );
        // About a node: in `default`, or nowhere else.
        let node = json!({"apiVersion": "v1", "metadata": {"namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "n1"}});
        assert!(create(&node).is_empty());
        let mut misplaced = node.clone();
        misplaced["metadata"]["namespace"] = json!("kube-system");
        assert_eq!(create(&misplaced).len(), 1);
    }

    #[test]
    fn a_core_event_with_an_event_time_names_its_reporter_action_and_reason() {
        let ev = json!({"apiVersion": "v1", "metadata": {"namespace": "ns1"},
            "involvedObject": {"kind": "Pod", "namespace": "ns1", "name": "p"},
            "eventTime": "2026-12-07T00:00:00.000001Z", "message": "x".repeat(1025)});
        assert_eq!(
            create(&ev),
            vec![
                "reportingComponent: Required value",
                r#"reportingComponent: Invalid value: "": name part must be non-empty"#,
                "reportingComponent: Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "reportingInstance: Required value",
                "action: Required value",
                "reason: Required value",
                r#"message: Invalid value: "": can have at most 1024 characters"#,
            ]
        );
    }

    fn events_api_event() -> Value {
        json!({"apiVersion": "events.k8s.io/v1", "metadata": {"namespace": "ns1", "name": "e"},
            "regarding": {"kind": "Pod", "namespace": "ns1", "name": "p"},
            "eventTime": "2026-12-07T00:00:00.000001Z", "reportingController": "example.com/ctl",
            "reportingInstance": "ctl-1", "action": "Scale", "reason": "Scaled",
            "type": "Normal", "note": "scaled up"})
    }

    #[test]
    fn the_events_api_requires_its_own_fields_and_leaves_the_deprecated_ones_unset() {
        assert!(create(&events_api_event()).is_empty());
        let mut ev = events_api_event();
        let m = ev.as_object_mut().unwrap();
        m.remove("eventTime");
        m.insert("type".into(), json!("Info"));
        m.insert("deprecatedCount".into(), json!(2));
        m.insert("series".into(), json!({"count": 1}));
        assert_eq!(
            create(&ev),
            vec![
                r#"series.count: Invalid value: "": should be at least 2"#,
                "series.lastObservedTime: Required value",
                "eventTime: Required value",
                r#"type: Invalid value: "": has invalid value: Info"#,
                r#"count: Invalid value: "": needs to be unset"#,
            ]
        );
    }

    #[test]
    fn through_the_events_api_what_an_event_says_is_fixed_but_its_series_grows() {
        let old = events_api_event();
        let mut new = old.clone();
        new["series"] = json!({"count": 2, "lastObservedTime": "2026-12-07T00:01:00.000000Z"});
        // The same time written with nanoseconds is the same time.
        new["eventTime"] = json!("2026-12-07T00:00:00.000001300Z");
        let mut errs = Vec::new();
        validate_event_update(&old, &new, &mut errs);
        assert!(errs.is_empty(), "{:?}", messages(&errs));
        new["note"] = json!("changed");
        new["reportingController"] = json!("other");
        let mut errs = Vec::new();
        validate_event_update(&old, &new, &mut errs);
        assert_eq!(
            messages(&errs),
            vec![
                r#"message: Invalid value: "changed": field is immutable"#,
                r#"reportingController: Invalid value: "other": field is immutable"#,
            ]
        );
        // Through core/v1 an event may change (the old recorders bump count and message).
        let mut core_new = json!({"apiVersion": "v1", "metadata": {"namespace": "ns1"},
            "involvedObject": {"kind": "Pod", "namespace": "ns1", "name": "p"}, "message": "b"});
        let core_old = core_new.clone();
        core_new["message"] = json!("c");
        let mut errs = Vec::new();
        validate_event_update(&core_old, &core_new, &mut errs);
        assert!(errs.is_empty());
    }
}
