//! The body of a forwarded response, with its exchange's accounting.
//!
//! Owns [`Tracked`]: it streams the upstream's body frame by frame (never buffering it), keeps the
//! exchange's [`Flight`] alive until the last frame (so a streaming response counts as in flight),
//! gives the upstream connection back to the pool when the body ended cleanly (closes it
//! otherwise), and fails the stream when `Close` is sent for its generation, which makes hyper
//! abort the client connection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

use super::response::BoxError;
use super::state::Flight;
use super::upstream::UpstreamConn;

/// The error a forwarded body fails with when its generation is closed.
#[derive(Debug)]
pub(crate) struct ClosedByDevserve;

impl fmt::Display for ClosedByDevserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("closed by devserve: the generation behind this response was stopped")
    }
}

impl std::error::Error for ClosedByDevserve {}

/// A forwarded response body with its exchange's accounting.
pub(crate) struct Tracked {
    inner: Incoming,
    /// `None` once the exchange is over (ended, failed or closed).
    flight: Option<Flight>,
    conn: Option<UpstreamConn>,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Tracked {
    /// Wraps `inner`, the body of a response received on `conn` for `flight`.
    pub(crate) fn new(inner: Incoming, flight: Flight, conn: UpstreamConn) -> Self {
        let closed = Box::pin(flight.closed());
        Tracked { inner, flight: Some(flight), conn: Some(conn), closed }
    }

    /// The body ended cleanly: the connection can serve another request.
    fn finish(&mut self) {
        if let (Some(flight), Some(conn)) = (self.flight.as_ref(), self.conn.take()) {
            flight.shared().checkin(flight.generation, flight.upstream, conn);
        }
        self.flight = None;
    }

    /// The body did not end cleanly: the connection is in an unknown state.
    fn abandon(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close();
        }
        self.flight = None;
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.flight.is_some() && this.closed.as_mut().poll(cx).is_ready() {
            this.abandon();
            return Poll::Ready(Some(Err(Box::new(ClosedByDevserve))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.abandon();
                Poll::Ready(Some(Err(Box::new(error))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // hyper stops polling once `is_end_stream` says so (an empty body, the last frame of a
        // sized one): that is a clean end too.
        if self.inner.is_end_stream() { self.finish() } else { self.abandon() }
    }
}
