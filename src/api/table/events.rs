//! Event rows for both `v1` Events and `events.k8s.io/v1` Events.
//!
//! Upstream serves both groups from one storage with one printer; this
//! module maps the events.k8s.io field names (`regarding`, `note`,
//! `deprecated*`) onto the core ones so both render identically.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::{parse_time, since_time};
use super::fields::{get, int_at, name, opt_int, opt_str, s, str_at};
use super::{col, no_conditions, wide, Col, Spec, NAME_DESC};

pub static EVENT: Spec = Spec {
    columns: &COLUMNS,
    cells: event_cells,
    conditions: no_conditions,
    list: None,
};

static COLUMNS: [Col; 10] = [
    col(
        "Last Seen",
        "string",
        "Time since the event was last observed.",
    ),
    col("Type", "string", "Kind of event: Normal or Warning."),
    col(
        "Reason",
        "string",
        "Short machine-readable reason for the event.",
    ),
    col(
        "Object",
        "string",
        "The object the event is about, as kind/name.",
    ),
    wide(
        "Subobject",
        "string",
        "Field path within the object, such as a container, the event refers to.",
    ),
    wide(
        "Source",
        "string",
        "Component (and host) that reported the event.",
    ),
    col(
        "Message",
        "string",
        "Human-readable description of what happened.",
    ),
    wide(
        "First Seen",
        "string",
        "Time since the event was first observed.",
    ),
    wide("Count", "string", "Number of times the event has occurred."),
    super::Col {
        name: "Name",
        ty: "string",
        format: "name",
        description: NAME_DESC,
        priority: 1,
    },
];

/// The fields the printer reads, whichever API group the event came from.
struct EventView<'a> {
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    event_time: Option<DateTime<Utc>>,
    count: i64,
    series: Option<&'a Value>,
    object: Option<&'a Value>,
    message: &'a str,
    component: &'a str,
    host: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
}

fn time(v: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    opt_str(v, path).and_then(parse_time)
}

fn view(ev: &Value) -> EventView<'_> {
    let is_new_api = str_at(ev, &["apiVersion"]).starts_with("events.k8s.io/")
        || (get(ev, &["involvedObject"]).is_none() && get(ev, &["regarding"]).is_some());
    let series = get(ev, &["series"]).filter(|s| s.is_object());
    if is_new_api {
        EventView {
            first: time(ev, &["deprecatedFirstTimestamp"]),
            last: time(ev, &["deprecatedLastTimestamp"]),
            event_time: time(ev, &["eventTime"]),
            count: int_at(ev, &["deprecatedCount"]),
            series,
            object: get(ev, &["regarding"]),
            message: str_at(ev, &["note"]),
            component: str_at(ev, &["deprecatedSource", "component"]),
            host: str_at(ev, &["deprecatedSource", "host"]),
            reporting_controller: str_at(ev, &["reportingController"]),
            reporting_instance: str_at(ev, &["reportingInstance"]),
        }
    } else {
        EventView {
            first: time(ev, &["firstTimestamp"]),
            last: time(ev, &["lastTimestamp"]),
            event_time: time(ev, &["eventTime"]),
            count: int_at(ev, &["count"]),
            series,
            object: get(ev, &["involvedObject"]),
            message: str_at(ev, &["message"]),
            component: str_at(ev, &["source", "component"]),
            host: str_at(ev, &["source", "host"]),
            // The core API names this field reportingComponent.
            reporting_controller: str_at(ev, &["reportingComponent"]),
            reporting_instance: str_at(ev, &["reportingInstance"]),
        }
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

fn event_cells(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let v = view(ev);
    let first_seen = match v.first {
        Some(t) => since_time(Some(t), now),
        None => since_time(v.event_time, now),
    };
    let mut last_seen = match v.last {
        Some(t) => since_time(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = v.count;
    if let Some(series) = v.series {
        last_seen = since_time(time(series, &["lastObservedTime"]), now);
        count = opt_int(series, &["count"]).unwrap_or(0);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let object = v.object.unwrap_or(&Value::Null);
    let kind = str_at(object, &["kind"]).to_lowercase();
    let obj_name = str_at(object, &["name"]);
    let target = if obj_name.is_empty() {
        kind
    } else {
        format!("{kind}/{obj_name}")
    };
    let component = first_non_empty(v.component, v.reporting_controller);
    let instance = first_non_empty(v.host, v.reporting_instance);
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        s(last_seen),
        s(str_at(ev, &["type"])),
        s(str_at(ev, &["reason"])),
        s(target),
        s(str_at(object, &["fieldPath"])),
        s(source),
        s(v.message.trim()),
        s(first_seen),
        Value::from(count),
        s(name(ev)),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::json;

    #[test]
    fn core_event_shows_object_source_and_counts() {
        let ev = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "message": "  Container image \"nginx\" already present on machine\n",
            "source": {"component": "kubelet", "host": "node1"},
            "firstTimestamp": ago(3 * 86400), "lastTimestamp": ago(2 * 86400), "count": 6, "type": "Normal"});
        assert_eq!(
            serde_json::Value::Array(cells(&printers::EVENT, &ev)),
            json!([
                "2d",
                "Normal",
                "Pulled",
                "pod/web-1",
                "spec.containers{nginx}",
                "kubelet, node1",
                "Container image \"nginx\" already present on machine",
                "3d",
                6,
                "web.17a"
            ])
        );
    }

    #[test]
    fn missing_timestamps_fall_back_to_event_time_and_count_one() {
        let ev = json!({"metadata": {"name": "e"},
            "involvedObject": {"kind": "Deployment", "name": "web"},
            "eventTime": "2025-05-29T12:00:00.000000Z", "reason": "ScalingReplicaSet",
            "reportingComponent": "deployment-controller", "reportingInstance": "",
            "type": "Normal", "message": "Scaled up"});
        let c = cells(&printers::EVENT, &ev);
        assert_eq!(c[0], "3d");
        assert_eq!(c[5], "deployment-controller");
        assert_eq!(c[7], "3d");
        assert_eq!(c[8], 1);
    }

    #[test]
    fn series_overrides_last_seen_and_count() {
        let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": ago(3 * 86400), "series": {"count": 2, "lastObservedTime": ago(2 * 86400)},
            "type": "Warning", "reason": "BackOff", "message": "m"});
        let c = cells(&printers::EVENT, &ev);
        assert_eq!(c[0], "2d");
        assert_eq!(c[8], 2);
    }

    #[test]
    fn events_api_group_renders_like_core() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.17b"},
            "regarding": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{nginx}"},
            "reason": "Started", "note": "Started container nginx", "type": "Normal",
            "reportingController": "kubelet", "reportingInstance": "node1",
            "eventTime": null, "deprecatedFirstTimestamp": ago(120), "deprecatedLastTimestamp": ago(60),
            "deprecatedCount": 1});
        assert_eq!(
            serde_json::Value::Array(cells(&printers::EVENT, &ev)),
            json!([
                "60s",
                "Normal",
                "Started",
                "pod/web-1",
                "spec.containers{nginx}",
                "kubelet, node1",
                "Started container nginx",
                "2m",
                1,
                "web.17b"
            ])
        );
    }
}
