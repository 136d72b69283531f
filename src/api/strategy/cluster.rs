//! Kinds of the smaller groups: HorizontalPodAutoscalers, Leases, PodDisruptionBudgets and
//! StorageClasses.

use super::{Printing, Strategy};
use crate::api::defaults::groups;
use crate::api::table::printers;
use crate::api::validation::strings::name_is_path_segment;

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
