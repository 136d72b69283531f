//! `pods/{name}/proxy[/path]` and `services/{name}/proxy[/path]`: HTTP (and upgrades)
//! proxied by the API server to a pod, or to one ready pod behind a Service, as
//! kube-apiserver's pod and service ProxyREST do. The name may carry a scheme and port:
//! `name`, `name:port`, `scheme:name:port` (scheme `http` or `https`).
//!
//! A pod is reached at its pod IP, so the API server must route to the pod network (it does
//! on its own node; across nodes that is the pod network's job). HTTPS backends are not
//! verified, as upstream's proxy transport does not verify them. Links in HTML pages and
//! redirects are led back through the proxy ([`LinkRewriter`]), as upstream's transport does.

use super::html_links::LinkRewriter;
use super::proxy::{self, Forwarded};
use super::request::ResourceRequest;
use super::response::Body;
use super::status::ApiError;
use super::{ApiState, RequestBody};
use crate::api::registry::Subresource;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// Whether this request is a pod or service proxy.
pub fn handles(rr: &ResourceRequest) -> bool {
    rr.subresource == Some(Subresource::Proxy)
        && rr.rt.group.is_empty()
        && matches!(rr.rt.plural.as_str(), "pods" | "services")
}

/// Where a proxied request goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Location {
    pub https: bool,
    pub host: String,
    /// None: the scheme's default port.
    pub port: Option<u16>,
}

/// Upstream's SplitSchemeNamePort: (scheme, name, port) of `name`, `name:port` or
/// `scheme:name:port`.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts[..] {
        [n] => ("", n, ""),
        [n, p] => ("", n, p),
        [s, n, p] => (s, n, p),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// Go's net.IP.IsGlobalUnicast: not unspecified, loopback, multicast, link-local or
/// broadcast (private ranges are global unicast).
fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

pub fn parse_port(port: &str, what: &str) -> Result<Option<u16>, ApiError> {
    if port.is_empty() {
        return Ok(None);
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::service_unavailable(format!(
                "error trying to reach service: dial tcp: address {what}: invalid port"
            ))
        })
}

/// upstream pod.ResourceLocation: the pod IP, and the port given or the first declared
/// container port.
fn pod_location(pod: &Value, scheme: &str, port: &str) -> Result<Location, ApiError> {
    let mut port = port.to_owned();
    if port.is_empty() {
        let first = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| c["ports"][0]["containerPort"].as_u64());
        if let Some(p) = first {
            port = p.to_string();
        }
    }
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
    match ip.parse::<IpAddr>() {
        Ok(addr) if is_global_unicast(addr) => {}
        _ => return Err(ApiError::bad_request("address not allowed")),
    }
    Ok(Location {
        https: scheme == "https",
        host: ip.to_owned(),
        port: parse_port(&port, &proxy::authority(ip, 0))?,
    })
}

/// upstream service ResourceLocation: a numeric port names the Service port it is; then a
/// random address of a random Endpoints subset serving that port name, that is really a pod
/// of this namespace with that IP.
fn service_location(
    service: Option<&Value>,
    endpoints: &Value,
    pods: &dyn Fn(&str) -> Option<Value>,
    namespace: &str,
    id: &str,
) -> Result<Location, ApiError> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid service request \"{id}\"")))?;
    let unavailable = ApiError::service_unavailable;
    let mut port_name = port.to_owned();
    if let Ok(number) = port.parse::<i64>() {
        let declared = service
            .and_then(|s| s["spec"]["ports"].as_array())
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(number));
        match declared {
            Some(p) => port_name = p["name"].as_str().unwrap_or_default().to_owned(),
            None => {
                return Err(unavailable(format!(
                    "no service port {number} found for service \"{name}\""
                )))
            }
        }
    }
    let subsets = endpoints["subsets"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if subsets.is_empty() {
        return Err(unavailable(format!(
            "no endpoints available for service \"{name}\""
        )));
    }
    let seed = rand::random_range(0..subsets.len());
    for i in 0..subsets.len() {
        let subset = &subsets[(seed + i) % subsets.len()];
        let addresses = subset["addresses"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        if addresses.is_empty() {
            continue;
        }
        for p in subset["ports"].as_array().into_iter().flatten() {
            if p["name"].as_str().unwrap_or_default() != port_name {
                continue;
            }
            let Some(target_port) = p["port"].as_u64().and_then(|n| u16::try_from(n).ok()) else {
                continue;
            };
            let start = rand::random_range(0..addresses.len());
            for t in 0..addresses.len() {
                let addr = &addresses[(start + t) % addresses.len()];
                let ip = addr["ip"].as_str().unwrap_or_default();
                if is_pod_address(addr, ip, namespace, pods) {
                    return Ok(Location {
                        https: scheme == "https",
                        host: ip.to_owned(),
                        port: Some(target_port),
                    });
                }
            }
        }
    }
    Err(unavailable(format!(
        "no endpoints available for service \"{id}\""
    )))
}

/// upstream isValidAddress: only addresses that are pods of the namespace with that IP.
fn is_pod_address(
    addr: &Value,
    ip: &str,
    namespace: &str,
    pods: &dyn Fn(&str) -> Option<Value>,
) -> bool {
    let target = &addr["targetRef"];
    if target.is_null() || target["namespace"].as_str().unwrap_or_default() != namespace {
        return false;
    }
    let Some(pod) = target["name"].as_str().and_then(pods) else {
        return false;
    };
    pod["status"]["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["ip"].as_str() == Some(ip))
}

fn insecure_tls() -> Result<&'static Arc<rustls::ClientConfig>, ApiError> {
    static TLS: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        crate::pki::insecure_client_config()
            .map(|mut c| {
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(c)
            })
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| ApiError::internal(format!("proxy TLS: {e}")))
}

/// Serves a pod or service proxy request (after the router's authorization).
pub async fn serve(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let id = rr.name.clone().unwrap_or_default();
    let namespace = rr.namespace.clone().unwrap_or_default();
    let is_pod = rr.rt.plural == "pods";
    let (scheme, name, port) = split_scheme_name_port(&id).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid {} request \"{id}\"",
            if is_pod { "pod" } else { "service" }
        ))
    })?;
    let location = if is_pod {
        let pod = proxy::read_existing(state, "pods", Some(&namespace), name).await?;
        pod_location(&pod, scheme, port)?
    } else {
        let service = proxy::read_existing(state, "services", Some(&namespace), name).await?;
        let endpoints = proxy::read_existing(state, "endpoints", Some(&namespace), name).await?;
        // The few pods the Endpoints name, read up front (the check needs no I/O then).
        let mut pods = std::collections::HashMap::new();
        for subset in endpoints["subsets"].as_array().into_iter().flatten() {
            for addr in subset["addresses"].as_array().into_iter().flatten() {
                if let Some(pod) = addr["targetRef"]["name"].as_str() {
                    if !pods.contains_key(pod) {
                        let found = proxy::read(state, "pods", Some(&namespace), pod).await?;
                        pods.insert(pod.to_owned(), found);
                    }
                }
            }
        }
        let lookup = |pod: &str| pods.get(pod).cloned().flatten();
        service_location(Some(&service), &endpoints, &lookup, &namespace, &id)?
    };
    serve_at(location, rr, req).await
}

/// Proxies the request's path after `/proxy` to `location` (a pod, a Service's pod, or a
/// node port other than the kubelet's).
pub async fn serve_at(
    location: Location,
    rr: &ResourceRequest,
    req: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let id = rr.name.clone().unwrap_or_default();
    let full = req.uri().path().to_owned();
    let suffix = proxy::path_after_proxy(&full, &rr.rt.plural, &id)
        .ok_or_else(ApiError::no_route)?
        .to_owned();
    let suffix_len = suffix.len();
    let query = req.uri().query().map(str::to_owned);
    if suffix.is_empty() && matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        // Upstream redirects the proxy root to its trailing-slash form (issue 4958).
        let target = match &query {
            Some(q) => format!("{full}/?{q}"),
            None => format!("{full}/"),
        };
        return Response::builder()
            .status(301)
            .header(http::header::LOCATION, target)
            .body(
                http_body_util::Empty::<bytes::Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let path = if suffix.is_empty() {
        "/".to_owned()
    } else {
        suffix
    };
    let uri = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let tls = if location.https {
        Some(insecure_tls()?)
    } else {
        None
    };
    let port = location
        .port
        .unwrap_or(if location.https { 443 } else { 80 });
    let reach =
        |e: String| ApiError::service_unavailable(format!("error trying to reach service: {e}"));
    let send = proxy::dial(&location.host, port, tls)
        .await
        .map_err(reach)?;
    let authority = proxy::authority(&location.host, port);
    let links = LinkRewriter {
        prefix: full[..full.len() - suffix_len].to_owned(),
        backend: authority.clone(),
        client_host: req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.to_string())),
    };
    match proxy::forward(send, req, &uri, &authority, true)
        .await
        .map_err(reach)?
    {
        Forwarded::Switched(r) => Ok(r),
        Forwarded::Answered(_, resp) => proxy::relay_with_links(resp, &links).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_split_as_upstream() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(
            split_scheme_name_port("web:8080"),
            Some(("", "web", "8080"))
        );
        assert_eq!(
            split_scheme_name_port("https:web:tls"),
            Some(("https", "web", "tls"))
        );
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn a_pod_is_reached_at_its_ip_on_the_first_declared_port() {
        let pod = json!({"spec": {"containers": [{"name": "a"},
            {"name": "b", "ports": [{"containerPort": 8080}, {"containerPort": 9090}]}]},
            "status": {"podIP": "10.42.0.7"}});
        assert_eq!(
            pod_location(&pod, "", "").unwrap(),
            Location {
                https: false,
                host: "10.42.0.7".into(),
                port: Some(8080)
            }
        );
        assert_eq!(pod_location(&pod, "https", "443").unwrap().port, Some(443));
        let no_ip = json!({"spec": {"containers": []}, "status": {}});
        assert_eq!(
            pod_location(&no_ip, "", "80").unwrap_err().message,
            "address not allowed"
        );
        let loopback = json!({"status": {"podIP": "127.0.0.1"}});
        assert_eq!(pod_location(&loopback, "", "").unwrap_err().code, 400);
        let no_port = json!({"spec": {"containers": [{"name": "a"}]},
            "status": {"podIP": "10.42.0.7"}});
        assert_eq!(pod_location(&no_port, "", "").unwrap().port, None);
    }

    #[test]
    fn a_service_picks_a_ready_pod_address_for_the_port() {
        let service = json!({"spec": {"ports": [{"name": "http", "port": 80},
            {"name": "metrics", "port": 9100}]}});
        let endpoints = json!({"subsets": [{
            "addresses": [
                {"ip": "10.42.0.9", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "gone"}},
                {"ip": "10.42.0.8", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "web-1"}},
                {"ip": "10.42.0.5"}],
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]}]});
        let pods = |name: &str| {
            (name == "web-1").then(|| json!({"status": {"podIPs": [{"ip": "10.42.0.8"}]}}))
        };
        for _ in 0..20 {
            let loc = service_location(Some(&service), &endpoints, &pods, "ns", "web:80").unwrap();
            assert_eq!((loc.host.as_str(), loc.port), ("10.42.0.8", Some(8080)));
        }
        let by_name =
            service_location(Some(&service), &endpoints, &pods, "ns", "web:metrics").unwrap();
        assert_eq!(by_name.port, Some(9100));
        let err = service_location(Some(&service), &endpoints, &pods, "ns", "web:81").unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (503, "no service port 81 found for service \"web\"")
        );
        let err = service_location(Some(&service), &json!({}), &pods, "ns", "web").unwrap_err();
        assert_eq!(err.message, "no endpoints available for service \"web\"");
        // An unnamed port never matches a named one, and other namespaces' pods never count.
        let err =
            service_location(Some(&service), &endpoints, &pods, "other", "web:80").unwrap_err();
        assert_eq!(err.message, "no endpoints available for service \"web:80\"");
    }
}
