use super::*;
use k8s_openapi::api::core::v1::{
    Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().expect("a timestamp")
}

fn secs_ago(s: i64) -> Timestamp {
    now() - SignedDuration::from_secs(s)
}

/// A Running pod started `started` seconds ago, Ready (or not) since `ready_since`.
fn pod(name: &str, request: &str, started: i64, ready: bool, ready_since: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements {
                    requests: Some([("cpu".to_string(), Q(request.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            start_time: Some(Time(secs_ago(started))),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(secs_ago(ready_since))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn metric(value: i64) -> PodMetric {
    PodMetric {
        value,
        timestamp: now(),
        window: SignedDuration::from_secs(10),
    }
}

fn input(current: i32) -> Input<'static> {
    Input {
        current_replicas: current,
        resource: "cpu",
        container: None,
        now: now(),
        tolerance: TOLERANCE,
    }
}

fn metrics(values: &[(&str, i64)]) -> PodMetrics {
    values
        .iter()
        .map(|(n, v)| (n.to_string(), metric(*v)))
        .collect()
}

#[test]
fn utilization_above_target_scales_up_by_the_ratio() {
    let pods = [
        pod("a", "100m", 600, true, 590),
        pod("b", "100m", 600, true, 590),
    ];
    let p = utilization_replicas(input(2), 50, &pods, metrics(&[("a", 100), ("b", 100)]))
        .expect("a proposal");
    assert_eq!(
        p,
        Proposal {
            replicas: 4,
            utilization: Some(100),
            raw_average: 100
        }
    );
}

#[test]
fn a_ratio_within_tolerance_keeps_the_current_count() {
    let pods = [pod("a", "100m", 600, true, 590)];
    let p = utilization_replicas(input(1), 50, &pods, metrics(&[("a", 54)])).expect("a proposal");
    assert_eq!((p.replicas, p.utilization), (1, Some(54)));
}

#[test]
fn pods_missing_metrics_count_as_full_when_scaling_down() {
    // a uses 10% of its request; b has no metric yet: assumed at 100%, the average
    // (55%) is within tolerance of the 50% target, so nothing changes.
    let pods = [
        pod("a", "100m", 600, true, 590),
        pod("b", "100m", 600, true, 590),
    ];
    let p = utilization_replicas(input(2), 50, &pods, metrics(&[("a", 10)])).expect("a proposal");
    assert_eq!(p.replicas, 2);
    // Without b the ratio alone would have scaled down to 1.
    let p =
        utilization_replicas(input(2), 50, &pods[..1], metrics(&[("a", 10)])).expect("a proposal");
    assert_eq!(p.replicas, 1);
}

#[test]
fn unready_pods_count_as_idle_when_scaling_up() {
    // a is busy (200%), b is still warming up (not ready): b counts as 0%, so the average
    // is 100% of a 50% target over 2 pods: 4 replicas (counting b's warm-up sample would
    // make it 250%, 10 replicas).
    let pods = [
        pod("a", "100m", 600, true, 590),
        pod("b", "100m", 20, false, 20),
    ];
    let p = utilization_replicas(input(2), 50, &pods, metrics(&[("a", 200), ("b", 300)]))
        .expect("a proposal");
    assert_eq!(p.replicas, 4);
    assert_eq!(p.utilization, Some(200), "utilization is of the ready pods");
}

#[test]
fn cpu_samples_taken_within_a_window_of_readiness_are_ignored_during_initialization() {
    // Ready 5 s ago with a 10 s window: the sample may include start-up; the pod is unready.
    let pods = [pod("a", "100m", 60, true, 5)];
    let err = utilization_replicas(input(1), 50, &pods, metrics(&[("a", 500)]))
        .expect_err("no usable metrics");
    assert_eq!(err, CalculatorError::NoReadyMetrics);
    // Ready 30 s ago: counted.
    let pods = [pod("a", "100m", 60, true, 30)];
    let p = utilization_replicas(input(1), 50, &pods, metrics(&[("a", 500)])).expect("a proposal");
    assert_eq!(p.replicas, 10);
}

#[test]
fn a_container_without_a_request_is_an_error_naming_it() {
    let mut p = pod("a", "100m", 600, true, 590);
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].resources = None;
    }
    let err = utilization_replicas(input(1), 50, &[p], metrics(&[("a", 10)])).expect_err("error");
    assert_eq!(
        err.to_string(),
        "missing request for cpu in container app of Pod a"
    );
}

#[test]
fn no_metrics_and_no_pods_are_upstreams_errors() {
    let pods = [pod("a", "100m", 600, true, 590)];
    let err = utilization_replicas(input(1), 50, &pods, PodMetrics::new()).expect_err("error");
    assert_eq!(
        err.to_string(),
        "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
    let err = utilization_replicas(input(1), 50, &[], metrics(&[("a", 10)])).expect_err("error");
    assert_eq!(err, CalculatorError::NoPods);
}

#[test]
fn average_value_targets_scale_by_usage_per_pod() {
    let pods = [
        pod("a", "100m", 600, true, 590),
        pod("b", "100m", 600, true, 590),
    ];
    let p = average_value_replicas(input(2), 100, &pods, metrics(&[("a", 300), ("b", 300)]))
        .expect("a proposal");
    assert_eq!(
        p,
        Proposal {
            replicas: 6,
            utilization: None,
            raw_average: 300
        }
    );
}

#[test]
fn deleted_and_failed_pods_are_ignored() {
    let mut gone = pod("b", "100m", 600, true, 590);
    gone.metadata.deletion_timestamp = Some(Time(now()));
    let mut failed = pod("c", "100m", 600, true, 590);
    if let Some(s) = failed.status.as_mut() {
        s.phase = Some("Failed".into());
    }
    let pods = [pod("a", "100m", 600, true, 590), gone, failed];
    let p = utilization_replicas(
        input(3),
        50,
        &pods,
        metrics(&[("a", 100), ("b", 0), ("c", 0)]),
    )
    .expect("a proposal");
    assert_eq!(p.replicas, 2);
}
