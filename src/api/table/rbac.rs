//! `rbac.authorization.k8s.io` printers: RoleBinding and ClusterRoleBinding.
//! Role and ClusterRole have no upstream printer and use the default one.
//!
//! Invariant: subjects are split by kind into the wide Users / Groups /
//! ServiceAccounts columns, service accounts as `namespace/name`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{created, list_at, name, s, str_at};
use super::{col, no_conditions, wide, Col, Spec, AGE, NAME};

static ROLE_BINDING_COLUMNS: [Col; 6] = [
    NAME,
    col("Role", "string", "The role granted, as kind/name."),
    AGE,
    wide("Users", "string", "Users the binding grants the role to."),
    wide("Groups", "string", "Groups the binding grants the role to."),
    wide(
        "ServiceAccounts",
        "string",
        "Service accounts the binding grants the role to.",
    ),
];

static CLUSTER_ROLE_BINDING_COLUMNS: [Col; 6] = [
    NAME,
    col("Role", "string", "The cluster role granted, as kind/name."),
    AGE,
    wide("Users", "string", "Users the binding grants the role to."),
    wide("Groups", "string", "Groups the binding grants the role to."),
    wide(
        "ServiceAccounts",
        "string",
        "Service accounts the binding grants the role to.",
    ),
];

pub static ROLE_BINDING: Spec = Spec {
    columns: &ROLE_BINDING_COLUMNS,
    cells: binding_cells,
    conditions: no_conditions,
    list: None,
};

pub static CLUSTER_ROLE_BINDING: Spec = Spec {
    columns: &CLUSTER_ROLE_BINDING_COLUMNS,
    cells: binding_cells,
    conditions: no_conditions,
    list: None,
};

fn binding_cells(b: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subject in list_at(b, &["subjects"]) {
        let subject_name = str_at(subject, &["name"]);
        match str_at(subject, &["kind"]) {
            "ServiceAccount" => sas.push(format!(
                "{}/{subject_name}",
                str_at(subject, &["namespace"])
            )),
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            _ => {}
        }
    }
    vec![
        s(name(b)),
        s(format!(
            "{}/{}",
            str_at(b, &["roleRef", "kind"]),
            str_at(b, &["roleRef", "name"])
        )),
        s(since(created(b), now)),
        s(users.join(", ")),
        s(groups.join(", ")),
        s(sas.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::{json, Value};

    #[test]
    fn binding_splits_subjects_by_kind() {
        let b = json!({"metadata": {"name": "binding2", "creationTimestamp": ago(0)},
            "subjects": [{"kind": "User", "name": "user-name"},
                         {"kind": "Group", "name": "group-name"},
                         {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                         {"kind": "User", "name": "second"}],
            "roleRef": {"kind": "Role", "name": "role-name", "apiGroup": "rbac.authorization.k8s.io"}});
        assert_eq!(
            Value::Array(cells(&printers::ROLE_BINDING, &b)),
            json!([
                "binding2",
                "Role/role-name",
                "0s",
                "user-name, second",
                "group-name",
                "ns/sa"
            ])
        );
        let crb = json!({"metadata": {"name": "admin"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}});
        assert_eq!(
            Value::Array(cells(&printers::CLUSTER_ROLE_BINDING, &crb)),
            json!([
                "admin",
                "ClusterRole/cluster-admin",
                "<unknown>",
                "",
                "",
                ""
            ])
        );
    }
}
