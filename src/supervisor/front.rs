//! The front door (`--proxy`), as the supervisor drives it: what the proxy routes to, when it
//! holds, and how an old generation drains through it before it is signalled.
//!
//! The proxy itself ([`crate::proxy`]) runs on its own thread and only obeys [`ProxyCommand`]s
//! and answers with events; every decision is here:
//! - a generation is routed to ([`Supervisor::route`]) when it is promoted, so a starting
//!   generation never sees a request; its workers' ports come and go as they restart or scale;
//! - while nothing serves, the proxy holds requests, with the reason a 503 would give;
//! - a routed generation that retires is first drained (no new request, idle upstream
//!   connections closed, in-flight requests finished), and signalled only once the proxy says it
//!   is drained, or at `--stop-timeout`, when its long-lived connections are closed.

use std::time::Instant;

use nix::unistd::Pid;

use super::Supervisor;
use crate::event::FrontEvent;
use crate::generation::Upstream;
use crate::output::Report;
use crate::procs::Owner;
use crate::procs::Procs;
use crate::proxy::{ProxyCommand, ProxyHandle, ProxyStats};

/// What the supervisor needs of the proxy: a seam, so that the policy can be tested with a fake.
pub(crate) trait FrontDoor {
    fn send(&self, command: ProxyCommand);
    fn stats(&self) -> ProxyStats;
}

/// The front door's part of the supervisor's state: the proxy, where it listens, what it routes
/// to and what it still drains. Only this file's methods change it.
#[derive(Default)]
pub(super) struct Front {
    /// The proxy (`--proxy`), if there is a front door.
    pub(super) door: Option<Box<dyn FrontDoor>>,
    /// The address it listens on, as bound.
    pub(super) address: Option<String>,
    /// Its listening socket, held open for devserve's whole life.
    pub(super) socket: Option<crate::sockets::NamedSocket>,
    /// The generation it routes to, for each service (by index) it routes to.
    pub(super) routed: std::collections::BTreeMap<usize, u64>,
    /// Generations asked to drain whose `Drained` has not come yet.
    pub(super) drained_pending: std::collections::BTreeSet<u64>,
    /// `--max-requests`: replacements starting, each for the worker it replaces.
    pub(super) recycling: Vec<Recycling>,
    /// `--proxy https://`: the front door speaks TLS.
    pub(super) tls: bool,
}

/// A replacement worker starting for one that was sent its `--max-requests`.
#[derive(Debug)]
pub(super) struct Recycling {
    /// The replacement.
    pub(super) new: Pid,
    /// The worker it replaces.
    pub(super) old: Pid,
    /// How many requests the old one was sent.
    pub(super) requests: u64,
}

impl FrontDoor for ProxyHandle {
    fn send(&self, command: ProxyCommand) {
        ProxyHandle::send(self, command);
    }

    fn stats(&self) -> ProxyStats {
        ProxyHandle::stats(self)
    }
}

impl<P: Procs> Supervisor<P> {
    /// Whether requests reach service `s` through the front door.
    pub(super) fn fronted(&self, s: usize) -> bool {
        self.front.door.is_some() && self.services[s].routed
    }

    /// Whether generations overlap behind the front door (each worker on its own port).
    pub(super) fn behind_front(&self, s: usize) -> bool {
        self.fronted(s) && self.services[s].launch.upstream == Upstream::PerWorker
    }

    fn tell(&self, command: ProxyCommand) {
        if let Some(front) = &self.front.door {
            front.send(command);
        }
    }

    /// The serving generation (just promoted, or its set of ready workers changed) is what new
    /// requests go to.
    pub(super) fn route(&mut self, s: usize) {
        let Some(serving) = &self.services[s].serving else { return };
        let (generation, upstreams) = (serving.id, serving.ready_upstreams());
        // The generation routed to until now gets no new request: it drains when it retires.
        if let Some(previous) = self.front.routed.insert(s, generation)
            && previous != generation
        {
            self.front.drained_pending.insert(previous);
        }
        self.tell(ProxyCommand::Serve { site: s, generation, upstreams });
    }

    /// A worker of `generation` became ready on `port`: the serving generation gains an upstream.
    pub(super) fn upstream_added(&mut self, generation: u64, port: Option<u16>) {
        if self.front.routed.values().any(|g| *g == generation)
            && let Some(port) = port
        {
            let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            self.tell(ProxyCommand::AddUpstream { generation, upstream });
        }
    }

    /// A worker of `generation` on `port` stops or exited: no more requests for it, unless
    /// another ready worker serves the same port (`--app-port` with several workers: they share
    /// it, and the port stays routed while one of them is left).
    pub(super) fn upstream_removed(&mut self, generation: u64, port: Option<u16>, leaving: Pid) {
        if self.front.routed.values().any(|g| *g == generation)
            && let Some(port) = port
        {
            let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let shared = self
                .services
                .iter()
                .filter_map(|service| service.serving.as_ref())
                .find(|g| g.id == generation)
                .is_some_and(|g| g.port_served_by_another(port, leaving));
            if !shared {
                self.tell(ProxyCommand::RemoveUpstream { generation, upstream });
            }
        }
    }

    /// Nothing serves service `s`: its requests wait, and a 503 after `--hold-timeout` says
    /// `reason` (after the service's name when there are several).
    pub(super) fn hold(&mut self, s: usize, reason: String) {
        if self.fronted(s) && self.services[s].serving.is_none() {
            self.front.routed.remove(&s);
            let reason = self.named(s, &reason);
            self.tell(ProxyCommand::Hold { site: s, reason });
        }
    }

    /// Nothing serves and nothing is starting: requests get a 503 saying `reason` at once.
    pub(super) fn down(&mut self, s: usize, reason: String) {
        if self.fronted(s) && self.services[s].serving.is_none() {
            self.front.routed.remove(&s);
            let reason = self.named(s, &reason);
            self.tell(ProxyCommand::Down { site: s, reason });
        }
    }

    /// Tells the pages open in browsers (an overlay, its end): every page, whichever service
    /// served it, since a page depends on the other services too.
    pub(super) fn tell_browsers(&self, event: crate::proxy::BrowserEvent) {
        self.tell(ProxyCommand::Browser(event));
    }

    /// Tells the pages that service `s` swapped: they reload (or swap a stylesheet) if its
    /// swaps reload pages (`browser-reload`); otherwise an overlay it caused goes.
    pub(super) fn tell_browsers_swapped(&self, s: usize, generation: u64, css_only: Vec<String>) {
        let css_only = if self.services[s].reload_browser { css_only } else { Vec::new() };
        self.tell(ProxyCommand::Browser(crate::proxy::BrowserEvent::Ready {
            generation,
            css_only,
            reload: self.services[s].reload_browser,
        }));
    }

    /// How service `s`'s last build went, for the proxy's error page while nothing serves it.
    pub(super) fn build_result(&mut self, s: usize, command: &str, ok: bool, status: String, output: String) {
        if ok {
            self.tell(ProxyCommand::BuildOk { site: s });
        } else {
            self.tell(ProxyCommand::BuildFailed { site: s, command: command.to_owned(), status, output });
        }
    }

    /// A generation that requests were routed to is retiring: drain it through the proxy first.
    /// True if it must wait for [`FrontEvent::Drained`] before it is signalled.
    pub(super) fn drain_first(&mut self, generation: u64) -> bool {
        if self.front.door.is_none() {
            return false;
        }
        let routed = self.front.routed.iter().find(|(_, g)| **g == generation).map(|(s, _)| *s);
        let was_routed = routed.is_some() || self.front.drained_pending.contains(&generation);
        if let Some(s) = routed {
            self.front.routed.remove(&s);
        }
        if was_routed {
            self.front.drained_pending.insert(generation);
            self.tell(ProxyCommand::Drain { generation });
        }
        was_routed
    }

    /// The stop timeout passed while the proxy still had requests for `generation`: its
    /// connections are closed (the proxy reports how many) and it is signalled now.
    pub(super) fn drain_timed_out(&mut self, generation: u64) {
        self.front.drained_pending.remove(&generation);
        self.tell(ProxyCommand::Close { generation });
    }

    pub(super) fn on_front(&mut self, event: FrontEvent, now: Instant) {
        match event {
            FrontEvent::Drained { generation } => {
                if !self.front.drained_pending.remove(&generation) {
                    return;
                }
                let Some(s) = self.service_of(generation) else { return };
                let service = &mut self.services[s];
                let (signal, timeout) = (service.config.stop_signal, service.config.stop_timeout);
                let restart_mode = matches!(service.next, super::Next::Queued { .. });
                if let Some(draining) =
                    service.draining.iter_mut().find(|d| d.generation.id == generation && !d.signalled)
                {
                    let line = draining.signal(signal, timeout, restart_mode, &mut self.procs, now);
                    service.out.report(line);
                }
            }
            FrontEvent::Closed { generation, connections } => {
                if connections > 0 {
                    let out = self.service_of(generation).map_or(&self.out, |s| &self.services[s].out);
                    out.report(Report::ProxyClosed { generation, connections });
                }
            }
            FrontEvent::Counters { site, held, retried, failed } => {
                let Some(&generation) = self.front.routed.get(&site) else { return };
                let Some(service) = self.services.get(site) else { return };
                let upstreams = service
                    .serving
                    .as_ref()
                    .map(|g| g.ready_upstreams().iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                let address = self.front.address.clone().unwrap_or_default();
                service.out.report(Report::ProxyRouting {
                    address,
                    generation,
                    upstreams,
                    held,
                    retried,
                    failed,
                });
            }
            FrontEvent::Problem(text) => self.out.report(Report::ProxyProblem { text }),
            FrontEvent::Refused { check, value, text } => {
                self.out.report(Report::ProxyRefused { check: check.to_owned(), value, text });
            }
            FrontEvent::Recycle { generation, upstream, requests } => {
                if let Some(s) = self.service_of(generation) {
                    self.recycle(s, generation, upstream.port(), requests, now);
                }
            }
        }
    }

    /// Behind the front door a picked port can be taken by another program before the worker
    /// binds it. A worker that exits before it is ready while its port is now taken lost that
    /// race: it starts again on another port, and this is no crash. True if it was restarted.
    pub(super) fn lost_port_race(
        &mut self,
        s: usize,
        generation: u64,
        slot: u32,
        port: Option<u16>,
        now: Instant,
    ) -> bool {
        if !self.behind_front(s) || !port.is_some_and(crate::generation::port_taken) {
            return false;
        }
        let Some(next) = self.services[s].next.generation_mut().filter(|g| g.id == generation) else {
            return false;
        };
        match next.add_worker(slot, &mut self.procs, now) {
            Ok(pid) => {
                let port = port.unwrap_or_default();
                self.services[s].out.report(Report::PortTaken {
                    generation,
                    worker: slot,
                    port,
                    pid: pid.as_raw(),
                });
                true
            }
            Err(_) => false,
        }
    }

    /// The front door in the status table: its routing and counters, and the oldest exchanges in
    /// flight with their age.
    pub(super) fn front_status(&self) -> Option<crate::output::status::ProxyStatus> {
        let stats = self.front.door.as_ref()?.stats();
        Some(crate::output::status::ProxyStatus {
            address: self.front.address.clone().unwrap_or_default(),
            serving: stats.serving,
            held_now: stats.held_now,
            held: stats.total.held,
            retried: stats.total.retried,
            failed: stats.total.failed,
            in_flight: stats.generations.iter().map(|g| (g.generation, g.in_flight)).collect(),
            oldest: stats.oldest.iter().map(|f| (f.age.as_millis(), f.generation, f.what.clone())).collect(),
        })
    }

    /// The front door's address as a URL for a browser (`0.0.0.0` and `::` as `localhost`).
    pub(super) fn front_url(&self) -> Option<String> {
        front_url(self.front.address.as_deref()?, self.front.tls)
    }

    /// `--open`: the front door in the user's browser, once (the first generation is ready).
    pub(super) fn open_browser(&mut self) {
        // A devserve started for an upgrade: the browser is already open.
        if !self.config.open || self.upgrades.anchor.is_some() {
            return;
        }
        let Some(url) = self.front_url() else { return };
        let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
        if which::which(opener).is_err() {
            let reason = format!("no {opener} on PATH: open {url} yourself");
            self.out.report(Report::BrowserNotOpened { reason });
            return;
        }
        match self.procs.spawn(crate::spawn::Command::new(opener).arg(&url), Owner::Opener) {
            Ok(_) => self.out.report(Report::BrowserOpened { url }),
            Err(e) => self.out.report(Report::BrowserNotOpened { reason: format!("{opener}: {e}") }),
        }
    }

    /// A worker listens where it was not told to (see [`Event::OwnPort`]): say so; behind the
    /// front door, with one worker listening on one port of its own, proxy to that port from now
    /// on, as `--app-port` does (a swap then stops the old generation before the new one starts,
    /// and requests wait across the gap).
    ///
    /// [`Event::OwnPort`]: crate::event::Event::OwnPort
    pub(super) fn on_own_port(
        &mut self,
        s: usize,
        generation: u64,
        pid: Pid,
        given: Option<u16>,
        found: Vec<u16>,
    ) {
        let worker = self.slot_of(s, generation, pid);
        self.services[s].out.report(Report::OwnPort {
            generation,
            worker,
            pid: pid.as_raw(),
            given,
            found: found.clone(),
        });
        let (Some(_), [port]) = (given, found.as_slice()) else { return };
        if !self.behind_front(s) || self.services[s].workers != 1 {
            return;
        }
        let port = *port;
        let service = &mut self.services[s];
        let adopted = service
            .next
            .generation_mut()
            .into_iter()
            .chain(service.serving.as_mut())
            .find(|g| g.id == generation)
            .is_some_and(|g| g.adopt_port(pid, port));
        if adopted {
            self.services[s].app_port_found = Some(port);
            self.keep_found_app_port(s);
            self.services[s].out.report(Report::AppPortFound { generation, port });
            self.on_upstream_ready(s, generation, pid, std::time::Instant::now());
        }
    }

    /// A port found for the app stays in force across configuration reloads (unless the
    /// configuration names one itself).
    pub(super) fn keep_found_app_port(&mut self, s: usize) {
        if let Some(port) = self.services[s].app_port_found
            && self.services[s].launch.upstream == Upstream::PerWorker
        {
            self.services[s].launch.upstream = Upstream::Fixed(port);
        }
    }

    /// `--max-requests`: the serving worker on `port` was sent its requests. A replacement starts
    /// in a slot of its own; once it is ready (and routed), the old worker leaves the routing and
    /// drains (`worker_became_ready`): there is never a worker fewer, as gunicorn's arbiter has
    /// for a moment.
    fn recycle(&mut self, s: usize, generation: u64, port: u16, requests: u64, now: Instant) {
        let Some(serving) = self.services[s].serving.as_ref().filter(|g| g.id == generation) else { return };
        let Some(old) = serving.pid_on_port(port) else { return };
        let slot = serving.free_slot();
        if self.start_serving_worker(s, slot, crate::output::WorkerStart::Recycle, now)
            && let Some(new) = self.services[s].serving.as_ref().and_then(|g| g.pid_of_slot(slot))
        {
            self.front.recycling.push(Recycling { new, old, requests });
        }
    }

    /// A worker of the serving generation became ready: if it replaces one that was sent its
    /// `--max-requests`, that one leaves the routing now and drains.
    pub(super) fn recycled(&mut self, s: usize, generation: u64, new: Pid, now: Instant) {
        let Some(index) = self.front.recycling.iter().position(|r| r.new == new) else { return };
        let Recycling { old, requests, .. } = self.front.recycling.remove(index);
        let port = self.port_of(s, generation, old);
        self.upstream_removed(generation, port, old);
        let (signal, timeout) = (self.services[s].config.stop_signal, self.services[s].config.stop_timeout);
        if let Some(serving) = self.services[s].serving.as_mut()
            && let Some(slot) = serving.retire_worker(old, signal, timeout, now, &mut self.procs)
        {
            self.services[s].out.report(Report::WorkerRecycled {
                generation,
                worker: slot,
                pid: old.as_raw(),
                requests,
            });
        }
    }

    /// Generation `id`, if it is starting or serving.
    fn live_generation(&self, s: usize, id: u64) -> Option<&crate::generation::Generation> {
        self.services[s].next.generation().into_iter().chain(&self.services[s].serving).find(|g| g.id == id)
    }

    /// The slot of the worker running as `pid` in `generation`, if it is still known.
    pub(super) fn slot_of(&self, s: usize, generation: u64, pid: Pid) -> Option<u32> {
        self.live_generation(s, generation).and_then(|g| g.slot_of(pid))
    }

    /// The pid's port in the generation it belongs to.
    pub(super) fn port_of(&self, s: usize, generation: u64, pid: Pid) -> Option<u16> {
        self.live_generation(s, generation).and_then(|g| g.port_of(pid))
    }
}

/// `http://ADDR/` for a bound address; every interface (`0.0.0.0`, `[::]`) as `localhost`.
pub(super) fn front_url(address: &str, tls: bool) -> Option<String> {
    let addr: std::net::SocketAddr = address.parse().ok()?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        // Over TLS the name the certificate is for, and a secure context in every browser.
        ip if tls && ip.is_loopback() => "localhost".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    Some(format!("{scheme}://{host}:{}/", addr.port()))
}
