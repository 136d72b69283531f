//! `skiff server`: wiring only. Prepares the data directory, PKI and tokens, opens the API
//! server, writes the admin kubeconfig, and runs the API server, informers, controllers and
//! the node agent as one supervised set: SIGTERM/SIGINT or the failure of any one of them
//! stops all (accepting stops, watches end cleanly, the store is closed last).

use crate::agent::{self, AgentConfig, ControlPlane};
use crate::apiserver::{self, ApiConfig, ApiState, StoreSettings, TokenAuthenticator, UserInfo};
use crate::authz;
use crate::cli::ServerArgs;
use crate::controllers::{self, ControllerManager};
use crate::informers::Informers;
use crate::pki::{self, JoinToken, KubeconfigSpec, ServerPki};
use anyhow::{Context, Result};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Subject alternative names of the serving certificate.
fn serving_sans(args: &ServerArgs, first_service_ip: &str) -> Vec<String> {
    let mut sans = vec![
        "kubernetes".to_string(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        first_service_ip.to_owned(),
    ];
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str() {
            sans.push(h.to_owned());
        }
    }
    for ip in host_ips() {
        sans.push(ip.to_string());
    }
    if !args.bind_address.is_unspecified() {
        sans.push(args.bind_address.to_string());
    }
    sans.extend(args.tls_san.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

/// The leader-election identity of this server: `<hostname>_<hash of its data dir>`, stable
/// across restarts (see `leader_election`'s module docs for why).
fn leader_identity(data_dir: &std::path::Path) -> String {
    use sha2::Digest;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "skiff".into());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("{host}_{}", hex::encode(&digest[..6]))
}

fn host_ips() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|sa| {
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .collect()
}

/// Reads a secret file, or creates it with `make` (mode 0600).
fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_owned();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let v = make();
    pki::write_file(path, format!("{v}\n").as_bytes(), 0o600)?;
    Ok(v)
}

/// How long the components get to stop after SIGTERM before they are abandoned.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

pub async fn run(args: ServerArgs) -> Result<()> {
    let started = Instant::now();
    // The compiled-in RBAC policy parses while the store opens.
    let policy = tokio::task::spawn_blocking(authz::bootstrap_policy::policy);
    let server_dir = args.data_dir.join("server");
    std::fs::create_dir_all(&server_dir)
        .with_context(|| format!("creating data directory {}", server_dir.display()))?;
    let services = apiserver::ServiceIpAllocator::new(&args.service_cidr)
        .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?;
    let pki = ServerPki::ensure(
        &server_dir.join("tls"),
        &serving_sans(&args, &services.first().to_string()),
    )
    .context("preparing certificates")?;

    let token_path = server_dir.join("token");
    // Join token: the flag wins (completed with the CA hash); otherwise the stored one, or a
    // new one. Agents will read it from the file.
    let join_token = match &args.token {
        Some(t) => {
            let parsed = pki::parse_join_token(t).context("--token")?;
            let full = JoinToken {
                ca_hash: Some(pki::ca_hash(&pki.ca.cert_pem)),
                ..parsed
            };
            pki::write_file(
                &token_path,
                format!("{}\n", full.render()).as_bytes(),
                0o600,
            )?;
            full
        }
        None => pki::parse_join_token(&read_or_create(&token_path, || {
            JoinToken::generate(&pki.ca.cert_pem).render()
        })?)
        .with_context(|| format!("reading {}", token_path.display()))?,
    };
    let sa_key = std::sync::Arc::new(
        pki::ServiceAccountKey::ensure(&server_dir.join("tls"))
            .context("preparing the service account signing key")?,
    );
    let admin_token = read_or_create(&server_dir.join("admin-token"), pki::random_secret)?;

    let mut store = StoreSettings::new(server_dir.join("db"));
    store.compaction_interval = Duration::from_secs(args.store_compaction_interval.max(1));
    store.compaction_keep_revisions = args.store_compaction_keep;
    let state = ApiState::open(ApiConfig {
        store,
        ca_pem: pki.ca.cert_pem.clone(),
        tokens: TokenAuthenticator::new(vec![
            (
                admin_token,
                UserInfo::new("system:admin", &["system:masters"]),
            ),
            // The server token joins nodes: it is a bootstrap identity in the join group,
            // so it may ask for node client certificates and nothing else.
            (join_token.bearer().to_owned(), server_token_identity()),
        ]),
        service_account_key: sa_key.clone(),
        service_cidr: args.service_cidr.clone(),
        max_requests_inflight: args.max_requests_inflight,
        advertise: std::net::SocketAddr::new(advertise_address(&args), args.https_listen_port),
        admission: {
            let mut chain = apiserver::admission::Chain::standard();
            chain.set_default_toleration_seconds(
                args.default_not_ready_toleration_seconds,
                args.default_unreachable_toleration_seconds,
            );
            chain
        },
    })
    .await
    .map_err(|e| anyhow::anyhow!("starting the API server: {e}"))?;
    // pods/log|exec|attach|portforward and nodes/proxy reach kubelets with this identity.
    let kubelet_client = pki
        .kubelet_client()
        .context("the kubelet client certificate")?;
    state.set_kubelet_client(std::sync::Arc::new(
        apiserver::kubelet_proxy::KubeletClient::new(
            &pki.ca.cert_pem,
            &kubelet_client.cert_pem,
            &kubelet_client.key_pem,
        )
        .context("the kubelet client TLS configuration")?,
    ));

    let addr = std::net::SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let tls = apiserver::server_tls_config(&pki).context("TLS configuration")?;

    let host = if args.bind_address.is_unspecified() || args.bind_address.is_loopback() {
        "127.0.0.1".to_owned()
    } else {
        match args.bind_address {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        }
    };
    let url = format!("https://{host}:{}", args.https_listen_port);
    pki::write_kubeconfig(
        &args.write_kubeconfig,
        &KubeconfigSpec {
            server_url: &url,
            ca_pem: &pki.ca.cert_pem,
            client_cert_pem: &pki.admin.cert_pem,
            client_key_pem: &pki.admin.key_pem,
        },
        args.write_kubeconfig_mode,
    )
    .with_context(|| format!("writing kubeconfig {}", args.write_kubeconfig.display()))?;

    // Every component runs in one set under one cancellation token.
    let shutdown = CancellationToken::new();
    let mut components = Components::default();
    // Before the HTTPS listener serves anyone but system:masters: the bootstrap policy is
    // reconciled and the RBAC caches have synced (kube-apiserver's rbac/bootstrap-roles hook
    // and its authorizer's informers). The in-process informers and policy writes act as
    // the privileged loopback identity, as upstream's loopback client does.
    let loopback = state.client(UserInfo::new(
        authz::LOOPBACK_USER,
        &[apiserver::MASTERS_GROUP, apiserver::AUTHENTICATED_GROUP],
    ));
    let t = Instant::now();
    let policy = policy
        .await
        .context("parsing the bootstrap RBAC policy")??;
    let parsed_ms = t.elapsed().as_millis() as u64;
    let outcome = authz::bootstrap_policy::reconcile(&loopback, &policy).await?;
    let reconciled_ms = t.elapsed().as_millis() as u64;
    let informers = Informers::new(loopback.clone(), shutdown.clone());
    let rbac = authz::Rbac::start(&informers, std::sync::Arc::new(policy)).await?;
    tracing::debug!(
        ?outcome,
        parsed_ms,
        reconciled_ms,
        synced_ms = t.elapsed().as_millis() as u64,
        "bootstrap RBAC policy reconciled; RBAC caches synced"
    );
    state.set_authorizer(rbac.authorizer.clone());
    components.spawn("rbac", rbac.run(shutdown.clone()));
    components.spawn(
        "apiserver",
        apiserver::serve(state.clone(), listener, tls, shutdown.clone()),
    );
    if !args.event_ttl.is_zero() {
        components.spawn(
            "event-ttl",
            apiserver::event_ttl::run(state.clone(), args.event_ttl, shutdown.clone()),
        );
    }
    let controller_client = state.client(UserInfo::new(
        apiserver::CONTROLLER_MANAGER_USER,
        &[apiserver::AUTHENTICATED_GROUP],
    ));
    let for_controllers = state.clone();
    let mut controllers = ControllerManager::new(controllers::Context {
        client: controller_client,
        informers: informers.clone(),
        clients: std::sync::Arc::new(move |name: &str| {
            for_controllers.client(authz::controller_identity(name))
        }),
        loopback,
        root_ca: pki.ca.cert_pem.as_str().into(),
        signing: Some(std::sync::Arc::new(controllers::Signing {
            ca: pki.ca.clone(),
            service_account_key: sa_key,
        })),
    });
    controllers
        .enable_node_ipam(&args.cluster_cidr)
        .map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?;
    controllers.enable_node_lifecycle(
        controllers::node_lifecycle::Settings {
            grace_period: args.node_monitor_grace_period,
            monitor_period: args.node_monitor_period,
        },
        controllers::podgc::Settings {
            terminated_threshold: args.terminated_pod_gc_threshold,
            orphan_quarantine: args.pod_gc_orphan_quarantine,
            ..Default::default()
        },
    );
    controllers.enable_local_path(args.data_dir.join("storage"));
    controllers.enable_horizontal_pod_autoscaler(std::time::Duration::from_secs(
        args.horizontal_pod_autoscaler_sync_period.max(1),
    ));
    // The scheduler and the controllers each act only while holding their Lease.
    let identity = leader_identity(&args.data_dir);
    let scheduler_client = state.client(UserInfo::new(
        apiserver::SCHEDULER_USER,
        &[apiserver::AUTHENTICATED_GROUP],
    ));
    let scheduler_election = crate::leader_election::LeaderElector::new(
        scheduler_client.clone(),
        "kube-scheduler",
        &identity,
    );
    let scheduler = crate::scheduler::Scheduler::new(scheduler_client, informers.clone());
    components.spawn(
        "scheduler",
        scheduler_election.run(shutdown.clone(), |stop| scheduler.run(stop)),
    );
    components.spawn("informers", informers.run());
    let kcm_election = crate::leader_election::LeaderElector::new(
        controllers.client(),
        "kube-controller-manager",
        &identity,
    );
    components.spawn(
        "controllers",
        kcm_election.run(shutdown.clone(), |stop| controllers.run(stop)),
    );
    if !args.disable_agent {
        let mut node = args.node.clone();
        // The server's own node masquerades what leaves the server's pod range.
        node.node_cluster_cidr = args.cluster_cidr.clone();
        let config = AgentConfig {
            agent_dir: args.data_dir.join("agent"),
            control_plane: ControlPlane::Local {
                state: state.clone(),
                ca: pki.ca.clone(),
            },
            node,
        };
        components.spawn("agent", agent::run(config, shutdown.clone()));
    }
    tracing::info!(
        %url,
        kubeconfig = %args.write_kubeconfig.display(),
        ms = started.elapsed().as_millis() as u64,
        "skiff server ready"
    );
    let failure = tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!("shutting down");
            None
        }
        failed = components.first_exit() => Some(failed),
    };
    shutdown.cancel();
    let stopped = components.stop_within(SHUTDOWN_DEADLINE).await;
    // Last: everything acknowledged is in the WAL already; this syncs sled and stops the
    // store's background tasks.
    let closed = state.close().await.context("closing the store");
    match (failure, stopped) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(())) => closed,
    }
}

/// Who the server token authenticates as (k3s's node-join credential, here a bootstrap
/// identity): `system:bootstrap:server` in `system:bootstrappers` and the join group.
pub fn server_token_identity() -> UserInfo {
    UserInfo::new(
        "system:bootstrap:server",
        &[
            "system:bootstrappers",
            authz::join_bindings::NODE_TOKEN_GROUP,
        ],
    )
}

/// The address other hosts and pods reach this server on: the bind address when it names
/// one, else the host's first global address, else loopback.
fn advertise_address(args: &ServerArgs) -> IpAddr {
    if !args.bind_address.is_unspecified() {
        return args.bind_address;
    }
    host_ips()
        .into_iter()
        .find(|ip| !ip.is_loopback() && ip.is_ipv4())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// The supervised set of a process's components: each is `run(..., shutdown)`; the first to
/// stop (with an error, or early without one) stops the process.
#[derive(Default)]
struct Components {
    set: tokio::task::JoinSet<(&'static str, Result<()>)>,
}

impl Components {
    fn spawn<E>(
        &mut self,
        name: &'static str,
        fut: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    ) where
        E: Into<anyhow::Error>,
    {
        self.set
            .spawn(async move { (name, fut.await.map_err(Into::into)) });
    }

    /// Waits for the first component to stop and says why that is a failure.
    async fn first_exit(&mut self) -> anyhow::Error {
        match self.set.join_next().await {
            Some(Ok((name, Err(e)))) => {
                tracing::error!(component = name, error = %format!("{e:#}"), "component failed; stopping");
                e.context(format!("{name} failed"))
            }
            Some(Ok((name, Ok(())))) => {
                tracing::error!(component = name, "component stopped unexpectedly; stopping");
                anyhow::anyhow!("{name} stopped unexpectedly")
            }
            Some(Err(e)) => anyhow::anyhow!("a component panicked: {e}"),
            None => anyhow::anyhow!("no components to run"),
        }
    }

    /// After cancellation: waits for every component, up to `deadline`; reports the first
    /// error, and abandons those still running at the deadline.
    async fn stop_within(mut self, deadline: Duration) -> Result<()> {
        let mut first_error = None;
        let drained = tokio::time::timeout(deadline, async {
            while let Some(done) = self.set.join_next().await {
                let err = match done {
                    Ok((_, Ok(()))) => None,
                    Ok((name, Err(e))) => Some(e.context(format!("{name} failed while stopping"))),
                    Err(e) => Some(anyhow::anyhow!("a component panicked: {e}")),
                };
                if let (Some(e), None) = (err, &first_error) {
                    first_error = Some(e);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.set.len(),
                "components did not stop within {deadline:?}; abandoning them"
            );
            self.set.abort_all();
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Resolves at the first SIGTERM or SIGINT.
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `skiff token`: prints the join token of a local server.
pub fn print_token(data_dir: &Path) -> Result<()> {
    let path = data_dir.join("server/token");
    let t = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (is the server initialised?)", path.display()))?;
    println!("{}", t.trim());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_failing_component_is_reported_and_the_others_are_stopped() {
        let shutdown = CancellationToken::new();
        let mut c = Components::default();
        let stopped_cleanly = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let shutdown = shutdown.clone();
            let flag = stopped_cleanly.clone();
            c.spawn("steady", async move {
                shutdown.cancelled().await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, anyhow::Error>(())
            });
        }
        c.spawn("broken", async {
            Err::<(), _>(anyhow::anyhow!("disk on fire"))
        });
        let err = c.first_exit().await;
        assert_eq!(format!("{err:#}"), "broken failed: disk on fire");
        shutdown.cancel();
        c.stop_within(Duration::from_secs(1)).await.unwrap();
        assert!(stopped_cleanly.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_component_that_returns_early_is_a_failure_and_stragglers_are_abandoned() {
        let mut c = Components::default();
        c.spawn("quitter", async { Ok::<_, anyhow::Error>(()) });
        c.spawn("stubborn", async {
            std::future::pending::<()>().await;
            Ok::<_, anyhow::Error>(())
        });
        let err = c.first_exit().await;
        assert_eq!(err.to_string(), "quitter stopped unexpectedly");
        let started = Instant::now();
        c.stop_within(Duration::from_millis(100)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
