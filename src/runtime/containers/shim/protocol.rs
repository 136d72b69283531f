//! The shim's control socket protocol: frames of `[kind: u8][len: u32 BE][payload]`.
//!
//! A connection starts with one JSON request frame (fds for exec ride on it as
//! SCM_RIGHTS); the answer is one JSON response frame, except that `Attach` turns the
//! connection into a stream of output frames (and stdin/resize frames the other way),
//! and `Wait`/`Exec` answer a second time when the process exits.

use crate::runtime::containers::{ContainerState, ExecConfig, ExitStatus};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

pub const SOCKET: &str = "shim.sock";

pub const KIND_STDIN: u8 = 0;
pub const KIND_STDOUT: u8 = 1;
pub const KIND_STDERR: u8 = 2;
pub const KIND_EXIT: u8 = 3;
pub const KIND_STDIN_CLOSE: u8 = 4;
pub const KIND_RESIZE: u8 = 5;
pub const KIND_JSON: u8 = b'J';
/// Frames larger than this are a protocol error (output is sent in ≤ 32 KiB chunks).
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    State,
    Start,
    Signal {
        signal: i32,
    },
    /// Stop signal now, SIGKILL after `grace_ms`; answered at once.
    Stop {
        grace_ms: u64,
    },
    /// Answered when the container has exited.
    Wait,
    Attach,
    /// fds: [stdin, stdout, stderr] or [tty slave]; answered `ExecStarted` then `Exited`.
    Exec {
        config: ExecConfig,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    /// Clean up (cgroups, external runtime state) and exit; only for a stopped container.
    Shutdown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    State { state: Box<ContainerState> },
    ExecStarted { pid: i32 },
    Exited { status: ExitStatus },
    Error { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("shim socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("shim protocol: {0}")]
    Bad(String),
    #[error("shim: {0}")]
    Remote(String),
}

pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&encode(kind, payload))
}

pub fn write_json<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    write_frame(w, KIND_JSON, &body)
}

/// Reads one frame; `Ok(None)` on a clean EOF before a frame starts.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>, ProtocolError> {
    let mut hdr = [0u8; 5];
    match r.read_exact(&mut hdr[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut hdr[1..])?;
    let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::Bad(format!("frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some((hdr[0], body)))
}

pub fn parse_json<T: for<'de> Deserialize<'de>>(kind: u8, body: &[u8]) -> Result<T, ProtocolError> {
    if kind != KIND_JSON {
        return Err(ProtocolError::Bad(format!(
            "expected a JSON frame, got kind {kind}"
        )));
    }
    serde_json::from_slice(body).map_err(|e| ProtocolError::Bad(e.to_string()))
}

/// Blocking client: one connection per call.
pub fn connect(dir: &Path) -> Result<UnixStream, ProtocolError> {
    Ok(at_socket_path(dir, |p| UnixStream::connect(p))?)
}

/// A socket address holds at most 107 bytes of path, fewer than a container directory under
/// a deep `--data-dir` can take. A longer path is reached through the directory's descriptor
/// (`/proc/self/fd/N/shim.sock`), which names the same file in a few bytes.
pub fn at_socket_path<T>(
    dir: &Path,
    f: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    const SUN_PATH_MAX: usize = 107;
    let full = dir.join(SOCKET);
    if full.as_os_str().len() <= SUN_PATH_MAX {
        return f(&full);
    }
    let handle = std::fs::File::options()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
        .open(dir)?;
    f(&Path::new("/proc/self/fd")
        .join(handle.as_raw_fd().to_string())
        .join(SOCKET))
}

pub fn read_response(s: &mut UnixStream) -> Result<Response, ProtocolError> {
    match read_frame(s)? {
        Some((k, b)) => match parse_json(k, &b)? {
            Response::Error { message } => Err(ProtocolError::Remote(message)),
            r => Ok(r),
        },
        None => Err(ProtocolError::Bad("shim closed the connection".into())),
    }
}

pub fn call(dir: &Path, req: &Request) -> Result<Response, ProtocolError> {
    let mut s = connect(dir)?;
    write_json(&mut s, req)?;
    read_response(&mut s)
}

/// Sends a request with fds attached (SCM_RIGHTS), the whole frame in one message.
pub fn send_with_fds(s: &UnixStream, req: &Request, fds: &[RawFd]) -> Result<(), ProtocolError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let body = serde_json::to_vec(req).map_err(|e| ProtocolError::Bad(e.to_string()))?;
    let frame = encode(KIND_JSON, &body);
    let iov = [std::io::IoSlice::new(&frame)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let n = sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(std::io::Error::from)?;
    if n != frame.len() {
        (&*s).write_all(&frame[n..])?;
    }
    Ok(())
}

/// Server side: reads the first frame of a connection with any passed fds.
pub fn recv_with_fds(s: &UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), ProtocolError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (n, fds) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(v) = c {
                // SAFETY: the kernel just installed these fds in our table; we own them.
                fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, fds)
    };
    buf.truncate(n);
    // Complete a frame split across reads.
    if n >= 5 {
        let want = 5 + u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if want > MAX_FRAME {
            return Err(ProtocolError::Bad("oversized request".into()));
        }
        if buf.len() < want {
            let start = buf.len();
            buf.resize(want, 0);
            (&*s).read_exact(&mut buf[start..])?;
        }
    } else if n > 0 {
        return Err(ProtocolError::Bad("short request".into()));
    }
    Ok((buf, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_in_a_directory_too_deep_for_sun_path_binds_and_connects() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        assert!(deep.join(SOCKET).as_os_str().len() > 107);
        let listener = at_socket_path(&deep, |p| std::os::unix::net::UnixListener::bind(p))
            .expect("bind through the directory's descriptor");
        assert!(
            deep.join(SOCKET).exists(),
            "the socket is in the directory itself"
        );
        let mut client = connect(&deep).expect("connect through the directory's descriptor");
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    #[test]
    fn frames_round_trip_and_eof_before_a_frame_is_clean() {
        let mut buf = Vec::new();
        write_json(&mut buf, &Request::Stop { grace_ms: 5 }).unwrap();
        write_frame(&mut buf, KIND_STDOUT, b"hi").unwrap();
        let mut r = &buf[..];
        let (k, b) = read_frame(&mut r).unwrap().unwrap();
        assert!(matches!(
            parse_json::<Request>(k, &b).unwrap(),
            Request::Stop { grace_ms: 5 }
        ));
        assert_eq!(
            read_frame(&mut r).unwrap().unwrap(),
            (KIND_STDOUT, b"hi".to_vec())
        );
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_frames_are_rejected() {
        let mut bytes = vec![KIND_JSON];
        bytes.extend_from_slice(&(u32::MAX).to_be_bytes());
        assert!(matches!(
            read_frame(&mut &bytes[..]),
            Err(ProtocolError::Bad(_))
        ));
    }
}
