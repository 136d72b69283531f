//! The remote agent's API clients: a bootstrap client (bearer token) for the join, and the
//! node client (`system:node:NAME` by client certificate) whose certificate can be
//! replaced while the agent runs ([`NodeClient::swap`]), so a renewal needs no restart and
//! every holder of the `kube::Client` keeps working.
//!
//! Invariant: both trust only the cluster CA the agent pinned by the token's hash.

use crate::pki::CertPair;
use base64::Engine as _;
use futures::future::BoxFuture;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use parking_lot::RwLock;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::retry::RetryLayer;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("building the API client: {0}")]
    Build(#[from] kube::Error),
}

fn config(url: &str, ca_pem: &str) -> Result<kube::Config, ClientError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ClientError::Url {
            url: url.to_owned(),
            why: e.to_string(),
        })?;
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(
        crate::pki::certs_from_pem(ca_pem)
            .map_err(|e| ClientError::Url {
                url: url.to_owned(),
                why: e.to_string(),
            })?
            .into_iter()
            .map(|c| c.to_vec())
            .collect(),
    );
    config.default_namespace = "default".into();
    Ok(config)
}

/// A client presenting a bearer token.
pub fn bearer_client(url: &str, ca_pem: &str, token: &str) -> Result<kube::Client, ClientError> {
    let mut config = config(url, ca_pem)?;
    config.auth_info.token = Some(token.to_owned().into());
    Ok(kube::Client::try_from(config)?)
}

/// A client presenting a client certificate, over HTTP/2 (see [`http2_client`]).
pub fn cert_client(url: &str, ca_pem: &str, pair: &CertPair) -> Result<kube::Client, ClientError> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut config = config(url, ca_pem)?;
    config.auth_info.client_certificate_data = Some(b64(&pair.cert_pem));
    config.auth_info.client_key_data = Some(b64(&pair.key_pem).into());
    http2_client(config)
}

/// How often an idle HTTP/2 connection is pinged, and how long a ping may go unanswered
/// before the connection counts as dead (its watches then end and are re-established).
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(15);

/// A node's client speaks HTTP/2, as a kubelet (client-go) does: every request and watch
/// of the node shares one multiplexed connection. kube's own client speaks HTTP/1.1 only,
/// one connection per concurrent request or open watch: ~30 per node, i.e. thousands of
/// TLS connections (and their buffers in the server) for a hundred nodes. Dead connections
/// are found by pings rather than read timeouts, which would cut quiet watches.
fn http2_client(config: kube::Config) -> Result<kube::Client, ClientError> {
    use kube::client::ConfigExt as _;
    let tls = config.rustls_client_config()?;
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .wrap_connector(tcp);
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(H2_PING_INTERVAL)
            .http2_keep_alive_timeout(H2_PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build(https);
    // The layers kube's default client puts in front: the server's base URI, and retries
    // of 429/503/504 with backoff.
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// The node's client whose certificate can be swapped.
#[derive(Clone)]
pub struct NodeClient {
    current: Arc<RwLock<kube::Client>>,
}

impl NodeClient {
    pub fn new(inner: kube::Client) -> NodeClient {
        NodeClient {
            current: Arc::new(RwLock::new(inner)),
        }
    }

    /// Later requests use `inner` (open watches finish on the old connection).
    pub fn swap(&self, inner: kube::Client) {
        *self.current.write() = inner;
    }

    /// A `kube::Client` that always sends through the current inner client.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }
}

impl tower::Service<http::Request<kube::client::Body>> for NodeClient {
    type Response = http::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, kube::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let client = self.current.read().clone();
        Box::pin(async move { client.send(req).await })
    }
}
