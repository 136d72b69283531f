use super::*;
use crate::scheduler::cache::PodInfo;
use crate::scheduler::framework::{find_feasible, prefilter, NoLookups};
use crate::scheduler::testutil::*;
use serde_json::json;
use std::sync::Arc;

fn reasons(r: FilterResult) -> Vec<String> {
    r.err().map(|r| r.reasons).unwrap_or_default()
}

#[test]
fn a_cordoned_node_rejects_pods_unless_they_tolerate_the_unschedulable_taint() {
    let n = node_with("n", 1000, 1, json!({"spec": {"unschedulable": true}}));
    let r = node_unschedulable(&pod("p", 0), &n).expect_err("cordoned");
    assert_eq!(r.reasons, vec![REASON_UNSCHEDULABLE]);
    assert_eq!(r.code, Code::Unresolvable);
    let tolerant = pod_with(
        "p",
        0,
        json!({"spec": {"tolerations": [{"key": TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]}}),
    );
    assert!(node_unschedulable(&tolerant, &n).is_ok());
}

#[test]
fn an_untolerated_taint_is_named_with_its_key_and_value() {
    let n = node_with(
        "n",
        1000,
        1,
        json!({"spec": {"taints": [{"key": "node-role", "value": "x", "effect": "NoSchedule"},
                                   {"key": "soft", "effect": "PreferNoSchedule"}]}}),
    );
    let ni = node_info(n, vec![]);
    let p = pod("p", 0);
    assert_eq!(
        reasons(taint_toleration(tolerations(&p), &ni.taints)),
        vec!["node(s) had untolerated taint {node-role: x}"]
    );
    let tol = pod_with(
        "p",
        0,
        json!({"spec": {"tolerations": [{"key": "node-role", "operator": "Equal", "value": "x"}]}}),
    );
    assert!(taint_toleration(tolerations(&tol), &ni.taints).is_ok());
    let wrong = pod_with(
        "p",
        0,
        json!({"spec": {"tolerations": [{"key": "node-role", "value": "y"}]}}),
    );
    assert!(taint_toleration(tolerations(&wrong), &ni.taints).is_err());
}

#[test]
fn a_node_that_is_not_ready_repels_pods_through_the_not_ready_taint() {
    let n = node_with(
        "n",
        1000,
        1,
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    let ni = node_info(n, vec![]);
    assert_eq!(
        reasons(taint_toleration(&[], &ni.taints)),
        vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
    );
}

#[test]
fn node_selector_and_required_node_affinity_must_both_match() {
    let n = node_with(
        "n",
        1000,
        1,
        json!({"metadata": {"labels": {"disk": "ssd", "zone": "a"}}}),
    );
    let sel = pod_with("p", 0, json!({"spec": {"nodeSelector": {"disk": "ssd"}}}));
    assert!(node_affinity(&sel, &n).is_ok());
    let both = pod_with(
        "p",
        0,
        json!({"spec": {"nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
        ]}}}}}),
    );
    assert_eq!(
        reasons(node_affinity(&both, &n)),
        vec![REASON_NODE_AFFINITY]
    );
}

#[test]
fn host_ports_clash_on_the_same_protocol_and_port_unless_the_addresses_differ() {
    let with_port = |ip: Option<&str>, port: i32| {
        let mut p = json!({"containerPort": 80, "hostPort": port});
        if let Some(ip) = ip {
            p["hostIP"] = json!(ip);
        }
        pod_with(
            "p",
            0,
            json!({"spec": {"containers": [{"name": "c", "ports": [p]}]}}),
        )
    };
    let ni = node_info(node("n", 1000, 1), vec![with_port(Some("10.0.0.1"), 8080)]);
    let same = PodInfo::new(Arc::new(with_port(None, 8080)));
    assert_eq!(reasons(node_ports(&same.ports, &ni)), vec![REASON_PORTS]);
    let other_ip = PodInfo::new(Arc::new(with_port(Some("10.0.0.2"), 8080)));
    assert!(node_ports(&other_ip.ports, &ni).is_ok());
    let other_port = PodInfo::new(Arc::new(with_port(None, 9090)));
    assert!(node_ports(&other_port.ports, &ni).is_ok());
}

#[test]
fn resources_fit_reports_every_shortfall_and_the_pod_count() {
    let n = node_with(
        "n",
        1000,
        1,
        json!({"status": {"allocatable": {"pods": "1", "example.com/gpu": "1"}}}),
    );
    let ni = node_info(n, vec![pod("old", 600)]);
    let big = PodInfo::new(Arc::new(pod_with(
        "p",
        500,
        json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {
            "cpu": "500m", "memory": "2Gi", "example.com/gpu": "2"}}}]}}),
    )));
    assert_eq!(
        reasons(resources_fit(&big.requests, &ni)),
        vec![
            "Too many pods",
            "Insufficient cpu",
            "Insufficient memory",
            "Insufficient example.com/gpu"
        ]
    );
    let roomy = node_info(node("m", 1000, 1), vec![pod("old", 600)]);
    let small = PodInfo::new(Arc::new(pod("p", 400)));
    assert!(resources_fit(&small.requests, &roomy).is_ok());
    let too_big = PodInfo::new(Arc::new(pod("p", 401)));
    assert_eq!(
        reasons(resources_fit(&too_big.requests, &roomy)),
        vec!["Insufficient cpu"]
    );
}

#[test]
fn a_bound_local_volume_pins_the_pod_to_the_nodes_its_affinity_allows() {
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv"},
        "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}
        ]}}}
    }))
    .expect("pv");
    let pvs = vec![Arc::new(pv)];
    assert!(volume_node_affinity(&pvs, &node("a", 1000, 1)).is_ok());
    assert_eq!(
        reasons(volume_node_affinity(&pvs, &node("b", 1000, 1))),
        vec![REASON_VOLUME_AFFINITY]
    );
}

fn zone_node(name: &str, zone: &str) -> k8s_openapi::api::core::v1::Node {
    node_with(
        name,
        4000,
        8,
        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}}),
    )
}

fn feasible_names(
    c: &crate::scheduler::cache::Cache,
    p: &Pod,
) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let p = Arc::new(p.clone());
    let cycle = prefilter(c, &p, &NoLookups).expect("prefilter");
    let (ok, diag) = find_feasible(c, &cycle);
    (
        ok.iter().map(|n| n.name.clone()).collect(),
        diag.nodes
            .into_iter()
            .map(|(n, r)| (n, r.reasons))
            .collect(),
    )
}

#[test]
fn topology_spread_do_not_schedule_keeps_the_skew_within_max_skew() {
    let web = |name: &str| pod_with(name, 0, json!({"metadata": {"labels": {"app": "web"}}}));
    let c = cache(
        vec![
            zone_node("a1", "a"),
            zone_node("b1", "b"),
            node("nolabel", 4000, 8),
        ],
        vec![
            on("a1", web("w1")),
            on("a1", web("w2")),
            on("b1", web("w3")),
        ],
    );
    let p = pod_with(
        "new",
        0,
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
    );
    let (ok, rejected) = feasible_names(&c, &p);
    assert_eq!(ok, vec!["b1"]);
    assert!(rejected.contains(&(
        "a1".into(),
        vec![crate::scheduler::spread::REASON_SKEW.into()]
    )));
    assert!(rejected.contains(&(
        "nolabel".into(),
        vec![crate::scheduler::spread::REASON_MISSING_LABEL.into()]
    )));
}

#[test]
fn required_pod_affinity_and_anti_affinity_follow_the_topology_key() {
    let db = on(
        "a1",
        pod_with("db", 0, json!({"metadata": {"labels": {"app": "db"}}})),
    );
    let c = cache(
        vec![
            zone_node("a1", "a"),
            zone_node("a2", "a"),
            zone_node("b1", "b"),
        ],
        vec![db],
    );
    let term = json!([{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}]);
    let near = pod_with(
        "near",
        0,
        json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term}}}}),
    );
    let (ok, rejected) = feasible_names(&c, &near);
    assert_eq!(ok, vec!["a1", "a2"]);
    assert_eq!(
        rejected,
        vec![(
            "b1".into(),
            vec![crate::scheduler::affinity::REASON_AFFINITY.into()]
        )]
    );
    let far = pod_with(
        "far",
        0,
        json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term}}}}),
    );
    let (ok, rejected) = feasible_names(&c, &far);
    assert_eq!(ok, vec!["b1"]);
    assert_eq!(rejected.len(), 2);
    assert_eq!(
        rejected[0].1,
        vec![crate::scheduler::affinity::REASON_ANTI_AFFINITY]
    );
}

#[test]
fn an_existing_pods_anti_affinity_keeps_matching_pods_out_of_its_domain() {
    let loner = on(
        "a1",
        pod_with(
            "loner",
            0,
            json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
            ]}}}}),
        ),
    );
    let c = cache(
        vec![zone_node("a1", "a"), zone_node("a2", "a")],
        vec![loner],
    );
    let web = pod_with("w", 0, json!({"metadata": {"labels": {"app": "web"}}}));
    let (ok, rejected) = feasible_names(&c, &web);
    assert_eq!(ok, vec!["a2"]);
    assert_eq!(
        rejected,
        vec![(
            "a1".into(),
            vec![crate::scheduler::affinity::REASON_EXISTING_ANTI_AFFINITY.into()]
        )]
    );
    let other = pod("o", 0);
    assert_eq!(feasible_names(&c, &other).0.len(), 2);
}

#[test]
fn the_first_pod_of_a_self_affine_group_may_go_anywhere() {
    let c = cache(vec![zone_node("a1", "a"), zone_node("b1", "b")], vec![]);
    let p = pod_with(
        "first",
        0,
        json!({"metadata": {"labels": {"app": "db"}}, "spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}
        ]}}}}),
    );
    assert_eq!(feasible_names(&c, &p).0, vec!["a1", "b1"]);
}
