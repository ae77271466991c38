//! End-to-end tests of the proxy on real loopback sockets.
//!
//! Each test starts a proxy ([`Harness`]) and a tokio runtime of its own on a background thread
//! for the upstreams and clients: [`Upstream`] (a hyper server with a few behaviours chosen by
//! path), raw sockets where a test needs to misbehave below HTTP ([`resetter`], [`tcp_echo`]).
//! Waits are on conditions with a generous deadline ([`WAIT`]), never fixed sleeps.

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
        self.send(ProxyCommand::Serve { generation, upstreams: upstreams.to_vec() });
        match self.event("Counters", |event| matches!(event, ProxyEvent::Counters(_))) {
            ProxyEvent::Counters(counters) => counters,
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

/// An address where nothing listens (connections are refused).
fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
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
/// `/stream` sends one event and never ends, `/close` answers `Connection: close`, `/headers` lists the request headers (and answers
/// with hop-by-hop headers); anything else answers `"{name} {method} {target} {body length}"`.
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

/// A raw upstream that reads a request up to the marker `PAYLOAD-END`, then resets the
/// connection without answering. Returns its address and how many connections it accepted.
fn resetter(h: &Harness) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    h.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut chunk).await
                    && n > 0
                {
                    seen.extend_from_slice(&chunk[..n]);
                    if seen.windows(11).any(|w| w == b"PAYLOAD-END") {
                        break;
                    }
                }
                socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).expect("linger");
                drop(stream);
            });
        }
    });
    (addr, accepted)
}

/// What [`dropper`] counted: connections accepted, requests reset unanswered.
#[derive(Default)]
struct Drops {
    accepted: AtomicUsize,
    dropped: AtomicUsize,
}

/// A raw HTTP/1.1 upstream that answers every request `ok` and keeps the connection open, except
/// that it resets the connection after reading request `r` of connection `c` (both from 0) when
/// `drop(c, r)`.
fn dropper(
    h: &Harness,
    drop: impl Fn(usize, usize) -> bool + Send + Sync + 'static,
) -> (SocketAddr, Arc<Drops>) {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    let drops = Arc::new(Drops::default());
    let counts = Arc::clone(&drops);
    let drop = Arc::new(drop);
    h.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let connection = counts.accepted.fetch_add(1, Ordering::SeqCst);
            let (counts, drop) = (Arc::clone(&counts), Arc::clone(&drop));
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                for request in 0.. {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    head.clear();
                    if drop(connection, request) {
                        counts.dropped.fetch_add(1, Ordering::SeqCst);
                        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).expect("linger");
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, drops)
}

/// A raw TCP echo upstream.
fn tcp_echo(h: &Harness) -> SocketAddr {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    h.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
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

#[test]
fn routes_to_the_upstream_and_reuses_its_connection() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let replies = h.block_on(async {
        let mut client = connect(h.addr).await;
        let mut replies = Vec::new();
        for _ in 0..3 {
            replies.push(exchange(&mut client, get("/hello?x=1")).await);
        }
        replies
    });
    for reply in replies {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "a GET /hello?x=1 0");
        assert_eq!(reply.headers["x-upstream"], "a");
    }
    assert_eq!(up.seen.accepted.load(Ordering::SeqCst), 1, "one pooled upstream connection");
    assert_eq!(h.stats().serving, Some(1));
}

#[test]
fn an_upstream_that_closes_after_each_answer_gets_its_next_connection_ahead() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let reply = h.block_on(send(h.addr, get("/close")));
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "a closes");
    // The proxy opens the next connection without a request waiting for it...
    wait_until("an upstream connection opened ahead and pooled", || h.proxy().shared.pooled(1, up.addr) == 1);
    // The kernel completes the connection before the upstream's accept loop counts it.
    wait_until("the upstream accepted one connection per answer so far, plus the one ahead", || {
        up.seen.accepted.load(Ordering::SeqCst) == 2
    });
    assert_eq!(up.hits(), 1, "no request was sent on it");
    // ...and the next request uses it instead of connecting again.
    let reply = h.block_on(send(h.addr, get("/hello")));
    assert_eq!(reply.body, "a GET /hello 0");
    assert_eq!(up.seen.accepted.load(Ordering::SeqCst), 2, "the connection opened ahead was used");
}

#[test]
fn holds_until_serve_then_answers() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    let addr = h.addr;
    let pending = h.spawn(send(addr, get("/")));
    wait_until("held", || h.stats().held_now == 1);
    let counters = h.serve(1, &[up.addr]);
    assert_eq!(counters, Counters { held: 1, retried: 0, failed: 0 });
    let reply = h.join(pending);
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "a GET / 0"));
    assert_eq!(h.stats().held_now, 0);
}

#[test]
fn hold_timeout_answers_503_with_the_reason() {
    let h = Harness::new(ProxyConfig { hold_timeout: Duration::from_millis(200), ..ProxyConfig::default() });
    h.send(ProxyCommand::Hold { reason: "building <app> & co".into() });
    let addr = h.addr;
    let (html, plain) = h.block_on(async move {
        tokio::join!(send(addr, with_accept(get("/"), "text/html,*/*")), send(addr, get("/")))
    });
    assert_eq!(html.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(html.headers["content-type"].to_str().expect("type").starts_with("text/html"));
    assert!(html.body.contains("building &lt;app&gt; &amp; co"), "{}", html.body);
    assert_eq!(plain.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(plain.headers["content-type"].to_str().expect("type").starts_with("text/plain"));
    assert!(plain.body.contains("building <app> & co"), "{}", plain.body);
    assert_eq!(h.stats().total, Counters { held: 2, retried: 0, failed: 2 });
}

#[test]
fn build_failure_page_then_hold_then_serve() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.send(ProxyCommand::BuildFailed {
        command: "cargo build".into(),
        status: "exit status: 101".into(),
        output: "\x1b[1m\x1b[31merror\x1b[0m: expected `<oops>` & more\n".into(),
    });
    let addr = h.addr;
    // Not held: the failure is answered at once (the hold timeout is 30 s).
    let (html, plain) = h.block_on(async move {
        tokio::join!(send(addr, with_accept(get("/"), "text/html")), send(addr, get("/")))
    });
    assert_eq!(html.status, StatusCode::BAD_GATEWAY);
    assert!(html.body.contains("<code>cargo build</code> failed: exit status: 101"), "{}", html.body);
    assert!(
        html.body.contains(
            "<span style=\"font-weight:bold;color:#cd3131\">error</span>: expected `&lt;oops&gt;` &amp; more"
        ),
        "{}",
        html.body
    );
    assert_eq!(plain.status, StatusCode::BAD_GATEWAY);
    assert!(plain.body.contains("error: expected `<oops>` & more"), "{}", plain.body);
    assert!(!plain.body.contains('\x1b'));

    // A rebuild started: requests wait for it again.
    h.send(ProxyCommand::Hold { reason: "building".into() });
    let pending = h.spawn(send(addr, get("/")));
    wait_until("held", || h.stats().held_now == 1);
    h.serve(2, &[up.addr]);
    assert_eq!(h.join(pending).status, StatusCode::OK);
}

#[test]
fn refused_connections_are_retried_for_get_and_post() {
    let h = Harness::http();
    let up = Upstream::start(&h, "good");
    let dead = dead_addr();
    // The cursor starts at the first upstream: the dead one is tried first.
    h.serve(1, &[dead, up.addr]);
    let reply = h.block_on(send(h.addr, get("/")));
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "good GET / 0"));
    h.serve(1, &[dead, up.addr]);
    let reply = h.block_on(send(h.addr, request("POST", "/form", "form=1")));
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "good POST /form 6"));
    assert_eq!(up.last_body(), "form=1");
    assert_eq!(h.stats().total.retried, 2);
}

#[test]
fn a_post_the_upstream_read_and_reset_is_not_retried() {
    let h = Harness::http();
    let up = Upstream::start(&h, "good");
    let (reset, accepted) = resetter(&h);
    h.serve(1, &[reset, up.addr]);
    let reply = h.block_on(send(h.addr, request("POST", "/pay", "amount=1 PAYLOAD-END")));
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("POST is not idempotent"), "{}", reply.body);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(up.hits(), 0);
    assert_eq!(h.stats().total, Counters { held: 0, retried: 0, failed: 1 });
}

#[test]
fn a_request_dropped_on_an_idle_pooled_connection_goes_again_on_a_fresh_one() {
    // The app closing an idle keep-alive connection just as a request goes out: the request is
    // resent at once on a new connection to the same (sole) upstream. Avoiding it would hold
    // the request for `avoid_for`, longer here than the test waits.
    let h = Harness::new(ProxyConfig { avoid_for: Duration::from_secs(3600), ..ProxyConfig::default() });
    let (addr, drops) = dropper(&h, |connection, request| connection == 0 && request == 1);
    h.serve(1, &[addr]);
    let first = h.block_on(send(h.addr, get("/")));
    assert_eq!((first.status, first.body.as_str()), (StatusCode::OK, "ok"));
    let shared = Arc::clone(&h.proxy().shared);
    wait_until("the first connection pooled", || shared.pooled(1, addr) == 1);
    let second = h.block_on(send(h.addr, get("/")));
    assert_eq!((second.status, second.body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(drops.dropped.load(Ordering::SeqCst), 1, "the pooled connection was the one dropped");
    assert_eq!(drops.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(h.stats().total, Counters { held: 0, retried: 1, failed: 0 });
}

#[test]
fn a_sole_upstream_that_dropped_a_request_gets_it_again_once_the_avoidance_lapses() {
    let h = Harness::new(ProxyConfig { avoid_for: Duration::from_millis(200), ..ProxyConfig::default() });
    let (addr, drops) = dropper(&h, |connection, _| connection == 0);
    h.serve(1, &[addr]);
    let started = Instant::now();
    let reply = h.block_on(send(h.addr, get("/")));
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "ok"));
    assert!(started.elapsed() >= Duration::from_millis(200), "the retry kept away for avoid_for");
    assert_eq!(drops.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(drops.accepted.load(Ordering::SeqCst), 2);
    let total = h.stats().total;
    assert_eq!((total.retried, total.failed), (1, 0));
}

#[test]
fn small_bodies_are_kept_and_resent_large_ones_are_not() {
    let h = Harness::new(ProxyConfig { retry_body_limit: 16 * 1024, ..ProxyConfig::default() });
    let up = Upstream::start(&h, "good");
    let (reset, accepted) = resetter(&h);

    let small = format!("{}PAYLOAD-END", "s".repeat(10 * 1024));
    h.serve(1, &[reset, up.addr]);
    let reply = h.block_on(send(h.addr, request("PUT", "/doc", small.clone())));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, format!("good PUT /doc {}", small.len()));
    assert_eq!(up.last_body(), small.as_bytes());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let large = format!("{}PAYLOAD-END", "l".repeat(20 * 1024));
    h.serve(1, &[reset, up.addr]);
    let reply = h.block_on(send(h.addr, request("PUT", "/doc", large)));
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("streamed"), "{}", reply.body);
    assert_eq!(up.hits(), 1);
    assert_eq!(h.stats().total.retried, 1);
}

#[test]
fn a_5mb_upload_streams_through() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 5 * 1024 * 1024;
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let (chunks, body) = mpsc::channel::<Bytes>(4);
    let upload = Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "app.test")
        .body(ChannelBody(body).boxed_unsync())
        .expect("request");
    let addr = h.addr;
    let pending = h.spawn(send(addr, upload));
    let pattern: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let pattern = Bytes::from(pattern);
    let seen = Arc::clone(&up.seen);
    h.block_on(async {
        for _ in 0..(1024 * 1024 / CHUNK) {
            chunks.send(pattern.clone()).await.expect("send chunk");
        }
        // The upstream gets the first megabyte while the client has not sent the rest: the proxy
        // forwards as it reads.
        while seen.received.load(Ordering::SeqCst) < 1024 * 1024 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in (1024 * 1024 / CHUNK)..(TOTAL / CHUNK) {
            chunks.send(pattern.clone()).await.expect("send chunk");
        }
    });
    drop(chunks);
    let reply = h.join(pending);
    assert_eq!(reply.body, format!("a POST /upload {TOTAL}"));
    let body = up.last_body();
    assert_eq!(body.len(), TOTAL);
    assert!(body.chunks(CHUNK).all(|chunk| chunk == pattern));
}

#[test]
fn upgrade_echoes_both_ways() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let echoed = h.block_on(async {
        let mut client = connect(h.addr).await;
        let mut upgrade = get("/ws");
        upgrade.headers_mut().insert("connection", "Upgrade".parse().expect("value"));
        upgrade.headers_mut().insert("upgrade", "websocket".parse().expect("value"));
        let response = client.send_request(upgrade).await.expect("response");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()["upgrade"], "websocket");
        let mut socket = TokioIo::new(hyper::upgrade::on(response).await.expect("upgraded"));
        let mut echoed = Vec::new();
        for word in [&b"ping"[..], b"pong"] {
            socket.write_all(word).await.expect("write");
            let mut buffer = [0u8; 4];
            socket.read_exact(&mut buffer).await.expect("read");
            echoed.extend_from_slice(&buffer);
        }
        echoed
    });
    assert_eq!(echoed, b"pingpong");
    // The client closed the tunnel: the generation drains.
    h.send(ProxyCommand::Drain { generation: 1 });
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
}

#[test]
fn forwarding_headers_are_set_and_hop_by_hop_ones_removed() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let mut asking = get("/headers");
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("upgrade", "h2c"),
        ("x-app", "kept"),
    ] {
        asking.headers_mut().append(name, value.parse().expect("value"));
    }
    let reply = h.block_on(send(h.addr, asking));
    let lines: Vec<&str> = reply.body.lines().collect();
    for expected in [
        "host: app.test",
        "x-app: kept",
        "x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: app.test",
        "forwarded: for=127.0.0.1;host=\"app.test\";proto=http",
    ] {
        assert!(lines.contains(&expected), "{expected:?} missing from {lines:?}");
    }
    for gone in ["x-secret", "keep-alive", "proxy-connection", "te", "upgrade", "connection"] {
        assert!(
            !lines.iter().any(|line| line.starts_with(&format!("{gone}:"))),
            "{gone} forwarded: {lines:?}"
        );
    }
    assert_eq!(reply.headers["x-kept"], "yes");
    assert!(!reply.headers.contains_key("x-up") && !reply.headers.contains_key("keep-alive"));
}

#[test]
fn drain_waits_for_the_request_in_flight_and_closes_idle_connections() {
    let h = Harness::http();
    let old = Upstream::start(&h, "old");
    let new = Upstream::start(&h, "new");
    h.serve(1, &[old.addr]);
    let addr = h.addr;
    let slow = h.spawn(send(addr, get("/slow")));
    wait_until("the slow request reached the app", || old.seen.waiting.load(Ordering::SeqCst) == 1);
    // A second connection, left idle in the pool.
    assert_eq!(h.block_on(send(addr, get("/"))).body, "old GET / 0");
    assert_eq!(old.open(), 2);
    assert_eq!(h.proxy().shared.pooled(1, old.addr), 1);

    // Drain alone (before any other generation serves) stops routing and closes the idle one.
    h.send(ProxyCommand::Drain { generation: 1 });
    let draining = [GenerationStats { generation: 1, in_flight: 1, draining: true }];
    wait_until("draining", || h.stats().generations == draining);
    wait_until("the idle connection closed", || old.open() == 1);
    assert_eq!(h.proxy().shared.pooled(1, old.addr), 0);
    assert_eq!(h.stats().serving, None);
    h.no_event(|event| matches!(event, ProxyEvent::Drained { .. }));
    h.serve(2, &[new.addr]);
    assert_eq!(h.block_on(send(addr, get("/"))).body, "new GET / 0");

    old.release();
    assert_eq!(h.join(slow).body, "old GET /slow 0");
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
    wait_until("the used connection closed", || old.open() == 0);
}

#[test]
fn close_ends_upgraded_connections_and_streams() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let (mut socket, mut stream) = h.block_on(async {
        let mut client = connect(h.addr).await;
        let mut upgrade = get("/ws");
        upgrade.headers_mut().insert("connection", "upgrade".parse().expect("value"));
        upgrade.headers_mut().insert("upgrade", "websocket".parse().expect("value"));
        let response = client.send_request(upgrade).await.expect("101");
        let socket = TokioIo::new(hyper::upgrade::on(response).await.expect("upgraded"));
        let mut client = connect(h.addr).await;
        let response = client.send_request(get("/stream")).await.expect("stream");
        let mut stream = response.into_body();
        let first = stream.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data"), "data: first\n\n");
        (socket, stream)
    });
    // Only long-lived exchanges: drained at once, so that the app is signalled and closes them
    // its own way; they stay open (and counted) until then.
    h.send(ProxyCommand::Drain { generation: 1 });
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
    wait_until("draining", || h.stats().generations.first().is_some_and(|g| g.draining && g.in_flight == 2));

    h.send(ProxyCommand::Close { generation: 1 });
    h.event("Closed", |event| *event == ProxyEvent::Closed { generation: 1, connections: 2 });
    h.block_on(async {
        let mut buffer = [0u8; 8];
        let read = socket.read(&mut buffer).await;
        assert!(matches!(read, Ok(0) | Err(_)), "tunnel still open: {read:?}");
        let next = stream.frame().await;
        assert!(!matches!(&next, Some(Ok(frame)) if frame.is_data()), "stream still open");
    });
    wait_until("closed and forgotten", || h.stats().generations.is_empty());
    h.no_event(|event| matches!(event, ProxyEvent::Drained { .. }));
}

#[test]
fn two_upstreams_share_the_load() {
    let h = Harness::http();
    let a = Upstream::start(&h, "a");
    let b = Upstream::start(&h, "b");
    h.serve(1, &[a.addr, b.addr]);
    h.block_on(async {
        let mut client = connect(h.addr).await;
        for _ in 0..10 {
            assert_eq!(exchange(&mut client, get("/")).await.status, StatusCode::OK);
        }
    });
    assert_eq!((a.hits(), b.hits()), (5, 5));

    // With a request outstanding on `a`, new ones go to `b`.
    let addr = h.addr;
    let slow = h.spawn(send(addr, get("/slow")));
    wait_until("the slow request reached a", || a.seen.waiting.load(Ordering::SeqCst) == 1);
    for _ in 0..4 {
        assert_eq!(h.block_on(send(addr, get("/"))).body, "b GET / 0");
    }
    a.release();
    assert_eq!(h.join(slow).body, "a GET /slow 0");
}

#[test]
fn tcp_mode_holds_then_copies_and_closes_on_command() {
    let h = Harness::new(ProxyConfig { mode: ProxyMode::Tcp, ..ProxyConfig::default() });
    let echo = tcp_echo(&h);
    let addr = h.addr;
    let mut client = h.block_on(async move {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.write_all(b"hello").await.expect("write");
        client
    });
    wait_until("held", || h.stats().held_now == 1);
    h.serve(1, &[echo]);
    let echoed = h.block_on(async {
        let mut buffer = [0u8; 5];
        client.read_exact(&mut buffer).await.expect("echo");
        buffer
    });
    assert_eq!(&echoed, b"hello");

    // A raw connection is long-lived: the generation is drained at once (the app closes it).
    h.send(ProxyCommand::Drain { generation: 1 });
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
    wait_until("draining", || h.stats().generations.first().is_some_and(|g| g.draining && g.in_flight == 1));
    h.send(ProxyCommand::Close { generation: 1 });
    h.event("Closed", |event| *event == ProxyEvent::Closed { generation: 1, connections: 1 });
    let read = h.block_on(async move { client.read(&mut [0u8; 8]).await });
    assert!(matches!(read, Ok(0) | Err(_)), "still open: {read:?}");
    wait_until("closed and forgotten", || h.stats().generations.is_empty());
}

#[test]
fn tcp_mode_closes_a_connection_held_too_long() {
    let h = Harness::new(ProxyConfig {
        mode: ProxyMode::Tcp,
        hold_timeout: Duration::from_millis(100),
        ..ProxyConfig::default()
    });
    let addr = h.addr;
    let read = h.block_on(async move {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.read(&mut [0u8; 8]).await
    });
    assert!(matches!(read, Ok(0) | Err(_)), "not closed: {read:?}");
    assert_eq!(h.stats().total, Counters { held: 1, retried: 0, failed: 1 });
}

#[test]
fn garbage_from_one_client_changes_nothing_else() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let addr = h.addr;
    let answer = h.block_on(async move {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.write_all(b"NOT HTTP AT ALL\x00\x01\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        answer
    });
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(h.block_on(send(addr, get("/"))).body, "a GET / 0");
    assert_eq!(h.stats().serving, Some(1));
    assert_eq!(up.hits(), 1);
}

// ---- The browser side: injection, `/__devserve/`, the event stream.

/// The page most tests get: 58 bytes with `</head>` and `</body>`.
const PAGE: &str = "<html><head><title>t</title></head><body><p>hi</p></body></html>";

/// An upstream for the browser side. By path: `/page` ([`PAGE`], with a length and an ETag),
/// `/nobody` (no `</body>`), `/bare` (neither tag), `/chunked` (HTML sent in two chunks, the
/// second after [`Upstream::release`]-like `gate`), `/gzip` (a gzip-encoded page, whatever was
/// asked), `/no-transform`, `/json`; anything else answers its path as text. Each response
/// echoes the request's `Accept-Encoding` in `x-saw-accept-encoding`.
fn html_upstream(h: &Harness, gate: watch::Sender<bool>) -> SocketAddr {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    h.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let gate = gate.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let gate = gate.clone();
                    async move { Ok::<_, Infallible>(html_answer(&request, &gate)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The bytes `/gzip` sends (a real gzip member of "<p>gz</p>").
const GZIPPED: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0xb3, 0x29, 0xb0, 0x4b, 0xaf, 0xb2, 0xd1,
    0x2f, 0xb0, 0x03, 0x00, 0xe2, 0x8d, 0x21, 0xbb, 0x09, 0x00, 0x00, 0x00,
];

fn html_answer(request: &Request<Incoming>, gate: &watch::Sender<bool>) -> Response<TestBody> {
    let saw = request
        .headers()
        .get("accept-encoding")
        .map_or_else(|| "-".to_string(), |v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let builder = Response::builder().header("x-saw-accept-encoding", saw);
    let html = |builder: hyper::http::response::Builder, body: &'static str| {
        builder.header("content-type", "text/html; charset=utf-8").body(boxed(body)).expect("response")
    };
    match request.uri().path() {
        "/page" => html(builder.header("etag", "\"v1\""), PAGE),
        "/nobody" => html(builder, "<html><head><title>t</title></head><p>no body</p>"),
        "/bare" => html(builder, "<p>bare</p>"),
        "/no-transform" => html(builder.header("cache-control", "no-transform"), PAGE),
        "/gzip" => builder
            .header("content-type", "text/html")
            .header("content-encoding", "gzip")
            .body(boxed(GZIPPED))
            .expect("gzip"),
        "/json" => builder
            .header("content-type", "application/json")
            .body(boxed("{\"a\":\"</body>\"}"))
            .expect("json"),
        "/chunked" => {
            let (chunks, body) = mpsc::channel::<Bytes>(2);
            let mut open = gate.subscribe();
            tokio::spawn(async move {
                let _ = chunks.send(Bytes::from_static(b"<html><body><p>one</p></bo")).await;
                let _ = open.wait_for(|open| *open).await;
                let _ = chunks.send(Bytes::from_static(b"dy></html>")).await;
            });
            builder
                .header("content-type", "text/html")
                .body(ChannelBody(body).boxed_unsync())
                .expect("chunked")
        }
        other => builder.body(boxed(format!("path {other}"))).expect("other"),
    }
}

/// `GET target` as a browser navigation (`Accept: text/html`, gzip accepted).
fn navigate(target: &str) -> Request<TestBody> {
    let mut request = with_accept(get(target), "text/html,application/xhtml+xml,*/*;q=0.8");
    request.headers_mut().insert("accept-encoding", "gzip, deflate, br".parse().expect("value"));
    request
}

/// The tag the proxy adds for generation `generation`.
fn tag_of(body: &str) -> Option<&str> {
    let start = body.find("<script src=\"/__devserve/client.js\"")?;
    let end = body[start..].find("</script>")? + start + "</script>".len();
    Some(&body[start..end])
}

#[test]
fn html_pages_get_the_script_where_the_rules_say_and_the_length_fits() {
    let h = Harness::http();
    let up = html_upstream(&h, watch::Sender::new(false));
    h.serve(7, &[up]);
    let addr = h.addr;
    let (page, nobody, bare) = h.block_on(async move {
        tokio::join!(
            send(addr, navigate("/page")),
            send(addr, navigate("/nobody")),
            send(addr, navigate("/bare"))
        )
    });

    let tag = tag_of(&page.body).expect("a script tag").to_owned();
    assert!(tag.contains("data-devserve-generation=\"7\""), "{tag}");
    assert_eq!(page.body, PAGE.replace("</body>", &format!("{tag}</body>")));
    assert_eq!(page.headers["content-length"], page.body.len().to_string());
    assert!(!page.headers.contains_key("etag"), "a changed page has no validator");
    assert_eq!(page.headers["x-saw-accept-encoding"], "identity", "HTML navigations are asked uncompressed");

    assert_eq!(nobody.body, format!("<html><head><title>t</title>{tag}</head><p>no body</p>"));
    assert_eq!(nobody.headers["content-length"], nobody.body.len().to_string());
    assert_eq!(bare.body, format!("<p>bare</p>{tag}"));
    assert_eq!(bare.headers["content-length"], bare.body.len().to_string());
}

#[test]
fn compressed_json_no_transform_head_and_fragments_are_untouched() {
    let h = Harness::http();
    let up = html_upstream(&h, watch::Sender::new(false));
    h.serve(1, &[up]);
    let addr = h.addr;
    h.block_on(async move {
        // The app compresses although identity was asked: the bytes pass as they are.
        let mut client = connect(addr).await;
        client.ready().await.expect("ready");
        let response = client.send_request(navigate("/gzip")).await.expect("response");
        assert_eq!(response.headers()["content-encoding"], "gzip");
        assert_eq!(response.headers()["x-saw-accept-encoding"], "identity");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], GZIPPED, "byte for byte");

        let mut json = navigate("/json");
        json.headers_mut().insert("accept", "application/json".parse().expect("value"));
        let json = send(addr, json).await;
        assert_eq!(json.body, "{\"a\":\"</body>\"}");
        assert_eq!(json.headers["x-saw-accept-encoding"], "gzip, deflate, br", "not a navigation");

        let no_transform = send(addr, navigate("/no-transform")).await;
        assert_eq!(no_transform.body, PAGE);

        let mut fragment = navigate("/page");
        fragment.headers_mut().insert("sec-fetch-dest", "empty".parse().expect("value"));
        let fragment = send(addr, fragment).await;
        assert_eq!(fragment.body, PAGE, "a fetch() of HTML is not a page");
        assert_eq!(fragment.headers["etag"], "\"v1\"");
        assert_eq!(fragment.headers["x-saw-accept-encoding"], "gzip, deflate, br");

        let mut head = navigate("/page");
        *head.method_mut() = hyper::Method::HEAD;
        let head = send(addr, head).await;
        assert_eq!(head.body, "");
        assert_eq!(head.headers["etag"], "\"v1\"");
        assert_eq!(head.headers["x-saw-accept-encoding"], "gzip, deflate, br");
    });
}

#[test]
fn a_chunked_page_streams_with_the_script_before_its_body_end() {
    let h = Harness::http();
    let gate = watch::Sender::new(false);
    let up = html_upstream(&h, gate.clone());
    h.serve(1, &[up]);
    let addr = h.addr;
    let body = h.block_on(async move {
        let mut client = connect(addr).await;
        let response = client.send_request(navigate("/chunked")).await.expect("response");
        assert!(!response.headers().contains_key("content-length"));
        let mut body = response.into_body();
        let mut text = Vec::new();
        // The first chunk comes before the app sends the rest: the page is not held (but for the
        // few bytes that could start a `</body>`).
        while !text.starts_with(b"<html><body><p>one") {
            let frame = body.frame().await.expect("a frame").expect("data");
            text.extend_from_slice(&frame.into_data().expect("data"));
        }
        gate.send_replace(true);
        while let Some(frame) = body.frame().await {
            text.extend_from_slice(&frame.expect("frame").into_data().expect("data"));
        }
        String::from_utf8(text).expect("utf-8")
    });
    let tag = tag_of(&body).expect("a script tag");
    assert_eq!(body, format!("<html><body><p>one</p>{tag}</body></html>"));
}

#[test]
fn devserve_routes_answer_get_only_at_once_even_while_nothing_serves() {
    let h = Harness::new(ProxyConfig { hold_timeout: Duration::from_millis(300), ..ProxyConfig::default() });
    let addr = h.addr;
    let (client, worker, events_post, head, missing, stats) = h.block_on(async move {
        tokio::join!(
            send(addr, get("/__devserve/client.js")),
            send(addr, get("/__devserve/worker.js")),
            send(addr, request("POST", "/__devserve/events", "x")),
            send(addr, request("HEAD", "/__devserve/client.js", Bytes::new())),
            send(addr, get("/__devserve/nope")),
            send(addr, get("/__devserve/stats")),
        )
    });
    assert_eq!(client.status, StatusCode::OK);
    assert!(client.headers["content-type"].to_str().expect("type").starts_with("text/javascript"));
    assert!(client.body.contains("SharedWorker") && client.body.contains("/__devserve/events"));
    assert_eq!(worker.status, StatusCode::OK);
    assert!(worker.body.contains("onconnect"));
    for refused in [&events_post, &head] {
        assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers["allow"], "GET");
    }
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let stats: serde_json::Value = serde_json::from_str(&stats.body).expect("stats JSON");
    assert_eq!((stats["streams"].as_u64(), stats["ready"].is_null()), (Some(0), true));
    assert_eq!(h.stats().total, Counters::default(), "devserve's routes are neither held nor counted");

    // devserve's own page (here the hold timeout's) carries the client, so it reloads once ready.
    let page = h.block_on(send(addr, navigate("/")));
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    let tag = tag_of(&page.body).expect("a script tag");
    assert!(tag.contains("data-devserve-generation=\"0\""), "{tag}");
    assert!(page.body.ends_with(&format!("{tag}</body></html>\n")), "{}", page.body);
}

/// An open event stream, read message by message.
struct Sse {
    body: Incoming,
    buffer: String,
}

impl Sse {
    async fn open(addr: SocketAddr) -> Sse {
        let mut client = connect(addr).await;
        let response = client.send_request(get("/__devserve/events")).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-store");
        // The connection task keeps the stream; the sender may go.
        drop(client);
        Sse { body: response.into_body(), buffer: String::new() }
    }

    /// The next message with an `event:` (comments and `retry:` skipped): its kind and data.
    async fn next(&mut self) -> (String, serde_json::Value) {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    message.lines().find_map(|line| line.strip_prefix(name)).map(|v| v.trim().to_owned())
                };
                if let (Some(kind), Some(data)) = (field("event:"), field("data:")) {
                    assert_eq!(message.lines().filter(|l| l.starts_with("data:")).count(), 1, "{message}");
                    return (kind, serde_json::from_str(&data).expect("JSON data"));
                }
            }
            let frame = self.body.frame().await.expect("stream open").expect("frame");
            self.buffer.push_str(&String::from_utf8_lossy(&frame.into_data().expect("data")));
        }
    }

    async fn expect(&mut self, kind: &str) -> serde_json::Value {
        let (got, data) = self.next().await;
        assert_eq!(got, kind, "{data}");
        data
    }
}

fn build_failed() -> BrowserEvent {
    BrowserEvent::BuildFailed {
        command: "cargo build".into(),
        status: "exited with status 101".into(),
        duration_ms: 1234,
        output: "\x1b[1m\x1b[31merror\x1b[0m: <script>alert(1)</script>\n --> src/main.rs:3:7\n".into(),
        diagnostics: vec![Diagnostic {
            level: "error".into(),
            message: "expected `;`".into(),
            file: "src/main.rs".into(),
            line: 3,
            column: 7,
            rendered: "\x1b[38;5;12m3 |\x1b[0m let x = 1\n".into(),
        }],
    }
}

#[test]
fn events_reach_every_stream_in_order_and_a_late_one_gets_the_standing_failure() {
    let h = Harness::http();
    let old = Upstream::start(&h, "old");
    let new = Upstream::start(&h, "new");
    h.serve(1, &[old.addr]);
    h.send(ProxyCommand::Browser(BrowserEvent::Ready { generation: 1, css_only: vec![] }));
    let addr = h.addr;
    let mut early = h.block_on(Sse::open(addr));
    let hello = h.block_on(early.expect("hello"));
    assert_eq!(hello["ready"], 1);
    let instance = hello["instance"].as_str().expect("instance").to_owned();

    h.send(ProxyCommand::Browser(BrowserEvent::Building { cause: "src/main.rs changed".into() }));
    h.send(ProxyCommand::Browser(build_failed()));
    assert_eq!(h.block_on(early.expect("building"))["cause"], "src/main.rs changed");
    let failed = h.block_on(early.expect("build-failed"));
    assert_eq!(failed["command"], "cargo build");
    assert_eq!(failed["duration_ms"], 1234);
    // The output is text in runs (the client sets textContent), colours as CSS, locations marked.
    let runs = failed["output"].as_array().expect("runs");
    assert_eq!(runs[0], serde_json::json!({"text": "error", "style": "font-weight:bold;color:#cd3131"}));
    assert_eq!(runs[1]["text"], ": <script>alert(1)</script>\n --> ");
    assert_eq!(runs[2], serde_json::json!({"text": "src/main.rs:3:7", "loc": true}));
    let diagnostic = &failed["diagnostics"][0];
    assert_eq!((diagnostic["file"].as_str(), diagnostic["line"].as_u64()), (Some("src/main.rs"), Some(3)));
    assert_eq!(diagnostic["rendered"][0], serde_json::json!({"text": "3 |", "style": "color:#3b8eea"}));

    // A page opened now sees the failure at once, and the build that runs.
    h.send(ProxyCommand::Browser(BrowserEvent::Building { cause: "again".into() }));
    assert_eq!(h.block_on(early.expect("building"))["cause"], "again");
    let mut late = h.block_on(Sse::open(addr));
    assert_eq!(h.block_on(late.expect("hello"))["instance"], instance.as_str());
    assert_eq!(h.block_on(late.expect("build-failed")), failed);
    assert_eq!(h.block_on(late.expect("building"))["cause"], "again");
    assert_eq!(h.stats().browser_streams, 2);

    // `Ready` goes out after its `Serve` applied: a request made on it reaches the new generation.
    h.send(ProxyCommand::Serve { generation: 2, upstreams: vec![new.addr] });
    h.send(ProxyCommand::Browser(BrowserEvent::Ready { generation: 2, css_only: vec!["a.css".into()] }));
    let ready = h.block_on(early.expect("ready"));
    assert_eq!(ready, serde_json::json!({"generation": 2, "css_only": ["a.css"]}));
    assert_eq!(h.block_on(send(addr, get("/"))).body, "new GET / 0");
    assert_eq!(h.block_on(late.expect("ready"))["generation"], 2);

    // A crash stands until the next `Ready`; the failure before it is gone.
    h.send(ProxyCommand::Browser(BrowserEvent::Crashed {
        generation: 3,
        status: "exited with status 1".into(),
    }));
    assert_eq!(h.block_on(early.expect("crashed"))["generation"], 3);
    let mut third = h.block_on(Sse::open(addr));
    assert_eq!(h.block_on(third.expect("hello"))["ready"], 2);
    assert_eq!(h.block_on(third.expect("crashed"))["status"], "exited with status 1");
    h.send(ProxyCommand::Browser(BrowserEvent::Ready { generation: 4, css_only: vec![] }));
    assert_eq!(h.block_on(third.expect("ready"))["generation"], 4);
    let mut fourth = h.block_on(Sse::open(addr));
    assert_eq!(h.block_on(fourth.expect("hello"))["ready"], 4);
    h.send(ProxyCommand::Browser(BrowserEvent::Building { cause: "x".into() }));
    assert_eq!(h.block_on(fourth.expect("building"))["cause"], "x", "nothing stood before it");

    // A closed stream leaves the count.
    assert_eq!(h.stats().browser_streams, 4);
    drop((early, late));
    wait_until("two streams left", || h.stats().browser_streams == 2);
}

#[test]
fn without_browser_reload_nothing_is_reserved_or_changed() {
    let h = Harness::new(ProxyConfig { browser_reload: false, ..ProxyConfig::default() });
    let up = html_upstream(&h, watch::Sender::new(false));
    h.serve(1, &[up]);
    h.send(ProxyCommand::Browser(build_failed()));
    let addr = h.addr;
    let (page, reserved) = h.block_on(async move {
        tokio::join!(send(addr, navigate("/page")), send(addr, get("/__devserve/events")))
    });
    assert_eq!(page.body, PAGE);
    assert_eq!(page.headers["x-saw-accept-encoding"], "gzip, deflate, br");
    assert_eq!(reserved.body, "path /__devserve/events", "the app's own path");
}

mod front_door;
