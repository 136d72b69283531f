//! Read-only accessors over untyped objects, so validators read like upstream's typed code.
//!
//! Invariant: a missing field, `null` and a value of the wrong JSON type all read as the
//! field's zero value (`""`, empty list, `None`), exactly what Go's decoder would leave.

use serde_json::{Map, Value};

/// `v[key]` as a string, or `""`.
pub(super) fn str_of<'a>(v: Option<&'a Value>, key: &str) -> &'a str {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `v[key]` when it is an object.
pub(super) fn obj_of<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a Map<String, Value>> {
    v.and_then(|v| v.get(key)).and_then(Value::as_object)
}

/// `v[key]` when it is present and not null.
pub(super) fn field<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    v.and_then(|v| v.get(key)).filter(|x| !x.is_null())
}

/// `v[key]` as a list, or empty.
pub(super) fn arr_of<'a>(v: Option<&'a Value>, key: &str) -> &'a [Value] {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `v[key]` as an integer, when it is one.
pub(super) fn int_of(v: Option<&Value>, key: &str) -> Option<i64> {
    v.and_then(|v| v.get(key)).and_then(Value::as_i64)
}

/// `v[key]` as a boolean, or false.
pub(super) fn bool_of(v: Option<&Value>, key: &str) -> bool {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A map's value as upstream's JSON rendering of a `map[string]string` (`null` when absent).
pub(super) fn map_json(m: Option<&Map<String, Value>>) -> Value {
    m.map(|m| Value::Object(m.clone())).unwrap_or(Value::Null)
}
