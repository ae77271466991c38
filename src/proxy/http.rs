//! The HTTP/1.1 reverse proxy: one task per client connection, one [`Exchange`] per request.
//!
//! Owns the life of a request from the client's head to the upstream's last body frame:
//! - **Parsing** is hyper's, both ways. A malformed request gets hyper's `400` (or a close) and
//!   touches nothing else: routing state changes only through commands.
//! - **Bodies stream.** A request body is buffered only when it is small enough to be resent
//!   (`Content-Length` ≤ the retry limit); anything else, and every response body, is forwarded
//!   frame by frame.
//! - **Connections to upstreams** come from the pool (per generation and upstream, see
//!   [`super::state`]) or are opened; a connection goes back to the pool only after its response
//!   body ended cleanly.
//! - **Retries** follow the rules of the [`crate::proxy`] contract: refused → once more anywhere;
//!   sent and dropped before any response byte → once more only for an idempotent request with a
//!   resendable body.
//!   A pooled connection that turns out closed before the request was written is not a retry: the
//!   request goes on a fresh connection; so does a resendable one that the app closed as it was
//!   written (its keep-alive timeout), without using up the retry.
//! - **Upgrades** (`101`): both sides' upgraded sockets are joined and copied both ways until one
//!   closes or `Close` arrives for the generation.
//! - **The browser side** (with `browser_reload`): a request under `/__devserve/` is answered by
//!   [`super::browser`] at once and never reaches an app; an HTML navigation is asked for
//!   uncompressed, and its HTML answer (the app's or one of devserve's own pages) gets the client's
//!   script tag ([`super::inject`]).
//! - **Before anything else**, [`super::guard`] decides whether the request is answered at all
//!   (allowed hosts, cross-site upgrades and loads): `403` or `400` otherwise, for the app's
//!   routes and devserve's own alike.
//! - **Who is blamed.** A client's body that breaks off or is malformed is the client's error
//!   (`400`), one that stops arriving for [`ProxyConfig::body_timeout`] a `408`; an app that has
//!   not begun its answer within [`ProxyConfig::upstream_timeout`] gets the client a `504`.
//! - **Framing comes from what is forwarded**: a response that came chunked loses any
//!   `Content-Length` the app sent beside it, and a `101` the client did not ask for is a `502`.
//!
//! [`ProxyConfig::body_timeout`]: super::ProxyConfig::body_timeout
//! [`ProxyConfig::upstream_timeout`]: super::ProxyConfig::upstream_timeout

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use super::guard::{self, Verdict};
use super::inject::{self, Page, Plan};
use super::request_body::{BodyTimedOut, ClientBody};
use super::response::{BoxError, ResponseBody, full};
use super::state::{Avoid, Flight, Refusal, Shared};
use super::tracked::Tracked;
use super::upstream::{ConnectError, MAX_BUF_SIZE, UpBody, UpstreamConn};
use super::{browser, headers, pages};

/// A client that has not sent a complete request head within this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pooled connections idle longer than this are not reused for a request that could be resent.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// …and longer than this for one that could not: many servers close idle connections after a few
/// seconds (Node after 5 s), and a request written just as the server closes is lost.
const POOL_IDLE_UNSAFE: Duration = Duration::from_secs(1);

/// How long a pooled connection may take to report ready before it is given up.
const POOL_READY_WAIT: Duration = Duration::from_secs(1);

/// A request with no answer after this long closes the idle pooled connections to its upstream:
/// an app that serves one connection at a time (a plain accept loop, Python's `HTTPServer`, PHP's
/// built-in server) may be blocked reading one of them.
const ONE_AT_A_TIME_NUDGE: Duration = Duration::from_millis(50);

/// How a wait for the upstream's answer ended.
enum Waited {
    Sent(Box<Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<UpBody>>>>),
    Closed,
    TimedOut,
}

/// How many closed-before-written pooled connections one request may run into.
const STALE_LIMIT: u32 = 3;

/// Serves one client connection (`client` in the shared state) until it closes: HTTP/1.1, or
/// HTTP/2 (over TLS by ALPN, or in clear with prior knowledge, h2c). `tls`: it came over TLS
/// (`X-Forwarded-Proto: https`).
pub(crate) async fn serve_client<I>(shared: Arc<Shared>, io: I, peer: SocketAddr, client: u64, tls: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = Arc::clone(&shared);
    let service = service_fn(move |request| handle(Arc::clone(&shared), peer, client, tls, request));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(MAX_BUF_SIZE);
    // hyper's defaults bound streams and resets (rapid reset, CVE-2023-44487) and header lists
    // (CONTINUATION floods); set here so that they stay what they are.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_pending_accept_reset_streams(Some(H2_MAX_PENDING_RESETS))
        .max_header_list_size(H2_MAX_HEADER_LIST);
    // A failed client connection (garbage, a reset) concerns that client only; an HTTP/2 client
    // that devserve sent away for breaking the protocol or its limits (a flood of resets or
    // CONTINUATION frames) is said once per kind a minute.
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), service).await;
    if let Err(error) = &served {
        tracing::debug!("client {peer}: {error} ({error:?})");
    }
    if let Err(error) = served
        && let Some(reason) = sent_away(error.as_ref())
    {
        service_shared.client_problem(
            reason,
            format!(
                "closed an HTTP/2 connection from {peer} ({reason}): it broke the protocol or its limits"
            ),
        );
    }
}

/// The reason of the GOAWAY devserve sent an HTTP/2 client, if that is what ended its connection.
fn sent_away(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>()
            && h2.is_go_away()
            && !h2.is_remote()
            && let Some(reason) = h2.reason()
            && reason != h2::Reason::NO_ERROR
        {
            return Some(match reason {
                h2::Reason::ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
                h2::Reason::PROTOCOL_ERROR => "PROTOCOL_ERROR",
                h2::Reason::FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
                h2::Reason::COMPRESSION_ERROR => "COMPRESSION_ERROR",
                h2::Reason::FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
                _ => "HTTP/2 error",
            });
        }
        source = error.source();
    }
    None
}

/// HTTP/2: streams at once per connection.
const H2_MAX_STREAMS: u32 = 256;
/// HTTP/2: streams reset by the client before they are answered, beyond which the connection is
/// closed (the rapid-reset attack).
const H2_MAX_PENDING_RESETS: usize = 20;
/// HTTP/2: the largest header list, CONTINUATION frames included.
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    client: u64,
    tls: bool,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let checks = !shared.config.allowed_hosts.any;
    let mut response = answer(Arc::clone(&shared), peer, client, tls, request).await;
    if checks && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        guard::add_resource_policy(response.headers_mut());
    }
    // A newer devserve serves (an upgrade): the client's next request goes to it.
    if response.status() != StatusCode::SWITCHING_PROTOCOLS && shared.handing_over() {
        response
            .headers_mut()
            .insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    }
    Ok(response)
}

async fn answer(
    shared: Arc<Shared>,
    peer: SocketAddr,
    client: u64,
    tls: bool,
    mut request: Request<Incoming>,
) -> Response<ResponseBody> {
    let html = pages::wants_html(request.headers());
    let upgrade = headers::is_upgrade_request(request.headers());
    match shared.config.allowed_hosts.check(request.version(), request.uri(), request.headers(), upgrade) {
        Verdict::Pass => {}
        Verdict::BadRequest(reason) => return pages::bad_request(&reason, html),
        Verdict::Refused(refusal) => {
            shared.refused(&refusal, pages::refusal_text(&refusal));
            return pages::forbidden(&refusal, html);
        }
    }
    let browser_reload = shared.config.browser_reload;
    if browser_reload && request.uri().path().starts_with(browser::PREFIX) {
        return browser::answer(&shared.browser, request.method(), request.uri().path());
    }
    let Some(site) = shared.site_for(request.uri(), request.headers()) else {
        let path = request.uri().path().to_owned();
        return pages::no_route(&path, &shared.routes(), html);
    };
    let may_inject = browser_reload
        && site.browser_reload
        && !upgrade
        && inject::candidate(request.method(), request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    headers::prepare_request(&mut parts, peer, upgrade, tls);
    if let Some(prefix) = &site.strip {
        headers::strip_prefix(&mut parts, prefix);
    }
    if may_inject {
        inject::ask_identity(&mut parts.headers);
    }
    let config = &shared.config;
    let body = ClientBody::new(body, config.body_timeout);
    let body_failed = body.failure_flag();
    let payload = match Payload::read(body, upgrade, config.retry_body_limit).await {
        Ok(payload) => payload,
        Err(error) => return client_body_error(&error, html),
    };
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let what = if upgrade { format!("upgrade {target}") } else { format!("{} {target}", parts.method) };
    let exchange = Exchange {
        shared,
        site: site.index,
        epoch: 0,
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        payload,
        html,
        inject: may_inject,
        client_upgrade,
        what,
        client,
        body_failed,
    };
    exchange.run().await
}

/// The client's own body failed: a `408` if it stopped arriving, a `400` otherwise. Not the
/// app's failure, so not counted as one.
fn client_body_error(error: &BoxError, html: bool) -> Response<ResponseBody> {
    if error.is::<BodyTimedOut>() {
        let reason = format!("{error}: the request was not sent to the app");
        let mut response = pages::bad_request(&reason, html);
        *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
        response
            .headers_mut()
            .insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
        return response;
    }
    pages::bad_request(&format!("could not read the request body: {}", chain(error.as_ref())), html)
}

/// The request body as it will be sent upstream.
enum Payload {
    /// Empty or read whole: can be sent again.
    Buffered(Bytes),
    /// Streamed from the client: can be sent once (`None` once taken).
    Streamed(Option<ClientBody>),
}

impl Payload {
    async fn read(mut body: ClientBody, upgrade: bool, limit: usize) -> Result<Payload, BoxError> {
        if body.is_end_stream() {
            return Ok(Payload::Buffered(Bytes::new()));
        }
        let length = body.size_hint().exact().filter(|length| *length <= limit as u64);
        match length {
            Some(length) if !upgrade => {
                // Copied into one buffer of the announced size: the frames hyper hands over each
                // keep the whole read buffer they came in alive, so a body sent a byte per
                // segment would cost kilobytes per byte if they were kept.
                let mut buffer = Vec::with_capacity(usize::try_from(length).unwrap_or(limit));
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        buffer.extend_from_slice(&data);
                    }
                }
                Ok(Payload::Buffered(Bytes::from(buffer)))
            }
            _ => Ok(Payload::Streamed(Some(body))),
        }
    }

    fn resendable(&self) -> bool {
        matches!(self, Payload::Buffered(_))
    }

    fn take(&mut self) -> Option<UpBody> {
        match self {
            Payload::Buffered(bytes) => Some(Either::Left(Full::new(bytes.clone()))),
            Payload::Streamed(body) => body.take().map(Either::Right),
        }
    }

    /// Puts back a body hyper returned unsent.
    fn restore(&mut self, body: UpBody) {
        if let (Payload::Streamed(slot), Either::Right(body)) = (self, body) {
            *slot = Some(body);
        }
    }
}

/// One request on its way to an upstream.
struct Exchange {
    shared: Arc<Shared>,
    /// The site (service) it is routed in.
    site: usize,
    /// The browsers' last reload when it was routed: its page is at least that new.
    epoch: u64,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    payload: Payload,
    html: bool,
    /// The answer may get the browser client's script tag.
    inject: bool,
    client_upgrade: Option<OnUpgrade>,
    /// What the status table calls it (`GET /path`).
    what: String,
    /// The client connection it came on.
    client: u64,
    /// Set when the client's own body failed.
    body_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// How one attempt ended, when it did not produce a response.
enum Attempt {
    /// The upstream cannot have read the request: resend it, whatever it is.
    Unread { upstream: SocketAddr, why: String },
    /// A pooled connection was found closed before the request was written: try a fresh one.
    Stale,
    /// The request was written and the connection failed before any response byte (`pooled`: on
    /// a connection that had been idle in the pool, which the app may have been closing).
    Dropped { upstream: SocketAddr, error: hyper::Error, pooled: bool },
    /// Give up with this response.
    Done(Response<ResponseBody>),
}

impl Exchange {
    async fn run(mut self) -> Response<ResponseBody> {
        let idempotent = is_idempotent(&self.method);
        let mut retried = false;
        let mut avoid: Option<Avoid> = None;
        let mut stale = 0;
        loop {
            let flight = match self.shared.route(self.site, avoid, &self.what, self.client).await {
                Ok(flight) => flight,
                Err(refusal) => return self.refused(refusal),
            };
            // Read as it is routed: no command applies between the two on this thread.
            self.epoch = self.shared.browser.epoch();
            let upstream = flight.upstream;
            let attempt = match self.attempt(flight, stale > 0).await {
                Ok(response) => return response,
                Err(attempt) => attempt,
            };
            let why = match attempt {
                Attempt::Done(response) => return response,
                Attempt::Stale if stale < STALE_LIMIT => {
                    stale += 1;
                    continue;
                }
                Attempt::Stale => format!("{upstream} kept closing connections before the request was sent"),
                Attempt::Unread { .. } if !retried => {
                    retried = true;
                    self.shared.count_retry();
                    avoid = Some(self.shared.avoid(upstream));
                    continue;
                }
                Attempt::Unread { upstream, why } => format!("the app at {upstream} {why}"),
                Attempt::Dropped { .. } if self.body_failed.load(std::sync::atomic::Ordering::Relaxed) => {
                    return self.client_failed();
                }
                Attempt::Dropped { upstream, error, pooled } => {
                    let cause = chain(&error);
                    let resend = if !idempotent {
                        Err(format!("{} is not idempotent", self.method))
                    } else if !self.payload.resendable() {
                        Err("its body was streamed, not kept".to_string())
                    } else if error.is_parse() || error.is_user() {
                        Err("the failure was not a dropped connection".to_string())
                    } else {
                        Ok(())
                    };
                    let not = match resend {
                        // The keep-alive race: the app closed an idle connection as the request
                        // went out. Not its fault: a fresh connection, no avoidance.
                        Ok(()) if pooled && stale < STALE_LIMIT => {
                            stale += 1;
                            self.shared.count_retry();
                            continue;
                        }
                        Ok(()) if !retried => {
                            retried = true;
                            self.shared.count_retry();
                            avoid = Some(self.shared.avoid(upstream));
                            continue;
                        }
                        Ok(()) => "it was already resent once".to_string(),
                        Err(not) => not,
                    };
                    format!(
                        "the app at {upstream} dropped the request before answering ({cause}); not resent: {not}"
                    )
                }
            };
            return self.fail(&why);
        }
    }

    /// One try on the routed upstream.
    async fn attempt(&mut self, flight: Flight, fresh: bool) -> Result<Response<ResponseBody>, Attempt> {
        let upstream = flight.upstream;
        let resendable = is_idempotent(&self.method) && self.payload.resendable();
        let (mut conn, pooled) = match acquire(&flight, fresh, resendable).await {
            Ok(found) => found,
            Err(error) => {
                return Err(Attempt::Unread { upstream, why: format!("refused the connection ({error})") });
            }
        };
        let Some(body) = self.payload.take() else {
            return Err(Attempt::Done(self.fail("the request body was already sent")));
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let closed = flight.closed();
        let patience = self.shared.config.upstream_timeout;
        let timed_out = async move {
            match patience {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let waited = {
            let send = conn.sender().try_send_request(request);
            tokio::pin!(send, closed, timed_out);
            // An app that serves one connection at a time may be blocked reading an idle one the
            // pool keeps for it, while this request waits on another: after a moment without an
            // answer, those idle connections are closed (an idle one carries no request: closing
            // it costs only a later connect).
            let mut every = ONE_AT_A_TIME_NUDGE;
            let nudge = tokio::time::sleep(every);
            tokio::pin!(nudge);
            loop {
                tokio::select! {
                    sent = &mut send => break Waited::Sent(Box::new(sent)),
                    () = &mut closed => break Waited::Closed,
                    () = &mut timed_out => break Waited::TimedOut,
                    () = &mut nudge => {
                        flight.shared().close_idle(flight.generation, upstream);
                        // A connection that turns idle later (a request before this one ends) is
                        // closed at the next nudge; they space out while the wait goes on.
                        every = (every * 2).min(Duration::from_secs(1));
                        nudge.as_mut().reset(tokio::time::Instant::now() + every);
                    }
                }
            }
        };
        let sent = match waited {
            Waited::Sent(sent) => *sent,
            Waited::Closed => {
                conn.close();
                let why = format!("closed by devserve: generation {} was stopped", flight.generation);
                return Err(Attempt::Done(self.fail(&why)));
            }
            Waited::TimedOut => {
                conn.close();
                let after = humantime::format_duration(patience.unwrap_or_default());
                let why = format!(
                    "the app at {upstream} did not begin its answer within {after} (--upstream-timeout); \
                     the request was not resent"
                );
                self.shared.count_failed();
                return Err(Attempt::Done(self.own_page(pages::gateway_timeout(&why, self.html))));
            }
        };
        match sent {
            Ok(response) => {
                if closes_after(&response) {
                    prewarm(&flight);
                }
                Ok(self.respond(response, flight, conn))
            }
            Err(mut error) => {
                conn.close();
                if let Some(unsent) = error.take_message() {
                    self.payload.restore(unsent.into_body());
                    if pooled {
                        return Err(Attempt::Stale);
                    }
                    let why = "closed the connection before the request was sent".to_string();
                    return Err(Attempt::Unread { upstream, why });
                }
                Err(Attempt::Dropped { upstream, error: error.into_error(), pooled })
            }
        }
    }

    fn respond(
        &mut self,
        mut response: Response<Incoming>,
        mut flight: Flight,
        conn: UpstreamConn,
    ) -> Response<ResponseBody> {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client) = self.client_upgrade.take() else {
                conn.close();
                let why = format!(
                    "the app at {} switched protocols (101) on a request that did not ask to",
                    flight.upstream
                );
                return self.fail(&why);
            };
            let upstream = hyper::upgrade::on(&mut response);
            headers::prepare_response(response.headers_mut(), true);
            conn.detach();
            flight.long_lived(&format!("upgraded {}", self.target()));
            tokio::spawn(tunnel(flight, client, upstream));
            return response.map(|_| full(Bytes::new()));
        }
        headers::prepare_response(response.headers_mut(), false);
        if headers::is_event_stream(response.headers()) {
            flight.long_lived(&format!("event stream {}", self.target()));
        }
        let plan = if self.inject { Plan::for_response(response.status(), response.headers()) } else { None };
        let page = self.page(flight.generation);
        let response = response.map(|body| Tracked::new(body, flight, conn).boxed_unsync());
        match plan {
            Some(plan) => inject::apply(response, plan, page.tag()),
            None => response,
        }
    }

    fn refused(&self, refusal: Refusal) -> Response<ResponseBody> {
        self.shared.count_failed();
        let response = match refusal {
            Refusal::NotReady { reason } => pages::not_ready(&reason, self.html),
            Refusal::BuildFailed(failure) => pages::build_failed(&failure, self.html),
            Refusal::ShuttingDown => pages::not_ready("devserve is stopping", self.html),
        };
        self.own_page(response)
    }

    /// The request target, for the status table.
    fn target(&self) -> &str {
        self.uri.path_and_query().map_or("/", |pq| pq.as_str())
    }

    /// The client's own body failed while it was being sent: the client's error, not the app's.
    fn client_failed(&self) -> Response<ResponseBody> {
        let why = "the request body broke off or was malformed while it was sent to the app";
        self.own_page(pages::bad_request(why, self.html))
    }

    fn fail(&self, why: &str) -> Response<ResponseBody> {
        self.shared.count_failed();
        self.own_page(pages::bad_gateway(why, self.html))
    }

    /// What the page is told about the response that carries it.
    fn page(&self, generation: u64) -> Page {
        Page {
            instance: self.shared.browser.instance().to_owned(),
            // With several services a page is as new as the last reload of any of them.
            generation: generation.max(self.epoch),
            method: (self.method != Method::GET).then(|| self.method.clone()),
        }
    }

    /// One of devserve's own pages, with the client (so that it reloads once the app is ready).
    fn own_page(&self, response: Response<ResponseBody>) -> Response<ResponseBody> {
        if self.inject { inject::own_page(response, &self.page(0)) } else { response }
    }
}

/// A ready connection to the flight's upstream: a pooled one idle for not too long (unless
/// `fresh`), else a new one. The flag says whether it came from the pool.
async fn acquire(
    flight: &Flight,
    fresh: bool,
    resendable: bool,
) -> Result<(UpstreamConn, bool), ConnectError> {
    let max_idle = if resendable { POOL_IDLE } else { POOL_IDLE_UNSAFE };
    while !fresh
        && let Some(mut conn) = flight.shared().checkout(flight.generation, flight.upstream, max_idle)
    {
        match tokio::time::timeout(POOL_READY_WAIT, conn.sender().ready()).await {
            Ok(Ok(())) => return Ok((conn, true)),
            _ => conn.close(),
        }
    }
    let h2c = flight.shared().config.upstream_h2c;
    UpstreamConn::open(flight.upstream, h2c).await.map(|conn| (conn, false))
}

/// Whether the upstream will close this connection after its response (`Connection: close`, or
/// HTTP/1.0 without keep-alive): then the next request to it would pay a connect.
fn closes_after<B>(response: &Response<B>) -> bool {
    let connection = response.headers().get(hyper::header::CONNECTION).and_then(|v| v.to_str().ok());
    let says =
        |word: &str| connection.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(word)));
    says("close") || (response.version() == hyper::Version::HTTP_10 && !says("keep-alive"))
}

/// For an upstream that closes every connection after its answer (many dev servers do): opens
/// the next connection to it in the background, into the pool, so the next request skips the
/// connect and the handshake. Only when the pool holds none for it; the connection is pooled only
/// while its upstream is still routed (a drained generation's is closed at once).
fn prewarm(flight: &Flight) {
    let shared = Arc::clone(flight.shared());
    let (generation, upstream) = (flight.generation, flight.upstream);
    if shared.pooled(generation, upstream) > 0 {
        return;
    }
    tokio::spawn(async move {
        if let Ok(conn) = UpstreamConn::open(upstream, shared.config.upstream_h2c).await {
            shared.checkin(generation, upstream, conn);
        }
    });
}

/// Copies bytes between the client's and the upstream's upgraded connections until either side
/// closes or the generation is closed.
async fn tunnel(flight: Flight, client: OnUpgrade, upstream: OnUpgrade) {
    let closed = flight.closed();
    let copy = async move {
        let Ok((client, upstream)) = tokio::try_join!(client, upstream) else {
            return;
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        // Either side closing ends the tunnel; errors are the peers' business.
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    };
    tokio::select! {
        () = copy => {}
        () = closed => {}
    }
    drop(flight);
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// An error and its sources, `: `-separated, for the user.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
