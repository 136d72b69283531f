//! Request bodies: bounded reading and decoding of JSON, YAML and protobuf objects.
//!
//! Invariant: a body larger than [`MAX_BODY_BYTES`] is refused with 413 before it is
//! buffered whole (by Content-Length when given, otherwise while streaming).

use super::status::ApiError;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::Value;

/// Upstream's default request size limit (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Reads a whole body, refusing it with 413 once it passes the limit.
pub async fn read_limited<B>(mut body: B, content_length: Option<u64>) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if content_length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY_BYTES {
                return Err(ApiError::too_large(MAX_BODY_BYTES));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
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
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))
}

pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML body: not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
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
}
