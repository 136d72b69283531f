//! CustomResourceDefinitions and the custom resources they define.
//!
//! A CRD is Established as soon as it is stored (skiff has no separate naming controller),
//! so create and update set its status; its types are (un)registered by the apiserver
//! ([`Bookkeeping::CustomTypes`]). Custom resources always carry a generation, print the
//! CRD's columns, and a status write changes nothing but status, as upstream's
//! custom-resource status strategy does.

use super::{keep_metadata, keep_status, Bookkeeping, Delete, Printing, Strategy};
use crate::api::defaults::groups;
use crate::api::validation::crd::{name_errors, validate_crd};
use crate::api::validation::FieldError;
use serde_json::{json, Value};

pub static CUSTOM_RESOURCE_DEFINITION: Strategy = Strategy {
    kind: "CustomResourceDefinition",
    defaults: groups::crd,
    validate: crd_validation,
    prepare_for_create: set_status,
    initial_status: keep_status,
    prepare_for_update: |_, new| set_status(new),
    prepare_for_status_update: crd_status_update,
    bookkeeping: Bookkeeping::CustomTypes,
    delete: Delete {
        finalizer: Some("customresourcecleanup.apiextensions.k8s.io"),
        ..Delete::IMMEDIATE
    },
    ..Strategy::GENERIC
};

/// Every custom resource type, whatever its CRD.
pub static CUSTOM: Strategy = Strategy {
    kind: "custom resource",
    generation_always: true,
    prepare_for_status_update: custom_status_update,
    printer: Printing::CrdColumns,
    ..Strategy::GENERIC
};

fn crd_validation(obj: &Value, errs: &mut Vec<FieldError>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    for msg in name_errors(obj) {
        errs.push(FieldError::invalid("metadata.name", name, &msg));
    }
    validate_crd(obj, errs);
}

/// Upstream resets the object metadata a status write may not touch
/// (`ResetObjectMetaForStatus`).
fn crd_status_update(old: &Value, new: &mut Value) {
    super::status_only(old, new);
    keep_metadata(
        old,
        new,
        &["labels", "annotations", "finalizers", "ownerReferences"],
    );
    // Established at once: the status is the server's, whatever the write sent.
    set_status(new);
}

/// Custom resources: everything but status (and the field managers) comes from the stored
/// object.
fn custom_status_update(old: &Value, new: &mut Value) {
    let status = new.get("status").cloned();
    let managed = new["metadata"].get("managedFields").cloned();
    let mut merged = old.clone();
    match status {
        Some(s) if !s.is_null() => merged["status"] = s,
        _ => {
            if let Some(o) = merged.as_object_mut() {
                o.remove("status");
            }
        }
    }
    if let Some(m) = merged["metadata"].as_object_mut() {
        match managed {
            Some(mf) => m.insert("managedFields".into(), mf),
            None => m.remove("managedFields"),
        };
    }
    *new = merged;
}

/// Marks a CRD as accepted and established (status the clients wait for). Other conditions
/// (`Terminating` from the cleanup controller, or a client's own) are kept, and so is the
/// transition time of a condition whose status does not change.
pub fn set_status(crd: &mut Value) {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let names = crd["spec"]["names"].clone();
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == json!(true))
        .filter_map(|v| v["name"].as_str().map(|s| json!(s)))
        .collect();
    let mut conditions: Vec<Value> = crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (type_, reason, message) in [
        ("NamesAccepted", "NoConflicts", "no conflicts found"),
        (
            "Established",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ),
    ] {
        let wanted = json!({"type": type_, "status": "True", "reason": reason,
                            "message": message, "lastTransitionTime": now});
        match conditions.iter_mut().find(|c| c["type"] == type_) {
            Some(c) if c["status"] == "True" => {
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
            Some(c) => *c = wanted,
            None => conditions.push(wanted),
        }
    }
    let status = crd["status"].as_object().cloned().unwrap_or_default();
    let mut status = Value::Object(status);
    status["acceptedNames"] = names;
    status["conditions"] = Value::Array(conditions);
    status["storedVersions"] = json!(stored);
    crd["status"] = status;
}
