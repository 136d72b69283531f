//! Shared by the benchmark examples: object builders, percentiles and a concurrent create
//! loop.
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::Client;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The pod spec of `bench.sh scale`'s Deployment: one small container that sleeps.
#[allow(dead_code)] // the API benchmarks build no pods
pub fn scale_pod_spec() -> serde_json::Value {
    serde_json::json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "main",
            "image": "busybox:1.36",
            "command": ["sleep", "3600"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }],
    })
}

pub fn configmap(name: String) -> ConfigMap {
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

/// Creates `objects` objects built by `make(i)` in `ns`, one task per client, all pulling
/// from one counter. Returns each create's latency in ms (sorted) and the elapsed seconds.
pub async fn create_many(
    clients: Vec<Client>,
    ns: &str,
    objects: usize,
    make: impl Fn(usize) -> ConfigMap + Send + Sync + 'static,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let next = next.clone();
        let make = make.clone();
        let api: Api<ConfigMap> = Api::namespaced(c, ns);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= objects {
                    break;
                }
                let t = Instant::now();
                api.create(&PostParams::default(), &make(i)).await?;
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
    Ok((lat, elapsed))
}
