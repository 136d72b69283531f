//! Load generator for `scripts/bench.sh api`: creates ConfigMaps with concurrent clients,
//! lists them, and measures watch delivery latency against a running skiff server.
//! Prints `name value unit` lines.
//!
//! Usage: api_bench KUBECONFIG [OBJECTS] [CLIENTS]

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn configmap(name: String) -> ConfigMap {
    let mut data = BTreeMap::new();
    data.insert("key".to_string(), "value-".repeat(8));
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            labels: Some([("bench".to_string(), "api".to_string())].into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

async fn client(kubeconfig: &str) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

async fn ensure_namespace(c: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(c.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let kubeconfig = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "/etc/skiff/skiff.yaml".into());
    let objects: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);

    let admin = client(&kubeconfig).await?;
    ensure_namespace(&admin, "bench").await?;
    ensure_namespace(&admin, "bench-watch").await?;

    // Creates: `clients` independent clients (own connections) pulling from one counter.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let c = client(&kubeconfig).await?;
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(c, "bench");
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= objects {
                    break;
                }
                let t = Instant::now();
                api.create(&PostParams::default(), &configmap(format!("cm-{i:06}")))
                    .await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::with_capacity(objects);
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!("api_create_per_s {:.0} creates/s", objects as f64 / elapsed);
    println!("api_create_p50_ms {:.2} ms", percentile(&lat, 0.50));
    println!("api_create_p99_ms {:.2} ms", percentile(&lat, 0.99));
    // Anchor: the upstream Kubernetes SLO for mutating API calls is p99 <= 1 s.
    println!(
        "api_create_p99_vs_upstream_slo_ratio {:.4} ratio",
        percentile(&lat, 0.99) / 1000.0
    );

    // List all of them (JSON, one request), best of 5 after one warm-up.
    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), "bench");
    let mut best = f64::MAX;
    let mut count = 0;
    for _ in 0..6 {
        let t = Instant::now();
        let list = api.list(&ListParams::default()).await?;
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        count = list.items.len();
    }
    anyhow::ensure!(
        count == objects,
        "list returned {count} of {objects} objects"
    );
    println!("api_list_10k_ms {best:.1} ms");

    // Watch latency: time from sending a create to receiving its ADDED event.
    let wapi: Api<ConfigMap> = Api::namespaced(admin.clone(), "bench-watch");
    let rv = wapi
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = wapi
        .watch(&WatchParams::default().timeout(290), &rv)
        .await?
        .boxed();
    let capi: Api<ConfigMap> = Api::namespaced(client(&kubeconfig).await?, "bench-watch");
    let mut wlat = Vec::new();
    for i in 0..1000 {
        let name = format!("w-{i:05}");
        let cm = configmap(name.clone());
        let pp = PostParams::default();
        let t = Instant::now();
        let create = capi.create(&pp, &cm);
        let wait = async {
            while let Some(ev) = stream.try_next().await? {
                if let WatchEvent::Added(cm) = ev {
                    if cm.metadata.name.as_deref() == Some(name.as_str()) {
                        return anyhow::Ok(t.elapsed());
                    }
                }
            }
            anyhow::bail!("watch ended")
        };
        let (created, seen) =
            tokio::join!(create, tokio::time::timeout(Duration::from_secs(10), wait));
        created?;
        wlat.push(seen??.as_secs_f64() * 1000.0);
    }
    wlat.sort_by(|a, b| a.total_cmp(b));
    println!("api_watch_p50_ms {:.2} ms", percentile(&wlat, 0.50));
    println!("api_watch_p99_ms {:.2} ms", percentile(&wlat, 0.99));
    Ok(())
}
