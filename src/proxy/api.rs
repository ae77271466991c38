//! The proxy's side of its conversation with the supervisor: the settings it runs with
//! ([`ProxyConfig`]), the commands it takes ([`ProxyCommand`], [`BrowserEvent`]), and what it gives
//! back ([`ProxyEvent`], [`ProxyStats`]).
//!
//! Plain data, re-exported by the proxy's `mod.rs`: nothing here runs, so every other file of the
//! proxy may use it, and it uses none of them but `guard` (for [`AllowedHosts`]).

use std::net::SocketAddr;
use std::time::Duration;

use super::guard::AllowedHosts;
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
    /// `--max-requests N` and its jitter `J`: once an upstream has been sent `N` (plus a random
    /// `0..=J` of its own) requests, [`ProxyEvent::Recycle`] says so, once; it keeps being routed
    /// to until the supervisor removes it.
    pub max_requests: Option<(u32, u32)>,
    /// `--proxy https://ADDR`: the TLS server configuration (certificate, ALPN `h2` and
    /// `http/1.1`). `None`: plain TCP (HTTP/1.1, and HTTP/2 with prior knowledge).
    pub tls: Option<TlsConfig>,
    /// `--upstream h2c`: speak HTTP/2 with prior knowledge to the app (gRPC), instead of HTTP/1.1.
    pub upstream_h2c: bool,
    /// The services behind the front door, by index (the `site` of the commands). Empty: one
    /// site, index 0, that every request goes to.
    pub sites: Vec<SiteConfig>,
}

/// One service behind the front door: which requests are its.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    /// Its name: requests for the host `NAME.localhost` are its, whatever their path.
    pub name: String,
    /// Its path prefix (`/api`, `/`); `None`: not routed (a worker; no request reaches it).
    pub route: Option<String>,
    /// The prefix is removed from the path the app sees.
    pub strip_prefix: bool,
    /// Its HTML pages get the browser client's script (its own HMR owns the page otherwise).
    pub browser_reload: bool,
}

/// The front door's TLS configuration, shared; two are equal when they are the same one.
#[cfg(feature = "https")]
#[derive(Debug, Clone)]
pub struct TlsConfig(pub std::sync::Arc<rustls::ServerConfig>);

/// Built without the `https` feature: there is no TLS configuration.
#[cfg(not(feature = "https"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfig {}

#[cfg(feature = "https")]
impl PartialEq for TlsConfig {
    fn eq(&self, other: &TlsConfig) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(feature = "https")]
impl Eq for TlsConfig {}

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
            max_requests: None,
            tls: None,
            upstream_h2c: false,
            sites: Vec::new(),
        }
    }
}

/// What the proxy routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// HTTP reverse proxy (HTTP/1.1, HTTP/2 over TLS or with prior knowledge): each request is
    /// routed on its own, to HTTP/1.1 upstreams.
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
        /// The site (the service, by its index in [`ProxyConfig::sites`]) it serves.
        site: usize,
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
        /// The site.
        site: usize,
        /// Why nothing is ready, for the user ("building", "gen 3 starting").
        reason: String,
    },
    /// Nothing is ready and nothing is starting (the new generation failed and no old one
    /// serves): requests get a `503` with this reason at once instead of waiting for the hold
    /// timeout. Stops routing like [`ProxyCommand::Hold`]; the next `Hold` or `Serve` ends it.
    Down {
        /// The site.
        site: usize,
        /// Why nothing serves ("gen 1 failed: w0 exited with status 1 before it was ready").
        reason: String,
    },
    /// The last build failed: when nothing serves, requests get an error page with this (status
    /// text and output tail; the output may contain ANSI colour codes).
    BuildFailed {
        /// The site.
        site: usize,
        /// The build command as the user wrote it.
        command: String,
        /// How it ended ("exit status: 101").
        status: String,
        /// The tail of its output.
        output: String,
    },
    /// Clear the build failure (a build succeeded).
    BuildOk {
        /// The site.
        site: usize,
    },
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
    /// An upgrade: a newer devserve accepts on the same socket and serves. This proxy stops
    /// accepting (its listener closes), answers requests in flight with `Connection: close`, closes
    /// client connections idle after a request at once and any still idle a second later (a
    /// connection accepted just before has its first request served).
    HandOver,
    /// Stop the proxy: the thread ends, every connection it holds is dropped, and the listener is
    /// closed (pass a `try_clone` of it to [`ProxyHandle::start`](super::ProxyHandle::start) to
    /// keep it open).
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
        /// Pages reload (false: a service whose swaps do not reload pages, `browser-reload =
        /// false`; its overlay still goes).
        reload: bool,
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
/// to [`ProxyHandle::start`](super::ProxyHandle::start); none is sent after
/// [`ProxyCommand::Shutdown`].
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
    /// arrives, before it applies (for the swap line "held 3, retried 1"), with that `Serve`'s
    /// site.
    Counters {
        /// The site of the `Serve`.
        site: usize,
        /// The counters.
        counters: Counters,
    },
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
    /// An upstream of `generation` was sent its `--max-requests` (with its jitter): replace it.
    /// Sent once per upstream.
    Recycle {
        /// The generation.
        generation: u64,
        /// The worker's address.
        upstream: SocketAddr,
        /// How many requests it was sent.
        requests: u64,
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
