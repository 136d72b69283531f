//! `metadata` checks shared by every kind: name/generateName, namespace scope, labels,
//! annotations, owner references, finalizers.
//!
//! Invariant: errors come in upstream's order and with upstream's paths (note that label and
//! annotation errors point at the map, not at the key, as upstream does).

use serde_json::{Map, Value};

use super::field::{FieldError, FieldPath};
use super::json::{arr_of, int_of, str_of};
use super::strings::{is_qualified_name, is_valid_label_value, name_is_dns_label, NameFn};

/// Upstream's limit on the summed size of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * 1024;

/// Non-negative integer fields (`replicas`, `generation`, ...).
pub(super) fn validate_nonnegative(v: Option<i64>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(n) = v.filter(|n| *n < 0) {
        errs.push(FieldError::invalid(
            path.as_str(),
            n,
            "must be greater than or equal to 0",
        ));
    }
}

/// Label keys and values of a `map[string]string` (metadata labels, selector matchLabels).
pub(super) fn validate_labels(
    labels: Option<&Map<String, Value>>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    for (k, v) in labels.into_iter().flatten() {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(path.as_str(), k.as_str(), &msg));
        }
        let v = v.as_str().unwrap_or_default();
        for msg in is_valid_label_value(v) {
            errs.push(FieldError::invalid(path.as_str(), v, &msg));
        }
    }
}

/// Annotation keys (qualified names, case-insensitive) and the 256 KiB total.
pub(super) fn validate_annotations(
    annotations: Option<&Map<String, Value>>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path.as_str(), k.as_str(), &msg));
        }
        total += k.len() + v.as_str().map(str::len).unwrap_or_default();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError::too_long(
            path.as_str(),
            TOTAL_ANNOTATION_SIZE_LIMIT_B,
        ));
    }
}

/// Upstream's `ValidateObjectMeta` for a create.
pub(crate) fn validate_object_meta(
    meta: Option<&Value>,
    namespaced: bool,
    name_fn: NameFn,
    errs: &mut Vec<FieldError>,
) {
    let path = FieldPath::new("metadata");
    let generate_name = str_of(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                path.child("generateName").as_str(),
                generate_name,
                &msg,
            ));
        }
    }
    let name = str_of(meta, "name");
    if name.is_empty() {
        // The API server fills the name from generateName before validating a create.
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                path.child("name").as_str(),
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid(path.child("name").as_str(), name, &msg));
        }
    }
    let namespace = str_of(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(path.child("namespace").as_str(), ""));
        } else {
            for msg in name_is_dns_label(namespace, false) {
                errs.push(FieldError::invalid(
                    path.child("namespace").as_str(),
                    namespace,
                    &msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            path.child("namespace").as_str(),
            "not allowed on this type",
        ));
    }
    validate_nonnegative(int_of(meta, "generation"), &path.child("generation"), errs);
    validate_labels(
        meta.and_then(|m| m.get("labels"))
            .and_then(Value::as_object),
        &path.child("labels"),
        errs,
    );
    validate_annotations(
        meta.and_then(|m| m.get("annotations"))
            .and_then(Value::as_object),
        &path.child("annotations"),
        errs,
    );
    // Upstream reports owner-reference problems without the list index.
    let owners = path.child("ownerReferences");
    for r in arr_of(meta, "ownerReferences") {
        let r = Some(r);
        let api_version = str_of(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or_default();
        if version.is_empty() {
            errs.push(FieldError::invalid(
                owners.child("apiVersion").as_str(),
                api_version,
                "version must not be empty",
            ));
        }
        for key in ["kind", "name", "uid"] {
            let v = str_of(r, key);
            if v.is_empty() {
                errs.push(FieldError::invalid(
                    owners.child(key).as_str(),
                    v,
                    "must not be empty",
                ));
            }
        }
    }
    for f in arr_of(meta, "finalizers") {
        let f = f.as_str().unwrap_or_default();
        for msg in is_qualified_name(f) {
            errs.push(FieldError::invalid(
                path.child("finalizers").as_str(),
                f,
                &msg,
            ));
        }
    }
}
