//! CustomResourceDefinitions: keeping the registry in step with stored CRDs.
//!
//! Invariant: the set of served custom types always equals what the stored CRDs define;
//! a CRD is Established as soon as it is stored (there is no separate controller).

use super::ApiState;
use crate::api::registry::types_from_crd;
use serde_json::Value;

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
