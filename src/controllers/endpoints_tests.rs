//! Endpoints subsets and truncation.

use super::*;
use k8s_openapi::api::core::v1::Pod;

fn svc(extra: serde_json::Value) -> Service {
    let mut v = serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.20", "ipFamilies": ["IPv4"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                           {"name": "metrics", "port": 9100, "protocol": "TCP", "targetPort": 9100}]}});
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            spec.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).expect("valid service")
}

fn pod(name: &str, ip: &str, http: Option<i32>, ready: bool, deleting: bool) -> Arc<Pod> {
    let ports: Vec<serde_json::Value> = http
        .map(|p| serde_json::json!({"name": "http", "containerPort": p, "protocol": "TCP"}))
        .into_iter()
        .collect();
    let mut meta = serde_json::json!({"name": name, "namespace": "default", "uid": name,
                                      "labels": {"app": "web"}});
    if deleting {
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
    }
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": meta,
            "spec": {"nodeName": "sim-0", "containers": [{"name": "c", "ports": ports}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
        .expect("valid pod"),
    )
}

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    list.iter().flatten().map(|a| a.ip.as_str()).collect()
}

#[test]
fn pods_are_packed_into_subsets_by_the_ports_they_resolve() {
    let pods = [
        pod("a", "10.42.0.3", Some(8080), true, false),
        pod("b", "10.42.0.2", Some(8080), false, false),
        pod("c", "10.42.1.2", Some(9090), true, false),
        pod("d", "10.42.1.3", None, true, false),
        pod("e", "10.42.1.4", Some(8080), true, true),
    ];
    let subsets = subsets_for(&svc(serde_json::json!({})), &pods);
    let summary: Vec<(Vec<i32>, Vec<&str>, Vec<&str>)> = subsets
        .iter()
        .map(|s| {
            (
                s.ports.iter().flatten().map(|p| p.port).collect(),
                ips(&s.addresses),
                ips(&s.not_ready_addresses),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (vec![8080, 9100], vec!["10.42.0.3"], vec!["10.42.0.2"]),
            (vec![9090, 9100], vec!["10.42.1.2"], vec![]),
            (vec![9100], vec!["10.42.1.3"], vec![]),
        ],
        "the terminating pod is left out"
    );
    let a = &subsets[0].addresses.as_ref().expect("ready")[0];
    assert_eq!(a.node_name.as_deref(), Some("sim-0"));
    let target = a.target_ref.as_ref().expect("target");
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("a"))
    );
}

#[test]
fn publish_not_ready_addresses_lists_every_pod_as_ready() {
    let pods = [
        pod("b", "10.42.0.2", Some(8080), false, false),
        pod("e", "10.42.1.4", Some(8080), true, true),
    ];
    let s = svc(serde_json::json!({"publishNotReadyAddresses": true}));
    let subsets = subsets_for(&s, &pods);
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), vec!["10.42.0.2", "10.42.1.4"]);
    assert!(subsets[0].not_ready_addresses.is_none());
}

#[test]
fn a_headless_service_without_ports_lists_addresses_only() {
    let s = svc(serde_json::json!({"clusterIP": "None", "ports": null}));
    let subsets = subsets_for(&s, &[pod("a", "10.42.0.2", None, true, false)]);
    assert_eq!(subsets.len(), 1);
    assert!(subsets[0].ports.is_none());
    assert_eq!(ips(&subsets[0].addresses), vec!["10.42.0.2"]);
    assert!(endpoints_labels(&s).contains_key("service.kubernetes.io/headless"));
    assert!(!endpoints_labels(&svc(serde_json::json!({})))
        .contains_key("service.kubernetes.io/headless"));
}

fn addrs(n: usize, base: usize) -> Option<Vec<EndpointAddress>> {
    Some(
        (0..n)
            .map(|i| EndpointAddress {
                ip: format!("10.{}.{}.{}", base, i / 250, i % 250),
                ..Default::default()
            })
            .collect(),
    )
}

#[test]
fn over_a_thousand_addresses_are_cut_proportionally_not_ready_first() {
    let mut subsets = vec![
        EndpointSubset {
            addresses: addrs(600, 1),
            not_ready_addresses: addrs(300, 2),
            ports: None,
        },
        EndpointSubset {
            addresses: addrs(300, 3),
            not_ready_addresses: addrs(100, 4),
            ports: None,
        },
    ];
    assert!(truncate(&mut subsets));
    let n = |s: &EndpointSubset| {
        (
            s.addresses.as_ref().map_or(0, Vec::len),
            s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    };
    // 900 ready kept; the 100 places left go 3:1 to the not-ready lists.
    assert_eq!(n(&subsets[0]), (600, 75));
    assert_eq!(n(&subsets[1]), (300, 25));
    let mut big = vec![EndpointSubset {
        addresses: addrs(1200, 5),
        not_ready_addresses: addrs(10, 6),
        ports: None,
    }];
    assert!(truncate(&mut big));
    assert_eq!(n(&big[0]), (1000, 0));
    let mut small = vec![EndpointSubset {
        addresses: addrs(1000, 7),
        ..Default::default()
    }];
    assert!(!truncate(&mut small));
}
