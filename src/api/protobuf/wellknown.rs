//! JSON forms of the apimachinery and apiextensions types whose Go `MarshalJSON` does not
//! print their protobuf fields as an object: times, quantities, int-or-string, embedded raw
//! JSON, named slices that protobuf wraps in `{items}`, and the CRD schema unions.
//!
//! Invariant: decoding an empty buffer yields the JSON of the Go zero value (`null` for a
//! zero time, `"0"` for a zero quantity, `0` for a zero int-or-string), since gogo leaves
//! the zero value when a message has no fields.

use chrono::{DateTime, Datelike};
use serde_json::Value;

use super::decode::{field_value, group_fields, scalar, Grouped};
use super::table::{Kind, Message, Special};
use super::wire::WireValue;
use super::ProtobufError;

/// Unix seconds of Go's zero `time.Time` (January 1, year 1, UTC): printed as `null`.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

pub(super) fn decode(msg: &Message, buf: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let groups = group_fields(msg, buf)?;
    let one = Parts { msg, groups, depth };
    match msg.special {
        // Go's Time.Unmarshal: no bytes at all is the zero time.
        Special::Time | Special::MicroTime if buf.is_empty() => Ok(Value::Null),
        Special::Time => time(&one, false),
        Special::MicroTime => time(&one, true),
        Special::Quantity => quantity(&one),
        Special::IntOrString => int_or_string(&one),
        Special::RawJson => raw_json(&one),
        Special::ListWrapper => Ok(one.value(1)?.unwrap_or(Value::Null)),
        Special::SchemaOrBool => match one.value(2)? {
            Some(schema) => Ok(schema),
            None => Ok(Value::Bool(one.value(1)? == Some(Value::Bool(true)))),
        },
        Special::SchemaOrArray => match one.value(2)? {
            Some(list) => Ok(list),
            None => Ok(one.value(1)?.unwrap_or(Value::Null)),
        },
        Special::SchemaOrStringArray => match one.value(2)? {
            Some(list) => Ok(list),
            None => Ok(one.value(1)?.unwrap_or(Value::Null)),
        },
        // The caller decodes plain objects itself; an object here would be a table bug.
        Special::Object => Err(ProtobufError::invalid(
            "internal: object decoded as special".to_owned(),
        )),
    }
}

/// A special message split by field, with typed accessors by field number.
struct Parts<'a> {
    msg: &'a Message,
    groups: Grouped<'a>,
    depth: usize,
}

impl Parts<'_> {
    /// The last wire value of field `tag`, as protobuf's "last one wins" for scalars.
    fn last(&self, tag: u32) -> Option<(Kind, &WireValue<'_>)> {
        let (pos, field) = self.msg.field_by_tag(tag)?;
        self.groups[pos].last().map(|v| (field.kind, v))
    }

    fn scalar(&self, tag: u32) -> Result<Option<Value>, ProtobufError> {
        self.last(tag).map(|(kind, v)| scalar(kind, v)).transpose()
    }

    /// The decoded value of field `tag` (messages and lists included), if present.
    fn value(&self, tag: u32) -> Result<Option<Value>, ProtobufError> {
        let Some((pos, field)) = self.msg.field_by_tag(tag) else {
            return Ok(None);
        };
        field_value(field, &self.groups[pos], self.depth).map_err(|e| e.within(field.name()))
    }

    fn int(&self, tag: u32) -> Result<i64, ProtobufError> {
        Ok(self.scalar(tag)?.and_then(|v| v.as_i64()).unwrap_or(0))
    }
}

/// metav1.Time (seconds only: Go drops nanos when unmarshalling) and MicroTime (microseconds).
fn time(parts: &Parts<'_>, micro: bool) -> Result<Value, ProtobufError> {
    let seconds = parts.int(1)?;
    // Go truncates toward zero to whole microseconds, then time.Unix normalises.
    let nanos = if micro {
        parts.int(2)? - parts.int(2)? % 1000
    } else {
        0
    };
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let (secs, nsecs) = (
        total.div_euclid(1_000_000_000),
        total.rem_euclid(1_000_000_000),
    );
    if secs == i128::from(GO_ZERO_UNIX) && nsecs == 0 {
        return Ok(Value::Null);
    }
    let out_of_range =
        || ProtobufError::invalid(format!("time {seconds}s is outside years 0-9999"));
    let secs = i64::try_from(secs).map_err(|_| out_of_range())?;
    let nsecs = u32::try_from(nsecs).map_err(|_| out_of_range())?;
    let t = DateTime::from_timestamp(secs, nsecs).ok_or_else(out_of_range)?;
    if !(0..=9999).contains(&t.year()) {
        return Err(out_of_range());
    }
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Value::String(t.format(format).to_string()))
}

/// resource.Quantity travels as its string form. It is passed through as written; Go would
/// print it canonicalised (`1000m` as `1`), which a JSON client does not get either.
fn quantity(parts: &Parts<'_>) -> Result<Value, ProtobufError> {
    match parts.scalar(1)? {
        None => Ok(Value::String("0".to_owned())),
        Some(Value::String(s)) if s.is_empty() => Err(ProtobufError::invalid(
            "quantities must not be empty".to_owned(),
        )),
        Some(v) => Ok(v),
    }
}

/// intstr.IntOrString: {1: type (0 int, 1 string), 2: intVal, 3: strVal}.
fn int_or_string(parts: &Parts<'_>) -> Result<Value, ProtobufError> {
    match parts.int(1)? {
        0 => Ok(Value::from(parts.int(2)?)),
        1 => Ok(parts
            .scalar(3)?
            .unwrap_or_else(|| Value::String(String::new()))),
        t => Err(ProtobufError::invalid(format!(
            "impossible IntOrString.Type {t}"
        ))),
    }
}

/// RawExtension, FieldsV1 and apiextensions JSON carry JSON text in field 1.
fn raw_json(parts: &Parts<'_>) -> Result<Value, ProtobufError> {
    match parts.last(1) {
        Some((_, WireValue::Len(raw))) if !raw.is_empty() => serde_json::from_slice(raw)
            .map_err(|e| ProtobufError::invalid(format!("embedded object is not valid JSON: {e}"))),
        Some((_, WireValue::Len(_))) | None => Ok(Value::Null),
        Some((_, other)) => Err(ProtobufError::WrongWireType {
            path: "raw".to_owned(),
            wire_type: other.wire_type(),
        }),
    }
}
