//! `networking.k8s.io` and `discovery.k8s.io` printers: Ingress,
//! IngressClass, NetworkPolicy and EndpointSlice.
//!
//! Invariant: host and endpoint lists are cut after three entries with the
//! upstream "+ N more..." suffix.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{created, get, list_at, name, opt_int, opt_str, s, str_at};
use super::format::{format_label_selector, list_with_more};
use super::{col, no_conditions, Spec, AGE, NAME};

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    s(since(created(obj), now))
}

pub static INGRESS: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Class",
            "string",
            "IngressClass that implements this ingress.",
        ),
        col(
            "Hosts",
            "string",
            "Hosts that requests are matched against.",
        ),
        col(
            "Address",
            "string",
            "Addresses of the load balancer serving the ingress.",
        ),
        col(
            "Ports",
            "string",
            "Ports the ingress serves: 80, plus 443 when TLS is configured.",
        ),
        AGE,
    ],
    cells: ingress_cells,
    conditions: no_conditions,
    list: None,
};

fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

/// Sorted, deduplicated ingress IPs (or hostnames); the server renders the
/// wide form, so nothing is elided.
fn ingress_address(ing: &Value) -> String {
    let mut out: Vec<&str> = list_at(ing, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let host = str_at(i, &["hostname"]);
            [ip, host].into_iter().find(|v| !v.is_empty())
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out.join(",")
}

fn ingress_cells(ing: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports = if list_at(ing, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        s(name(ing)),
        s(opt_str(ing, &["spec", "ingressClassName"]).unwrap_or("<none>")),
        s(format_hosts(list_at(ing, &["spec", "rules"]))),
        s(ingress_address(ing)),
        s(ports),
        age(ing, now),
    ]
}

pub static INGRESS_CLASS: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Controller",
            "string",
            "Controller responsible for ingresses of this class.",
        ),
        col(
            "Parameters",
            "string",
            "Resource holding extra configuration for the controller.",
        ),
        AGE,
    ],
    cells: |ic, now| {
        let params = match get(ic, &["spec", "parameters"]).filter(|p| p.is_object()) {
            Some(p) => {
                let mut text = str_at(p, &["kind"]).to_string();
                if let Some(group) = opt_str(p, &["apiGroup"]) {
                    text = format!("{text}.{group}");
                }
                format!("{text}/{}", str_at(p, &["name"]))
            }
            None => "<none>".to_string(),
        };
        vec![
            s(name(ic)),
            s(str_at(ic, &["spec", "controller"])),
            s(params),
            age(ic, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static NETWORK_POLICY: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Pod-Selector",
            "string",
            "Pods the policy applies to; empty selects every pod in the namespace.",
        ),
        AGE,
    ],
    cells: |np, now| {
        vec![
            s(name(np)),
            s(format_label_selector(Some(
                get(np, &["spec", "podSelector"]).unwrap_or(&Value::Null),
            ))),
            age(np, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static ENDPOINT_SLICE: Spec = Spec {
    columns: &[
        NAME,
        col(
            "AddressType",
            "string",
            "Kind of addresses in the slice: IPv4, IPv6 or FQDN.",
        ),
        col(
            "Ports",
            "string",
            "Ports exposed by the endpoints, first three shown.",
        ),
        col(
            "Endpoints",
            "string",
            "Endpoint addresses in the slice, first three shown.",
        ),
        AGE,
    ],
    cells: |slice, now| {
        let ports: Vec<String> = list_at(slice, &["ports"])
            .iter()
            .map(|p| match opt_int(p, &["port"]) {
                Some(port) => port.to_string(),
                None => opt_str(p, &["name"]).unwrap_or("*").to_string(),
            })
            .collect();
        let addresses: Vec<String> = list_at(slice, &["endpoints"])
            .iter()
            .flat_map(|e| list_at(e, &["addresses"]))
            .map(|a| a.as_str().unwrap_or("").to_string())
            .collect();
        vec![
            s(name(slice)),
            s(str_at(slice, &["addressType"])),
            s(list_with_more(&ports)),
            s(list_with_more(&addresses)),
            age(slice, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static SERVICE_CIDR: Spec = Spec {
    columns: &[
        NAME,
        col(
            "CIDRs",
            "string",
            "IP ranges in CIDR notation the Service ClusterIPs come from.",
        ),
        AGE,
    ],
    cells: |sc, now| {
        let cidrs: Vec<&str> = list_at(sc, &["spec", "cidrs"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        vec![s(name(sc)), s(cidrs.join(",")), age(sc, now)]
    },
    conditions: no_conditions,
    list: None,
};

/// Upstream defines two columns (Name, ParentRef) for IPAddress; its third cell (the age)
/// has no column, so kubectl never shows it and neither is it sent here.
pub static IP_ADDRESS: Spec = Spec {
    columns: &[
        NAME,
        col(
            "ParentRef",
            "string",
            "Object the IP address is allocated to.",
        ),
    ],
    cells: |ip, _| {
        let parent = match get(ip, &["spec", "parentRef"]).filter(|v| !v.is_null()) {
            None => "<none>".to_owned(),
            Some(p) => {
                let group = p["group"].as_str().unwrap_or_default();
                let resource = p["resource"].as_str().unwrap_or_default();
                let mut out = if group.is_empty() {
                    resource.to_lowercase()
                } else {
                    format!("{resource}.{group}").to_lowercase()
                };
                if let Some(ns) = p["namespace"].as_str().filter(|n| !n.is_empty()) {
                    out.push('/');
                    out.push_str(ns);
                }
                out.push('/');
                out.push_str(p["name"].as_str().unwrap_or_default());
                out
            }
        };
        vec![s(name(ip)), s(parent)]
    },
    conditions: no_conditions,
    list: None,
};

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::{json, Value};

    #[test]
    fn ingress_shows_class_hosts_address_and_ports() {
        let ing = json!({"metadata": {"name": "test1", "creationTimestamp": ago(10 * 365 * 86400)},
            "spec": {"ingressClassName": "foo",
                     "defaultBackend": {"service": {"name": "default-backend", "port": {"number": 80}}}},
            "status": {"loadBalancer": {"ingress": [{"ip": "2.3.4.5", "hostname": "localhost.localdomain"}]}}});
        assert_eq!(
            Value::Array(cells(&printers::INGRESS, &ing)),
            json!(["test1", "foo", "*", "2.3.4.5", "80", "10y"])
        );
        let tls = json!({"metadata": {"name": "t"},
            "spec": {"tls": [{"hosts": ["a.example.com"]}],
                     "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {}, {"host": "c.example.com"}, {"host": "d.example.com"}]}});
        assert_eq!(
            Value::Array(cells(&printers::INGRESS, &tls)),
            json!([
                "t",
                "<none>",
                "a.example.com,b.example.com,c.example.com + 2 more...",
                "",
                "80, 443",
                "<unknown>"
            ])
        );
    }

    #[test]
    fn ingress_class_parameters_include_the_group() {
        let ic = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "example.com", "kind": "customgroup", "name": "example"}}});
        assert_eq!(
            Value::Array(cells(&printers::INGRESS_CLASS, &ic)),
            json!([
                "nginx",
                "k8s.io/ingress-nginx",
                "customgroup.example.com/example",
                "<unknown>"
            ])
        );
        let bare = json!({"metadata": {"name": "x"}, "spec": {"controller": "c"}});
        assert_eq!(cells(&printers::INGRESS_CLASS, &bare)[2], "<none>");
    }

    #[test]
    fn network_policy_shows_pod_selector() {
        let all = json!({"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}}});
        assert_eq!(
            Value::Array(cells(&printers::NETWORK_POLICY, &all)),
            json!(["deny-all", "<none>", "<unknown>"])
        );
        let web = json!({"metadata": {"name": "p"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(cells(&printers::NETWORK_POLICY, &web)[1], "app=web");
    }

    #[test]
    fn endpoint_slice_lists_ports_and_addresses() {
        let es = json!({"metadata": {"name": "web-abc12", "creationTimestamp": ago(300)},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "https", "port": 443},
                      {"name": "x", "port": 3000}, {"name": "y", "port": 3001}],
            "endpoints": [{"addresses": ["10.1.2.3", "10.1.2.4"]}, {"addresses": ["10.2.3.4", "10.2.3.5"]}]});
        assert_eq!(
            Value::Array(cells(&printers::ENDPOINT_SLICE, &es)),
            json!([
                "web-abc12",
                "IPv4",
                "80,443,3000 + 1 more...",
                "10.1.2.3,10.1.2.4,10.2.3.4 + 1 more...",
                "5m"
            ])
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv4", "ports": [{"name": "http"}, {}]});
        assert_eq!(cells(&printers::ENDPOINT_SLICE, &empty)[2], "http,*");
        assert_eq!(cells(&printers::ENDPOINT_SLICE, &empty)[3], "<unset>");
    }

    #[test]
    fn service_cidr_and_ip_address_rows() {
        let sc = serde_json::json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.43.0.0/16", "fd00::/108"]}});
        assert_eq!(
            Value::Array(cells(&printers::SERVICE_CIDR, &sc)),
            serde_json::json!(["kubernetes", "10.43.0.0/16,fd00::/108", "<unknown>"])
        );
        let ip = serde_json::json!({"metadata": {"name": "10.43.0.10"}, "spec": {"parentRef":
            {"group": "", "resource": "services", "namespace": "kube-system", "name": "dns"}}});
        assert_eq!(
            Value::Array(cells(&printers::IP_ADDRESS, &ip)),
            serde_json::json!(["10.43.0.10", "services/kube-system/dns"])
        );
    }
}
