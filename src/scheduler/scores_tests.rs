use super::*;
use crate::scheduler::filters;
use crate::scheduler::framework::{prefilter, score_nodes, select, NoLookups};
use crate::scheduler::testutil::*;
use serde_json::json;
use std::sync::Arc;

#[test]
fn least_allocated_prefers_the_emptier_node_and_counts_missing_requests_as_defaults() {
    let empty = node_info(node("a", 1000, 1), vec![]);
    let busy = node_info(node("b", 1000, 1), vec![pod("x", 500)]);
    let best_effort = (100, 200 * 1024 * 1024);
    // cpu (1000-100)/1000 = 90, memory (1024-200)/1024 = 80 → 85.
    assert_eq!(least_allocated(best_effort, &empty), 85);
    assert!(least_allocated(best_effort, &busy) < 85);
}

#[test]
fn balanced_allocation_rewards_equal_cpu_and_memory_fractions() {
    let ni = node_info(node("a", 1000, 1), vec![]);
    let gi = 1024 * 1024 * 1024;
    assert_eq!(balanced_allocation((500, gi / 2), &ni), 100);
    // cpu 100%, memory 0% → std 0.5 → 50.
    assert_eq!(balanced_allocation((1000, 0), &ni), 50);
}

#[test]
fn preferred_node_affinity_sums_the_weights_of_matching_terms() {
    let p = pod_with(
        "p",
        0,
        json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 5, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}
        ]}}}}),
    );
    let n = node_with(
        "a",
        1000,
        1,
        json!({"metadata": {"labels": {"disk": "ssd", "gpu": "1"}}}),
    );
    assert_eq!(node_affinity(&p, &n), 15);
    assert_eq!(node_affinity(&p, &node("b", 1000, 1)), 0);
    let mut s = vec![15, 5, 0];
    default_normalize(&mut s, false);
    assert_eq!(s, vec![100, 33, 0]);
}

#[test]
fn prefer_no_schedule_taints_lower_the_score_unless_tolerated() {
    let tainted = node_info(
        node_with(
            "a",
            1000,
            1,
            json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
        ),
        vec![],
    );
    let clean = node_info(node("b", 1000, 1), vec![]);
    let p = pod("p", 0);
    let mut s = vec![
        intolerable_taints(filters::tolerations(&p), &tainted),
        intolerable_taints(filters::tolerations(&p), &clean),
    ];
    default_normalize(&mut s, true);
    assert_eq!(s, vec![0, 100]);
    let tol = pod_with(
        "p",
        0,
        json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}),
    );
    assert_eq!(intolerable_taints(filters::tolerations(&tol), &tainted), 0);
}

#[test]
fn image_locality_favours_nodes_that_have_the_image_scaled_by_its_spread() {
    let with_image = node_info(
        node_with(
            "a",
            1000,
            1,
            json!({"status": {"images": [{"names": ["docker.io/library/app:1"], "sizeBytes": 500 * 1024 * 1024}]}}),
        ),
        vec![],
    );
    let p = pod_with(
        "p",
        0,
        json!({"spec": {"containers": [{"name": "c", "image": "docker.io/library/app:1"}]}}),
    );
    let all = image_locality(&pod_images(&p), &with_image, 1, |_| 1);
    let rare = image_locality(&pod_images(&p), &with_image, 4, |_| 1);
    assert!(all > rare && rare > 0, "{all} {rare}");
    assert_eq!(
        image_locality(
            &pod_images(&p),
            &node_info(node("b", 1000, 1), vec![]),
            1,
            |_| 0
        ),
        0
    );
}

#[test]
fn scoring_spreads_an_owned_pod_away_from_nodes_with_its_siblings() {
    let web = |n: &str| pod_with(n, 0, json!({"metadata": {"labels": {"app": "web"}}}));
    // Equal requests everywhere (the siblings' on `a`, strangers' on `b`), so only spreading differs.
    let c = cache(
        vec![node("a", 4000, 8), node("b", 4000, 8)],
        vec![
            on("a", web("w1")),
            on("a", web("w2")),
            on("b", pod("x1", 0)),
            on("b", pod("x2", 0)),
        ],
    );
    let p = Arc::new(web("new"));
    let cycle = prefilter(&c, &p, &Owned).expect("prefilter");
    let feasible: Vec<_> = c.nodes().collect();
    let s = score_nodes(&c, &cycle, &feasible, &Owned);
    assert!(s[1] > s[0], "b (no siblings) must win: {s:?}");
    let plain = score_nodes(&c, &cycle, &feasible, &NoLookups);
    assert_eq!(plain[0], plain[1]);
}

#[test]
fn preferred_pod_affinity_pulls_towards_the_domain_of_matching_pods() {
    let c = cache(
        vec![node("a", 4000, 8), node("b", 4000, 8)],
        vec![
            on(
                "a",
                pod_with("db", 0, json!({"metadata": {"labels": {"app": "db"}}})),
            ),
            on("b", pod("x", 0)),
        ],
    );
    let p = Arc::new(pod_with(
        "p",
        0,
        json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}}
        ]}}}}),
    ));
    let cycle = prefilter(&c, &p, &NoLookups).expect("prefilter");
    let feasible: Vec<_> = c.nodes().collect();
    let s = score_nodes(&c, &cycle, &feasible, &NoLookups);
    assert_eq!(s[0] - s[1], 2 * MAX_SCORE, "{s:?}");
}

#[test]
fn ties_are_broken_at_random_among_the_best() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut seen = [0; 3];
    for _ in 0..300 {
        seen[select(&[5, 9, 9], &mut rng).expect("one")] += 1;
    }
    assert_eq!(seen[0], 0);
    assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
}

use rand::SeedableRng;
