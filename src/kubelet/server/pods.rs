//! Finds "container C of pod P" among the runtime's containers, through the labels the
//! kubelet puts on them (`kubelet::labels`).
//!
//! Invariant: when a pod name was reused (deleted and created again), only the newest pod
//! UID's instances are considered, so logs/exec never reach a dead predecessor.

use crate::kubelet::labels;
use crate::runtime::containers::facade::Runtime;
use crate::runtime::containers::{ContainerState, Status};

/// One runtime instance of a pod's container.
#[derive(Debug, Clone)]
pub struct Instance {
    pub state: ContainerState,
    pub namespace: String,
    pub pod: String,
    pub restart_count: u32,
    pub pod_uid: String,
    pub container: String,
}

impl Instance {
    pub fn running(&self) -> bool {
        self.state.status == Status::Running
    }
}

/// Every instance of every container of `namespace/pod` (newest pod UID only), oldest
/// restart first.
pub async fn pod_instances(
    rt: &Runtime,
    namespace: &str,
    pod: &str,
) -> Result<Vec<Instance>, crate::runtime::containers::facade::RuntimeError> {
    let states = rt
        .list_labelled(&[(labels::POD_NAMESPACE, namespace), (labels::POD_NAME, pod)])
        .await?;
    Ok(newest_pod_instances(
        states.into_iter().filter_map(instance),
    ))
}

/// A pod container's instance, from its runtime state.
fn instance(state: ContainerState) -> Option<Instance> {
    let r = labels::container_ref(&state.labels)?;
    let (namespace, pod, pod_uid, container, restart_count) = (
        r.namespace.to_owned(),
        r.pod.to_owned(),
        r.pod_uid.to_owned(),
        r.container.to_owned(),
        r.restart_count,
    );
    Some(Instance {
        namespace,
        pod,
        state,
        restart_count,
        pod_uid,
        container,
    })
}

/// Of the instances of one pod name, oldest first, those of its newest UID (the pod made
/// last under that name), oldest restart first.
fn newest_pod_instances(all: impl Iterator<Item = Instance>) -> Vec<Instance> {
    let mut all: Vec<Instance> = all.collect();
    if let Some(uid) = all.last().map(|i| i.pod_uid.clone()) {
        all.retain(|i| i.pod_uid == uid);
    }
    all.sort_by_key(|i| i.restart_count);
    all
}

/// The instances of one container, oldest restart first.
pub async fn container_instances(
    rt: &Runtime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<Instance>, crate::runtime::containers::facade::RuntimeError> {
    let mut all = pod_instances(rt, namespace, pod).await?;
    all.retain(|i| i.container == container);
    Ok(all)
}

/// Every pod container instance the runtime knows (current pod UIDs only).
pub async fn all_instances(
    rt: &Runtime,
) -> Result<Vec<Instance>, crate::runtime::containers::facade::RuntimeError> {
    // One listing, oldest first, split by pod name in that order.
    let mut by_pod: std::collections::BTreeMap<(String, String), Vec<Instance>> =
        Default::default();
    for i in rt.list().await?.into_iter().filter_map(instance) {
        by_pod
            .entry((i.namespace.clone(), i.pod.clone()))
            .or_default()
            .push(i);
    }
    Ok(by_pod
        .into_values()
        .flat_map(|v| newest_pod_instances(v.into_iter()))
        .collect())
}
