//! SPDY/3.1 framing, the subset Kubernetes' streaming protocols use (what Go's spdystream
//! speaks): SYN_STREAM in, SYN_REPLY out, DATA both ways, RST_STREAM, PING echo, GOAWAY;
//! SETTINGS and WINDOW_UPDATE are read and ignored (spdystream enforces no flow control).
//!
//! Invariant: one zlib inflate and one deflate context per connection, both primed with the
//! SPDY/3 header dictionary, used strictly in frame order (header blocks of a connection are
//! one continuous zlib stream in each direction).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1).
pub const DICTIONARY: &[u8] = include_bytes!("spdy_dictionary.bin");

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const WINDOW_UPDATE: u16 = 9;
pub const FLAG_FIN: u8 = 0x01;
/// Frames larger than this are refused (spdystream sends ≤ 32 KiB data frames).
const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("spdy io: {0}")]
    Io(#[from] std::io::Error),
    #[error("spdy protocol: {0}")]
    Protocol(String),
}

pub type Headers = Vec<(String, String)>;

/// What the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        headers: Headers,
        fin: bool,
    },
    Data {
        id: u32,
        data: Vec<u8>,
        fin: bool,
    },
    Rst {
        id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, SYN_REPLY, HEADERS: nothing to do for a server.
    Ignored,
}

pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Inflates header blocks (one zlib stream per connection).
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(true))
    }
}

impl Inflater {
    pub fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let bad = |e: &dyn std::fmt::Display| SpdyError::Protocol(format!("header block: {e}"));
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(1024);
            }
            let before_in = self.0.total_in();
            let r = self
                .0
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.0.total_in() - before_in) as usize;
            match r {
                Ok(Status::Ok) | Ok(Status::BufError) | Ok(Status::StreamEnd) => {
                    if pos >= input.len() && out.capacity() > out.len() {
                        return Ok(out);
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(DICTIONARY).map_err(|e| bad(&e))?;
                }
                Err(e) => return Err(bad(&e)),
            }
        }
    }
}

/// Deflates header blocks (one zlib stream per connection, sync-flushed per frame).
pub struct Deflater(Compress);

impl Default for Deflater {
    fn default() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        // Cannot fail on a fresh stream.
        let _ = c.set_dictionary(DICTIONARY);
        Deflater(c)
    }
}

impl Deflater {
    pub fn deflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() + 128);
        let mut pos = 0;
        loop {
            let before_in = self.0.total_in();
            self.0
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Protocol(format!("header block: {e}")))?;
            pos += (self.0.total_in() - before_in) as usize;
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(1024);
        }
    }
}

pub fn encode_header_block(h: &Headers) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(h.len() as u32).to_be_bytes());
    for (k, v) in h {
        b.extend_from_slice(&(k.len() as u32).to_be_bytes());
        b.extend_from_slice(k.to_ascii_lowercase().as_bytes());
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b
}

pub fn decode_header_block(b: &[u8]) -> Result<Headers, SpdyError> {
    let bad = || SpdyError::Protocol("truncated header block".into());
    let mut pos = 0;
    let u32_at = |pos: &mut usize| -> Result<usize, SpdyError> {
        let s = b.get(*pos..*pos + 4).ok_or_else(bad)?;
        *pos += 4;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    let n = u32_at(&mut pos)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let kl = u32_at(&mut pos)?;
        let k = b.get(pos..pos + kl).ok_or_else(bad)?;
        pos += kl;
        let vl = u32_at(&mut pos)?;
        let v = b.get(pos..pos + vl).ok_or_else(bad)?;
        pos += vl;
        out.push((
            String::from_utf8_lossy(k).to_ascii_lowercase(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Ok(out)
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(0x8000u16 | 3).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(body);
    f
}

pub fn encode_data(id: u32, data: &[u8], fin: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(id & 0x7FFF_FFFF).to_be_bytes());
    f.push(if fin { FLAG_FIN } else { 0 });
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

/// Reads frames off a connection.
pub struct FrameReader<R> {
    inner: R,
    inflater: Inflater,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            inflater: Inflater::default(),
        }
    }

    pub async fn next(&mut self) -> Result<Frame, SpdyError> {
        let mut head = [0u8; 8];
        self.inner.read_exact(&mut head).await?;
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(SpdyError::Protocol(format!("frame of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        self.inner.read_exact(&mut body).await?;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7FFF_FFFF;
            return Ok(Frame::Data {
                id,
                data: body,
                fin: flags & FLAG_FIN != 0,
            });
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let u32_at = |i: usize| -> Result<u32, SpdyError> {
            body.get(i..i + 4)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or_else(|| SpdyError::Protocol(format!("short control frame {kind}")))
        };
        Ok(match kind {
            SYN_STREAM => {
                let id = u32_at(0)? & 0x7FFF_FFFF;
                let block = body
                    .get(10..)
                    .ok_or_else(|| SpdyError::Protocol("short SYN_STREAM".into()))?;
                let headers = decode_header_block(&self.inflater.inflate(block)?)?;
                Frame::SynStream {
                    id,
                    headers,
                    fin: flags & FLAG_FIN != 0,
                }
            }
            // Their header blocks still advance the shared zlib stream.
            SYN_REPLY | HEADERS => {
                if let Some(block) = body.get(4..).filter(|b| !b.is_empty()) {
                    self.inflater.inflate(block)?;
                }
                Frame::Ignored
            }
            RST_STREAM => Frame::Rst {
                id: u32_at(0)? & 0x7FFF_FFFF,
                status: u32_at(4)?,
            },
            PING => Frame::Ping(u32_at(0)?),
            GOAWAY => Frame::GoAway,
            _ => Frame::Ignored,
        })
    }
}

/// The sending half, shared by every stream of a connection.
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Mutex<(Deflater, mpsc::Sender<Vec<u8>>)>>,
}

impl Sender {
    /// Spawns the task that writes frames to `w`; it ends when every `Sender` is gone.
    pub fn spawn<W: AsyncWrite + Unpin + Send + 'static>(mut w: W) -> Sender {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if w.write_all(&f).await.is_err() || w.flush().await.is_err() {
                    break;
                }
            }
            let _ = w.shutdown().await;
        });
        Sender {
            inner: Arc::new(Mutex::new((Deflater::default(), tx))),
        }
    }

    async fn send(&self, f: Vec<u8>) -> bool {
        let g = self.inner.lock().await;
        g.1.send(f).await.is_ok()
    }

    pub async fn syn_reply(&self, id: u32, headers: &Headers, fin: bool) -> bool {
        let mut g = self.inner.lock().await;
        let Ok(block) = g.0.deflate(&encode_header_block(headers)) else {
            return false;
        };
        let mut body = (id & 0x7FFF_FFFF).to_be_bytes().to_vec();
        body.extend_from_slice(&block);
        let f = control(SYN_REPLY, if fin { FLAG_FIN } else { 0 }, &body);
        g.1.send(f).await.is_ok()
    }

    pub async fn data(&self, id: u32, data: &[u8], fin: bool) -> bool {
        self.send(encode_data(id, data, fin)).await
    }

    pub async fn rst(&self, id: u32, status: u32) -> bool {
        let mut body = (id & 0x7FFF_FFFF).to_be_bytes().to_vec();
        body.extend_from_slice(&status.to_be_bytes());
        self.send(control(RST_STREAM, 0, &body)).await
    }

    pub async fn ping(&self, id: u32) -> bool {
        self.send(control(PING, 0, &id.to_be_bytes())).await
    }

    pub async fn goaway(&self, last: u32) -> bool {
        let mut body = (last & 0x7FFF_FFFF).to_be_bytes().to_vec();
        body.extend_from_slice(&0u32.to_be_bytes());
        self.send(control(GOAWAY, 0, &body)).await
    }
}

/// Client-side helpers for tests: a SYN_STREAM with compressed headers.
pub fn encode_syn_stream(
    deflater: &mut Deflater,
    id: u32,
    headers: &Headers,
    fin: bool,
) -> Vec<u8> {
    let block = deflater
        .deflate(&encode_header_block(headers))
        .unwrap_or_default();
    let mut body = (id & 0x7FFF_FFFF).to_be_bytes().to_vec();
    body.extend_from_slice(&0u32.to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&block);
    control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.ends_with(b"enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_one_zlib_stream_each_way() {
        let mut d = Deflater::default();
        let mut i = Inflater::default();
        for n in 0..3 {
            let hs = h(&[
                ("streamtype", "data"),
                ("port", "8080"),
                ("requestid", &n.to_string()),
            ]);
            let wire = d.deflate(&encode_header_block(&hs)).unwrap();
            assert_eq!(decode_header_block(&i.inflate(&wire).unwrap()).unwrap(), hs);
        }
    }

    #[test]
    fn a_go_style_stream_uses_the_dictionary_id() {
        // The zlib header of a stream with a preset dictionary carries FDICT and its Adler-32.
        let mut d = Deflater::default();
        let wire = d.deflate(&encode_header_block(&h(&[("a", "b")]))).unwrap();
        assert_eq!(wire[1] & 0x20, 0x20, "FDICT set");
        assert_eq!(
            &wire[2..6],
            &[0xe3, 0xc6, 0xa7, 0xc2],
            "Adler-32 of the dictionary"
        );
    }

    #[tokio::test]
    async fn frames_parse_syn_data_rst_ping() {
        let mut d = Deflater::default();
        let mut wire = encode_syn_stream(&mut d, 1, &h(&[("streamtype", "error")]), true);
        wire.extend(encode_data(3, b"abc", true));
        wire.extend(control(RST_STREAM, 0, &[0, 0, 0, 3, 0, 0, 0, 5]));
        wire.extend(control(PING, 0, &7u32.to_be_bytes()));
        wire.extend(control(WINDOW_UPDATE, 0, &[0, 0, 0, 1, 0, 0, 1, 0]));
        let mut r = FrameReader::new(&wire[..]);
        assert_eq!(
            r.next().await.unwrap(),
            Frame::SynStream {
                id: 1,
                headers: h(&[("streamtype", "error")]),
                fin: true
            }
        );
        assert_eq!(
            r.next().await.unwrap(),
            Frame::Data {
                id: 3,
                data: b"abc".to_vec(),
                fin: true
            }
        );
        assert_eq!(r.next().await.unwrap(), Frame::Rst { id: 3, status: 5 });
        assert_eq!(r.next().await.unwrap(), Frame::Ping(7));
        assert_eq!(r.next().await.unwrap(), Frame::Ignored);
        assert!(r.next().await.is_err());
    }
}
