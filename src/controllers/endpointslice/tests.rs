//! The Endpoints, EndpointSlice and mirroring controllers against a real API on a temp store
//! (no kubelet: tests give pods their IP and readiness the way a kubelet would).

use crate::controllers::testing::{eventually, Cluster};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

async fn create_node(c: &Cluster, name: &str, zone: &str) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}}))
    .expect("valid node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
}

async fn create_service(c: &Cluster, ns: &str, spec: serde_json::Value) {
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), ns);
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "labels": {"team": "a"}}, "spec": spec}))
    .expect("valid service");
    svcs.create(&PostParams::default(), &svc)
        .await
        .expect("create service");
}

/// A pod on `node` serving `http` on `port`, Running with `ip`, Ready or not.
async fn run_pod(c: &Cluster, name: &str, node: &str, ip: &str, port: i32, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                 "ports": [{"name": "http", "containerPort": port}]}]}}))
    .expect("valid pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    set_ready(c, name, ip, ready).await;
}

async fn set_ready(c: &Cluster, name: &str, ip: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = serde_json::json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                        "lastTransitionTime": now}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("set pod status");
}

async fn slices_of(c: &Cluster, ns: &str, svc: &str) -> Vec<EndpointSlice> {
    let api: Api<EndpointSlice> = Api::namespaced(c.client.clone(), ns);
    api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
        .await
        .expect("list slices")
        .items
}

async fn endpoints_of(c: &Cluster, name: &str) -> Option<Endpoints> {
    let api: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    api.get_opt(name).await.expect("get endpoints")
}

/// (address, ready, serving, terminating, port) of every endpoint, sorted.
async fn slice_view(c: &Cluster) -> Vec<(String, bool, bool, bool, i32)> {
    let mut v = Vec::new();
    for s in slices_of(c, "default", "web").await {
        let port = s
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .and_then(|p| p.port)
            .unwrap_or(0);
        for e in &s.endpoints {
            let cond = e.conditions.clone().unwrap_or_default();
            v.push((
                e.addresses[0].clone(),
                cond.ready == Some(true),
                cond.serving == Some(true),
                cond.terminating == Some(true),
                port,
            ));
        }
    }
    v.sort();
    v
}

#[tokio::test]
async fn a_service_lists_its_pods_ports_and_readiness_in_endpoints_and_slices() {
    let c = Cluster::start().await;
    create_node(&c, "sim-0", "z1").await;
    create_service(
        &c,
        "default",
        serde_json::json!({"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
    )
    .await;
    run_pod(&c, "a", "sim-0", "10.42.0.2", 8080, true).await;
    run_pod(&c, "b", "sim-0", "10.42.0.3", 9090, true).await;
    run_pod(&c, "u", "sim-0", "10.42.0.4", 8080, false).await;
    eventually("slices list the three pods", || async {
        slice_view(&c).await
            == vec![
                ("10.42.0.2".into(), true, true, false, 8080),
                ("10.42.0.3".into(), true, true, false, 9090),
                ("10.42.0.4".into(), false, false, false, 8080),
            ]
    })
    .await;
    let slices = slices_of(&c, "default", "web").await;
    assert_eq!(slices.len(), 2, "one slice per resolved port");
    for s in &slices {
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(labels["team"], "a");
        assert!(s
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("web-"));
        let e = &s.endpoints[0];
        assert_eq!(
            (e.node_name.as_deref(), e.zone.as_deref()),
            (Some("sim-0"), Some("z1"))
        );
        let annotations = s.metadata.annotations.clone().unwrap_or_default();
        assert!(annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"));
    }
    eventually(
        "the Endpoints lists ready and not-ready addresses",
        || async {
            let Some(ep) = endpoints_of(&c, "web").await else {
                return false;
            };
            let subsets = ep.subsets.unwrap_or_default();
            let view: Vec<(i32, Vec<String>, Vec<String>)> = subsets
                .iter()
                .map(|s| {
                    let ips = |l: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
                        l.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
                    };
                    (
                        s.ports.as_ref().map_or(0, |p| p[0].port),
                        ips(&s.addresses),
                        ips(&s.not_ready_addresses),
                    )
                })
                .collect();
            view == vec![
                (
                    8080,
                    vec!["10.42.0.2".to_string()],
                    vec!["10.42.0.4".to_string()],
                ),
                (9090, vec!["10.42.0.3".to_string()], vec![]),
            ] && ep.metadata.labels.unwrap_or_default()["endpoints.kubernetes.io/managed-by"]
                == "endpoint-controller"
        },
    )
    .await;
    // The unready pod becomes ready: one slice rewritten, the other untouched.
    let before: Vec<(Option<String>, Option<String>)> = slices_of(&c, "default", "web")
        .await
        .into_iter()
        .map(|s| (s.metadata.name, s.metadata.resource_version))
        .collect();
    set_ready(&c, "u", "10.42.0.4", true).await;
    eventually("the pod is listed ready", || async {
        slice_view(&c).await.iter().all(|e| e.1)
    })
    .await;
    let after = slices_of(&c, "default", "web").await;
    let unchanged = after
        .iter()
        .filter(|s| {
            before.contains(&(s.metadata.name.clone(), s.metadata.resource_version.clone()))
        })
        .count();
    assert_eq!(unchanged, 1, "only the 8080 slice was written");
    c.stop().await;
}

#[tokio::test]
async fn a_terminating_pod_stays_in_slices_as_serving_terminating_and_leaves_endpoints() {
    let c = Cluster::start().await;
    create_node(&c, "sim-0", "z1").await;
    create_service(
        &c,
        "default",
        serde_json::json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}),
    )
    .await;
    run_pod(&c, "a", "sim-0", "10.42.0.2", 8080, true).await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    // A finalizer holds the pod in Terminating (there is no kubelet to finish it).
    let fin = serde_json::json!({"metadata": {"finalizers": ["test.skiff.io/hold"]}});
    pods.patch("a", &PatchParams::default(), &Patch::Merge(&fin))
        .await
        .expect("add finalizer");
    eventually("the pod is listed", || async {
        slice_view(&c).await.len() == 1
    })
    .await;
    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    eventually(
        "the slice says serving and terminating, not ready",
        || async { slice_view(&c).await == vec![("10.42.0.2".into(), false, true, true, 8080)] },
    )
    .await;
    eventually("the Endpoints no longer lists it", || async {
        endpoints_of(&c, "web")
            .await
            .is_some_and(|e| e.subsets.unwrap_or_default().is_empty())
    })
    .await;
    let unfin = serde_json::json!({"metadata": {"finalizers": null}});
    pods.patch("a", &PatchParams::default(), &Patch::Merge(&unfin))
        .await
        .expect("drop finalizer");
    eventually("an empty placeholder slice remains", || async {
        let s = slices_of(&c, "default", "web").await;
        s.len() == 1 && s[0].endpoints.is_empty()
    })
    .await;
    // The Service goes: its Endpoints goes with it.
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    svcs.delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    eventually("the Endpoints is deleted", || async {
        endpoints_of(&c, "web").await.is_none()
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_hundred_and_twenty_pods_are_packed_into_two_slices() {
    let c = Cluster::start().await;
    create_node(&c, "sim-0", "z1").await;
    create_service(
        &c,
        "default",
        serde_json::json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    )
    .await;
    for i in 0..120 {
        run_pod(
            &c,
            &format!("p{i}"),
            "sim-0",
            &format!("10.42.0.{}", i + 2),
            80,
            true,
        )
        .await;
    }
    eventually("two slices hold the 120 endpoints", || async {
        let mut sizes: Vec<usize> = slices_of(&c, "default", "web")
            .await
            .iter()
            .map(|s| s.endpoints.len())
            .collect();
        sizes.sort();
        sizes == vec![20, 100]
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn hand_made_endpoints_of_a_selectorless_service_are_mirrored_into_a_slice() {
    let c = Cluster::start().await;
    create_service(
        &c,
        "default",
        serde_json::json!({"ports": [{"name": "db", "port": 5432}]}),
    )
    .await;
    let eps: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    let ep: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "labels": {"team": "db"}},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "notReadyAddresses": [{"ip": "192.0.2.11"}],
                     "ports": [{"name": "db", "port": 5432}]}]}))
    .expect("valid endpoints");
    eps.create(&PostParams::default(), &ep)
        .await
        .expect("create endpoints");
    eventually("a mirrored slice lists both addresses", || async {
        let s = slices_of(&c, "default", "web").await;
        s.len() == 1
            && s[0].metadata.labels.as_ref().is_some_and(|l| {
                l["endpointslice.kubernetes.io/managed-by"]
                    == "endpointslicemirroring-controller.k8s.io"
                    && l["team"] == "db"
            })
            && s[0]
                .endpoints
                .iter()
                .map(|e| {
                    (
                        e.addresses[0].as_str(),
                        e.conditions.as_ref().and_then(|c| c.ready),
                    )
                })
                .collect::<Vec<_>>()
                == vec![("192.0.2.10", Some(true)), ("192.0.2.11", Some(false))]
    })
    .await;
    // The Endpoints controller leaves hand-made Endpoints of a selectorless service alone.
    let ep = endpoints_of(&c, "web").await.expect("still there");
    assert!(!ep
        .metadata
        .labels
        .unwrap_or_default()
        .contains_key("endpoints.kubernetes.io/managed-by"));
    // Opting out removes the mirror.
    let skip = serde_json::json!({"metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}});
    eps.patch("web", &PatchParams::default(), &Patch::Merge(&skip))
        .await
        .expect("label endpoints");
    eventually("the mirrored slice is deleted", || async {
        slices_of(&c, "default", "web").await.is_empty()
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn topology_mode_auto_hints_zones_when_nodes_in_two_zones_allow_it() {
    let c = Cluster::start().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    for (name, zone) in [("n-a", "za"), ("n-b", "zb")] {
        create_node(&c, name, zone).await;
        let status = serde_json::json!({"status": {"allocatable": {"cpu": "2"},
            "conditions": [{"type": "Ready", "status": "True"}]}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("node status");
    }
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "annotations": {"service.kubernetes.io/topology-mode": "Auto"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
    .expect("valid service");
    svcs.create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    run_pod(&c, "a1", "n-a", "10.42.0.2", 80, true).await;
    run_pod(&c, "a2", "n-a", "10.42.0.3", 80, true).await;
    run_pod(&c, "b1", "n-b", "10.42.1.2", 80, true).await;
    run_pod(&c, "b2", "n-b", "10.42.1.3", 80, true).await;
    eventually("each endpoint is hinted to its own zone", || async {
        let s = slices_of(&c, "default", "web").await;
        let eps: Vec<_> = s.iter().flat_map(|s| &s.endpoints).collect();
        eps.len() == 4
            && eps.iter().all(|e| {
                let hinted = e
                    .hints
                    .as_ref()
                    .and_then(|h| h.for_zones.as_ref())
                    .map(|z| z.iter().map(|z| z.name.clone()).collect::<Vec<_>>());
                hinted == e.zone.clone().map(|z| vec![z])
            })
    })
    .await;
    // Too few endpoints for two zones: hints go.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for p in ["a2", "b1", "b2"] {
        pods.delete(p, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete pod");
    }
    eventually("the hints are removed", || async {
        let s = slices_of(&c, "default", "web").await;
        let eps: Vec<_> = s.iter().flat_map(|s| &s.endpoints).collect();
        eps.len() == 1 && eps[0].hints.is_none()
    })
    .await;
    c.stop().await;
}
