//! Requests from outside the file tree: signals (stop, reload, status, worker count) and edits of
//! devserve's own configuration file (nginx-style: validate, then apply or keep the old one).

use std::time::Instant;

use super::trigger::Trigger;
use super::{Next, Outcome, Shutdown, Supervisor, announce_listening, launch_for};
use crate::config::{Apply, Config};
use crate::event::Request;
use crate::output::{self, Report};
use crate::procs::Procs;
use crate::sockets;
use crate::watch;

impl<P: Procs> Supervisor<P> {
    pub(super) fn on_request(&mut self, request: Request, now: Instant) {
        if self.forward(request, now) {
            return;
        }
        match request {
            Request::Reload => {
                // `-s reload NAME…`: those services only, as they are.
                let named = self.reload_requests();
                if !named.is_empty() {
                    for s in named {
                        self.trigger(s, Trigger::reload("devserve -s reload", now));
                    }
                    return;
                }
                // As nginx does, HUP also re-reads the configuration file; one new generation either way.
                let applied = self.config.file.is_some() && self.reload_config(now);
                if !applied {
                    for s in 0..self.services.len() {
                        self.trigger(s, Trigger::reload("SIGHUP", now));
                    }
                }
            }
            Request::Stop if self.shutdown.is_some() => self.begin_shutdown(Shutdown::Immediate, now),
            Request::Stop => self.begin_shutdown(Shutdown::Graceful, now),
            Request::Kill => self.begin_shutdown(Shutdown::Immediate, now),
            Request::Status => self.print_status(now),
            Request::MoreWorkers => self.resize_all(1, now),
            Request::FewerWorkers => self.resize_all(-1, now),
            Request::Upgrade => self.upgrade(now),
            Request::Retire => self.retire_for_newer(now),
        }
    }

    /// The services `-s reload NAME…` asked for (see [`crate::control::RELOAD_REQUEST`]): the
    /// requests are read and removed. Empty: a plain HUP.
    fn reload_requests(&mut self) -> Vec<usize> {
        let Some(dir) = &self.runtime_dir else { return Vec::new() };
        let mut named = Vec::new();
        for entry in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let is_request =
                entry.file_name().to_str().is_some_and(|n| n.starts_with(crate::control::RELOAD_REQUEST));
            if !is_request {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let _ = std::fs::remove_file(entry.path());
            for name in text.lines() {
                if let Some(s) = self.services.iter().position(|service| service.name == name)
                    && !named.contains(&s)
                {
                    named.push(s);
                }
            }
        }
        named
    }

    pub(super) fn begin_shutdown(&mut self, mode: Shutdown, now: Instant) {
        if self.config.once && !self.once.decided && self.fatal.is_none() {
            self.once.decided = true;
            self.once.outcome = Outcome::Interrupted;
            self.out.report(Report::OnceInterrupted);
        }
        // The probe decides nothing any more.
        if let Some(probe) = self.once.probe {
            self.procs.signal(probe.pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.shutdown = Some(mode);
        self.watcher = None;
        match mode {
            // Dependents first (see `stack`).
            Shutdown::Graceful => self.stop_in_order(now),
            Shutdown::Immediate => {
                for s in 0..self.services.len() {
                    self.stop_service(s, now);
                }
            }
        }
        self.stop_connections(mode, now);
        self.stop_upgrade(match mode {
            Shutdown::Graceful => nix::sys::signal::Signal::SIGTERM,
            Shutdown::Immediate => nix::sys::signal::Signal::SIGKILL,
        });
        match mode {
            Shutdown::Graceful => self.out.report(Report::Stopping {
                signal: self.config.stop_signal.as_str().to_owned(),
                timeout_ms: self.config.stop_timeout.as_millis(),
            }),
            Shutdown::Immediate => {
                for draining in self.services.iter_mut().flat_map(|s| &mut s.draining) {
                    draining.generation.kill(&mut self.procs);
                    draining.killed = true;
                }
                if self.fatal.is_none() {
                    self.out.report(Report::StoppingNow);
                }
            }
        }
    }

    /// SIGTTIN / SIGTTOU: [`Self::resize`] for every service that serves (not a watch task).
    fn resize_all(&mut self, delta: i32, now: Instant) {
        for s in 0..self.services.len() {
            if !self.services[s].config.command.is_empty() {
                self.resize(s, delta, now);
            }
        }
    }

    /// One worker more or fewer (never under 1), at once in the serving generation; later
    /// generations keep the new count. TTOU retires the oldest worker.
    fn resize(&mut self, s: usize, delta: i32, now: Instant) {
        let wanted = self.services[s].workers.saturating_add_signed(delta).max(1);
        if wanted == self.services[s].workers {
            self.services[s].out.report(Report::WorkersChanged { workers: wanted, at_minimum: true });
            return;
        }
        self.services[s].workers = wanted;
        self.services[s].out.report(Report::WorkersChanged { workers: wanted, at_minimum: false });
        if delta > 0 {
            self.top_up_serving(s, now);
        } else if self.services[s]
            .serving
            .as_ref()
            .is_some_and(|serving| serving.active_count() > wanted as usize)
        {
            self.retire_oldest_worker(s, now, false);
        }
    }

    /// The configuration file changed: validate it whole; apply it, or keep the running config.
    /// True if that started a new generation.
    pub(super) fn reload_config(&mut self, now: Instant) -> bool {
        if self.shutdown.is_some() {
            return false;
        }
        let Some(loader) = &self.loader else { return false };
        let file = self.config.file.as_ref().map_or_else(String::new, |p| p.display().to_string());
        match loader.load() {
            Err(problems) => {
                let problems = problems.iter().map(ToString::to_string).collect();
                self.out.report(Report::ConfigRejected { file, problems });
                false
            }
            Ok(new) if self.unchanged(&new) => {
                // A comment or a reordering: nothing to apply.
                self.out.report(Report::ConfigUnchanged { file });
                false
            }
            Ok(new) => self.apply_config(new, now),
        }
    }

    /// Whether `new` says what the running config says, for devserve and every service.
    fn unchanged(&self, new: &Config) -> bool {
        let declared = super::service::declared(new);
        self.config.changes(new).is_empty()
            && declared.len() == self.services.len()
            && declared
                .iter()
                .zip(&self.services)
                .all(|(new, old)| new.name == old.name && old.config.changes(&new.config).is_empty())
    }

    /// Applies a valid new config, all or nothing: a new watcher (if the watch rules changed) and
    /// the sockets for new addresses are made first, and a failure of either drops what was
    /// made and keeps the running config. What workers are or get goes through a normal swap,
    /// service by service. Adding, removing or renaming a service needs a restart.
    fn apply_config(&mut self, new: Config, now: Instant) -> bool {
        let file = new.file.as_ref().map_or_else(String::new, |p| p.display().to_string());
        let declared = super::service::declared(&new);
        let same_services = declared.len() == self.services.len()
            && declared.iter().zip(&self.services).all(|(new, old)| new.name == old.name);
        if !same_services {
            let problems = vec![format!(
                "{file}: the services changed (one added, removed, renamed or reordered): restart devserve to apply it"
            )];
            self.out.report(Report::ConfigRejected { file, problems });
            return false;
        }
        let rules = super::watch_rules(&new, declared.iter().map(|d| (&d.config, d.watches)));
        let old_rules =
            super::watch_rules(&self.config, self.services.iter().map(|s| (&s.config, s.watches)));
        let watcher = if rules == old_rules {
            None
        } else {
            match watch::spawn(rules, self.own_files.clone(), self.events.clone()) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    let problems = vec![format!("{file}: {e}")];
                    self.out.report(Report::ConfigRejected { file, problems });
                    return false;
                }
            }
        };
        let mut rebound = Vec::new();
        for (s, service) in declared.iter().enumerate() {
            if service.config.listen == self.services[s].config.listen {
                continue;
            }
            match sockets::rebind(&service.config.listen, &self.services[s].sockets) {
                Ok(set) => rebound.push((s, set)),
                Err(e) => {
                    let at = new.listen_location.as_ref().map_or_else(|| file.clone(), ToString::to_string);
                    self.out.report(Report::ConfigRejected {
                        file,
                        problems: vec![format!("{at}: listen: {e}")],
                    });
                    return false;
                }
            }
        }
        for (s, set) in rebound {
            // The replaced sockets close when no generation started on them is left.
            self.services[s].sockets = set;
            announce_listening(&self.services[s].out, &self.services[s].sockets);
            // New socket files are removed by the sentinel too, should devserve be killed.
            for path in sockets::unix_paths(&self.services[s].sockets) {
                self.procs.add_cleanup(&path);
            }
        }
        if let Some(handle) = watcher {
            // The old watcher stops as its handle is dropped; the new one says `watching` once its
            // walk is done (on its own thread: the loop does not wait for it).
            self.watching = false;
            self.watcher = Some(handle);
        }
        let mut changes = self.config.changes(&new);
        let mut swaps = Vec::new();
        for (s, declared) in declared.into_iter().enumerate() {
            let service_changes = self.services[s].config.changes(&declared.config);
            if service_changes.iter().any(|(_, apply)| *apply == Apply::NextGeneration) {
                swaps.push(s);
            }
            for change in service_changes {
                if !changes.contains(&change) {
                    changes.push(change);
                }
            }
            let service = &mut self.services[s];
            if declared.config.workers != service.config.workers {
                service.workers = declared.config.workers;
            }
            let output = service.launch.output.take();
            service.launch = launch_for(&declared.config, &service.sockets, declared.routed);
            service.launch.output = output;
            service.reload_browser = declared.reload_browser;
            service.config = declared.config;
            self.keep_found_app_port(s);
        }
        self.config = new;
        let next_start = changes
            .iter()
            .filter(|(_, apply)| *apply == Apply::NextStart)
            .map(|(key, _)| key.clone())
            .collect();
        let changed = changes.iter().map(|(key, _)| key.clone()).collect();
        self.out.report(Report::ConfigApplied { file, changed, next_start });
        for &s in &swaps {
            self.trigger(s, Trigger::reload("config changed", now));
        }
        !swaps.is_empty()
    }

    /// SIGUSR1: the status table, on the terminal and in the runtime dir's `status` file (where
    /// `devserve --signal status` picks it up).
    fn print_status(&self, now: Instant) {
        use crate::output::status::{ServiceStatus, StatusTable};
        let mut rows: Vec<ServiceStatus> =
            (0..self.services.len()).map(|s| self.service_status(s, now)).collect();
        let several = rows.len() > 1;
        let one = if several { None } else { rows.pop() };
        let (dropped, write_errors) = output::sink::losses();
        let table = StatusTable {
            pid: std::process::id(),
            workers: one.as_ref().map_or(0, |o| o.workers),
            build: one.as_ref().and_then(|o| o.build.clone()),
            generations: one.as_ref().map(|o| o.generations.clone()).unwrap_or_default(),
            queued: one.as_ref().and_then(|o| o.queued.clone()),
            services: rows,
            proxy: self.front_status(),
            output_lost: (dropped + write_errors > 0).then_some((dropped, write_errors)),
            connections: self.accept_mode().map(|_| crate::output::status::ConnectionsStatus {
                serving: self.connections.serving.as_ref().map(|p| p.id),
                candidate: self.connections.candidate.as_ref().map(|p| p.id),
                live: self.connections.counts(),
                max_connections: self.config.max_connections,
            }),
        };
        let lines = table.lines();
        if let Some(dir) = &self.runtime_dir {
            // Written whole, then renamed, so a reader never sees half a table.
            let (temp, file) = (dir.path().join("status.tmp"), dir.path().join("status"));
            let table = lines.join("\n");
            if let Err(e) =
                std::fs::write(&temp, format!("{table}\n")).and_then(|()| std::fs::rename(&temp, &file))
            {
                self.out.report(Report::StatusNotWritten {
                    file: file.display().to_string(),
                    error: e.to_string(),
                });
            }
        }
        self.out.report(Report::Status { table });
    }

    /// Service `s`'s row of the status table.
    fn service_status(&self, s: usize, now: Instant) -> crate::output::status::ServiceStatus {
        use crate::output::status::{BuildStatus, GenerationStatus, Role, ServiceStatus};
        let service = &self.services[s];
        let build = match (&service.build, &service.last_build) {
            (Some(run), _) => Some(BuildStatus::Running {
                for_ms: run.build.took(now).as_millis(),
                cause: run.trigger.describe(),
            }),
            (None, Some((status, took, at))) => Some(BuildStatus::Last {
                status: if status.success() { "ok".to_string() } else { status.to_string() },
                took_ms: took.as_millis(),
                ago_ms: now.saturating_duration_since(*at).as_millis(),
            }),
            (None, None) => None,
        };
        let starting =
            if matches!(service.next, Next::Rolling(_)) { Role::StartingRolling } else { Role::Starting };
        let generations = service
            .serving
            .iter()
            .map(|g| (if g.gave_up { Role::ServingGaveUp } else { Role::Serving }, g))
            .chain(service.next.generation().map(|g| (starting, g)))
            .chain(service.draining.iter().map(|d| (Role::Draining, &d.generation)))
            .map(|(role, g)| GenerationStatus {
                id: g.id,
                role,
                workers: g.workers.iter().map(|w| w.status(now)).collect(),
            })
            .collect();
        let queued = match &service.next {
            Next::Queued { trigger, .. } => Some(trigger.describe()),
            _ => None,
        };
        ServiceStatus {
            name: service.name.clone(),
            workers: service.workers,
            waiting: service.waiting.is_some(),
            build,
            generations,
            queued,
        }
    }
}
