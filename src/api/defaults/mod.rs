//! Defaulting of objects as kube-apiserver applies it when decoding a request or a stored
//! object: the fields users see filled in (`restartPolicy: Always`, port `protocol: TCP`,
//! Deployment strategy, Secret `type: Opaque`, ...).
//!
//! Invariant: `apply_defaults` only fills unset fields, so it never overwrites a user's value
//! and is idempotent (applying it twice equals applying it once). Server-side allocation
//! (cluster IPs, names, uids) is not done here; the Job selector, which needs the new uid,
//! is the separate [`job_selector_defaults`].

mod core_v1;
mod groups;
mod json;
mod pod;
mod workloads;

use serde_json::Value;

pub use self::pod::default_pull_policy;
pub use self::workloads::job_selector_defaults;

/// Fills the defaults of a `group`/`kind` object (group `""` for core) in place.
/// Unknown kinds and non-object values are left unchanged.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    match (group, kind) {
        ("", "Pod") => pod::default_pod(o),
        ("", "PodTemplate") => {
            if let Some(t) = json::ensure_obj(o, "template") {
                pod::default_pod_template(t);
            }
        }
        ("", "ReplicationController") => workloads::replication_controller(o),
        ("", "Service") => core_v1::service(o),
        ("", "Secret") => core_v1::secret(o),
        ("", "Namespace") => core_v1::namespace(o),
        ("", "PersistentVolume") => core_v1::pv(o),
        ("", "PersistentVolumeClaim") => core_v1::pvc(o),
        ("", "Endpoints") => core_v1::endpoints(o),
        ("", "Node") => core_v1::node(o),
        ("apps", "Deployment") => workloads::deployment(o),
        ("apps", "ReplicaSet") => workloads::replica_set(o),
        ("apps", "StatefulSet") => workloads::stateful_set(o),
        ("apps", "DaemonSet") => workloads::daemon_set(o),
        ("batch", "Job") => workloads::job(o),
        ("batch", "CronJob") => workloads::cron_job(o),
        ("autoscaling", "HorizontalPodAutoscaler") => groups::hpa(o),
        ("networking.k8s.io", "NetworkPolicy") => groups::network_policy(o),
        ("networking.k8s.io", "IngressClass") => groups::ingress_class(o),
        ("storage.k8s.io", "StorageClass") => groups::storage_class(o),
        ("discovery.k8s.io", "EndpointSlice") => groups::endpoint_slice(o),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            groups::role_binding(o)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => groups::crd(o),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
