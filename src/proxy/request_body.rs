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
pub(crate) struct ClientBody<B = Incoming> {
    inner: B,
    timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    /// The last poll found nothing from the client: the timeout is running. It runs only while
    /// the reader waits on the client, never while the reader (an app slow to read an upload,
    /// with TCP holding the client back) is not asking.
    waiting: bool,
    failed: Arc<AtomicBool>,
}

impl<B> ClientBody<B> {
    /// Wraps the body hyper read from the client.
    pub(crate) fn new(inner: B, timeout: Duration) -> ClientBody<B> {
        let idle = Box::pin(tokio::time::sleep(timeout));
        ClientBody { inner, timeout, idle, waiting: false, failed: Arc::new(AtomicBool::new(false)) }
    }

    /// Set once the body failed (timed out, broke off, malformed): read after a failed send.
    pub(crate) fn failure_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.failed)
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if !this.waiting {
            // Asked for the next frame: the wait on the client starts now.
            this.idle.as_mut().reset(tokio::time::Instant::now() + this.timeout);
            this.waiting = true;
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(error.into())))
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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// A body whose frames the test sends when it likes.
    struct Sent(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl Body for Sent {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.get_mut().0.poll_recv(cx).map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    fn body(timeout: Duration) -> (tokio::sync::mpsc::UnboundedSender<Bytes>, ClientBody<Sent>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        (sender, ClientBody::new(Sent(receiver), timeout))
    }

    #[test]
    fn the_timeout_runs_only_while_the_reader_waits_on_the_client() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        runtime.block_on(async {
            let timeout = Duration::from_millis(200);
            let (frames, mut body) = body(timeout);
            frames.send(Bytes::from_static(b"a")).expect("send");
            assert!(body.frame().await.expect("a frame").is_ok());
            // The reader (an app slow to read) does not ask for longer than the timeout; the
            // client's next piece comes soon after it asks again: no timeout.
            tokio::time::sleep(timeout * 2).await;
            let sender = frames.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout / 4).await;
                let _ = sender.send(Bytes::from_static(b"b"));
            });
            assert!(body.frame().await.expect("a frame").is_ok(), "timed out while nobody waited");
            // A client that sends nothing while the reader waits is timed out.
            let started = tokio::time::Instant::now();
            let error = body.frame().await.expect("an end").expect_err("a timeout");
            assert!(error.is::<BodyTimedOut>(), "{error}");
            assert!(started.elapsed() >= timeout);
        });
    }
}
