//! CustomResourceDefinitions: keeping the registry in step with stored CRDs.
//!
//! Invariant: the set of served custom types always equals what the stored CRDs define;
//! a CRD is Established as soon as it is stored (there is no separate controller).

use super::objects::now_rfc3339;
use super::ApiState;
use crate::api::registry::types_from_crd;
use serde_json::{json, Value};

/// Marks a CRD as accepted and established (status the clients wait for). Other conditions
/// (`Terminating` from the cleanup controller, or a client's own) are kept, and so is the
/// transition time of a condition whose status does not change.
pub fn set_status(crd: &mut Value) {
    let now = now_rfc3339();
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

/// Registers the types of a stored (or updated) CRD.
pub fn register(state: &ApiState, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    state.registry.set_custom(name, types_from_crd(crd));
}

/// Removes the types of a deleted CRD.
pub fn unregister(state: &ApiState, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    state.registry.set_custom(name, Vec::new());
}

/// Loads every stored CRD into the registry (at start-up).
pub async fn load_all(state: &ApiState) -> Result<usize, super::status::ApiError> {
    let (records, _) = state
        .store
        .list("apiextensions.k8s.io/customresourcedefinitions/")
        .await?;
    for r in &records {
        let crd = super::objects::parse_record(r)?;
        register(state, &crd);
    }
    Ok(records.len())
}
