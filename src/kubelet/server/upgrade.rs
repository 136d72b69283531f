//! The upgrade handlers of the kubelet API: exec/attach (WebSocket channel protocols or
//! SPDY/3.1) and port-forward (SPDY, SPDY in WebSocket, channel WebSocket), answered 101
//! and then served on their own task.
//!
//! Invariant: the target (running container, pod network namespace) is resolved before the
//! 101 answer, so a client whose target is gone gets a plain HTTP error it can show.

use super::{pods, portforward, remotecommand, remotecommand_spdy, text, websocket, Body, Shared};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// The network namespace of a running container of the pod (they all share the pod's).
async fn pod_netns(shared: &Shared, ns: &str, pod: &str) -> Result<std::fs::File, Response<Body>> {
    let all = pods::pod_instances(&shared.cfg.runtime, ns, pod)
        .await
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let running = all
        .iter()
        .rev()
        .find(|i| i.running() && i.state.pid > 0)
        .ok_or_else(|| {
            text(
                StatusCode::NOT_FOUND,
                format!("pod \"{pod}\" in namespace \"{ns}\" has no running container"),
            )
        })?;
    std::fs::File::open(format!("/proc/{}/ns/net", running.state.pid)).map_err(|e| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("opening the network namespace of pod {pod}: {e}"),
        )
    })
}

/// `X-Stream-Protocol-Version` values the client offered (SPDY upgrades).
fn stream_protocols(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn spdy_switching(protocol: &str) -> Response<Body> {
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, "");
    r.headers_mut().remove(http::header::CONTENT_TYPE);
    let h = r.headers_mut();
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("SPDY/3.1"),
    );
    if let Ok(v) = http::HeaderValue::from_str(protocol) {
        h.insert("x-stream-protocol-version", v);
    }
    r
}

pub(super) async fn port_forward(
    shared: &Shared,
    mut req: Request<hyper::body::Incoming>,
    ns: &str,
    pod: &str,
) -> Response<Body> {
    let netns = match pod_netns(shared, ns, pod).await {
        Ok(f) => Arc::new(f),
        Err(r) => return r,
    };
    let pod_name = pod.to_owned();
    if websocket::is_upgrade(req.headers()) {
        let offered = websocket::offered_protocols(req.headers());
        if let Some(p) = websocket::negotiate(&offered, portforward::WS_CHANNEL_PROTOCOLS)
            .filter(|_| !offered.iter().any(|p| p == portforward::WS_TUNNEL_PROTOCOL))
        {
            let ports = match portforward::query_ports(req.uri().query()) {
                Ok(p) => p,
                Err(e) => return text(StatusCode::BAD_REQUEST, e),
            };
            let key = websocket::client_key(req.headers());
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(u) = upgrade.await {
                    portforward::serve_websocket_channels(TokioIo::new(u), netns, pod_name, ports)
                        .await;
                }
            });
            return websocket::switching_protocols(&key, Some(&p));
        }
        if !offered.iter().any(|p| p == portforward::WS_TUNNEL_PROTOCOL) {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{}\"]",
                    portforward::WS_TUNNEL_PROTOCOL
                ),
            );
        }
        let key = websocket::client_key(req.headers());
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(u) = upgrade.await {
                portforward::serve_websocket_tunnel(TokioIo::new(u), netns, pod_name).await;
            }
        });
        return websocket::switching_protocols(&key, Some(portforward::WS_TUNNEL_PROTOCOL));
    }
    if !websocket::header_has_token(req.headers(), http::header::UPGRADE, "SPDY/3.1") {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required");
    }
    let offered = stream_protocols(req.headers());
    if !offered.is_empty() && !offered.iter().any(|p| p == portforward::PROTOCOL) {
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts [\"{}\"]",
                portforward::PROTOCOL
            ),
        );
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(u) = upgrade.await {
            portforward::serve_spdy(TokioIo::new(u), netns, pod_name).await;
        }
    });
    spdy_switching(portforward::PROTOCOL)
}

/// exec / attach: find the running container, then upgrade.
pub(super) async fn streaming(
    shared: &Shared,
    mut req: Request<hyper::body::Incoming>,
    kind: &str,
    ns: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let opts = remotecommand::StreamOptions::from_query(req.uri().query());
    if kind == "exec" && opts.command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    let rt = shared.cfg.runtime.clone();
    let inst = match pods::container_instances(&rt, ns, pod, container).await {
        Ok(mut v) => v.pop(),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(inst) = inst.filter(|i| i.running()) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("container not found (\"{container}\")"),
        );
    };
    if !websocket::is_upgrade(req.headers()) {
        if !websocket::header_has_token(req.headers(), http::header::UPGRADE, "SPDY/3.1") {
            return text(StatusCode::BAD_REQUEST, "Upgrade request required");
        }
        let offered = stream_protocols(req.headers());
        let protocol = if offered.is_empty() {
            remotecommand::V1.to_owned()
        } else {
            match websocket::negotiate(&offered, remotecommand_spdy::PROTOCOLS) {
                Some(p) => p,
                None => {
                    return text(
                        StatusCode::FORBIDDEN,
                        format!(
                            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {:?}",
                            remotecommand_spdy::PROTOCOLS
                        ),
                    )
                }
            }
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let id = inst.state.id.clone();
        let kind = kind.to_owned();
        let chosen = protocol.clone();
        tokio::spawn(async move {
            let Ok(u) = upgrade.await else { return };
            let o = opts.clone();
            remotecommand_spdy::serve(
                TokioIo::new(u),
                &chosen,
                &opts,
                move |input, out| async move {
                    if kind == "exec" {
                        remotecommand::exec(rt, id, o, input, out).await
                    } else {
                        remotecommand::attach(rt, id, o, input, out).await
                    }
                },
            )
            .await;
        });
        return spdy_switching(&protocol);
    }
    let offered = websocket::offered_protocols(req.headers());
    let protocol = if offered.is_empty() {
        // Upstream's wsstream treats no subprotocol as channel.k8s.io.
        remotecommand::V1.to_owned()
    } else {
        match websocket::negotiate(&offered, remotecommand::WS_PROTOCOLS) {
            Some(p) => p,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {:?}",
                        remotecommand::WS_PROTOCOLS
                    ),
                )
            }
        }
    };
    let key = websocket::client_key(req.headers());
    let upgrade = hyper::upgrade::on(&mut req);
    let id = inst.state.id.clone();
    let kind = kind.to_owned();
    let chosen = protocol.clone();
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "kubelet API: upgrade failed");
                return;
            }
        };
        let o = opts.clone();
        remotecommand::serve_websocket(io, &chosen, &opts, move |input, out| async move {
            if kind == "exec" {
                remotecommand::exec(rt, id, o, input, out).await
            } else {
                remotecommand::attach(rt, id, o, input, out).await
            }
        })
        .await;
    });
    websocket::switching_protocols(&key, (!offered.is_empty()).then_some(protocol.as_str()))
}
