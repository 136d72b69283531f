//! How the kubelet names, labels and logs a pod's containers in the runtime.
//!
//! The runtime knows no Kubernetes types, so the pod a container belongs to is carried in
//! its labels (the keys upstream's kubelet uses with CRI runtimes). Everything that has to
//! find "container C of pod P" (the pod worker after an agent restart, the kubelet API for
//! logs/exec/attach, stats) goes through these functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// How many times this container had been restarted when this instance was created.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// Default root of the pod logs (`/var/log/pods`, as upstream).
pub const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";

/// Which pod (and container) a runtime object belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub pod_uid: &'a str,
    pub container: &'a str,
    pub restart_count: u32,
}

impl ContainerRef<'_> {
    /// Runtime id of this instance: deterministic (re-adoption finds it again), unique per
    /// restart, and within the runtime's 64-character `[A-Za-z0-9_.-]` limit.
    pub fn container_id(&self) -> String {
        let digest = sha2_hex(&format!(
            "{}/{}/{}",
            self.pod_uid, self.container, self.restart_count
        ));
        format!("k8s-{}", &digest[..40])
    }

    /// The labels that let anyone find this container again.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (POD_UID.to_owned(), self.pod_uid.to_owned()),
            (POD_NAME.to_owned(), self.pod.to_owned()),
            (POD_NAMESPACE.to_owned(), self.namespace.to_owned()),
            (CONTAINER_NAME.to_owned(), self.container.to_owned()),
            (RESTART_COUNT.to_owned(), self.restart_count.to_string()),
        ])
    }

    /// `<log-dir>/<ns>_<pod>_<uid>/<container>/<restart>.log`, CRI log format (upstream's
    /// layout, which `kubectl logs --previous` relies on through the kubelet).
    pub fn log_path(&self, log_dir: &Path) -> PathBuf {
        pod_log_dir(log_dir, self.namespace, self.pod, self.pod_uid)
            .join(self.container)
            .join(format!("{}.log", self.restart_count))
    }
}

/// `<log-dir>/<ns>_<pod>_<uid>`: removed with the pod.
pub fn pod_log_dir(log_dir: &Path, namespace: &str, pod: &str, pod_uid: &str) -> PathBuf {
    log_dir.join(format!("{namespace}_{pod}_{pod_uid}"))
}

/// Reads back the pod identity from a runtime container's labels.
pub fn container_ref(labels: &BTreeMap<String, String>) -> Option<ContainerRef<'_>> {
    Some(ContainerRef {
        namespace: labels.get(POD_NAMESPACE)?,
        pod: labels.get(POD_NAME)?,
        pod_uid: labels.get(POD_UID)?,
        container: labels.get(CONTAINER_NAME)?,
        restart_count: labels.get(RESTART_COUNT)?.parse().ok()?,
    })
}

fn sha2_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(restart_count: u32) -> ContainerRef<'static> {
        ContainerRef {
            namespace: "default",
            pod: "web",
            pod_uid: "0b7c1f9e-5a8e-4e0e-9d6b-1f2a3b4c5d6e",
            container: "nginx",
            restart_count,
        }
    }

    #[test]
    fn ids_are_stable_distinct_per_restart_and_valid_runtime_ids() {
        assert_eq!(web(0).container_id(), web(0).container_id());
        assert_ne!(web(0).container_id(), web(1).container_id());
        assert!(crate::runtime::containers::validate_id(
            &web(7).container_id()
        ));
    }

    #[test]
    fn labels_round_trip_and_logs_follow_the_upstream_layout() {
        let labels = web(2).labels();
        assert_eq!(container_ref(&labels), Some(web(2)));
        assert_eq!(
            web(2).log_path(Path::new("/var/log/pods")),
            Path::new("/var/log/pods/default_web_0b7c1f9e-5a8e-4e0e-9d6b-1f2a3b4c5d6e/nginx/2.log")
        );
    }
}
