//! The endpoints a selector Service should have (upstream's `podToEndpoint` and
//! `getEndpointPorts`): one endpoint per pod and IP family, grouped by the ports the pod
//! resolves the service's ports to.
//!
//! Conditions as upstream: `serving` is the pod's Ready condition, `terminating` is set once
//! the pod is being deleted, and `ready` is `serving && !terminating` — or always true with
//! `publishNotReadyAddresses`, which promises clients every address. Terminating pods stay
//! in the slices (proxies fall back to serving-terminating endpoints); finished pods and
//! pods without IP do not.

use super::pods::{self, Family};
use super::reconciler::{endpoint_key, ports_key, Desired, Group};
use crate::controllers::controller_utils::is_pod_ready;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The slice ports `pod` serves the service on: each service port whose `targetPort`
/// resolves on this pod; an unresolvable one is left out for this pod only.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|sp| {
            let port = pods::find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Upstream's `podToEndpoint` for one address family.
pub fn pod_endpoint(pod: &Pod, node: Option<&Node>, svc: &Service, family: Family) -> Endpoint {
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = pods::publish_not_ready(svc) || (serving && !terminating);
    let spec = pod.spec.as_ref();
    Endpoint {
        addresses: pods::ips_of_family(pod, family),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(pods::pod_ref(pod)),
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        zone: node
            .and_then(|n| n.metadata.labels.as_ref())
            .and_then(|l| l.get(super::topology::LABEL_ZONE))
            .filter(|z| !z.is_empty())
            .cloned(),
        hostname: pods::should_set_hostname(pod, svc)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        ..Default::default()
    }
}

/// What [`desired`] found.
pub struct DesiredEndpoints {
    pub desired: Desired,
    /// Pods left out because their node is not (yet) known: the sync is retried.
    pub missing_nodes: Vec<String>,
}

/// Every selected pod's endpoints, by family and port set. `nodes` looks a node up by name.
pub fn desired(
    svc: &Service,
    selected: &[Arc<Pod>],
    nodes: impl Fn(&str) -> Option<Arc<Node>>,
) -> DesiredEndpoints {
    let families = pods::slice_families(svc);
    let mut desired: Desired = families.iter().map(|f| (*f, BTreeMap::new())).collect();
    let mut missing_nodes = Vec::new();
    for pod in selected {
        if !pods::should_be_in_endpoints(pod, true) {
            continue;
        }
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let node = nodes(node_name);
        // A pod on a node that is gone would stay in the slices forever; leave it out and
        // retry, unless the service publishes every address anyway.
        if node.is_none() && !pods::publish_not_ready(svc) {
            missing_nodes.push(pod.metadata.name.clone().unwrap_or_default());
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        let key = ports_key(&ports);
        for family in &families {
            let ep = pod_endpoint(pod, node.as_deref(), svc, *family);
            if ep.addresses.is_empty() {
                continue;
            }
            let groups = desired.entry(*family).or_default();
            let group = groups.entry(key.clone()).or_insert_with(|| Group {
                ports: ports.clone(),
                endpoints: BTreeMap::new(),
            });
            group.endpoints.insert(endpoint_key(&ep), ep);
        }
    }
    DesiredEndpoints {
        desired,
        missing_nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(extra: serde_json::Value) -> Service {
        let mut v = serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.20",
                     "ipFamilies": ["IPv4"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                "targetPort": "http"}]}});
        merge(&mut v, extra);
        serde_json::from_value(v).expect("valid service")
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn pod(name: &str, ip: &str, port: i32, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
        let mut v = serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "sim-0", "containers": [{"name": "c",
                     "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).expect("valid pod"))
    }

    fn node(_: &str) -> Option<Arc<Node>> {
        Some(Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "sim-0", "labels": {"topology.kubernetes.io/zone": "z1"}}}))
            .expect("valid node"),
        ))
    }

    fn conditions(ep: &Endpoint) -> (bool, bool, bool) {
        let c = ep.conditions.clone().unwrap_or_default();
        (
            c.ready.unwrap_or_default(),
            c.serving.unwrap_or_default(),
            c.terminating.unwrap_or_default(),
        )
    }

    #[test]
    fn a_named_target_port_differing_per_pod_makes_two_port_groups() {
        let pods = [
            pod("a", "10.42.0.2", 8080, true, serde_json::json!({})),
            pod("b", "10.42.1.2", 9090, true, serde_json::json!({})),
            pod("c", "10.42.1.3", 8080, true, serde_json::json!({})),
        ];
        let d = desired(&svc(serde_json::json!({})), &pods, node).desired;
        let groups = &d[&Family::V4];
        assert_eq!(groups.len(), 2);
        let sizes: Vec<(i32, usize)> = groups
            .values()
            .map(|g| (g.ports[0].port.unwrap_or_default(), g.endpoints.len()))
            .collect();
        assert_eq!(sizes, vec![(8080, 2), (9090, 1)]);
        let g = groups.values().next().expect("a group");
        assert_eq!(g.ports[0].name.as_deref(), Some("http"));
        let ep = g.endpoints.values().next().expect("an endpoint");
        assert_eq!(ep.zone.as_deref(), Some("z1"));
        assert_eq!(ep.node_name.as_deref(), Some("sim-0"));
    }

    #[test]
    fn unready_and_terminating_pods_get_upstream_conditions() {
        let deleting =
            serde_json::json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        let pods = [
            pod("ready", "10.42.0.2", 80, true, serde_json::json!({})),
            pod("unready", "10.42.0.3", 80, false, serde_json::json!({})),
            pod("leaving", "10.42.0.4", 80, true, deleting.clone()),
            pod(
                "done",
                "10.42.0.5",
                80,
                true,
                serde_json::json!({"status": {"phase": "Failed"}}),
            ),
        ];
        let by_ip = |s: &Service| -> BTreeMap<String, (bool, bool, bool)> {
            desired(s, &pods, node).desired[&Family::V4]
                .values()
                .flat_map(|g| g.endpoints.values())
                .map(|e| (e.addresses[0].clone(), conditions(e)))
                .collect()
        };
        let plain = by_ip(&svc(serde_json::json!({})));
        assert_eq!(plain.len(), 3, "the finished pod is left out");
        assert_eq!(plain["10.42.0.2"], (true, true, false));
        assert_eq!(plain["10.42.0.3"], (false, false, false));
        assert_eq!(plain["10.42.0.4"], (false, true, true));
        let publish = by_ip(&svc(
            serde_json::json!({"spec": {"publishNotReadyAddresses": true}}),
        ));
        assert_eq!(publish["10.42.0.3"], (true, false, false));
        assert_eq!(publish["10.42.0.4"], (true, true, true));
    }

    #[test]
    fn a_pod_naming_a_headless_service_as_subdomain_gets_its_hostname() {
        let s = svc(serde_json::json!({"spec": {"clusterIP": "None"}}));
        let p = pod(
            "a",
            "10.42.0.2",
            80,
            true,
            serde_json::json!({"spec": {"hostname": "db-0", "subdomain": "web"}}),
        );
        let other = pod(
            "b",
            "10.42.0.3",
            80,
            true,
            serde_json::json!({"spec": {"hostname": "db-1", "subdomain": "elsewhere"}}),
        );
        let eps = desired(&s, &[p, other], node).desired;
        let hostnames: Vec<Option<String>> = eps[&Family::V4]
            .values()
            .flat_map(|g| g.endpoints.values())
            .map(|e| e.hostname.clone())
            .collect();
        assert_eq!(hostnames, vec![Some("db-0".into()), None]);
    }

    #[test]
    fn a_pod_on_an_unknown_node_is_left_out_unless_all_addresses_are_published() {
        let pods = [pod("a", "10.42.0.2", 80, true, serde_json::json!({}))];
        let d = desired(&svc(serde_json::json!({})), &pods, |_| None);
        assert_eq!(d.missing_nodes, vec!["a".to_string()]);
        assert!(d.desired[&Family::V4].is_empty());
        let s = svc(serde_json::json!({"spec": {"publishNotReadyAddresses": true}}));
        let d = desired(&s, &pods, |_| None);
        assert!(d.missing_nodes.is_empty());
        assert_eq!(d.desired[&Family::V4].len(), 1);
    }
}
