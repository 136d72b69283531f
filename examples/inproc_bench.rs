//! `scripts/bench.sh api`: create latency through the in-process client (no TLS, no socket)
//! on a fresh store in a temporary directory, with the same load as `api_bench`'s HTTPS
//! creates, so the two p99 figures can be read side by side.
//!
//! Usage: inproc_bench DIR [OBJECTS] [CLIENTS]

mod common;

use common::{configmap, create_many, percentile};
use skiff::apiserver::{ApiConfig, ApiState, StoreSettings, TokenAuthenticator, UserInfo};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("usage: inproc_bench DIR [OBJECTS] [CLIENTS]"))?;
    let objects: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let state = ApiState::open(ApiConfig {
        store: StoreSettings::new(std::path::Path::new(&dir).join("db")),
        ca_pem: String::new(),
        tokens: TokenAuthenticator::new(vec![]),
        service_account_key: std::sync::Arc::new(skiff::pki::ServiceAccountKey::generate()?),
        service_cidr: "10.43.0.0/16".into(),
        max_requests_inflight: skiff::apiserver::DEFAULT_MAX_REQUESTS_INFLIGHT,
        advertise: "127.0.0.1:6443".parse()?,
        admission: skiff::apiserver::admission::Chain::standard(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("opening the API server state: {e}"))?;
    let cs = (0..clients)
        .map(|_| state.client(UserInfo::new("system:admin", &["system:masters"])))
        .collect();
    let (lat, elapsed) =
        create_many(cs, "default", objects, |i| configmap(format!("cm-{i:06}"))).await?;
    println!(
        "client_inproc_create_per_s {:.0} creates/s",
        objects as f64 / elapsed
    );
    println!(
        "client_inproc_create_p50_ms {:.2} ms",
        percentile(&lat, 0.50)
    );
    println!(
        "client_inproc_create_p99_ms {:.2} ms",
        percentile(&lat, 0.99)
    );
    state
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("closing the store: {e}"))?;
    Ok(())
}
