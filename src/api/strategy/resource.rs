//! resource.k8s.io/v1 (Dynamic Resource Allocation, GA in 1.34): DeviceClasses,
//! ResourceClaims, ResourceClaimTemplates and ResourceSlices, stored and served with
//! upstream's request defaults (`allocationMode: ExactCount`, `count: 1`) and immutable
//! claim specs. Nothing here allocates devices; that is a scheduler's job.
//!
//! Invariant: a ResourceClaim's spec never changes after creation.

use super::{immutable, Printing, Strategy};
use crate::api::defaults::json::{each_obj, obj_mut};
use crate::api::table::printers;
use crate::api::validation::FieldError;
use serde_json::{json, Map, Value};

pub static DEVICE_CLASS: Strategy = Strategy {
    kind: "DeviceClass",
    printer: Printing::Builtin(&printers::DEVICE_CLASS),
    ..Strategy::GENERIC
};

pub static RESOURCE_CLAIM: Strategy = Strategy {
    kind: "ResourceClaim",
    defaults: claim_defaults,
    validate: validate_claim,
    validate_update: claim_spec_unchanged,
    printer: Printing::Builtin(&printers::RESOURCE_CLAIM),
    ..Strategy::GENERIC
};

pub static RESOURCE_CLAIM_TEMPLATE: Strategy = Strategy {
    kind: "ResourceClaimTemplate",
    defaults: template_defaults,
    validate_update: template_spec_unchanged,
    printer: Printing::Builtin(&printers::RESOURCE_CLAIM_TEMPLATE),
    ..Strategy::GENERIC
};

pub static RESOURCE_SLICE: Strategy = Strategy {
    kind: "ResourceSlice",
    validate: validate_slice,
    printer: Printing::Builtin(&printers::RESOURCE_SLICE),
    ..Strategy::GENERIC
};

/// `SetDefaults_ExactDeviceRequest` / `SetDefaults_DeviceSubRequest`.
fn request_defaults(r: &mut Map<String, Value>) {
    if r.get("allocationMode")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        r.insert("allocationMode".into(), json!("ExactCount"));
    }
    if r.get("allocationMode").and_then(Value::as_str) == Some("ExactCount")
        && r.get("count").and_then(Value::as_i64).unwrap_or(0) == 0
    {
        r.insert("count".into(), json!(1));
    }
}

fn claim_spec_defaults(spec: &mut Map<String, Value>) {
    if let Some(devices) = obj_mut(spec, "devices") {
        each_obj(devices, "requests", |req| {
            if let Some(exactly) = obj_mut(req, "exactly") {
                request_defaults(exactly);
            }
            each_obj(req, "firstAvailable", request_defaults);
        });
    }
}

fn claim_defaults(o: &mut Map<String, Value>) {
    if let Some(spec) = obj_mut(o, "spec") {
        claim_spec_defaults(spec);
    }
}

fn template_defaults(o: &mut Map<String, Value>) {
    if let Some(spec) = obj_mut(o, "spec").and_then(|s| obj_mut(s, "spec")) {
        claim_spec_defaults(spec);
    }
}

fn validate_claim(claim: &Value, errs: &mut Vec<FieldError>) {
    let mut names = Vec::new();
    for (i, r) in claim["spec"]["devices"]["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = r["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(
                &format!("spec.devices.requests[{i}].name"),
                "",
            ));
        } else if names.contains(&name) {
            errs.push(FieldError::duplicate(
                &format!("spec.devices.requests[{i}].name"),
                name,
            ));
        }
        names.push(name);
        let exactly = r.get("exactly").is_some_and(|v| !v.is_null());
        let first = r.get("firstAvailable").is_some_and(|v| !v.is_null());
        if exactly == first {
            errs.push(FieldError::required(
                &format!("spec.devices.requests[{i}]"),
                "exactly one of `exactly` or `firstAvailable` is required",
            ));
        }
        if exactly
            && r["exactly"]["deviceClassName"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        {
            errs.push(FieldError::required(
                &format!("spec.devices.requests[{i}].exactly.deviceClassName"),
                "",
            ));
        }
    }
}

fn claim_spec_unchanged(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["spec"] != new["spec"] {
        errs.push(immutable("spec", &new["spec"], "field is immutable"));
    }
}

fn template_spec_unchanged(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["spec"] != new["spec"] {
        errs.push(immutable("spec", &new["spec"], "field is immutable"));
    }
}

fn validate_slice(slice: &Value, errs: &mut Vec<FieldError>) {
    let spec = &slice["spec"];
    if spec["driver"].as_str().unwrap_or_default().is_empty() {
        errs.push(FieldError::required("spec.driver", ""));
    }
    if spec["pool"]["name"].as_str().unwrap_or_default().is_empty() {
        errs.push(FieldError::required("spec.pool.name", ""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_requests_default_to_one_device() {
        let mut claim = json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}}]}}});
        RESOURCE_CLAIM.apply_defaults(&mut claim);
        let r = &claim["spec"]["devices"]["requests"][0]["exactly"];
        assert_eq!(r["allocationMode"], "ExactCount");
        assert_eq!(r["count"], 1);
        assert!(RESOURCE_CLAIM.validate_create(&claim, true).is_empty());
    }
}
