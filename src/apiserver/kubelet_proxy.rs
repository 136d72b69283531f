//! The connect subresources that reach a node's kubelet: `pods/log`, `pods/exec`,
//! `pods/attach`, `pods/portforward` and `nodes/proxy`, as kube-apiserver proxies them
//! (the pod's node from `spec.nodeName`, the kubelet at the Node's InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, our kubelet client certificate, the
//! kubelet's serving certificate verified against the cluster CA).
//!
//! Invariant: upgrades are passed through untouched (the client and the kubelet negotiate
//! the subprotocol between themselves; we only copy bytes after both sides said 101), and
//! the caller's credentials never reach the kubelet.

use super::admission::{Attributes, Operation};
use super::auth::{self, UserInfo};
use super::pod_proxy;
use super::proxy::{self, Forwarded, ResponseHeaders};
use super::request::{ResourceRequest, Verb};
use super::response::Body;
use super::status::ApiError;
use super::{ApiState, RequestBody};
use crate::api::registry::Subresource;
use crate::kubelet::server::websocket;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How the API server talks to kubelets.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl KubeletClient {
    /// `ca_pem` verifies kubelets' serving certificates; the client certificate is the API
    /// server's `kube-apiserver-kubelet-client` (system:masters, as kubeadm issues it).
    pub fn new(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<KubeletClient, crate::pki::PkiError> {
        use crate::pki::{certs_from_pem, key_from_pem};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in certs_from_pem(ca_pem)? {
            roots.add(c)?;
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient { tls: Arc::new(cfg) })
    }

    /// One HTTP/1.1 connection (with upgrades) to the kubelet at `host:port`.
    async fn connect(&self, host: &str, port: u16) -> Result<SendRequest<RequestBody>, String> {
        proxy::dial(host, port, Some(&self.tls)).await
    }
}

impl KubeletClient {
    /// `GET path` on a kubelet, answered JSON (stats for metrics.k8s.io).
    pub async fn get_json(&self, host: &str, port: u16, path: &str) -> Result<Value, String> {
        let mut send = self.connect(host, port).await?;
        let req = Request::get(path)
            .header(http::header::HOST, format!("{host}:{port}"))
            .body(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
}

/// Whether this request is for a connect subresource served here.
pub fn handles(rr: &ResourceRequest) -> bool {
    match rr.subresource {
        Some(
            Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward,
        ) => rr.rt.group.is_empty() && rr.rt.plural == "pods",
        Some(Subresource::Proxy) => rr.rt.group.is_empty() && rr.rt.plural == "nodes",
        _ => false,
    }
}

/// The kubelet endpoint of `node`: InternalIP (else the first address) and its port.
pub fn kubelet_endpoint(node: &Value) -> Option<(String, u16)> {
    let addrs = node["status"]["addresses"].as_array()?;
    let host = addrs
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addrs.first())
        .and_then(|a| a["address"].as_str())?
        .to_owned();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0 && *p <= u16::MAX as u64)
        .map(|p| p as u16)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((host, port))
}

/// Every container name of the pod in upstream's order (init, regular, ephemeral).
fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod["spec"][k].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// The container a request names, or the only one (upstream's validateContainer).
pub fn pick_container(
    pod: &Value,
    name: &str,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    let all = container_names(pod);
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let regular = pod["spec"]["containers"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            match regular {
                1 => Ok(pod["spec"]["containers"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()),
                0 => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all.join(" ")
                ))),
            }
        }
    }
}

fn query_pairs(req: &Request<RequestBody>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Runs admission on a CONNECT of a pod's exec, attach or portforward, as upstream: the
/// object is the request's options (`PodExecOptions`, ...), which mutating plugins may
/// change and validating ones refuse. Returns the options as admitted.
async fn admit_connect(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    user: &UserInfo,
    ns: &str,
    name: &str,
    mut options: Value,
) -> Result<Value, ApiError> {
    let sub = rr.subresource.map(Subresource::name);
    let attrs = Attributes::new(Operation::Connect, &rr.rt, sub, Some(ns), name, user, false);
    state
        .admission
        .admit_request_object(state, &attrs, &mut options)
        .await?;
    Ok(options)
}

/// Serves a connect subresource (after the router's authorization of `rr.verb`).
pub async fn serve(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    req: Request<RequestBody>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let name = rr.name.clone().unwrap_or_default();
    let sub = rr.subresource.ok_or_else(ApiError::no_route)?;
    // Upstream (AuthorizePodWebsocketUpgradeCreatePermission, on in 1.35): a GET that
    // upgrades exec/attach/portforward also needs `create`.
    if matches!(
        sub,
        Subresource::Exec | Subresource::Attach | Subresource::PortForward
    ) && rr.verb == Verb::Get
    {
        let attrs = auth::Attributes {
            verb: "create",
            group: "",
            resource: "pods",
            subresource: Some(sub.name()),
            namespace: rr.namespace.as_deref(),
            name: Some(&name),
            field_selector: None,
        };
        if let auth::Decision::Deny(reason) = state.authorizer().authorize(user, &attrs) {
            return Err(ApiError::forbidden_resource(
                "",
                "pods",
                &name,
                &auth::forbidden_message(user, &attrs, &reason),
            ));
        }
    }
    let client = state
        .kubelet_client()
        .ok_or_else(|| ApiError::internal("no kubelet client configured"))?;
    let pairs = query_pairs(&req);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    // The Node, when the proxy's `name:port` form already had to read it.
    let mut read_node = None;
    let (node_name, path, query) = if sub == Subresource::Proxy {
        // `name`, `name:port` or `scheme:name:port`; a port other than the kubelet's is
        // proxied to the node's address as a plain backend (upstream's node
        // ResourceLocation).
        let (scheme, node_name, port) = pod_proxy::split_scheme_name_port(&name)
            .ok_or_else(|| ApiError::bad_request(format!("invalid node request \"{name}\"")))?;
        if !port.is_empty() {
            let node = proxy::read_existing(state, "nodes", None, node_name).await?;
            let (host, kubelet_port) = kubelet_endpoint(&node)
                .ok_or_else(|| ApiError::internal(format!("node {node_name} has no address")))?;
            if port != kubelet_port.to_string() {
                let location = pod_proxy::Location {
                    https: scheme == "https",
                    port: pod_proxy::parse_port(port, &proxy::authority(&host, 0))?,
                    host,
                };
                return pod_proxy::serve_at(location, rr, req).await;
            }
            read_node = Some(node);
        }
        let suffix = proxy::path_after_proxy(req.uri().path(), "nodes", &name)
            .ok_or_else(ApiError::no_route)?;
        let suffix = if suffix.is_empty() { "/" } else { suffix };
        (
            node_name.to_owned(),
            suffix.to_owned(),
            req.uri().query().unwrap_or_default().to_owned(),
        )
    } else {
        let ns = rr.namespace.clone().unwrap_or_default();
        let pod = proxy::read_existing(state, "pods", Some(&ns), &name).await?;
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match sub {
            Subresource::Log => {
                let container = pick_container(&pod, &name, get("container"))?;
                if node.is_empty() {
                    // Upstream streams nothing for a pod without a node.
                    return Ok(super::response::bytes(200, "text/plain", Bytes::new()));
                }
                let keep: Vec<(String, String)> = pairs
                    .iter()
                    .filter(|(k, _)| {
                        matches!(
                            k.as_str(),
                            "follow"
                                | "previous"
                                | "timestamps"
                                | "sinceSeconds"
                                | "sinceTime"
                                | "tailLines"
                                | "limitBytes"
                        )
                    })
                    .cloned()
                    .collect();
                (
                    node,
                    format!("/containerLogs/{ns}/{name}/{container}"),
                    encode(&keep),
                )
            }
            Subresource::PortForward => {
                let ports: Vec<Value> = pairs
                    .iter()
                    .filter(|(k, _)| k == "ports")
                    .map(|(_, v)| {
                        v.parse::<u16>()
                            .map_or_else(|_| v.as_str().into(), Value::from)
                    })
                    .collect();
                let options = serde_json::json!({
                    "kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": ports,
                });
                let options = admit_connect(state, rr, user, &ns, &name, options).await?;
                if node.is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "pod {name} does not have a host assigned"
                    )));
                }
                let ports: Vec<(String, String)> = options["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            "port".to_owned(),
                            p.as_str().map_or_else(|| p.to_string(), str::to_owned),
                        )
                    })
                    .collect();
                (node, format!("/portForward/{ns}/{name}"), encode(&ports))
            }
            _ => {
                let on = |k: &str| {
                    get(k).is_some_and(|v| matches!(v, "1" | "true" | "True" | "TRUE" | "t" | "T"))
                };
                // The options object admission sees (PodExecOptions, PodAttachOptions), as
                // upstream decodes it from the query (false flags and an unnamed container
                // left out), before it looks at the pod's containers and node.
                let kind = if sub == Subresource::Exec {
                    "PodExecOptions"
                } else {
                    "PodAttachOptions"
                };
                let mut options = serde_json::json!({"kind": kind, "apiVersion": "v1"});
                for k in ["stdin", "stdout", "stderr", "tty"] {
                    if on(k) {
                        options[k] = Value::Bool(true);
                    }
                }
                if let Some(c) = get("container").filter(|c| !c.is_empty()) {
                    options["container"] = c.into();
                }
                if sub == Subresource::Exec {
                    let command: Vec<&str> = pairs
                        .iter()
                        .filter(|(k, _)| k == "command")
                        .map(|(_, v)| v.as_str())
                        .collect();
                    options["command"] = command.into();
                }
                // What a mutating webhook left is what is run.
                let options = admit_connect(state, rr, user, &ns, &name, options).await?;
                let mut q = Vec::new();
                for k in ["stdin", "stdout", "stderr", "tty"] {
                    if options[k] == true {
                        q.push((k.to_owned(), "1".to_owned()));
                    }
                }
                for part in options["command"].as_array().into_iter().flatten() {
                    q.push((
                        "command".to_owned(),
                        part.as_str().unwrap_or_default().to_owned(),
                    ));
                }
                let container = pick_container(&pod, &name, options["container"].as_str())?;
                if node.is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "pod {name} does not have a host assigned"
                    )));
                }
                (
                    node,
                    format!("/{}/{ns}/{name}/{container}", sub.name()),
                    encode(&q),
                )
            }
        }
    };
    let node = match read_node {
        Some(n) => n,
        None => proxy::read_existing(state, "nodes", None, &node_name).await?,
    };
    let (host, port) = kubelet_endpoint(&node)
        .ok_or_else(|| ApiError::internal(format!("node {node_name} has no address")))?;
    let uri = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let send = client
        .connect(&host, port)
        .await
        .map_err(|e| ApiError::internal(format!("error dialing backend: {e}")))?;
    // A WebSocket log stream is a plain GET to the kubelet that we frame ourselves, as
    // upstream's apiserver does (wsstream); every other upgrade goes through untouched.
    let ws_log = sub == Subresource::Log && websocket::is_upgrade(req.headers());
    let forwarded = proxy::forward(send, req, &uri, &proxy::authority(&host, port), !ws_log)
        .await
        .map_err(|e| ApiError::internal(format!("error trying to reach service: {e}")))?;
    let (mut req, resp) = match forwarded {
        Forwarded::Switched(r) => return Ok(r),
        Forwarded::Answered(req, resp) => (*req, resp),
    };
    let status = resp.status();
    if ws_log && status.is_success() {
        return Ok(websocket_log(&mut req, resp));
    }
    if sub == Subresource::Log && !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
        return Err(match status.as_u16() {
            400 => ApiError::bad_request(text),
            500 => ApiError::internal(text),
            404 => ApiError::new(404, "NotFound", text),
            403 => ApiError::forbidden(text),
            code => ApiError::new(code, "InternalError", text),
        });
    }
    Ok(proxy::stream_response(resp, ResponseHeaders::ContentOnly))
}

/// Answers a WebSocket log request with 101 and relays the kubelet's log body as messages:
/// binary for `binary.k8s.io` (or no subprotocol), base64 text for `base64.binary.k8s.io`,
/// then a close frame when the log ends.
fn websocket_log(
    req: &mut Request<RequestBody>,
    resp: Response<hyper::body::Incoming>,
) -> Response<Body> {
    const BASE64: &str = "base64.binary.k8s.io";
    let key = websocket::client_key(req.headers());
    let protocol = websocket::negotiate(
        &websocket::offered_protocols(req.headers()),
        &["binary.k8s.io", BASE64],
    );
    let base64 = protocol.as_deref() == Some(BASE64);
    let client = hyper::upgrade::on(req);
    tokio::spawn(async move {
        use base64::Engine as _;
        use tokio::io::AsyncWriteExt;
        let Ok(io) = client.await else {
            return;
        };
        let mut io = TokioIo::new(io);
        let mut body = resp.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let msg = if base64 {
                let text = base64::engine::general_purpose::STANDARD.encode(&data);
                websocket::encode_frame(websocket::OP_TEXT, text.as_bytes())
            } else {
                websocket::encode_frame(websocket::OP_BINARY, &data)
            };
            if io.write_all(&msg).await.is_err() {
                return;
            }
        }
        let _ = websocket::write_close(&mut io).await;
    });
    websocket::switching_protocols::<Body>(&key, protocol.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelet_endpoint_prefers_internal_ip_and_defaults_the_port() {
        let n = json!({"status": {"addresses": [
            {"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(kubelet_endpoint(&n), Some(("10.0.0.2".into(), 12345)));
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "h"}]}});
        assert_eq!(kubelet_endpoint(&n), Some(("h".into(), 10250)));
        assert_eq!(kubelet_endpoint(&json!({})), None);
    }

    #[test]
    fn container_choice_follows_upstream_messages() {
        let pod = json!({"spec": {"initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            pick_container(&pod, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        assert_eq!(
            pick_container(&pod, "p", Some("zz")).unwrap_err().message,
            "container zz is not valid for pod p"
        );
        assert_eq!(pick_container(&pod, "p", Some("init")).unwrap(), "init");
        let one = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&one, "p", None).unwrap(), "only");
    }
}
