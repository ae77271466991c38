//! The proxy's shared state: the routing table (one [`Site`] per service), per-generation in-flight
//! accounting, the pool of idle upstream connections and the counters, behind one mutex.
//!
//! Contract: every change of routing happens in [`Shared::apply`] (one command at a time) and
//! bumps a version that waiting requests watch, so a held request re-evaluates after every
//! command. An exchange with an upstream exists as a [`Flight`] from the moment it is routed until
//! it is dropped; the flight count per generation is what `Drain` waits on. The pool only keeps
//! connections whose (generation, upstream) is currently routed: a command that un-routes one
//! closes its idle connections at once, and a connection coming back from a request to an
//! un-routed upstream is closed instead of pooled. The mutex is never held across an `.await` nor
//! while calling the event callback.
//!
//! A **long-lived** exchange (an upgraded connection, an event stream, a raw TCP connection) does
//! not hold up `Drain`: a draining generation with nothing else in flight is reported drained, so
//! that it is signalled at once and the app closes those connections its own way (a WebSocket
//! close frame, a gRPC `GOAWAY`); clients reconnect to the new generation. They still count for
//! `Close`, and the generation's record stays until the last one ends.
//!
//! The state also knows every **client connection** (for shedding the oldest one that waits on
//! no app when file descriptors run out), how many are open (to give memory back after a burst),
//! and which refusals were reported lately (one line per host per minute, not per request).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::api::{
    Counters, EventSink, GenerationStats, InFlight, OLDEST_SHOWN, ProxyCommand, ProxyConfig, ProxyEvent,
    ProxyStats,
};
use super::browser::Hub;
use super::guard::Refusal as Refused;
use super::pages::BuildFailure;
use super::upstream::UpstreamConn;

/// The host of a `Host` header value, lowercase, without its port.
fn host_of(value: &str) -> String {
    let value = value.trim();
    let host = match value.rfind(':') {
        Some(colon) if !value[colon..].contains(']') => &value[..colon],
        _ => value,
    };
    host.to_ascii_lowercase()
}

/// At most this many idle connections are kept per upstream.
const POOL_MAX_IDLE_PER_UPSTREAM: usize = 32;

/// The same refusal (check and value) is reported at most once in this period.
const REFUSAL_QUIET: Duration = Duration::from_secs(60);

/// At most this many refusals are remembered for [`REFUSAL_QUIET`]; past it the memory starts
/// afresh (a flood of made-up hosts costs a line each minute, not memory).
const REFUSALS_KEPT: usize = 256;

/// Memory is given back to the system when the open client connections fall to a quarter of
/// their peak, once the peak was at least this many.
const TRIM_AFTER_PEAK: usize = 256;

/// What every proxy task shares.
pub(crate) struct Shared {
    /// The configuration the proxy was started with.
    pub(crate) config: ProxyConfig,
    state: Mutex<State>,
    /// Bumped after every command; held requests wait for it to change.
    version: watch::Sender<u64>,
    events: EventSink,
    /// The browsers' event streams and what they were told.
    pub(crate) browser: Arc<Hub>,
}

/// One site's routing: what its requests go to, or why they wait.
#[derive(Default)]
struct Site {
    serving: Option<Serving>,
    hold_reason: Option<String>,
    /// `Down`: nothing is starting, so a request is refused at once with `hold_reason`.
    down: bool,
    build_failed: Option<Arc<BuildFailure>>,
    /// The build failure came after the last `Hold`: answer with it at once instead of holding.
    failure_is_latest: bool,
    /// Round-robin cursor for ties between equally loaded upstreams.
    cursor: usize,
}

/// Everything behind the mutex.
#[derive(Default)]
struct State {
    /// The routing of each site (a service behind the front door), by its index.
    sites: Vec<Site>,
    version: u64,
    generations: HashMap<u64, GenerationTrack>,
    outstanding: HashMap<(u64, SocketAddr), usize>,
    pool: HashMap<(u64, SocketAddr), Vec<Idle>>,
    period: Counters,
    total: Counters,
    held_now: usize,
    shut_down: bool,
    /// [`ProxyCommand::HandOver`] was applied.
    handing_over: bool,
    /// Exchanges in flight by id (ids grow: the first is the oldest), for the status table.
    flights: BTreeMap<u64, FlightInfo>,
    next_flight: u64,
    /// Open client connections by id (the first is the oldest).
    clients: BTreeMap<u64, Client>,
    next_client: u64,
    /// The most client connections open at once since memory was last given back.
    clients_peak: usize,
    /// Refusals reported lately, and when.
    refusals: HashMap<(&'static str, String), Instant>,
    /// `--max-requests`: requests sent to each upstream, its own limit, and whether it was told.
    served: HashMap<(u64, SocketAddr), Served>,
}

/// One upstream's requests against its `--max-requests`.
#[derive(Debug, Clone, Copy)]
struct Served {
    requests: u64,
    limit: u64,
    told: bool,
}

/// One exchange in flight, as the status table shows it.
struct FlightInfo {
    generation: u64,
    what: String,
    since: Instant,
}

/// One client connection.
#[derive(Default)]
struct Client {
    /// Ends its task (and closes its socket).
    abort: Option<AbortHandle>,
    /// Its exchanges with the app in flight: a client with none waits on no app and may be shed.
    flights: usize,
    /// Exchanges it has finished.
    served: u64,
}

/// The routing set.
struct Serving {
    generation: u64,
    upstreams: Vec<SocketAddr>,
}

/// One generation's exchanges.
struct GenerationTrack {
    active: usize,
    /// How many of `active` are long-lived (upgraded, event streams, raw TCP).
    long_lived: usize,
    draining: bool,
    /// `Drained` was reported (once only nothing long-lived was left).
    drained_sent: bool,
    /// Set to `true` by `Close`: every exchange of the generation watches it.
    closed: watch::Sender<bool>,
}

impl GenerationTrack {
    fn new() -> Self {
        GenerationTrack {
            active: 0,
            long_lived: 0,
            draining: false,
            drained_sent: false,
            closed: watch::Sender::new(false),
        }
    }

    /// Draining, and only long-lived exchanges (or none) left: the generation can be signalled.
    /// True once: the caller reports `Drained`.
    fn settle(&mut self) -> bool {
        if self.draining && !self.drained_sent && self.active == self.long_lived {
            self.drained_sent = true;
            return true;
        }
        false
    }

    /// Nothing left: the record can go.
    fn done(&self) -> bool {
        self.active == 0 && (self.draining || *self.closed.borrow())
    }
}

/// A pooled connection and since when it has been idle.
struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

/// An upstream to stay away from on a retry, as long as the routing has not changed since and
/// `until` has not passed ([`ProxyConfig::avoid_for`](super::ProxyConfig::avoid_for)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avoid {
    upstream: SocketAddr,
    version: u64,
    until: Instant,
}

impl Avoid {
    fn active(&self, version: u64, now: Instant) -> bool {
        self.version == version && now < self.until
    }
}

/// Why a request got no upstream.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The hold timeout passed with nothing ready.
    NotReady {
        /// The hold reason (or a default one).
        reason: String,
    },
    /// The last build failed and nothing serves.
    BuildFailed(Arc<BuildFailure>),
    /// The proxy is stopping.
    ShuttingDown,
}

/// The outcome of one routing attempt.
enum Decision {
    To(SocketAddr, u64),
    Wait,
    /// Nothing is starting: refused at once, with this reason.
    Down(String),
    Failed(Arc<BuildFailure>),
    ShutDown,
}

/// The site a request is for, and how its path reaches the app.
pub(crate) struct SiteChoice {
    /// The site's index.
    pub(crate) index: usize,
    /// The prefix to remove from the path (`strip-prefix`).
    pub(crate) strip: Option<String>,
    /// Its HTML pages get the browser client's script.
    pub(crate) browser_reload: bool,
}

impl Shared {
    /// The site for a request: every request is site 0's when there are no sites; else the
    /// service named by a `NAME.localhost` host, else the longest route that is a prefix of the
    /// path (whole segments: `/api` takes `/api` and `/api/x`, not `/apix`). `None`: no route.
    pub(crate) fn site_for(&self, uri: &hyper::Uri, headers: &hyper::HeaderMap) -> Option<SiteChoice> {
        let sites = &self.config.sites;
        if sites.is_empty() {
            return Some(SiteChoice { index: 0, strip: None, browser_reload: true });
        }
        let host = uri
            .host()
            .map(str::to_owned)
            .or_else(|| headers.get(hyper::header::HOST).and_then(|h| h.to_str().ok()).map(host_of));
        let label = host.as_deref().and_then(|h| h.trim_end_matches('.').strip_suffix(".localhost"));
        if let Some(label) = label
            && let Some(index) =
                sites.iter().position(|s| s.route.is_some() && s.name.eq_ignore_ascii_case(label))
        {
            return Some(SiteChoice { index, strip: None, browser_reload: sites[index].browser_reload });
        }
        let path = uri.path();
        let matches = |route: &str| {
            route == "/"
                || path == route
                || path.strip_prefix(route).is_some_and(|rest| rest.starts_with('/'))
        };
        let (index, site) = sites
            .iter()
            .enumerate()
            .filter(|(_, site)| site.route.as_deref().is_some_and(matches))
            .max_by_key(|(_, site)| site.route.as_deref().map_or(0, str::len))?;
        let route = site.route.clone().unwrap_or_default();
        let strip = (site.strip_prefix && route != "/").then_some(route);
        Some(SiteChoice { index, strip, browser_reload: site.browser_reload })
    }

    /// The routes, for a `404` that lists them: `/api (api)`.
    pub(crate) fn routes(&self) -> Vec<String> {
        let mut routes: Vec<String> = self
            .config
            .sites
            .iter()
            .filter_map(|site| site.route.as_ref().map(|route| format!("{route} ({})", site.name)))
            .collect();
        routes.sort();
        routes
    }

    /// A fresh state: nothing serves, requests are held.
    pub(crate) fn new(config: ProxyConfig, events: EventSink) -> Self {
        Shared {
            config,
            state: Mutex::new(State::default()),
            version: watch::Sender::new(0),
            events,
            browser: Arc::new(Hub::new()),
        }
    }

    /// The state; a panic elsewhere while holding the lock leaves consistent-enough counters.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, events: Vec<ProxyEvent>) {
        for event in events {
            (self.events)(event);
        }
    }

    /// Reports a problem to the user (unless the proxy is stopping).
    pub(crate) fn problem(&self, message: String) {
        if !self.lock().shut_down {
            (self.events)(ProxyEvent::Problem(message));
        }
    }

    /// Stops sending events and wakes every held request (they are dropped with the runtime).
    pub(crate) fn shut_down(&self) {
        let mut state = self.lock();
        state.shut_down = true;
        for idle in state.pool.drain().flat_map(|(_, idle)| idle) {
            idle.conn.close();
        }
        drop(state);
        self.version.send_modify(|version| *version += 1);
    }

    /// Applies one command (not `Shutdown`, which the run loop handles).
    pub(crate) fn apply(&self, command: ProxyCommand) {
        if let ProxyCommand::Browser(event) = command {
            // Commands apply in order on this thread: a `Ready` reaches browsers after its
            // `Serve` took effect, so the reload it causes goes to the new generation.
            if self.config.browser_reload {
                self.browser.publish(event);
            }
            return;
        }
        let mut state = self.lock();
        let mut events = Vec::new();
        match command {
            ProxyCommand::Serve { site, generation, mut upstreams } => {
                events.push(ProxyEvent::Counters { site, counters: std::mem::take(&mut state.period) });
                let mut seen = Vec::with_capacity(upstreams.len());
                upstreams.retain(|upstream| {
                    let new = !seen.contains(upstream);
                    seen.push(*upstream);
                    new
                });
                let routing = state.site_mut(site);
                routing.serving = Some(Serving { generation, upstreams });
                routing.cursor = 0;
                routing.down = false;
                if let Some(track) = state.generations.get_mut(&generation) {
                    track.draining = false;
                    track.drained_sent = false;
                }
            }
            ProxyCommand::AddUpstream { generation, upstream } => {
                if let Some(serving) = state.serving_mut(generation)
                    && !serving.upstreams.contains(&upstream)
                {
                    serving.upstreams.push(upstream);
                }
            }
            ProxyCommand::RemoveUpstream { generation, upstream } => {
                if let Some(serving) = state.serving_mut(generation) {
                    serving.upstreams.retain(|u| *u != upstream);
                }
            }
            ProxyCommand::Hold { site, reason } => {
                let routing = state.site_mut(site);
                routing.serving = None;
                routing.hold_reason = Some(reason);
                routing.failure_is_latest = false;
                routing.down = false;
            }
            ProxyCommand::Down { site, reason } => {
                let routing = state.site_mut(site);
                routing.serving = None;
                routing.hold_reason = Some(reason);
                routing.failure_is_latest = false;
                routing.down = true;
            }
            ProxyCommand::BuildFailed { site, command, status, output } => {
                let routing = state.site_mut(site);
                routing.build_failed = Some(Arc::new(BuildFailure { command, status, output }));
                routing.failure_is_latest = true;
            }
            ProxyCommand::BuildOk { site } => {
                let routing = state.site_mut(site);
                routing.build_failed = None;
                routing.failure_is_latest = false;
            }
            ProxyCommand::Drain { generation } => {
                state.unroute(generation);
                let track = state.generations.entry(generation).or_insert_with(GenerationTrack::new);
                track.draining = true;
                if track.settle() {
                    events.push(ProxyEvent::Drained { generation });
                }
                if track.done() {
                    state.generations.remove(&generation);
                }
            }
            ProxyCommand::Close { generation } => {
                state.unroute(generation);
                let connections = match state.generations.get(&generation) {
                    Some(track) => {
                        track.closed.send_replace(true);
                        track.active
                    }
                    None => 0,
                };
                if connections == 0 {
                    state.generations.remove(&generation);
                }
                events.push(ProxyEvent::Closed { generation, connections });
            }
            // Handled above, and by the run loop; harmless here.
            ProxyCommand::Browser(_) | ProxyCommand::Shutdown | ProxyCommand::HandOver => {}
        }
        state.prune_pool();
        state.version += 1;
        let version = state.version;
        if state.shut_down {
            events.clear();
        }
        drop(state);
        self.version.send_replace(version);
        self.emit(events);
    }

    /// Routes a new exchange: to the least loaded upstream of the serving set, after waiting (up to
    /// the hold timeout) if nothing serves. `avoid` keeps a retry away from the upstream that just
    /// failed, until the routing changes or the avoidance lapses.
    /// `what` names the exchange in the status table; `client` is the connection it came on.
    pub(crate) async fn route(
        self: &Arc<Self>,
        site: usize,
        avoid: Option<Avoid>,
        what: &str,
        client: u64,
    ) -> Result<Flight, Refusal> {
        let mut changes = self.version.subscribe();
        let mut hold: Option<HoldGuard> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            changes.mark_unchanged();
            match self.decide(site, avoid) {
                Decision::To(upstream, generation) => {
                    return Ok(self.begin_flight(generation, upstream, what, client));
                }
                Decision::Failed(failure) => return Err(Refusal::BuildFailed(failure)),
                Decision::Down(reason) => return Err(Refusal::NotReady { reason }),
                Decision::ShutDown => return Err(Refusal::ShuttingDown),
                Decision::Wait => {}
            }
            if hold.is_none() {
                hold = Some(self.begin_hold());
            }
            let hold_until = *deadline.get_or_insert_with(|| Instant::now() + self.config.hold_timeout);
            // A lapsing avoidance is a change too: the avoided upstream may be the only one.
            let lapse = avoid.map(|a| a.until).filter(|until| Instant::now() < *until);
            let until = lapse.map_or(hold_until, |lapse| lapse.min(hold_until));
            match tokio::time::timeout_at(until, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Refusal::ShuttingDown),
                Err(_) if until < hold_until => {}
                Err(_) => return Err(self.hold_refusal(site)),
            }
        }
    }

    fn decide(&self, site: usize, avoid: Option<Avoid>) -> Decision {
        let mut state = self.lock();
        if state.shut_down {
            return Decision::ShutDown;
        }
        let now = Instant::now();
        let avoided = avoid.filter(|a| a.active(state.version, now)).map(|a| a.upstream);
        // The site exists from here on (empty if the supervisor never named it).
        state.site_mut(site);
        let State { sites, outstanding, .. } = &mut *state;
        let routing = &mut sites[site];
        if let Some(upstream) = routing.pick(avoided, outstanding) {
            let generation = routing.serving.as_ref().map_or(0, |s| s.generation);
            return Decision::To(upstream, generation);
        }
        let nothing_serves = routing.serving.as_ref().is_none_or(|s| s.upstreams.is_empty());
        match &routing.build_failed {
            Some(failure) if routing.failure_is_latest && nothing_serves => {
                Decision::Failed(Arc::clone(failure))
            }
            _ if routing.down && nothing_serves => {
                Decision::Down(routing.hold_reason.clone().unwrap_or_else(|| "nothing is starting".into()))
            }
            _ => Decision::Wait,
        }
    }

    /// What a request that waited too long gets.
    fn hold_refusal(&self, site: usize) -> Refusal {
        let mut state = self.lock();
        let state = state.site_mut(site);
        if let Some(failure) = &state.build_failed {
            return Refusal::BuildFailed(Arc::clone(failure));
        }
        let reason = match (&state.hold_reason, &state.serving) {
            (Some(reason), None) => reason.clone(),
            (_, Some(serving)) if !serving.upstreams.is_empty() => {
                "the app's workers kept dropping the connection".to_string()
            }
            (_, Some(serving)) => format!("generation {} has no ready worker", serving.generation),
            (None, None) => "no generation of the app is ready yet".to_string(),
        };
        Refusal::NotReady { reason: format!("{reason} (waited {:?})", self.config.hold_timeout) }
    }

    fn begin_flight(
        self: &Arc<Self>,
        generation: u64,
        upstream: SocketAddr,
        what: &str,
        client: u64,
    ) -> Flight {
        let mut state = self.lock();
        let track = state.generations.entry(generation).or_insert_with(GenerationTrack::new);
        track.active += 1;
        let closed = track.closed.subscribe();
        *state.outstanding.entry((generation, upstream)).or_default() += 1;
        let id = state.next_flight;
        state.next_flight += 1;
        state.flights.insert(id, FlightInfo { generation, what: label(what), since: Instant::now() });
        if let Some(slot) = state.clients.get_mut(&client) {
            slot.flights += 1;
        }
        let recycle = self.config.max_requests.and_then(|(limit, jitter)| {
            let served = state.served.entry((generation, upstream)).or_insert_with(|| Served {
                requests: 0,
                limit: u64::from(limit) + jitter_of(jitter),
                told: false,
            });
            served.requests += 1;
            let due = !served.told && served.requests >= served.limit;
            served.told |= due;
            due.then_some(ProxyEvent::Recycle { generation, upstream, requests: served.requests })
        });
        self.send_after(state, recycle);
        Flight { shared: Arc::clone(self), id, generation, upstream, client, long_lived: false, closed }
    }

    fn end_flight(&self, flight: &Flight) {
        let (generation, upstream) = (flight.generation, flight.upstream);
        let mut state = self.lock();
        if let Some(count) = state.outstanding.get_mut(&(generation, upstream)) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.outstanding.remove(&(generation, upstream));
            }
        }
        state.flights.remove(&flight.id);
        if let Some(slot) = state.clients.get_mut(&flight.client) {
            slot.flights = slot.flights.saturating_sub(1);
            slot.served += 1;
        }
        let mut drained = false;
        if let Some(track) = state.generations.get_mut(&generation) {
            track.active = track.active.saturating_sub(1);
            if flight.long_lived {
                track.long_lived = track.long_lived.saturating_sub(1);
            }
            drained = track.settle();
            if track.done() {
                state.generations.remove(&generation);
            }
        }
        self.send_after(state, drained.then_some(ProxyEvent::Drained { generation }));
    }

    /// Releases the lock, then sends `event` (unless the proxy is stopping): the event callback
    /// never runs under the lock.
    fn send_after(&self, state: MutexGuard<'_, State>, event: Option<ProxyEvent>) {
        let shut_down = state.shut_down;
        drop(state);
        if let Some(event) = event
            && !shut_down
        {
            (self.events)(event);
        }
    }

    /// `flight` turned out long-lived: it no longer holds up its generation's drain.
    fn mark_long_lived(&self, flight: &Flight, what: &str) {
        let generation = flight.generation;
        let mut state = self.lock();
        if let Some(info) = state.flights.get_mut(&flight.id) {
            info.what = label(what);
        }
        let mut drained = false;
        if let Some(track) = state.generations.get_mut(&generation) {
            track.long_lived += 1;
            drained = track.settle();
        }
        self.send_after(state, drained.then_some(ProxyEvent::Drained { generation }));
    }

    /// A new client connection: its id (ids grow, so the smallest is the oldest).
    pub(crate) fn client_opened(&self) -> u64 {
        let mut state = self.lock();
        let id = state.next_client;
        state.next_client += 1;
        state.clients.insert(id, Client::default());
        state.clients_peak = state.clients_peak.max(state.clients.len());
        id
    }

    /// The task serving client `id` (so that it can be shed).
    pub(crate) fn client_task(&self, id: u64, abort: AbortHandle) {
        if let Some(client) = self.lock().clients.get_mut(&id) {
            client.abort = Some(abort);
        }
    }

    /// Client `id` is gone. When a burst of connections has ended (a quarter of the peak left),
    /// the allocator gives the memory they used back to the system.
    pub(crate) fn client_closed(&self, id: u64) {
        let mut state = self.lock();
        state.clients.remove(&id);
        let trim = state.clients_peak >= TRIM_AFTER_PEAK && state.clients.len() <= state.clients_peak / 4;
        if trim {
            state.clients_peak = state.clients.len();
        }
        drop(state);
        if trim {
            give_memory_back();
        }
    }

    /// [`ProxyCommand::HandOver`]: from now on responses close their connection; client
    /// connections idle after an exchange are closed, and with `all` every idle one.
    pub(crate) fn hand_over(&self, all: bool) {
        let mut state = self.lock();
        state.handing_over = true;
        let idle: Vec<u64> = state
            .clients
            .iter()
            .filter(|(_, c)| c.flights == 0 && (all || c.served > 0))
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(abort) = state.clients.remove(&id).and_then(|c| c.abort) {
                abort.abort();
            }
        }
    }

    /// A newer devserve serves: every response closes its connection.
    pub(crate) fn handing_over(&self) -> bool {
        self.lock().handing_over
    }

    /// Out of file descriptors: ends the oldest client connection that waits on no app (idle
    /// between requests, or still sending its request). False if every one waits on the app.
    pub(crate) fn shed_oldest_idle(&self) -> bool {
        let mut state = self.lock();
        let oldest =
            state.clients.iter().find(|(_, c)| c.flights == 0 && c.abort.is_some()).map(|(id, _)| *id);
        let Some(id) = oldest else { return false };
        if let Some(abort) = state.clients.remove(&id).and_then(|c| c.abort) {
            abort.abort();
        }
        true
    }

    /// A client failed at the connection level (`kind`: a TLS `handshake`, `plain-http` on the
    /// TLS port, an HTTP/2 `ENHANCE_YOUR_CALM`, …): one line per kind a minute.
    pub(crate) fn client_problem(&self, kind: &'static str, text: String) {
        let now = Instant::now();
        let mut state = self.lock();
        let key = ("client", kind.to_owned());
        if state.shut_down
            || state.refusals.get(&key).is_some_and(|at| now.duration_since(*at) < REFUSAL_QUIET)
        {
            return;
        }
        state.refusals.insert(key, now);
        drop(state);
        (self.events)(ProxyEvent::Problem(text));
    }

    /// Reports a refused request, unless the same check refused the same value less than
    /// [`REFUSAL_QUIET`] ago.
    pub(crate) fn refused(&self, refused: &Refused, text: String) {
        let key = (refused.check.as_str(), refused.value.clone());
        let now = Instant::now();
        let mut state = self.lock();
        if state.shut_down
            || state.refusals.get(&key).is_some_and(|at| now.duration_since(*at) < REFUSAL_QUIET)
        {
            return;
        }
        if state.refusals.len() >= REFUSALS_KEPT {
            state.refusals.clear();
        }
        state.refusals.insert(key, now);
        drop(state);
        (self.events)(ProxyEvent::Refused {
            check: refused.check.as_str(),
            value: refused.value.clone(),
            text,
        });
    }

    fn begin_hold(self: &Arc<Self>) -> HoldGuard {
        let mut state = self.lock();
        state.held_now += 1;
        state.period.held += 1;
        state.total.held += 1;
        HoldGuard { shared: Arc::clone(self) }
    }

    /// Counts a request sent again to another upstream.
    pub(crate) fn count_retry(&self) {
        let mut state = self.lock();
        state.period.retried += 1;
        state.total.retried += 1;
    }

    /// Counts a request the proxy answered with an error of its own.
    pub(crate) fn count_failed(&self) {
        let mut state = self.lock();
        state.period.failed += 1;
        state.total.failed += 1;
    }

    /// Keeps a retry away from `upstream` while the routing stays as it is now, for at most
    /// [`ProxyConfig::avoid_for`](super::ProxyConfig::avoid_for).
    pub(crate) fn avoid(&self, upstream: SocketAddr) -> Avoid {
        let version = self.lock().version;
        Avoid { upstream, version, until: Instant::now() + self.config.avoid_for }
    }

    /// An idle pooled connection to `upstream` of `generation` that has been idle at most
    /// `max_idle`, if there is one. Older or closed ones found on the way are closed.
    pub(crate) fn checkout(
        &self,
        generation: u64,
        upstream: SocketAddr,
        max_idle: Duration,
    ) -> Option<UpstreamConn> {
        let mut state = self.lock();
        let idle = state.pool.get_mut(&(generation, upstream))?;
        let now = Instant::now();
        let mut found = None;
        while let Some(candidate) = idle.pop() {
            if candidate.conn.is_closed() || now.duration_since(candidate.since) > max_idle {
                candidate.conn.close();
            } else {
                found = Some(candidate.conn);
                break;
            }
        }
        if idle.is_empty() {
            state.pool.remove(&(generation, upstream));
        }
        found
    }

    /// Gives back a connection whose exchange finished: pooled if its upstream is still routed,
    /// closed otherwise.
    pub(crate) fn checkin(&self, generation: u64, upstream: SocketAddr, conn: UpstreamConn) {
        let mut state = self.lock();
        if state.shut_down || !state.routed(generation, upstream) || conn.is_closed() {
            drop(state);
            conn.close();
            return;
        }
        let idle = state.pool.entry((generation, upstream)).or_default();
        if idle.len() >= POOL_MAX_IDLE_PER_UPSTREAM {
            conn.close();
        } else {
            idle.push(Idle { conn, since: Instant::now() });
        }
    }

    /// A snapshot for the status table.
    pub(crate) fn stats(&self) -> ProxyStats {
        let state = self.lock();
        let mut generations: Vec<GenerationStats> = state
            .generations
            .iter()
            .map(|(generation, track)| GenerationStats {
                generation: *generation,
                in_flight: track.active,
                draining: track.draining,
            })
            .collect();
        generations.sort_by_key(|g| g.generation);
        ProxyStats {
            serving: state.sites.iter().find_map(|site| site.serving.as_ref()).map(|s| s.generation),
            generations,
            held_now: state.held_now,
            total: state.total,
            browser_streams: self.browser.streams(),
            oldest: state
                .flights
                .values()
                .take(OLDEST_SHOWN)
                .map(|f| InFlight { generation: f.generation, what: f.what.clone(), age: f.since.elapsed() })
                .collect(),
        }
    }

    /// Closes the idle pooled connections to `upstream` of `generation`.
    pub(crate) fn close_idle(&self, generation: u64, upstream: SocketAddr) {
        let idle = self.lock().pool.remove(&(generation, upstream)).unwrap_or_default();
        for idle in idle {
            idle.conn.close();
        }
    }

    /// How many idle connections the pool holds to `upstream` of `generation`.
    pub(crate) fn pooled(&self, generation: u64, upstream: SocketAddr) -> usize {
        self.lock().pool.get(&(generation, upstream)).map_or(0, Vec::len)
    }
}

impl State {
    /// Site `index`'s routing (a site the supervisor never named is empty: its requests wait).
    fn site_mut(&mut self, index: usize) -> &mut Site {
        if self.sites.len() <= index {
            self.sites.resize_with(index + 1, Site::default);
        }
        &mut self.sites[index]
    }

    /// The routing set `generation` serves in, whichever site it is.
    fn serving_mut(&mut self, generation: u64) -> Option<&mut Serving> {
        self.sites.iter_mut().filter_map(|site| site.serving.as_mut()).find(|s| s.generation == generation)
    }

    /// `generation` gets no new request, whichever site it served.
    fn unroute(&mut self, generation: u64) {
        for site in &mut self.sites {
            if site.serving.as_ref().is_some_and(|s| s.generation == generation) {
                site.serving = None;
            }
        }
    }

    fn routed(&self, generation: u64, upstream: SocketAddr) -> bool {
        self.sites
            .iter()
            .filter_map(|site| site.serving.as_ref())
            .any(|s| s.generation == generation && s.upstreams.contains(&upstream))
    }

    /// Closes the idle connections of every upstream that is no longer routed (and forgets its
    /// request count).
    fn prune_pool(&mut self) {
        let gone: Vec<(u64, SocketAddr)> =
            self.served.keys().copied().filter(|(g, u)| !self.routed(*g, *u)).collect();
        for key in gone {
            self.served.remove(&key);
        }
        let stale: Vec<(u64, SocketAddr)> =
            self.pool.keys().copied().filter(|(g, u)| !self.routed(*g, *u)).collect();
        for key in stale {
            for idle in self.pool.remove(&key).unwrap_or_default() {
                idle.conn.close();
            }
        }
    }
}

impl Site {
    /// Least outstanding exchanges; ties go round robin from the cursor.
    fn pick(
        &mut self,
        avoided: Option<SocketAddr>,
        outstanding: &HashMap<(u64, SocketAddr), usize>,
    ) -> Option<SocketAddr> {
        let serving = self.serving.as_ref()?;
        let count = serving.upstreams.len();
        let mut best: Option<(usize, usize)> = None;
        for offset in 0..count {
            let index = (self.cursor + offset) % count;
            let upstream = serving.upstreams[index];
            if Some(upstream) == avoided {
                continue;
            }
            let load = outstanding.get(&(serving.generation, upstream)).copied().unwrap_or(0);
            if best.is_none_or(|(_, best_load)| load < best_load) {
                best = Some((index, load));
            }
        }
        let (index, _) = best?;
        self.cursor = index + 1;
        Some(serving.upstreams[index])
    }
}

/// One exchange routed to an upstream: counted in flight for its generation (and outstanding for
/// its upstream) until dropped.
pub(crate) struct Flight {
    shared: Arc<Shared>,
    id: u64,
    /// The generation it was routed to.
    pub(crate) generation: u64,
    /// The upstream it was routed to.
    pub(crate) upstream: SocketAddr,
    client: u64,
    long_lived: bool,
    closed: watch::Receiver<bool>,
}

impl Flight {
    /// Resolves when `Close` is sent for this flight's generation (never otherwise).
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.clone();
        async move {
            let signalled = closed.wait_for(|closed| *closed).await.is_ok();
            if !signalled {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The shared state, to give a connection back.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// This exchange lasts as long as a peer keeps it open (an upgraded connection, an event
    /// stream, raw TCP), now shown as `what`: it no longer holds up a drain.
    pub(crate) fn long_lived(&mut self, what: &str) {
        if !self.long_lived {
            self.long_lived = true;
            self.shared.mark_long_lived(self, what);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.shared.end_flight(self);
    }
}

/// What the status table calls an exchange: at most 120 characters, no control characters.
fn label(what: &str) -> String {
    what.chars().filter(|c| !c.is_control()).take(120).collect()
}

/// A random number in `0..=jitter` (`--max-requests-jitter`), from the standard library's
/// randomly keyed hasher: no crate for a number nothing depends on.
fn jitter_of(jitter: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if jitter == 0 {
        return 0;
    }
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    random % (u64::from(jitter) + 1)
}

/// Gives the allocator's free memory back to the system (glibc keeps freed memory in its arenas
/// for reuse: after a burst of thousands of connections that is tens of MB of RSS).
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas; it takes no
    // pointer and is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A request waiting for a ready upstream: counted in `held_now` until dropped.
struct HoldGuard {
    shared: Arc<Shared>,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.held_now = state.held_now.saturating_sub(1);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn state_serving(upstreams: &[u16]) -> Site {
        Site {
            serving: Some(Serving { generation: 1, upstreams: upstreams.iter().map(|p| addr(*p)).collect() }),
            ..Site::default()
        }
    }

    #[test]
    fn ties_go_round_robin() {
        let mut state = state_serving(&[1, 2, 3]);
        let none = HashMap::new();
        let picks: Vec<u16> = (0..6).filter_map(|_| state.pick(None, &none)).map(|a| a.port()).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn least_outstanding_wins() {
        let mut state = state_serving(&[1, 2]);
        let outstanding = HashMap::from([((1, addr(1)), 2), ((1, addr(2)), 1)]);
        assert_eq!(state.pick(None, &outstanding), Some(addr(2)));
        assert_eq!(state.pick(None, &outstanding), Some(addr(2)));
    }

    #[test]
    fn avoided_upstream_is_skipped_and_alone_gives_nothing() {
        let mut state = state_serving(&[1, 2]);
        let none = HashMap::new();
        assert_eq!(state.pick(Some(addr(1)), &none), Some(addr(2)));
        assert_eq!(state.pick(Some(addr(1)), &none), Some(addr(2)));
        let mut alone = state_serving(&[1]);
        assert_eq!(alone.pick(Some(addr(1)), &none), None);
        assert_eq!(Site::default().pick(None, &none), None);
    }
}
