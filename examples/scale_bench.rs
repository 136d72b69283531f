//! Load generator for `scripts/bench.sh scale`: a Deployment of REPLICAS pods on NODES
//! simulated nodes (`skiff sim-nodes`), everything through the API as in a real cluster:
//! the ReplicaSet controller creates the pods, the scheduler binds them, the nodes' kubelets
//! (on the simulated runtime) report them Running and Ready.
//!
//! Prints how long the nodes took to be Ready, the scheduler's throughput through the API
//! (pods bound per second, from the first bind seen to the last; no more than the rate the
//! controller creates them, printed next to it), each pod's latency from its creation to
//! being bound and to Running (p50, p99, from one watch), the time until the Deployment
//! reports every replica available, the CPU the server (`SCALE_BENCH_SERVER_PID`) and the
//! simulated nodes spent per pod meanwhile, how evenly the pods were spread, the time a
//! rolling update of every replica takes, API latency (p99 of a single-object GET and PATCH
//! probed every 100 ms from creation to the end of the rolling update, against upstream's
//! 1 s SLO), the time to scale back to zero, and the scheduler's throughput on a backlog
//! (every replica pending on cordoned nodes, then the nodes uncordoned), twice: with the
//! kubelets starting the bound pods meanwhile, and, when `SCALE_BENCH_SIM_PID` names the
//! `skiff sim-nodes` process, with it stopped for the window (upstream's scheduler_perf
//! setup: node objects without kubelets); for each, the cores the server and the simulated
//! nodes used in the window (both share this machine's cores, as real kubelets would not)
//! and the ratio of each to the 1,000 pods/s target.
//!
//! Usage: scale_bench KUBECONFIG NODES REPLICAS

// Only `percentile` is used here.
#[allow(dead_code)]
mod common;

use common::percentile;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{
    Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "scale-bench";
/// Scheduler throughput the backlogs are judged against (the target).
const SCHEDULER_TARGET_PODS_PER_S: f64 = 1000.0;
/// The template annotation the rolling update changes.
const REVISION: &str = "scale-bench/revision";

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// When each pod was first seen, first seen bound (and where), first seen Running.
#[derive(Default)]
struct Seen {
    added: HashMap<String, Instant>,
    bound: HashMap<String, (Instant, String)>,
    running: HashMap<String, Instant>,
}

impl Seen {
    fn record(&mut self, p: &Pod, at: Instant) {
        let name = p.metadata.name.clone().unwrap_or_default();
        self.added.entry(name.clone()).or_insert(at);
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            self.bound.entry(name.clone()).or_insert((at, node));
        }
        if pod_running(p) {
            self.running.entry(name).or_insert(at);
        }
    }

    /// Milliseconds from first seen to `later`, sorted.
    fn latencies<'a>(&self, later: impl Iterator<Item = (&'a String, Instant)>) -> Vec<f64> {
        let mut v: Vec<f64> = later
            .filter_map(|(n, t)| {
                let a = self.added.get(n)?;
                Some(t.saturating_duration_since(*a).as_secs_f64() * 1000.0)
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }
}

async fn client(kubeconfig: &str) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

async fn wait_nodes_ready(client: &Client, want: usize) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + phase_limit(300);
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| node_ready(n))
            .count();
        if ready >= want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready} of {want} nodes Ready in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deployment(replicas: i32) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "scale"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "scale"}},
            "template": {
                "metadata": {"labels": {"app": "scale"}},
                "spec": common::scale_pod_spec(),
            },
        },
    }))?)
}

/// Times a single-object GET and a single-object PATCH of a ConfigMap every 100 ms until
/// `stop`: what upstream's API latency SLO covers, taken while the cluster is busy.
async fn probe_api(
    client: Client,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let cms: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("probe".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await?;
    let (mut gets, mut patches) = (Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let t = Instant::now();
        cms.get("probe").await?;
        gets.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let body = serde_json::json!({"data": {"n": n.to_string()}});
        cms.patch("probe", &PatchParams::default(), &Patch::Merge(body))
            .await?;
        patches.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    gets.sort_by(f64::total_cmp);
    patches.sort_by(f64::total_cmp);
    Ok((gets, patches))
}

/// Whether the Deployment reports a finished rollout of `replicas` (what `kubectl rollout
/// status` checks).
fn rolled_out(d: &Deployment, replicas: i32) -> bool {
    let (Some(s), generation) = (d.status.as_ref(), d.metadata.generation.unwrap_or(0)) else {
        return false;
    };
    s.observed_generation.unwrap_or(0) >= generation
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 4,
        "usage: scale_bench KUBECONFIG NODES REPLICAS"
    );
    let nodes: usize = args[2].parse()?;
    let replicas: usize = args[3].parse()?;
    let client = client(&args[1]).await?;

    let t = Instant::now();
    wait_nodes_ready(&client, nodes).await?;
    println!(
        "sim_nodes_{nodes}_ready_s {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let ns_api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    ns_api.create(&PostParams::default(), &ns).await?;
    // The service account must exist before pods naming it are admitted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PodChange>();
    let mut stream = pods
        .watch(&WatchParams::default().labels("app=scale"), "0")
        .await?
        .boxed();
    tokio::spawn(async move {
        while let Ok(Some(ev)) = stream.try_next().await {
            match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    let _ = tx.send((p, Instant::now(), false));
                }
                WatchEvent::Deleted(p) => {
                    let _ = tx.send((p, Instant::now(), true));
                }
                _ => {}
            }
        }
    });

    let probe_stop = tokio_util::sync::CancellationToken::new();
    let probe = tokio::spawn(probe_api(client.clone(), probe_stop.clone()));
    let cpu_before = CpuMark::now();
    let start = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment(replicas as i32)?)
        .await?;
    let mut seen = Seen::default();
    let deadline = Instant::now() + phase_limit(600);
    while seen.running.len() < replicas {
        let (p, at, _) = next_change(&mut rx, deadline, || {
            format!(
                "only {} of {replicas} pods Running within 600 s ({} created, {} bound)",
                seen.running.len(),
                seen.added.len(),
                seen.bound.len()
            )
        })
        .await?;
        seen.record(&p, at);
    }
    let all_running_s = start.elapsed().as_secs_f64();
    // CPU per pod from creation to Running: what the control plane (and, on the other
    // hosts of a real cluster, the kubelets) spend per pod, whatever the machine's cores.
    let cpu_per_pod = cpu_before
        .used_ms()
        .map(|used| used.map(|ms| ms / replicas as f64));
    // The Deployment's own status, as `kubectl rollout status` reads it.
    loop {
        let d = deployments.get("scale").await?;
        let available = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if available as usize >= replicas {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Deployment reports {available} of {replicas} available"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let available_s = start.elapsed().as_secs_f64();

    let binds: Vec<Instant> = seen.bound.values().map(|(t, _)| *t).collect();
    let first = binds.iter().min().copied().unwrap_or(start);
    let last = binds.iter().max().copied().unwrap_or(start);
    let bind_window = last.saturating_duration_since(first).as_secs_f64();
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for (_, node) in seen.bound.values() {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    let to_bound = seen.latencies(seen.bound.iter().map(|(n, (t, _))| (n, *t)));
    let to_running = seen.latencies(seen.running.iter().map(|(n, t)| (n, *t)));
    println!(
        "scheduler_pods_bound_per_s {:.0} pods/s",
        binds.len() as f64 / bind_window.max(1e-9)
    );
    // As pods arrive the scheduler can bind no faster than the controller creates them
    // (the next line); its own rate is the backlog's, judged against the target there.
    println!("pods_created_by_controller_per_s {:.0} pods/s", {
        let added: Vec<Instant> = seen.added.values().copied().collect();
        let a0 = added.iter().min().copied().unwrap_or(start);
        let a1 = added.iter().max().copied().unwrap_or(start);
        added.len() as f64 / a1.saturating_duration_since(a0).as_secs_f64().max(1e-9)
    });
    println!(
        "pod_created_to_bound_p50_ms {:.1} ms",
        percentile(&to_bound, 0.5)
    );
    println!(
        "pod_created_to_bound_p99_ms {:.1} ms",
        percentile(&to_bound, 0.99)
    );
    println!(
        "pod_created_to_running_p50_ms {:.1} ms",
        percentile(&to_running, 0.5)
    );
    println!(
        "pod_created_to_running_p99_ms {:.1} ms",
        percentile(&to_running, 0.99)
    );
    println!("upstream_slo_pod_startup_p99_ms 5000 ms");
    println!("deployment_{replicas}_all_running_s {all_running_s:.2} s");
    println!("deployment_{replicas}_available_s {available_s:.2} s");
    let (lo, hi) = (
        per_node.values().min().copied().unwrap_or(0),
        per_node.values().max().copied().unwrap_or(0),
    );
    println!("pods_per_node_min {lo} pods");
    println!("pods_per_node_max {hi} pods");
    println!("nodes_used {} nodes", per_node.len());
    if let [Some(server), sim] = cpu_per_pod {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!("server_cpu_per_pod_to_running_ms {server:.2} ms");
        // The most pods per second this machine's cores could take through the control
        // plane at that cost, with the kubelets on other hosts as in a real cluster.
        println!(
            "server_cpu_bound_pods_per_s {:.0} pods/s",
            cores * 1000.0 / server.max(1e-9)
        );
        if let Some(sim) = sim {
            println!("sim_nodes_cpu_per_pod_to_running_ms {sim:.2} ms");
        }
    }

    // Hold for the caller to read RSS with every pod running.
    if let Ok(f) = std::env::var("SCALE_BENCH_PAUSE_FILE") {
        std::fs::write(&f, "running\n")?;
        while std::path::Path::new(&f).exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A rolling update of every replica (default maxSurge/maxUnavailable, 25% each).
    let t = Instant::now();
    let bump =
        serde_json::json!({"spec": {"template": {"metadata": {"annotations": {REVISION: "2"}}}}});
    deployments
        .patch("scale", &PatchParams::default(), &Patch::Merge(bump))
        .await?;
    let deadline = Instant::now() + phase_limit(600);
    loop {
        if rolled_out(&deployments.get("scale").await?, replicas as i32) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the rolling update of {replicas} pods did not finish within 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "deployment_{replicas}_rolling_update_s {:.2} s",
        t.elapsed().as_secs_f64()
    );
    probe_stop.cancel();
    let (gets, patches) = probe.await??;
    println!("api_get_p99_ms {:.1} ms", percentile(&gets, 0.99));
    println!("api_patch_p99_ms {:.1} ms", percentile(&patches, 0.99));
    println!("api_probes {} requests", gets.len() + patches.len());
    println!("api_p99_target_ms 50 ms");
    println!("upstream_slo_api_p99_ms 1000 ms");

    let t = Instant::now();
    scale_to_zero(&deployments, &mut rx, replicas).await?;
    println!(
        "deployment_scale_to_zero_s {:.2} s",
        t.elapsed().as_secs_f64()
    );
    backlog(
        &client,
        &deployments,
        &mut rx,
        replicas,
        "scheduler_backlog",
        None,
    )
    .await?;

    // The same backlog as upstream's scheduler_perf measures a scheduler: node objects with
    // no kubelet behind them. The simulated kubelets are stopped (SIGSTOP) for the window,
    // so the binds do not share the machine's CPU with 100 kubelets starting the pods.
    if let Some(sim) = std::env::var("SCALE_BENCH_SIM_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        scale_to_zero(&deployments, &mut rx, replicas).await?;
        backlog(
            &client,
            &deployments,
            &mut rx,
            replicas,
            "scheduler_only_backlog",
            Some(sim),
        )
        .await?;
    }
    println!("scheduler_target_pods_per_s {SCHEDULER_TARGET_PODS_PER_S} pods/s");
    Ok(())
}

/// Scales the Deployment to zero and waits until every pod of the updated revision is
/// gone (the old ones' deletions may still arrive).
async fn scale_to_zero(
    deployments: &Api<Deployment>,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<PodChange>,
    replicas: usize,
) -> anyhow::Result<()> {
    deployments
        .patch(
            "scale",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
        )
        .await?;
    let mut gone = std::collections::HashSet::new();
    let deadline = Instant::now() + phase_limit(300);
    while gone.len() < replicas {
        let (p, _, deleted) = next_change(rx, deadline, || {
            format!(
                "only {} of {replicas} pods gone in time after scaling to 0",
                gone.len()
            )
        })
        .await?;
        let updated = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .is_some_and(|v| v == "2");
        if deleted && updated {
            gone.insert(p.metadata.name.unwrap_or_default());
        }
    }
    Ok(())
}

/// The scheduler alone: a backlog of pending pods (every node cordoned while the
/// Deployment scales back up), then every node uncordoned at once. Binds through the API
/// per second from the first uncordon to the last bind is what the scheduler sustains when
/// it is not waiting for pods to be created. With `stopped_kubelets` (the simulated nodes'
/// process), that process is stopped from the uncordon to the last bind. Figures are
/// printed as `<name>_…`.
async fn backlog(
    client: &Client,
    deployments: &Api<Deployment>,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<PodChange>,
    replicas: usize,
    name: &str,
    stopped_kubelets: Option<u32>,
) -> anyhow::Result<()> {
    let node_api: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = node_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    set_unschedulable(&node_api, &names, true).await?;
    deployments
        .patch(
            "scale",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await?;
    let mut pending = std::collections::HashSet::new();
    // Pods the scheduler bound before its cache saw their node cordoned: a cordon is not a
    // fence (the node and pod change feeds are separate, upstream's too), so now and then
    // one of the first pods is bound. They are left out of the backlog.
    let mut bound_early = std::collections::HashSet::new();
    let deadline = Instant::now() + phase_limit(300);
    while pending.len() + bound_early.len() < replicas {
        let (p, _, deleted) = next_change(rx, deadline, || {
            format!(
                "only {} of {replicas} pods pending as unschedulable in time ({} bound)",
                pending.len(),
                bound_early.len()
            )
        })
        .await?;
        let name = p.metadata.name.clone().unwrap_or_default();
        if !deleted
            && p.metadata.deletion_timestamp.is_none()
            && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
            && !pending.contains(&name)
        {
            bound_early.insert(name);
            continue;
        }
        let unschedulable = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable")
                })
            });
        if !deleted && unschedulable && p.metadata.deletion_timestamp.is_none() {
            pending.insert(p.metadata.name.unwrap_or_default());
        }
    }
    println!("{name}_pending_pods {} pods", pending.len());
    println!("{name}_bound_before_cordon_seen {} pods", bound_early.len());
    let backlog = pending.len();
    let revision_before = store_revision(client).await?;
    let signal = |sig: &str| -> anyhow::Result<()> {
        if let Some(pid) = stopped_kubelets {
            let ok = std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()?
                .success();
            anyhow::ensure!(ok, "kill {sig} {pid} failed");
        }
        Ok(())
    };
    // Where the machine's cores go during the window: read before the kubelets are
    // stopped and before they resume.
    let cpu_before = CpuMark::now();
    signal("-STOP")?;
    if stopped_kubelets.is_some() {
        // Requests the kubelets had in flight now wait for them (a body not yet sent): the
        // server-side latency figures leave out what was in flight at this instant.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        println!(
            "{name}_kubelets_stopped_at_unix_s {:.3} s",
            now.as_secs_f64()
        );
    }
    let t = Instant::now();
    let waited = async {
        set_unschedulable(&node_api, &names, false).await?;
        let deadline = Instant::now() + phase_limit(300);
        let mut bound = std::collections::HashSet::new();
        let mut last = t;
        // When each bind was seen, from the uncordon: shows whether the rate is steady or
        // waits (backoffs, a slow start) dominate the window.
        let mut bind_times = Vec::with_capacity(backlog);
        while bound.len() < backlog {
            let (p, at, _) = next_change(rx, deadline, || {
                format!(
                    "only {} of {backlog} pending pods bound after uncordoning",
                    bound.len()
                )
            })
            .await?;
            let pod = p.metadata.name.clone().unwrap_or_default();
            if pending.contains(&pod)
                && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
            {
                if bound.insert(pod) {
                    bind_times.push(at.saturating_duration_since(t).as_secs_f64() * 1000.0);
                }
                last = at;
            }
        }
        // Every write takes one revision: what binding (and running) one pod costs the
        // store, counted before stopped kubelets resume.
        let revision_after = store_revision(client).await?;
        anyhow::Ok((bind_times, last, revision_after))
    }
    .await;
    let cpu_window_s = t.elapsed().as_secs_f64();
    let cpu_used = cpu_before.used_ms();
    // The kubelets run again whatever happened.
    signal("-CONT")?;
    let (bind_times, last, revision_after) = waited?;
    let window = last.saturating_duration_since(t).as_secs_f64();
    for (who, used) in ["server", "sim_nodes"].iter().zip(cpu_used) {
        if let Some(ms) = used {
            println!(
                "{name}_{who}_cores {:.2} cores",
                ms / 1000.0 / cpu_window_s.max(1e-9)
            );
        }
    }
    println!("{name}_{replicas}_bound_s {window:.2} s");
    for q in [0.1, 0.5, 0.9] {
        println!(
            "{name}_{}pct_bound_ms {:.0} ms",
            (q * 100.0) as u32,
            percentile(&bind_times, q)
        );
    }
    let rate = backlog as f64 / window.max(1e-9);
    println!("{name}_pods_bound_per_s {rate:.0} pods/s");
    println!(
        "{name}_vs_target_ratio {:.2} ratio",
        rate / SCHEDULER_TARGET_PODS_PER_S
    );
    let writes = revision_after.saturating_sub(revision_before);
    println!(
        "{name}_store_writes_per_pod {:.1} writes",
        writes as f64 / backlog.max(1) as f64
    );
    Ok(())
}

/// The store's current revision (a list's resourceVersion).
async fn store_revision(client: &Client) -> anyhow::Result<u64> {
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let list = cms.list_metadata(&ListParams::default().limit(1)).await?;
    Ok(list
        .metadata
        .resource_version
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0))
}

/// A pod from the watch: the object, when it was seen, whether it was deleted.
type PodChange = (Pod, Instant, bool);

/// The next pod change from the watch, or the error `waiting` describes once `deadline`
/// has passed.
async fn next_change(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<PodChange>,
    deadline: Instant,
    waiting: impl FnOnce() -> String,
) -> anyhow::Result<PodChange> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, rx.recv()).await {
        Ok(Some(change)) => Ok(change),
        _ => anyhow::bail!("{}", waiting()),
    }
}

/// Cordons (or uncordons) every named node, all requests in flight at once.
async fn set_unschedulable(nodes: &Api<Node>, names: &[String], on: bool) -> anyhow::Result<()> {
    let patch = Patch::Merge(serde_json::json!({"spec": {"unschedulable": on}}));
    let params = PatchParams::default();
    let patches = names.iter().map(|n| nodes.patch(n, &params, &patch));
    for r in futures::future::join_all(patches).await {
        r?;
    }
    Ok(())
}

/// A process id from the environment.
fn pid_env(var: &str) -> Option<u32> {
    std::env::var(var).ok()?.parse().ok()
}

/// The CPU time used so far by the server and the simulated nodes (`SCALE_BENCH_SERVER_PID`,
/// `SCALE_BENCH_SIM_PID`; `None` for one not given or gone).
struct CpuMark([Option<(u32, f64)>; 2]);

impl CpuMark {
    fn now() -> CpuMark {
        CpuMark(
            ["SCALE_BENCH_SERVER_PID", "SCALE_BENCH_SIM_PID"]
                .map(|var| pid_env(var).and_then(|pid| Some((pid, cpu_ms(pid)?)))),
        )
    }

    /// The milliseconds of CPU each has used since the mark.
    fn used_ms(&self) -> [Option<f64>; 2] {
        self.0
            .map(|mark| mark.and_then(|(pid, before)| Some(cpu_ms(pid)? - before)))
    }
}

/// The CPU time (user and system) process `pid` has used, in milliseconds.
fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command, which is in parentheses and may hold spaces: utime and
    // stime are the 14th and 15th fields of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()? as f64;
    Some((utime + stime) * 1000.0 / ticks)
}

/// How long a phase may take: `secs`, times `SCALE_BENCH_SLOWDOWN` when the server runs
/// under a profiler that slows it (heaptrack: ~10x).
fn phase_limit(secs: u64) -> Duration {
    let factor = std::env::var("SCALE_BENCH_SLOWDOWN")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    Duration::from_secs(secs * factor)
}
