//! CustomResourceDefinitions: keeping the registry in step with stored CRDs.
//!
//! Invariant: the set of served custom types always equals what the stored CRDs define;
//! a CRD is Established as soon as it is stored (there is no separate controller).

use super::ApiState;
use crate::api::registry::types_from_crd;
use serde_json::Value;

/// Registers the types of a stored (or updated) CRD, unless a later write of it has already
/// set them.
pub fn register(state: &ApiState, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    state
        .registry
        .set_custom_at(name, stored_revision(crd), types_from_crd(crd));
}

/// Removes the types of a deleted CRD (`crd` as deleted: its resourceVersion is the revision
/// of the deletion, later than any write of it).
pub fn unregister(state: &ApiState, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    state
        .registry
        .set_custom_at(name, stored_revision(crd), Vec::new());
}

fn stored_revision(crd: &Value) -> u64 {
    crd["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
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
