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
    let mut all: Vec<Instance> = rt
        .list()
        .await?
        .into_iter()
        .filter_map(|st| {
            let r = labels::container_ref(&st.labels)?;
            if r.namespace != namespace || r.pod != pod {
                return None;
            }
            let (uid, container, restart_count) = (
                r.pod_uid.to_owned(),
                r.container.to_owned(),
                r.restart_count,
            );
            Some(Instance {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                state: st,
                restart_count,
                pod_uid: uid,
                container,
            })
        })
        .collect();
    // `list` is sorted by creation time: the last one names the current pod UID.
    if let Some(uid) = all.last().map(|i| i.pod_uid.clone()) {
        all.retain(|i| i.pod_uid == uid);
    }
    all.sort_by_key(|i| i.restart_count);
    Ok(all)
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
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for st in rt.list().await? {
        let Some(r) = labels::container_ref(&st.labels) else {
            continue;
        };
        let key = (r.namespace.to_owned(), r.pod.to_owned());
        if seen.insert(key.clone()) {
            out.extend(pod_instances(rt, &key.0, &key.1).await?);
        }
    }
    Ok(out)
}
