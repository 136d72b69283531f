use super::*;
use crate::scheduler::hints;
use crate::scheduler::testutil::pod_with;
use serde_json::json;

fn p(name: &str, priority: i32, created: &str) -> Arc<Pod> {
    Arc::new(pod_with(
        name,
        0,
        json!({"metadata": {"creationTimestamp": created}, "spec": {"priority": priority}}),
    ))
}

fn name(p: Option<Arc<Pod>>) -> String {
    p.and_then(|p| p.metadata.name.clone()).unwrap_or_default()
}

#[test]
fn active_pods_pop_by_priority_then_creation_time() {
    let now = Instant::now();
    let mut q = SchedulingQueue::default();
    q.add_or_update("d/low", p("low", 0, "2026-01-01T00:00:00Z"), now);
    q.add_or_update("d/late", p("late", 10, "2026-01-01T00:00:09Z"), now);
    q.add_or_update("d/early", p("early", 10, "2026-01-01T00:00:01Z"), now);
    assert_eq!(name(q.pop(now)), "early");
    assert_eq!(name(q.pop(now)), "late");
    assert_eq!(name(q.pop(now)), "low");
    assert!(q.pop(now).is_none());
}

#[test]
fn backoff_starts_at_one_second_and_doubles_to_ten() {
    let secs: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
    assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
}

#[test]
fn an_unschedulable_pod_waits_for_a_change_that_may_help_it_then_its_backoff() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::default();
    q.add_or_update("d/a", p("a", 0, "2026-01-01T00:00:00Z"), t0);
    assert!(q.pop(t0).is_some());
    q.unschedulable("d/a", Plugins::NODE_UNSCHEDULABLE, t0);
    q.move_for(hints::POD_REMOVED, t0 + Duration::from_millis(100));
    assert!(
        q.pop(t0 + Duration::from_secs(30)).is_none(),
        "a pod leaving cannot help a pod kept off cordoned nodes"
    );
    q.move_for(hints::NODE_ADDED, t0 + Duration::from_millis(200));
    assert!(
        q.pop(t0 + Duration::from_millis(500)).is_none(),
        "still backing off"
    );
    assert_eq!(q.next_wakeup(), Some(t0 + Duration::from_secs(1)));
    assert_eq!(name(q.pop(t0 + Duration::from_secs(1))), "a");
}

#[test]
fn a_pod_backing_off_waits_behind_active_pods_until_its_backoff_ends() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::default();
    q.add_or_update("d/a", p("a", 10, "2026-01-01T00:00:00Z"), t0);
    q.pop(t0);
    q.unschedulable("d/a", Plugins::RESOURCES_FIT, t0);
    q.move_for(hints::POD_REMOVED, t0);
    q.add_or_update("d/b", p("b", 0, "2026-01-01T00:00:01Z"), t0);
    q.add_or_update("d/c", p("c", 0, "2026-01-01T00:00:02Z"), t0);
    assert_eq!(name(q.pop(t0)), "b", "a still backs off");
    // Its backoff over, its priority puts it before c.
    assert_eq!(name(q.pop(t0 + Duration::from_secs(1))), "a");
    assert_eq!(name(q.pop(t0 + Duration::from_secs(1))), "c");
}

#[test]
fn a_change_while_the_pod_is_in_flight_sends_it_to_backoff_only_if_it_may_help() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::default();
    q.add_or_update("d/a", p("a", 0, "2026-01-01T00:00:00Z"), t0);
    q.add_or_update("d/b", p("b", 0, "2026-01-01T00:00:01Z"), t0);
    assert_eq!(name(q.pop(t0)), "a");
    assert_eq!(name(q.pop(t0)), "b");
    q.move_for(hints::POD_REMOVED, t0);
    q.unschedulable("d/a", Plugins::RESOURCES_FIT, t0);
    q.unschedulable("d/b", Plugins::NODE_AFFINITY, t0);
    assert_eq!(name(q.pop(t0 + Duration::from_secs(1))), "a");
    assert!(q.pop(t0 + Duration::from_secs(30)).is_none(), "b waits");
}

#[test]
fn a_pod_rejected_with_no_nodes_at_all_is_helped_by_any_change() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::default();
    q.add_or_update("d/a", p("a", 0, "2026-01-01T00:00:00Z"), t0);
    q.pop(t0);
    q.unschedulable("d/a", Plugins::NONE, t0);
    let later = t0 + Duration::from_secs(1);
    q.move_for(Plugins::NONE, t0);
    assert!(q.pop(later).is_none(), "an empty change helps no one");
    q.move_for(hints::POD_PLACED, t0);
    assert_eq!(name(q.pop(later)), "a");
}

#[test]
fn unschedulable_pods_are_retried_after_five_minutes_anyway() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::default();
    q.add_or_update("d/a", p("a", 0, "2026-01-01T00:00:00Z"), t0);
    q.pop(t0);
    q.unschedulable("d/a", Plugins::RESOURCES_FIT, t0);
    assert_eq!(q.next_wakeup(), Some(t0 + MAX_UNSCHEDULABLE));
    assert!(q
        .pop(t0 + MAX_UNSCHEDULABLE - Duration::from_secs(1))
        .is_none());
    assert_eq!(name(q.pop(t0 + MAX_UNSCHEDULABLE)), "a");
}

#[test]
fn errors_back_off_longer_each_attempt_and_deleted_pods_leave() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::default();
    q.add_or_update("d/a", p("a", 0, "2026-01-01T00:00:00Z"), t0);
    q.pop(t0);
    q.error("d/a", t0);
    let t1 = t0 + Duration::from_secs(1);
    assert!(q.pop(t1).is_some());
    q.error("d/a", t1);
    assert!(q.pop(t1 + Duration::from_millis(1500)).is_none());
    assert!(q.pop(t1 + Duration::from_secs(2)).is_some());
    q.delete("d/a");
    assert!(q.is_empty());
}
