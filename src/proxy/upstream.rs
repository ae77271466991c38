//! Connections to upstreams (the workers' private loopback ports).
//!
//! Owns connecting (with a timeout) and the hyper client side of one connection (HTTP/1.1, or
//! HTTP/2 with prior knowledge for `--upstream h2c`): an
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
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::{TrySendError, http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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

/// One connection to an upstream: HTTP/1.1, or HTTP/2 in clear text (`--upstream h2c`).
pub(crate) struct UpstreamConn {
    sender: Sender,
    task: AbortHandle,
}

/// The request side of a connection, by protocol.
pub(crate) enum Sender {
    Http1(http1::SendRequest<UpBody>),
    H2c(http2::SendRequest<UpBody>),
}

/// What sending a request returns: the response, or the request back when it was not sent.
pub(crate) type Sent = Result<Response<Incoming>, TrySendError<Request<UpBody>>>;

impl Sender {
    /// Sends `request`, giving it back if the connection could not take it (see hyper's
    /// `try_send_request`). An HTTP/2 request names the scheme and authority its `Host` gives.
    pub(crate) fn try_send_request(
        &mut self,
        mut request: Request<UpBody>,
    ) -> Pin<Box<dyn std::future::Future<Output = Sent> + Send>> {
        match self {
            Sender::Http1(sender) => Box::pin(sender.try_send_request(request)),
            Sender::H2c(sender) => {
                *request.version_mut() = hyper::Version::HTTP_2;
                let authority = request
                    .headers()
                    .get(hyper::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned);
                if let Some(authority) = authority {
                    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
                    if let Ok(uri) =
                        hyper::Uri::builder().scheme("http").authority(authority).path_and_query(path).build()
                    {
                        *request.uri_mut() = uri;
                    }
                    // `:authority` says it: HTTP/2 has no Host header of its own.
                    request.headers_mut().remove(hyper::header::HOST);
                }
                // TE is hop-by-hop and was dropped; `trailers` is the one value HTTP/2 allows, and
                // gRPC servers require it (the answer's status comes in trailers).
                request
                    .headers_mut()
                    .insert(hyper::header::TE, hyper::header::HeaderValue::from_static("trailers"));
                Box::pin(sender.try_send_request(request))
            }
        }
    }

    /// Ready for a request (an HTTP/1.1 connection: not busy with one).
    pub(crate) async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::Http1(sender) => sender.ready().await,
            Sender::H2c(sender) => sender.ready().await,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::H2c(sender) => sender.is_closed(),
        }
    }
}

impl UpstreamConn {
    /// Connects and starts the task that drives the connection (HTTP/1.1 with upgrades enabled,
    /// or with `h2c` HTTP/2 with prior knowledge).
    pub(crate) async fn open(upstream: SocketAddr, h2c: bool) -> Result<UpstreamConn, ConnectError> {
        let stream = connect(upstream).await?;
        if h2c {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(ConnectError::Handshake)?;
            let task = tokio::spawn(async move {
                let _ = connection.await;
            })
            .abort_handle();
            return Ok(UpstreamConn { sender: Sender::H2c(sender), task });
        }
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_BUF_SIZE)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        let task = tokio::spawn(async move {
            // The error (if any) reaches the request that was using the connection.
            let _ = connection.with_upgrades().await;
        })
        .abort_handle();
        Ok(UpstreamConn { sender: Sender::Http1(sender), task })
    }

    /// The request sender.
    pub(crate) fn sender(&mut self) -> &mut Sender {
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
