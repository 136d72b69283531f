//! Probes and lifecycle hooks: running one handler (exec, httpGet, tcpSocket, sleep) and
//! the per-container probe loop (startup gates liveness and readiness; thresholds, period,
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
    Grpc(i32),
}

pub fn probe_handler(p: &Probe) -> Option<Handler> {
    if let Some(e) = &p.exec {
        Some(Handler::Exec(e.clone()))
    } else if let Some(h) = &p.http_get {
        Some(Handler::Http(h.clone()))
    } else if let Some(t) = &p.tcp_socket {
        Some(Handler::Tcp(t.clone()))
    } else {
        p.grpc.as_ref().map(|g| Handler::Grpc(g.port))
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
            match tokio::time::timeout(timeout, http_get(&host, p, &path, a)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "Get \"http://{host}:{p}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                )),
            }
        }
        Handler::Sleep(s) => {
            tokio::time::sleep(Duration::from_secs((*s).max(0) as u64)).await;
            Ok(String::new())
        }
        Handler::Grpc(p) => {
            // The gRPC health protocol needs HTTP/2 framing of protobuf; a TCP connect is
            // the closest check until it lands.
            let host = t.pod_ip.clone().unwrap_or_else(|| "127.0.0.1".into());
            match tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((host.as_str(), *p as u16)),
            )
            .await
            {
                Ok(Ok(_)) => Ok(String::new()),
                _ => Err(format!(
                    "timeout: failed to connect service \"{host}:{p}\" within {}",
                    super::backoff::go_duration(timeout)
                )),
            }
        }
    }
}

async fn http_get(host: &str, port: u16, path: &str, a: &HTTPGetAction) -> Result<String, String> {
    let url = format!("http://{host}:{port}{path}");
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: connect: {e}"))?;
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
