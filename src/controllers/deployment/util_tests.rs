//! The deployment controller's pure decisions.

use super::progress::*;
use super::util::*;
use crate::controllers::controller_utils::scaled_value;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
    let parse = |v: &str| match v.parse::<i32>() {
        Ok(i) => serde_json::json!(i),
        Err(_) => serde_json::json!(v),
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "d", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "d"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": parse(surge), "maxUnavailable": parse(unavailable)}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        }
    }))
    .expect("deployment")
}

fn rs(name: &str, replicas: i32, max_replicas: Option<i32>, created: i64) -> ReplicaSet {
    let mut r: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}}}
    }))
    .expect("rs");
    r.metadata.creation_timestamp = Some(Time(
        Timestamp::from_second(1_700_000_000 + created).expect("ts"),
    ));
    if let Some(m) = max_replicas {
        r.metadata.annotations = Some([(MAX_REPLICAS.to_string(), m.to_string())].into());
    }
    r
}

#[test]
fn percentages_round_surge_up_and_unavailability_down() {
    let p = |s: &str| IntOrString::String(s.into());
    assert_eq!(scaled_value(&p("25%"), 10, true), Ok(3));
    assert_eq!(scaled_value(&p("25%"), 10, false), Ok(2));
    assert_eq!(scaled_value(&IntOrString::Int(4), 10, false), Ok(4));
    assert!(scaled_value(&p("abc"), 10, false).is_err());
    assert_eq!(
        resolve_fenceposts(Some(&p("25%")), Some(&p("25%")), 1),
        (1, 0)
    );
    // Both zero would never move: unavailability becomes 1.
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&p("10%")), 5),
        (0, 1)
    );
    let d = deployment(10, "25%", "25%");
    assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
    let d = deployment(2, "0", "5");
    assert_eq!(max_unavailable(&d), 2, "never more than replicas");
}

#[test]
fn the_template_hash_is_stable_and_changes_with_the_template_and_collisions() {
    let d = deployment(1, "1", "0");
    let t: PodTemplateSpec = d.spec.clone().expect("spec").template;
    let h = compute_hash(&t, None);
    assert_eq!(h, compute_hash(&t.clone(), None));
    assert!(
        h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{h}"
    );
    assert_ne!(h, compute_hash(&t, Some(1)));
    let mut t2 = t.clone();
    t2.spec.as_mut().expect("spec").containers[0].image = Some("y".into());
    assert_ne!(h, compute_hash(&t2, None));
    // Upstream's encoding of a decimal string.
    assert_eq!(safe_encode("0123"), "4567");
    let mut labelled = t.clone();
    labelled
        .metadata
        .as_mut()
        .expect("meta")
        .labels
        .as_mut()
        .expect("labels")
        .insert(POD_TEMPLATE_HASH.into(), h);
    assert!(equal_ignore_hash(&labelled, &t));
    assert!(!equal_ignore_hash(&t2, &t));
}

#[test]
fn the_new_replica_set_grows_within_max_surge() {
    let d = deployment(10, "3", "2");
    let old = rs("old", 10, None, 0);
    // 10 old + 0 new, 13 allowed: the new one may take 3.
    assert_eq!(new_rs_new_replicas(&d, &[&old], 0), 3);
    let old = rs("old", 8, None, 0);
    let new = rs("new", 3, None, 1);
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 3), 5);
    let old = rs("old", 10, None, 0);
    assert_eq!(
        new_rs_new_replicas(&d, &[&old, &new], 3),
        3,
        "at the surge limit"
    );
}

#[test]
fn scaling_mid_rollout_spreads_replicas_in_proportion_with_leftovers_to_the_largest() {
    // 10 replicas, surge 3 → max 13 before; scaled to 20 → max 20+5=25 (25% of 20 = 5).
    let mut d = deployment(20, "25%", "25%");
    d.spec.as_mut().expect("spec").replicas = Some(20);
    let old = rs("old", 8, Some(13), 0);
    let new = rs("new", 5, Some(13), 1);
    let sizes = proportional_sizes(&d, 13, &[&old, &new]);
    let total: i32 = sizes.iter().map(|(_, s)| s).sum();
    assert_eq!(total, 25);
    let of = |i: usize| sizes.iter().find(|(j, _)| *j == i).expect("size").1;
    // 8*25/13 = 15.38 → 15; 5*25/13 = 9.6 → 10; leftover 0.
    assert_eq!((of(0), of(1)), (15, 10));

    // Scaling down to 5 (max 5+2=7): 8*7/13=4.3→4 (-4), 5*7/13=2.7→3 (-2); total 7.
    let d = deployment(5, "25%", "25%");
    let sizes = proportional_sizes(&d, 13, &[&old, &new]);
    let of = |i: usize| sizes.iter().find(|(j, _)| *j == i).expect("size").1;
    assert_eq!((of(0), of(1)), (4, 3));
}

#[test]
fn a_rollback_raises_the_revision_and_remembers_the_old_one() {
    let d = deployment(1, "1", "0");
    let mut r = rs("back", 0, None, 0);
    r.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
    assert!(set_new_rs_annotations(&d, &mut r, 3, true));
    assert_eq!(annotation(&r, REVISION), Some("3"));
    assert_eq!(annotation(&r, REVISION_HISTORY), Some("1"));
    r.metadata
        .annotations
        .as_mut()
        .expect("a")
        .insert(REVISION.into(), "3".into());
    assert!(set_new_rs_annotations(&d, &mut r, 5, true));
    assert_eq!(annotation(&r, REVISION_HISTORY), Some("1,3"));
    // A lower revision never lowers it.
    assert!(!set_new_rs_annotations(&d, &mut r, 2, true));
}

#[test]
fn change_cause_is_copied_but_kubectls_last_applied_is_not() {
    let mut d = deployment(2, "1", "0");
    d.metadata.annotations = Some(
        [
            ("kubernetes.io/change-cause".to_string(), "v2".to_string()),
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            ),
        ]
        .into(),
    );
    let mut r = rs("new", 0, None, 0);
    set_new_rs_annotations(&d, &mut r, 1, false);
    assert_eq!(annotation(&r, "kubernetes.io/change-cause"), Some("v2"));
    assert_eq!(
        annotation(&r, "kubectl.kubernetes.io/last-applied-configuration"),
        None
    );
    assert_eq!(annotation(&r, DESIRED_REPLICAS), Some("2"));
    assert_eq!(annotation(&r, MAX_REPLICAS), Some("3"));
}

#[test]
fn conditions_keep_their_transition_time_unless_the_status_changes() {
    let mut s = DeploymentStatus::default();
    let mut first = new_condition(PROGRESSING, "True", NEW_RS_CREATED, "a".into());
    first.last_transition_time = Some(Time(Timestamp::from_second(1_000).expect("ts")));
    set_condition(&mut s, first);
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", RS_UPDATED, "b".into()),
    );
    let c = get_condition(&s, PROGRESSING).expect("cond");
    assert_eq!(c.reason.as_deref(), Some(RS_UPDATED));
    assert_eq!(
        c.last_transition_time.as_ref().map(|t| t.0.as_second()),
        Some(1_000)
    );
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "False", TIMED_OUT, "c".into()),
    );
    let c = get_condition(&s, PROGRESSING).expect("cond");
    assert_ne!(
        c.last_transition_time.as_ref().map(|t| t.0.as_second()),
        Some(1_000)
    );
    assert_eq!(s.conditions.as_ref().map(Vec::len), Some(1));
}

#[test]
fn a_rollout_without_progress_past_its_deadline_times_out() {
    let mut d = deployment(1, "1", "0");
    d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(3);
    let mut s = DeploymentStatus::default();
    let mut c = new_condition(PROGRESSING, "True", RS_UPDATED, "x".into());
    c.last_update_time = Some(Time(Timestamp::from_second(1_000).expect("ts")));
    set_condition(&mut s, c);
    assert!(!deployment_timed_out(
        &d,
        &s,
        Timestamp::from_second(1_002).expect("ts")
    ));
    assert!(deployment_timed_out(
        &d,
        &s,
        Timestamp::from_second(1_004).expect("ts")
    ));
    assert_eq!(
        requeue_stuck(&d, &s, Timestamp::from_second(1_001).expect("ts")),
        Some(std::time::Duration::from_secs(3))
    );
}

#[test]
fn unhealthy_cleanup_removes_only_unavailable_replicas_and_never_scales_up() {
    use super::rolling::unhealthy_to_remove;
    // 5 wanted, 3 available: 2 unhealthy, bounded by the room left.
    assert_eq!(unhealthy_to_remove(5, 3, 10), 2);
    assert_eq!(unhealthy_to_remove(5, 3, 1), 1);
    assert_eq!(unhealthy_to_remove(5, 5, 3), 0);
    // Just scaled 4 -> 3 while the status still counts 4 available: nothing to remove
    // (this once scaled the old replica set back up past maxSurge).
    assert_eq!(unhealthy_to_remove(3, 4, 2), 0);
    assert_eq!(unhealthy_to_remove(0, 0, 2), 0);
}

#[test]
fn pods_of_a_lowered_size_do_not_count_as_staying_available() {
    use super::rolling::staying_available;
    let mut old = rs("old", 3, None, 0);
    old.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
        replicas: 4,
        available_replicas: Some(4),
        ..Default::default()
    });
    assert_eq!(staying_available(&old), 3);
    old.spec.as_mut().expect("spec").replicas = Some(5);
    assert_eq!(staying_available(&old), 4);
}
