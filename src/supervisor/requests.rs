//! Requests from outside the file tree: signals (stop, reload, status, worker count) and edits of
//! devserve's own configuration file (nginx-style: validate, then apply or keep the old one).

use std::time::Instant;

use super::trigger::Trigger;
use super::{Outcome, Shutdown, Supervisor, announce_listening, announce_watcher, launch_for, start_watcher};
use crate::config::Config;
use crate::event::Request;
use crate::output;
use crate::sockets;

impl Supervisor {
    pub(super) fn on_request(&mut self, request: Request) {
        match request {
            Request::Reload => {
                // As nginx does, HUP also re-reads the configuration file; one new generation either way.
                let applied = self.config.file.is_some() && self.reload_config();
                if !applied {
                    self.trigger(Trigger::reload("SIGHUP"));
                }
            }
            Request::Stop if self.shutdown.is_some() => self.begin_shutdown(Shutdown::Immediate),
            Request::Stop => self.begin_shutdown(Shutdown::Graceful),
            Request::Kill => self.begin_shutdown(Shutdown::Immediate),
            Request::Status => self.print_status(),
            Request::MoreWorkers => self.resize(1),
            Request::FewerWorkers => self.resize(-1),
        }
    }

    pub(super) fn begin_shutdown(&mut self, mode: Shutdown) {
        let now = Instant::now();
        if self.config.once && !self.once_decided && self.fatal.is_none() {
            self.once_decided = true;
            self.outcome = Outcome::Interrupted;
            self.out.warn("--once: stopped before a verdict");
        }
        // The probe decides nothing any more.
        if let Some((probe, _)) = self.probe {
            let _ = nix::sys::signal::killpg(probe, nix::sys::signal::Signal::SIGKILL);
        }
        self.shutdown = Some(mode);
        self.queued = None;
        self.watcher = None;
        if let Some((build, _)) = self.build.take() {
            build.cancel();
            self.cancelled_builds.push(build.pid);
        }
        for generation in self.next.take().into_iter().chain(self.serving.take()) {
            self.retire(generation, now);
        }
        match mode {
            Shutdown::Graceful => self.out.info(format!(
                "stopping ({} to workers, SIGKILL after {}; again to kill now)",
                self.config.stop_signal.as_str(),
                output::duration(self.config.stop_timeout)
            )),
            Shutdown::Immediate => {
                for generation in &mut self.draining {
                    generation.kill();
                }
                if self.fatal.is_none() {
                    self.out.info("stopping now (SIGKILL)");
                }
            }
        }
    }

    /// SIGTTIN / SIGTTOU: one worker more or fewer (never under 1), at once in the serving
    /// generation; later generations keep the new count. TTOU retires the oldest worker.
    fn resize(&mut self, delta: i32) {
        let wanted = self.workers.saturating_add_signed(delta).max(1);
        if wanted == self.workers {
            self.out.info(format!("workers: already {wanted}, the minimum"));
            return;
        }
        self.workers = wanted;
        self.out.info(format!("workers: {wanted}"));
        let now = Instant::now();
        if delta > 0 {
            self.top_up_serving();
        } else if let Some(serving) = self.serving.as_mut()
            && serving.active_count() > wanted as usize
            && let Some((slot, pid)) =
                serving.retire_oldest(self.config.stop_signal, self.config.stop_timeout, now)
        {
            self.out.info(format!("gen {} w{slot} (pid {pid}) stopping", serving.id));
        }
    }

    /// The configuration file changed: validate it whole; apply it, or keep the running config.
    /// True if that started a new generation.
    pub(super) fn reload_config(&mut self) -> bool {
        if self.shutdown.is_some() {
            return false;
        }
        let file = self.config.file.as_ref().map_or_else(String::new, |p| p.display().to_string());
        match self.loader.load() {
            Err(problems) => {
                for problem in &problems {
                    self.out.error(problem.to_string());
                }
                self.out.warn(format!("{file}: not applied; the running config stays"));
                false
            }
            Ok(new) if new == self.config => {
                self.out.info(format!("{file}: no change"));
                false
            }
            Ok(new) => self.apply_config(new),
        }
    }

    /// Applies a valid new config, all or nothing: a new watcher (if the watch rules changed) and
    /// the sockets for new addresses are made first, and a failure of either drops what was
    /// made and keeps the running config. What workers are or get goes through a normal swap.
    fn apply_config(&mut self, new: Config) -> bool {
        let file = new.file.as_ref().map_or_else(String::new, |p| p.display().to_string());
        let reject = |out: &crate::output::Output, problem: String| {
            out.error(problem);
            out.warn(format!("{file}: not applied; the running config stays"));
            false
        };
        let watcher = if new.watch == self.config.watch {
            None
        } else {
            match start_watcher(&new, &self.own_files, &self.events) {
                Ok(handle) => Some(handle),
                Err(e) => return reject(&self.out, format!("{file}: {e}")),
            }
        };
        if new.listen != self.config.listen {
            match sockets::rebind(&new.listen, &mut self.sockets) {
                // Kept until no generation started on them is left.
                Ok(released) => self.old_sockets.push((self.next_id, released)),
                Err(e) => {
                    let at = new.listen_location.as_ref().map_or_else(|| file.clone(), ToString::to_string);
                    return reject(&self.out, format!("{at}: listen: {e}"));
                }
            }
            announce_listening(&self.out, &self.sockets);
            // New socket files are removed by the sentinel too, should devserve be killed.
            if let Some(sentinel) = self.sentinel.as_mut() {
                for path in sockets::unix_paths(&self.sockets) {
                    sentinel.add_cleanup(&path);
                }
            }
        }
        if let Some(handle) = watcher {
            announce_watcher(&self.out, &new, &handle);
            // The old watcher stops as its handle is dropped.
            self.watcher = Some(handle);
        }
        let new_generation = self.config.needs_new_generation(&new);
        self.workers = if new.workers != self.config.workers { new.workers } else { self.workers };
        self.launch = launch_for(&new, &self.sockets);
        self.config = new;
        self.out.info(format!("{file}: applied"));
        if new_generation {
            self.trigger(Trigger::reload("config changed"));
        }
        new_generation
    }

    /// SIGUSR1: the status table, on the terminal and in the runtime dir's `status` file (where
    /// `devserve --signal status` picks it up).
    fn print_status(&self) {
        let now = Instant::now();
        let mut lines =
            vec![format!("status: pid {}, {} worker(s) per generation", std::process::id(), self.workers)];
        match (&self.build, &self.last_build) {
            (Some((build, trigger)), _) => lines.push(format!(
                "  build: running for {} ({})",
                output::duration(build.took()),
                trigger.describe()
            )),
            (None, Some((status, took, at))) => lines.push(format!(
                "  build: last {} in {}, {} ago",
                if status.success() { "ok".to_string() } else { status.to_string() },
                output::duration(*took),
                output::duration(now.duration_since(*at))
            )),
            (None, None) => {}
        }
        let labelled = self
            .serving
            .iter()
            .map(|g| (if g.gave_up { "serving, crash loop: not restarting" } else { "serving" }, g))
            .chain(self.next.iter().map(|g| ("starting", g)))
            .chain(self.draining.iter().map(|g| ("draining", g)));
        for (label, generation) in labelled {
            lines.push(format!("  gen {} {label}", generation.id));
            for worker in &generation.workers {
                let last = worker.last_exit.map(|s| format!(", last {s}")).unwrap_or_default();
                lines.push(format!(
                    "    w{} {}, restarts {}{last}",
                    worker.slot,
                    worker.describe(now),
                    worker.restarts
                ));
            }
        }
        let (dropped, write_errors) = output::sink::losses();
        if dropped + write_errors > 0 {
            lines.push(format!("  output: {dropped} lines dropped, {write_errors} failed writes to stderr"));
        }
        let table = lines.join("\n");
        // Written whole, then renamed, so a reader never sees half a table.
        let dir = self.runtime_dir.path();
        let (temp, file) = (dir.join("status.tmp"), dir.join("status"));
        if let Err(e) =
            std::fs::write(&temp, format!("{table}\n")).and_then(|()| std::fs::rename(&temp, &file))
        {
            self.out.warn(format!("cannot write the status file {}: {e}", file.display()));
        }
        self.out.lines(output::Tone::Info, &lines);
    }
}
