//! HTTP forwarding shared by the proxying subresources (`kubelet_proxy` for a node's
//! kubelet, `pod_proxy` for pods and services): dialing the backend, passing the request on,
//! relaying an upgraded connection, and streaming the answer back.
//!
//! Invariant: the caller's credentials never reach the backend, and upgrades are passed
//! through untouched (both ends negotiate the subprotocol; we copy bytes after the 101).

use super::html_links::LinkRewriter;
use super::response::Body;
use super::status::ApiError;
use super::{ApiState, RequestBody};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A core/v1 object the proxies route by (pod, node, service, endpoints), if it exists.
pub async fn read(
    state: &ApiState,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let rt = state
        .registry
        .lookup("", "v1", plural)
        .ok_or_else(ApiError::no_route)?;
    let Some(rec) = state.store.get(&rt.key(namespace, name)).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&rec.value)
        .map(Some)
        .map_err(|e| ApiError::internal(format!("decoding {plural}: {e}")))
}

/// [`read`], NotFound when absent.
pub async fn read_existing(
    state: &ApiState,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    match read(state, plural, namespace, name).await? {
        Some(v) => Ok(v),
        None => {
            let rt = state
                .registry
                .lookup("", "v1", plural)
                .ok_or_else(ApiError::no_route)?;
            Err(ApiError::not_found(&rt, name))
        }
    }
}

/// The path a proxy request carries after `/<plural>/<name>/proxy`, raw (percent-encoding
/// and trailing slash as sent): "" for the proxy root. `None` when the URI spells those
/// segments otherwise than the router matched them (`web//proxy`): no path is guessed.
pub fn path_after_proxy<'a>(path: &'a str, plural: &str, name: &str) -> Option<&'a str> {
    let marker = format!("/{plural}/{name}/proxy");
    let rest = &path[path.find(&marker)? + marker.len()..];
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// `host:port`, bracketing an IPv6 address.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One HTTP/1.1 connection (with upgrades) to `host:port`, over TLS when `tls` is given.
/// Errors read as Go's dialer does (`dial tcp ADDR: ...`), since clients show them.
pub async fn dial(
    host: &str,
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<SendRequest<RequestBody>, String> {
    let addr = authority(host, port);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("dial tcp {addr}: i/o timeout"))?
        .map_err(|e| format!("dial tcp {addr}: connect: {}", go_errno_text(&e)))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => handshake(tcp).await,
        Some(cfg) => {
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| format!("address {host}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            handshake(tls).await
        }
    }
}

/// The lower-case errno text Go prints ("connection refused"), not Rust's "Connection
/// refused (os error 111)".
fn go_errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<RequestBody>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "proxied connection ended");
        }
    });
    Ok(send)
}

fn empty_request_body() -> RequestBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What the backend did with a forwarded request.
pub enum Forwarded {
    /// It switched protocols; the two connections are being relayed and this 101 goes to
    /// the client.
    Switched(Response<Body>),
    /// It answered; the client's request comes back (a caller may still upgrade it itself).
    Answered(Box<Request<RequestBody>>, Response<hyper::body::Incoming>),
}

/// Sends `req` to the backend as `uri` with `Host: authority`. With `pass_upgrade`, an
/// upgrade request goes through as one; without, the backend sees a plain request.
pub async fn forward(
    mut send: SendRequest<RequestBody>,
    mut req: Request<RequestBody>,
    uri: &str,
    authority: &str,
    pass_upgrade: bool,
) -> Result<Forwarded, String> {
    let upgrade = pass_upgrade && req.headers().contains_key(http::header::UPGRADE);
    let body = if upgrade {
        empty_request_body()
    } else {
        std::mem::replace(req.body_mut(), empty_request_body())
    };
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(uri)
        .body(body)
        .map_err(|e| e.to_string())?;
    copy_headers(req.headers(), out.headers_mut(), upgrade);
    if let Ok(h) = http::HeaderValue::from_str(authority) {
        out.headers_mut().insert(http::header::HOST, h);
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut resp = send.send_request(out).await.map_err(|e| e.to_string())?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Forwarded::Answered(Box::new(req), resp));
    }
    let Some(client_upgrade) = client_upgrade else {
        return Err("the backend switched protocols without an upgrade request".to_owned());
    };
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (Ok(a), Ok(b)) = (client_upgrade.await, backend_upgrade.await) else {
            tracing::debug!("proxy: an upgrade did not complete");
            return;
        };
        let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    let mut r = Response::builder().status(101);
    for (k, v) in resp.headers() {
        r = r.header(k, v);
    }
    r.body(
        http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    )
    .map(Forwarded::Switched)
    .map_err(|e| e.to_string())
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "upgrade"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
    )
}

/// Headers that go to the backend: everything but credentials and hop-by-hop headers
/// (kept for an upgrade, which needs Connection/Upgrade).
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, upgrade: bool) {
    for (k, v) in from {
        let n = k.as_str();
        if n == "authorization"
            || n == "host"
            || n.starts_with("impersonate-")
            || (is_hop_by_hop(n) && !upgrade)
        {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

/// Which of the backend's response headers reach the client.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ResponseHeaders {
    /// Content-Type and Cache-Control (the kubelet's answers, as the API server's own).
    ContentOnly,
    /// Everything but hop-by-hop and CORS headers (a pod's or service's answer, as a
    /// reverse proxy).
    AllButHopByHop,
}

/// The backend's answer streamed back as it arrives (followed logs never end on their own).
pub fn stream_response(
    resp: Response<hyper::body::Incoming>,
    headers: ResponseHeaders,
) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let mut r = Response::new(stream_body(Bytes::new(), body));
    *r.status_mut() = parts.status;
    match headers {
        ResponseHeaders::ContentOnly => {
            for k in [http::header::CONTENT_TYPE, http::header::CACHE_CONTROL] {
                if let Some(v) = parts.headers.get(&k) {
                    r.headers_mut().insert(k, v.clone());
                }
            }
        }
        // Content-Length goes too: hyper frames the streamed body itself.
        ResponseHeaders::AllButHopByHop => relay_headers(&parts.headers, r.headers_mut(), false),
    }
    r
}

/// `first` (what was read already, if anything), then the rest of `body` as it arrives.
fn stream_body(first: Bytes, mut body: hyper::body::Incoming) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(first).await.is_err() {
            return;
        }
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                if tx.send(data).await.is_err() {
                    break;
                }
            }
        }
    });
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    StreamBody::new(s).boxed()
}

/// The CORS headers a backend's answer loses (upstream's proxy removes them: the API
/// server, not the pod, says which origins may call it).
const CORS_HEADERS: [&str; 4] = [
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
];

/// The largest HTML page rewritten in memory (decompressed too); a larger one is relayed as
/// it is.
const MAX_REWRITTEN_PAGE: usize = 64 << 20;

/// A pod's or Service's answer as a reverse proxy relays it (every header but hop-by-hop
/// and CORS ones), its links led back through the proxy ([`LinkRewriter`]): the
/// `Location` of a redirect, and the URL attributes of an HTML page, which is read whole
/// for it (decompressed and compressed again if it came gzip or deflate). Anything else
/// streams as it arrives.
pub async fn relay_with_links(
    resp: Response<hyper::body::Incoming>,
    links: &LinkRewriter,
) -> Result<Response<Body>, ApiError> {
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    let encoding = resp
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let rewritable = content_type.as_deref() == Some("text/html")
        && matches!(encoding.as_str(), "" | "gzip" | "deflate");
    if !rewritable {
        let mut r = stream_response(resp, ResponseHeaders::AllButHopByHop);
        fix_location(r.headers_mut(), links);
        return Ok(r);
    }
    let (parts, mut body) = resp.into_parts();
    // Read whole (upstream reads the page whole too), up to a bound: a larger page is
    // relayed as it is, what was read first and then the rest as it arrives.
    let mut page = bytes::BytesMut::new();
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::service_unavailable(format!(
                "error trying to reach service: reading the page: {e}"
            ))
        })?;
        if let Ok(data) = frame.into_data() {
            page.extend_from_slice(&data);
        }
        if page.len() > MAX_REWRITTEN_PAGE {
            too_large = true;
            break;
        }
    }
    let page = page.freeze();
    let keep_length = too_large || page.is_empty();
    let body: Body = if too_large {
        stream_body(page, body)
    } else {
        let encoding = encoding.clone();
        let links = links.clone();
        let rewritten = tokio::task::spawn_blocking(move || {
            rewrite_page(&page, &encoding, &links).unwrap_or(page)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
        http_body_util::Full::new(rewritten)
            .map_err(|never| match never {})
            .boxed()
    };
    let mut r = Response::new(body);
    *r.status_mut() = parts.status;
    // A rewritten page has its own length (hyper sets it); an answer relayed as it came (a
    // large page, an empty one such as a HEAD's) keeps the backend's.
    relay_headers(&parts.headers, r.headers_mut(), keep_length);
    fix_location(r.headers_mut(), links);
    Ok(r)
}

/// A backend's response headers as a reverse proxy relays them: all but hop-by-hop and
/// CORS ones, and Content-Length only with `keep_length`.
fn relay_headers(from: &HeaderMap, to: &mut HeaderMap, keep_length: bool) {
    for (k, v) in from {
        let relayed = !is_hop_by_hop(k.as_str())
            && !CORS_HEADERS.contains(&k.as_str())
            && (keep_length || k != http::header::CONTENT_LENGTH);
        if relayed {
            to.append(k.clone(), v.clone());
        }
    }
}

/// The page with its links rewritten, in its own encoding; `None` when nothing changed or
/// it cannot be decoded (then it goes as it came, as upstream lets an unreadable page by).
fn rewrite_page(page: &[u8], encoding: &str, links: &LinkRewriter) -> Option<Bytes> {
    use std::io::{Read, Write};
    // Decompressed within the same bound: a small body can inflate a thousandfold.
    let limit = MAX_REWRITTEN_PAGE as u64 + 1;
    let mut plain = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(page)
            .take(limit)
            .read_to_end(&mut plain)
            .ok()?,
        "deflate" => flate2::read::DeflateDecoder::new(page)
            .take(limit)
            .read_to_end(&mut plain)
            .ok()?,
        _ => return links.rewrite_html(page).map(Bytes::from),
    };
    if plain.len() > MAX_REWRITTEN_PAGE {
        return None;
    }
    let rewritten = links.rewrite_html(&plain)?;
    let level = flate2::Compression::default();
    let out = match encoding {
        "gzip" => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), level);
            w.write_all(&rewritten).ok()?;
            w.finish().ok()?
        }
        _ => {
            let mut w = flate2::write::DeflateEncoder::new(Vec::new(), level);
            w.write_all(&rewritten).ok()?;
            w.finish().ok()?
        }
    };
    Some(Bytes::from(out))
}

/// A `Location` leads back through the proxy.
fn fix_location(headers: &mut HeaderMap, links: &LinkRewriter) {
    let location = headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| links.rewrite_url(l))
        .and_then(|l| http::HeaderValue::from_str(&l).ok());
    if let Some(l) = location {
        headers.insert(http::header::LOCATION, l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxied_path_is_what_follows_the_proxy_segment() {
        let p = "/api/v1/namespaces/ns/pods/web:80/proxy/a%20b/?x=1";
        assert_eq!(path_after_proxy(p, "pods", "web:80"), Some("/a%20b/?x=1"));
        assert_eq!(
            path_after_proxy("/api/v1/nodes/n1/proxy", "nodes", "n1"),
            Some("")
        );
        assert_eq!(
            path_after_proxy("/api/v1/nodes/n1/proxyz", "nodes", "n1"),
            None
        );
        assert_eq!(
            path_after_proxy("/api/v1/pods/web//proxy/x", "pods", "web"),
            None
        );
    }

    #[test]
    fn a_compressed_page_is_rewritten_in_its_own_encoding_and_an_unreadable_one_is_left() {
        use std::io::{Read, Write};
        let links = LinkRewriter {
            prefix: "/p".into(),
            backend: "10.0.0.1:80".into(),
            client_host: None,
        };
        let page = b"<a href=\"/x\">x</a>";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(page).unwrap();
        let out = rewrite_page(&gz.finish().unwrap(), "gzip", &links).unwrap();
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "<a href=\"/p/x\">x</a>");
        assert_eq!(
            &rewrite_page(page, "", &links).unwrap()[..],
            b"<a href=\"/p/x\">x</a>"
        );
        assert_eq!(rewrite_page(b"not gzip", "gzip", &links), None);
        // A page that inflates past the bound is left as it came, not inflated whole.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        bomb.write_all(b"<a href=\"/x\">").unwrap();
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..=(MAX_REWRITTEN_PAGE >> 20) {
            bomb.write_all(&zeros).unwrap();
        }
        let bomb = bomb.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{} bytes compressed", bomb.len());
        assert_eq!(rewrite_page(&bomb, "gzip", &links), None);
        let mut backend = HeaderMap::new();
        backend.insert("location", "http://10.0.0.1:80/y?z".parse().unwrap());
        backend.insert("access-control-allow-origin", "*".parse().unwrap());
        let mut headers = HeaderMap::new();
        relay_headers(&backend, &mut headers, false);
        fix_location(&mut headers, &links);
        assert_eq!(headers["location"], "/p/y?z");
        assert!(!headers.contains_key("access-control-allow-origin"));
    }

    #[test]
    fn dial_errors_read_like_go() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(go_errno_text(&e), "connection refused");
        assert_eq!(authority("fd00::1", 80), "[fd00::1]:80");
        assert_eq!(authority("10.0.0.1", 80), "10.0.0.1:80");
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_behind() {
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer x"),
            ("impersonate-user", "u"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("x-custom", "1"),
        ] {
            from.insert(k, v.parse().unwrap());
        }
        let mut plain = HeaderMap::new();
        copy_headers(&from, &mut plain, false);
        assert_eq!(
            plain.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-custom"]
        );
        let mut up = HeaderMap::new();
        copy_headers(&from, &mut up, true);
        assert!(up.contains_key("upgrade") && up.contains_key("connection"));
        assert!(!up.contains_key("authorization"));
    }
}
