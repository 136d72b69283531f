//! Schema-driven encoding of an object's Kubernetes JSON into the protobuf bytes Go's gogo
//! marshaller writes for the struct `encoding/json` decodes from that JSON: the inverse of
//! `decode`, driven by the same generated table.
//!
//! Invariant: what a Go (or prost) decoder reads back is the Go struct of the JSON we hold.
//! Hence gogo's presence rules, not JSON's: a value field (scalar or struct) is always
//! written, its Go zero value when the JSON lacks it; a pointer, `[]byte`, slice or map is
//! written only when set. Fields go out in tag order and map entries sorted by key, as gogo
//! writes them, so equal objects give equal bytes. Nested lengths are patched in place
//! (one reserved byte, shifted only for messages of 128 bytes or more), and envelopes are
//! written into a reserved prefix, so a list is encoded into one buffer without copies.

use std::sync::OnceLock;

use base64::Engine as _;
use chrono::DateTime;
use serde_json::{Map, Value};

use super::schema::MESSAGES;
use super::table::{kind_message, Field, Kind, Label, Message, Special};
use super::MAGIC;

/// Deepest message nesting written; JSON held by the server is far shallower (serde_json
/// itself stops parsing at 128 levels).
const MAX_DEPTH: usize = 200;

/// Unix seconds of Go's zero `time.Time`, which gogo writes as an empty message.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// Room kept in front of a body for the envelope (magic, type meta, raw length).
const PREFIX: usize = 160;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("object {api_version}, Kind={kind} cannot be encoded to a protobuf message")]
    UnknownKind { api_version: String, kind: String },
    #[error("object has no apiVersion or kind")]
    MissingTypeMeta,
    #[error("invalid value at {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("object nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// What one object of a kind is encoded as: a message of the table, or
/// `meta.k8s.io/v1 PartialObjectMetadata` ({1: ObjectMeta}), which is not a stored kind.
#[derive(Clone, Copy)]
enum Shape {
    Kind(u16),
    Partial,
}

const META_V1: &str = "meta.k8s.io/v1";
const PARTIAL: &str = "PartialObjectMetadata";

fn shape(api_version: &str, kind: &str) -> Option<Shape> {
    if api_version == META_V1 && kind == PARTIAL {
        return Some(Shape::Partial);
    }
    kind_message(api_version, kind).map(Shape::Kind)
}

/// Whether objects of `api_version`/`kind` have a protobuf form (built-in kinds do; custom
/// resources and kinds the table lacks do not).
pub fn supports(api_version: &str, kind: &str) -> bool {
    shape(api_version, kind).is_some()
}

/// Whether `kind` (`ConfigMapList`) is the list of a kind with a protobuf form.
pub fn supports_list(api_version: &str, kind: &str) -> bool {
    kind.strip_suffix("List")
        .is_some_and(|item| supports(api_version, item))
}

/// Encodes an object (or a `…List` of a supported kind) with the `k8s\0` + `runtime.Unknown`
/// envelope, taking `apiVersion` and `kind` from the object.
pub fn encode_object(obj: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(512);
    encode_object_into(obj, &mut out)?;
    Ok(out)
}

/// [`encode_object`], appended to `out` (a watch reuses one buffer for every event).
pub fn encode_object_into(obj: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let (api_version, kind) = type_meta(obj)?;
    let mut body = Envelope::new();
    if let Some(shape) = shape(api_version, kind) {
        body.object(shape, obj)?;
    } else {
        let item = kind
            .strip_suffix("List")
            .and_then(|item| shape(api_version, item))
            .ok_or_else(|| unknown(api_version, kind))?;
        body.list_meta(obj.get("metadata").unwrap_or(&Value::Null))?;
        if let Some(Value::Array(items)) = obj.get("items") {
            for item_obj in items {
                body.list_item(item, item_obj)?;
            }
        }
    }
    let bytes = body.finish(api_version, kind);
    out.extend_from_slice(&bytes);
    Ok(())
}

fn type_meta(obj: &Value) -> Result<(&str, &str), EncodeError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    let kind = obj.get("kind").and_then(Value::as_str);
    match (api_version, kind) {
        (Some(v), Some(k)) if !v.is_empty() && !k.is_empty() => Ok((v, k)),
        _ => Err(EncodeError::MissingTypeMeta),
    }
}

fn unknown(api_version: &str, kind: &str) -> EncodeError {
    EncodeError::UnknownKind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    }
}

/// A `…List` being encoded item by item: ListMeta first, then each item as it comes, so the
/// caller never holds all items parsed at once.
pub struct ListWriter {
    body: Envelope,
    item: Shape,
    api_version: String,
    kind: String,
}

impl ListWriter {
    /// Starts `<item_kind>List` with its `metadata` (resourceVersion, continue,
    /// remainingItemCount as JSON).
    pub fn new(
        api_version: &str,
        item_kind: &str,
        metadata: &Value,
        capacity: usize,
    ) -> Result<ListWriter, EncodeError> {
        let item = shape(api_version, item_kind).ok_or_else(|| unknown(api_version, item_kind))?;
        let mut body = Envelope::with_capacity(capacity);
        body.list_meta(metadata)?;
        Ok(ListWriter {
            body,
            item,
            api_version: api_version.to_owned(),
            kind: format!("{item_kind}List"),
        })
    }

    pub fn push(&mut self, obj: &Value) -> Result<(), EncodeError> {
        self.body.list_item(self.item, obj)
    }

    /// The enveloped list, sliced out of the one buffer it was written into.
    pub fn finish(self) -> bytes::Bytes {
        self.body.finish(&self.api_version, &self.kind)
    }
}

/// Encodes a watch event as one frame of the protobuf watch stream: a 4-byte big-endian
/// length, then a raw (unenveloped) `meta.k8s.io/v1 WatchEvent{type, object: RawExtension}`
/// whose `raw` is the object with its own envelope, as upstream's watch encoder nests them.
pub fn encode_watch_frame(
    event_type: &str,
    obj: &Value,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    put_key(out, 1, LEN);
    put_bytes(out, event_type.as_bytes());
    put_key(out, 2, LEN);
    let raw_ext = begin(out);
    put_key(out, 1, LEN);
    let raw = begin(out);
    encode_object_into(obj, out)?;
    end(out, raw);
    end(out, raw_ext);
    let len = u32::try_from(out.len() - start - 4).map_err(|_| EncodeError::Invalid {
        field: "object",
        reason: "watch event larger than 4 GiB".to_owned(),
    })?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A protobuf body written after a reserved prefix that the envelope is later put into.
struct Envelope {
    buf: Vec<u8>,
}

impl Envelope {
    fn new() -> Envelope {
        Envelope::with_capacity(1024)
    }

    fn with_capacity(capacity: usize) -> Envelope {
        let mut buf = Vec::with_capacity(PREFIX + capacity + 8);
        buf.resize(PREFIX, 0);
        Envelope { buf }
    }

    fn object(&mut self, shape: Shape, obj: &Value) -> Result<(), EncodeError> {
        write_shape(&mut self.buf, shape, obj, 0)
    }

    fn list_meta(&mut self, meta: &Value) -> Result<(), EncodeError> {
        put_key(&mut self.buf, 1, LEN);
        let at = begin(&mut self.buf);
        message(&mut self.buf, list_meta_message(), meta, 1)?;
        end(&mut self.buf, at);
        Ok(())
    }

    fn list_item(&mut self, shape: Shape, obj: &Value) -> Result<(), EncodeError> {
        put_key(&mut self.buf, 2, LEN);
        let at = begin(&mut self.buf);
        write_shape(&mut self.buf, shape, obj, 1)?;
        end(&mut self.buf, at);
        Ok(())
    }

    /// `k8s\0` + `runtime.Unknown{typeMeta{apiVersion, kind}, raw, contentEncoding: "",
    /// contentType: ""}`: gogo writes the two empty strings too.
    fn finish(mut self, api_version: &str, kind: &str) -> bytes::Bytes {
        let raw_len = self.buf.len() - PREFIX;
        self.buf.extend_from_slice(&[0x1a, 0, 0x22, 0]);
        let mut head = Vec::with_capacity(32 + api_version.len() + kind.len());
        head.extend_from_slice(MAGIC);
        let type_meta_len = 2
            + varint_len(api_version.len())
            + api_version.len()
            + varint_len(kind.len())
            + kind.len();
        put_key(&mut head, 1, LEN);
        put_varint(&mut head, type_meta_len as u64);
        put_key(&mut head, 1, LEN);
        put_bytes(&mut head, api_version.as_bytes());
        put_key(&mut head, 2, LEN);
        put_bytes(&mut head, kind.as_bytes());
        put_key(&mut head, 2, LEN);
        put_varint(&mut head, raw_len as u64);
        if head.len() <= PREFIX {
            let start = PREFIX - head.len();
            self.buf[start..PREFIX].copy_from_slice(&head);
            bytes::Bytes::from(self.buf).slice(start..)
        } else {
            head.extend_from_slice(&self.buf[PREFIX..]);
            bytes::Bytes::from(head)
        }
    }
}

fn write_shape(
    out: &mut Vec<u8>,
    shape: Shape,
    obj: &Value,
    depth: usize,
) -> Result<(), EncodeError> {
    match shape {
        Shape::Kind(index) => message(out, index, obj, depth),
        Shape::Partial => {
            let meta = obj.get("metadata").unwrap_or(&Value::Null);
            nested(out, 1, object_meta_message(), meta, depth)
        }
    }
}

fn object_meta_message() -> u16 {
    static OBJECT_META: OnceLock<u16> = OnceLock::new();
    *OBJECT_META.get_or_init(|| {
        kind_message("v1", "ConfigMap")
            .and_then(|c| {
                Message::get(c)
                    .fields()
                    .iter()
                    .find(|f| f.name() == "metadata")
            })
            .map(|f| f.msg)
            .unwrap_or_default()
    })
}

fn list_meta_message() -> u16 {
    static LIST_META: OnceLock<u16> = OnceLock::new();
    *LIST_META.get_or_init(|| {
        // Status carries a ListMeta as its metadata; the table has no other handle on it.
        kind_message("v1", "Status")
            .and_then(|s| {
                Message::get(s)
                    .fields()
                    .iter()
                    .find(|f| f.name() == "metadata")
            })
            .map(|f| f.msg)
            .unwrap_or_default()
    })
}

/// Positions of each message's fields in tag order (gogo writes ascending tags; the table
/// keeps Go declaration order for the decoder's printing).
fn tag_order(index: u16) -> &'static [u8] {
    static ORDER: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let all = ORDER.get_or_init(|| {
        MESSAGES
            .iter()
            .map(|m| {
                let mut pos: Vec<u8> = (0..m.len).collect();
                let fields = m.fields();
                pos.sort_by_key(|&p| fields[usize::from(p)].tag);
                pos
            })
            .collect()
    });
    &all[usize::from(index)]
}

fn message(out: &mut Vec<u8>, index: u16, value: &Value, depth: usize) -> Result<(), EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep);
    }
    let msg = Message::get(index);
    match msg.special {
        Special::Object => {
            static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
            let map = match value {
                Value::Object(map) => map,
                _ => EMPTY.get_or_init(Map::new),
            };
            object(out, index, msg, map, depth)
        }
        _ => special(out, msg, value, depth),
    }
}

fn object(
    out: &mut Vec<u8>,
    index: u16,
    msg: &Message,
    map: &Map<String, Value>,
    depth: usize,
) -> Result<(), EncodeError> {
    let fields = msg.fields();
    for &pos in tag_order(index) {
        let field = &fields[usize::from(pos)];
        if field.inline() {
            // An embedded struct: its fields live in this JSON object.
            put_key(out, field.tag, LEN);
            let at = begin(out);
            let inner = Message::get(field.msg);
            object(out, field.msg, inner, map, depth + 1)?;
            end(out, at);
            continue;
        }
        field_value(out, field, map.get(field.name()), depth)?;
    }
    Ok(())
}

fn is_set(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn field_value(
    out: &mut Vec<u8>,
    field: &Field,
    value: Option<&Value>,
    depth: usize,
) -> Result<(), EncodeError> {
    match field.label {
        Label::One => {
            let set = is_set(value);
            // Pointers and []byte are written only when set; value fields always.
            if set.is_none() && (field.pointer() || field.kind == Kind::Bytes) {
                return Ok(());
            }
            let value = set.unwrap_or(&Value::Null);
            match field.kind {
                Kind::Msg => nested(out, field.tag, field.msg, value, depth),
                kind => scalar(out, field, kind, value),
            }
        }
        Label::Many => {
            let Some(Value::Array(items)) = value else {
                return Ok(());
            };
            for item in items {
                match field.kind {
                    Kind::Msg => nested(out, field.tag, field.msg, item, depth)?,
                    kind => scalar(out, field, kind, item)?,
                }
            }
            Ok(())
        }
        Label::Map => {
            let Some(Value::Object(entries)) = value else {
                return Ok(());
            };
            // serde_json's map is a BTreeMap: keys come sorted, as gogo writes them.
            for (key, v) in entries {
                put_key(out, field.tag, LEN);
                let at = begin(out);
                put_key(out, 1, LEN);
                put_bytes(out, key.as_bytes());
                match field.kind {
                    Kind::Msg => nested(out, 2, field.msg, v, depth)?,
                    // gogo skips a nil []byte value and writes every other value.
                    Kind::Bytes if v.is_null() => {}
                    kind => scalar_tagged(out, field, 2, kind, v)?,
                }
                end(out, at);
            }
            Ok(())
        }
    }
}

fn nested(
    out: &mut Vec<u8>,
    tag: u16,
    index: u16,
    value: &Value,
    depth: usize,
) -> Result<(), EncodeError> {
    put_key(out, tag, LEN);
    let at = begin(out);
    message(out, index, value, depth + 1)?;
    end(out, at);
    Ok(())
}

fn scalar(out: &mut Vec<u8>, field: &Field, kind: Kind, value: &Value) -> Result<(), EncodeError> {
    scalar_tagged(out, field, field.tag, kind, value)
}

fn scalar_tagged(
    out: &mut Vec<u8>,
    field: &Field,
    tag: u16,
    kind: Kind,
    value: &Value,
) -> Result<(), EncodeError> {
    let invalid = |reason: String| EncodeError::Invalid {
        field: field.name(),
        reason,
    };
    match kind {
        Kind::Str => {
            put_key(out, tag, LEN);
            match value {
                Value::String(s) => put_bytes(out, s.as_bytes()),
                Value::Null => put_varint(out, 0),
                other => put_bytes(out, other.to_string().as_bytes()),
            }
        }
        Kind::Bytes => {
            let decoded = match value {
                Value::String(s) => base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| invalid(format!("illegal base64 data: {e}")))?,
                Value::Null => Vec::new(),
                other => return Err(invalid(format!("expected base64 string, got {other}"))),
            };
            put_key(out, tag, LEN);
            put_bytes(out, &decoded);
        }
        Kind::Bool => {
            put_key(out, tag, VARINT);
            put_varint(out, u64::from(value.as_bool().unwrap_or(false)));
        }
        Kind::I32 | Kind::I64 => {
            put_key(out, tag, VARINT);
            put_varint(out, integer(value) as u64);
        }
        Kind::F64 => {
            put_key(out, tag, FIXED64);
            out.extend_from_slice(&value.as_f64().unwrap_or(0.0).to_le_bytes());
        }
        Kind::Msg => return Err(invalid("internal: message encoded as scalar".to_owned())),
    }
    Ok(())
}

/// A JSON number as Go's integer fields hold it (a float is truncated, as it never is in
/// valid objects).
fn integer(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_u64().map(|u| u as i64))
        .or_else(|| value.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

/// The apimachinery types whose JSON is not an object of their protobuf fields.
fn special(
    out: &mut Vec<u8>,
    msg: &Message,
    value: &Value,
    depth: usize,
) -> Result<(), EncodeError> {
    let field = |tag: u32| -> Result<&'static Field, EncodeError> {
        msg.field_by_tag(tag)
            .map(|(_, f)| f)
            .ok_or(EncodeError::Invalid {
                field: "",
                reason: format!("internal: special message lacks field {tag}"),
            })
    };
    match msg.special {
        Special::Time | Special::MicroTime => time(out, msg.special == Special::MicroTime, value),
        Special::Quantity => {
            // Go's zero Quantity prints (and marshals) as "0".
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => "0".to_owned(),
                other => other.to_string(),
            };
            put_key(out, 1, LEN);
            put_bytes(out, text.as_bytes());
            Ok(())
        }
        Special::IntOrString => {
            let (ty, int_val, str_val) = match value {
                Value::String(s) => (1, 0, s.as_str()),
                other => (0, integer(other), ""),
            };
            put_key(out, 1, VARINT);
            put_varint(out, ty);
            put_key(out, 2, VARINT);
            put_varint(out, int_val as u64);
            put_key(out, 3, LEN);
            put_bytes(out, str_val.as_bytes());
            Ok(())
        }
        Special::RawJson => {
            if !value.is_null() {
                put_key(out, 1, LEN);
                let at = begin(out);
                serde_json::to_writer(&mut *out, value).map_err(|e| EncodeError::Invalid {
                    field: "raw",
                    reason: e.to_string(),
                })?;
                end(out, at);
            }
            Ok(())
        }
        Special::ListWrapper => field_value(out, field(1)?, Some(value), depth),
        Special::SchemaOrBool => {
            let allows = match value {
                Value::Bool(b) => *b,
                _ => true,
            };
            put_key(out, 1, VARINT);
            put_varint(out, u64::from(allows));
            if value.is_object() {
                field_value(out, field(2)?, Some(value), depth)?;
            }
            Ok(())
        }
        Special::SchemaOrArray | Special::SchemaOrStringArray => match value {
            Value::Array(_) => field_value(out, field(2)?, Some(value), depth),
            Value::Null => Ok(()),
            _ => field_value(out, field(1)?, Some(value), depth),
        },
        Special::Object => Err(EncodeError::Invalid {
            field: "",
            reason: "internal: object encoded as special".to_owned(),
        }),
    }
}

/// metav1.Time {seconds, nanos: 0} and MicroTime {seconds, nanos to the microsecond}; the
/// zero time is an empty message.
fn time(out: &mut Vec<u8>, micro: bool, value: &Value) -> Result<(), EncodeError> {
    let text = match value {
        Value::String(s) => s,
        Value::Null => return Ok(()),
        other => {
            return Err(EncodeError::Invalid {
                field: "time",
                reason: format!("expected an RFC 3339 string, got {other}"),
            })
        }
    };
    let t = DateTime::parse_from_rfc3339(text).map_err(|e| EncodeError::Invalid {
        field: "time",
        reason: format!("{text:?}: {e}"),
    })?;
    let seconds = t.timestamp();
    let nanos = if micro {
        t.timestamp_subsec_nanos() / 1000 * 1000
    } else {
        0
    };
    if seconds == GO_ZERO_UNIX && nanos == 0 {
        return Ok(());
    }
    put_key(out, 1, VARINT);
    put_varint(out, seconds as u64);
    put_key(out, 2, VARINT);
    put_varint(out, u64::from(nanos));
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: usize) -> usize {
    let bits = usize::BITS - (v | 1).leading_zeros();
    (bits as usize).div_ceil(7)
}

fn put_key(out: &mut Vec<u8>, tag: u16, wire: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reserves one byte for the length of the message written next; returns its position.
fn begin(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len() - 1
}

/// Writes the length of everything after `at`, shifting the body when it needs more than
/// the one reserved byte.
fn end(out: &mut Vec<u8>, at: usize) {
    let n = out.len() - at - 1;
    if n < 0x80 {
        out[at] = n as u8;
        return;
    }
    let k = varint_len(n);
    out.resize(out.len() + k - 1, 0);
    out.copy_within(at + 1..at + 1 + n, at + k);
    let mut v = n;
    for b in &mut out[at..at + k] {
        *b = (v as u8 & 0x7f) | 0x80;
        v >>= 7;
    }
    out[at + k - 1] &= 0x7f;
}

/// Every kind the table can encode (tests walk them all).
#[cfg(test)]
pub(super) fn all_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    super::schema::KINDS.iter().map(|(v, k, _)| (*v, *k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_patched_lengths_are_minimal() {
        for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 2_097_152] {
            let mut out = vec![9];
            let at = begin(&mut out);
            out.extend(std::iter::repeat_n(7u8, n));
            end(&mut out, at);
            let mut expect = vec![9];
            put_varint(&mut expect, n as u64);
            assert_eq!(varint_len(n), expect.len() - 1, "{n}");
            expect.extend(std::iter::repeat_n(7u8, n));
            assert_eq!(out, expect, "{n}");
        }
    }

    #[test]
    fn serde_json_maps_iterate_sorted_like_gogo_writes_map_keys() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":2,"B":3}"#).expect("json");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["B", "a", "b"]);
    }
}
