//! RoleBinding and ClusterRoleBinding checks (roleRef and subjects).
//!
//! Invariant: runs after defaulting, which fills `roleRef.apiGroup` and subject `apiGroup`s,
//! so a missing `roleRef` surfaces as upstream reports it: unsupported kind, required name.

use serde_json::Value;

use super::field::{FieldError, FieldPath};
use super::json::{arr_of, field, str_of};
use super::strings::{is_dns1123_subdomain, name_is_path_segment};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub(crate) fn validate_binding(obj: &Value, cluster: bool, errs: &mut Vec<FieldError>) {
    let role_ref = field(Some(obj), "roleRef");
    let rp = FieldPath::new("roleRef");
    let group = str_of(role_ref, "apiGroup");
    if group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            rp.child("apiGroup").as_str(),
            group,
            &[RBAC_GROUP],
        ));
    }
    let kind = str_of(role_ref, "kind");
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(FieldError::not_supported(
            rp.child("kind").as_str(),
            kind,
            kinds,
        ));
    }
    let name = str_of(role_ref, "name");
    if name.is_empty() {
        errs.push(FieldError::required(rp.child("name").as_str(), ""));
    } else {
        for msg in name_is_path_segment(name, false) {
            errs.push(FieldError::invalid(rp.child("name").as_str(), name, &msg));
        }
    }
    for (i, s) in arr_of(Some(obj), "subjects").iter().enumerate() {
        validate_subject(
            Some(s),
            !cluster,
            &FieldPath::new("subjects").index(i),
            errs,
        );
    }
}

fn validate_subject(
    s: Option<&Value>,
    namespaced: bool,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let name = str_of(s, "name");
    if name.is_empty() {
        errs.push(FieldError::required(path.child("name").as_str(), ""));
    }
    let group = str_of(s, "apiGroup");
    match str_of(s, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for msg in is_dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(path.child("name").as_str(), name, &msg));
                }
            }
            if !group.is_empty() {
                errs.push(FieldError::not_supported(
                    path.child("apiGroup").as_str(),
                    group,
                    &[""],
                ));
            }
            if !namespaced && str_of(s, "namespace").is_empty() {
                errs.push(FieldError::required(path.child("namespace").as_str(), ""));
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                errs.push(FieldError::not_supported(
                    path.child("apiGroup").as_str(),
                    group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            path.child("kind").as_str(),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}
