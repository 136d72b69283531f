//! Background behaviour of the API server that upstream spreads over controllers it ships
//! with the control plane: built-in namespaces and the `kubernetes` Service at start-up,
//! namespace termination, and owner-reference garbage collection.
//!
//! Invariant: all of it is level-triggered and idempotent: a task that is interrupted by a
//! restart is found again at the next start (namespaces stuck in Terminating, objects whose
//! owners are gone) and finished.

use super::handlers::{delete_object, DeleteOptions};
use super::objects::{parse_record, write, Decision, Written};
use super::status::ApiError;
use super::ApiState;
use crate::api::registry::ResourceType;
use crate::apiserver::handlers::Propagation;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Work for the background loop.
#[derive(Debug)]
enum Task {
    /// Delete everything in a Terminating namespace, then the namespace.
    CleanNamespace(String),
    /// An owner is gone: delete or orphan its dependents.
    CollectDependents {
        owner_uid: String,
        namespace: Option<String>,
        orphan: bool,
    },
    /// An owner waits (foregroundDeletion) for its dependents to go away.
    Foreground {
        rt: Arc<ResourceType>,
        namespace: Option<String>,
        name: String,
        uid: String,
    },
}

/// Handle to the background loop; tasks queued before it starts wait in the channel.
pub struct Background {
    tx: mpsc::UnboundedSender<Task>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Task>>>,
}

impl Default for Background {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Background {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

fn queue(state: &ApiState, t: Task) {
    let _ = state.background.tx.send(t);
}

const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what every cluster has from the start and rebuilds in-memory allocations.
pub async fn bootstrap(state: &Arc<ApiState>) -> Result<(), ApiError> {
    let ns_rt = state
        .registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    for ns in BUILTIN_NAMESPACES {
        create_if_absent(
            state,
            &ns_rt,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    // Service IPs in use.
    let (services, _) = state.store.list("core/services/").await?;
    for r in &services {
        let svc = parse_record(r)?;
        if let Some(ip) = svc["spec"]["clusterIP"]
            .as_str()
            .and_then(|s| s.parse().ok())
        {
            if state.services.contains(ip) {
                state.services.reserve(ip);
            }
        }
    }
    let svc_rt = state
        .registry
        .lookup("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services are not registered"))?;
    let first = state.services.first().to_string();
    create_if_absent(
        state,
        &svc_rt,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"clusterIP": first, "type": "ClusterIP",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
    )
    .await?;
    // Resume unfinished namespace terminations.
    let (namespaces, _) = state.store.list("core/namespaces/").await?;
    for r in &namespaces {
        let ns = parse_record(r)?;
        if !ns["metadata"]["deletionTimestamp"].is_null() {
            queue(
                state,
                Task::CleanNamespace(
                    ns["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
            );
        }
    }
    Ok(())
}

async fn create_if_absent(
    state: &Arc<ApiState>,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    mut obj: Value,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if state.store.get(&rt.key(ns, &name)).await?.is_some() {
        return Ok(());
    }
    let opts = super::objects::WriteOptions {
        subresource: None,
        field_manager: "skiff-apiserver".into(),
    };
    super::objects::prepare_create(state, rt, ns, &mut obj, &opts)?;
    let r = write(state, rt, ns, &name, false, move |cur| {
        Ok(match cur {
            Some(existing) => Decision::Keep(existing),
            None => Decision::Put { obj, created: true },
        })
    })
    .await;
    r.map(|_| ())
}

/// Starts the background loop (once).
pub fn start(state: &Arc<ApiState>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(mut rx) = state.background.rx.lock().take() else {
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            let task = tokio::select! {
                t = rx.recv() => match t { Some(t) => t, None => return },
                _ = shutdown.changed() => return,
            };
            let state = state.clone();
            // Each task runs on its own so a namespace waiting for a kubelet does not hold
            // up garbage collection elsewhere.
            tokio::spawn(async move {
                if let Err(e) = run_task(&state, task).await {
                    tracing::warn!(error = %e, "background task failed");
                }
            });
        }
    });
}

/// Called after an object is gone for good.
pub fn on_deleted(state: &ApiState, rt: &ResourceType, obj: &Value, propagation: Propagation) {
    let uid = obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let namespace = obj["metadata"]["namespace"].as_str().map(str::to_owned);
    if rt.group.is_empty() && rt.kind == "Service" {
        if let Some(ip) = obj["spec"]["clusterIP"].as_str() {
            state.services.release(ip);
        }
    }
    if rt.group == "apiextensions.k8s.io" && rt.kind == "CustomResourceDefinition" {
        // Custom objects of a deleted definition go with it.
        let group = obj["spec"]["group"].as_str().unwrap_or_default();
        let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default();
        let prefix = format!("{group}/{plural}/");
        queue_prefix_delete(state, prefix);
    }
    if !uid.is_empty() {
        queue(
            state,
            Task::CollectDependents {
                owner_uid: uid,
                namespace,
                orphan: propagation == Propagation::Orphan,
            },
        );
    }
}

/// Called when an object entered deletion but waits (finalizers, Terminating namespace).
pub fn on_deleting(state: &ApiState, rt: &Arc<ResourceType>, obj: &Value) {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if rt.group.is_empty() && rt.kind == "Namespace" {
        queue(state, Task::CleanNamespace(name.clone()));
    }
    let foreground = obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"));
    if foreground {
        queue(
            state,
            Task::Foreground {
                rt: rt.clone(),
                namespace: obj["metadata"]["namespace"].as_str().map(str::to_owned),
                name,
                uid: obj["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            },
        );
    }
}

fn queue_prefix_delete(state: &ApiState, prefix: String) {
    // Custom objects are removed straight from storage: their types are already gone from
    // the registry, so there is no API path left to delete them through.
    let store = state.store.clone();
    tokio::spawn(async move {
        let Ok((records, _)) = store.list(&prefix).await else {
            return;
        };
        for r in records {
            let _ = store
                .mutate(&r.key, |cur: Option<&crate::store::Record>, _rev| {
                    Ok::<_, crate::store::StoreError>(match cur {
                        Some(c) => (
                            crate::store::Op::Delete {
                                tombstone: c.value.clone(),
                            },
                            (),
                        ),
                        None => (crate::store::Op::None, ()),
                    })
                })
                .await;
        }
    });
}

/// Resource types with distinct storage (one entry per resource, not per version).
fn storage_types(state: &ApiState) -> Vec<Arc<ResourceType>> {
    let mut seen = HashSet::new();
    state
        .registry
        .all()
        .into_iter()
        .filter(|r| r.has_verb("list") && seen.insert(r.storage_prefix()))
        .collect()
}

async fn run_task(state: &Arc<ApiState>, task: Task) -> Result<(), ApiError> {
    match task {
        Task::CleanNamespace(ns) => clean_namespace(state, &ns).await,
        Task::CollectDependents {
            owner_uid,
            namespace,
            orphan,
        } => collect_dependents(state, &owner_uid, namespace.as_deref(), orphan)
            .await
            .map(|_| ()),
        Task::Foreground {
            rt,
            namespace,
            name,
            uid,
        } => {
            loop {
                let remaining =
                    collect_dependents(state, &uid, namespace.as_deref(), false).await?;
                if remaining == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            remove_finalizer(
                state,
                &rt,
                namespace.as_deref(),
                &name,
                "foregroundDeletion",
            )
            .await
        }
    }
}

/// Deletes (or orphans) the dependents of `owner_uid`; returns how many still exist.
async fn collect_dependents(
    state: &Arc<ApiState>,
    owner_uid: &str,
    ns: Option<&str>,
    orphan: bool,
) -> Result<usize, ApiError> {
    // Everything in a Terminating namespace is being deleted already: scanning it for the
    // dependents of each object the cleanup removes would make the cleanup quadratic.
    if let Some(ns) = ns {
        if let Some(r) = state.store.get(&format!("core/namespaces/{ns}")).await? {
            if !parse_record(&r)?["metadata"]["deletionTimestamp"].is_null() {
                return Ok(0);
            }
        }
    }
    let mut remaining = 0;
    for rt in storage_types(state) {
        // Namespaced owners only own objects of their namespace; cluster-scoped owners may
        // own anything.
        let prefix = match (ns, rt.namespaced) {
            (Some(_), false) => continue,
            (Some(ns), true) => rt.namespace_prefix(Some(ns)),
            (None, _) => rt.storage_prefix(),
        };
        let (records, _) = state.store.list(&prefix).await?;
        for r in records {
            let obj = parse_record(&r)?;
            let refs = obj["metadata"]["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !refs.iter().any(|o| o["uid"] == owner_uid) {
                continue;
            }
            remaining += 1;
            let dep_ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
            let dep_name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let others = refs.iter().filter(|o| o["uid"] != owner_uid).count();
            if orphan || others > 0 {
                let uid = owner_uid.to_owned();
                let result = write(
                    state,
                    &rt,
                    dep_ns.as_deref(),
                    &dep_name,
                    false,
                    move |cur| {
                        let Some(mut o) = cur else {
                            return Err(ApiError::internal("gone"));
                        };
                        if let Some(a) = o["metadata"]["ownerReferences"].as_array_mut() {
                            a.retain(|x| x["uid"] != uid.as_str());
                        }
                        Ok(Decision::Put {
                            obj: o,
                            created: false,
                        })
                    },
                )
                .await;
                if result.is_ok() {
                    remaining -= 1;
                }
            } else {
                match delete_object(
                    state,
                    &rt,
                    dep_ns.as_deref(),
                    &dep_name,
                    &DeleteOptions::default(),
                )
                .await
                {
                    Ok(Written::Deleted(_)) | Err(ApiError { code: 404, .. }) => remaining -= 1,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, name = %dep_name, "garbage collection failed")
                    }
                }
            }
        }
    }
    Ok(remaining)
}

async fn remove_finalizer(
    state: &Arc<ApiState>,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    name: &str,
    finalizer: &str,
) -> Result<(), ApiError> {
    let f = finalizer.to_owned();
    let r = write(state, rt, ns, name, false, move |cur| {
        let Some(mut o) = cur else {
            return Err(ApiError::internal("gone"));
        };
        if let Some(a) = o["metadata"]["finalizers"].as_array_mut() {
            a.retain(|x| x != f.as_str());
        }
        Ok(Decision::Put {
            obj: o,
            created: false,
        })
    })
    .await;
    match r {
        Ok(Written::Deleted(obj)) => {
            on_deleted(state, rt, &obj, Propagation::Background);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if e.code == 500 && e.message == "gone" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes everything in a Terminating namespace, waits until it is all gone, then drops the
/// namespace's `kubernetes` finalizer (which removes the namespace).
async fn clean_namespace(state: &Arc<ApiState>, ns: &str) -> Result<(), ApiError> {
    let ns_rt = state
        .registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    loop {
        let mut left = BTreeSet::new();
        for rt in storage_types(state).into_iter().filter(|r| r.namespaced) {
            let (records, _) = state.store.list(&rt.namespace_prefix(Some(ns))).await?;
            for r in records {
                let obj = parse_record(&r)?;
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match delete_object(state, &rt, Some(ns), &name, &DeleteOptions::default()).await {
                    Ok(Written::Deleted(_)) | Err(ApiError { code: 404, .. }) => {}
                    Ok(_) => {
                        left.insert(format!("{}/{name}", rt.plural));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, ns, name, "namespace cleanup: delete failed");
                        left.insert(format!("{}/{name}", rt.plural));
                    }
                }
            }
        }
        if left.is_empty() {
            break;
        }
        tracing::debug!(ns, waiting = ?left, "namespace cleanup waits for objects to finish deleting");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let r = write(state, &ns_rt, None, ns, false, |cur| {
        let Some(mut o) = cur else {
            return Err(ApiError::internal("gone"));
        };
        if let Some(a) = o["spec"]["finalizers"].as_array_mut() {
            a.retain(|x| x != "kubernetes");
        }
        Ok(Decision::Put {
            obj: o,
            created: false,
        })
    })
    .await;
    match r {
        Ok(Written::Deleted(obj)) => {
            on_deleted(state, &ns_rt, &obj, Propagation::Background);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if e.message == "gone" => Ok(()),
        Err(e) => Err(e),
    }
}
