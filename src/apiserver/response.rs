//! Building HTTP responses: JSON objects, raw bytes, Status errors and streams.

use super::request::Output;
use super::status::ApiError;
use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use std::convert::Infallible;

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn bytes(code: u16, content_type: &str, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body).boxed())
        .expect("static status and header values are valid")
}

pub fn json(code: u16, v: &Value) -> Response<Body> {
    json_typed(code, "application/json", v)
}

pub fn json_typed(code: u16, content_type: &str, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    bytes(code, content_type, Bytes::from(body))
}

/// The answer to a write: the object as the bytes it was stored as when there are some
/// (serializing it again was ~4% of the server's CPU under `bench.sh scale`).
pub fn written(code: u16, w: &super::objects::Written) -> Response<Body> {
    match w.stored_json() {
        Some(stored) => bytes(code, "application/json", stored.clone()),
        None => json(code, w.object()),
    }
}

pub fn text(code: u16, s: &str) -> Response<Body> {
    bytes(code, "text/plain; charset=utf-8", Bytes::from(s.to_owned()))
}

/// A Status error in protobuf when the client prefers it, else JSON.
pub fn error_negotiated(e: &ApiError, protobuf: bool) -> Response<Body> {
    let status = e.to_status();
    if protobuf {
        if let Ok(body) = crate::api::protobuf::encode_object(&status) {
            return bytes(e.code, PROTOBUF, Bytes::from(body));
        }
    }
    json(e.code, &status)
}

pub const PROTOBUF: &str = crate::api::protobuf::CONTENT_TYPE;

/// An object (or list, or Status) in protobuf. Objects without a protobuf form are answered
/// in JSON: negotiation only picks protobuf for resources whose kinds have one, and the
/// kinds their handlers answer with (Status, Scale, the review kinds) have one too.
pub fn object(code: u16, output: Output, v: &Value) -> Response<Body> {
    if output == Output::Protobuf {
        match crate::api::protobuf::encode_object(v) {
            Ok(body) => return bytes(code, PROTOBUF, Bytes::from(body)),
            Err(e) => tracing::debug!("answering in JSON: {e}"),
        }
    }
    json(code, v)
}

/// Re-encodes a handler's JSON answer in protobuf (writes, deletes, subresources: their
/// answer is one object, so the extra parse is small next to the write itself).
pub async fn to_protobuf(resp: Response<Body>) -> Response<Body> {
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == b"application/json");
    if !is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await;
    let body = collected.to_bytes();
    let encoded = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| crate::api::protobuf::encode_object(&v).ok());
    let mut resp = match encoded {
        Some(pb) => {
            let mut r = Response::from_parts(parts, Full::new(Bytes::from(pb)).boxed());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(PROTOBUF),
            );
            r
        }
        None => Response::from_parts(parts, Full::new(body).boxed()),
    };
    resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    resp
}

/// A chunked streaming response fed by a channel (watch events, followed logs).
pub fn stream(content_type: &str, rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(StreamBody::new(s).boxed())
        .expect("static status and header values are valid")
}
