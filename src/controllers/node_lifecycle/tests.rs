use super::taints::{
    desired_taints, eviction, unknown_conditions, Eviction, NOT_READY, UNREACHABLE, UNSCHEDULABLE,
};
use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn after(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn unreachable_since(secs: i64) -> Taint {
    Taint {
        key: UNREACHABLE.into(),
        effect: "NoExecute".into(),
        value: None,
        time_added: Some(Time(after(secs))),
    }
}

fn tolerate(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        value: None,
    }
}

fn node(v: serde_json::Value) -> Node {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_pod_tolerating_the_taint_for_300_seconds_is_evicted_300_seconds_after_the_taint() {
    let taints = [unreachable_since(0)];
    let tols = [
        tolerate(UNREACHABLE, Some(300)),
        tolerate(NOT_READY, Some(300)),
    ];
    assert_eq!(
        eviction(&tols, &taints, after(10)),
        Eviction::At(after(300))
    );
    assert_eq!(
        eviction(&tols, &taints, after(299)),
        Eviction::At(after(300))
    );
    assert_eq!(eviction(&tols, &taints, after(300)), Eviction::Now);
}

#[test]
fn the_shortest_toleration_in_use_wins_and_unlimited_tolerations_never_evict() {
    let taints = [unreachable_since(0)];
    let both = [tolerate(UNREACHABLE, Some(300)), tolerate("", Some(5))];
    assert_eq!(eviction(&both, &taints, after(1)), Eviction::At(after(5)));
    let forever = [tolerate(UNREACHABLE, None)];
    assert_eq!(eviction(&forever, &taints, after(10_000)), Eviction::Never);
    // NoSchedule taints never evict.
    let no_schedule = [Taint {
        effect: "NoSchedule".into(),
        ..unreachable_since(0)
    }];
    assert_eq!(eviction(&[], &no_schedule, after(1)), Eviction::Never);
}

#[test]
fn a_pod_that_does_not_tolerate_a_no_execute_taint_is_evicted_at_once() {
    let taints = [unreachable_since(0)];
    assert_eq!(
        eviction(&[tolerate(NOT_READY, Some(300))], &taints, after(0)),
        Eviction::Now
    );
    assert_eq!(
        eviction(&[tolerate(UNREACHABLE, Some(0))], &taints, after(0)),
        Eviction::Now
    );
}

#[test]
fn an_unknown_node_is_tainted_unreachable_and_a_cordoned_one_unschedulable() {
    let n = node(
        json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true,
        "taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"},
                   {"key": NOT_READY, "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
    );
    let taints = desired_taints(&n, t0()).expect("taints change");
    let keys: Vec<(&str, &str)> = taints
        .iter()
        .map(|t| (t.key.as_str(), t.effect.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("dedicated", "NoSchedule"),
            (UNREACHABLE, "NoSchedule"),
            (UNREACHABLE, "NoExecute"),
            (UNSCHEDULABLE, "NoSchedule")
        ]
    );
    assert_eq!(taints[2].time_added, Some(Time(t0())));
    assert!(taints[1].time_added.is_none());
    // Ready again and uncordoned: only the user's taint stays.
    let back = node(
        json!({"metadata": {"name": "a"}, "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    let taints = desired_taints(&back, after(5)).expect("taints change");
    assert_eq!(taints.len(), 1);
    assert_eq!(taints[0].key, "dedicated");
    assert!(desired_taints(
        &node(
            json!({"metadata": {"name": "a"}, "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        ),
        after(6)
    )
    .is_none());
}

#[test]
fn a_silent_node_gets_every_condition_unknown_with_upstreams_reason() {
    let n = node(
        json!({"metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
            {"type": "MemoryPressure", "status": "False"}]}}),
    );
    let conds = unknown_conditions(&n, after(50)).expect("conditions change");
    assert_eq!(conds.len(), 4);
    assert!(conds.iter().all(|c| c.status == "Unknown"));
    assert_eq!(conds[0].reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        conds[0].message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    assert_eq!(conds[0].last_heartbeat_time, Some(Time(t0())));
    assert_eq!(conds[3].reason.as_deref(), Some("NodeStatusNeverUpdated"));
    let mut again = n.clone();
    again.status.as_mut().unwrap().conditions = Some(conds);
    assert!(unknown_conditions(&again, after(60)).is_none());
}
