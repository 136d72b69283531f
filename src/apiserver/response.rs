//! Building HTTP responses: JSON objects, raw bytes, Status errors and streams.

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

pub fn text(code: u16, s: &str) -> Response<Body> {
    bytes(code, "text/plain; charset=utf-8", Bytes::from(s.to_owned()))
}

pub fn error(e: &ApiError) -> Response<Body> {
    json(e.code, &e.to_status())
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
