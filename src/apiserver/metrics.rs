//! `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics) served from the kubelets'
//! `/stats/summary`, so `kubectl top node|pod` works without metrics-server.
//!
//! Invariant: each node's summary is fetched at most once per [`TTL`] (concurrent readers
//! share the cached answer); a node whose kubelet cannot be reached is left out, as
//! metrics-server leaves out what it could not scrape.

use super::kubelet_proxy::kubelet_endpoint;
use super::objects::parse_record;
use super::request::{Query, ResourceRequest, Verb};
use super::response::{self, Body};
use super::status::ApiError;
use super::ApiState;
use crate::api::selector::LabelSelector;
use chrono::{SecondsFormat, Utc};
use http::Response;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(5);
/// The window upstream's metrics-server reports for its rates.
const WINDOW: &str = "10s";

/// Summaries by node name.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<String, (Instant, Value)>>);

async fn summary(state: &ApiState, node: &Value) -> Option<Value> {
    let name = node["metadata"]["name"].as_str()?.to_owned();
    if let Some((at, v)) = state.metrics_cache.0.lock().get(&name) {
        if at.elapsed() < TTL {
            return Some(v.clone());
        }
    }
    let (host, port) = kubelet_endpoint(node)?;
    let client = state.kubelet_client()?;
    match client.get_json(&host, port, "/stats/summary").await {
        Ok(v) => {
            state
                .metrics_cache
                .0
                .lock()
                .insert(name, (Instant::now(), v.clone()));
            Some(v)
        }
        Err(e) => {
            tracing::debug!(node = %name, error = %e, "metrics: kubelet stats unavailable");
            None
        }
    }
}

/// `123456n` / `1024Ki`: the units metrics-server answers in.
fn usage(stats: &Value) -> Option<Value> {
    let cpu = stats["cpu"]["usageNanoCores"].as_u64()?;
    let mem = stats["memory"]["workingSetBytes"].as_u64()?;
    Some(json!({"cpu": format!("{cpu}n"), "memory": format!("{}Ki", mem / 1024)}))
}

async fn list_objects(
    state: &ApiState,
    plural: &str,
    ns: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let rt = state
        .registry
        .lookup("", "v1", plural)
        .ok_or_else(ApiError::no_route)?;
    let prefix = rt.namespace_prefix(ns);
    let (recs, _) = state.store.list(&prefix).await?;
    recs.iter().map(parse_record).collect()
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn node_metrics(state: &ApiState, nodes: Vec<Value>) -> Vec<Value> {
    let summaries = futures::future::join_all(nodes.iter().map(|n| summary(state, n))).await;
    nodes
        .iter()
        .zip(summaries)
        .filter_map(|(n, s)| {
            let u = usage(&s?["node"])?;
            Some(json!({
                "kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": n["metadata"]["name"], "creationTimestamp": now(),
                             "labels": n["metadata"]["labels"].clone()},
                "timestamp": now(), "window": WINDOW, "usage": u,
            }))
        })
        .collect()
}

async fn pod_metrics(state: &ApiState, pods: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    let mut node_names: Vec<String> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
        .filter(|n| !n.is_empty())
        .collect();
    node_names.sort();
    node_names.dedup();
    let all_nodes = list_objects(state, "nodes", None).await?;
    let nodes: Vec<&Value> = all_nodes
        .iter()
        .filter(|n| {
            n["metadata"]["name"]
                .as_str()
                .is_some_and(|x| node_names.iter().any(|y| y == x))
        })
        .collect();
    let summaries = futures::future::join_all(nodes.iter().map(|n| summary(state, n))).await;
    let mut by_pod: HashMap<(String, String), Value> = HashMap::new();
    for s in summaries.into_iter().flatten() {
        for p in s["pods"].as_array().cloned().unwrap_or_default() {
            let key = (
                p["podRef"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["podRef"]["name"].as_str().unwrap_or_default().to_owned(),
            );
            by_pod.insert(key, p);
        }
    }
    Ok(pods
        .iter()
        .filter_map(|p| {
            let ns = p["metadata"]["namespace"].as_str()?;
            let name = p["metadata"]["name"].as_str()?;
            let s = by_pod.get(&(ns.to_owned(), name.to_owned()))?;
            if s["podRef"]["uid"] != p["metadata"]["uid"] {
                return None;
            }
            let containers: Vec<Value> = s["containers"]
                .as_array()?
                .iter()
                .filter_map(|c| Some(json!({"name": c["name"], "usage": usage(c)?})))
                .collect();
            Some(json!({
                "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": now(),
                             "labels": p["metadata"]["labels"].clone()},
                "timestamp": now(), "window": WINDOW, "containers": containers,
            }))
        })
        .collect())
}

pub async fn serve(
    state: &ApiState,
    rr: &ResourceRequest,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let pods = rr.rt.plural == "pods";
    let source = if pods { "pods" } else { "nodes" };
    let selector = q
        .label_selector
        .as_deref()
        .map(LabelSelector::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let objects: Vec<Value> = match (rr.verb, rr.name.as_deref()) {
        (Verb::Get, Some(name)) => {
            let all = list_objects(state, source, rr.namespace.as_deref()).await?;
            all.into_iter()
                .filter(|o| o["metadata"]["name"] == name)
                .collect()
        }
        (Verb::List, None) => list_objects(state, source, rr.namespace.as_deref())
            .await?
            .into_iter()
            .filter(|o| {
                selector
                    .as_ref()
                    .is_none_or(|l| l.matches(o["metadata"]["labels"].as_object()))
            })
            .collect(),
        _ => return Err(ApiError::method_not_allowed()),
    };
    let items = if pods {
        pod_metrics(state, objects).await?
    } else {
        node_metrics(state, objects).await
    };
    if let Some(name) = rr.name.as_deref() {
        return match items.into_iter().next() {
            Some(i) => Ok(response::json(200, &i)),
            None => Err(ApiError::not_found(&rr.rt, name)),
        };
    }
    let kind = if pods {
        "PodMetricsList"
    } else {
        "NodeMetricsList"
    };
    Ok(response::json(
        200,
        &json!({"kind": kind, "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}),
    ))
}
