//! The front door (`--proxy`): devserve accepts every client connection itself and routes each
//! request (or, in [`ProxyMode::Tcp`], each connection) only to a *ready* generation's workers.
//!
//! This module owns the public listening socket once it is handed to [`ProxyHandle::start`], one
//! thread (`devserve-proxy`) running a tokio current-thread runtime, the routing table, the pooled
//! connections to upstreams and the per-generation in-flight accounting. It knows nothing else of
//! devserve: the supervisor drives it only through [`ProxyCommand`]s and hears back only through
//! [`ProxyEvent`]s (and reads [`ProxyStats`] for its status table).
//!
//! # Contract
//! - **Hold, never refuse.** Before the first [`ProxyCommand::Serve`], after a
//!   [`ProxyCommand::Hold`], and while the serving set is empty, a new request waits (up to
//!   [`ProxyConfig::hold_timeout`], then `503` with the hold reason). After a
//!   [`ProxyCommand::Down`] nothing is coming: the `503` is at once. If the last build failed
//!   ([`ProxyCommand::BuildFailed`], and no `Hold` came after it) and nothing serves, requests get a
//!   `502` page with the build's output at once.
//! - **Routing.** New requests go only to the serving set; among its upstreams the one with the
//!   fewest outstanding exchanges wins, ties broken round robin. Least-outstanding rather than plain
//!   round robin because a dev app often has one slow endpoint (an SSE stream, a long poll, a
//!   debugger stopped on a breakpoint): requests should flow around a busy worker, and with no load
//!   the round-robin tie-break still spreads sequential requests evenly.
//! - **Retry what the app dropped.** A connection refused is retried once on another ready upstream
//!   whatever the request (its body was never touched). A request written to an upstream that
//!   reset or closed before any response byte is retried once only when it is idempotent (RFC 9110
//!   §9.2.2) and its body is empty or was buffered (≤ [`ProxyConfig::retry_body_limit`], known
//!   `Content-Length`); otherwise the client gets `502` with the reason. A retry avoids the
//!   upstream that failed until the routing changes, for at most
//!   [`ProxyConfig::avoid_for`]: a sole worker that dropped one request gets it again then,
//!   rather than the client waiting out the hold timeout.
//! - **Idle connections closing.** A pooled connection the app closed as the request was written
//!   (its keep-alive timeout, RFC 9112 §9.3.1) is not the app dropping the request: an idempotent
//!   request with a resendable body goes again on a fresh connection, to the same upstream if it is
//!   still the best, without using up its one retry.
//! - **Drain.** [`ProxyCommand::Drain`] stops routing to a generation and closes its idle pooled
//!   connections at once; [`ProxyEvent::Drained`] follows when its last exchange ends. An exchange
//!   is a request until its response body is complete, an upgraded (WebSocket) connection until
//!   either side closes it, or a raw TCP connection. [`ProxyCommand::Close`] ends those that
//!   remain.
//! - **The browser side** ([`ProxyConfig::browser_reload`], HTTP mode): devserve answers the
//!   reserved prefix `/__devserve/` itself (GET only, even while nothing serves), adds one
//!   `<script>` tag to HTML pages, and forwards each [`ProxyCommand::Browser`] event to every
//!   connected browser's event stream, in command order: a [`BrowserEvent::Ready`] sent after its
//!   `Serve` reaches browsers only once that `Serve` is applied, so the reload it causes is routed
//!   to the new generation. See `browser` and `inject`.
//!
//! # Layout
//! `state` holds the routing table, the pool and the counters behind one mutex (never held across
//! an `.await`); `http` serves HTTP/1.1 clients and forwards to upstreams; `tcp` does the same for
//! raw TCP; `upstream` opens and closes connections to upstreams; `headers` rewrites forwarding and
//! hop-by-hop headers; `pages` renders the error pages; `body` holds the response body that carries
//! an exchange's accounting; `browser` answers `/__devserve/` (the event stream, the client
//! scripts) and keeps what browsers were told; `inject` adds the client's script tag to HTML
//! responses.
//!
//! # Runtime
//! One `std::thread` runs a tokio *current-thread* runtime: a dev proxy on loopback is bound by the
//! app, not by the proxy, and one thread keeps the resident memory low (no worker stacks or
//! allocator arenas per worker) and makes every state change happen on one thread. Measured in a
//! release build with 16 keep-alive clients (8000 requests, one in ten with a 32 KiB body): the
//! proxy adds about 3.4 MiB of RSS; a two-worker multi-thread runtime added 1.4 MiB more and was
//! slower on a 2-core machine shared with the app.

mod body;
mod browser;
mod guard;
mod headers;
mod http;
mod inject;
mod pages;
mod request_body;
mod state;
mod tcp;
#[cfg(test)]
mod tests;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use self::state::Shared;

pub use self::guard::AllowedHosts;

/// The default [`ProxyConfig::hold_timeout`].
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`ProxyConfig::avoid_for`]: the supervisor reaps a crashed worker and unroutes it
/// in milliseconds; a second is ample on a loaded machine and short for a person waiting.
pub const DEFAULT_AVOID_FOR: Duration = Duration::from_secs(1);

/// The default [`ProxyConfig::retry_body_limit`]: 64 KiB, enough for any form post or JSON call a
/// dev app sees, small enough that buffering it costs nothing noticeable.
pub const DEFAULT_RETRY_BODY_LIMIT: usize = 64 * 1024;

/// The default [`ProxyConfig::body_timeout`]: as long as hyper gives a client for its request
/// head. A body that stops arriving for this long is given up (`408`), so that connections that
/// never finish their request cannot hold the front door's file descriptors for ever.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the proxy behaves; fixed for the proxy's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// How long a request (or a TCP connection) waits for a ready upstream before it is answered
    /// `503` (or closed). Default [`DEFAULT_HOLD_TIMEOUT`].
    pub hold_timeout: Duration,
    /// Request bodies with a `Content-Length` up to this size are read whole before forwarding, so
    /// that an idempotent request can be resent if the upstream drops it. Larger or chunked bodies
    /// are streamed. Default [`DEFAULT_RETRY_BODY_LIMIT`].
    pub retry_body_limit: usize,
    /// HTTP reverse proxy, or connection-level raw TCP forwarding.
    pub mode: ProxyMode,
    /// Reload the browsers (HTTP mode only). When true (the default): the path prefix
    /// `/__devserve/` is devserve's own (the event stream, the client scripts; GET only), HTML
    /// responses get the client's `<script>` tag, and HTML navigations are asked for with
    /// `Accept-Encoding: identity` so that they can be. When false, every request goes to the app
    /// untouched and [`ProxyCommand::Browser`] is ignored (`--no-browser-reload`).
    pub browser_reload: bool,
    /// How long a retried request stays away from the upstream that dropped it while the routing
    /// does not change. A crashed worker leaves the routing well within it (then the request waits
    /// for its restart, held); a living sole worker gets the request again after it. Default
    /// [`DEFAULT_AVOID_FOR`].
    pub avoid_for: Duration,
    /// Which hosts the front door answers for, and the cross-site checks (`--allowed-host`).
    pub allowed_hosts: AllowedHosts,
    /// A request sent to an app that has not begun its answer within this time gets `504`
    /// (`--upstream-timeout`). `None` (the default): wait as long as the app takes, since a
    /// debugger stopped on a breakpoint is a good reason to wait.
    pub upstream_timeout: Option<Duration>,
    /// A request body that sends no byte for this long is given up. Default
    /// [`DEFAULT_BODY_TIMEOUT`].
    pub body_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            hold_timeout: DEFAULT_HOLD_TIMEOUT,
            retry_body_limit: DEFAULT_RETRY_BODY_LIMIT,
            mode: ProxyMode::Http,
            browser_reload: true,
            avoid_for: DEFAULT_AVOID_FOR,
            allowed_hosts: AllowedHosts::default(),
            upstream_timeout: None,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// What the proxy routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// HTTP/1.1 reverse proxy: each request is routed on its own.
    #[default]
    Http,
    /// Raw TCP: each connection is routed once and its bytes copied both ways. The same hold
    /// rules apply; a connection that waited past the hold timeout is closed.
    Tcp,
}

/// What the supervisor tells the proxy. Commands are applied in order, on the proxy thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyCommand {
    /// New requests go to these ready upstreams of `generation` (replaces the routing set; the
    /// previous generation gets no NEW request from now on). Also reports and resets the counters
    /// ([`ProxyEvent::Counters`]). An empty list behaves like [`ProxyCommand::Hold`] with a default
    /// reason, but keeps `generation` as the one [`ProxyCommand::AddUpstream`] applies to.
    Serve {
        /// The generation that now serves.
        generation: u64,
        /// Its ready workers' private addresses.
        upstreams: Vec<SocketAddr>,
    },
    /// Add one upstream to the serving generation (a worker restarted on a new port, TTIN,
    /// a rolling step). Ignored unless `generation` is the serving one.
    AddUpstream {
        /// The serving generation.
        generation: u64,
        /// The worker's address.
        upstream: SocketAddr,
    },
    /// Remove one upstream of the serving generation (TTOU, a worker that exited). Requests in
    /// flight on it finish; its idle pooled connections are closed. Ignored unless `generation`
    /// is the serving one.
    RemoveUpstream {
        /// The serving generation.
        generation: u64,
        /// The worker's address.
        upstream: SocketAddr,
    },
    /// Nothing is ready: hold new requests (up to the hold timeout, then `503` with this reason in
    /// the body). Stops routing to the serving generation.
    Hold {
        /// Why nothing is ready, for the user ("building", "gen 3 starting").
        reason: String,
    },
    /// Nothing is ready and nothing is starting (the new generation failed and no old one
    /// serves): requests get a `503` with this reason at once instead of waiting for the hold
    /// timeout. Stops routing like [`ProxyCommand::Hold`]; the next `Hold` or `Serve` ends it.
    Down {
        /// Why nothing serves ("gen 1 failed: w0 exited with status 1 before it was ready").
        reason: String,
    },
    /// The last build failed: when nothing serves, requests get an error page with this (status
    /// text and output tail; the output may contain ANSI colour codes).
    BuildFailed {
        /// The build command as the user wrote it.
        command: String,
        /// How it ended ("exit status: 101").
        status: String,
        /// The tail of its output.
        output: String,
    },
    /// Clear the build failure (a build succeeded).
    BuildOk,
    /// Stop routing to `generation` (if still routed), close its idle pooled upstream connections,
    /// and send [`ProxyEvent::Drained`] once its in-flight exchanges reach zero (at once if none).
    Drain {
        /// The generation to drain.
        generation: u64,
    },
    /// Close every connection still open to `generation` now (long-lived: WebSocket, SSE, raw TCP;
    /// the stop timeout passed); also stops routing to it. Replies [`ProxyEvent::Closed`].
    Close {
        /// The generation whose connections to close.
        generation: u64,
    },
    /// Tell every connected browser (see [`BrowserEvent`]). Applied in order with the other
    /// commands, so a `Ready` sent right after its `Serve` is forwarded once that `Serve` applies.
    /// Ignored without [`ProxyConfig::browser_reload`].
    Browser(BrowserEvent),
    /// Stop the proxy: the thread ends, every connection it holds is dropped, and the listener is
    /// closed (pass a `try_clone` of it to [`ProxyHandle::start`] to keep it open).
    Shutdown,
}

/// What the browsers are told, in order. Each becomes one message `event: <kind>` with a JSON
/// `data:` on the event stream `GET /__devserve/events` (kinds `building`, `ready`,
/// `build-failed`, `crashed`; the stream also opens with a `hello` of its own).
///
/// The proxy keeps the last `BuildFailed` or `Crashed` until the next `Ready`, and a `Building`
/// until the next event of another kind, and sends them to a browser that connects later: a page
/// opened while the build is broken shows the overlay at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserEvent {
    /// A build (or a start) began: pages show a small badge.
    Building {
        /// Why ("src/main.rs changed").
        cause: String,
    },
    /// `generation` is ready and routed to. Sent by the supervisor right after it sends
    /// `Serve { generation }`; the proxy forwards it when it handles this command, after that
    /// `Serve` applied, so the reload a page makes is answered by `generation`. Pages served by an
    /// older generation reload (or swap their stylesheets, see `css_only`); an overlay goes away.
    /// Sending it for the generation that already serves (a build that left the app unchanged)
    /// clears the overlays without reloading anything.
    Ready {
        /// The generation now serving.
        generation: u64,
        /// Non-empty when every changed file was a `.css` file: their names. Pages then re-fetch
        /// each same-origin `<link rel=stylesheet>` with a cache-busting query instead of
        /// reloading (unless they saw a failure since they loaded).
        css_only: Vec<String>,
    },
    /// The build failed; the serving generation (if any) keeps serving. Pages show an overlay.
    BuildFailed {
        /// The build command as the user wrote it.
        command: String,
        /// How it ended ("exited with status 101").
        status: String,
        /// How long it ran.
        duration_ms: u128,
        /// Its output (the tail is shown; ANSI colours are rendered, everything is text).
        output: String,
        /// The compiler's diagnostics, when devserve could parse them (cargo's JSON).
        diagnostics: Vec<Diagnostic>,
    },
    /// A new generation failed before it was ready; the serving one (if any) keeps serving. Pages
    /// show an overlay.
    Crashed {
        /// The generation that failed.
        generation: u64,
        /// How it ended ("w0 (pid 123) exited with status 1 before it was ready").
        status: String,
    },
}

/// One compiler diagnostic for the build-failure overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `error`, `warning`, …
    pub level: String,
    /// The one-line message.
    pub message: String,
    /// The primary span's file, as the compiler printed it.
    pub file: String,
    /// Its line (1-based).
    pub line: u32,
    /// Its column (1-based).
    pub column: u32,
    /// The compiler's rendered text (code frame); may contain ANSI colours.
    pub rendered: String,
}

/// What the proxy tells the supervisor. Sent from the proxy thread through the callback given
/// to [`ProxyHandle::start`]; none is sent after [`ProxyCommand::Shutdown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    /// A generation asked to drain has no exchange in flight any more: it can be stopped.
    Drained {
        /// The drained generation.
        generation: u64,
    },
    /// The answer to [`ProxyCommand::Close`]: how many exchanges (upgraded connections, streaming
    /// responses, requests awaiting a response, raw TCP connections) were open and are now closed.
    Closed {
        /// The generation.
        generation: u64,
        /// The number of exchanges closed.
        connections: usize,
    },
    /// Counters since the previous [`ProxyCommand::Serve`] (or the start), sent when a `Serve`
    /// arrives, before it applies (for the swap line "held 3, retried 1").
    Counters(Counters),
    /// The proxy could not do its job (an accept error, …): one line for the user.
    Problem(String),
    /// A request was refused by the allowed-hosts or cross-site checks (`403`). Sent once per
    /// check and value per minute, not per request.
    Refused {
        /// `host`, `origin` or `cross-site-load`.
        check: &'static str,
        /// What was refused: the host, the origin.
        value: String,
        /// The sentence the `403` page says, with the flag that would allow it.
        text: String,
    },
}

/// Request counters over some period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Requests (or TCP connections) that had to wait for a ready upstream.
    pub held: u64,
    /// Requests resent to another upstream after the first one dropped them.
    pub retried: u64,
    /// Requests answered by the proxy itself with an error (`502`/`503`), or TCP connections
    /// closed without reaching an upstream.
    pub failed: u64,
}

/// A snapshot for the status table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// The generation new requests go to, if any.
    pub serving: Option<u64>,
    /// Its upstreams.
    pub upstreams: Vec<SocketAddr>,
    /// Exchanges in flight, per generation that has any (or is draining), by generation.
    pub generations: Vec<GenerationStats>,
    /// Requests waiting for a ready upstream right now.
    pub held_now: usize,
    /// Counters since the proxy started.
    pub total: Counters,
    /// Browser event streams (`GET /__devserve/events`) open now: one per browser with the
    /// shared worker, one per tab without it. A stream the browser dropped is counted until the
    /// proxy notices (at the latest at the next heartbeat, 15 s).
    pub browser_streams: usize,
    /// The oldest exchanges in flight (at most [`OLDEST_SHOWN`]), oldest first.
    pub oldest: Vec<InFlight>,
}

/// How many exchanges [`ProxyStats::oldest`] lists.
pub const OLDEST_SHOWN: usize = 5;

/// One exchange in flight, for the status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The generation it went to.
    pub generation: u64,
    /// What it is: `GET /path`, `WebSocket /path`, `TCP connection`.
    pub what: String,
    /// How long it has been in flight.
    pub age: Duration,
}

/// One generation's line in [`ProxyStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationStats {
    /// The generation.
    pub generation: u64,
    /// Exchanges in flight (requests, streaming responses, upgraded or TCP connections).
    pub in_flight: usize,
    /// A [`ProxyCommand::Drain`] was received and [`ProxyEvent::Drained`] not yet sent.
    pub draining: bool,
}

/// The callback that receives [`ProxyEvent`]s (called on the proxy thread; keep it short).
pub type EventSink = Box<dyn Fn(ProxyEvent) + Send + Sync>;

/// The running proxy: sends commands to its thread. Dropping it (or sending
/// [`ProxyCommand::Shutdown`]) stops the thread; the drop waits for the thread to end.
pub struct ProxyHandle {
    commands: mpsc::UnboundedSender<ProxyCommand>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ProxyHandle {
    /// Starts the proxy thread on `listener`, which devserve has already bound (and is
    /// listening).
    ///
    /// # Errors
    /// Making the socket non-blocking, building the runtime or spawning the thread failed. After
    /// that, problems are reported as [`ProxyEvent::Problem`].
    pub fn start(
        listener: std::net::TcpListener,
        config: ProxyConfig,
        events: EventSink,
    ) -> std::io::Result<ProxyHandle> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared::new(config, events));
        let (commands, receiver) = mpsc::unbounded_channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("devserve-proxy".into()).spawn(move || {
            runtime.block_on(run(thread_shared, listener, receiver));
            // Dropping the runtime here drops every connection task, and with them the sockets.
            drop(runtime);
        })?;
        Ok(ProxyHandle { commands, shared, thread: Some(thread) })
    }

    /// Queues a command for the proxy thread. A command sent after the proxy stopped is ignored.
    pub fn send(&self, command: ProxyCommand) {
        // The only failure is a stopped proxy thread, where there is nothing left to command.
        let _ = self.commands.send(command);
    }

    /// Counters for the status table: in flight per generation, held now, totals.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(ProxyCommand::Shutdown);
        if let Some(thread) = self.thread.take() {
            // A panic on the proxy thread has already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

/// The proxy thread's main task: accepts connections and applies commands until `Shutdown` (or
/// until every [`ProxyHandle`] sender is gone).
async fn run(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    mut commands: mpsc::UnboundedReceiver<ProxyCommand>,
) {
    let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
    while let Some(command) = commands.recv().await {
        if command == ProxyCommand::Shutdown {
            break;
        }
        shared.apply(command);
    }
    shared.shut_down();
    accept.abort();
}

/// Accepts client connections forever, one task each.
///
/// Out of file descriptors, the loop does what nginx and Go's servers do rather than stall: it
/// keeps one descriptor in reserve (`/dev/null`, opened at start), and when `accept` fails for
/// lack of descriptors it frees the reserve, sheds the oldest client connection that waits on no
/// app (idle between requests, or still sending its request), accepts, and takes the reserve
/// again. If every connection waits on the app, the new one is closed at once: its client sees
/// a close, not a hang.
async fn accept_loop(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let mut last_problem: Option<(std::io::ErrorKind, tokio::time::Instant)> = None;
    let mut reserve = std::fs::File::open("/dev/null").ok();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => start_client(&shared, stream, peer),
            Err(error) if is_transient_accept_error(&error) => {}
            Err(error) if is_out_of_fds(&error) && reserve.is_some() => {
                drop(reserve.take());
                let shed = shared.shed_oldest_idle();
                // Let the shed task run so that its socket is closed before the next accept.
                tokio::task::yield_now().await;
                if let Ok((stream, peer)) = listener.accept().await {
                    if shed {
                        start_client(&shared, stream, peer);
                    } else {
                        drop(stream);
                    }
                }
                reserve = std::fs::File::open("/dev/null").ok();
                let now = tokio::time::Instant::now();
                let repeat = last_problem
                    .is_some_and(|(kind, at)| kind == error.kind() && now - at < Duration::from_secs(60));
                if !repeat {
                    let what = if shed {
                        "closed the oldest idle client connection to make room"
                    } else {
                        "every connection waits on the app: closed the new one"
                    };
                    shared.problem(format!("proxy: out of file descriptors ({error}); {what}"));
                    last_problem = Some((error.kind(), now));
                }
            }
            Err(error) => {
                // Out of file descriptors or memory: say so (once per kind per minute) and back off
                // so that the loop does not spin; the connection stays in the kernel queue.
                let now = tokio::time::Instant::now();
                let repeat = last_problem
                    .is_some_and(|(kind, at)| kind == error.kind() && now - at < Duration::from_secs(60));
                if !repeat {
                    shared.problem(format!("proxy: cannot accept a connection: {error}"));
                    last_problem = Some((error.kind(), now));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Starts the task that serves one client connection.
fn start_client(shared: &Arc<Shared>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let id = shared.client_opened();
    let task_shared = Arc::clone(shared);
    let task = tokio::spawn(async move {
        // Drops (and reports the client gone) however the task ends, aborted included.
        let _open = ClientOpen { shared: Arc::clone(&task_shared), id };
        match task_shared.config.mode {
            ProxyMode::Http => http::serve_client(task_shared, stream, peer, id).await,
            ProxyMode::Tcp => tcp::serve_client(task_shared, stream, peer, id).await,
        }
    });
    shared.client_task(id, task.abort_handle());
}

/// A client connection's place in the shared state, given up when its task ends.
struct ClientOpen {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ClientOpen {
    fn drop(&mut self) {
        self.shared.client_closed(self.id);
    }
}

/// `EMFILE` or `ENFILE`: no descriptor for the new connection.
fn is_out_of_fds(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Errors about one connection that died in the queue, not about the listener.
fn is_transient_accept_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted, WouldBlock};
    matches!(error.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
}
