//! Create-time validation of objects, with upstream's field paths and messages, and the
//! rendering of failures into the 422 `Invalid` Status message and causes.
//!
//! Invariant: `validate` runs on a defaulted object (see `super::defaults`) and reports the
//! mistakes users commonly make, in upstream's order and wording; it never rejects an object
//! kube-apiserver would accept for the checks it implements. It is deliberately not
//! exhaustive: unchecked fields are accepted.
//!
//! Depends on `super::selector` to judge selectors against template labels.

mod core_v1;
mod crd;
mod cron;
mod field;
mod json;
mod meta;
mod pod;
mod rbac;
pub mod strings;
mod workloads;

use serde_json::Value;

pub use self::core_v1::MAX_SECRET_SIZE;
pub use self::field::{causes_json, format_invalid_message, BadValue, FieldError, FieldErrorType};
pub use self::meta::TOTAL_ANNOTATION_SIZE_LIMIT_B;

use self::strings::{
    name_is_dns1035_label, name_is_dns_label, name_is_dns_subdomain, name_is_path_segment, NameFn,
};

/// The rule `metadata.name` must follow for a kind.
fn name_rule(group: &str, kind: &str) -> NameFn {
    match (group, kind) {
        ("", "Namespace") => name_is_dns_label,
        ("", "Service") => name_is_dns1035_label,
        ("rbac.authorization.k8s.io", _) => name_is_path_segment,
        ("autoscaling", "HorizontalPodAutoscaler") => name_is_path_segment,
        _ => name_is_dns_subdomain,
    }
}

/// Validates a new object of `group`/`kind` (group `""` for core); `namespaced` is the
/// resource's scope. Unknown kinds (custom resources) get the metadata checks only.
pub fn validate(group: &str, kind: &str, obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let is_crd = (group, kind) == ("apiextensions.k8s.io", "CustomResourceDefinition");
    meta::validate_object_meta(
        obj.get("metadata"),
        namespaced,
        name_rule(group, kind),
        &mut errs,
    );
    if is_crd {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for msg in crd::name_errors(obj) {
            errs.push(FieldError::invalid("metadata.name", name, &msg));
        }
    }
    match (group, kind) {
        ("", "Pod") => pod::validate_pod(obj, &mut errs),
        ("", "Service") => core_v1::validate_service(obj, &mut errs),
        ("", "ConfigMap") => core_v1::validate_config_map(obj, &mut errs),
        ("", "Secret") => core_v1::validate_secret(obj, &mut errs),
        ("apps", "Deployment" | "ReplicaSet") => workloads::validate_replicated(obj, &mut errs),
        ("apps", "StatefulSet") => workloads::validate_statefulset(obj, &mut errs),
        ("apps", "DaemonSet") => workloads::validate_daemonset(obj, &mut errs),
        ("batch", "Job") => workloads::validate_job(obj, &mut errs),
        ("batch", "CronJob") => workloads::validate_cronjob(obj, &mut errs),
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            rbac::validate_binding(obj, false, &mut errs)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            rbac::validate_binding(obj, true, &mut errs)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::validate_crd(obj, &mut errs),
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod workload_tests;
