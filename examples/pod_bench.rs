//! Load generator for `scripts/bench.sh pods`: creates PODS pods (image already present on
//! the node) as fast as CLIENTS concurrent clients can, watches them, and prints how long
//! each took from its create request to Running and to Ready (p50, p99), the rate at which
//! they became Running, and the time to delete them all. Pods are pinned to NODE with
//! `spec.nodeName` when one is given (no scheduler in the path), else scheduled.
//!
//! `pod_bench node-ready KUBECONFIG START_NS [NODE]` waits for the kubeconfig and a Ready
//! Node and prints the time since START_NS (a `date +%s%N` taken before the server was
//! started); with NODE, for that Node (an agent joining), printed as
//! `agent_start_to_node_ready_ms`.
//!
//! `POD_BENCH_TRACE=FILE` writes each pod's creation offset and start latency to FILE.
//! With `POD_BENCH_RATE=R` the pods are created at R per second instead (one every 1/R s,
//! each by its own request), in namespace `pod-bench-paced`, and every figure is printed
//! with a `paced_` prefix: the start latency of a pod that does not queue behind a burst.
//!
//! Usage: pod_bench KUBECONFIG IMAGE PODS CLIENTS [NODE]
//!        pod_bench node-ready KUBECONFIG START_NS [NODE]

// Only `percentile` is used here.
#[allow(dead_code)]
mod common;

use common::percentile;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pod(name: String, image: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some([("app".to_string(), "pod-bench".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_owned),
            termination_grace_period_seconds: Some(1),
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["sleep".into(), "3600".into()]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates pod `bench-I` and records when its request was sent.
#[derive(Clone)]
struct Creator {
    api: Api<Pod>,
    created: Arc<parking_lot::Mutex<HashMap<String, Instant>>>,
    image: String,
    node: Option<String>,
}

impl Creator {
    async fn create(&self, i: usize) -> anyhow::Result<()> {
        let name = format!("bench-{i}");
        let at = Instant::now();
        let pod = pod(name.clone(), &self.image, self.node.as_deref());
        self.api.create(&PostParams::default(), &pod).await?;
        self.created.lock().insert(name, at);
        Ok(())
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Polls until the kubeconfig exists and some Node is Ready; prints the time from
/// `start_ns` (Unix epoch nanoseconds) and the node's name.
async fn node_ready(kubeconfig: &str, start_ns: u128, only: Option<&str>) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        anyhow::ensure!(Instant::now() < deadline, "no kubeconfig within 30 s");
        if let Ok(kc) = Kubeconfig::read_from(kubeconfig) {
            let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
            break Client::try_from(cfg)?;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let nodes: Api<Node> = Api::all(client);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "no Ready node within 30 s");
        if let Ok(list) = nodes.list(&ListParams::default()).await {
            let ready = list.items.iter().find(|n| {
                only.is_none_or(|name| n.metadata.name.as_deref() == Some(name))
                    && n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            if let Some(n) = ready {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos();
                println!(
                    "{}start_to_node_ready_ms {:.0} ms",
                    if only.is_some() { "agent_" } else { "" },
                    now.saturating_sub(start_ns) as f64 / 1e6
                );
                println!("node_name {} -", n.metadata.name.as_deref().unwrap_or(""));
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("node-ready") {
        anyhow::ensure!(
            args.len() == 4 || args.len() == 5,
            "usage: pod_bench node-ready KUBECONFIG START_NS [NODE]"
        );
        return node_ready(&args[2], args[3].parse()?, args.get(4).map(String::as_str)).await;
    }
    anyhow::ensure!(
        args.len() >= 5,
        "usage: pod_bench KUBECONFIG IMAGE PODS CLIENTS [NODE]"
    );
    let (kubeconfig, image) = (&args[1], args[2].clone());
    let pods: usize = args[3].parse()?;
    let clients: usize = args[4].parse()?;
    let node = args.get(5).cloned();
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(cfg)?;
    let rate: Option<f64> = match std::env::var("POD_BENCH_RATE") {
        Ok(r) => Some(r.parse::<f64>()?).filter(|r| *r > 0.0),
        Err(_) => None,
    };
    let (namespace, prefix) = match rate {
        Some(_) => ("pod-bench-paced", "paced_"),
        None => ("pod-bench", ""),
    };

    let ns_api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    ns_api.create(&PostParams::default(), &ns).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // The service account's token must exist before pods that mount it are admitted.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Watch first, so no transition is missed; record when each pod was first seen
    // Running and Ready.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool, bool, Instant)>();
    let mut stream = api
        .watch(&WatchParams::default().labels("app=pod-bench"), "0")
        .await?
        .boxed();
    tokio::spawn(async move {
        while let Ok(Some(ev)) = stream.try_next().await {
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
                let name = p.metadata.name.clone().unwrap_or_default();
                let _ = tx.send((name, is_running(&p), is_ready(&p), Instant::now()));
            }
        }
    });

    let created: Arc<parking_lot::Mutex<HashMap<String, Instant>>> = Default::default();
    let start = Instant::now();
    let per_client = pods.div_ceil(clients);
    let mut tasks = Vec::new();
    let creator = Creator {
        api: api.clone(),
        created: created.clone(),
        image: image.clone(),
        node: node.clone(),
    };
    if let Some(rate) = rate {
        for i in 0..pods {
            let creator = creator.clone();
            let at =
                tokio::time::Instant::from_std(start) + Duration::from_secs_f64(i as f64 / rate);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                creator.create(i).await
            }));
        }
    }
    for c in (0..clients).filter(|_| rate.is_none()) {
        let creator = creator.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c * per_client)..((c + 1) * per_client).min(pods) {
                creator.create(i).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let created_s = start.elapsed().as_secs_f64();

    let mut running: HashMap<String, Instant> = HashMap::new();
    let mut ready: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while ready.len() < pods {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((name, r, rd, at))) = tokio::time::timeout(left, rx.recv()).await else {
            anyhow::bail!(
                "only {} of {pods} pods Ready within 300 s ({} Running)",
                ready.len(),
                running.len()
            );
        };
        if r {
            running.entry(name.clone()).or_insert(at);
        }
        if rd {
            running.entry(name.clone()).or_insert(at);
            ready.entry(name).or_insert(at);
        }
    }
    let all_running_s = running
        .values()
        .max()
        .map(|t| t.duration_since(start).as_secs_f64())
        .unwrap_or_default();
    let created = created.lock().clone();
    let latencies = |seen: &HashMap<String, Instant>| {
        let mut v: Vec<f64> = seen
            .iter()
            .filter_map(|(n, t)| {
                created
                    .get(n)
                    .map(|c| t.saturating_duration_since(*c).as_secs_f64() * 1000.0)
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    // POD_BENCH_TRACE=FILE: one line per pod, in creation order: ms since the first
    // creation, ms to Running, name (to see whether slow starts cluster in time).
    if let Ok(path) = std::env::var("POD_BENCH_TRACE") {
        let mut rows: Vec<(f64, f64, &String)> = created
            .iter()
            .filter_map(|(n, c)| {
                let r = running.get(n)?;
                Some((
                    c.duration_since(start).as_secs_f64() * 1000.0,
                    r.saturating_duration_since(*c).as_secs_f64() * 1000.0,
                    n,
                ))
            })
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let text: String = rows
            .iter()
            .map(|(at, ms, n)| format!("{at:.1} {ms:.1} {n}\n"))
            .collect();
        std::fs::write(path, text)?;
    }
    let to_running = latencies(&running);
    let to_ready = latencies(&ready);
    println!(
        "{prefix}pods_created_per_s {:.0} pods/s",
        pods as f64 / created_s
    );
    println!(
        "{prefix}pod_create_to_running_p50_ms {:.1} ms",
        percentile(&to_running, 0.5)
    );
    println!(
        "{prefix}pod_create_to_running_p99_ms {:.1} ms",
        percentile(&to_running, 0.99)
    );
    println!(
        "{prefix}pod_create_to_ready_p50_ms {:.1} ms",
        percentile(&to_ready, 0.5)
    );
    println!(
        "{prefix}pod_create_to_ready_p99_ms {:.1} ms",
        percentile(&to_ready, 0.99)
    );
    println!(
        "{prefix}pods_running_per_s {:.1} pods/s",
        pods as f64 / all_running_s.max(1e-9)
    );
    println!("{prefix}pods_all_running_s {all_running_s:.2} s");
    // Hold for the caller to read the server's RSS with every pod running.
    if std::env::var_os("POD_BENCH_PAUSE_FILE").is_some() {
        let f = std::env::var("POD_BENCH_PAUSE_FILE")?;
        std::fs::write(&f, "running\n")?;
        while std::path::Path::new(&f).exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let t = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = api.list(&ListParams::default()).await?.items.len();
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} pods still present 120 s after the delete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{prefix}pods_all_deleted_s {:.2} s",
        t.elapsed().as_secs_f64()
    );
    ns_api.delete(namespace, &DeleteParams::default()).await?;
    Ok(())
}
