//! Service and Endpoints printers (core `v1`).
//!
//! Invariant: EXTERNAL-IP follows upstream per service type (`<none>`,
//! `<pending>`, load-balancer ingress plus externalIPs, or the external
//! name), never elided since the server always renders the wide form.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{created, get, int_at, list_at, name, opt_int, s, str_at};
use super::format::format_labels;
use super::{col, no_conditions, wide, Spec, AGE, NAME};

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    s(since(created(obj), now))
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".to_string()
    } else {
        v.to_string()
    }
}
// ---- Service ----

pub static SERVICE: Spec = Spec {
    columns: &[
        NAME,
        col("Type", "string", "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName."),
        col("Cluster-IP", "string", "Virtual IP the service is reachable at inside the cluster (None for headless services)."),
        col("External-IP", "string", "Addresses outside the cluster that route to the service: externalIPs and load-balancer ingress points."),
        col("Port(s)", "string", "Service ports as port[:nodePort]/protocol."),
        AGE,
        wide("Selector", "string", "Labels of the pods that back the service."),
    ],
    cells: service_cells,
    conditions: no_conditions,
    list: None,
};

fn service_type(svc: &Value) -> &str {
    match str_at(svc, &["spec", "type"]) {
        "" => "ClusterIP",
        t => t,
    }
}

fn strings(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Sorted, deduplicated load-balancer ingress IPs (or hostnames). The server
/// always renders the wide form, so the value is never elided.
fn load_balancer_ingress(status: Option<&Value>) -> String {
    let mut out: Vec<String> = status
        .map(|s| list_at(s, &["ingress"]))
        .unwrap_or(&[])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let host = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !host.is_empty() {
                Some(host.to_string())
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out.join(",")
}

fn service_external_ip(svc: &Value) -> String {
    let external = strings(list_at(svc, &["spec", "externalIPs"]));
    match service_type(svc) {
        "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(get(svc, &["status", "loadBalancer"]));
            if !external.is_empty() {
                let mut all: Vec<String> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').map(str::to_string).collect()
                };
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = list_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let proto = match str_at(p, &["protocol"]) {
                "" => "TCP",
                other => other,
            };
            match opt_int(p, &["nodePort"]).filter(|np| *np > 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    or_none(&ports.join(","))
}

fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cluster_ip = list_at(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(svc, &["spec", "clusterIP"]));
    vec![
        s(name(svc)),
        s(service_type(svc)),
        s(or_none(cluster_ip)),
        s(service_external_ip(svc)),
        s(service_ports(svc)),
        age(svc, now),
        s(format_labels(get(svc, &["spec", "selector"]))),
    ]
}

// ---- Endpoints ----

pub static ENDPOINTS: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Endpoints",
            "string",
            "Ready addresses (ip:port) behind the service, first three shown.",
        ),
        AGE,
    ],
    cells: endpoints_cells,
    conditions: no_conditions,
    list: None,
};

fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list_at(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = list_at(ss, &["addresses"]);
        let ports = list_at(ss, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(a, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(host_port(str_at(a, &["ip"]), int_at(port, &["port"])));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn endpoints_cells(ep: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![s(name(ep)), s(format_endpoints(ep)), age(ep, now)]
}

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::{json, Value};

    fn row(spec: &'static super::super::Spec, obj: Value) -> Value {
        Value::Array(cells(spec, &obj))
    }
    #[test]
    fn cluster_ip_service_prints_ports_and_selector() {
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": ago(60)},
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080},
                               {"port": 53, "protocol": "UDP"}],
                     "selector": {"app": "web", "tier": "front"}}});
        assert_eq!(
            row(&printers::SERVICE, svc),
            json!([
                "web",
                "ClusterIP",
                "10.43.0.10",
                "<none>",
                "80/TCP,53/UDP",
                "60s",
                "app=web,tier=front"
            ])
        );
    }

    #[test]
    fn node_port_service_shows_node_ports() {
        let svc = json!({"metadata": {"name": "np"},
            "spec": {"type": "NodePort", "clusterIPs": ["10.9.8.7"],
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        assert_eq!(
            row(&printers::SERVICE, svc),
            json!([
                "np",
                "NodePort",
                "10.9.8.7",
                "<none>",
                "80:30080/TCP",
                "<unknown>",
                "<none>"
            ])
        );
    }

    #[test]
    fn load_balancer_service_external_ip_forms() {
        let pending = json!({"metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.9.8.7"], "ports": [{"port": 8888, "protocol": "tcp"}]}});
        assert_eq!(row(&printers::SERVICE, pending)[3], "<pending>");
        let with_both = json!({"metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.9.8.7"], "externalIPs": ["80.11.12.10", "80.11.12.11"],
                     "ports": [{"port": 8888, "protocol": "tcp"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "3.4.5.6", "hostname": "b"}, {"ip": "2.3.4.5"}]}}});
        assert_eq!(
            row(&printers::SERVICE, with_both)[3],
            "2.3.4.5,3.4.5.6,80.11.12.10,80.11.12.11"
        );
        // The server renders the wide form, so long lists are not elided.
        let long = json!({"metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["1.5.6.7"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "2.3.4.5"}, {"ip": "3.4.5.6"}, {"ip": "5.6.7.8", "hostname": "h"}]}}});
        assert_eq!(
            row(&printers::SERVICE, long.clone())[3],
            "2.3.4.5,3.4.5.6,5.6.7.8"
        );
        assert_eq!(row(&printers::SERVICE, long)[4], "<none>");
    }

    #[test]
    fn external_name_and_headless_services() {
        let ext = json!({"metadata": {"name": "db"},
            "spec": {"type": "ExternalName", "externalName": "my.database.example.com"}});
        assert_eq!(
            row(&printers::SERVICE, ext),
            json!([
                "db",
                "ExternalName",
                "<none>",
                "my.database.example.com",
                "<none>",
                "<unknown>",
                "<none>"
            ])
        );
        let headless = json!({"metadata": {"name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}});
        let r = row(&printers::SERVICE, headless);
        assert_eq!(r[1], "ClusterIP");
        assert_eq!(r[2], "None");
        assert_eq!(r[4], "5432/TCP");
    }

    #[test]
    fn endpoints_join_addresses_and_elide_after_three() {
        let none = json!({"metadata": {"name": "e"}});
        assert_eq!(row(&printers::ENDPOINTS, none)[1], "<none>");
        let no_ports = json!({"metadata": {"name": "e"},
            "subsets": [{"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}]}]});
        assert_eq!(row(&printers::ENDPOINTS, no_ports)[1], "1.2.3.4,5.6.7.8");
        let many = json!({"metadata": {"name": "e", "creationTimestamp": ago(300)},
            "subsets": [{"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}, {"ip": "9.8.7.6"}, {"ip": "6.6.6.6"}],
                         "ports": [{"port": 8001, "protocol": "TCP"}]}]});
        assert_eq!(
            row(&printers::ENDPOINTS, many),
            json!([
                "e",
                "1.2.3.4:8001,5.6.7.8:8001,9.8.7.6:8001 + 1 more...",
                "5m"
            ])
        );
        let v6 = json!({"metadata": {"name": "e"},
            "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(row(&printers::ENDPOINTS, v6)[1], "[fd00::1]:80");
    }
}
