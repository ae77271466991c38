//! The proxy's shared state: the routing table, per-generation in-flight accounting, the pool of
//! idle upstream connections and the counters, behind one mutex.
//!
//! Contract: every change of routing happens in [`Shared::apply`] (one command at a time) and
//! bumps a version that waiting requests watch, so a held request re-evaluates after every
//! command. An exchange with an upstream exists as a [`Flight`] from the moment it is routed until
//! it is dropped; the flight count per generation is what `Drain` waits on. The pool only keeps
//! connections whose (generation, upstream) is currently routed: a command that un-routes one
//! closes its idle connections at once, and a connection coming back from a request to an
//! un-routed upstream is closed instead of pooled. The mutex is never held across an `.await` nor
//! while calling the event callback.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::browser::Hub;
use super::pages::BuildFailure;
use super::upstream::UpstreamConn;
use super::{Counters, EventSink, GenerationStats, ProxyCommand, ProxyConfig, ProxyEvent, ProxyStats};

/// At most this many idle connections are kept per upstream.
const POOL_MAX_IDLE_PER_UPSTREAM: usize = 32;

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

/// Everything behind the mutex.
#[derive(Default)]
struct State {
    serving: Option<Serving>,
    hold_reason: Option<String>,
    build_failed: Option<Arc<BuildFailure>>,
    /// The build failure came after the last `Hold`: answer with it at once instead of holding.
    failure_is_latest: bool,
    /// Round-robin cursor for ties between equally loaded upstreams.
    cursor: usize,
    version: u64,
    generations: HashMap<u64, GenerationTrack>,
    outstanding: HashMap<(u64, SocketAddr), usize>,
    pool: HashMap<(u64, SocketAddr), Vec<Idle>>,
    period: Counters,
    total: Counters,
    held_now: usize,
    shut_down: bool,
}

/// The routing set.
struct Serving {
    generation: u64,
    upstreams: Vec<SocketAddr>,
}

/// One generation's exchanges.
struct GenerationTrack {
    active: usize,
    draining: bool,
    /// Set to `true` by `Close`: every exchange of the generation watches it.
    closed: watch::Sender<bool>,
}

impl GenerationTrack {
    fn new() -> Self {
        GenerationTrack { active: 0, draining: false, closed: watch::Sender::new(false) }
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
    Failed(Arc<BuildFailure>),
    ShutDown,
}

impl Shared {
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
            ProxyCommand::Serve { generation, mut upstreams } => {
                events.push(ProxyEvent::Counters(std::mem::take(&mut state.period)));
                let mut seen = Vec::with_capacity(upstreams.len());
                upstreams.retain(|upstream| {
                    let new = !seen.contains(upstream);
                    seen.push(*upstream);
                    new
                });
                state.serving = Some(Serving { generation, upstreams });
                state.cursor = 0;
                if let Some(track) = state.generations.get_mut(&generation) {
                    track.draining = false;
                }
            }
            ProxyCommand::AddUpstream { generation, upstream } => {
                if let Some(serving) = state.serving.as_mut().filter(|s| s.generation == generation)
                    && !serving.upstreams.contains(&upstream)
                {
                    serving.upstreams.push(upstream);
                }
            }
            ProxyCommand::RemoveUpstream { generation, upstream } => {
                if let Some(serving) = state.serving.as_mut().filter(|s| s.generation == generation) {
                    serving.upstreams.retain(|u| *u != upstream);
                }
            }
            ProxyCommand::Hold { reason } => {
                state.serving = None;
                state.hold_reason = Some(reason);
                state.failure_is_latest = false;
            }
            ProxyCommand::BuildFailed { command, status, output } => {
                state.build_failed = Some(Arc::new(BuildFailure { command, status, output }));
                state.failure_is_latest = true;
            }
            ProxyCommand::BuildOk => {
                state.build_failed = None;
                state.failure_is_latest = false;
            }
            ProxyCommand::Drain { generation } => {
                if state.serving.as_ref().is_some_and(|s| s.generation == generation) {
                    state.serving = None;
                }
                let track = state.generations.entry(generation).or_insert_with(GenerationTrack::new);
                track.draining = true;
                if track.active == 0 {
                    state.generations.remove(&generation);
                    events.push(ProxyEvent::Drained { generation });
                }
            }
            ProxyCommand::Close { generation } => {
                if state.serving.as_ref().is_some_and(|s| s.generation == generation) {
                    state.serving = None;
                }
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
            ProxyCommand::Browser(_) | ProxyCommand::Shutdown => {}
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
    pub(crate) async fn route(self: &Arc<Self>, avoid: Option<Avoid>) -> Result<Flight, Refusal> {
        let mut changes = self.version.subscribe();
        let mut hold: Option<HoldGuard> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            changes.mark_unchanged();
            match self.decide(avoid) {
                Decision::To(upstream, generation) => return Ok(self.begin_flight(generation, upstream)),
                Decision::Failed(failure) => return Err(Refusal::BuildFailed(failure)),
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
                Err(_) => return Err(self.hold_refusal()),
            }
        }
    }

    fn decide(&self, avoid: Option<Avoid>) -> Decision {
        let mut state = self.lock();
        if state.shut_down {
            return Decision::ShutDown;
        }
        let now = Instant::now();
        let avoided = avoid.filter(|a| a.active(state.version, now)).map(|a| a.upstream);
        if let Some(upstream) = state.pick(avoided) {
            let generation = state.serving.as_ref().map_or(0, |s| s.generation);
            return Decision::To(upstream, generation);
        }
        let nothing_serves = state.serving.as_ref().is_none_or(|s| s.upstreams.is_empty());
        match &state.build_failed {
            Some(failure) if state.failure_is_latest && nothing_serves => {
                Decision::Failed(Arc::clone(failure))
            }
            _ => Decision::Wait,
        }
    }

    /// What a request that waited too long gets.
    fn hold_refusal(&self) -> Refusal {
        let state = self.lock();
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

    fn begin_flight(self: &Arc<Self>, generation: u64, upstream: SocketAddr) -> Flight {
        let mut state = self.lock();
        let track = state.generations.entry(generation).or_insert_with(GenerationTrack::new);
        track.active += 1;
        let closed = track.closed.subscribe();
        *state.outstanding.entry((generation, upstream)).or_default() += 1;
        Flight { shared: Arc::clone(self), generation, upstream, closed }
    }

    fn end_flight(&self, generation: u64, upstream: SocketAddr) {
        let mut state = self.lock();
        if let Some(count) = state.outstanding.get_mut(&(generation, upstream)) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.outstanding.remove(&(generation, upstream));
            }
        }
        let mut drained = false;
        if let Some(track) = state.generations.get_mut(&generation) {
            track.active = track.active.saturating_sub(1);
            if track.active == 0 && (track.draining || *track.closed.borrow()) {
                drained = track.draining;
                state.generations.remove(&generation);
            }
        }
        let report = drained && !state.shut_down;
        drop(state);
        if report {
            (self.events)(ProxyEvent::Drained { generation });
        }
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
            serving: state.serving.as_ref().map(|s| s.generation),
            upstreams: state.serving.as_ref().map(|s| s.upstreams.clone()).unwrap_or_default(),
            generations,
            held_now: state.held_now,
            total: state.total,
            browser_streams: self.browser.streams(),
        }
    }

    /// How many idle connections the pool holds to `upstream` of `generation`.
    pub(crate) fn pooled(&self, generation: u64, upstream: SocketAddr) -> usize {
        self.lock().pool.get(&(generation, upstream)).map_or(0, Vec::len)
    }
}

impl State {
    fn routed(&self, generation: u64, upstream: SocketAddr) -> bool {
        self.serving.as_ref().is_some_and(|s| s.generation == generation && s.upstreams.contains(&upstream))
    }

    /// Least outstanding exchanges; ties go round robin from the cursor.
    fn pick(&mut self, avoided: Option<SocketAddr>) -> Option<SocketAddr> {
        let serving = self.serving.as_ref()?;
        let count = serving.upstreams.len();
        let mut best: Option<(usize, usize)> = None;
        for offset in 0..count {
            let index = (self.cursor + offset) % count;
            let upstream = serving.upstreams[index];
            if Some(upstream) == avoided {
                continue;
            }
            let load = self.outstanding.get(&(serving.generation, upstream)).copied().unwrap_or(0);
            if best.is_none_or(|(_, best_load)| load < best_load) {
                best = Some((index, load));
            }
        }
        let (index, _) = best?;
        self.cursor = index + 1;
        Some(serving.upstreams[index])
    }

    /// Closes the idle connections of every upstream that is no longer routed.
    fn prune_pool(&mut self) {
        let stale: Vec<(u64, SocketAddr)> =
            self.pool.keys().copied().filter(|(g, u)| !self.routed(*g, *u)).collect();
        for key in stale {
            for idle in self.pool.remove(&key).unwrap_or_default() {
                idle.conn.close();
            }
        }
    }
}

/// One exchange routed to an upstream: counted in flight for its generation (and outstanding for
/// its upstream) until dropped.
pub(crate) struct Flight {
    shared: Arc<Shared>,
    /// The generation it was routed to.
    pub(crate) generation: u64,
    /// The upstream it was routed to.
    pub(crate) upstream: SocketAddr,
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
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.shared.end_flight(self.generation, self.upstream);
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

    fn state_serving(upstreams: &[u16]) -> State {
        State {
            serving: Some(Serving { generation: 1, upstreams: upstreams.iter().map(|p| addr(*p)).collect() }),
            ..State::default()
        }
    }

    #[test]
    fn ties_go_round_robin() {
        let mut state = state_serving(&[1, 2, 3]);
        let picks: Vec<u16> = (0..6).filter_map(|_| state.pick(None)).map(|a| a.port()).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn least_outstanding_wins() {
        let mut state = state_serving(&[1, 2]);
        state.outstanding.insert((1, addr(1)), 2);
        state.outstanding.insert((1, addr(2)), 1);
        assert_eq!(state.pick(None), Some(addr(2)));
        assert_eq!(state.pick(None), Some(addr(2)));
    }

    #[test]
    fn avoided_upstream_is_skipped_and_alone_gives_nothing() {
        let mut state = state_serving(&[1, 2]);
        assert_eq!(state.pick(Some(addr(1))), Some(addr(2)));
        assert_eq!(state.pick(Some(addr(1))), Some(addr(2)));
        let mut alone = state_serving(&[1]);
        assert_eq!(alone.pick(Some(addr(1))), None);
        assert_eq!(State::default().pick(None), None);
    }
}
