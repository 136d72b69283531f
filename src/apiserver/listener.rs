//! The HTTPS listener: accepts connections, serves each on the runtime meant for its kind
//! of client, and drains them at shutdown.
//!
//! Two runtimes serve the API:
//! - nodes (a client certificate in `system:nodes`) on the server's main runtime, where the
//!   controllers and the scheduler also run;
//! - everyone else (kubectl, helm, operators), the accept loop and every TLS handshake on the
//!   *user runtime*, whose threads do nothing else.
//!
//! Why: on 2 saturated cores a request on the main runtime waited for hundreds of queued
//! tasks before its socket was even read. In `bench.sh scale` the probe's GET took 0.02 ms
//! in the handler and 68 ms (p99) at the client. Upstream keeps these clients apart too (API
//! Priority and Fairness puts kubelets in `system-nodes` and people in `exempt` or
//! `global-default`); here it is the threads that run them that are kept apart. Work both
//! share (the store, the caches) is behind short locks, never behind the other runtime's
//! queue.
//!
//! Limits: a node that authenticates with a bearer token instead of its certificate stays
//! on the user runtime. Clients shared by both (the admission webhooks' connection pool)
//! keep their connections on whichever runtime opened them. When `serve` returns, the user
//! runtime is shut down without waiting: whatever still runs there (a connection past the
//! drain, an upgraded exec or port-forward stream) ends at once.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio_util::sync::CancellationToken;

use super::{authn, handle, ApiError, ApiState, ConnInfo, HANDSHAKE_TIMEOUT, HEADER_READ_TIMEOUT};

/// Longest the open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The group of every node's client certificate.
const NODES_GROUP: &str = "system:nodes";

/// Serves HTTPS on `listener` until `shutdown`; then stops accepting, ends open watches,
/// lets in-flight requests finish (up to [`DRAIN_TIMEOUT`]) and closes the connections.
/// Node connections are served on the calling runtime.
pub async fn serve(
    state: Arc<ApiState>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let users = UserRuntime::start()?;
    let nodes = Handle::current();
    // The listening socket moves to the user runtime's reactor, so accepting never waits
    // for the main runtime.
    let listener = listener
        .into_std()
        .map_err(|e| ApiError::internal(format!("moving the listener: {e}")))?;
    let accepting = users.handle().spawn(async move {
        let listener = TcpListener::from_std(listener)
            .map_err(|e| ApiError::internal(format!("moving the listener: {e}")))?;
        accept_loop(state, listener, tls, shutdown, nodes).await;
        Ok(())
    });
    accepting
        .await
        .map_err(|e| ApiError::internal(format!("the accept loop ended: {e}")))?
}

/// The user runtime; shut down without blocking when dropped (the caller is async).
struct UserRuntime(Option<Runtime>);

impl UserRuntime {
    fn start() -> Result<UserRuntime, ApiError> {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("skiff-api-users")
            .enable_all()
            .build()
            .map(|rt| UserRuntime(Some(rt)))
            .map_err(|e| ApiError::internal(format!("starting the API's user runtime: {e}")))
    }

    fn handle(&self) -> &Handle {
        self.0
            .as_ref()
            .expect("runtime present until drop")
            .handle()
    }
}

impl Drop for UserRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept_loop(
    state: Arc<ApiState>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    nodes: Handle,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
        }
        let state = state.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let nodes = nodes.clone();
        tokio::spawn(async move {
            let handshake = acceptor.accept(MovableTcp(Some(tcp)));
            let mut stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| authn::x509::user_of(c));
            let is_node = cert_user
                .as_ref()
                .is_some_and(|u| u.groups.iter().any(|g| g == NODES_GROUP));
            let conn = ConnInfo {
                peer: Some(peer),
                cert_user,
            };
            if !is_node {
                return serve_connection(state, conn, stream, peer, watcher).await;
            }
            nodes.spawn(async move {
                if let Err(e) = stream.get_mut().0.move_to_current_runtime() {
                    tracing::debug!(%peer, error = %e, "moving a node's connection failed");
                    return;
                }
                serve_connection(state, conn, stream, peer, watcher).await
            });
        });
    }
    drop(listener);
    // Watches end now (their streams finish cleanly), so their connections can close.
    state.closing.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection, on the runtime that runs this future.
async fn serve_connection(
    state: Arc<ApiState>,
    conn: ConnInfo,
    stream: tokio_rustls::server::TlsStream<MovableTcp>,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let conn = Arc::new(conn);
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(state, conn, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(250);
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}

/// A TCP stream that can move to another runtime's reactor after its TLS handshake (tokio
/// registers a socket with the runtime it was accepted on, and the TLS stream cannot be
/// taken apart and rebuilt).
struct MovableTcp(Option<TcpStream>);

impl MovableTcp {
    /// Registers the socket with the reactor of the runtime this is called on.
    fn move_to_current_runtime(&mut self) -> io::Result<()> {
        let tcp = self.0.take().ok_or_else(closed)?.into_std()?;
        self.0 = Some(TcpStream::from_std(tcp)?);
        Ok(())
    }

    fn tcp(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        self.get_mut().0.as_mut().map(Pin::new).ok_or_else(closed)
    }
}

/// A move that failed half way leaves no socket.
fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket lost in a runtime move")
}

impl AsyncRead for MovableTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for MovableTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A node's connection is accepted on the user runtime and served on the main one: once
    /// moved, its socket must not depend on the runtime that accepted it.
    #[test]
    fn a_moved_socket_keeps_working_after_the_accepting_runtime_is_gone() {
        let accepting = runtime();
        let serving = runtime();
        let (mut accepted, mut client) = accepting.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let client = TcpStream::connect(listener.local_addr().expect("addr"));
            let (client, accepted) = tokio::join!(client, listener.accept());
            (
                MovableTcp(Some(accepted.expect("accept").0)),
                client.expect("connect"),
            )
        });
        serving
            .block_on(async { accepted.move_to_current_runtime() })
            .expect("move");
        // The client end also moves, so that it outlives the accepting runtime.
        client = serving.block_on(async {
            TcpStream::from_std(client.into_std().expect("into_std")).expect("from_std")
        });
        accepting.shutdown_timeout(Duration::from_secs(5));
        let reply = serving.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                client.write_all(b"ping").await?;
                let mut got = [0u8; 4];
                accepted.read_exact(&mut got).await?;
                assert_eq!(&got, b"ping");
                accepted.write_all(b"pong").await?;
                client.read_exact(&mut got).await?;
                Ok::<_, io::Error>(got)
            })
            .await
        });
        assert_eq!(
            &reply.expect("in time").expect("I/O after the move"),
            b"pong"
        );
    }
}
