//! Where a webhook named by `clientConfig.service` is reached: one ready endpoint of the
//! Service's port, read from its Endpoints, as upstream's endpoint resolver picks it
//! (kube-apiserver with `--enable-aggregator-routing`). skiff has no service proxy on the
//! server's host, so a Service's cluster IP would lead nowhere; its endpoints (pod
//! addresses, reachable from the node the pods run on) do. An ExternalName Service is
//! reached at its external name, as upstream's cluster-IP resolver does.
//!
//! The TLS server name stays `<service>.<namespace>.svc` (the client verifies the
//! webhook's certificate against it), and errors name that URL, as upstream's do.

use crate::apiserver::admission::support;
use crate::apiserver::ApiState;
use serde_json::Value;

/// The host and port to connect to for `port` of Service `namespace/name`, or why there
/// is none (upstream's texts: `service "x" not found`, `no endpoints available for service
/// "x"`, ...).
pub async fn resolve(
    state: &ApiState,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<(String, u16), String> {
    let get = |plural| support::get(state, "", plural, Some(namespace), name);
    let service = get("services")
        .await
        .map_err(|e| e.message)?
        .ok_or_else(|| format!("service {name:?} not found"))?;
    let endpoints = match service["spec"]["type"].as_str() {
        Some("ExternalName") => None,
        _ => Some(
            get("endpoints")
                .await
                .map_err(|e| e.message)?
                .ok_or_else(|| format!("endpoints {name:?} not found"))?,
        ),
    };
    let seed = rand::random::<u32>() as usize;
    pick(&service, endpoints.as_ref(), name, port, seed)
}

/// [`resolve`] on objects already read: the `seed`-th ready address (modulo their number)
/// of the first subset that serves the Service port's name.
pub fn pick(
    service: &Value,
    endpoints: Option<&Value>,
    name: &str,
    port: u16,
    seed: usize,
) -> Result<(String, u16), String> {
    let spec = &service["spec"];
    match spec["type"].as_str().unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        "ExternalName" => {
            let host = spec["externalName"].as_str().unwrap_or_default();
            return Ok((host.to_owned(), port));
        }
        other => return Err(format!("unsupported service type {other:?}")),
    }
    let service_port = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .ok_or_else(|| format!("no service port {port} found for service {name:?}"))?;
    let port_name = service_port["name"].as_str().unwrap_or_default();
    let subsets = endpoints
        .and_then(|e| e["subsets"].as_array())
        .into_iter()
        .flatten();
    for subset in subsets {
        let served = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let addresses: Vec<&str> = subset["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str())
            .collect();
        if let (Some(target_port), false) = (served, addresses.is_empty()) {
            let ip = addresses[seed % addresses.len()];
            return Ok((ip.to_owned(), target_port));
        }
    }
    Err(format!("no endpoints available for service {name:?}"))
}

/// `https://host:port/path`, bracketing an IPv6 address.
pub fn url(host: &str, port: u16, path: &str) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ports: Value) -> Value {
        json!({"spec": {"type": "ClusterIP", "clusterIP": "10.43.0.9", "ports": ports}})
    }

    #[test]
    fn a_ready_endpoint_of_the_named_port_is_picked() {
        let svc = service(json!([
            {"name": "metrics", "port": 9090, "targetPort": 9090},
            {"name": "https", "port": 443, "targetPort": "webhook"},
        ]));
        let eps = json!({"subsets": [
            {"addresses": [{"ip": "10.42.0.7"}], "ports": [{"name": "metrics", "port": 9090}]},
            {"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}],
             "notReadyAddresses": [{"ip": "10.42.0.8"}],
             "ports": [{"name": "https", "port": 8443}]},
        ]});
        assert_eq!(
            pick(&svc, Some(&eps), "hook", 443, 0),
            Ok(("10.42.0.5".into(), 8443))
        );
        assert_eq!(
            pick(&svc, Some(&eps), "hook", 443, 1),
            Ok(("10.42.0.6".into(), 8443))
        );
        // Not-ready addresses are never picked.
        for seed in 0..8 {
            assert_ne!(
                pick(&svc, Some(&eps), "hook", 443, seed).unwrap().0,
                "10.42.0.8"
            );
        }
    }

    #[test]
    fn missing_ports_and_endpoints_are_upstreams_errors() {
        let svc = service(json!([{"port": 443, "targetPort": 8443}]));
        assert_eq!(
            pick(&svc, None, "hook", 8443, 0),
            Err("no service port 8443 found for service \"hook\"".into())
        );
        let none_ready = json!({"subsets": [
            {"notReadyAddresses": [{"ip": "10.42.0.8"}], "ports": [{"port": 8443}]},
        ]});
        assert_eq!(
            pick(&svc, Some(&none_ready), "hook", 443, 0),
            Err("no endpoints available for service \"hook\"".into())
        );
        // An unnamed service port matches the unnamed endpoint port.
        let ready =
            json!({"subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 8443}]}]});
        assert_eq!(
            pick(&svc, Some(&ready), "hook", 443, 0),
            Ok(("10.42.0.5".into(), 8443))
        );
    }

    #[test]
    fn an_external_name_service_is_reached_by_its_name() {
        let svc = json!({"spec": {"type": "ExternalName", "externalName": "hooks.example.com"}});
        assert_eq!(
            pick(&svc, None, "hook", 443, 0),
            Ok(("hooks.example.com".into(), 443))
        );
        assert_eq!(url("fd00::5", 8443, "/x"), "https://[fd00::5]:8443/x");
    }
}
