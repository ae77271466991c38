//! End-to-end tests of the proxy on real loopback sockets, filed by subject (one file each); this
//! file is their harness.
//!
//! Each test starts a proxy ([`Harness`]) and a tokio runtime of its own on a background thread for
//! the upstreams and clients: [`Upstream`] (a hyper server with a few behaviours chosen by path)
//! and the client helpers ([`send`], [`exchange`], [`get`], …). Raw sockets stand in where an app
//! or a client must misbehave below HTTP; they live with the tests that use them. Waits are on
//! conditions with a generous deadline ([`WAIT`]), never fixed sleeps.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

use super::response::BoxError;
use super::*;

mod browser;
mod drain;
mod front_door;
mod pages;
mod retry;
mod routing;
mod streams;
mod tcp;

/// How long any condition may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

type TestBody = UnsyncBoxBody<Bytes, BoxError>;

fn boxed(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A proxy plus a runtime for the test's upstreams and clients.
struct Harness {
    proxy: Option<ProxyHandle>,
    addr: SocketAddr,
    events: Receiver<ProxyEvent>,
    rt: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Harness {
    fn new(mut config: ProxyConfig) -> Harness {
        // The tests address the app as `app.test`: a name the user allowed.
        config.allowed_hosts.names.push("app.test".into());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (sender, events) = crossbeam_channel::unbounded();
        let proxy = ProxyHandle::start(
            listener,
            config,
            Box::new(move |event| {
                let _ = sender.send(event);
            }),
        )
        .expect("start proxy");
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("test runtime");
        let rt = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        });
        Harness { proxy: Some(proxy), addr, events, rt, stop: Some(stop), thread: Some(thread) }
    }

    fn http() -> Harness {
        Harness::new(ProxyConfig::default())
    }

    fn proxy(&self) -> &ProxyHandle {
        self.proxy.as_ref().expect("proxy running")
    }

    fn send(&self, command: ProxyCommand) {
        self.proxy().send(command);
    }

    fn stats(&self) -> ProxyStats {
        self.proxy().stats()
    }

    /// Sends `Serve` and waits until it applied (its `Counters` event), which it returns.
    fn serve(&self, generation: u64, upstreams: &[SocketAddr]) -> Counters {
        self.send(ProxyCommand::Serve { site: 0, generation, upstreams: upstreams.to_vec() });
        match self.event("Counters", |event| matches!(event, ProxyEvent::Counters { .. })) {
            ProxyEvent::Counters { counters, .. } => counters,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The next event matching `wanted` (others are skipped).
    fn event(&self, what: &str, wanted: impl Fn(&ProxyEvent) -> bool) -> ProxyEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => {}
                Err(_) => panic!("no {what} event within {WAIT:?}"),
            }
        }
    }

    fn no_event(&self, unwanted: impl Fn(&ProxyEvent) -> bool) {
        for event in self.events.try_iter() {
            assert!(!unwanted(&event), "unexpected {event:?}");
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(async {
            match tokio::time::timeout(WAIT * 2, future).await {
                Ok(output) => output,
                Err(_) => panic!("timed out"),
            }
        })
    }

    fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(future)
    }

    fn join<T>(&self, task: tokio::task::JoinHandle<T>) -> T {
        self.block_on(task).expect("task")
    }

    fn bind(&self) -> tokio::net::TcpListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let _context = self.rt.enter();
        tokio::net::TcpListener::from_std(listener).expect("tokio listener")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.proxy.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until `condition` holds.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "not {what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a test upstream saw.
struct Seen {
    accepted: AtomicUsize,
    open: AtomicUsize,
    hits: AtomicUsize,
    waiting: AtomicUsize,
    received: AtomicUsize,
    bodies: Mutex<Vec<Bytes>>,
    gate: watch::Sender<bool>,
}

/// A hyper upstream. By path: `/ws` upgrades and echoes, `/slow` waits for [`Upstream::release`],
/// `/stream` sends one event and never ends, `/close` answers `Connection: close`, `/headers` lists
/// the request headers (and answers with hop-by-hop headers); anything else answers
/// `"{name} {method} {target} {body length}"`.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Upstream {
    fn start(h: &Harness, name: &'static str) -> Upstream {
        let listener = h.bind();
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Seen {
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
            gate: watch::Sender::new(false),
        });
        let accept_seen = Arc::clone(&seen);
        h.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&accept_seen);
                seen.accepted.fetch_add(1, Ordering::SeqCst);
                seen.open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service_seen = Arc::clone(&seen);
                    let service = service_fn(move |request| {
                        let seen = Arc::clone(&service_seen);
                        async move { Ok::<_, Infallible>(answer(seen, name, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                    seen.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Upstream { addr, seen }
    }

    fn hits(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.seen.open.load(Ordering::SeqCst)
    }

    fn release(&self) {
        self.seen.gate.send_replace(true);
    }

    fn last_body(&self) -> Bytes {
        self.seen.bodies.lock().expect("bodies").last().cloned().expect("a body")
    }
}

async fn answer(seen: Arc<Seen>, name: &str, mut request: Request<Incoming>) -> Response<TestBody> {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    let target = request.uri().path_and_query().map(|pq| pq.as_str().to_string()).unwrap_or_default();
    match request.uri().path() {
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                }
            });
            return Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .body(boxed(Bytes::new()))
                .expect("101");
        }
        "/slow" => {
            let mut gate = seen.gate.subscribe();
            seen.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = gate.wait_for(|open| *open).await;
        }
        "/stream" => {
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Endless { sent: false }.boxed_unsync())
                .expect("stream");
        }
        "/headers" => {
            let mut lines: Vec<String> = request
                .headers()
                .iter()
                .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
                .collect();
            lines.sort();
            return Response::builder()
                .header("connection", "x-up")
                .header("x-up", "1")
                .header("keep-alive", "timeout=5")
                .header("x-kept", "yes")
                .body(boxed(lines.join("\n")))
                .expect("headers");
        }
        "/close" => {
            return Response::builder()
                .header("connection", "close")
                .body(boxed(format!("{name} closes")))
                .expect("close");
        }
        _ => {}
    }
    let method = request.method().clone();
    let mut body = request.into_body();
    let mut data = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(chunk) = frame.into_data() {
            seen.received.fetch_add(chunk.len(), Ordering::SeqCst);
            data.extend_from_slice(&chunk);
        }
    }
    let length = data.len();
    seen.bodies.lock().expect("bodies").push(data.into());
    Response::builder()
        .header("x-upstream", name)
        .body(boxed(format!("{name} {method} {target} {length}")))
        .expect("response")
}

/// A response body that sends one event and then never ends.
struct Endless {
    sent: bool,
}

impl Body for Endless {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.sent {
            return Poll::Pending;
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"data: first\n\n")))))
    }
}

/// A request body fed through a channel (sent chunked, never known whole in advance).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// A response, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn connect(addr: SocketAddr) -> SendRequest<TestBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to proxy");
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection.with_upgrades());
    sender
}

async fn exchange(sender: &mut SendRequest<TestBody>, request: Request<TestBody>) -> Reply {
    sender.ready().await.expect("client connection ready");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// One request on a fresh connection.
async fn send(addr: SocketAddr, request: Request<TestBody>) -> Reply {
    exchange(&mut connect(addr).await, request).await
}

fn request(method: &str, target: &str, body: impl Into<Bytes>) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(target)
        .header("host", "app.test")
        .body(boxed(body))
        .expect("request")
}

fn get(target: &str) -> Request<TestBody> {
    request("GET", target, Bytes::new())
}

fn with_accept(mut request: Request<TestBody>, accept: &'static str) -> Request<TestBody> {
    request.headers_mut().insert("accept", accept.parse().expect("accept"));
    request
}

/// `request`, addressed to `host`.
fn with_host(mut request: Request<TestBody>, host: &str) -> Request<TestBody> {
    request.headers_mut().insert("host", host.parse().expect("host"));
    request
}

/// A WebSocket upgrade of `/ws` from a page on `origin`.
fn upgrade_from(origin: &str) -> Request<TestBody> {
    let mut request = with_host(get("/ws"), "127.0.0.1");
    request.headers_mut().insert("connection", "upgrade".parse().expect("value"));
    request.headers_mut().insert("upgrade", "websocket".parse().expect("value"));
    request.headers_mut().insert("origin", origin.parse().expect("origin"));
    request
}
