use super::*;

fn t0() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().expect("a timestamp")
}

fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

fn bounds(min: i32, max: i32, current: i32) -> Bounds {
    Bounds { min, max, current }
}

#[test]
fn without_behavior_a_scale_down_waits_for_the_highest_recommendation_of_five_minutes() {
    let mut h = History::default();
    h.record_initial(5, at(0));
    let d = h.normalize_default(bounds(1, 10, 5), 2, at(60));
    assert_eq!(d.replicas, 5);
    assert_eq!(d.able.0, "ScaleDownStabilized");
    // Once the initial sample is older than the window, the lower count wins.
    let d = h.normalize_default(bounds(1, 10, 5), 2, at(400));
    assert_eq!(d.replicas, 2);
    assert_eq!(d.able.0, "ReadyForNewScale");
    assert_eq!(d.limited, (false, "DesiredWithinRange", WITHIN.to_string()));
}

#[test]
fn without_behavior_scale_up_is_limited_to_double_or_four_and_max() {
    let mut h = History::default();
    let d = h.normalize_default(bounds(1, 100, 1), 50, at(0));
    assert_eq!(d.replicas, 4);
    assert_eq!(d.limited.1, "ScaleUpLimit");
    let d = h.normalize_default(bounds(1, 3, 1), 50, at(1));
    assert_eq!(d.replicas, 3);
    assert_eq!(
        d.limited,
        (
            true,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count".into()
        )
    );
}

#[test]
fn default_scale_up_allows_the_larger_of_doubling_and_four_pods_per_period() {
    let (up, down) = (default_scale_up(), default_scale_down());
    let mut h = History::default();
    h.record_initial(1, at(0));
    let d = h.normalize_with_behavior(bounds(1, 100, 1), 20, &up, &down, at(0));
    assert_eq!(d.replicas, 5, "1 + 4 pods beats 1 × 2");
    assert_eq!(d.limited.1, "ScaleUpLimit");
    h.record_scale((&up, &down), 1, 5, at(0));
    // Within the same 15 s period the limit still counts from the period's start (1).
    let d = h.normalize_with_behavior(bounds(1, 100, 5), 20, &up, &down, at(5));
    assert_eq!(d.replicas, 5);
    // After the period, 5 doubles to 10.
    let d = h.normalize_with_behavior(bounds(1, 100, 5), 20, &up, &down, at(20));
    assert_eq!(d.replicas, 10);
}

#[test]
fn default_scale_down_is_stabilized_for_five_minutes_then_goes_to_min() {
    let (up, down) = (default_scale_up(), default_scale_down());
    let mut h = History::default();
    h.record_initial(4, at(0));
    let d = h.normalize_with_behavior(bounds(2, 10, 4), 1, &up, &down, at(30));
    assert_eq!(d.replicas, 4);
    assert_eq!(d.able.0, "ScaleDownStabilized");
    let d = h.normalize_with_behavior(bounds(2, 10, 4), 1, &up, &down, at(400));
    assert_eq!(d.replicas, 2);
    assert_eq!(d.limited.1, "TooFewReplicas");
}

#[test]
fn a_zero_window_and_a_pods_policy_limit_each_scale_down_step() {
    let up = default_scale_up();
    let down = HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Pods", 1, 60)]),
        ..Default::default()
    };
    let mut h = History::default();
    h.record_initial(5, at(0));
    let d = h.normalize_with_behavior(bounds(1, 10, 5), 1, &up, &down, at(1));
    assert_eq!(d.replicas, 4);
    assert_eq!(d.limited.1, "ScaleDownLimit");
    h.record_scale((&up, &down), 5, 4, at(1));
    let d = h.normalize_with_behavior(bounds(1, 10, 4), 1, &up, &down, at(30));
    assert_eq!(d.replicas, 4, "one pod per minute");
    let d = h.normalize_with_behavior(bounds(1, 10, 4), 1, &up, &down, at(62));
    assert_eq!(d.replicas, 3);
}

#[test]
fn a_disabled_direction_never_moves() {
    let up = HPAScalingRules {
        select_policy: Some("Disabled".into()),
        ..default_scale_up()
    };
    let mut h = History::default();
    let d = h.normalize_with_behavior(bounds(1, 10, 2), 8, &up, &default_scale_down(), at(0));
    assert_eq!(d.replicas, 2);
}
