//! apiregistration.k8s.io APIServices: the aggregation layer's registry of served
//! group/versions. This server serves every group itself, so each APIService it keeps is
//! `Local` (no `spec.service`) and Available with reason `Local`, as upstream's
//! local-available controller sets it. The API server writes one per served built-in
//! group/version at every start, with upstream's priorities ([`priority`]).
//!
//! Invariant: the name of an APIService is `<version>.<group>` of its spec.

use super::{Printing, Strategy};
use crate::api::table::printers;
use crate::api::validation::strings::name_is_path_segment;
use crate::api::validation::FieldError;
use serde_json::{json, Value};

pub static API_SERVICE: Strategy = Strategy {
    kind: "APIService",
    name_rule: name_is_path_segment,
    validate: validate_api_service,
    printer: Printing::Builtin(&printers::API_SERVICE),
    ..Strategy::GENERIC
};

/// Upstream's `(groupPriorityMinimum, versionPriority)` of the built-in group/versions
/// (kube-apiserver's `apiVersionPriorities`); `None` for those upstream creates no
/// APIService for (apiregistration.k8s.io itself, custom groups).
pub fn priority(group: &str, version: &str) -> Option<(i64, i64)> {
    Some(match (group, version) {
        ("", "v1") => (18000, 1),
        ("apps", "v1") => (17800, 15),
        ("events.k8s.io", "v1") => (17750, 15),
        ("authentication.k8s.io", "v1") => (17700, 15),
        ("authorization.k8s.io", "v1") => (17600, 15),
        ("autoscaling", "v1") => (17500, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("batch", "v1") => (17400, 15),
        ("certificates.k8s.io", "v1") => (17300, 15),
        ("networking.k8s.io", "v1") => (17200, 15),
        ("policy", "v1") => (17100, 15),
        ("rbac.authorization.k8s.io", "v1") => (17000, 15),
        ("storage.k8s.io", "v1") => (16800, 15),
        ("apiextensions.k8s.io", "v1") => (16700, 15),
        ("admissionregistration.k8s.io", "v1") => (16700, 15),
        ("scheduling.k8s.io", "v1") => (16600, 15),
        ("coordination.k8s.io", "v1") => (16500, 15),
        ("node.k8s.io", "v1") => (16300, 15),
        ("discovery.k8s.io", "v1") => (16200, 15),
        ("resource.k8s.io", "v1") => (16200, 21),
        ("flowcontrol.apiserver.k8s.io", "v1") => (16100, 21),
        _ => return None,
    })
}

/// The name upstream gives the APIService of a group/version: `v1.apps`, `v1.` for core.
pub fn name_of(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

/// A Local APIService for a built-in group/version, with its Available condition.
pub fn local_api_service(group: &str, version: &str, now: &str) -> Option<Value> {
    let (group_priority, version_priority) = priority(group, version)?;
    Some(json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": name_of(group, version), "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
        "spec": {"group": group, "version": version,
                 "groupPriorityMinimum": group_priority, "versionPriority": version_priority},
        "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local",
                    "message": "Local APIServices are always available", "lastTransitionTime": now}]},
    }))
}

fn validate_api_service(svc: &Value, errs: &mut Vec<FieldError>) {
    let spec = &svc["spec"];
    let name = svc["metadata"]["name"].as_str().unwrap_or_default();
    let (group, version) = (
        spec["group"].as_str().unwrap_or_default(),
        spec["version"].as_str().unwrap_or_default(),
    );
    let want = name_of(group, version);
    if name != want {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            &format!("must be `spec.version+\".\"+spec.group`: {want:?}"),
        ));
    }
    if version.is_empty() {
        errs.push(FieldError::required("spec.version", ""));
    }
    for (field, min) in [("groupPriorityMinimum", 1), ("versionPriority", 1)] {
        let v = spec[field].as_i64().unwrap_or(0);
        if !(min..=20000).contains(&v) {
            errs.push(FieldError::invalid(
                &format!("spec.{field}"),
                v,
                "must be positive and less than 20000",
            ));
        }
    }
    let local = spec.get("service").is_none_or(Value::is_null);
    if local && spec["caBundle"].as_str().is_some_and(|c| !c.is_empty()) {
        errs.push(FieldError::invalid(
            "spec.caBundle",
            "<bytes>",
            "local APIServices may not have a caBundle",
        ));
    }
    if local && spec["insecureSkipTLSVerify"].as_bool() == Some(true) {
        errs.push(FieldError::invalid(
            "spec.insecureSkipTLSVerify",
            "true",
            "local APIServices may not have insecureSkipTLSVerify",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_api_services_validate_and_carry_upstream_priorities() {
        let svc = local_api_service("apps", "v1", "2025-01-01T00:00:00Z").unwrap();
        assert_eq!(svc["metadata"]["name"], "v1.apps");
        assert_eq!(svc["spec"]["groupPriorityMinimum"], 17800);
        assert!(API_SERVICE.validate_create(&svc, false).is_empty());
        let core = local_api_service("", "v1", "2025-01-01T00:00:00Z").unwrap();
        assert_eq!(core["metadata"]["name"], "v1.");
        assert!(API_SERVICE.validate_create(&core, false).is_empty());
        assert!(local_api_service("example.com", "v1", "x").is_none());
    }
}
