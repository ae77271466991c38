//! The services together: the first start in `depends-on` order, the stop in reverse order, and
//! how a line or an overlay names its service.
//!
//! Rules:
//! - At the first start a service whose `depends-on` services have not all served yet waits (its
//!   start, and any change meanwhile, kept as one trigger); it starts as soon as the last of them
//!   is ready. Later swaps of either are independent.
//! - A graceful stop signals a service once every service that depends on it has stopped
//!   (reverse start order: a frontend goes before the API it calls); `kill` and an immediate stop
//!   stop everything at once.
//! - A watch task (a build, no command) has "served" once its first build is done.

use std::time::Instant;

use super::trigger::Trigger;
use super::{Next, Shutdown, Supervisor};
use crate::output::Report;
use crate::procs::Procs;

impl<P: Procs> Supervisor<P> {
    /// With several services: each watching service's own rules, which pick its changes out of
    /// the one watcher's (`own` never count).
    pub(super) fn watch_each(&mut self, own: &[std::path::PathBuf]) -> Result<(), crate::watch::WatchError> {
        for service in &mut self.services {
            if !service.watches {
                continue;
            }
            let rules = &service.config.watch;
            let filter = crate::watch::Filter::new(
                &rules.roots,
                &rules.touch,
                &rules.ignore,
                &rules.exts,
                rules.vcs_ignore,
            )?;
            service.filter = Some(filter.with_own_files(own.to_vec()));
        }
        Ok(())
    }

    /// Every service has served (or built, a watch task) once.
    pub(super) fn all_started(&self) -> bool {
        self.services.iter().all(|service| service.started_once)
    }

    /// The keys a terminal gives, with `r` then an initial for each service when there are several.
    pub(super) fn keys_report(&self) -> Report {
        let several = self.services.len() > 1;
        let services =
            if several { self.services.iter().map(|s| s.name.clone()).collect() } else { Vec::new() };
        Report::Keys { services }
    }

    /// `text` as the browser's overlay shows it: after the service's name when there are several.
    pub(super) fn named(&self, s: usize, text: &str) -> String {
        if self.services.len() > 1 { format!("{}: {text}", self.services[s].name) } else { text.to_owned() }
    }

    /// The first start: every service whose dependencies serve (none yet) starts, the others wait.
    pub(super) fn start_all(&mut self, trigger: Trigger) {
        for s in 0..self.services.len() {
            if self.services[s].depends_on.is_empty() {
                self.trigger(s, trigger.clone());
            } else {
                let after =
                    self.services[s].depends_on.iter().map(|&d| self.services[d].name.clone()).collect();
                self.services[s].out.report(Report::ServiceWaiting { after });
                self.services[s].waiting = Some(trigger.clone());
            }
        }
    }

    /// Services waiting for their dependencies start once every one of those has served.
    pub(super) fn start_waiting(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        for s in 0..self.services.len() {
            let ready = self.services[s].depends_on.iter().all(|&d| self.services[d].started_once);
            if ready && let Some(trigger) = self.services[s].waiting.take() {
                self.trigger(s, trigger);
            }
        }
    }

    /// A graceful stop: each service still running whose dependents are all gone is told to stop.
    pub(super) fn stop_in_order(&mut self, now: Instant) {
        if self.shutdown != Some(Shutdown::Graceful) {
            return;
        }
        for s in (0..self.services.len()).rev() {
            if self.services[s].stopping {
                continue;
            }
            let dependents_gone = (0..self.services.len())
                .filter(|&d| self.services[d].depends_on.contains(&s))
                .all(|d| self.services[d].stopping && self.service_gone(d));
            if dependents_gone {
                self.stop_service(s, now);
            }
        }
    }

    /// Nothing of service `s` runs any more.
    fn service_gone(&self, s: usize) -> bool {
        let service = &self.services[s];
        service.serving.is_none()
            && matches!(service.next, Next::Idle)
            && service.draining.is_empty()
            && service.build.is_none()
    }

    /// Service `s` stops: nothing more is built or started, its build is cancelled, its
    /// generations retire (drained first behind the front door).
    pub(super) fn stop_service(&mut self, s: usize, now: Instant) {
        let service = &mut self.services[s];
        service.stopping = true;
        service.waiting = None;
        service.build_queued = None;
        if let Next::Queued { .. } = service.next {
            service.next = Next::Idle;
        }
        if let Some(run) = service.build.take() {
            run.build.cancel(&mut self.procs);
        }
        let generations: Vec<_> =
            service.next.take_generation().into_iter().chain(service.serving.take()).collect();
        for generation in generations {
            self.retire(s, generation, now);
        }
    }
}
