//! The server side of RFC 6455 as the Kubernetes streaming protocols use it: the upgrade
//! handshake with subprotocol negotiation, and binary message framing over any byte stream.
//!
//! Invariant: frames we send are never masked (server → client) and frames we accept must be
//! masked (client → server, RFC 6455 §5.1); control frames are answered here (ping → pong,
//! close → close), so callers only ever see data messages.

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message we accept (kubectl sends stdin in 32 KiB chunks).
pub const MAX_MESSAGE: usize = 16 << 20;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("websocket io: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket protocol: {0}")]
    Protocol(&'static str),
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{GUID}", key.trim()).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The client's `Sec-WebSocket-Key` (empty when missing).
pub fn client_key(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Is this a WebSocket upgrade request?
pub fn is_upgrade(headers: &http::HeaderMap) -> bool {
    header_has_token(headers, http::header::UPGRADE, "websocket")
        && headers.contains_key(http::header::SEC_WEBSOCKET_KEY)
}

/// Whether a comma-separated header (any occurrence) contains `token`, case-insensitively.
pub fn header_has_token(
    headers: &http::HeaderMap,
    name: http::header::HeaderName,
    token: &str,
) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The subprotocols the client offered, in its order of preference.
pub fn offered_protocols(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The first protocol the client offered that we support (client preference, as upstream's
/// wsstream negotiates).
pub fn negotiate(offered: &[String], supported: &[&str]) -> Option<String> {
    offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
}

/// The 101 answer to a WebSocket upgrade.
pub fn switching_protocols<B: Default>(key: &str, protocol: Option<&str>) -> http::Response<B> {
    let mut resp = http::Response::new(B::default());
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&accept_key(key)) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol.and_then(|p| http::HeaderValue::from_str(p).ok()) {
        h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

/// Encodes one unmasked frame.
pub fn encode_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A complete message read from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Binary(Vec<u8>),
    Text(Vec<u8>),
    /// The client closed (we already answered with a close frame).
    Close,
}

/// Reads whole messages from the client side of the connection; control frames that need
/// an answer are queued in `replies` for the writer.
pub struct Reader<R> {
    inner: R,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader { inner }
    }

    /// Next data message; pings are answered through `pong` (the caller writes them).
    pub async fn next(
        &mut self,
        pong: &mut (dyn FnMut(Vec<u8>) + Send),
    ) -> Result<Message, WsError> {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let (fin, opcode, payload) = self.frame().await?;
            match opcode {
                OP_PING => pong(encode_frame(OP_PONG, &payload)),
                OP_PONG => {}
                OP_CLOSE => return Ok(Message::Close),
                OP_TEXT | OP_BINARY => {
                    if message.is_some() {
                        return Err(WsError::Protocol("new message inside a fragmented one"));
                    }
                    if fin {
                        return Ok(data_message(opcode, payload));
                    }
                    message = Some((opcode, payload));
                }
                OP_CONT => {
                    let (op, mut buf) = message
                        .take()
                        .ok_or(WsError::Protocol("continuation without a message"))?;
                    buf.extend_from_slice(&payload);
                    if buf.len() > MAX_MESSAGE {
                        return Err(WsError::Protocol("message too large"));
                    }
                    if fin {
                        return Ok(data_message(op, buf));
                    }
                    message = Some((op, buf));
                }
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }

    async fn frame(&mut self) -> Result<(bool, u8, Vec<u8>), WsError> {
        let mut head = [0u8; 2];
        self.inner.read_exact(&mut head).await?;
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0F;
        if head[1] & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let len = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.inner.read_exact(&mut b).await?;
                u16::from_be_bytes(b) as u64
            }
            127 => {
                let mut b = [0u8; 8];
                self.inner.read_exact(&mut b).await?;
                u64::from_be_bytes(b)
            }
            n => n as u64,
        };
        if len > MAX_MESSAGE as u64 {
            return Err(WsError::Protocol("frame too large"));
        }
        let mut mask = [0u8; 4];
        self.inner.read_exact(&mut mask).await?;
        let mut payload = vec![0u8; len as usize];
        self.inner.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        Ok((fin, opcode, payload))
    }
}

fn data_message(opcode: u8, payload: Vec<u8>) -> Message {
    if opcode == OP_TEXT {
        Message::Text(payload)
    } else {
        Message::Binary(payload)
    }
}

/// Writes a close frame with status 1000 and flushes.
pub async fn write_close<W: AsyncWrite + Unpin>(w: &mut W) -> std::io::Result<()> {
    w.write_all(&encode_frame(OP_CLOSE, &1000u16.to_be_bytes()))
        .await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_encode_all_length_forms() {
        assert_eq!(encode_frame(OP_BINARY, b"ab"), vec![0x82, 2, b'a', b'b']);
        let f = encode_frame(OP_BINARY, &[0u8; 300]);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        let f = encode_frame(OP_BINARY, &vec![0u8; 70000]);
        assert_eq!(f[1], 127);
        assert_eq!(f.len(), 70000 + 10);
    }

    #[tokio::test]
    async fn reader_unmasks_joins_fragments_and_answers_pings() {
        let mut wire = masked(OP_PING, true, b"p");
        wire.extend(masked(OP_BINARY, false, &[1, b'h']));
        wire.extend(masked(OP_CONT, true, b"i"));
        wire.extend(masked(OP_CLOSE, true, &[3, 232]));
        let mut r = Reader::new(&wire[..]);
        let mut pongs = Vec::new();
        let m = r.next(&mut |p| pongs.push(p)).await.unwrap();
        assert_eq!(m, Message::Binary(vec![1, b'h', b'i']));
        assert_eq!(pongs, vec![encode_frame(OP_PONG, b"p")]);
        assert_eq!(r.next(&mut |_| {}).await.unwrap(), Message::Close);
    }

    #[tokio::test]
    async fn unmasked_client_frames_are_refused() {
        let wire = encode_frame(OP_BINARY, b"x");
        let mut r = Reader::new(&wire[..]);
        assert!(matches!(
            r.next(&mut |_| {}).await,
            Err(WsError::Protocol(_))
        ));
    }

    #[test]
    fn negotiation_follows_the_client_order() {
        let offered = vec![
            "v5.channel.k8s.io".to_owned(),
            "v4.channel.k8s.io".to_owned(),
        ];
        assert_eq!(
            negotiate(&offered, &["v4.channel.k8s.io", "v5.channel.k8s.io"]).as_deref(),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(negotiate(&offered, &["channel.k8s.io"]), None);
    }
}
