//! The API server's cost of one pod's life, call by call, through the in-process client on
//! a fresh store: the calls `bench.sh scale` makes per pod (create as a ReplicaSet does,
//! bind, token request, the kubelet's two status patches, its events, the graceful delete
//! and the kubelet's final delete), each kind timed as one phase over all pods so a profile
//! or an A/B of one request path is not mixed with the others. Optional watchers of pods
//! (one per simulated node, filtered by `spec.nodeName`, plus unfiltered ones like the
//! in-process informers) add the fan-out a real cluster pays on every write.
//!
//! Prints per phase: calls/s and the process's CPU microseconds per call (server and client
//! share the process; the client's share is the same for both sides of an A/B). Timings on
//! a shared VM drift; `scripts/pod-path-count.sh` runs this under callgrind and prints
//! instructions per call instead, which repeat within about 1%.
//!
//! Usage: pod_path_bench DIR [PODS] [CLIENTS] [NODE_WATCHERS] [ALL_WATCHERS]

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchParams};
use kube::Client;
use skiff::apiserver::{ApiConfig, ApiState, StoreSettings, TokenAuthenticator, UserInfo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(dead_code)]
mod common;

const NODES: usize = 100;

fn pod(i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": pod_name(i),
            "generateName": "scale-7d9f8c6b5-",
            "labels": {"app": "scale", "pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "scale-7d9f8c6b5",
                "uid": "0b7e4f2a-5a55-4c39-9a5e-2f1c1d0c9a11",
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": common::scale_pod_spec(),
    }))
    .expect("a valid pod")
}

/// The name of pod `i`, without building the pod (the client's work is measured too).
fn pod_name(i: usize) -> String {
    format!("scale-7d9f8c6b5-{i:05}")
}

/// POSTs a JSON body (a subresource kube-rs has no typed call for).
async fn post_json(client: &Client, uri: String, body: serde_json::Value) -> anyhow::Result<()> {
    let req = http::Request::post(uri)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body)?)?;
    client.request_text(req).await?;
    Ok(())
}

fn node_of(i: usize) -> String {
    format!("sim-{:03}", i % NODES)
}

/// The kubelet's status patch: the whole generated status, as `kubelet::api` sends it.
fn status_patch(uid: &str, i: usize, running: bool) -> serde_json::Value {
    let now = "2026-12-06T10:00:00Z";
    let (ready, state) = if running {
        ("True", serde_json::json!({"running": {"startedAt": now}}))
    } else {
        (
            "False",
            serde_json::json!({"waiting": {"reason": "ContainerCreating"}}),
        )
    };
    let cond = |t: &str, s: &str| {
        serde_json::json!({"type": t, "status": s, "lastProbeTime": null,
            "lastTransitionTime": now})
    };
    let ip = format!("10.42.{}.{}", i % NODES, 2 + i / NODES);
    serde_json::json!({
        "metadata": {"uid": uid},
        "status": {
            "phase": if running { "Running" } else { "Pending" },
            "conditions": [
                cond("PodReadyToStartContainers", "True"),
                cond("Initialized", "True"),
                cond("Ready", ready),
                cond("ContainersReady", ready),
                cond("PodScheduled", "True"),
            ],
            "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now,
            "qosClass": "Burstable",
            "containerStatuses": [{
                "name": "main", "image": "docker.io/library/busybox:1.36",
                "imageID": "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "containerID": format!("skiff://{uid}-main"),
                "ready": running, "started": running, "restartCount": 0,
                "state": state,
            }],
        },
    })
}

fn event(name: &str, uid: &str, i: usize, reason: &str) -> Event {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{name}.{}{i}", reason.to_lowercase())},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": name,
            "uid": uid, "apiVersion": "v1", "fieldPath": "spec.containers{main}"},
        "reason": reason, "message": format!("{reason} container main"), "type": "Normal",
        "source": {"component": "kubelet", "host": node_of(i)},
        "firstTimestamp": "2026-12-06T10:00:00Z", "lastTimestamp": "2026-12-06T10:00:00Z",
        "count": 1, "reportingComponent": "kubelet", "reportingInstance": node_of(i),
    }))
    .expect("a valid event")
}

fn cpu_us() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let ru = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 * 1e6 + tv.tv_usec() as f64;
    t(ru.user_time()) + t(ru.system_time())
}

/// Called as each phase starts and ends: `valgrind --tool=callgrind
/// --dump-before=phase_marker` then writes one profile per phase, whose instruction counts
/// compare builds without the timing noise of a shared VM.
#[inline(never)]
#[no_mangle]
pub extern "C" fn phase_marker() {
    std::hint::black_box(());
}

/// Runs `call(i)` for every pod index on `clients` concurrent tasks and prints the phase.
async fn phase<F, Fut>(name: &str, pods: usize, per_pod: usize, clients: usize, call: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let call = Arc::new(call);
    // The monotonic clock `perf record -k CLOCK_MONOTONIC` stamps samples with, so a
    // profile of the whole run can be cut into phases.
    let mono = |c| {
        let t = nix::time::clock_gettime(c).expect("clock_gettime");
        t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9
    };
    let clock = nix::time::ClockId::CLOCK_MONOTONIC;
    eprintln!("phase_start {name} {:.6}", mono(clock));
    phase_marker();
    let (cpu0, t0) = (cpu_us(), Instant::now());
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, call) = (next.clone(), call.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= pods {
                        return anyhow::Ok(());
                    }
                    call(i).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a phase task").expect("a phase call");
    }
    let (cpu, secs) = (cpu_us() - cpu0, t0.elapsed().as_secs_f64());
    eprintln!("phase_end {name} {:.6}", mono(clock));
    phase_marker();
    let calls = (pods * per_pod) as f64;
    println!(
        "{name:<16} {:>8.0} calls/s {:>8.1} us_cpu/call",
        calls / secs,
        cpu / calls
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: pod_path_bench DIR [PODS] [CLIENTS] [NODE_WATCHERS] [ALL_WATCHERS]";
    let dir = args.get(1).cloned().ok_or_else(|| anyhow::anyhow!(usage))?;
    let arg = |n: usize, d: usize| args.get(n).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (pods, clients, node_watchers, all_watchers) =
        (arg(2, 3000), arg(3, 8), arg(4, 0), arg(5, 0));
    let state = ApiState::open(ApiConfig {
        store: StoreSettings::new(std::path::Path::new(&dir).join("db")),
        ca_pem: String::new(),
        tokens: TokenAuthenticator::new(vec![]),
        service_account_key: Arc::new(skiff::pki::ServiceAccountKey::generate()?),
        service_cidr: "10.43.0.0/16".into(),
        max_requests_inflight: skiff::apiserver::DEFAULT_MAX_REQUESTS_INFLIGHT,
        advertise: "127.0.0.1:6443".parse()?,
        admission: skiff::apiserver::admission::Chain::standard(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("opening the API server state: {e}"))?;
    let client: Client = state.client(UserInfo::new("system:admin", &["system:masters"]));
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))?;
    let _ = Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &sa)
        .await;

    // Bound pods of a node that does not exist are deleted at once: the nodes must exist
    // for the graceful delete to take the path a real cluster's does.
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    for n in 0..NODES {
        let node = serde_json::from_value(serde_json::json!({"metadata": {"name": node_of(n)}}))?;
        nodes.create(&PostParams::default(), &node).await?;
    }

    // Watchers drain their streams on their own tasks until the end of the run.
    let mut watchers = Vec::new();
    for w in 0..node_watchers + all_watchers {
        let api = Api::<Pod>::all(client.clone());
        let wp = if w < node_watchers {
            WatchParams::default().fields(&format!("spec.nodeName={}", node_of(w)))
        } else {
            WatchParams::default()
        };
        watchers.push(tokio::spawn(async move {
            let mut s = api.watch(&wp, "0").await.expect("a watch").boxed();
            while let Some(e) = s.next().await {
                e.expect("a watch event");
            }
        }));
    }

    let pods_api = Api::<Pod>::namespaced(client.clone(), "default");
    let uids: Arc<Vec<std::sync::OnceLock<String>>> =
        Arc::new((0..pods).map(|_| std::sync::OnceLock::new()).collect());
    println!(
        "pods {pods} clients {clients} node_watchers {node_watchers} all_watchers {all_watchers}"
    );

    let (api, u) = (pods_api.clone(), uids.clone());
    phase("create", pods, 1, clients, move |i| {
        let (api, u) = (api.clone(), u.clone());
        async move {
            let p = api.create(&PostParams::default(), &pod(i)).await?;
            let _ = u[i].set(p.metadata.uid.unwrap_or_default());
            Ok(())
        }
    })
    .await;

    let c = client.clone();
    phase("bind", pods, 1, clients, move |i| {
        let c = c.clone();
        async move {
            let name = pod_name(i);
            let uri = format!("/api/v1/namespaces/default/pods/{name}/binding");
            let body = serde_json::json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": "default"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_of(i)},
            });
            post_json(&c, uri, body).await
        }
    })
    .await;

    let (c, u) = (client.clone(), uids.clone());
    phase("token", pods, 1, clients, move |i| {
        let (c, u) = (c.clone(), u.clone());
        async move {
            let uri = "/api/v1/namespaces/default/serviceaccounts/default/token".to_owned();
            let body = serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [], "expirationSeconds": 3607, "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod", "name": pod_name(i),
                    "uid": u[i].get().cloned().unwrap_or_default()}},
            });
            post_json(&c, uri, body).await
        }
    })
    .await;

    for (label, running) in [("status_pending", false), ("status_running", true)] {
        let (api, u) = (pods_api.clone(), uids.clone());
        phase(label, pods, 1, clients, move |i| {
            let (api, u) = (api.clone(), u.clone());
            async move {
                let uid = u[i].get().cloned().unwrap_or_default();
                let name = pod_name(i);
                let patch = status_patch(&uid, i, running);
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Ok(())
            }
        })
        .await;
    }

    let (c, u) = (client.clone(), uids.clone());
    phase("events", pods, 3, clients, move |i| {
        let (c, u) = (c.clone(), u.clone());
        async move {
            let api = Api::<Event>::namespaced(c, "default");
            let (name, uid) = (pod_name(i), u[i].get().cloned().unwrap_or_default());
            for reason in ["Pulled", "Created", "Started"] {
                api.create(&PostParams::default(), &event(&name, &uid, i, reason))
                    .await?;
            }
            Ok(())
        }
    })
    .await;

    let api = pods_api.clone();
    phase("delete_graceful", pods, 1, clients, move |i| {
        let api = api.clone();
        async move {
            let name = pod_name(i);
            api.delete(&name, &DeleteParams::default()).await?;
            Ok(())
        }
    })
    .await;

    let (api, u) = (pods_api.clone(), uids.clone());
    phase("delete_final", pods, 1, clients, move |i| {
        let (api, u) = (api.clone(), u.clone());
        async move {
            let name = pod_name(i);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(kube::api::Preconditions {
                    uid: u[i].get().cloned(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            api.delete(&name, &dp).await?;
            Ok(())
        }
    })
    .await;

    for w in watchers {
        w.abort();
    }
    state
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("closing the store: {e}"))?;
    Ok(())
}
