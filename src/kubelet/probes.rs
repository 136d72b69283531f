//! Probes and lifecycle hooks: running one handler (exec, httpGet over HTTP or HTTPS,
//! tcpSocket, grpc, sleep) and the per-container probe loop (startup gates liveness and readiness; thresholds, period,
//! timeout and initial delay as upstream).
//!
//! Invariant: a probe loop only reports through [`ProbeSink`] (state + a wake-up of its
//! pod worker); it never touches the container itself, so the worker stays the only
//! actor that starts and kills containers.

use super::cri::Cri;
use super::status::ProbeState;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What a handler is, independent of whether it came from a probe or a hook.
#[derive(Debug, Clone)]
pub enum Handler {
    Exec(ExecAction),
    Http(HTTPGetAction),
    Tcp(TCPSocketAction),
    Sleep(i64),
    /// Port and service name of the gRPC health check.
    Grpc(i32, String),
}

pub fn probe_handler(p: &Probe) -> Option<Handler> {
    if let Some(e) = &p.exec {
        Some(Handler::Exec(e.clone()))
    } else if let Some(h) = &p.http_get {
        Some(Handler::Http(h.clone()))
    } else if let Some(t) = &p.tcp_socket {
        Some(Handler::Tcp(t.clone()))
    } else {
        p.grpc
            .as_ref()
            .map(|g| Handler::Grpc(g.port, g.service.clone().unwrap_or_default()))
    }
}

pub fn hook_handler(h: &k8s_openapi::api::core::v1::LifecycleHandler) -> Option<Handler> {
    if let Some(e) = &h.exec {
        Some(Handler::Exec(e.clone()))
    } else if let Some(g) = &h.http_get {
        Some(Handler::Http(g.clone()))
    } else if let Some(t) = &h.tcp_socket {
        Some(Handler::Tcp(t.clone()))
    } else {
        h.sleep.as_ref().map(|s| Handler::Sleep(s.seconds))
    }
}

/// Where the handler runs.
pub struct Target<'a> {
    pub cri: &'a dyn Cri,
    pub container_id: &'a str,
    pub pod_ip: Option<String>,
    /// Named ports of the container (`ports[].name` → containerPort).
    pub ports: &'a HashMap<String, i32>,
}

fn port(p: &IntOrString, ports: &HashMap<String, i32>) -> Result<u16, String> {
    match p {
        IntOrString::Int(i) => u16::try_from(*i).map_err(|_| format!("invalid port number: {i}")),
        IntOrString::String(s) => ports
            .get(s)
            .and_then(|p| u16::try_from(*p).ok())
            .ok_or_else(|| format!("couldn't find port: {s}")),
    }
}

/// Runs `h` once; `Err` carries the failure message upstream's events show.
pub async fn run(h: &Handler, t: &Target<'_>, timeout: Duration) -> Result<String, String> {
    match h {
        Handler::Exec(e) => {
            let cmd = e.command.clone().unwrap_or_default();
            match t.cri.exec_sync(t.container_id, cmd.clone(), timeout).await {
                Ok(o) if o.code == 0 => Ok(String::from_utf8_lossy(&o.output).into_owned()),
                Ok(o) => {
                    let out = String::from_utf8_lossy(&o.output).into_owned();
                    Err(if out.is_empty() {
                        format!("command {cmd:?} exited with {}", o.code)
                    } else {
                        out
                    })
                }
                Err(super::cri::CriError::Timeout(_)) => Err(format!(
                    "command timed out: \"{}\" timed out after {}",
                    cmd.join(" "),
                    super::backoff::go_duration(timeout)
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        Handler::Tcp(a) => {
            let host = a
                .host
                .clone()
                .or_else(|| t.pod_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".into());
            let p = port(&a.port, t.ports)?;
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), p)))
                .await
            {
                Ok(Ok(_)) => Ok(String::new()),
                Ok(Err(e)) => Err(format!("dial tcp {host}:{p}: connect: {e}")),
                Err(_) => Err(format!("dial tcp {host}:{p}: i/o timeout")),
            }
        }
        Handler::Http(a) => {
            let host = a
                .host
                .clone()
                .or_else(|| t.pod_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".into());
            let p = port(&a.port, t.ports)?;
            let path = a.path.clone().unwrap_or_else(|| "/".into());
            let scheme = if a.scheme.as_deref() == Some("HTTPS") {
                "https"
            } else {
                "http"
            };
            match tokio::time::timeout(timeout, http_get(scheme, &host, p, &path, a)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "Get \"{scheme}://{host}:{p}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                )),
            }
        }
        Handler::Sleep(s) => {
            tokio::time::sleep(Duration::from_secs((*s).max(0) as u64)).await;
            Ok(String::new())
        }
        Handler::Grpc(p, service) => {
            let host = t.pod_ip.clone().unwrap_or_else(|| "127.0.0.1".into());
            let p = u16::try_from(*p).map_err(|_| format!("invalid port number: {p}"))?;
            match tokio::time::timeout(timeout, grpc_health_check(&host, p, service)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "timeout: health rpc did not complete within {}",
                    super::backoff::go_duration(timeout)
                )),
            }
        }
    }
}

/// What a stream to probe is: plain TCP, or TLS over it (HTTPS probes).
trait ProbeIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> ProbeIo for T {}

/// Connects to `host:port`, with TLS for `https` (any certificate, as upstream's prober).
async fn dial(scheme: &str, host: &str, port: u16) -> Result<Box<dyn ProbeIo>, String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: connect: {e}"))?;
    if scheme != "https" {
        return Ok(Box::new(tcp));
    }
    let config = crate::pki::insecure_client_config().map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    Ok(Box::new(tls))
}

/// `grpc.health.v1.Health/Check` over HTTP/2 (plaintext, as upstream's gRPC probe):
/// healthy when the answer is SERVING.
async fn grpc_health_check(host: &str, port: u16, service: &str) -> Result<String, String> {
    let unreachable =
        |e: String| format!("timeout: failed to connect service \"{host}:{port}\" within 1s: {e}");
    let io = dial("http", host, port).await.map_err(unreachable)?;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{host}:{port}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.35")
        .body(http_body_util::Full::new(grpc_frame(
            &health_check_request(service),
        )))
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("rpc error: code = Unavailable desc = {e}"))?;
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("rpc error: code = Unavailable desc = {e}"))?;
    let trailers = body.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let code = field("grpc-status").unwrap_or_else(|| "2".into());
    if code != "0" {
        return Err(format!(
            "rpc error: code = {} desc = {}",
            grpc_code_name(&code),
            field("grpc-message").unwrap_or_default()
        ));
    }
    match serving_status(&body.to_bytes()) {
        1 => Ok(String::new()),
        s => Err(format!(
            "service unhealthy (responded with \"{}\")",
            match s {
                0 => "UNKNOWN",
                2 => "NOT_SERVING",
                3 => "SERVICE_UNKNOWN",
                _ => "UNKNOWN",
            }
        )),
    }
}

/// `HealthCheckRequest { service = 1 }` in protobuf.
fn health_check_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a);
        push_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A gRPC length-prefixed message (uncompressed).
fn grpc_frame(msg: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out.into()
}

/// The `status` (field 1, an enum) of a framed `HealthCheckResponse`; 0 (UNKNOWN) when
/// absent or unreadable.
fn serving_status(framed: &[u8]) -> u64 {
    let Some(msg) = framed.get(5..) else {
        return 0;
    };
    let mut i = 0;
    while i < msg.len() {
        let key = msg[i];
        i += 1;
        let mut v = 0u64;
        let mut shift = 0;
        while i < msg.len() {
            let b = msg[i];
            i += 1;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        match (key >> 3, key & 7) {
            (1, 0) => return v,
            // A length-delimited field we do not know: skip it.
            (_, 2) => i += v as usize,
            _ => {}
        }
    }
    0
}

fn grpc_code_name(code: &str) -> &'static str {
    match code {
        "1" => "Canceled",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "7" => "PermissionDenied",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}

async fn http_get(
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    a: &HTTPGetAction,
) -> Result<String, String> {
    let url = format!("{scheme}://{host}:{port}{path}");
    let stream = dial(scheme, host, port)
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path)
        .header("Host", format!("{host}:{port}"))
        .header("User-Agent", "kube-probe/1.35")
        .header("Accept", "*/*");
    for h in a.http_headers.iter().flatten() {
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let code = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body[..body.len().min(10 * 1024)]).into_owned();
    if (200..400).contains(&code.as_u16()) {
        Ok(body)
    } else {
        Err(format!(
            "HTTP probe failed with statuscode: {}",
            code.as_u16()
        ))
    }
}

/// Where probe loops report.
#[derive(Clone, Default)]
pub struct ProbeSink {
    pub states: Arc<Mutex<HashMap<String, ProbeState>>>,
    /// Containers whose liveness (or startup) probe failed: the worker restarts them.
    pub unhealthy: Arc<Mutex<HashMap<String, String>>>,
    pub wake: Arc<Notify>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// One container's probes.
pub struct Probes {
    pub startup: Option<Probe>,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
}

/// Reports a failed probe (the worker turns it into an `Unhealthy` event).
pub type OnFailure = Arc<dyn Fn(Kind, String) + Send + Sync>;

/// Runs until aborted: startup first (the container is not `started` until it passes),
/// then liveness and readiness side by side.
pub async fn run_probes(
    cri: Arc<dyn Cri>,
    id: String,
    pod_ip: Option<String>,
    ports: HashMap<String, i32>,
    p: Probes,
    sink: ProbeSink,
    on_failure: OnFailure,
) {
    let set = |f: &dyn Fn(&mut ProbeState)| {
        let mut g = sink.states.lock();
        let s = g.entry(id.clone()).or_default();
        let before = *s;
        f(s);
        if *s != before {
            sink.wake.notify_one();
        }
    };
    set(&|s| {
        s.started = p.startup.is_none();
        s.ready = p.readiness.is_none();
    });
    let target = || Target {
        cri: cri.as_ref(),
        container_id: &id,
        pod_ip: pod_ip.clone(),
        ports: &ports,
    };
    if let Some(sp) = &p.startup {
        let ok = probe_loop(sp, Kind::Startup, &target(), &on_failure, |_| true).await;
        if !ok {
            sink.unhealthy
                .lock()
                .insert(id.clone(), "failed startup probe".into());
            sink.wake.notify_one();
            return;
        }
        set(&|s| s.started = true);
    }
    let live = async {
        if let Some(lp) = &p.liveness {
            probe_loop(lp, Kind::Liveness, &target(), &on_failure, |_| true).await;
            sink.unhealthy
                .lock()
                .insert(id.clone(), "failed liveness probe".into());
            sink.wake.notify_one();
        }
    };
    let ready = async {
        if let Some(rp) = &p.readiness {
            probe_loop(rp, Kind::Readiness, &target(), &on_failure, |r| {
                set(&|s| s.ready = r);
                false
            })
            .await;
        }
    };
    tokio::join!(live, ready);
}

/// Probes every period. `on_result(success-threshold reached = true / failure-threshold
/// reached = false)` returns whether the loop ends there; the loop returns `false` when it
/// ends on failure (startup and liveness end on their first verdict).
async fn probe_loop(
    p: &Probe,
    kind: Kind,
    t: &Target<'_>,
    on_failure: &OnFailure,
    mut on_result: impl FnMut(bool) -> bool,
) -> bool {
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    let Some(h) = probe_handler(p) else {
        return true;
    };
    tokio::time::sleep(secs(p.initial_delay_seconds, 0)).await;
    let period = secs(p.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = secs(p.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = p.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
    let (mut ok_run, mut fail_run) = (0, 0);
    let mut last: Option<bool> = None;
    loop {
        let outcome = match t.cri.simulated_probe(t.container_id, kind) {
            Some(r) => r.map(|()| String::new()),
            None => run(&h, t, timeout).await,
        };
        match outcome {
            Ok(_) => {
                fail_run = 0;
                ok_run += 1;
                if ok_run >= success_threshold && last != Some(true) {
                    last = Some(true);
                    if kind != Kind::Liveness && on_result(true) {
                        return true;
                    }
                }
            }
            Err(msg) => {
                ok_run = 0;
                fail_run += 1;
                on_failure(kind, msg);
                if fail_run >= failure_threshold && last != Some(false) {
                    last = Some(false);
                    if kind != Kind::Readiness || on_result(false) {
                        return false;
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Removes the state of containers that are gone.
pub fn forget(sink: &ProbeSink, keep: &HashSet<String>) {
    sink.states.lock().retain(|k, _| keep.contains(k));
    sink.unhealthy.lock().retain(|k, _| keep.contains(k));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::fake_cri::FakeCri;
    use hyper::body::Incoming;
    use hyper::service::service_fn;

    fn handler_of(probe: serde_json::Value) -> Handler {
        probe_handler(&serde_json::from_value(probe).unwrap()).unwrap()
    }

    async fn probe(h: &Handler) -> Result<String, String> {
        let cri = FakeCri::new();
        let ports = HashMap::new();
        let t = Target {
            cri: &cri,
            container_id: "c",
            pod_ip: Some("127.0.0.1".into()),
            ports: &ports,
        };
        run(h, &t, Duration::from_secs(2)).await
    }

    /// An HTTPS server with a self-signed certificate: 200 on /healthz, 500 elsewhere.
    async fn https_server() -> u16 {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["pod.local".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(|req: http::Request<Incoming>| async move {
                        let code = if req.uri().path() == "/healthz" {
                            200
                        } else {
                            500
                        };
                        http::Response::builder()
                            .status(code)
                            .body(http_body_util::Full::new(bytes::Bytes::from("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn https_probes_speak_tls_and_accept_the_pods_own_certificate() {
        let port = https_server().await;
        let get = |path: &str, scheme: &str| {
            handler_of(
                serde_json::json!({"httpGet": {"path": path, "port": port, "scheme": scheme}}),
            )
        };
        assert_eq!(probe(&get("/healthz", "HTTPS")).await, Ok("ok".into()));
        assert_eq!(
            probe(&get("/broken", "HTTPS")).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        let plain = probe(&get("/healthz", "HTTP")).await;
        assert!(plain.is_err(), "plain HTTP to a TLS port: {plain:?}");
    }

    /// A gRPC health server answering `status` for every service but "missing", which it
    /// does not know (NOT_FOUND, as grpc-go's health server).
    async fn grpc_server(status: u8) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<Incoming>| async move {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let unknown = body.windows(7).any(|w| w == b"missing");
                        let mut trailers = http::HeaderMap::new();
                        let code = if unknown { "5" } else { "0" };
                        trailers.insert("grpc-status", code.parse().unwrap());
                        let data = if unknown {
                            bytes::Bytes::new()
                        } else {
                            grpc_frame(&[0x08, status])
                        };
                        let frames = futures::stream::iter(vec![
                            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(data)),
                            Ok(hyper::body::Frame::trailers(trailers)),
                        ]);
                        http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(http_body_util::StreamBody::new(frames))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_probes_call_the_health_service_and_need_serving() {
        let grpc = |port: u16, service: Option<&str>| {
            handler_of(serde_json::json!({"grpc": {"port": port, "service": service}}))
        };
        let serving = grpc_server(1).await;
        assert_eq!(probe(&grpc(serving, None)).await, Ok(String::new()));
        assert_eq!(
            probe(&grpc(serving, Some("missing"))).await,
            Err("rpc error: code = NotFound desc = ".into())
        );
        let not_serving = grpc_server(2).await;
        assert_eq!(
            probe(&grpc(not_serving, Some("db"))).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = probe(&grpc(port, None)).await.unwrap_err();
        assert!(
            refused.starts_with("timeout: failed to connect service"),
            "{refused}"
        );
    }

    #[test]
    fn health_requests_and_responses_are_protobuf_in_grpc_frames() {
        assert_eq!(health_check_request(""), Vec::<u8>::new());
        assert_eq!(health_check_request("db"), vec![0x0a, 2, b'd', b'b']);
        assert_eq!(&grpc_frame(&[0x08, 1])[..], &[0, 0, 0, 0, 2, 0x08, 1]);
        assert_eq!(serving_status(&grpc_frame(&[0x08, 1])), 1);
        assert_eq!(serving_status(&grpc_frame(&[])), 0);
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(serving_status(&grpc_frame(&[0x12, 1, 0xff, 0x08, 2])), 2);
    }
}
