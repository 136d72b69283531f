//! Namespaces: DNS-label names, the `kubernetes` finalizer in `spec.finalizers` (changed only
//! through the finalize subresource), the Active
//! phase, and deletion that leaves the namespace Terminating until its content is gone.

use super::{set_status, Delete, Printing, Strategy};
use crate::api::defaults::core_v1;
use crate::api::table::printers;
use crate::api::validation::strings::name_is_dns_label;
use serde_json::json;

pub static NAMESPACE: Strategy = Strategy {
    kind: "Namespace",
    defaults: core_v1::namespace,
    name_rule: name_is_dns_label,
    initial_status: |ns| set_status(ns, json!({"phase": "Active"})),
    // Only the finalize subresource changes a namespace's finalizers.
    prepare_for_update: |old, new| new["spec"]["finalizers"] = old["spec"]["finalizers"].clone(),
    printer: Printing::Builtin(&printers::NAMESPACE),
    delete: Delete {
        spec_finalizers: true,
        mark_deleting: |ns| ns["status"]["phase"] = json!("Terminating"),
        ..Delete::IMMEDIATE
    },
    ..Strategy::GENERIC
};
