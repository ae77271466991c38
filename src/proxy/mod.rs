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
//! - **Sites.** With [`ProxyConfig::sites`] (services), each site has its own serving set, hold,
//!   down and build failure, and a request belongs to the site its `NAME.localhost` host names,
//!   else to the longest route that is a whole-segment prefix of its path (`404` when none); its
//!   prefix is stripped when the site says so. Without sites every request is site 0's.
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
//! The files, each of which uses only files listed after it (no two use each other, even through
//! others; `layering` in `lib.rs` checks this order):
//! - `tests/`: end-to-end tests on loopback sockets, through [`ProxyHandle`] and the files below.
//! - `mod.rs`: the proxy thread, its accept loop and [`ProxyHandle`]; re-exports `api`.
//! - `tcp.rs`: raw TCP mode, one client connection routed once and copied both ways.
//! - `tls.rs`: the TLS handshake of `--proxy https://` (rustls), then `http.rs` on the stream.
//! - `http.rs`: serves HTTP/1.1 and HTTP/2 clients and forwards each request to an upstream
//!   (retries, upgrades, the browser side).
//! - `tracked.rs`: the body of a forwarded response, which carries its exchange's accounting and
//!   gives its connection back to the pool.
//! - `state.rs`: the routing table, the pool, the in-flight accounting and the counters behind one
//!   mutex (never held across an `.await`).
//! - `browser.rs`: answers `/__devserve/` (the event stream, the client scripts) and keeps what
//!   browsers were told.
//! - `inject.rs`: adds the client's script tag to HTML responses.
//! - `pages.rs`: the pages the proxy answers with itself (`503`, `502`, `403`, …), and build output
//!   as HTML, text or coloured runs.
//! - `upstream.rs`: opens and closes connections to upstreams; the connection buffer size.
//! - `request_body.rs`: the client's request body on its way to an app (idle timeout, failure
//!   flag).
//! - `api.rs`: the configuration, commands, events and stats (plain data).
//! - `headers.rs`: rewrites forwarding and hop-by-hop headers.
//! - `guard.rs`: the allowed-hosts and cross-site checks.
//! - `response.rs`: the response body type and the boxed error shared by the files above.
//!
//! # Runtime
//! One `std::thread` runs a tokio *current-thread* runtime: a dev proxy on loopback is bound by the
//! app, not by the proxy, and one thread keeps the resident memory low (no worker stacks or
//! allocator arenas per worker) and makes every state change happen on one thread. Measured in a
//! release build with 16 keep-alive clients (8000 requests, one in ten with a 32 KiB body): the
//! proxy adds about 3.4 MiB of RSS; a two-worker multi-thread runtime added 1.4 MiB more and was
//! slower on a 2-core machine shared with the app.

mod api;
mod browser;
mod guard;
mod headers;
mod http;
mod inject;
mod pages;
mod request_body;
mod response;
mod state;
mod tcp;
#[cfg(test)]
mod tests;
#[cfg(feature = "https")]
mod tls;
mod tracked;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use self::state::Shared;

pub use self::api::{
    BrowserEvent, Diagnostic, EventSink, ProxyCommand, ProxyConfig, ProxyEvent, ProxyMode, ProxyStats,
    SiteConfig, TlsConfig,
};
#[cfg(test)]
pub use self::api::{Counters, GenerationStats};
pub use self::guard::AllowedHosts;

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
        match command {
            ProxyCommand::Shutdown => break,
            ProxyCommand::HandOver => {
                // Aborting the task drops the listener: this process no longer accepts.
                accept.abort();
                shared.hand_over(false);
                let later = Arc::clone(&shared);
                tokio::spawn(async move {
                    tokio::time::sleep(HAND_OVER_IDLE).await;
                    later.hand_over(true);
                });
            }
            command => shared.apply(command),
        }
    }
    shared.shut_down();
    accept.abort();
}

/// After a hand-over, a client connection still idle this long without a request is closed.
const HAND_OVER_IDLE: Duration = Duration::from_secs(1);

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
    // One line per kind of error per minute (the supervisor's line adds the `proxy: `).
    let mut say = |error: &std::io::Error, text: String| {
        let now = tokio::time::Instant::now();
        let repeat =
            last_problem.is_some_and(|(kind, at)| kind == error.kind() && now - at < Duration::from_secs(60));
        if !repeat {
            shared.problem(text);
            last_problem = Some((error.kind(), now));
        }
    };
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
                let what = if shed {
                    "closed the oldest idle client connection to make room"
                } else {
                    "every connection waits on the app: closed the new one"
                };
                say(&error, format!("out of file descriptors ({error}); {what}"));
            }
            Err(error) => {
                // Out of memory, or descriptors with no reserve: say so and back off so that the
                // loop does not spin; the connection stays in the kernel queue.
                say(&error, format!("cannot accept a connection: {error}"));
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
            ProxyMode::Http => match task_shared.config.tls.clone() {
                #[cfg(feature = "https")]
                Some(tls) => tls::serve_client(task_shared, stream, peer, id, tls.0).await,
                #[cfg(not(feature = "https"))]
                Some(never) => match never {},
                None => http::serve_client(task_shared, stream, peer, id, false).await,
            },
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
