//! The kubelet API (HTTPS, :10250 by default): what the API server proxies `kubectl logs`,
//! `exec`, `attach`, `port-forward` and `top` to, plus `/healthz`.
//!
//! Every request is authenticated (a client certificate from the cluster CA, or a bearer
//! token through TokenReview) and authorized by SubjectAccessReview on `nodes/<sub>` of this
//! node, as upstream's kubelet with webhook authn/authz ([`auth`]). The handlers read the
//! runtime only: which pod a container belongs to comes from its labels ([`pods`]).
//!
//! Invariant: a request reaches a handler only after the API server allowed it; streaming
//! sessions (exec/attach/port-forward) run on their own tasks after the 101 answer, and the
//! serving certificate can be replaced at any time (each new connection uses the latest).

pub mod auth;
pub mod logs;
pub mod pods;
pub mod portforward;
pub mod remotecommand;
pub mod remotecommand_spdy;
pub mod spdy;
pub mod stats;
mod upgrade;
pub mod websocket;

use crate::runtime::containers::facade::Runtime;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Everything the kubelet API needs.
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub node_name: String,
    /// Serving TLS (see [`tls_config`]); a new value applies to new connections.
    pub tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    /// Talks to the API server for TokenReview / SubjectAccessReview (the node's identity).
    pub client: kube::Client,
    pub runtime: Arc<Runtime>,
    /// Root of the CRI pod logs (`kubelet::labels::DEFAULT_POD_LOG_DIR`).
    pub pod_log_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("kubelet API: binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("kubelet API TLS: {0}")]
    Tls(#[from] crate::pki::PkiError),
}

/// rustls config for the kubelet API: the serving certificate, and client certificates
/// verified against `client_ca_pem` when presented (bearer tokens need none).
pub fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, crate::pki::PkiError> {
    use crate::pki::{certs_from_pem, key_from_pem, PkiError};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(client_ca_pem)? {
        roots.add(c)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?;
    let chain = certs_from_pem(cert_pem)?;
    let key = key_from_pem(key_pem)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    // HTTP/1.1 only: every streaming protocol here is an HTTP/1.1 upgrade.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Follows a serving-certificate watch (the node identity's, renewed by CSR) as the TLS
/// watch [`ServerConfig::tls`] wants. `pems` extracts (cert, key) PEMs from a value; a value
/// that does not parse keeps the previous configuration (logged).
pub fn follow_serving_cert<T, F>(
    mut certs: watch::Receiver<T>,
    pems: F,
    client_ca_pem: String,
) -> Result<watch::Receiver<Arc<rustls::ServerConfig>>, crate::pki::PkiError>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> (String, String) + Send + 'static,
{
    let (cert, key) = pems(&certs.borrow_and_update());
    let (tx, rx) = watch::channel(tls_config(&cert, &key, &client_ca_pem)?);
    tokio::spawn(async move {
        while certs.changed().await.is_ok() {
            let (cert, key) = pems(&certs.borrow_and_update());
            match tls_config(&cert, &key, &client_ca_pem) {
                Ok(cfg) => {
                    if tx.send(cfg).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: new serving certificate refused")
                }
            }
        }
    });
    Ok(rx)
}

struct Shared {
    cfg: ServerConfig,
    authority: auth::Authority,
    stats: stats::StatsCollector,
}

/// Binds `cfg.listen` and serves until `shutdown`.
pub async fn serve(cfg: ServerConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
    serve_on(listener, cfg, shutdown).await;
    Ok(())
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve_on(listener: TcpListener, cfg: ServerConfig, shutdown: CancellationToken) {
    let authority = auth::Authority::new(cfg.client.clone(), cfg.node_name.clone());
    let shared = Arc::new(Shared {
        cfg,
        authority,
        stats: stats::StatsCollector::default(),
    });
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(shared.cfg.tls.borrow().clone());
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    _ => {
                        tracing::debug!(%peer, "kubelet API: TLS handshake failed");
                        return;
                    }
                };
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::pki::client_identity(c))
                .map(|(name, groups)| auth::User {
                    name,
                    uid: String::new(),
                    groups,
                });
            let cert_user = Arc::new(cert_user);
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let cert_user = cert_user.clone();
                async move {
                    Ok::<_, Infallible>(handle(&shared, cert_user.as_ref().as_ref(), req).await)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "kubelet API connection ended");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body.into()))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = text(status, v.to_string());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    shared: &Shared,
    cert_user: Option<&auth::User>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let user = match cert_user {
        Some(u) => u.clone(),
        None => {
            let token = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty());
            match token {
                Some(t) => match shared.authority.authenticate_token(t).await {
                    Ok(u) => u,
                    Err(_) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
                },
                None => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
            }
        }
    };
    let path = req.uri().path().to_owned();
    let attrs = auth::attributes(req.method(), &path);
    match shared.authority.authorize(&user, &attrs).await {
        Ok(true) => {}
        Ok(false) => return text(StatusCode::FORBIDDEN, auth::forbidden_text(&user, &attrs)),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    route(shared, req, &path).await
}

async fn route(shared: &Shared, req: Request<hyper::body::Incoming>, path: &str) -> Response<Body> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (&Method::GET, ["stats", "summary"]) => {
            let root = if shared.cfg.pod_log_dir.exists() {
                shared.cfg.pod_log_dir.clone()
            } else {
                PathBuf::from("/")
            };
            let v = shared
                .stats
                .summary(&shared.cfg.node_name, &shared.cfg.runtime, &root)
                .await;
            json(StatusCode::OK, &v)
        }
        (&Method::GET, ["metrics", "resource"]) => {
            let mut r = text(
                StatusCode::OK,
                shared.stats.resource_metrics(&shared.cfg.runtime).await,
            );
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(shared, ns, pod, container, req.uri().query()).await
        }
        (&Method::GET | &Method::POST, [kind @ ("exec" | "attach"), ns, pod, .., container])
            if (4..=5).contains(&segs.len()) =>
        {
            let (kind, ns, pod, container) = (
                kind.to_string(),
                ns.to_string(),
                pod.to_string(),
                container.to_string(),
            );
            upgrade::streaming(shared, req, &kind, &ns, &pod, &container).await
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod, ..])
            if (3..=4).contains(&segs.len()) =>
        {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            upgrade::port_forward(shared, req, &ns, &pod).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

async fn container_logs(
    shared: &Shared,
    ns: &str,
    pod: &str,
    container: &str,
    query: Option<&str>,
) -> Response<Body> {
    let opts = match logs::LogOptions::from_query(query, chrono::Utc::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let rt = &shared.cfg.runtime;
    let all = match pods::pod_instances(rt, ns, pod).await {
        Ok(a) => a,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if all.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" in namespace \"{ns}\" does not exist\n"),
        );
    }
    let mine: Vec<&pods::Instance> = all.iter().filter(|i| i.container == container).collect();
    let chosen = if opts.previous {
        match mine.len() {
            n if n >= 2 => mine[n - 2],
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                    ),
                )
            }
        }
    } else {
        match mine.last() {
            Some(i) => i,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"),
                )
            }
        }
    };
    let path = chosen.state.log_path.clone();
    let id = chosen.state.id.clone();
    let rt = rt.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let running = || {
            let rt = rt.clone();
            let id = id.clone();
            async move {
                rt.state(&id)
                    .await
                    .map(|s| s.status == crate::runtime::containers::Status::Running)
                    .unwrap_or(false)
            }
        };
        if let Err(e) = logs::stream(&path, &opts, running, tx).await {
            tracing::warn!(path = %path.display(), error = %e, "kubelet API: reading a log");
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}
