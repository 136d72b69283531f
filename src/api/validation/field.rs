//! Field errors and their rendering into upstream's 422 `Invalid` Status message and causes.
//!
//! Invariant: `FieldError::message` is upstream's `ErrorBody()` (type text, quoted bad value,
//! detail) and `Display` is upstream's `Error()` (`field: body`), so messages built here read
//! exactly like kube-apiserver's.

use std::fmt;

use serde_json::{json, Value};

/// The machine-readable cause type; `as_str` gives upstream's `FieldValue...` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    Forbidden,
    NotFound,
    TooMany,
    TypeInvalid,
}

impl FieldErrorType {
    /// The `reason` of a Status cause, e.g. `FieldValueRequired`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::NotFound => "FieldValueNotFound",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// Upstream's human text for the type, which starts every message.
    fn text(self) -> &'static str {
        match self {
            FieldErrorType::Required => "Required value",
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::NotFound => "Not found",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::TypeInvalid => "Invalid value",
        }
    }
}

/// A rejected value as upstream prints it: strings quoted, numbers and booleans bare,
/// anything else as JSON (or pre-rendered text where upstream prints a Go struct).
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Json(Value),
    Raw(String),
}

impl BadValue {
    fn render(&self) -> String {
        match self {
            BadValue::Str(s) => serde_json::to_string(s).unwrap_or_default(),
            BadValue::Int(i) => i.to_string(),
            BadValue::Bool(b) => b.to_string(),
            BadValue::Json(Value::String(s)) => serde_json::to_string(s).unwrap_or_default(),
            BadValue::Json(v) => v.to_string(),
            BadValue::Raw(s) => s.clone(),
        }
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_string())
    }
}

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}

impl From<i64> for BadValue {
    fn from(i: i64) -> Self {
        BadValue::Int(i)
    }
}

impl From<&Value> for BadValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::String(s) => BadValue::Str(s.clone()),
            Value::Bool(b) => BadValue::Bool(*b),
            Value::Number(n) if n.is_i64() => BadValue::Int(n.as_i64().unwrap_or_default()),
            other => BadValue::Json(other.clone()),
        }
    }
}

/// One validation failure: where (`field`, e.g. `spec.containers[0].image`), what kind
/// (`reason`), and upstream's message body (`message`, without the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub reason: FieldErrorType,
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn with_value(
        reason: FieldErrorType,
        field: &str,
        value: BadValue,
        detail: &str,
    ) -> FieldError {
        let mut message = format!("{}: {}", reason.text(), value.render());
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        FieldError {
            reason,
            field: field.to_string(),
            message,
        }
    }

    fn without_value(reason: FieldErrorType, field: &str, detail: &str) -> FieldError {
        let mut message = reason.text().to_string();
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        FieldError {
            reason,
            field: field.to_string(),
            message,
        }
    }

    /// `Required value[: detail]`.
    pub fn required(field: &str, detail: &str) -> FieldError {
        Self::without_value(FieldErrorType::Required, field, detail)
    }

    /// `Invalid value: <value>: detail`.
    pub fn invalid(field: &str, value: impl Into<BadValue>, detail: &str) -> FieldError {
        Self::with_value(FieldErrorType::Invalid, field, value.into(), detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: impl Into<BadValue>, valid: &[&str]) -> FieldError {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid
                .iter()
                .map(|v| serde_json::to_string(v).unwrap_or_default())
                .collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::with_value(FieldErrorType::NotSupported, field, value.into(), &detail)
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: &str, value: impl Into<BadValue>) -> FieldError {
        Self::with_value(FieldErrorType::Duplicate, field, value.into(), "")
    }

    /// `Not found: <value>`.
    pub fn not_found(field: &str, value: impl Into<BadValue>) -> FieldError {
        Self::with_value(FieldErrorType::NotFound, field, value.into(), "")
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: &str, detail: &str) -> FieldError {
        Self::without_value(FieldErrorType::Forbidden, field, detail)
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: &str, max_bytes: usize) -> FieldError {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        Self::without_value(
            FieldErrorType::TooLong,
            field,
            &format!("may not be more than {max_bytes} {unit}"),
        )
    }
}

impl FieldError {
    /// `Too many: <actual>: must have at most N items`.
    pub fn too_many(field: &str, actual: i64, max: i64) -> FieldError {
        let unit = if max == 1 { "item" } else { "items" };
        Self::with_value(
            FieldErrorType::TooMany,
            field,
            BadValue::Int(actual),
            &format!("must have at most {max} {unit}"),
        )
    }

    /// `Invalid value: <value>: detail` for a value of the wrong JSON type.
    pub fn type_invalid(field: &str, value: impl Into<BadValue>, detail: &str) -> FieldError {
        Self::with_value(FieldErrorType::TypeInvalid, field, value.into(), detail)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Upstream's 422 message: `Deployment.apps "web" is invalid: spec.x: Required value` for
/// one error, `... is invalid: [a, b]` for several (repeats dropped), and no suffix for none.
/// `qualified_kind` is `Kind` for the core group, else `Kind.group`.
pub fn format_invalid_message(qualified_kind: &str, name: &str, errs: &[FieldError]) -> String {
    let quoted = serde_json::to_string(name).unwrap_or_default();
    let mut seen: Vec<String> = Vec::new();
    for e in errs {
        let s = e.to_string();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    match seen.len() {
        0 => format!("{qualified_kind} {quoted} is invalid"),
        1 => format!("{qualified_kind} {quoted} is invalid: {}", seen[0]),
        _ => format!(
            "{qualified_kind} {quoted} is invalid: [{}]",
            seen.join(", ")
        ),
    }
}

/// The `details.causes` array of the 422 Status, one cause per error, in order.
pub fn causes_json(errs: &[FieldError]) -> Value {
    Value::Array(
        errs.iter()
            .map(|e| {
                let mut c = json!({"reason": e.reason.as_str(), "message": e.message});
                if !e.field.is_empty() {
                    c["field"] = Value::String(e.field.clone());
                }
                c
            })
            .collect(),
    )
}

/// Builds dotted/indexed field paths the way upstream's `field.Path` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldPath(String);

impl FieldPath {
    pub(super) fn new(root: &str) -> Self {
        FieldPath(root.to_string())
    }

    pub(super) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    pub(super) fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    pub(super) fn key(&self, k: &str) -> Self {
        FieldPath(format!("{}[{k}]", self.0))
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_upstream_error_body() {
        assert_eq!(FieldError::required("spec.x", "").message, "Required value");
        assert_eq!(
            FieldError::invalid("spec.replicas", -1i64, "must be greater than or equal to 0")
                .to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::not_supported("spec.type", "Foo", &["ClusterIP", "NodePort"]).message,
            "Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\""
        );
        assert_eq!(
            FieldError::duplicate("a", "x").message,
            "Duplicate value: \"x\""
        );
        assert_eq!(
            FieldError::forbidden("a", "nope").message,
            "Forbidden: nope"
        );
        assert_eq!(
            FieldError::too_long("metadata.annotations", 262144).message,
            "Too long: may not be more than 262144 bytes"
        );
        assert_eq!(FieldError::not_found("a", "v").message, "Not found: \"v\"");
    }

    #[test]
    fn invalid_message_for_one_and_many_errors() {
        let one = [FieldError::required(
            "spec.template.spec.containers[0].image",
            "",
        )];
        assert_eq!(
            format_invalid_message("Deployment.apps", "web", &one),
            "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value"
        );
        let many = [
            FieldError::required("a", ""),
            FieldError::required("a", ""),
            FieldError::forbidden("b", "x"),
        ];
        assert_eq!(
            format_invalid_message("Pod", "p", &many),
            "Pod \"p\" is invalid: [a: Required value, b: Forbidden: x]"
        );
        assert_eq!(
            format_invalid_message("Pod", "p", &[]),
            "Pod \"p\" is invalid"
        );
    }

    #[test]
    fn causes_carry_reason_message_and_field() {
        let errs = [
            FieldError::required("spec.containers[0].image", ""),
            FieldError::too_long("", 1048576),
        ];
        assert_eq!(
            causes_json(&errs),
            json!([
                {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"},
                {"reason": "FieldValueTooLong", "message": "Too long: may not be more than 1048576 bytes"}
            ])
        );
    }

    #[test]
    fn paths_print_like_upstream() {
        let p = FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("name");
        assert_eq!(p.as_str(), "spec.containers[0].name");
        assert_eq!(FieldPath::new("data").key("a.b").as_str(), "data[a.b]");
        assert_eq!(FieldPath::new("").child("x").as_str(), "x");
    }
}
