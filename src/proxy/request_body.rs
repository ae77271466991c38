//! The client's request body on its way to an app.
//!
//! Owns [`ClientBody`]: the body hyper reads from the client, with an idle timeout (a body that
//! sends nothing for the proxy's `body_timeout` fails with [`BodyTimedOut`], so that a connection
//! that never finishes its request cannot hold a file descriptor for ever), and a flag that says
//! it failed, so that a request whose body broke off or was malformed is blamed on the client
//! (`400`), not on the app.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

use super::response::BoxError;

/// A client's request body that sends nothing for the body timeout.
#[derive(Debug)]
pub(crate) struct BodyTimedOut(Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body stopped arriving (nothing for {:?})", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// The client's request body: fails if no frame comes for the body timeout, and records that it
/// failed, so that a request whose body broke off is blamed on the client, not on the app.
pub(crate) struct ClientBody {
    inner: Incoming,
    timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    failed: Arc<AtomicBool>,
}

impl ClientBody {
    /// Wraps the body hyper read from the client.
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> ClientBody {
        let idle = Box::pin(tokio::time::sleep(timeout));
        ClientBody { inner, timeout, idle, failed: Arc::new(AtomicBool::new(false)) }
    }

    /// Set once the body failed (timed out, broke off, malformed): read after a failed send.
    pub(crate) fn failure_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.failed)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(error))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.failed.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
