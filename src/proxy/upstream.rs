//! Connections to upstreams (the workers' private loopback ports).
//!
//! Owns connecting (with a timeout) and the hyper HTTP/1 client side of one connection: an
//! [`UpstreamConn`] is the request sender plus a handle on the task that drives the socket, so
//! that closing a connection is definite ([`UpstreamConn::close`] aborts the task, which drops
//! the socket) rather than left to hyper noticing that every sender is gone.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

/// A connect that takes longer than this (a full backlog, a firewall) fails, and counts as
/// "never read" for the retry rules.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of a request sent upstream: buffered (and so resendable), or the client's own body
/// streamed through.
pub(crate) type UpBody = Either<Full<Bytes>, Incoming>;

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

/// Opens a TCP connection to `upstream` (no-delay set).
pub(crate) async fn connect(upstream: SocketAddr) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ConnectError::Io(error)),
        Err(_) => return Err(ConnectError::Timeout),
    };
    // Only a latency hint: a failure changes nothing about correctness.
    let _ = stream.set_nodelay(true);
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
            .max_buf_size(super::http::MAX_BUF_SIZE)
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
