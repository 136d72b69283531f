//! Lenient readers over stored objects (`serde_json::Value`).
//!
//! Printers never fail: a missing or mistyped field reads as the Go zero
//! value (`""`, `0`, `false`, empty list), which is what upstream printers see
//! after decoding into typed structs.

use serde_json::Value;

/// The value at `path`, if every step exists.
pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

/// String at `path`, or `""`.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

/// String at `path` when present and a string (empty strings included).
pub fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// Integer at `path`, or 0. Floats are truncated like a Go int conversion.
pub fn int_at(v: &Value, path: &[&str]) -> i64 {
    get(v, path).and_then(as_int).unwrap_or(0)
}

/// Integer at `path` when present.
pub fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(as_int)
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// Boolean at `path`, or false.
pub fn bool_at(v: &Value, path: &[&str]) -> bool {
    get(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// Array at `path`, or an empty slice.
pub fn list_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Number of entries of the map at `path` (0 when absent).
pub fn map_len(v: &Value, path: &[&str]) -> usize {
    get(v, path)
        .and_then(Value::as_object)
        .map(|m| m.len())
        .unwrap_or(0)
}

/// True when `path` holds a non-null value.
pub fn has(v: &Value, path: &[&str]) -> bool {
    get(v, path).is_some_and(|x| !x.is_null())
}

/// `metadata.name`.
pub fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

/// `metadata.creationTimestamp` as stored.
pub fn created(obj: &Value) -> Option<&str> {
    opt_str(obj, &["metadata", "creationTimestamp"])
}

/// True when the object is being deleted.
pub fn deleting(obj: &Value) -> bool {
    has(obj, &["metadata", "deletionTimestamp"])
}

/// A resource quantity as its canonical text. Stored quantities are strings;
/// bare JSON numbers are accepted as clients may send them.
pub fn quantity(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Cell helpers: every cell is a JSON string, integer or boolean.
pub fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// An integer cell.
pub fn n(i: i64) -> Value {
    Value::from(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_fields_read_as_zero_values() {
        let v = json!({"a": {"b": "x", "n": 3, "f": 2.9, "t": true, "l": [1]}});
        assert_eq!(str_at(&v, &["a", "b"]), "x");
        assert_eq!(str_at(&v, &["a", "zz"]), "");
        assert_eq!(int_at(&v, &["a", "n"]), 3);
        assert_eq!(int_at(&v, &["a", "f"]), 2);
        assert_eq!(int_at(&v, &["nope"]), 0);
        assert!(bool_at(&v, &["a", "t"]));
        assert_eq!(list_at(&v, &["a", "l"]).len(), 1);
        assert!(list_at(&v, &["a", "b"]).is_empty());
    }
}
