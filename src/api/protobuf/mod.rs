//! Kubernetes protobuf (`application/vnd.kubernetes.protobuf`): request bodies to JSON
//! (`decode`) and built-in objects, lists, Status and watch frames from JSON (`encode`).
//!
//! client-go typed clients (every `kubectl create <generator>`, helm's release Secrets and
//! its DeleteOptions) send protobuf and ask for it first in `Accept`. The body is the magic `k8s\0` followed by a
//! `runtime.Unknown` {1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding,
//! 4: contentType} whose `raw` is the message of that kind.
//!
//! Invariant: the JSON returned is what kube-apiserver's JSON serializer prints for the Go
//! object decoded from the same bytes (Go field shapes come from the generated `schema`
//! table), with `kind` and `apiVersion` from the envelope. Any input, however hostile,
//! yields a value or a [`ProtobufError`]; nothing panics and recursion is bounded.
//!
//! Not reproduced: Go canonicalises quantities (`1000m` → `1`); they pass through as sent.

mod decode;
mod encode;
pub mod known;
mod schema;
mod table;
mod wellknown;
mod wire;

#[cfg(test)]
mod encode_tests;
#[cfg(test)]
mod roundtrip_kinds_tests;
#[cfg(test)]
mod roundtrip_more_tests;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use wire::{Fields, WireError, WireValue};

pub use encode::{
    encode_object, encode_object_into, encode_watch_frame, supports, supports_list, EncodeError,
    ListWriter,
};

/// The media type client-go uses for protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8; 4] = b"k8s\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("empty body")]
    Empty,
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix \"k8s\\x00\""
    )]
    NotProtobuf,
    #[error("malformed protobuf{}: {reason}", at(.path))]
    Malformed { path: String, reason: String },
    #[error("proto: wrong wireType = {wire_type} for field {path}")]
    WrongWireType { path: String, wire_type: u8 },
    #[error("invalid value{}: {reason}", at(.path))]
    Invalid { path: String, reason: String },
    #[error("protobuf message nested deeper than {limit} levels{}", at(.path))]
    TooDeep { path: String, limit: usize },
    #[error("Object 'Kind' is missing in protobuf envelope")]
    MissingKind,
    #[error("Object 'apiVersion' is missing in protobuf envelope")]
    MissingVersion,
    #[error("no kind {kind:?} is registered for version {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

impl ProtobufError {
    fn malformed(e: WireError) -> Self {
        ProtobufError::Malformed {
            path: String::new(),
            reason: e.to_string(),
        }
    }

    fn invalid(reason: String) -> Self {
        ProtobufError::Invalid {
            path: String::new(),
            reason,
        }
    }

    /// Prefixes the JSON path of the enclosing field (`spec` + `replicas`, `ports` + `[0]`).
    fn within(mut self, segment: &str) -> Self {
        if let ProtobufError::Malformed { path, .. }
        | ProtobufError::WrongWireType { path, .. }
        | ProtobufError::Invalid { path, .. }
        | ProtobufError::TooDeep { path, .. } = &mut self
        {
            *path = if path.is_empty() {
                segment.to_owned()
            } else if path.starts_with('[') {
                format!("{segment}{path}")
            } else {
                format!("{segment}.{path}")
            };
        }
        self
    }
}

/// Whether a `Content-Type` header value announces a Kubernetes protobuf body.
pub fn is_protobuf(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(CONTENT_TYPE)
}

/// Decodes a protobuf request body into the object's Kubernetes JSON.
pub fn decode_to_json(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = match body {
        [] => return Err(ProtobufError::Empty),
        [m0, m1, m2, m3, rest @ ..] if [*m0, *m1, *m2, *m3] == *MAGIC => rest,
        _ => return Err(ProtobufError::NotProtobuf),
    };
    if envelope.is_empty() {
        return Err(ProtobufError::Empty);
    }
    let unknown = Unknown::parse(envelope)?;
    if unknown.kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    if unknown.api_version.is_empty() {
        return Err(ProtobufError::MissingVersion);
    }
    let index = message_for(&unknown.api_version, &unknown.kind)?;
    let fields = match decode::message(index, unknown.raw, 0)? {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    // Go prints the inlined TypeMeta first: kind, then apiVersion.
    let mut object = Map::new();
    object.insert("kind".to_owned(), Value::String(unknown.kind));
    object.insert("apiVersion".to_owned(), Value::String(unknown.api_version));
    object.extend(fields);
    Ok(Value::Object(object))
}

fn message_for(api_version: &str, kind: &str) -> Result<u16, ProtobufError> {
    if let Some(index) = table::kind_message(api_version, kind) {
        return Ok(index);
    }
    // Upstream registers DeleteOptions (and the other options) in every group version,
    // so a typed client sends it as e.g. `v1` or `apps/v1`, next to meta.k8s.io/v1.
    let served = api_version == "meta.k8s.io/v1" || table::known_api_version(api_version);
    if kind == "DeleteOptions" && served {
        return Ok(schema::DELETE_OPTIONS);
    }
    Err(ProtobufError::UnknownKind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    })
}

/// The `runtime.Unknown` envelope. contentEncoding and contentType are ignored, as the
/// upstream protobuf serializer does.
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

impl<'a> Unknown<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut out = Unknown {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
        };
        for item in Fields::new(buf) {
            let (number, value) = item.map_err(ProtobufError::malformed)?;
            let wrong = |path: &str, v: WireValue<'_>| ProtobufError::WrongWireType {
                path: path.to_owned(),
                wire_type: v.wire_type(),
            };
            match (number, value) {
                (1, WireValue::Len(type_meta)) => {
                    for item in Fields::new(type_meta) {
                        let (number, value) =
                            item.map_err(|e| ProtobufError::malformed(e).within("typeMeta"))?;
                        let text = match value {
                            WireValue::Len(b) => String::from_utf8_lossy(b).into_owned(),
                            v if number <= 2 => return Err(wrong("typeMeta", v)),
                            _ => continue,
                        };
                        match number {
                            1 => out.api_version = text,
                            2 => out.kind = text,
                            _ => {}
                        }
                    }
                }
                (2, WireValue::Len(raw)) => out.raw = raw,
                (3, WireValue::Len(_)) | (4, WireValue::Len(_)) => {}
                (1..=4, v) => return Err(wrong("envelope", v)),
                _ => {}
            }
        }
        Ok(out)
    }
}
