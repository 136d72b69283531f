//! Port forwarding into a pod (`portforward.k8s.io` over SPDY/3.1, either a direct SPDY
//! upgrade or tunnelled in WebSocket binary messages as `SPDY/3.1+portforward.k8s.io`).
//!
//! For every forwarded connection the client opens an `error` and a `data` stream with the
//! same `requestid` and `port`; we connect to `localhost:<port>` inside the pod's network
//! namespace and copy bytes both ways.
//!
//! Invariant: sockets are created on a short-lived thread of their own that `setns`es into
//! the pod's namespace; no shared (tokio) thread ever changes namespace.

use super::spdy::{self, Frame, FrameReader, Sender};
use super::websocket::{self, Message};
use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

pub const PROTOCOL: &str = "portforward.k8s.io";
pub const WS_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a TCP connection to `localhost:port` inside the network namespace `netns`.
pub async fn connect_in_netns(
    netns: Arc<File>,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("portforward-connect".into())
        .spawn(move || {
            let r = (|| {
                nix::sched::setns(&*netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
                    Ok(s) => Ok(s),
                    Err(e4) => {
                        let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
                        std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|e6| {
                            std::io::Error::new(
                                e4.kind(),
                                format!("IPv4: dial tcp4 127.0.0.1:{port}: {e4} IPv6 dial tcp6 [::1]:{port}: {e6}"),
                            )
                        })
                    }
                }
            })();
            let _ = tx.send(r);
        })?;
    let s = rx
        .await
        .map_err(|_| std::io::Error::other("connect thread died"))??;
    s.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(s)
}

#[derive(Default)]
struct Pair {
    port: String,
    data: Option<u32>,
    error: Option<u32>,
    rx: Option<mpsc::Receiver<Option<Vec<u8>>>>,
}

/// Serves one SPDY port-forward connection until the client goes away.
pub async fn serve_spdy<IO>(io: IO, netns: Arc<File>, pod: String)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let sender = Sender::spawn(wr);
    let mut reader = FrameReader::new(rd);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut inbound: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    loop {
        let frame = match reader.next().await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward connection ended");
                break;
            }
        };
        match frame {
            Frame::SynStream { id, headers, .. } => {
                sender.syn_reply(id, &Vec::new(), false).await;
                let kind = spdy::header(&headers, "streamtype")
                    .unwrap_or_default()
                    .to_owned();
                let port = spdy::header(&headers, "port")
                    .unwrap_or_default()
                    .to_owned();
                // Old clients send no requestid: upstream pairs the error stream (id) with
                // the data stream (id + 2).
                let request = spdy::header(&headers, "requestid")
                    .map(str::to_owned)
                    .unwrap_or_else(|| match kind.as_str() {
                        "data" => id.saturating_sub(2).to_string(),
                        _ => id.to_string(),
                    });
                let pair = pairs.entry(request.clone()).or_default();
                pair.port = port;
                match kind.as_str() {
                    "error" => pair.error = Some(id),
                    "data" => {
                        let (tx, rx) = mpsc::channel(64);
                        inbound.insert(id, tx);
                        pair.data = Some(id);
                        pair.rx = Some(rx);
                    }
                    other => {
                        tracing::debug!(streamtype = other, "port-forward: unknown stream type");
                        sender.rst(id, 1).await;
                        continue;
                    }
                }
                if let (Some(data), Some(error)) = (pair.data, pair.error) {
                    let Some(pair) = pairs.remove(&request) else {
                        continue;
                    };
                    let rx = pair.rx.unwrap_or_else(|| mpsc::channel(1).1);
                    tokio::spawn(forward(
                        sender.clone(),
                        netns.clone(),
                        pod.clone(),
                        pair.port,
                        data,
                        error,
                        rx,
                    ));
                }
            }
            Frame::Data { id, data, fin } => {
                if let Some(tx) = inbound.get(&id) {
                    if !data.is_empty() && tx.send(Some(data)).await.is_err() {
                        inbound.remove(&id);
                        continue;
                    }
                    if fin {
                        let _ = tx.send(None).await;
                        inbound.remove(&id);
                    }
                }
            }
            Frame::Rst { id, .. } => {
                inbound.remove(&id);
            }
            Frame::Ping(n) => {
                sender.ping(n).await;
            }
            Frame::GoAway => break,
            Frame::Ignored => {}
        }
    }
}

async fn forward(
    sender: Sender,
    netns: Arc<File>,
    pod: String,
    port: String,
    data: u32,
    error: u32,
    mut rx: mpsc::Receiver<Option<Vec<u8>>>,
) {
    let fail = |msg: String| {
        let sender = sender.clone();
        async move {
            sender.data(error, msg.as_bytes(), true).await;
            sender.data(data, &[], true).await;
        }
    };
    let port_num = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return fail(format!(
                "error forwarding port {port} to pod {pod}: invalid port {port:?}"
            ))
            .await
        }
    };
    let tcp = match connect_in_netns(netns, port_num).await {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "error forwarding port {port} to pod {pod}, uid : failed to connect to localhost:{port} inside the pod's network namespace, {e}"
            ))
            .await
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.into_split();
    let up_sender = sender.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !up_sender.data(data, &buf[..n], false).await {
                        return;
                    }
                }
            }
        }
        up_sender.data(data, &[], true).await;
    });
    while let Some(Some(chunk)) = rx.recv().await {
        if w.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
    let _ = up.await;
    sender.data(error, &[], true).await;
}

/// `SPDY/3.1+portforward.k8s.io`: the SPDY byte stream carried in binary WebSocket messages.
pub async fn serve_websocket_tunnel<IO>(io: IO, netns: Arc<File>, pod: String)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (ws_rd, mut ws_wr) = tokio::io::split(io);
    let (inner, outer) = tokio::io::duplex(256 * 1024);
    let (mut outer_rd, mut outer_wr) = tokio::io::split(outer);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Vec<u8>>(8);
    // WebSocket → SPDY.
    let inbound = tokio::spawn(async move {
        let mut r = websocket::Reader::new(ws_rd);
        loop {
            let mut pong = |p: Vec<u8>| {
                let _ = ctl_tx.try_send(p);
            };
            match r.next(&mut pong).await {
                Ok(Message::Binary(d)) | Ok(Message::Text(d)) => {
                    if outer_wr.write_all(&d).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close) | Err(_) => break,
            }
        }
        let _ = outer_wr.shutdown().await;
    });
    // SPDY → WebSocket (and pongs).
    let outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            tokio::select! {
                n = outer_rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let f = websocket::encode_frame(websocket::OP_BINARY, &buf[..n]);
                        if ws_wr.write_all(&f).await.is_err() || ws_wr.flush().await.is_err() {
                            return;
                        }
                    }
                },
                Some(p) = ctl_rx.recv() => {
                    if ws_wr.write_all(&p).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = websocket::write_close(&mut ws_wr).await;
        let _ = ws_wr.shutdown().await;
    });
    serve_spdy(inner, netns, pod).await;
    inbound.abort();
    let _ = outbound.await;
}

/// WebSocket port-forward protocols without SPDY (what non-Go clients such as the python
/// client speak): the ports are fixed by the `port` query parameter.
pub const WS_CHANNEL_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "channel.k8s.io"];

/// The ports of a `port=8080,9090` (or repeated) query.
pub fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k != "port" {
            continue;
        }
        for p in v.split(',').filter(|p| !p.is_empty()) {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => out.push(n),
                _ => return Err(format!("unable to parse \"{p}\" as a port: invalid port")),
            }
        }
    }
    if out.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(out)
}

/// Channel protocol port-forward: port `i` uses channel `2i` for data and `2i+1` for
/// errors; each channel starts with the port number (u16, little endian), as upstream.
pub async fn serve_websocket_channels<IO>(io: IO, netns: Arc<File>, pod: String, ports: Vec<u16>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (ws_rd, mut ws_wr) = tokio::io::split(io);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(f) = frames_rx.recv().await {
            if ws_wr.write_all(&f).await.is_err() || ws_wr.flush().await.is_err() {
                return;
            }
        }
        let _ = websocket::write_close(&mut ws_wr).await;
        let _ = ws_wr.shutdown().await;
    });
    let frame = |ch: usize, d: &[u8]| {
        let mut m = Vec::with_capacity(d.len() + 1);
        m.push(ch as u8);
        m.extend_from_slice(d);
        websocket::encode_frame(websocket::OP_BINARY, &m)
    };
    let mut to_pod: Vec<Option<mpsc::Sender<Vec<u8>>>> = Vec::new();
    let mut pumps = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let le = port.to_le_bytes();
        let _ = frames_tx.send(frame(2 * i, &le)).await;
        let _ = frames_tx.send(frame(2 * i + 1, &le)).await;
        match connect_in_netns(netns.clone(), *port).await {
            Err(e) => {
                let msg = format!(
                    "error forwarding port {port} to pod {pod}, uid : failed to connect to localhost:{port} inside the pod's network namespace, {e}"
                );
                let _ = frames_tx.send(frame(2 * i + 1, msg.as_bytes())).await;
                to_pod.push(None);
            }
            Ok(tcp) => {
                let (mut r, mut w) = tcp.into_split();
                let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
                to_pod.push(Some(tx));
                tokio::spawn(async move {
                    while let Some(d) = rx.recv().await {
                        if w.write_all(&d).await.is_err() {
                            break;
                        }
                    }
                    let _ = w.shutdown().await;
                });
                let out = frames_tx.clone();
                pumps.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut m = vec![(2 * i) as u8];
                                m.extend_from_slice(&buf[..n]);
                                if out
                                    .send(websocket::encode_frame(websocket::OP_BINARY, &m))
                                    .await
                                    .is_err()
                                {
                                    break;
                                }
                            }
                        }
                    }
                }));
            }
        }
    }
    let pongs = frames_tx.clone();
    let reader = tokio::spawn(async move {
        let mut r = websocket::Reader::new(ws_rd);
        loop {
            let mut pong = |p: Vec<u8>| {
                let _ = pongs.try_send(p);
            };
            match r.next(&mut pong).await {
                Ok(Message::Binary(d)) | Ok(Message::Text(d)) => {
                    let Some((&ch, data)) = d.split_first() else {
                        continue;
                    };
                    let idx = ch as usize / 2;
                    if ch % 2 == 0 && !data.is_empty() {
                        if let Some(Some(tx)) = to_pod.get(idx) {
                            let _ = tx.send(data.to_vec()).await;
                        }
                    }
                }
                Ok(Message::Close) | Err(_) => return,
            }
        }
    });
    // The session lasts while any pod connection is open (and the client is there).
    let all = futures::future::join_all(pumps);
    tokio::select! {
        _ = all => {}
        _ = reader => {}
    }
    drop(frames_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::server::spdy::{encode_data, encode_syn_stream, Deflater};

    fn h(pairs: &[(&str, &str)]) -> spdy::Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ports_query_accepts_lists_and_refuses_junk() {
        assert_eq!(
            query_ports(Some("port=80,8080&port=9090")).unwrap(),
            [80, 8080, 9090]
        );
        assert!(query_ports(Some("port=http")).is_err());
        assert!(query_ports(None).is_err());
    }

    #[tokio::test]
    async fn channel_protocol_announces_ports_and_relays_data() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(b"yo").await.unwrap();
        });
        let netns = Arc::new(File::open("/proc/self/ns/net").unwrap());
        let (server, mut client) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve_websocket_channels(
            server,
            netns,
            "p".into(),
            vec![port],
        ));
        let mut f = vec![0x82, 0x80 | 3, 0, 0, 0, 0, 0];
        f.extend_from_slice(b"hi");
        client.write_all(&f).await.unwrap();
        let mut msgs = Vec::new();
        while msgs.len() < 3 {
            let mut h = [0u8; 2];
            client.read_exact(&mut h).await.unwrap();
            let mut p = vec![0u8; (h[1] & 0x7f) as usize];
            client.read_exact(&mut p).await.unwrap();
            msgs.push(p);
        }
        let le = port.to_le_bytes();
        assert_eq!(msgs[0], [0, le[0], le[1]]);
        assert_eq!(msgs[1], [1, le[0], le[1]]);
        assert_eq!(msgs[2], b"\x00yo");
    }

    /// A forwarded connection end to end against a listener in our own namespace.
    #[tokio::test]
    async fn forwards_a_connection_and_reports_refused_ports() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(b"pong").await.unwrap();
        });
        let netns = Arc::new(File::open("/proc/self/ns/net").unwrap());
        let (server, client) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve_spdy(server, netns, "p".into()));
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut d = Deflater::default();
        let mut wire = encode_syn_stream(
            &mut d,
            1,
            &h(&[("streamtype", "error"), ("port", &port), ("requestid", "0")]),
            true,
        );
        wire.extend(encode_syn_stream(
            &mut d,
            3,
            &h(&[("streamtype", "data"), ("port", &port), ("requestid", "0")]),
            false,
        ));
        wire.extend(encode_data(3, b"ping", true));
        // A port nobody listens on (the one we hold closed is 1: privileged and unused).
        wire.extend(encode_syn_stream(
            &mut d,
            5,
            &h(&[("streamtype", "error"), ("port", "1"), ("requestid", "1")]),
            true,
        ));
        wire.extend(encode_syn_stream(
            &mut d,
            7,
            &h(&[("streamtype", "data"), ("port", "1"), ("requestid", "1")]),
            false,
        ));
        cwr.write_all(&wire).await.unwrap();
        let mut r = FrameReader::new(&mut crd);
        let mut got: HashMap<u32, (Vec<u8>, bool)> = HashMap::new();
        let done = |g: &HashMap<u32, (Vec<u8>, bool)>| {
            [1, 3, 5, 7].iter().all(|i| g.get(i).is_some_and(|e| e.1))
        };
        while !done(&got) {
            if let Frame::Data { id, data, fin } =
                tokio::time::timeout(Duration::from_secs(10), r.next())
                    .await
                    .unwrap()
                    .unwrap()
            {
                let e = got.entry(id).or_default();
                e.0.extend(data);
                e.1 |= fin;
            }
        }
        assert_eq!(got[&3].0, b"pong");
        assert!(got[&1].0.is_empty());
        let err = String::from_utf8_lossy(&got[&5].0).into_owned();
        assert!(
            err.contains("error forwarding port 1 to pod p") && err.contains("refused"),
            "{err}"
        );
    }
}
