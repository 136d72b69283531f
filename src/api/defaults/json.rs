//! Mutation helpers over untyped objects that reproduce Go's "zero value means unset".
//!
//! Invariant: a default is written only where upstream's typed code would see the zero value
//! (absent or `null`; also `""` for plain strings and `0` for plain integers), so applying
//! defaults never overwrites a user's value and applying them twice changes nothing.

use serde_json::{Map, Value};

fn unset(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// Sets `key` when absent or null (Go pointer fields, lists, maps, structs).
pub(crate) fn default_value(m: &mut Map<String, Value>, key: &str, value: Value) {
    if unset(m.get(key)) {
        m.insert(key.to_string(), value);
    }
}

/// Sets a plain Go string field, for which `""` also means unset.
pub(crate) fn default_str(m: &mut Map<String, Value>, key: &str, value: &str) {
    if unset(m.get(key)) || m.get(key).and_then(Value::as_str) == Some("") {
        m.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Sets a plain Go integer field, for which `0` also means unset.
pub(crate) fn default_int_nonzero(m: &mut Map<String, Value>, key: &str, value: i64) {
    if unset(m.get(key)) || m.get(key).and_then(Value::as_i64) == Some(0) {
        m.insert(key.to_string(), Value::from(value));
    }
}

/// The object at `key`, created empty when absent or null; `None` if it is not an object.
pub(crate) fn ensure_obj<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    if unset(m.get(key)) {
        m.insert(key.to_string(), Value::Object(Map::new()));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `key` if present.
pub(crate) fn obj_mut<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// Runs `f` on every object element of the list at `key`.
pub(crate) fn each_obj(
    m: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(items) = m.get_mut(key).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

/// A string field, `""` when absent.
pub(crate) fn str_field<'a>(m: &'a Map<String, Value>, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or_default()
}
