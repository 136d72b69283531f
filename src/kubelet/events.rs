//! The kubelet's references for pod and container events (`fieldPath`
//! `spec.containers{name}`, as upstream's kubelet writes them); recording is
//! [`crate::events`]'s.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};

pub use crate::events::{Recorded, Recorder, NORMAL, WARNING};

pub fn container_ref(pod: &Pod, container: &str) -> ObjectReference {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == container));
    let ephemeral = spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == container));
    let list = match (init, ephemeral) {
        (true, _) => "initContainers",
        (_, true) => "ephemeralContainers",
        _ => "containers",
    };
    ObjectReference {
        field_path: Some(format!("spec.{list}{{{container}}}")),
        ..pod_ref(pod)
    }
}

/// The Node as the kubelet names it in events (upstream: the node name as its uid).
pub fn node_ref(node: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.to_owned()),
        uid: Some(node.to_owned()),
        ..Default::default()
    }
}

pub fn pod_ref(pod: &Pod) -> ObjectReference {
    crate::events::object_ref(pod)
}
