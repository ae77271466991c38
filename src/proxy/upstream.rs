//! Connections to upstreams (the workers' private loopback ports).
//!
//! Owns connecting (with a timeout) and the hyper HTTP/1 client side of one connection: an
//! [`UpstreamConn`] is the request sender plus a handle on the task that drives the socket, so
//! that closing a connection is definite ([`UpstreamConn::close`] aborts the task, which drops
//! the socket) rather than left to hyper noticing that every sender is gone.
//!
//! Every upstream socket is a [`QuickAck`]: many app servers write a response in two pieces (the
//! head, then the body) with Nagle's algorithm on, so the second waits until the first is
//! acknowledged; on a kept-alive connection the receiver delays that acknowledgement (Linux: 40
//! ms at least), and every request through the proxy would pay it. Acknowledging at once what was
//! read removes the stall whatever the app does with its own socket.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::request_body::ClientBody;

/// The largest read or write buffer of one connection, on either side: the upstream connections
/// opened here and the client connections `http` serves. hyper's default (~410 KiB) lets a busy
/// connection's buffers grow far beyond what a dev proxy needs; 64 KiB still holds any sane request
/// head and keeps memory flat with many keep-alive clients.
pub(crate) const MAX_BUF_SIZE: usize = 64 * 1024;

/// A connect that takes longer than this (a full backlog, a firewall) fails, and counts as
/// "never read" for the retry rules.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of a request sent upstream: buffered (and so resendable), or the client's own body
/// streamed through.
pub(crate) type UpBody = Either<Full<Bytes>, ClientBody>;

/// Why no connection to an upstream could be made. In every case the upstream read nothing.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The connect failed (refused, unreachable, …).
    Io(std::io::Error),
    /// The connect did not complete within [`CONNECT_TIMEOUT`].
    Timeout,
    /// hyper refused the connection before any byte was written.
    Handshake(hyper::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Io(error) => write!(f, "{error}"),
            ConnectError::Timeout => write!(f, "connect timed out after {CONNECT_TIMEOUT:?}"),
            ConnectError::Handshake(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Io(error) => Some(error),
            ConnectError::Timeout => None,
            ConnectError::Handshake(error) => Some(error),
        }
    }
}

/// A connection to an upstream that acknowledges each read at once (`TCP_QUICKACK`, re-armed after
/// every read since the kernel clears it by itself; Linux only, elsewhere a plain stream).
pub(crate) struct QuickAck(TcpStream);

impl QuickAck {
    fn ack_now(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // Only a latency matter: a failure changes nothing about correctness.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.ack_now();
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Opens a TCP connection to `upstream` (no-delay set, reads acknowledged at once).
pub(crate) async fn connect(upstream: SocketAddr) -> Result<QuickAck, ConnectError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ConnectError::Io(error)),
        Err(_) => return Err(ConnectError::Timeout),
    };
    // Only a latency hint: a failure changes nothing about correctness.
    let _ = stream.set_nodelay(true);
    let stream = QuickAck(stream);
    stream.ack_now();
    Ok(stream)
}

/// One HTTP/1.1 connection to an upstream.
pub(crate) struct UpstreamConn {
    sender: SendRequest<UpBody>,
    task: AbortHandle,
}

impl UpstreamConn {
    /// Connects and starts the task that drives the connection (upgrades enabled).
    pub(crate) async fn open(upstream: SocketAddr) -> Result<UpstreamConn, ConnectError> {
        let stream = connect(upstream).await?;
        let (sender, connection) = Builder::new()
            .max_buf_size(MAX_BUF_SIZE)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        let task = tokio::spawn(async move {
            // The error (if any) reaches the request that was using the connection.
            let _ = connection.with_upgrades().await;
        })
        .abort_handle();
        Ok(UpstreamConn { sender, task })
    }

    /// The request sender.
    pub(crate) fn sender(&mut self) -> &mut SendRequest<UpBody> {
        &mut self.sender
    }

    /// Whether the connection is known to be closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Closes the connection now.
    pub(crate) fn close(self) {
        self.task.abort();
    }

    /// Lets the connection task end on its own: after a `101` it hands the socket to the upgrade
    /// and must not be aborted first.
    pub(crate) fn detach(self) {}
}
