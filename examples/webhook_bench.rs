//! Latency a validating admission webhook adds to a create, for `scripts/bench.sh api`:
//! sequential ConfigMap creates against a running skiff server, first with no webhook
//! configuration, then with one no-op HTTPS webhook (a local server this program starts)
//! selecting them. Prints `name value unit` lines.
//!
//! Usage: webhook_bench KUBECONFIG [CREATES]

// `create_many` is for the concurrent benches.
#[allow(dead_code)]
mod common;

#[path = "../tests/common/webhook_server.rs"]
mod webhook_server;

use common::{configmap, percentile};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::time::Instant;

/// Sequential creates (one at a time, so each latency is one request's), in ms, sorted.
async fn creates(api: &Api<ConfigMap>, prefix: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let cm = configmap(format!("{prefix}-{i:05}"));
        let t = Instant::now();
        api.create(&PostParams::default(), &cm).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let kubeconfig = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "/etc/skiff/skiff.yaml".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let kc = Kubeconfig::read_from(&kubeconfig)?;
    let client =
        Client::try_from(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?)?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Warm-up, then the baseline with no webhook configuration.
    creates(&api, "wh-warm", 200).await?;
    let base = creates(&api, "wh-base", n).await?;

    let wh = webhook_server::WebhookServer::start();
    let cfg: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench-noop"},
        "webhooks": [{
            "name": "noop.bench.example.com",
            "clientConfig": {"url": wh.url("/allow"), "caBundle": wh.ca_bundle()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    }))?;
    let cfgs: Api<ValidatingWebhookConfiguration> = Api::all(client);
    cfgs.create(&PostParams::default(), &cfg).await?;
    creates(&api, "wh-warm2", 200).await?;
    let hooked = creates(&api, "wh-hook", n).await?;
    anyhow::ensure!(
        wh.requests("/allow").len() == n + 200,
        "the webhook saw {} of {} creates",
        wh.requests("/allow").len(),
        n + 200
    );

    // Leave the server as it was: the webhook goes away with this program.
    cfgs.delete("bench-noop", &Default::default()).await?;

    let (b50, b99) = (percentile(&base, 0.50), percentile(&base, 0.99));
    let (h50, h99) = (percentile(&hooked, 0.50), percentile(&hooked, 0.99));
    println!("webhook_none_create_p50_ms {b50:.3} ms");
    println!("webhook_none_create_p99_ms {b99:.3} ms");
    println!("webhook_noop_create_p50_ms {h50:.3} ms");
    println!("webhook_noop_create_p99_ms {h99:.3} ms");
    println!("webhook_added_p50_ms {:.3} ms", h50 - b50);
    println!("webhook_added_p99_ms {:.3} ms", h99 - b99);
    Ok(())
}
