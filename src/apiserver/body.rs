//! Request bodies: bounded reading and decoding of JSON, YAML and protobuf objects.
//!
//! Invariant: a body larger than [`MAX_BODY_BYTES`] is refused with 413 before it is
//! buffered whole (by Content-Length when given, otherwise while streaming), and the client
//! gets to see that 413 (see [`refuse_too_large`]).

use super::status::ApiError;
use crate::api::registry::ResourceType;
use crate::api::schema::{self, duplicates::parse_noting_duplicates, FieldValidation, Problems};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::Duration;

/// Upstream's default request size limit (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How much of a refused body is read and thrown away so that its 413 reaches the client.
const DRAIN_MAX_BYTES: u64 = 64 << 20;
/// How long a refused body may take to arrive in full.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a whole body, refusing it with 413 once it passes the limit.
pub async fn read_limited<B>(mut body: B, content_length: Option<u64>) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if let Some(n) = content_length.filter(|&n| n > MAX_BODY_BYTES as u64) {
        return Err(refuse_too_large(body, 0, n).await);
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY_BYTES {
                let read = (buf.len() + data.len()) as u64;
                return Err(refuse_too_large(body, read, read).await);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The 413 for a body over the limit, after reading the rest of it (bounded in bytes and
/// time) without keeping it. Over HTTP/2, dropping a request body that is still arriving
/// makes hyper reset the stream (RST_STREAM CANCEL) before the response goes out, and the
/// client sees no Status at all; once the client has sent the whole body there is nothing
/// to reset. A body beyond the bound is still cut off: its client gets the reset.
async fn refuse_too_large<B>(mut body: B, read: u64, expected: u64) -> ApiError
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    if expected <= DRAIN_MAX_BYTES {
        let drain = async {
            let mut read = read;
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > DRAIN_MAX_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
    ApiError::too_large(MAX_BODY_BYTES)
}

/// Media type of a request body, parameters stripped.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object body (create/update). A missing Content-Type means JSON, as the
/// python client sends none.
pub fn decode_object(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let media = media_type(content_type);
    let value = match media.as_str() {
        "application/json" | "" => decode_json(body)?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode_yaml(body)?,
        "application/vnd.kubernetes.protobuf" => crate::api::protobuf::decode_to_json(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")))?,
        _ => return Err(ApiError::unsupported_media_type(content_type.unwrap_or(""))),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a single object",
        ));
    }
    Ok(value)
}

pub fn decode_json(body: &[u8]) -> Result<Value, ApiError> {
    decode_json_checked(body, false).map(|(v, _)| v)
}

/// Decodes JSON, and when `report` also names every repeated key (see
/// [`parse_noting_duplicates`]).
fn decode_json_checked(body: &[u8], report: bool) -> Result<(Value, Vec<String>), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let parsed = if report {
        parse_noting_duplicates(body)
    } else {
        serde_json::from_slice(body).map(|v| (v, Vec::new()))
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))
}

/// Decodes YAML; a repeated key keeps its last value, as upstream's non-strict decoding.
pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    decode_yaml_checked(body, false).map(|(v, _)| v)
}

/// Decodes YAML, and when `report` also names the first repeated key the way upstream's
/// strict YAML decoding does (`line 11: key "foo" already set in map`).
fn decode_yaml_checked(body: &[u8], report: bool) -> Result<(Value, Vec<String>), ApiError> {
    use serde_saphyr::{DuplicateKeyPolicy, Error, Options};
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML body: not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let decode = |duplicate_keys| {
        let mut options = Options::default();
        options.duplicate_keys = duplicate_keys;
        serde_saphyr::from_str_with_options::<Value>(text, options)
    };
    let bad = |e: Error| ApiError::bad_request(format!("error decoding YAML body: {e}"));
    let mut found = Vec::new();
    if report {
        match decode(DuplicateKeyPolicy::Error) {
            Ok(v) => return Ok((v, found)),
            Err(e) => {
                // The parse error may come wrapped with a source snippet.
                let mut inner = &e;
                while let Error::WithSnippet { error, .. } = inner {
                    inner = error;
                }
                let Error::DuplicateMappingKey { key, location } = inner else {
                    return Err(bad(e));
                };
                found.push(format!(
                    "line {}: key {:?} already set in map",
                    location.line(),
                    key.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    let value = decode(DuplicateKeyPolicy::LastWins).map_err(bad)?;
    Ok((value, found))
}

/// An object body decoded, checked and pruned for `rt` under the request's field
/// validation mode: unknown fields are always dropped; under Strict any unknown or
/// repeated field fails the request, under Warn each comes back as a warning.
pub fn decode_for(
    rt: &ResourceType,
    content_type: Option<&str>,
    body: &[u8],
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let report = mode.reports();
    let media = media_type(content_type);
    let mut problems = Problems::default();
    let mut obj = match media.as_str() {
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let (v, dups) = decode_yaml_checked(body, report)?;
            problems.yaml = dups;
            v
        }
        "application/json" | "" => {
            let (v, dups) = decode_json_checked(body, report)?;
            problems.duplicates = dups;
            v
        }
        _ => decode_object(content_type, body)?,
    };
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a single object",
        ));
    }
    schema::prune(rt, &mut obj, &mut problems.unknown);
    finish(mode, problems, |p| p.strict_message()).map(|w| (obj, w))
}

/// Applies the mode to what was found: Strict fails with `strict` as the message, Warn
/// gives the warning lines, Ignore forgets it.
pub fn finish(
    mode: FieldValidation,
    problems: Problems,
    strict: impl FnOnce(&Problems) -> String,
) -> Result<Vec<String>, ApiError> {
    match mode {
        _ if problems.is_empty() => Ok(Vec::new()),
        FieldValidation::Strict => Err(ApiError::bad_request(strict(&problems))),
        FieldValidation::Warn => Ok(problems.lines().collect()),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// A server-side apply body: YAML (or JSON), checked and pruned like an object. Upstream
/// words unknown fields of an apply configuration as the typed-patch error
/// (`.spec.foo: field not declared in schema`).
pub fn decode_apply(
    rt: &ResourceType,
    body: &[u8],
    mode: FieldValidation,
    name: &str,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut doc, yaml) = decode_yaml_checked(body, mode.reports())?;
    let mut problems = Problems {
        yaml,
        ..Problems::default()
    };
    if doc.is_object() {
        schema::prune(rt, &mut doc, &mut problems.unknown);
    }
    let strict = |p: &Problems| {
        if !p.yaml.is_empty() {
            return p.strict_message();
        }
        let fields: Vec<String> = p
            .unknown
            .iter()
            .map(|f| format!(".{f}: field not declared in schema"))
            .collect();
        format!(
            "failed to create typed patch object ({name}; {}, Kind={}): {}",
            rt.api_version(),
            rt.kind,
            fields.join(", ")
        )
    };
    finish(mode, problems, strict).map(|w| (doc, w))
}

/// A merge or strategic merge patch: duplicates in it and fields of it the type lacks are
/// reported (strategic directives, `$...` keys, are not fields). The patch itself is left
/// as sent; the patched object is pruned before it is stored.
pub fn decode_merge_patch(
    rt: &ResourceType,
    body: &[u8],
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut doc, duplicates) = decode_json_checked(body, mode.reports())?;
    if !mode.reports() {
        return Ok((doc, Vec::new()));
    }
    let mut problems = Problems {
        duplicates,
        ..Problems::default()
    };
    if doc.is_object() {
        schema::prune(rt, &mut doc, &mut problems.unknown);
        if !problems.unknown.is_empty() {
            // Pruning removed fields (strategic directives among them): the patch is
            // applied as sent, so it is read again. Pruning a copy instead cost every
            // patch a copy.
            doc = decode_json(body)?;
        }
        problems.unknown.retain(|p| !p.contains('$'));
    }
    finish(mode, problems, |p| p.strict_message()).map(|w| (doc, w))
}

/// Adds one `Warning: 299 - "..."` header per line (RFC 7234 warn-text, quoted).
pub fn with_warnings<B>(mut resp: http::Response<B>, warnings: &[String]) -> http::Response<B> {
    for w in warnings {
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

/// Decodes a DELETE body (DeleteOptions in JSON or protobuf); an empty body is no options.
pub fn decode_delete_options(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    decode_object(content_type, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_bodies_are_refused_while_streaming() {
        let big = vec![b'x'; MAX_BODY_BYTES + 1];
        let body = http_body_util::Full::new(Bytes::from(big));
        let e = read_limited(body, None).await.unwrap_err();
        assert_eq!(e.code, 413);
        let e = read_limited(http_body_util::Empty::<Bytes>::new(), Some(10 << 20))
            .await
            .unwrap_err();
        assert_eq!(e.code, 413);
    }

    /// A body that counts how much of it was polled.
    struct Counted {
        chunks: std::collections::VecDeque<Bytes>,
        polled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl http_body::Body for Counted {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            let next = self.chunks.pop_front();
            if let Some(c) = &next {
                self.polled
                    .fetch_add(c.len(), std::sync::atomic::Ordering::SeqCst);
            }
            std::task::Poll::Ready(next.map(|c| Ok(http_body::Frame::data(c))))
        }
    }

    fn counted(total: usize) -> (Counted, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let polled = std::sync::Arc::default();
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let body = Counted {
            chunks: (0..total >> 20).map(|_| chunk.clone()).collect(),
            polled: std::sync::Arc::clone(&polled),
        };
        (body, polled)
    }

    #[tokio::test]
    async fn a_refused_body_is_read_to_its_end_so_the_413_is_not_lost_to_a_stream_reset() {
        use std::sync::atomic::Ordering;
        let (body, polled) = counted(8 << 20);
        let e = read_limited(body, None).await.unwrap_err();
        assert_eq!((e.code, polled.load(Ordering::SeqCst)), (413, 8 << 20));
        let (body, polled) = counted(8 << 20);
        let e = read_limited(body, Some(8 << 20)).await.unwrap_err();
        assert_eq!((e.code, polled.load(Ordering::SeqCst)), (413, 8 << 20));
        // Past the bound the rest is not waited for.
        let (body, polled) = counted(128 << 20);
        let e = read_limited(body, None).await.unwrap_err();
        assert_eq!(e.code, 413);
        assert!(polled.load(Ordering::SeqCst) <= (DRAIN_MAX_BYTES as usize) + (1 << 20));
        let (body, polled) = counted(128 << 20);
        read_limited(body, Some(128 << 20)).await.unwrap_err();
        assert_eq!(polled.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn bodies_decode_by_content_type() {
        let v = decode_object(
            Some("application/yaml"),
            b"kind: ConfigMap\nmetadata:\n  name: a\n",
        )
        .unwrap();
        assert_eq!(v["metadata"]["name"], "a");
        assert_eq!(
            decode_object(Some("text/plain"), b"{}").unwrap_err().code,
            415
        );
        assert_eq!(decode_object(None, b"{").unwrap_err().code, 400);
        assert_eq!(decode_object(None, b"[1]").unwrap_err().code, 400);
    }

    #[test]
    fn a_merge_patch_comes_back_as_sent_with_its_unknown_and_repeated_fields_named() {
        let pods = crate::api::registry::Registry::new()
            .lookup("", "v1", "pods")
            .expect("pods");
        let plain = br#"{"status": {"phase": "Running", "podIP": "10.0.0.1"}}"#;
        let (doc, warnings) = decode_merge_patch(&pods, plain, FieldValidation::Warn).unwrap();
        assert_eq!(doc, serde_json::from_slice::<Value>(plain).unwrap());
        assert!(warnings.is_empty());
        // Strategic directives are not fields: kept, and not reported.
        let directive = br#"{"spec": {"$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": "x"}]}}"#;
        let (doc, warnings) = decode_merge_patch(&pods, directive, FieldValidation::Warn).unwrap();
        assert_eq!(doc, serde_json::from_slice::<Value>(directive).unwrap());
        assert!(warnings.is_empty(), "{warnings:?}");
        let odd = br#"{"spec": {"bogus": 1, "$retainKeys": ["x"]},
            "status": {"phase": "Running", "phase": "Failed"}}"#;
        let (doc, warnings) = decode_merge_patch(&pods, odd, FieldValidation::Warn).unwrap();
        assert_eq!(doc, serde_json::from_slice::<Value>(odd).unwrap());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("spec.bogus")));
        assert!(warnings.iter().any(|w| w.contains("status.phase")));
        let e = decode_merge_patch(&pods, odd, FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 400);
    }
}
