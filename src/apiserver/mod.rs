//! The Kubernetes API server: HTTPS (h2 + http/1.1) on hyper and rustls, authentication,
//! routing, and the REST, watch, discovery and OpenAPI handlers.
//!
//! Invariant: this is the only module that touches the store; every component reads and
//! writes cluster state through these handlers.

pub mod admission;
mod auth;
pub mod authn;
mod body;
mod crd;
mod discovery;
pub mod event_ttl;
mod flow_control;
mod handlers;
mod html_links;
mod impersonation;
pub(crate) mod inprocess;
pub mod kubelet_proxy;
mod lifecycle;
mod listener;
mod metrics;
mod objects;
mod openapi;
mod pod_proxy;
mod proxy;
mod request;
mod response;
mod services;
mod status;
mod system_objects;
mod tls;
mod trim_managed_fields;
mod watch;

pub use crate::store::StoreConfig as StoreSettings;
pub use auth::{
    forbidden_message, Attributes as AuthzAttributes, Authorizer, Decision, MastersAuthorizer,
    SubjectRules, UserInfo, CONTROLLER_MANAGER_USER, MASTERS_GROUP, SCHEDULER_USER,
};
pub use authn::TokenAuthenticator;
pub use inprocess::InProcessService;
pub use services::ServiceIpAllocator;
pub use status::ApiError;

use crate::api::registry::Registry;
use crate::api::strategy::Storage;
use crate::store::Store;
use bytes::Bytes;
use http::{Request, Response};
use parking_lot::Mutex;
use request::{Output, Query, Route};
use response::Body;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Version reported by `/version`.
pub const KUBE_GIT_VERSION: &str = concat!("v1.35.0-skiff.", env!("CARGO_PKG_VERSION"));

/// Longest a client may take to send its request headers. hyper also counts an idle
/// keep-alive connection's wait for its next request against it, so this is upstream's idle
/// timeout (90 s, the keep-alive of Go's and hyper-util's client pools) rather than its 32 s
/// header timeout: at 10 s every HTTP/1.1 client (kube-rs: the agents, the simulated nodes)
/// paid a new TLS handshake after each quiet spell, and could lose a request sent on a
/// pooled connection the server was closing.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent watches one identity may hold open from one address.
const MAX_WATCHES_PER_CLIENT: usize = 256;

/// Shared state of the API server.
pub struct ApiState {
    pub(crate) store: Store,
    pub registry: Registry,
    /// Bearer-token authentication and the service-account signing key.
    pub authn: authn::Authenticator,
    /// Set late: the RBAC authorizer reads informer caches that need this server running
    /// ([`ApiState::set_authorizer`]); until then only `system:masters` and the in-process
    /// control plane are allowed.
    authorizer: parking_lot::RwLock<Arc<dyn Authorizer>>,
    /// The admission chain every write passes.
    pub admission: admission::Chain,
    pub ca_pem: String,
    pub services: ServiceIpAllocator,
    pub started: Instant,
    /// Address and port clients reach this server on (the `kubernetes` Endpoints).
    pub advertise: SocketAddr,
    watches: Mutex<HashMap<String, usize>>,
    /// Rendered OpenAPI documents, rebuilt when the served types change.
    openapi: openapi::Cache,
    /// Cancelled when the server shuts down: open watches end cleanly.
    closing: CancellationToken,
    /// Serializes the syncs of the custom groups' APIServices (CRD writes race otherwise).
    crd_api_services: tokio::sync::Mutex<()>,
    /// How `pods/log|exec|attach|portforward` and `nodes/proxy` reach kubelets; set by the
    /// server once its PKI is loaded ([`ApiState::set_kubelet_client`]).
    kubelet: parking_lot::RwLock<Option<Arc<kubelet_proxy::KubeletClient>>>,
    /// Kubelet summaries behind metrics.k8s.io, briefly cached.
    metrics_cache: metrics::Cache,
    /// Seats of the priority levels requests from the network run in.
    flow_control: flow_control::FlowControl,
}

/// Settings the API server is built from.
pub struct ApiConfig {
    pub store: StoreSettings,
    pub ca_pem: String,
    pub tokens: TokenAuthenticator,
    /// Signs and verifies service-account tokens.
    pub service_account_key: Arc<crate::pki::ServiceAccountKey>,
    pub service_cidr: String,
    pub advertise: SocketAddr,
    /// The admission plugins, in order ([`admission::Chain::standard`] for a server).
    pub admission: admission::Chain,
    /// Seats of the limited priority levels together ([`flow_control`]).
    pub max_requests_inflight: usize,
}

/// `--max-requests-inflight` unless set.
pub const DEFAULT_MAX_REQUESTS_INFLIGHT: usize = 90;

impl ApiState {
    /// Opens the store, loads CRDs and allocated service IPs, and makes sure the built-in
    /// namespaces and the `kubernetes` Service and endpoints exist.
    pub async fn open(cfg: ApiConfig) -> Result<Arc<ApiState>, ApiError> {
        let services = ServiceIpAllocator::new(&cfg.service_cidr).map_err(ApiError::internal)?;
        let store = Store::open(cfg.store)
            .map_err(|e| ApiError::internal(format!("opening the store: {e}")))?;
        let state = Arc::new(ApiState {
            store,
            registry: Registry::new(),
            authn: authn::Authenticator::new(cfg.tokens, cfg.service_account_key),
            authorizer: parking_lot::RwLock::new(Arc::new(MastersAuthorizer)),
            admission: cfg.admission,
            ca_pem: cfg.ca_pem,
            services,
            started: Instant::now(),
            advertise: cfg.advertise,
            watches: Mutex::new(HashMap::new()),
            openapi: openapi::Cache::default(),
            closing: CancellationToken::new(),
            crd_api_services: tokio::sync::Mutex::new(()),
            kubelet: parking_lot::RwLock::new(None),
            metrics_cache: metrics::Cache::default(),
            flow_control: flow_control::FlowControl::new(cfg.max_requests_inflight),
        });
        crd::load_all(&state).await?;
        lifecycle::bootstrap(&state).await?;
        Ok(state)
    }

    /// The authorizer every request is checked by.
    pub fn authorizer(&self) -> Arc<dyn Authorizer> {
        self.authorizer.read().clone()
    }

    /// Replaces the authorizer (the server sets RBAC once its caches have synced).
    pub fn set_kubelet_client(&self, client: Arc<kubelet_proxy::KubeletClient>) {
        *self.kubelet.write() = Some(client);
    }

    pub fn kubelet_client(&self) -> Option<Arc<kubelet_proxy::KubeletClient>> {
        self.kubelet.read().clone()
    }

    pub fn set_authorizer(&self, authorizer: Arc<dyn Authorizer>) {
        *self.authorizer.write() = authorizer;
    }

    /// Ends open watches and closes the store (syncs it and stops its background work).
    /// Call after the HTTPS server and every in-process client have stopped.
    pub async fn close(&self) -> Result<(), ApiError> {
        self.closing.cancel();
        self.store.close().await.map_err(ApiError::from)
    }

    /// Counts a watch against `client`; `None` (the in-process control plane, which holds a
    /// watch per resource type and so one per CRD) is not limited.
    fn watch_slot(self: &Arc<Self>, client: Option<String>) -> Result<WatchSlot, ApiError> {
        let Some(client) = client else {
            return Ok(WatchSlot {
                state: self.clone(),
                client: None,
            });
        };
        let mut w = self.watches.lock();
        let n = w.entry(client.clone()).or_default();
        if *n >= MAX_WATCHES_PER_CLIENT {
            return Err(ApiError::too_many_requests(format!(
                "too many open watches ({MAX_WATCHES_PER_CLIENT}) for this client"
            )));
        }
        *n += 1;
        Ok(WatchSlot {
            state: self.clone(),
            client: Some(client),
        })
    }
}

/// One open watch, counted against its remote client; released on drop.
pub struct WatchSlot {
    state: Arc<ApiState>,
    client: Option<String>,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let Some(client) = &self.client else {
            return;
        };
        let mut w = self.state.watches.lock();
        if let Some(n) = w.get_mut(client) {
            *n -= 1;
            if *n == 0 {
                w.remove(client);
            }
        }
    }
}

/// The body type every handler sees: any transport's body, boxed once at the edge so the
/// handlers are compiled once (HTTPS gives hyper's `Incoming`, the in-process client
/// kube's body).
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Who is on the other end of a connection.
#[derive(Clone)]
struct ConnInfo {
    /// The remote address; `None` for in-process callers.
    peer: Option<SocketAddr>,
    /// An identity the transport established: a verified client certificate, or the fixed
    /// identity of an in-process client. Bearer tokens are only consulted without one.
    cert_user: Option<UserInfo>,
}

impl ConnInfo {
    /// Key under which this caller's open watches are counted; in-process callers are not
    /// counted.
    fn client_key(&self, user: &UserInfo) -> Option<String> {
        self.peer.map(|peer| format!("{}@{}", user.name, peer.ip()))
    }
}

/// Serves one request from any transport.
async fn handle<B>(state: Arc<ApiState>, conn: Arc<ConnInfo>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    let req = req.map(|b| b.map_err(Into::into).boxed_unsync());
    // Only a server logging at debug pays for the request line (the path copied, the
    // polls timed): every request passes here.
    let mut logged = tracing::enabled!(tracing::Level::DEBUG).then(|| RequestLog::of(&req));
    // Errors are written in the type the client negotiated, as upstream's ErrorNegotiated.
    let accept = req.headers().get(http::header::ACCEPT).cloned();
    let queued_ns = std::sync::atomic::AtomicU64::new(0);
    let mut dispatched = std::pin::pin!(dispatch(&state, &conn, req, &queued_ns));
    let outcome = std::future::poll_fn(|cx| match logged.as_mut() {
        None => std::future::Future::poll(dispatched.as_mut(), cx),
        Some(log) => {
            let polled = Instant::now();
            let poll = std::future::Future::poll(dispatched.as_mut(), cx);
            log.busy += polled.elapsed();
            log.polls += 1;
            poll
        }
    })
    .await;
    let resp = match outcome {
        Ok(r) => r,
        Err(e) => {
            let accept = accept.as_ref().and_then(|v| v.to_str().ok());
            response::error_negotiated(&e, Output::status_in_protobuf(accept))
        }
    };
    if let Some(log) = logged {
        let queued =
            std::time::Duration::from_nanos(queued_ns.load(std::sync::atomic::Ordering::Relaxed));
        log.emit(resp.status().as_u16(), queued);
    }
    resp
}

/// One request's debug line: what was asked, how long it took, how much of that it waited
/// for a seat of its priority level (`queued_ms`, [`flow_control`]), and how much it spent
/// running its own code (`busy_ms`) over how many polls; the rest is waiting (for a lock,
/// the WAL, its body, or a turn on a worker thread).
struct RequestLog {
    started: Instant,
    method: http::Method,
    path: String,
    /// A watch's time is only that of its start.
    watch: bool,
    busy: std::time::Duration,
    polls: u32,
}

impl RequestLog {
    fn of<B>(req: &Request<B>) -> RequestLog {
        RequestLog {
            started: Instant::now(),
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            watch: req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "watch=1" || kv == "watch=true")),
            busy: std::time::Duration::ZERO,
            polls: 0,
        }
    }

    fn emit(self, status: u16, queued: std::time::Duration) {
        let RequestLog {
            started,
            method,
            path,
            watch,
            busy,
            polls,
        } = self;
        tracing::debug!(
            %method, %path, watch, status,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            queued_ms = queued.as_secs_f64() * 1000.0,
            busy_ms = busy.as_secs_f64() * 1000.0, polls, "request"
        );
    }
}

async fn dispatch(
    state: &Arc<ApiState>,
    conn: &ConnInfo,
    req: Request<RequestBody>,
    queued_ns: &std::sync::atomic::AtomicU64,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query())?;
    let route = request::route(&state.registry, req.method(), req.uri().path(), &query);
    // Health and the CA bundle are public; everything else needs an identity (401 first,
    // so unauthenticated clients learn nothing about which paths exist).
    if let Ok(Route::Health | Route::CaCerts) = &route {
        return Ok(match route? {
            Route::Health => response::text(200, "ok"),
            _ => response::bytes(200, "text/plain", Bytes::from(state.ca_pem.clone())),
        });
    }
    let mut user = authn::authenticate(
        state,
        conn.cert_user.as_ref(),
        req.headers().get(http::header::AUTHORIZATION),
    )
    .await?;
    // Upstream adds this group to every authenticated user (RBAC's system:discovery and
    // system:basic-user bindings name it).
    if user.name != "system:anonymous" && !user.in_group(AUTHENTICATED_GROUP) {
        user.groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    let authorizer = state.authorizer();
    if impersonation::requested(req.headers()) {
        user = impersonation::impersonate(&*authorizer, &user, req.headers())?;
    }
    let route = route?;
    let anonymous = authn::is_anonymous(&user);
    if anonymous && !matches!(route, Route::Resource(_)) {
        // Anonymous requests for non-resource paths pass the authorizer (upstream grants
        // discovery and /version through system:public-info-viewer and system:discovery).
        // Denied, they get today's 401 until the authorizer knows those roles.
        let path = req.uri().path();
        if let auth::Decision::Deny(_) = authorizer.authorize_non_resource(&user, "get", path) {
            return Err(ApiError::unauthorized());
        }
    }
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !matches!(route, Route::Resource(_)) {
        let verb = req.method().as_str().to_ascii_lowercase();
        let path = req.uri().path();
        if let auth::Decision::Deny(reason) = authorizer.authorize_non_resource(&user, &verb, path)
        {
            return Err(ApiError::forbidden_path(&auth::forbidden_path_message(
                &user, &verb, path, &reason,
            )));
        }
    }
    match route {
        Route::Version => Ok(response::json(200, &discovery::version())),
        Route::Health | Route::CaCerts => Err(ApiError::no_route()),
        Route::CoreDiscovery => Ok(discovery::core(state, accept.as_deref())),
        Route::GroupsDiscovery => Ok(discovery::groups(state, accept.as_deref())),
        Route::GroupDiscovery(g) => discovery::group(state, &g),
        Route::ResourceList { group, version } => discovery::resource_list(state, &group, &version),
        Route::OpenApiV3Index => Ok(openapi::index(state)),
        Route::OpenApiV3Doc { group, version } => openapi::document(state, &group, &version),
        Route::OpenApiV2 => Ok(openapi::v2(state, req.headers())),
        // Upstream grants these to system:serviceaccounts (the issuer-discovery role); here
        // every authenticated user may read them until RBAC carries that role.
        Route::OpenIdConfiguration => Ok(handlers::openid::configuration(state)),
        Route::OpenIdJwks => Ok(handlers::openid::jwks(state)),
        Route::Resource(rr) => {
            // A proxied OPTIONS has no verb upstream: only a `*` rule allows it.
            let verb = if req.method() == http::Method::OPTIONS {
                ""
            } else {
                rr.verb.as_str()
            };
            // A list or watch narrowed to one name by `metadata.name=` is authorized as a
            // request for that name (upstream's RequestInfoFactory), so a kubelet may watch
            // its own Node.
            let selected_name = match (&rr.name, rr.verb) {
                (None, request::Verb::List | request::Verb::Watch) => query
                    .field_selector
                    .as_deref()
                    .and_then(|s| crate::api::selector::FieldSelector::parse(s).ok())
                    .and_then(|f| f.requires_exact_match("metadata.name").map(str::to_owned))
                    .filter(|n| {
                        !n.is_empty()
                            && crate::api::validation::strings::name_is_path_segment(n, false)
                                .is_empty()
                    }),
                _ => None,
            };
            let attrs = auth::Attributes {
                verb,
                group: &rr.rt.group,
                resource: &rr.rt.plural,
                subresource: rr.subresource.map(|s| s.name()),
                namespace: rr.namespace.as_deref(),
                name: rr.name.as_deref().or(selected_name.as_deref()),
                field_selector: query.field_selector.as_deref(),
            };
            if let auth::Decision::Deny(reason) = authorizer.authorize(&user, &attrs) {
                if authn::is_anonymous(&user) {
                    // Anonymous requests are answered 401 when refused, as with
                    // `--anonymous-auth=false` (k3s's default): they learn nothing more.
                    return Err(ApiError::unauthorized());
                }
                return Err(ApiError::forbidden_resource(
                    attrs.group,
                    attrs.resource,
                    attrs.name.unwrap_or_default(),
                    &auth::forbidden_message(&user, &attrs, &reason),
                ));
            }
            // A seat of the request's priority level, held until the answer is built.
            let level = flow_control::classify(conn.peer.is_none(), &user, &rr, query.watch);
            let _seat = state.flow_control.seat(level, queued_ns).await?;
            let output = Output::negotiate_for(accept.as_deref(), &rr)?;
            match rr.rt.strategy.storage {
                Storage::Stored => {}
                Storage::Review => {
                    let resp = if handlers::review_authz::handles(&rr) {
                        handlers::review_authz::review(state, &*authorizer, &rr, &user, req).await?
                    } else if rr.rt.plural == "tokenreviews" {
                        handlers::review_authn::token_review(state, &rr, req).await?
                    } else if rr.rt.plural == "selfsubjectreviews" {
                        handlers::review_authn::self_subject_review(&user, req).await?
                    } else {
                        handlers::review::create(state, &rr, &user, req).await?
                    };
                    return Ok(if output == Output::Protobuf {
                        response::to_protobuf(resp).await
                    } else {
                        resp
                    });
                }
                Storage::Live if rr.rt.group == "metrics.k8s.io" => {
                    return metrics::serve(state, &rr, &query).await
                }
                Storage::Live => return handlers::live::serve(state, &rr, &query, output),
            }
            let client = conn.client_key(&user);
            handlers::resource(state, rr, query, output, req, client, &user).await
        }
    }
}

/// The group upstream adds to every authenticated identity.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

pub use listener::serve;
pub use tls::server_tls_config;

#[cfg(test)]
mod fieldval_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
