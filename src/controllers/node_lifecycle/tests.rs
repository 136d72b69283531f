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

fn keys_of(taints: &[Taint]) -> Vec<(&str, &str)> {
    taints
        .iter()
        .map(|t| (t.key.as_str(), t.effect.as_str()))
        .collect()
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
    let keys = keys_of(&taints);
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
fn pressure_conditions_keep_their_no_schedule_taints_while_true() {
    let n = node(json!({"metadata": {"name": "a"}, "status": {"conditions": [
        {"type": "Ready", "status": "True"},
        {"type": "MemoryPressure", "status": "False"},
        {"type": "DiskPressure", "status": "True"},
        {"type": "PIDPressure", "status": "True"}]}}));
    let taints = desired_taints(&n, t0()).expect("taints change");
    let keys = keys_of(&taints);
    assert_eq!(
        keys,
        [
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule")
        ]
    );
    assert!(taints.iter().all(|t| t.time_added.is_none()));
    // The disk is fine again: its taint goes, the other stays.
    let relieved = node(
        json!({"metadata": {"name": "a"}, "spec": {"taints": taints},
        "status": {"conditions": [{"type": "DiskPressure", "status": "False"},
                                  {"type": "PIDPressure", "status": "True"}]}}),
    );
    let taints = desired_taints(&relieved, after(1)).expect("taints change");
    assert_eq!(taints.len(), 1);
    assert_eq!(taints[0].key, "node.kubernetes.io/pid-pressure");
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

/// The taint eviction controller alone against a test API server, reading `clock`.
async fn taint_eviction_with_clock(
    clock: crate::controllers::clock::Clock,
) -> (
    crate::apiserver::testing::TestServer,
    tokio_util::sync::CancellationToken,
) {
    use crate::controllers::Context;
    use std::sync::Arc;
    // No admission: the pods keep exactly the tolerations the test gives them.
    let server = crate::apiserver::testing::TestServer::with_admission(Default::default()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let kcm = server.client_as(crate::apiserver::CONTROLLER_MANAGER_USER, &[]);
    let informers = crate::informers::Informers::new(kcm.clone(), stop.clone());
    let as_kcm = kcm.clone();
    let ctx = Context {
        client: kcm.clone(),
        informers: informers.clone(),
        clients: Arc::new(move |_| as_kcm.clone()),
        loopback: kcm,
        root_ca: server.state.ca_pem.as_str().into(),
        signing: None,
    };
    let c = super::taint_eviction::TaintEvictionController::new(ctx).with_clock(clock);
    tokio::spawn(informers.run());
    tokio::spawn(c.run(stop.clone()));
    (server, stop)
}

#[tokio::test]
async fn a_tolerating_pod_is_deleted_only_once_its_toleration_seconds_have_passed() {
    use crate::controllers::testing::eventually;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let (clock, time) = crate::controllers::clock::Clock::manual(t0());
    let (server, stop) = taint_eviction_with_clock(clock).await;
    let nodes: Api<Node> = Api::all(server.admin());
    let n = node(json!({"metadata": {"name": "n1"}, "spec": {"taints": [
        {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]}}));
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.admin(), "default");
    let pod = |name: &str, tolerations: serde_json::Value| -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"nodeName": "n1",
            "containers": [{"name": "c", "image": "i"}], "tolerations": tolerations}}),
        )
        .unwrap()
    };
    let tolerating = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
    pods.create(&PostParams::default(), &pod("patient", tolerating))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("intolerant", json!([])))
        .await
        .unwrap();
    let deleting = |name: &'static str| {
        let pods = pods.clone();
        async move {
            pods.get_opt(name)
                .await
                .unwrap()
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        }
    };
    eventually("the intolerant pod is deleted at once", || {
        deleting("intolerant")
    })
    .await;
    let marked = pods.get_opt("intolerant").await.unwrap();
    if let Some(p) = marked {
        let conds = p.status.unwrap().conditions.unwrap();
        assert!(conds.iter().any(|c| c.type_ == "DisruptionTarget"
            && c.reason.as_deref() == Some("DeletionByTaintManager")));
    }
    // 299 s in, a look (any pod change makes one) still leaves it.
    time.advance(std::time::Duration::from_secs(299));
    let nudge = json!({"metadata": {"annotations": {"nudge": "1"}}});
    pods.patch("patient", &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !deleting("patient").await,
        "evicted before its toleration ran out"
    );
    time.advance(std::time::Duration::from_secs(1));
    let nudge = json!({"metadata": {"annotations": {"nudge": "2"}}});
    pods.patch("patient", &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();
    eventually("the tolerating pod is deleted at 300 s", || {
        deleting("patient")
    })
    .await;
    stop.cancel();
}
