//! exec and attach: the runtime's process streams bridged to a channel protocol client
//! (WebSocket `v5/v4.channel.k8s.io` here; SPDY reuses [`Input`]/[`Output`]/[`Outcome`]).
//!
//! Invariant: the status (channel 3) is written only after every byte of the process's
//! output has been sent, and exactly once per session.

use super::websocket::{self, Message, Reader};
use crate::runtime::containers::facade::{ExecIo, Runtime};
use crate::runtime::containers::shim::protocol as proto;
use crate::runtime::containers::ExecConfig;
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
/// WebSocket subprotocols we speak, best first.
pub const WS_PROTOCOLS: &[&str] = &[V5, V4, V3, V2, V1];

/// How long output may still arrive after the process exited (a background child that
/// kept the pipe open must not hold the session for ever).
const DRAIN: Duration = Duration::from_secs(2);

/// The streams a client asked for (`stdin`, `stdout`, `stderr`, `tty` query parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub command: Vec<String>,
}

impl StreamOptions {
    pub fn from_query(query: Option<&str>) -> StreamOptions {
        let mut o = StreamOptions::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let on = matches!(v.as_ref(), "1" | "true" | "True" | "TRUE" | "t" | "T");
            match k.as_ref() {
                "stdin" | "input" => o.stdin = on,
                "stdout" | "output" => o.stdout = on,
                "stderr" | "error" => o.stderr = on,
                "tty" => o.tty = on,
                "command" => o.command.push(v.into_owned()),
                _ => {}
            }
        }
        // With a tty, stderr is merged into stdout (upstream refuses neither; it ignores it).
        if o.tty {
            o.stderr = false;
        }
        o
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin(Vec<u8>),
    StdinClose,
    Resize { width: u16, height: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited { code: i32, command: Vec<String> },
    Error(String),
}

/// The channel-3 status of a v4+ session (upstream's shapes: no kind/apiVersion).
pub fn status_json(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Exited { code: 0, .. } => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited { code, command } => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Error(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": msg,
            "reason": "InternalError",
            "details": {"causes": [{"message": msg}]},
            "code": 500,
        }),
    }
}

/// What pre-v4 protocols write on the error channel: nothing on success, text otherwise.
pub fn legacy_error_text(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Exited { code: 0, .. } => None,
        Outcome::Exited { code, command } => Some(format!(
            "error executing command [{}], exit code {code}",
            command.join(" ")
        )),
        Outcome::Error(m) => Some(m.clone()),
    }
}

/// `{"Width":80,"Height":24}` → `Resize`.
pub fn parse_resize(data: &[u8]) -> Option<Input> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let s: Size = serde_json::from_slice(data).ok()?;
    Some(Input::Resize {
        width: s.width,
        height: s.height,
    })
}

fn reader_thread(
    fd: OwnedFd,
    stderr: bool,
    out: mpsc::Sender<Output>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(fd);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf[..n].to_vec();
                    let msg = if stderr {
                        Output::Stderr(chunk)
                    } else {
                        Output::Stdout(chunk)
                    };
                    if out.blocking_send(msg).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

fn set_winsize(fd: i32, width: u16, height: u16) {
    let ws = nix::libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize; fd is our own pty master.
    unsafe { nix::libc::ioctl(fd, nix::libc::TIOCSWINSZ, &ws) };
}

async fn join_readers(readers: Vec<std::thread::JoinHandle<()>>) {
    let all = tokio::task::spawn_blocking(move || {
        for r in readers {
            let _ = r.join();
        }
    });
    let _ = tokio::time::timeout(DRAIN, all).await;
}

/// Runs `opts.command` in container `id`, relaying streams until it exits.
pub async fn exec(
    rt: Arc<Runtime>,
    id: String,
    opts: StreamOptions,
    mut input: mpsc::Receiver<Input>,
    out: mpsc::Sender<Output>,
) -> Outcome {
    let cfg = ExecConfig {
        args: opts.command.clone(),
        tty: opts.tty,
        ..Default::default()
    };
    let command = opts.command.clone();
    let done = |r: Result<crate::runtime::containers::ExitStatus, _>| match r {
        Ok(s) => Outcome::Exited {
            code: s.code,
            command: command.clone(),
        },
        Err(e) => Outcome::Error(format!("error executing command in container: {e}")),
    };
    if opts.tty {
        let pty = match nix::pty::openpty(None, None) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(format!("allocating a tty: {e}")),
        };
        let master = Arc::new(std::fs::File::from(pty.master));
        let master_fd = master.as_raw_fd();
        let read_fd = match master.try_clone() {
            Ok(f) => OwnedFd::from(f),
            Err(e) => return Outcome::Error(format!("allocating a tty: {e}")),
        };
        let reader = reader_thread(read_fd, false, out.clone());
        drop(out);
        let m2 = master.clone();
        let pump = tokio::spawn(async move {
            while let Some(i) = input.recv().await {
                match i {
                    Input::Stdin(d) => {
                        let m = m2.clone();
                        let _ = tokio::task::spawn_blocking(move || (&*m).write_all(&d)).await;
                    }
                    // ^D: the line discipline turns it into EOF for the reader.
                    Input::StdinClose => {
                        let m = m2.clone();
                        let _ = tokio::task::spawn_blocking(move || (&*m).write_all(&[4])).await;
                    }
                    Input::Resize { width, height } => set_winsize(master_fd, width, height),
                }
            }
        });
        let r = rt.exec(&id, cfg, ExecIo::Tty(pty.slave)).await;
        join_readers(vec![reader]).await;
        pump.abort();
        drop(master);
        return done(r);
    }
    let pipe = || nix::unistd::pipe().map_err(|e| Outcome::Error(format!("pipe: {e}")));
    let devnull = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| Outcome::Error(format!("/dev/null: {e}")))
    };
    let setup = (|| -> Result<_, Outcome> {
        let mut readers = Vec::new();
        let stdout = if opts.stdout {
            let (r, w) = pipe()?;
            readers.push(reader_thread(r, false, out.clone()));
            w
        } else {
            devnull()?
        };
        let stderr = if opts.stderr {
            let (r, w) = pipe()?;
            readers.push(reader_thread(r, true, out.clone()));
            w
        } else {
            devnull()?
        };
        let (stdin_r, stdin_w) = if opts.stdin {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        Ok((readers, stdout, stderr, stdin_r, stdin_w))
    })();
    let (readers, stdout, stderr, stdin_r, stdin_w) = match setup {
        Ok(x) => x,
        Err(o) => return o,
    };
    drop(out);
    let pump = tokio::spawn(async move {
        let mut w = stdin_w.map(|fd| Arc::new(std::fs::File::from(fd)));
        while let Some(i) = input.recv().await {
            match i {
                Input::Stdin(d) => {
                    if let Some(f) = w.clone() {
                        let r = tokio::task::spawn_blocking(move || (&*f).write_all(&d)).await;
                        if !matches!(r, Ok(Ok(()))) {
                            w = None;
                        }
                    }
                }
                Input::StdinClose => w = None,
                Input::Resize { .. } => {}
            }
        }
    });
    let r = rt
        .exec(
            &id,
            cfg,
            ExecIo::Pipes {
                stdin: stdin_r,
                stdout,
                stderr,
            },
        )
        .await;
    join_readers(readers).await;
    pump.abort();
    done(r)
}

/// Attaches to container `id`'s main process until it exits or the client leaves.
pub async fn attach(
    rt: Arc<Runtime>,
    id: String,
    opts: StreamOptions,
    mut input: mpsc::Receiver<Input>,
    out: mpsc::Sender<Output>,
) -> Outcome {
    let stream = match rt.attach(&id).await {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("error attaching to container: {e}")),
    };
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => return Outcome::Error(format!("error attaching to container: {e}")),
    };
    let (stdout, stderr) = (opts.stdout, opts.stderr || opts.tty);
    let reader = std::thread::spawn(move || {
        let mut s = stream;
        while let Ok(Some((kind, data))) = proto::read_frame(&mut s) {
            let msg = match kind {
                proto::KIND_STDOUT if stdout => Output::Stdout(data),
                proto::KIND_STDERR if stderr && !opts.tty => Output::Stderr(data),
                proto::KIND_STDERR if opts.tty && stdout => Output::Stdout(data),
                proto::KIND_EXIT => break,
                _ => continue,
            };
            if out.blocking_send(msg).is_err() {
                break;
            }
        }
    });
    let stdin = opts.stdin;
    let pump = tokio::task::spawn_blocking(move || {
        while let Some(i) = input.blocking_recv() {
            let r = match i {
                Input::Stdin(d) if stdin => proto::write_frame(&mut writer, proto::KIND_STDIN, &d),
                Input::StdinClose if stdin => {
                    proto::write_frame(&mut writer, proto::KIND_STDIN_CLOSE, &[])
                }
                Input::Resize { width, height } => {
                    let mut b = height.to_be_bytes().to_vec();
                    b.extend_from_slice(&width.to_be_bytes());
                    proto::write_frame(&mut writer, proto::KIND_RESIZE, &b)
                }
                _ => Ok(()),
            };
            if r.is_err() {
                break;
            }
        }
        // Wakes the reader if the client left first.
        let _ = writer.shutdown(std::net::Shutdown::Both);
    });
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    pump.abort();
    Outcome::Exited {
        code: 0,
        command: Vec::new(),
    }
}

/// Serves one WebSocket channel-protocol session: `backend` gets the client's input and
/// produces output; its outcome becomes the channel-3 status.
pub async fn serve_websocket<IO, F, Fut>(io: IO, protocol: &str, opts: &StreamOptions, backend: F)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce(mpsc::Receiver<Input>, mpsc::Sender<Output>) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let (rd, mut wr) = tokio::io::split(io);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(f) = frames_rx.recv().await {
            if wr.write_all(&f).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
        let _ = websocket::write_close(&mut wr).await;
        let _ = wr.shutdown().await;
    });
    // Upstream announces the session with an empty message on the lowest writable channel.
    let first = if opts.stdout {
        1
    } else if opts.stderr {
        2
    } else {
        3
    };
    let _ = frames_tx
        .send(websocket::encode_frame(websocket::OP_BINARY, &[first]))
        .await;
    let (in_tx, in_rx) = mpsc::channel::<Input>(64);
    let v5 = protocol == V5;
    let pongs = frames_tx.clone();
    let reader = tokio::spawn(async move {
        let mut r = Reader::new(rd);
        loop {
            let mut pong = |p: Vec<u8>| {
                let _ = pongs.try_send(p);
            };
            let msg = match r.next(&mut pong).await {
                Ok(Message::Binary(d)) | Ok(Message::Text(d)) => d,
                Ok(Message::Close) | Err(_) => {
                    let _ = in_tx.send(Input::StdinClose).await;
                    return;
                }
            };
            let Some((&ch, data)) = msg.split_first() else {
                continue;
            };
            let input = match ch {
                0 => Input::Stdin(data.to_vec()),
                4 => match parse_resize(data) {
                    Some(r) => r,
                    None => continue,
                },
                255 if v5 && data.first() == Some(&0) => Input::StdinClose,
                _ => continue,
            };
            if in_tx.send(input).await.is_err() {
                return;
            }
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
    let forward_frames = frames_tx.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let (ch, mut d) = match o {
                Output::Stdout(d) => (1u8, d),
                Output::Stderr(d) => (2u8, d),
            };
            d.insert(0, ch);
            if forward_frames
                .send(websocket::encode_frame(websocket::OP_BINARY, &d))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let outcome = backend(in_rx, out_tx).await;
    let _ = forwarder.await;
    let status = if protocol == V5 || protocol == V4 {
        Some(status_json(&outcome).to_string())
    } else {
        legacy_error_text(&outcome)
    };
    if let Some(s) = status {
        let mut d = vec![3u8];
        d.extend_from_slice(s.as_bytes());
        let _ = frames_tx
            .send(websocket::encode_frame(websocket::OP_BINARY, &d))
            .await;
    }
    drop(frames_tx);
    reader.abort();
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn status_shapes_are_upstreams() {
        let ok = Outcome::Exited {
            code: 0,
            command: vec!["true".into()],
        };
        assert_eq!(
            status_json(&ok),
            json!({"metadata": {}, "status": "Success"})
        );
        let failed = Outcome::Exited {
            code: 3,
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
        };
        let s = status_json(&failed);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(
            s["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        assert_eq!(legacy_error_text(&ok), None);
    }

    #[test]
    fn query_and_resize_parse() {
        let o = StreamOptions::from_query(Some(
            "command=ls&command=-la&container=c&stderr=true&stdout=true&stdin=true&tty=true",
        ));
        assert_eq!(o.command, ["ls", "-la"]);
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
        assert_eq!(
            parse_resize(br#"{"Width":80,"Height":24}"#),
            Some(Input::Resize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(parse_resize(b"nope"), None);
    }

    fn client_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x82, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    /// Reads server frames until the close frame: (opcode, payload) pairs.
    async fn server_frames(r: &mut (impl AsyncRead + Unpin)) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut h = [0u8; 2];
            if r.read_exact(&mut h).await.is_err() {
                return out;
            }
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    r.read_exact(&mut b).await.unwrap();
                    u16::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mut p = vec![0u8; len];
            r.read_exact(&mut p).await.unwrap();
            let op = h[0] & 0x0f;
            out.push((op, p));
            if op == websocket::OP_CLOSE {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn v5_session_relays_stdin_close_and_ends_with_the_status() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let opts = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let session = tokio::spawn(async move {
            serve_websocket(server, V5, &opts, |mut input, out| async move {
                // An echo backend: stdin to stdout until the v5 close signal, then exit 7.
                let mut got = Vec::new();
                while let Some(i) = input.recv().await {
                    match i {
                        Input::Stdin(d) => got.extend(d),
                        Input::StdinClose => break,
                        Input::Resize { .. } => {}
                    }
                }
                out.send(Output::Stdout(got)).await.unwrap();
                out.send(Output::Stderr(b"e".to_vec())).await.unwrap();
                Outcome::Exited {
                    code: 7,
                    command: vec!["cat".into()],
                }
            })
            .await
        });
        client
            .write_all(&client_frame(b"\x04{\"Width\":1,\"Height\":2}"))
            .await
            .unwrap();
        client.write_all(&client_frame(b"\x00hello")).await.unwrap();
        client.write_all(&client_frame(&[255, 0])).await.unwrap();
        let frames = server_frames(&mut client).await;
        session.await.unwrap();
        assert_eq!(frames[0], (websocket::OP_BINARY, vec![1]));
        assert_eq!(frames[1], (websocket::OP_BINARY, b"\x01hello".to_vec()));
        assert_eq!(frames[2], (websocket::OP_BINARY, b"\x02e".to_vec()));
        let (op, status) = &frames[3];
        assert_eq!(*op, websocket::OP_BINARY);
        assert_eq!(status[0], 3);
        let s: serde_json::Value = serde_json::from_slice(&status[1..]).unwrap();
        assert_eq!(s["details"]["causes"][0]["message"], "7");
        assert_eq!(frames[4].0, websocket::OP_CLOSE);
    }
}
