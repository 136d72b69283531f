//! Service endpoints end to end: the real server's Endpoints, EndpointSlice and mirroring
//! controllers list the pods that `skiff sim-nodes` nodes run (Running and Ready through the
//! real kubelet code, IPs from each node's podCIDR), observed with kubectl.

mod common;

use common::agent::node_ready;
use common::process::eventually;
use common::sim_nodes::TestSimNodes;
use common::TestServer;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

/// A pod the service selects whose readiness probe the simulated runtime fails.
const UNREADY: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: unready
  labels: {app: web}
  annotations: {sim.skiff.io/ready: "false"}
spec:
  containers:
  - name: web
    image: busybox:1.36
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      tcpSocket: {port: http}
      periodSeconds: 1
"#;

/// IPs of the Running `app=web` pods, when there are `want` of them (`unready` excluded).
fn deployment_pod_ips(server: &TestServer, want: usize) -> Result<BTreeSet<String>, String> {
    let pods = server.kubectl_json(&["get", "pods", "-l", "app=web"]);
    let ips: BTreeSet<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["name"] != "unready" && p["status"]["phase"] == "Running")
        .filter_map(|p| p["status"]["podIP"].as_str().map(String::from))
        .collect();
    (ips.len() == want)
        .then(|| ips.clone())
        .ok_or(format!("running pod IPs {ips:?}"))
}

/// (ready IPs, not-ready IPs, ports) of the `web` Endpoints.
fn endpoints(server: &TestServer) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<i64>) {
    let ep = server.kubectl_json(&["get", "endpoints", "web"]);
    let mut out = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for s in ep["subsets"].as_array().into_iter().flatten() {
        for a in s["addresses"].as_array().into_iter().flatten() {
            out.0
                .insert(a["ip"].as_str().unwrap_or_default().to_owned());
        }
        for a in s["notReadyAddresses"].as_array().into_iter().flatten() {
            out.1
                .insert(a["ip"].as_str().unwrap_or_default().to_owned());
        }
        for p in s["ports"].as_array().into_iter().flatten() {
            out.2.insert(p["port"].as_i64().unwrap_or_default());
        }
    }
    out
}

/// (address → ready) and ports of the `web` EndpointSlices.
fn slices(server: &TestServer) -> (Vec<(String, bool)>, BTreeSet<i64>) {
    let list = server.kubectl_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let mut eps = Vec::new();
    let mut ports = BTreeSet::new();
    for s in list["items"].as_array().into_iter().flatten() {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let ready = e["conditions"]["ready"].as_bool().unwrap_or(false);
            eps.push((
                e["addresses"][0].as_str().unwrap_or_default().to_owned(),
                ready,
            ));
        }
        for p in s["ports"].as_array().into_iter().flatten() {
            ports.insert(p["port"].as_i64().unwrap_or_default());
        }
    }
    eps.sort();
    (eps, ports)
}

#[test]
fn a_services_endpoints_and_slices_follow_its_pods_on_simulated_nodes() {
    let server = TestServer::start();
    let mut nodes = TestSimNodes::start(&server, 2, &[]);
    eventually(WAIT, "2 Ready simulated nodes", || {
        nodes.check_running();
        let ready = (0..2)
            .filter(|i| node_ready(&server, &format!("sim-{i}")))
            .count();
        (ready == 2).then_some(()).ok_or(format!("{ready} Ready"))
    });
    server.apply("app.yaml", APP);
    let ips = eventually(WAIT, "3 Running pods", || deployment_pod_ips(&server, 3));

    // Both objects list the three pod IPs with the named target port resolved.
    eventually(WAIT, "the Endpoints lists the 3 pods", || {
        let ep = endpoints(&server);
        (ep.0 == ips && ep.1.is_empty() && ep.2 == BTreeSet::from([8080]))
            .then_some(())
            .ok_or(format!("{ep:?}"))
    });
    eventually(WAIT, "the EndpointSlices list the 3 pods ready", || {
        let (eps, ports) = slices(&server);
        let want: Vec<(String, bool)> = ips.iter().map(|ip| (ip.clone(), true)).collect();
        (eps == want && ports == BTreeSet::from([8080]))
            .then_some(())
            .ok_or(format!("{eps:?} {ports:?}"))
    });
    let slice = server.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    assert!(slice.contains("IPv4") && slice.contains("8080"), "{slice}");
    let describe = server.kubectl_ok(&["describe", "service", "web"]);
    let line = describe
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_default();
    for ip in &ips {
        assert!(line.contains(&format!("{ip}:8080")), "{describe}");
    }

    // A pod failing its readiness probe is listed, as not ready.
    server.apply("unready.yaml", UNREADY);
    let unready_ip = eventually(WAIT, "the unready pod runs", || {
        let p = server.kubectl_json(&["get", "pod", "unready"]);
        p["status"]["podIP"]
            .as_str()
            .filter(|_| p["status"]["phase"] == "Running")
            .map(String::from)
            .ok_or(format!("{}", p["status"]))
    });
    eventually(WAIT, "the unready pod is listed not ready", || {
        let ep = endpoints(&server);
        let (eps, _) = slices(&server);
        (ep.1 == BTreeSet::from([unready_ip.clone()]) && eps.contains(&(unready_ip.clone(), false)))
            .then_some(())
            .ok_or(format!("{ep:?} {eps:?}"))
    });

    // Scaling to zero (and removing the extra pod) empties both.
    server.kubectl_ok(&["scale", "deployment/web", "--replicas=0"]);
    server.kubectl_ok(&["delete", "pod", "unready", "--wait=false"]);
    eventually(WAIT, "no endpoints left", || {
        let ep = endpoints(&server);
        let (eps, _) = slices(&server);
        (ep.0.is_empty() && ep.1.is_empty() && eps.is_empty())
            .then_some(())
            .ok_or(format!("{ep:?} {eps:?}"))
    });
    nodes.check_running();
}

#[test]
fn a_selectorless_service_with_hand_made_endpoints_gets_a_mirrored_slice() {
    let server = TestServer::start();
    server.apply(
        "external.yaml",
        r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db}
subsets:
- addresses: [{ip: 192.0.2.10}, {ip: 192.0.2.11}]
  ports: [{name: pg, port: 5432}]
"#,
    );
    let slice = eventually(WAIT, "a mirrored EndpointSlice", || {
        let list = server.kubectl_json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=db",
        ]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 1)
            .then(|| items[0].clone())
            .ok_or(format!("{} slices", items.len()))
    });
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
    let addresses: Vec<&str> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["addresses"][0].as_str())
        .collect();
    assert_eq!(addresses, vec!["192.0.2.10", "192.0.2.11"]);
    assert_eq!(slice["ports"][0]["port"], 5432);
    let describe = server.kubectl_ok(&["describe", "service", "db"]);
    assert!(describe.contains("192.0.2.10:5432"), "{describe}");

    // Deleting the Endpoints takes the mirror with it.
    server.kubectl_ok(&["delete", "endpoints", "db"]);
    eventually(WAIT, "the mirrored slice is gone", || {
        let list = server.kubectl_json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=db",
        ]);
        let n = list["items"].as_array().map_or(0, Vec::len);
        (n == 0).then_some(()).ok_or(format!("{n} slices"))
    });
}
