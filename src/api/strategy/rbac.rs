//! rbac.authorization.k8s.io: path-segment names for every kind, binding defaults and
//! validation, and the binding printers (roles use the default convertor, as upstream).

use super::{Printing, Strategy};
use crate::api::defaults::groups;
use crate::api::table::printers;
use crate::api::validation::rbac::validate_binding;
use crate::api::validation::strings::name_is_path_segment;

pub static ROLE: Strategy = Strategy {
    kind: "Role",
    name_rule: name_is_path_segment,
    ..Strategy::GENERIC
};

pub static CLUSTER_ROLE: Strategy = Strategy {
    kind: "ClusterRole",
    name_rule: name_is_path_segment,
    ..Strategy::GENERIC
};

pub static ROLE_BINDING: Strategy = Strategy {
    kind: "RoleBinding",
    defaults: groups::role_binding,
    name_rule: name_is_path_segment,
    validate: |obj, errs| validate_binding(obj, false, errs),
    printer: Printing::Builtin(&printers::ROLE_BINDING),
    ..Strategy::GENERIC
};

pub static CLUSTER_ROLE_BINDING: Strategy = Strategy {
    kind: "ClusterRoleBinding",
    defaults: groups::role_binding,
    name_rule: name_is_path_segment,
    validate: |obj, errs| validate_binding(obj, true, errs),
    printer: Printing::Builtin(&printers::CLUSTER_ROLE_BINDING),
    ..Strategy::GENERIC
};
