//! PATCH and server-side apply for Kubernetes objects held as `serde_json::Value`.
//!
//! Owns the four patch types the API server accepts (`PatchType`): RFC 6902 JSON patch,
//! RFC 7386 merge patch, Kubernetes strategic merge patch (`strategic`), and server-side
//! apply with `metadata.managedFields` bookkeeping (`apply`, `fields`). The per-kind patch
//! strategies (list merge keys, list types, `retainKeys`) live in one table (`merge_keys`).
//!
//! Invariant: every function here is pure. The target object is never mutated in place: a
//! failed patch leaves the caller's object untouched, and a successful one returns a new
//! object the caller validates and stores. Errors say what was wrong in the request; the
//! API server alone maps them to HTTP status codes (the intended code is noted per variant).

mod apply;
mod fields;
mod fields_raw;
mod merge_keys;
mod ssa_merge;
mod strategic;

use serde_json::Value;

pub use apply::{apply, record_update};
pub use merge_keys::{field_strategy, FieldStrategy};
pub use strategic::strategic_merge_patch;

/// The body types of a PATCH request, chosen by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply (the body may be JSON, which is YAML).
    Apply,
}

/// Everything that can go wrong while patching or applying.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not a well-formed patch of its type, or a directive is spelled wrongly.
    /// Upstream answers 400 BadRequest.
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation could not be applied (failed `test`, missing path, ...).
    /// Upstream answers 422 Unprocessable Entity.
    #[error("json patch operation {operation} on {path:?} failed: {reason}")]
    JsonPatchFailed {
        /// Zero-based index of the failing operation.
        operation: usize,
        /// The operation's `path`.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// A strategic merge patch does not fit the object, e.g. a list item lacks its merge
    /// key or `$setElementOrder` contradicts the patch list. Upstream answers 422 (or 500).
    #[error("{0}")]
    Unprocessable(String),
    /// Strategic merge patch on a kind without compiled-in patch strategies, which is every
    /// custom resource. Upstream answers 415 Unsupported Media Type; clients then fall back
    /// to a merge patch.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
         (strategic merge patch is not supported for {kind} in group {group:?})"
    )]
    UnsupportedKind {
        /// API group of the kind ("" for core).
        group: String,
        /// The kind.
        kind: String,
    },
    /// The server-side apply configuration itself is unusable (wrong kind, managedFields
    /// set, duplicate list keys...). Upstream answers 400 BadRequest.
    #[error("{0}")]
    InvalidApply(String),
    /// Server-side apply would change fields another manager owns and `force` was false.
    /// Upstream answers 409 Conflict with one `FieldManagerConflict` cause per entry:
    /// `message: "conflict with <manager>"`, `field: <path>`.
    #[error("{}", conflict_message(conflicts))]
    Conflict {
        /// `(manager, field path)` pairs. The manager is spelled as upstream prints it:
        /// the quoted name, plus ` using <apiVersion>` for an Update manager and
        /// ` with subresource "<name>"` when it wrote through a subresource, e.g.
        /// `"kubectl-client-side-apply" using apps/v1`. The path looks like
        /// `.spec.template.spec.containers[name="web"].image`.
        conflicts: Vec<(String, String)>,
    },
}

/// The 409 message upstream builds from a list of apply conflicts.
fn conflict_message(conflicts: &[(String, String)]) -> String {
    if let [(manager, path)] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {manager}: {path}");
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|(m, _)| m.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(
            conflicts
                .iter()
                .filter(|(m, _)| m == manager)
                .map(|(_, path)| format!("- {path}")),
        );
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Maps a request `Content-Type` to its patch type, ignoring parameters such as
/// `; charset=utf-8` and letter case. Anything else is `None` (upstream: 415).
pub fn patch_type_from_content_type(ct: &str) -> Option<PatchType> {
    let media = ct.split(';').next().unwrap_or_default().trim();
    let known = [
        ("application/json-patch+json", PatchType::Json),
        ("application/merge-patch+json", PatchType::Merge),
        (
            "application/strategic-merge-patch+json",
            PatchType::Strategic,
        ),
        ("application/apply-patch+yaml", PatchType::Apply),
    ];
    known
        .iter()
        .find(|(name, _)| media.eq_ignore_ascii_case(name))
        .map(|(_, kind)| *kind)
}

/// Applies an RFC 6902 JSON patch (`test`, `add`, `remove`, `replace`, `move`, `copy`).
/// The operations apply atomically: on any failure the result is an error, never a
/// half-patched object.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        PatchError::Malformed(format!(
            "the JSON patch must be a list of operations ({{\"op\",\"path\",...}}): {e}"
        ))
    })?;
    let mut doc = target.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::JsonPatchFailed {
        operation: e.operation,
        path: e.path.to_string(),
        reason: e.kind.to_string(),
    })?;
    Ok(doc)
}

/// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes a key, and
/// every other value (lists included) replaces what was there.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let mut doc = target.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// JSON equality that treats `80` and `80.0` as the same number, as Go's decoder (which
/// reads every JSON number as float64) does when upstream compares merge keys.
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_map_to_patch_types_ignoring_parameters() {
        assert_eq!(
            patch_type_from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            patch_type_from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            patch_type_from_content_type("Application/Strategic-Merge-Patch+JSON"),
            Some(PatchType::Strategic)
        );
        assert_eq!(
            patch_type_from_content_type("application/apply-patch+yaml;charset=utf-8"),
            Some(PatchType::Apply)
        );
        assert_eq!(patch_type_from_content_type("application/json"), None);
        assert_eq!(patch_type_from_content_type(""), None);
    }

    #[test]
    fn json_patch_runs_all_operation_kinds() {
        let target =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1}});
        let patch = json!([
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/y", "value": "2"},
            {"op": "copy", "from": "/metadata/labels/y", "path": "/metadata/labels/z"},
            {"op": "move", "from": "/metadata/labels/x", "path": "/metadata/labels/w"},
            {"op": "remove", "path": "/metadata/labels/z"}
        ]);
        let out = json_patch(&target, &patch).expect("patch applies");
        assert_eq!(
            out,
            json!({"metadata": {"name": "a", "labels": {"y": "2", "w": "1"}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn json_patch_failed_test_is_reported_with_its_index_and_leaves_no_partial_result() {
        let target = json!({"spec": {"replicas": 1}});
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "test", "path": "/spec/replicas", "value": 2}
        ]);
        match json_patch(&target, &patch) {
            Err(PatchError::JsonPatchFailed {
                operation, path, ..
            }) => {
                assert_eq!(operation, 1);
                assert_eq!(path, "/spec/replicas");
            }
            other => panic!("expected JsonPatchFailed, got {other:?}"),
        }
    }

    #[test]
    fn json_patch_that_is_not_a_list_of_operations_is_malformed() {
        let err = json_patch(&json!({}), &json!({"op": "add"})).expect_err("not a list");
        assert!(matches!(err, PatchError::Malformed(_)), "{err:?}");
        let err = json_patch(&json!({}), &json!([{"op": "frobnicate", "path": "/a"}]))
            .expect_err("unknown op");
        assert!(matches!(err, PatchError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn json_patch_rollout_undo_replaces_template_and_annotations() {
        let target = json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}});
        let patch = json!([
            {"op": "replace", "path": "/spec/template", "value": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
            {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "1"}}
        ]);
        let out = json_patch(&target, &patch).expect("patch applies");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        assert_eq!(
            out["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "1"
        );
    }

    #[test]
    fn merge_patch_null_deletes_a_label_and_lists_are_replaced() {
        let target = json!({"metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {"replicas": 1, "ports": [1, 2]}});
        let patch = json!({"metadata": {"labels": {"tier": null, "new": "x"}},
            "spec": {"replicas": 4, "ports": [3]}});
        assert_eq!(
            merge_patch(&target, &patch),
            json!({"metadata": {"labels": {"app": "web", "new": "x"}},
                "spec": {"replicas": 4, "ports": [3]}})
        );
    }

    #[test]
    fn merge_patch_with_a_non_object_replaces_the_document() {
        assert_eq!(merge_patch(&json!({"a": 1}), &json!([1])), json!([1]));
    }

    #[test]
    fn same_value_treats_integer_and_float_spellings_alike() {
        assert!(same_value(&json!(80), &json!(80.0)));
        assert!(same_value(&json!({"a": [80]}), &json!({"a": [80.0]})));
        assert!(!same_value(&json!(80), &json!("80")));
        assert!(!same_value(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn conflict_message_matches_upstream_for_one_and_many_conflicts() {
        let one = PatchError::Conflict {
            conflicts: vec![(
                "\"kubectl-client-side-apply\" using apps/v1".into(),
                ".spec.replicas".into(),
            )],
        };
        assert_eq!(
            one.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        let many = PatchError::Conflict {
            conflicts: vec![
                ("\"b\"".into(), ".spec.x".into()),
                ("\"a\" using v1".into(), ".spec.y".into()),
                ("\"b\"".into(), ".spec.z".into()),
            ],
        };
        assert_eq!(
            many.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"a\" using v1:\n- .spec.y\nconflicts with \"b\":\n- .spec.x\n- .spec.z"
        );
    }
}
