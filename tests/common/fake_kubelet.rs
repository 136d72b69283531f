//! A stand-in for nodes in workload tests: marks a namespace's pods Running and Ready
//! (Ready condition, `startTime`) through the API, as a kubelet would report them. Meant to
//! be replaced by simulated nodes once they exist.

use super::TestServer;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Stops marking pods when dropped.
pub struct FakeKubelet {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Marks every pod of `ns` Ready shortly after it appears, until the handle is dropped.
pub fn fake_kubelet_ready(server: &TestServer, ns: &str) -> FakeKubelet {
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the fake kubelet");
    let client = rt.block_on(server.client());
    let ns = ns.to_string();
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let pods: Api<Pod> = Api::namespaced(client, &ns);
            while !flag.load(Ordering::SeqCst) {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for p in list.items {
                        mark_ready(&pods, &p).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    FakeKubelet {
        stop,
        thread: Some(thread),
    }
}

async fn mark_ready(pods: &Api<Pod>, p: &Pod) {
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if ready || p.metadata.deletion_timestamp.is_some() {
        return;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = serde_json::json!({"status": {
        "phase": "Running",
        "startTime": now,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }});
    let name = p.metadata.name.clone().unwrap_or_default();
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}
