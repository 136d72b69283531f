//! The smaller core/v1 kinds: nodes, persistent volumes and claims, quotas, limit ranges,
//! service accounts, events (both API groups), bindings and component statuses.

use super::{keep_status, set_status, Printing, Strategy};
use crate::api::defaults::core_v1;
use crate::api::table::printers;
use crate::api::validation::{events, FieldError};
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
    validate_update: pvc_update,
    printer: Printing::Builtin(&printers::PERSISTENT_VOLUME_CLAIM),
    ..Strategy::GENERIC
};

/// Upstream's `ValidatePersistentVolumeClaimUpdate`: a claim's spec is fixed at creation
/// (quota and limits were checked against it) except the binder setting `volumeName` once,
/// a class given to a claim that had none (retroactive default class), the attributes class,
/// and the storage request of a bound claim (expansion; whether the class allows it is the
/// PersistentVolumeClaimResize admission plugin's question). A lowered request must stay
/// above the capacity the volume has.
fn pvc_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let (mut o, mut n) = (old["spec"].clone(), new["spec"].clone());
    let volume_unset = o["volumeName"].as_str().unwrap_or_default().is_empty();
    let class_unset = o["storageClassName"].is_null();
    for (f, when) in [
        ("volumeName", volume_unset),
        ("storageClassName", class_unset),
        ("volumeAttributesClassName", true),
    ] {
        if when {
            o[f] = n[f].clone();
        }
    }
    if new["status"]["phase"] == "Bound" {
        o["resources"]["requests"]["storage"] = n["resources"]["requests"]["storage"].clone();
    }
    // Unset and empty fields are alike (`Semantic.DeepEqual` on the decoded spec).
    for v in [&mut o, &mut n] {
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
    }
    if o != n {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and \
             volumeAttributesClassName for bound claims",
        ));
        return;
    }
    let q = |v: &Value| {
        v.as_str()
            .and_then(|s| crate::api::quantity::Quantity::parse(s).ok())
    };
    // Only a lowered request is checked: it may go back down towards the capacity (to
    // recover from a failed expansion) but not to it or below, since volumes never shrink.
    // A claim whose volume is larger than it asked for keeps taking other updates.
    let requested = q(&new["spec"]["resources"]["requests"]["storage"]);
    let before = q(&old["spec"]["resources"]["requests"]["storage"]);
    let capacity = q(&old["status"]["capacity"]["storage"]);
    if let (Some(r), Some(b), Some(c)) = (requested, before, capacity) {
        if r < b && r <= c {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
    }
}

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

/// core/v1 and events.k8s.io/v1 Events print alike; each API validates as upstream's does.
pub static EVENT: Strategy = Strategy {
    kind: "Event",
    printer: Printing::Builtin(&printers::EVENT),
    validate_create_only: events::validate_event_create,
    validate: events::validate_event,
    validate_update: events::validate_event_update,
    ..Strategy::GENERIC
};
