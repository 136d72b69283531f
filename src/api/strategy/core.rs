//! The smaller core/v1 kinds: nodes, persistent volumes and claims, quotas, limit ranges,
//! service accounts, events (both API groups), bindings and component statuses.

use super::{keep_status, set_status, Printing, Strategy};
use crate::api::defaults::core_v1;
use crate::api::table::printers;
use crate::api::validation::FieldError;
use serde_json::{json, Value};

/// ComponentStatuses are computed at each read (`apiserver::handlers::live`), never stored.
pub static COMPONENT_STATUS: Strategy = Strategy {
    kind: "ComponentStatus",
    printer: Printing::Builtin(&printers::COMPONENT_STATUS),
    storage: super::Storage::Live,
    ..Strategy::GENERIC
};

/// A kubelet registers its Node with the status it observed, so that status is kept.
pub static NODE: Strategy = Strategy {
    kind: "Node",
    defaults: core_v1::node,
    initial_status: keep_status,
    validate_update: node_update,
    printer: Printing::Builtin(&printers::NODE),
    ..Strategy::GENERIC
};

/// Upstream's `ValidateNodeUpdate`: once set, a node's pod ranges and provider ID stay (the
/// node IPAM controller may set them only from empty).
fn node_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let old_cidrs = &old["spec"]["podCIDRs"];
    if old_cidrs.as_array().is_some_and(|a| !a.is_empty()) && *old_cidrs != new["spec"]["podCIDRs"]
    {
        errs.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_id = old["spec"]["providerID"].as_str().unwrap_or_default();
    if !old_id.is_empty() && new["spec"]["providerID"].as_str() != Some(old_id) {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
}

pub static PERSISTENT_VOLUME: Strategy = Strategy {
    kind: "PersistentVolume",
    defaults: core_v1::pv,
    initial_status: |pv| set_status(pv, json!({"phase": "Pending"})),
    printer: Printing::Builtin(&printers::PERSISTENT_VOLUME),
    ..Strategy::GENERIC
};

pub static PERSISTENT_VOLUME_CLAIM: Strategy = Strategy {
    kind: "PersistentVolumeClaim",
    defaults: core_v1::pvc,
    initial_status: |pvc| set_status(pvc, json!({"phase": "Pending"})),
    printer: Printing::Builtin(&printers::PERSISTENT_VOLUME_CLAIM),
    ..Strategy::GENERIC
};

pub static RESOURCE_QUOTA: Strategy = Strategy {
    kind: "ResourceQuota",
    printer: Printing::Builtin(&printers::RESOURCE_QUOTA),
    ..Strategy::GENERIC
};

pub static SERVICE_ACCOUNT: Strategy = Strategy {
    kind: "ServiceAccount",
    printer: Printing::Builtin(&printers::SERVICE_ACCOUNT),
    ..Strategy::GENERIC
};

/// core/v1 and events.k8s.io/v1 Events print alike.
pub static EVENT: Strategy = Strategy {
    kind: "Event",
    printer: Printing::Builtin(&printers::EVENT),
    ..Strategy::GENERIC
};
