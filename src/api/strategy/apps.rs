//! apps/v1 workloads (Deployments, ReplicaSets, StatefulSets, DaemonSets, controller
//! revisions) and the core ReplicationController: their defaults and validation, the
//! immutable selector, and Deployment status writes that may not relabel.

use super::{immutable, keep_metadata, Printing, Strategy};
use crate::api::defaults::workloads;
use crate::api::table::printers;
use crate::api::validation::workloads::{
    validate_daemonset, validate_replicated, validate_replication_controller, validate_statefulset,
};
use crate::api::validation::FieldError;
use serde_json::Value;

pub static DEPLOYMENT: Strategy = Strategy {
    kind: "Deployment",
    defaults: workloads::deployment,
    validate: validate_replicated,
    validate_update: selector_unchanged,
    prepare_for_status_update: deployment_status_update,
    printer: Printing::Builtin(&printers::DEPLOYMENT),
    ..Strategy::GENERIC
};

pub static REPLICA_SET: Strategy = Strategy {
    kind: "ReplicaSet",
    defaults: workloads::replica_set,
    validate: validate_replicated,
    validate_update: selector_unchanged,
    printer: Printing::Builtin(&printers::REPLICA_SET),
    ..Strategy::GENERIC
};

pub static STATEFUL_SET: Strategy = Strategy {
    kind: "StatefulSet",
    defaults: workloads::stateful_set,
    validate: validate_statefulset,
    validate_update: selector_unchanged,
    printer: Printing::Builtin(&printers::STATEFUL_SET),
    ..Strategy::GENERIC
};

pub static DAEMON_SET: Strategy = Strategy {
    kind: "DaemonSet",
    defaults: workloads::daemon_set,
    validate: validate_daemonset,
    validate_update: selector_unchanged,
    printer: Printing::Builtin(&printers::DAEMON_SET),
    ..Strategy::GENERIC
};

pub static CONTROLLER_REVISION: Strategy = Strategy {
    kind: "ControllerRevision",
    printer: Printing::Builtin(&printers::CONTROLLER_REVISION),
    ..Strategy::GENERIC
};

/// core/v1 ReplicationControllers (upstream keeps them in pkg/registry/core, but they are
/// the apps/v1 ReplicaSet's ancestor and share its rules). Their selector may change.
pub static REPLICATION_CONTROLLER: Strategy = Strategy {
    kind: "ReplicationController",
    defaults: workloads::replication_controller,
    validate: validate_replication_controller,
    printer: Printing::Builtin(&printers::REPLICATION_CONTROLLER),
    ..Strategy::GENERIC
};

/// apps/v1 selectors cannot change after creation.
fn selector_unchanged(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["spec"]["selector"] != new["spec"]["selector"] {
        errs.push(immutable(
            "spec.selector",
            &new["spec"]["selector"],
            "field is immutable",
        ));
    }
}

/// Upstream's deployment status strategy also keeps the labels.
fn deployment_status_update(old: &Value, new: &mut Value) {
    super::status_only(old, new);
    keep_metadata(old, new, &["labels"]);
}
