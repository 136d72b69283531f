//! A real watch of a namespace's pods that remembers the worst moments of a rollout: the
//! most pods that existed at once, the fewest Ready, and how often two pod templates
//! coexisted. Rollout tests read maxSurge and maxUnavailable from it.

use super::TestServer;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a watch of a namespace's pods saw: per pod (ready, template hash), and the worst
/// moments.
#[derive(Default)]
struct Seen {
    pods: BTreeMap<String, (bool, String)>,
    max_pods: usize,
    min_ready: Option<usize>,
    /// Moments when pods of two templates existed together.
    mixed: usize,
}

/// Watches the pods of `ns` (through a real watch) until dropped.
pub struct PodWatch {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// (Ready, pod-template-hash) of a pod.
fn pod_state(p: &Pod) -> (bool, String) {
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let hash = p
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .unwrap_or_default();
    (ready, hash)
}

impl PodWatch {
    pub fn start(server: &TestServer, ns: &str) -> PodWatch {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(server.client());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, ns) = (seen.clone(), stop.clone(), ns.to_string());
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                use futures::StreamExt;
                let api: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
                let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
                // A relist (the watch restarted) rebuilds the pod list aside and swaps it in
                // whole, so pods deleted during the gap do not linger and a half-read list
                // does not count as a moment with fewer pods ready.
                let mut relist: Option<BTreeMap<String, (bool, String)>> = None;
                while !st.load(Ordering::SeqCst) {
                    let ev = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
                    let Ok(Some(Ok(ev))) = ev else { continue };
                    let mut seen = s.lock().expect("lock");
                    match ev {
                        watcher::Event::Init => {
                            relist = Some(BTreeMap::new());
                            continue;
                        }
                        watcher::Event::InitApply(p) => {
                            if let Some(list) = relist.as_mut() {
                                let name = p.metadata.name.clone().unwrap_or_default();
                                if p.metadata.deletion_timestamp.is_none() {
                                    list.insert(name, pod_state(&p));
                                }
                            }
                            continue;
                        }
                        watcher::Event::InitDone => {
                            if let Some(list) = relist.take() {
                                seen.pods = list;
                            }
                        }
                        watcher::Event::Apply(p) => {
                            let name = p.metadata.name.clone().unwrap_or_default();
                            if p.metadata.deletion_timestamp.is_some() {
                                seen.pods.remove(&name);
                            } else {
                                seen.pods.insert(name, pod_state(&p));
                            }
                        }
                        watcher::Event::Delete(p) => {
                            seen.pods
                                .remove(&p.metadata.name.clone().unwrap_or_default());
                        }
                    }
                    let total = seen.pods.len();
                    let ready = seen.pods.values().filter(|(r, _)| *r).count();
                    let hashes: BTreeSet<&String> = seen.pods.values().map(|(_, h)| h).collect();
                    let mixed = hashes.len() > 1;
                    seen.max_pods = seen.max_pods.max(total);
                    seen.min_ready = Some(seen.min_ready.map_or(ready, |m| m.min(ready)));
                    if mixed {
                        seen.mixed += 1;
                    }
                }
            })
        });
        PodWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Forgets the extremes seen so far (the watch keeps its pod list).
    pub fn reset(&self) {
        let mut s = self.seen.lock().expect("lock");
        s.max_pods = s.pods.len();
        s.min_ready = None;
        s.mixed = 0;
    }

    pub fn extremes(&self) -> (usize, Option<usize>, usize) {
        let s = self.seen.lock().expect("lock");
        (s.max_pods, s.min_ready, s.mixed)
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
