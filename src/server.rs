//! `skiff server`: wiring only. Prepares the data directory, PKI, tokens and store, starts
//! the API server, writes the admin kubeconfig, and shuts down cleanly on SIGTERM/SIGINT.

use crate::apiserver::{self, ApiConfig, ApiState, TokenAuthenticator, UserInfo};
use crate::cli::ServerArgs;
use crate::pki::{self, JoinToken, KubeconfigSpec, ServerPki};
use crate::store::{Store, StoreConfig};
use anyhow::{Context, Result};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

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

pub async fn run(args: ServerArgs) -> Result<()> {
    let started = Instant::now();
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
    match &args.token {
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
        }
        None => {
            read_or_create(&token_path, || {
                JoinToken::generate(&pki.ca.cert_pem).render()
            })?;
        }
    }
    let admin_token = read_or_create(&server_dir.join("admin-token"), pki::random_secret)?;

    let mut store_cfg = StoreConfig::new(server_dir.join("db"));
    store_cfg.compaction_interval = Duration::from_secs(args.store_compaction_interval.max(1));
    store_cfg.compaction_keep_revisions = args.store_compaction_keep;
    let store = Store::open(store_cfg).context("opening the store")?;
    let state = ApiState::new(ApiConfig {
        store: store.clone(),
        ca_pem: pki.ca.cert_pem.clone(),
        tokens: TokenAuthenticator::new(vec![(
            admin_token,
            UserInfo::new("system:admin", &["system:masters"]),
        )]),
        service_cidr: args.service_cidr.clone(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("starting the API server: {e}"))?;

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

    if !args.disable_agent {
        tracing::warn!(
            "the kubelet is not part of this build yet; the agent only imports airgap images"
        );
        let agent_dir = args.data_dir.join("agent");
        // In the background: a large airgap bundle must not delay the API server.
        tokio::spawn(async move {
            if let Err(e) = crate::agent::import_airgap_images(&agent_dir).await {
                tracing::warn!(error = %e, "importing airgap images failed");
            }
        });
    }
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(apiserver::serve(state, listener, tls, shutdown_rx));
    tracing::info!(
        %url,
        kubeconfig = %args.write_kubeconfig.display(),
        ms = started.elapsed().as_millis() as u64,
        "skiff server ready"
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    store.close().await.context("closing the store")?;
    Ok(())
}

async fn wait_for_signal() {
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
