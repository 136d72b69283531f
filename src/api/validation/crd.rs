//! CustomResourceDefinition checks: group, scope, names, versions, schema presence, and the
//! `<plural>.<group>` object name.
//!
//! Invariant: runs after defaulting (which fills `names.singular`, `names.listKind` and
//! `conversion`), like upstream, so those read as required only when `kind` is missing.

use serde_json::Value;

use super::field::{FieldError, FieldPath};
use super::json::{arr_of, bool_of, field, str_of};
use super::strings::{is_dns1035_label, is_dns1123_subdomain};

/// The extra rule on a CRD's `metadata.name`; appended to the usual name errors.
pub(crate) fn name_errors(obj: &Value) -> Vec<String> {
    let spec = field(Some(obj), "spec");
    let names = field(spec, "names");
    let want = format!("{}.{}", str_of(names, "plural"), str_of(spec, "group"));
    let name = str_of(field(Some(obj), "metadata"), "name");
    if !name.is_empty() && name != want {
        vec!["must be spec.names.plural+\".\"+spec.group".to_string()]
    } else {
        Vec::new()
    }
}

pub(crate) fn validate_crd(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    let group = str_of(spec, "group");
    let gp = path.child("group");
    if group.is_empty() {
        errs.push(FieldError::required(gp.as_str(), ""));
    } else {
        let msgs = is_dns1123_subdomain(group);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(gp.as_str(), group, &msgs.join(",")));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                gp.as_str(),
                group,
                "should be a domain with at least one dot",
            ));
        }
    }
    match str_of(spec, "scope") {
        "" => errs.push(FieldError::required(path.child("scope").as_str(), "")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(FieldError::not_supported(
            path.child("scope").as_str(),
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = arr_of(spec, "versions");
    let vp = path.child("versions");
    let mut storage = 0;
    let mut seen: Vec<&str> = Vec::new();
    let mut unique = true;
    for (i, v) in versions.iter().enumerate() {
        let v = Some(v);
        if bool_of(v, "storage") {
            storage += 1;
        }
        let name = str_of(v, "name");
        if seen.contains(&name) {
            unique = false;
        }
        seen.push(name);
        let msgs = is_dns1035_label(name);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                vp.index(i).child("name").as_str(),
                name,
                &msgs.join(","),
            ));
        }
        validate_selectable_fields(
            field(field(v, "schema"), "openAPIV3Schema"),
            arr_of(v, "selectableFields"),
            &vp.index(i).child("selectableFields"),
            errs,
        );
        if field(field(v, "schema"), "openAPIV3Schema").is_none() {
            errs.push(FieldError::required(
                vp.index(i)
                    .child("schema")
                    .child("openAPIV3Schema")
                    .as_str(),
                "schemas are required",
            ));
        }
    }
    let all = Value::Array(versions.to_vec());
    if !unique {
        errs.push(FieldError::invalid(
            vp.as_str(),
            &all,
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(FieldError::invalid(
            vp.as_str(),
            &all,
            "must have exactly one version marked as storage version",
        ));
    }
    let names = field(spec, "names");
    let np = path.child("names");
    for key in ["plural", "singular", "kind", "listKind"] {
        if str_of(names, key).is_empty() {
            errs.push(FieldError::required(np.child(key).as_str(), ""));
        }
    }
    for (key, mixed) in [
        ("plural", false),
        ("singular", false),
        ("kind", true),
        ("listKind", true),
    ] {
        let v = str_of(names, key);
        if v.is_empty() {
            continue;
        }
        // Kinds may be CamelCase; plural and singular must already be lower case.
        let msgs = if mixed {
            is_dns1035_label(&v.to_lowercase())
        } else {
            is_dns1035_label(v)
        };
        if msgs.is_empty() {
            continue;
        }
        let detail = if mixed {
            format!(
                "may have mixed case, but should otherwise match: {}",
                msgs.join(",")
            )
        } else {
            msgs.join(",")
        };
        errs.push(FieldError::invalid(np.child(key).as_str(), v, &detail));
    }
}

/// Upstream's cap on selectable fields per version.
const MAX_SELECTABLE_FIELDS: usize = 8;

/// A version's `selectableFields`: each a `.dotted.path` to a string, boolean or integer
/// field of the schema outside `metadata`, no repeats, at most eight.
fn validate_selectable_fields(
    schema: Option<&Value>,
    fields: &[Value],
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let mut unique: Vec<String> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let jp = path.index(i).child("jsonPath");
        let json_path = str_of(Some(f), "jsonPath");
        if json_path.is_empty() {
            errs.push(FieldError::required(jp.as_str(), ""));
            continue;
        }
        let parts: Vec<&str> = json_path.trim_start_matches('.').split('.').collect();
        let found =
            json_path.starts_with('.') && parts.iter().all(|p| !p.is_empty()) && schema.is_some();
        let target = found
            .then(|| {
                parts.iter().try_fold(schema?, |cur, part| {
                    cur.get("properties").and_then(|props| props.get(*part))
                })
            })
            .flatten();
        let Some(target) = target else {
            errs.push(FieldError::invalid(
                jp.as_str(),
                json_path,
                "is an invalid path: does not refer to a valid field",
            ));
            continue;
        };
        if parts[0] == "metadata" {
            errs.push(FieldError::invalid(
                jp.as_str(),
                json_path,
                "must not point to fields in metadata",
            ));
        }
        if !matches!(
            target.get("type").and_then(Value::as_str),
            Some("string" | "boolean" | "integer")
        ) {
            errs.push(FieldError::invalid(
                jp.as_str(),
                json_path,
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ));
        }
        let normal = parts.join(".");
        if unique.contains(&normal) {
            errs.push(FieldError::duplicate(jp.as_str(), json_path));
        } else {
            unique.push(normal);
        }
    }
    if unique.len() > MAX_SELECTABLE_FIELDS {
        errs.push(FieldError::too_many(
            path.as_str(),
            unique.len() as i64,
            MAX_SELECTABLE_FIELDS as i64,
        ));
    }
}
