//! Schema-driven decoding of one protobuf message into the JSON that Go's `encoding/json`
//! would print for the struct gogo-protobuf unmarshals from the same bytes.
//!
//! Invariant: a field's presence on the wire decides its value, its Go shape (from the
//! table) decides whether it is printed: a pointer that is set is always printed; a value
//! field is printed unless `omitempty` and zero (structs are never "empty" in Go, so they
//! print as `{}`), or `omitzero` and a zero time. An absent value field prints its Go zero
//! value. Unknown field numbers are skipped. Recursion is bounded by [`MAX_DEPTH`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::table::{Field, Kind, Label, Message, Special};
use super::wellknown;
use super::wire::{packed_fixed64, packed_varints, Fields, WireValue};
use super::ProtobufError;

/// Deepest message nesting accepted. A CRD schema takes one level per nested property
/// and two per `items`, so real ones stay far below this; hostile input cannot exhaust
/// the stack (a test checks the limit fits in 1 MiB unoptimised).
pub(super) const MAX_DEPTH: usize = 200;

/// The wire values of each field of a message, indexed like `Message::fields()`, in wire order.
pub(super) type Grouped<'a> = Vec<Vec<WireValue<'a>>>;

/// Splits `buf` into per-field occurrence lists; unknown field numbers are dropped.
pub(super) fn group_fields<'a>(msg: &Message, buf: &'a [u8]) -> Result<Grouped<'a>, ProtobufError> {
    let mut groups: Grouped<'a> = vec![Vec::new(); usize::from(msg.len)];
    for item in Fields::new(buf) {
        let (number, value) = item.map_err(ProtobufError::malformed)?;
        if let Some((pos, _)) = msg.field_by_tag(number) {
            groups[pos].push(value);
        }
    }
    Ok(groups)
}

/// JSON of message `index` encoded in `buf`. An empty `buf` gives the Go zero value.
pub(super) fn message(index: u16, buf: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep {
            path: String::new(),
            limit: MAX_DEPTH,
        });
    }
    let msg = Message::get(index);
    match msg.special {
        Special::Object => object(msg, buf, depth).map(Value::Object),
        _ => wellknown::decode(msg, buf, depth),
    }
}

fn object(msg: &Message, buf: &[u8], depth: usize) -> Result<Map<String, Value>, ProtobufError> {
    let groups = group_fields(msg, buf)?;
    let mut out = Map::new();
    for (field, occurrences) in msg.fields().iter().zip(&groups) {
        if field.inline() {
            // An embedded struct: its own fields, printed by their own rules, in our object.
            let child = match field_value(field, occurrences, depth)? {
                Some(Value::Object(child)) => child,
                _ => match message(field.msg, &[], depth + 1)? {
                    Value::Object(child) => child,
                    _ => Map::new(),
                },
            };
            out.extend(child);
            continue;
        }
        let present = field_value(field, occurrences, depth).map_err(|e| e.within(field.name()))?;
        let is_present = present.is_some();
        let value = match present {
            Some(v) => v,
            None => zero_value(field, depth)?,
        };
        if !omitted(field, is_present, &value) {
            out.insert(field.name().to_owned(), value);
        }
    }
    Ok(out)
}

/// Whether Go's `encoding/json` leaves the field out.
fn omitted(field: &Field, present: bool, value: &Value) -> bool {
    if field.pointer() {
        return !present && field.omitempty();
    }
    if field.omitzero() && value.is_null() {
        return true;
    }
    let is_struct = field.label == Label::One
        && field.kind == Kind::Msg
        && Message::get(field.msg).special != Special::ListWrapper;
    field.omitempty() && !is_struct && is_empty(value)
}

/// Go's notion of empty for what omitempty can drop: false, 0, "", nil or empty slice/map.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The Go zero value of an absent field, as JSON.
fn zero_value(field: &Field, depth: usize) -> Result<Value, ProtobufError> {
    if field.pointer() || field.label != Label::One {
        return Ok(Value::Null);
    }
    Ok(match field.kind {
        Kind::Str => Value::String(String::new()),
        Kind::Bytes => Value::Null,
        Kind::Bool => Value::Bool(false),
        Kind::I32 | Kind::I64 | Kind::F64 => Value::from(0),
        Kind::Msg => message(field.msg, &[], depth + 1)?,
    })
}

/// The decoded value of a field from its wire occurrences; `None` when it is absent.
pub(super) fn field_value(
    field: &Field,
    occurrences: &[WireValue<'_>],
    depth: usize,
) -> Result<Option<Value>, ProtobufError> {
    let Some(last) = occurrences.last() else {
        return Ok(None);
    };
    let value = match field.label {
        Label::One if field.kind == Kind::Msg => {
            // Repeated occurrences of a message field merge, which for protobuf is concatenation.
            let bytes = concat(occurrences).map_err(|wire_type| ProtobufError::WrongWireType {
                path: String::new(),
                wire_type,
            })?;
            message(field.msg, &bytes, depth + 1)?
        }
        Label::One => scalar(field.kind, last)?,
        Label::Many => Value::Array(repeated(field, occurrences, depth)?),
        Label::Map => map(field, occurrences, depth)?,
    };
    Ok(Some(value))
}

fn concat<'a>(occurrences: &[WireValue<'a>]) -> Result<Cow<'a, [u8]>, u8> {
    let mut parts = occurrences.iter().map(|v| match v {
        WireValue::Len(b) => Ok(*b),
        other => Err(other.wire_type()),
    });
    match occurrences.len() {
        1 => parts.next().unwrap_or(Ok(&[])).map(Cow::Borrowed),
        _ => {
            let mut all = Vec::new();
            for part in parts {
                all.extend_from_slice(part?);
            }
            Ok(Cow::Owned(all))
        }
    }
}

fn repeated(
    field: &Field,
    occurrences: &[WireValue<'_>],
    depth: usize,
) -> Result<Vec<Value>, ProtobufError> {
    let mut items = Vec::with_capacity(occurrences.len());
    for value in occurrences {
        let at = |e: ProtobufError| e.within(&format!("[{}]", items.len()));
        match (field.kind, value) {
            (Kind::Msg, WireValue::Len(b)) => {
                let item = message(field.msg, b, depth + 1).map_err(at)?;
                items.push(item);
            }
            (Kind::Bool | Kind::I32 | Kind::I64, WireValue::Len(b)) => {
                for v in packed_varints(b).map_err(ProtobufError::malformed)? {
                    items.push(scalar(field.kind, &WireValue::Varint(v))?);
                }
            }
            (Kind::F64, WireValue::Len(b)) => {
                for v in packed_fixed64(b).map_err(ProtobufError::malformed)? {
                    items.push(scalar(field.kind, &WireValue::Fixed64(v))?);
                }
            }
            _ => {
                let item = scalar(field.kind, value).map_err(at)?;
                items.push(item);
            }
        }
    }
    Ok(items)
}

/// A `map<string, V>`: each occurrence is an entry message {1: key, 2: value}. Keys print
/// sorted, as Go prints maps; a repeated key keeps its last value.
fn map(field: &Field, occurrences: &[WireValue<'_>], depth: usize) -> Result<Value, ProtobufError> {
    let mut entries = BTreeMap::new();
    for entry in occurrences {
        let WireValue::Len(entry) = entry else {
            return Err(ProtobufError::WrongWireType {
                path: String::new(),
                wire_type: entry.wire_type(),
            });
        };
        let (mut key, mut value) = (None, None);
        for item in Fields::new(entry) {
            match item.map_err(ProtobufError::malformed)? {
                (1, v) => key = Some(v),
                (2, v) => value = Some(v),
                _ => {}
            }
        }
        let key = match key {
            Some(WireValue::Len(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(other) => {
                return Err(ProtobufError::WrongWireType {
                    path: "[key]".to_owned(),
                    wire_type: other.wire_type(),
                })
            }
            None => String::new(),
        };
        let value = match (field.kind, value) {
            (Kind::Msg, Some(WireValue::Len(b))) => message(field.msg, b, depth + 1),
            (Kind::Msg, None) => message(field.msg, &[], depth + 1),
            // Go stores a missing string or bytes value as "" / []byte{}.
            (Kind::Str | Kind::Bytes, None) => Ok(Value::String(String::new())),
            (kind, Some(v)) => scalar(kind, &v),
            (_, None) => Ok(Value::from(0)),
        }
        .map_err(|e| e.within(&format!("[{key}]")))?;
        entries.insert(key, value);
    }
    Ok(Value::Object(entries.into_iter().collect()))
}

/// One scalar value. Integers truncate like Go's generated code (`int32(varint)`).
pub(super) fn scalar(kind: Kind, value: &WireValue<'_>) -> Result<Value, ProtobufError> {
    Ok(match (kind, value) {
        (Kind::Str, WireValue::Len(b)) => {
            // Go keeps any bytes in a string; encoding/json prints invalid UTF-8 as U+FFFD.
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        (Kind::Bytes, WireValue::Len(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Kind::Bool, WireValue::Varint(v)) => Value::Bool(*v != 0),
        (Kind::I32, WireValue::Varint(v)) => Value::from(*v as i32),
        (Kind::I64, WireValue::Varint(v)) => Value::from(*v as i64),
        (Kind::F64, WireValue::Fixed64(v)) => float(f64::from_bits(*v))?,
        (_, other) => {
            return Err(ProtobufError::WrongWireType {
                path: String::new(),
                wire_type: other.wire_type(),
            })
        }
    })
}

/// A float as Go prints it: integral values without a fraction (`1`, not `1.0`).
fn float(v: f64) -> Result<Value, ProtobufError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if v.fract() == 0.0 && v.abs() < EXACT {
        return Ok(Value::from(v as i64));
    }
    Number::from_f64(v)
        .map(Value::Number)
        .ok_or_else(|| ProtobufError::invalid(format!("unsupported value: {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go() {
        assert_eq!(float(1.0), Ok(Value::from(1)));
        assert_eq!(float(-0.5), Ok(serde_json::json!(-0.5)));
        assert!(float(f64::NAN).is_err());
        assert!(float(f64::INFINITY).is_err());
    }

    #[test]
    fn int32_truncates_a_negative_varint_like_go() {
        let minus_one = WireValue::Varint(u64::MAX);
        assert_eq!(scalar(Kind::I32, &minus_one), Ok(Value::from(-1)));
        assert_eq!(scalar(Kind::I64, &minus_one), Ok(Value::from(-1)));
    }

    #[test]
    fn invalid_utf8_in_strings_becomes_replacement_characters() {
        let v = scalar(Kind::Str, &WireValue::Len(&[b'a', 0xff]));
        assert_eq!(v, Ok(Value::String("a\u{fffd}".to_owned())));
    }

    #[test]
    fn a_scalar_with_the_wrong_wire_type_is_rejected() {
        let err = scalar(Kind::Str, &WireValue::Varint(1));
        assert!(matches!(
            err,
            Err(ProtobufError::WrongWireType { wire_type: 0, .. })
        ));
    }
}
