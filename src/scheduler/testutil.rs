//! Test objects: nodes with allocatable and a Ready condition, pods with requests.

use super::cache::{Cache, NodeInfo, PodInfo};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static UID: AtomicU64 = AtomicU64::new(1);

/// A Ready node with `cpu` millicores, `mem_gi` GiB and room for 110 pods; `extra` is
/// merged into the object (labels, spec, status fields).
pub fn node_with(name: &str, cpu: i64, mem_gi: i64, extra: Value) -> Node {
    let mut v = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": format!("{cpu}m"), "memory": format!("{mem_gi}Gi"), "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("node")
}

pub fn node(name: &str, cpu: i64, mem_gi: i64) -> Node {
    node_with(name, cpu, mem_gi, json!({}))
}

/// A pod in `default` with one container requesting `cpu` millicores (none if 0);
/// `extra` is merged in.
pub fn pod_with(name: &str, cpu: i64, extra: Value) -> Pod {
    let uid = UID.fetch_add(1, Ordering::Relaxed);
    let resources = if cpu > 0 {
        json!({"requests": {"cpu": format!("{cpu}m")}})
    } else {
        json!({})
    };
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{uid}"),
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("pod")
}

pub fn pod(name: &str, cpu: i64) -> Pod {
    pod_with(name, cpu, json!({}))
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// A node info with `pods` placed on it.
pub fn node_info(node: Node, pods: Vec<Pod>) -> NodeInfo {
    let mut ni = NodeInfo::new(Arc::new(node));
    for p in pods {
        ni.add_pod(Arc::new(PodInfo::new(Arc::new(p))));
    }
    ni
}

/// A cache with these nodes and these pods bound (each pod's `spec.nodeName` says where).
pub fn cache(nodes: Vec<Node>, pods: Vec<Pod>) -> Cache {
    let mut c = Cache::default();
    for n in nodes {
        c.set_node(Arc::new(n));
    }
    for p in pods {
        c.add_or_update_bound_pod(Arc::new(p));
    }
    c
}

/// `pod` bound to `node`.
pub fn on(node: &str, mut p: Pod) -> Pod {
    p.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
    p
}

/// Lookups in which every pod belongs to a workload selecting `app=web` (default
/// spreading applies).
pub struct Owned;

impl super::framework::Lookups for Owned {
    fn pvc(
        &self,
        _: &str,
        _: &str,
    ) -> Option<Arc<k8s_openapi::api::core::v1::PersistentVolumeClaim>> {
        None
    }
    fn pv(&self, _: &str) -> Option<Arc<k8s_openapi::api::core::v1::PersistentVolume>> {
        None
    }
    fn namespace_labels(&self, _: &str) -> Option<super::labels::Labels> {
        None
    }
    fn owner_selector(
        &self,
        _: &Pod,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
        Some(super::labels::selector_from_map(
            &[("app".to_string(), "web".to_string())]
                .into_iter()
                .collect(),
        ))
    }
}
