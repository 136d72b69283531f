//! exec and attach over SPDY/3.1 (`X-Stream-Protocol-Version: v4.channel.k8s.io` …
//! `channel.k8s.io`): what clients use when the WebSocket upgrade is refused or turned off.
//! The client opens one stream per `streamtype` (error, stdin, stdout, stderr, resize); the
//! session starts once every stream the request asked for exists.
//!
//! Invariant: as on WebSocket, the status is written on the error stream only after the
//! output streams were finished (FIN), exactly once.

use super::remotecommand::{legacy_error_text, status_json, Input, Outcome, Output, StreamOptions};
use super::remotecommand::{V1, V2, V3, V4};
use super::spdy::{self, Frame, FrameReader, Sender};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

/// SPDY subprotocols, best first (v5 exists on WebSocket only, as upstream).
pub const PROTOCOLS: &[&str] = &[V4, V3, V2, V1];
/// How long the client has to open its streams (upstream's streamCreationTimeout).
const STREAM_CREATION: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Copy)]
struct Ids {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Ids {
    fn complete(&self, o: &StreamOptions, protocol: &str) -> bool {
        self.error.is_some()
            && (!o.stdin || self.stdin.is_some())
            && (!o.stdout || self.stdout.is_some())
            && (!o.stderr || self.stderr.is_some())
            && (!(o.tty && protocol != V1 && protocol != V2) || self.resize.is_some())
    }
}

/// Parses the resize stream: JSON objects, one after the other.
pub fn parse_resizes(buf: &mut Vec<u8>) -> Vec<Input> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    while let Some(Ok(s)) = stream.next() {
        used = stream.byte_offset();
        out.push(Input::Resize {
            width: s.width,
            height: s.height,
        });
    }
    buf.drain(..used);
    out
}

pub async fn serve<IO, F, Fut>(io: IO, protocol: &str, opts: &StreamOptions, backend: F)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce(mpsc::Receiver<Input>, mpsc::Sender<Output>) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let (rd, wr) = tokio::io::split(io);
    let sender = Sender::spawn(wr);
    let (in_tx, in_rx) = mpsc::channel::<Input>(64);
    let (ready_tx, ready_rx) = oneshot::channel::<Ids>();
    let reader_sender = sender.clone();
    let want = opts.clone();
    let proto = protocol.to_owned();
    let reader = tokio::spawn(async move {
        let mut r = FrameReader::new(rd);
        let mut ids = Ids::default();
        let mut ready = Some(ready_tx);
        let mut resize_buf = Vec::new();
        loop {
            let Ok(frame) = r.next().await else {
                let _ = in_tx.send(Input::StdinClose).await;
                return;
            };
            match frame {
                Frame::SynStream { id, headers, .. } => {
                    reader_sender.syn_reply(id, &Vec::new(), false).await;
                    match spdy::header(&headers, "streamtype").unwrap_or_default() {
                        "error" => ids.error = Some(id),
                        "stdin" => ids.stdin = Some(id),
                        "stdout" => ids.stdout = Some(id),
                        "stderr" => ids.stderr = Some(id),
                        "resize" => ids.resize = Some(id),
                        _ => {
                            reader_sender.rst(id, 1).await;
                        }
                    }
                    if ids.complete(&want, &proto) {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(ids);
                        }
                    }
                }
                Frame::Data { id, data, fin } => {
                    if Some(id) == ids.stdin {
                        if !data.is_empty() && in_tx.send(Input::Stdin(data)).await.is_err() {
                            return;
                        }
                        if fin {
                            let _ = in_tx.send(Input::StdinClose).await;
                        }
                    } else if Some(id) == ids.resize {
                        resize_buf.extend_from_slice(&data);
                        for r in parse_resizes(&mut resize_buf) {
                            let _ = in_tx.send(r).await;
                        }
                    }
                }
                Frame::Ping(n) => {
                    reader_sender.ping(n).await;
                }
                Frame::Rst { id, .. } if Some(id) == ids.stdin => {
                    let _ = in_tx.send(Input::StdinClose).await;
                }
                Frame::GoAway => {
                    let _ = in_tx.send(Input::StdinClose).await;
                    return;
                }
                _ => {}
            }
        }
    });
    let ids = match tokio::time::timeout(STREAM_CREATION, ready_rx).await {
        Ok(Ok(ids)) => ids,
        _ => {
            tracing::debug!("SPDY exec/attach: the client did not open its streams");
            reader.abort();
            return;
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
    let fwd_sender = sender.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let (id, d) = match o {
                Output::Stdout(d) => (ids.stdout, d),
                Output::Stderr(d) => (ids.stderr, d),
            };
            if let Some(id) = id {
                if !fwd_sender.data(id, &d, false).await {
                    break;
                }
            }
        }
    });
    let outcome = backend(in_rx, out_tx).await;
    let _ = forwarder.await;
    for id in [ids.stdout, ids.stderr].into_iter().flatten() {
        sender.data(id, &[], true).await;
    }
    if let Some(err) = ids.error {
        let status = if protocol == V4 {
            Some(status_json(&outcome).to_string())
        } else {
            legacy_error_text(&outcome)
        };
        sender
            .data(err, status.as_deref().unwrap_or_default().as_bytes(), true)
            .await;
    }
    reader.abort();
    drop(sender);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::server::spdy::{encode_data, encode_syn_stream, Deflater};
    use std::collections::HashMap;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn resize_stream_is_a_json_sequence() {
        let mut b = br#"{"Width":80,"Height":24}
{"Width":100,"Hei"#
            .to_vec();
        assert_eq!(
            parse_resizes(&mut b),
            vec![Input::Resize {
                width: 80,
                height: 24
            }]
        );
        b.extend_from_slice(b"ght\":50}\n");
        assert_eq!(
            parse_resizes(&mut b),
            vec![Input::Resize {
                width: 100,
                height: 50
            }]
        );
    }

    #[tokio::test]
    async fn v4_session_waits_for_streams_and_ends_with_the_status() {
        let (server, client) = tokio::io::duplex(1 << 16);
        let opts = StreamOptions {
            stdin: true,
            stdout: true,
            ..Default::default()
        };
        tokio::spawn(async move {
            serve(server, V4, &opts, |mut input, out| async move {
                let mut got = Vec::new();
                while let Some(i) = input.recv().await {
                    match i {
                        Input::Stdin(d) => got.extend(d),
                        Input::StdinClose => break,
                        Input::Resize { .. } => {}
                    }
                }
                out.send(Output::Stdout(got)).await.unwrap();
                Outcome::Exited {
                    code: 2,
                    command: vec!["cat".into()],
                }
            })
            .await
        });
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut d = Deflater::default();
        let h = |t: &str| vec![("streamtype".to_owned(), t.to_owned())];
        let mut wire = encode_syn_stream(&mut d, 1, &h("error"), false);
        wire.extend(encode_syn_stream(&mut d, 3, &h("stdin"), false));
        wire.extend(encode_syn_stream(&mut d, 5, &h("stdout"), false));
        wire.extend(encode_data(3, b"abc", true));
        cwr.write_all(&wire).await.unwrap();
        let mut r = FrameReader::new(&mut crd);
        let mut got: HashMap<u32, (Vec<u8>, bool)> = HashMap::new();
        while !(got.get(&1).is_some_and(|e| e.1) && got.get(&5).is_some_and(|e| e.1)) {
            if let Frame::Data { id, data, fin } =
                tokio::time::timeout(Duration::from_secs(5), r.next())
                    .await
                    .unwrap()
                    .unwrap()
            {
                let e = got.entry(id).or_default();
                e.0.extend(data);
                e.1 |= fin;
            }
        }
        assert_eq!(got[&5].0, b"abc");
        let status: serde_json::Value = serde_json::from_slice(&got[&1].0).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "2");
    }
}
