//! Kinds of the smaller groups: HorizontalPodAutoscalers, Leases, PodDisruptionBudgets and
//! StorageClasses.

use super::{Printing, Strategy};
use crate::api::defaults::groups;
use crate::api::table::printers;
use crate::api::validation::strings::name_is_path_segment;
use serde_json::{json, Value};

/// The provisioner name of the default class, as k3s's local-path-provisioner registers it.
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
pub const LOCAL_PATH_CLASS: &str = "local-path";

/// The default StorageClass the server creates when absent, as k3s ships it: volumes on a
/// directory of the node the first consumer is scheduled to, deleted with their claim.
pub fn local_path_storage_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": LOCAL_PATH_CLASS, "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

pub static HORIZONTAL_POD_AUTOSCALER: Strategy = Strategy {
    kind: "HorizontalPodAutoscaler",
    defaults: groups::hpa,
    name_rule: name_is_path_segment,
    printer: Printing::Builtin(&printers::HPA),
    ..Strategy::GENERIC
};

pub static LEASE: Strategy = Strategy {
    kind: "Lease",
    printer: Printing::Builtin(&printers::LEASE),
    ..Strategy::GENERIC
};

pub static POD_DISRUPTION_BUDGET: Strategy = Strategy {
    kind: "PodDisruptionBudget",
    printer: Printing::Builtin(&printers::POD_DISRUPTION_BUDGET),
    ..Strategy::GENERIC
};

pub static STORAGE_CLASS: Strategy = Strategy {
    kind: "StorageClass",
    defaults: groups::storage_class,
    printer: Printing::Builtin(&printers::STORAGE_CLASS),
    ..Strategy::GENERIC
};
