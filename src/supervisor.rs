//! The supervisor: one loop, one owner of all state, like gunicorn's arbiter.
//!
//! `run` sets the stage (signal thread, held sockets, runtime directory, sentinel, watcher) and
//! then loops: wait for the next [`Event`] or the next deadline, react with a short named verb
//! (`trigger`, `start_build`, `start_generation`, `promote`, `roll_back`, `restart_workers`,
//! `kill_overdue`, `begin_shutdown`), repeat until everything it started is reaped.
//!
//! State and its meaning:
//! - `build`: the build in progress and the change it is for; a newer change cancels it.
//! - `serving`: the generation answering requests; its crashed workers restart with backoff.
//! - `next`: the generation starting; promoted when every worker is ready, rolled back when one
//!   exits first or the ready timeout passes. The old one keeps serving meanwhile.
//! - `draining`: generations told to stop; their process groups are killed at the deadline.
//! - `queued`: restart mode only (no `--listen`): a generation waiting for the old one to exit,
//!   since both would bind the same port.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::build::Build;
use crate::cli::Config;
use crate::control::Pidfile;
use crate::event::{Event, ExitStatus, Notification, Request};
use crate::generation::{Generation, Launch, Phase, WorkerExit};
use crate::output::{self, Output};
use crate::sentinel::Sentinel;
use crate::sockets::{self, HeldSocket};
use crate::spawn::Command;
use crate::{signals, watch};

/// Starts everything and supervises until stopped. Errors are one line for the user.
pub fn run(config: Config) -> Result<(), String> {
    let out = Output::new(config.quiet);
    let (events_tx, events) = crossbeam_channel::unbounded();
    // First, so that no child can exit before SIGCHLD is handled.
    signals::spawn(events_tx.clone()).map_err(|e| format!("cannot install signal handlers: {e}"))?;
    check_command(&config)?;
    let pidfile = config.pidfile.as_deref().map(|p| Pidfile::create(p, &out)).transpose()?;
    let sockets = sockets::bind_all(&config.listen).map_err(|e| e.to_string())?;
    let runtime_dir = create_runtime_dir()?;
    let mut cleanup = sockets::unix_paths(&sockets);
    cleanup.push(runtime_dir.clone());
    cleanup.extend(pidfile.as_ref().map(|p| p.path().to_path_buf()));
    let sentinel = Sentinel::spawn(&cleanup).map_err(|e| format!("cannot start the sentinel: {e}"))?;
    announce_sockets(&out, &sockets);
    let watched = watch::spawn(config.watch.clone(), events_tx.clone())?;
    out.info(format!("watching {} ({watched} folders)", describe_roots(&config.watch.roots)));

    let mut supervisor = Supervisor::new(config, out, sockets, runtime_dir, sentinel, events_tx);
    supervisor.trigger(Trigger::start());
    let result = supervisor.run(&events);
    supervisor.clean_up();
    drop(pidfile);
    result
}

/// Without a build step the command must exist now; with one, the build may create it.
fn check_command(config: &Config) -> Result<(), String> {
    if config.build.is_some() {
        return Ok(());
    }
    let program = config.command.first().ok_or("missing COMMAND")?;
    Command::new(program).resolve().map(drop).map_err(|e| e.to_string())
}

/// A private directory for the notify sockets: `$TMPDIR/devserve-PID`, mode 0700.
fn create_runtime_dir() -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("devserve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn announce_sockets(out: &Output, sockets: &[HeldSocket]) {
    for (index, socket) in sockets.iter().enumerate() {
        out.info(format!("listening on {} (fd {}, {})", socket.bound, 3 + index, socket.name));
    }
    if sockets.is_empty() {
        out.info("no --listen: restart mode (the app binds its own port; old and new cannot overlap)");
    }
}

fn describe_roots(roots: &[PathBuf]) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let names: Vec<String> = roots.iter().map(|r| relative_display(r, &cwd)).collect();
    names.join(", ")
}

fn relative_display(path: &Path, cwd: &Path) -> String {
    match path.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// Why a new generation is wanted: the first start, a reload signal, changed files (merged
/// across cancelled builds so the final message names them all).
#[derive(Debug, Clone)]
struct Trigger {
    at: Instant,
    paths: BTreeSet<PathBuf>,
    reload: bool,
    initial: bool,
}

impl Trigger {
    fn start() -> Trigger {
        Trigger { at: Instant::now(), paths: BTreeSet::new(), reload: false, initial: true }
    }

    fn reload() -> Trigger {
        Trigger { reload: true, initial: false, ..Trigger::start() }
    }

    /// Files changed; the first event came `since` (before the debounce wait).
    fn change(paths: Vec<PathBuf>, since: Instant) -> Trigger {
        Trigger { at: since, paths: paths.into_iter().collect(), reload: false, initial: false }
    }

    /// Folds a newer trigger into this one, keeping the earlier start time.
    fn merge(&mut self, newer: Trigger) {
        self.paths.extend(newer.paths);
        self.reload |= newer.reload;
        self.initial |= newer.initial;
    }

    fn describe(&self) -> String {
        let cwd = std::env::current_dir().unwrap_or_default();
        let files = match self.paths.len() {
            0 => None,
            1 => self.paths.first().map(|p| format!("{} changed", relative_display(p, &cwd))),
            n => Some(format!("{n} files changed")),
        };
        match (files, self.reload, self.initial) {
            (Some(files), _, _) => files,
            (None, true, _) => "reload (SIGHUP)".into(),
            (None, _, true) => "first start".into(),
            (None, _, false) => "change".into(),
        }
    }
}

/// How devserve is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    /// Stop signal to every generation, SIGKILL at the stop timeout.
    Graceful,
    /// SIGKILL to everything now.
    Immediate,
}

struct Supervisor {
    config: Config,
    out: Output,
    sockets: Vec<HeldSocket>,
    launch: Launch,
    runtime_dir: PathBuf,
    sentinel: Option<Sentinel>,
    events: Sender<Event>,
    build: Option<(Build, Trigger)>,
    /// How the last finished build went, for the status table.
    last_build: Option<(ExitStatus, Duration, Instant)>,
    /// Builds killed because a newer change arrived, not yet reaped.
    cancelled_builds: Vec<Pid>,
    serving: Option<Generation>,
    next: Option<Generation>,
    draining: Vec<Generation>,
    queued: Option<(Trigger, Option<Duration>)>,
    next_id: u64,
    workers: u32,
    /// Learnt from the first READY=1: from then on the ready delay no longer applies.
    app_speaks_notify: bool,
    /// A generation has started successfully at least once.
    started_once: bool,
    shutdown: Option<Shutdown>,
    fatal: Option<String>,
}

impl Supervisor {
    fn new(
        config: Config,
        out: Output,
        sockets: Vec<HeldSocket>,
        runtime_dir: PathBuf,
        sentinel: Sentinel,
        events: Sender<Event>,
    ) -> Supervisor {
        let launch = Launch {
            command: config.command.clone(),
            sockets: sockets.iter().map(HeldSocket::raw_fd).collect(),
            fd_names: sockets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(":"),
            listen_pid: config.listen_pid,
        };
        let workers = config.workers;
        Supervisor {
            config,
            out,
            sockets,
            launch,
            runtime_dir,
            sentinel: Some(sentinel),
            events,
            build: None,
            last_build: None,
            cancelled_builds: Vec::new(),
            serving: None,
            next: None,
            draining: Vec::new(),
            queued: None,
            next_id: 1,
            workers,
            app_speaks_notify: false,
            started_once: false,
            shutdown: None,
            fatal: None,
        }
    }

    fn run(&mut self, events: &Receiver<Event>) -> Result<(), String> {
        while !self.finished() {
            let received = match self.next_wakeup() {
                Some(at) => events.recv_deadline(at),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.tick(Instant::now());
        }
        match self.fatal.take() {
            Some(message) => Err(message),
            None => {
                self.out.info("stopped");
                Ok(())
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Change(change) => self.trigger(Trigger::change(change.paths, change.since)),
            Event::WatchProblem(text) => self.out.warn(text),
            Event::Request(request) => self.on_request(request),
            Event::Exited { pid, status } => self.on_exit(pid, status),
            Event::Notify(note) => self.on_notify(&note),
        }
    }

    /// Time-driven transitions; safe to call at any moment.
    fn tick(&mut self, now: Instant) {
        self.check_next(now);
        self.restart_workers(now);
        self.kill_overdue(now);
        self.start_queued();
    }

    fn finished(&self) -> bool {
        self.shutdown.is_some()
            && self.build.is_none()
            && self.cancelled_builds.is_empty()
            && self.serving.is_none()
            && self.next.is_none()
            && self.draining.is_empty()
    }

    /// The earliest deadline the loop must wake up for.
    fn next_wakeup(&self) -> Option<Instant> {
        let mut times = Vec::new();
        if let Some(next) = &self.next {
            times.push(next.started + self.config.ready_timeout);
            if !self.app_speaks_notify {
                times.extend(next.next_ready_delay(self.config.ready_delay));
            }
        }
        if let Some(serving) = &self.serving {
            times.extend(serving.next_restart());
            times.extend(serving.next_retiree_deadline());
            times.extend(serving.next_ready_delay(self.config.ready_delay));
        }
        for generation in &self.draining {
            if let Phase::Draining { deadline, killed: false } = generation.phase {
                times.push(deadline);
            }
        }
        times.into_iter().min()
    }

    // ----- changes and builds -------------------------------------------------------------

    /// A change, a reload or the first start: build (cancelling a build in progress), then start
    /// a generation.
    fn trigger(&mut self, mut trigger: Trigger) {
        if self.shutdown.is_some() {
            return;
        }
        if let Some((build, earlier)) = self.build.take() {
            build.cancel();
            self.cancelled_builds.push(build.pid);
            let mut merged = earlier;
            merged.merge(trigger);
            trigger = merged;
            self.out.info(format!("{}: restarting the build", trigger.describe()));
        }
        match self.config.build.clone() {
            Some(script) => self.start_build(&script, trigger),
            None => self.start_generation(trigger, None),
        }
    }

    fn start_build(&mut self, script: &str, trigger: Trigger) {
        self.out.info(format!("{}: building ({script})", trigger.describe()));
        let Some(sentinel) = self.sentinel.as_mut() else {
            return;
        };
        match Build::start(script, sentinel) {
            Ok(build) => self.build = Some((build, trigger)),
            Err(e) => self.out.error(format!("cannot run the build: {e}")),
        }
    }

    fn build_finished(&mut self, build: Build, trigger: Trigger, status: ExitStatus) {
        let took = build.took();
        self.last_build = Some((status, took, Instant::now()));
        if status.success() {
            self.out.info(format!("build ok in {}", output::duration(took)));
            self.start_generation(trigger, Some(took));
        } else {
            self.out.warn(format!(
                "build failed in {} ({status}); {}",
                output::duration(took),
                self.serving_note()
            ));
        }
    }

    // ----- generations ---------------------------------------------------------------------

    fn start_generation(&mut self, trigger: Trigger, build_took: Option<Duration>) {
        let now = Instant::now();
        let restart_mode = self.sockets.is_empty();
        if let Some(superseded) = self.next.take() {
            self.out.info(format!("gen {} superseded by a newer build; stopping it", superseded.id));
            self.retire(superseded, now);
        }
        if restart_mode && (self.serving.is_some() || !self.draining.is_empty()) {
            if let Some(old) = self.serving.take() {
                self.out.info(format!("gen {} stopping (restart mode: the new one starts after)", old.id));
                self.retire(old, now);
            }
            self.queued = Some((trigger, build_took));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        // A rolling swap starts one worker and adds the others one by one (`roll_one`).
        let count = if self.config.rolling && self.serving.is_some() { 1 } else { self.workers };
        let Some(sentinel) = self.sentinel.as_mut() else {
            return;
        };
        match Generation::start(id, count, &self.launch, &self.runtime_dir, self.events.clone(), sentinel) {
            Ok(mut generation) => {
                generation.build_took = build_took;
                generation.cause = trigger.describe();
                generation.triggered = trigger.at;
                self.out.info(format!("gen {id} starting ({})", generation.describe_pids()));
                self.next = Some(generation);
            }
            Err(e) if e.is_bad_command() && !self.started_once => {
                self.fatal = Some(e.to_string());
                self.begin_shutdown(Shutdown::Immediate);
            }
            Err(e) => self.out.warn(format!("gen {id} could not start: {e}; {}", self.serving_note())),
        }
    }

    /// Restart mode: start the queued generation once the old one has gone.
    fn start_queued(&mut self) {
        if self.serving.is_some() || self.next.is_some() || !self.draining.is_empty() {
            return;
        }
        if let Some((trigger, build_took)) = self.queued.take() {
            self.start_generation(trigger, build_took);
        }
    }

    /// Readiness and ready timeout of the starting generation.
    fn check_next(&mut self, now: Instant) {
        if let Some(serving) = self.serving.as_mut() {
            serving.apply_ready_delay(self.config.ready_delay, now);
        }
        let Some(next) = self.next.as_mut() else {
            return;
        };
        if !self.app_speaks_notify {
            next.apply_ready_delay(self.config.ready_delay, now);
        }
        if next.all_ready() && next.workers.len() < self.workers as usize && self.serving.is_some() {
            self.roll_one(now);
        } else if next.all_ready() {
            self.promote(now);
        } else if now >= next.started + self.config.ready_timeout {
            let reason = format!("not ready within {}", output::duration(self.config.ready_timeout));
            self.roll_back(&reason, now);
        }
    }

    /// Rolling swap step: every new worker so far is ready, so one old worker stops and one
    /// more new worker starts. Capacity never drops below the worker count.
    fn roll_one(&mut self, now: Instant) {
        let (Some(next), Some(sentinel)) = (self.next.as_mut(), self.sentinel.as_mut()) else { return };
        if let Some(serving) = self.serving.as_mut()
            && let Some((slot, pid)) =
                serving.retire_oldest(self.config.stop_signal, self.config.stop_timeout, now)
        {
            self.out.info(format!("gen {} w{slot} (pid {pid}) stopping (rolling)", serving.id));
        }
        let slot = next.free_slot();
        match next.add_worker(slot, &self.launch, sentinel) {
            Ok(pid) => self.out.info(format!("gen {} w{slot} starting (pid {pid})", next.id)),
            Err(e) => self.roll_back(&format!("w{slot} could not start: {e}"), now),
        }
    }

    /// The new generation is ready: it serves, the old one drains.
    fn promote(&mut self, now: Instant) {
        let Some(mut generation) = self.next.take() else {
            return;
        };
        generation.phase = Phase::Serving;
        self.started_once = true;
        self.out.good(self.ready_line(&generation, now));
        if let Some(old) = self.serving.replace(generation) {
            self.out.info(format!("gen {} stopping ({})", old.id, self.config.stop_signal.as_str()));
            self.retire(old, now);
        }
    }

    /// `gen 4 ready in 212ms (build 180ms, start 32ms) · 3 files changed`
    fn ready_line(&self, generation: &Generation, now: Instant) -> String {
        let total = now.duration_since(generation.triggered);
        let start = now.duration_since(generation.started);
        let build = generation.build_took.unwrap_or_default();
        // What is neither build nor start: the debounce wait (and devserve's own overhead).
        let waited = total.saturating_sub(start).saturating_sub(build);
        let mut phases = Vec::new();
        if waited >= Duration::from_millis(1) {
            phases.push(format!("debounce {}", output::duration(waited)));
        }
        if let Some(build) = generation.build_took {
            phases.push(format!("build {}", output::duration(build)));
        }
        phases.push(format!("start {}", output::duration(start)));
        format!(
            "gen {} ready in {} ({}) · {}",
            generation.id,
            output::duration(total),
            phases.join(", "),
            generation.cause
        )
    }

    /// The new generation failed: stop it, keep the old one.
    fn roll_back(&mut self, reason: &str, now: Instant) {
        let Some(failed) = self.next.take() else {
            return;
        };
        self.out.warn(format!("gen {} failed: {reason}; {}", failed.id, self.serving_note()));
        self.retire(failed, now);
        // A rolling swap may have stopped old workers already: bring them back.
        self.top_up_serving();
    }

    /// Sends a generation its stop signal and keeps it until its processes are reaped.
    fn retire(&mut self, mut generation: Generation, now: Instant) {
        generation.stop(self.config.stop_signal, self.config.stop_timeout, now);
        if !generation.is_empty() {
            self.draining.push(generation);
        }
    }

    /// `gen 3 still serving`, or what happens when nothing is.
    fn serving_note(&self) -> String {
        match &self.serving {
            Some(serving) => format!("gen {} still serving", serving.id),
            None => "nothing is serving; waiting for a change".into(),
        }
    }

    /// Serving workers whose backoff has passed start again.
    fn restart_workers(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let (Some(serving), Some(sentinel)) = (self.serving.as_mut(), self.sentinel.as_mut()) else {
            return;
        };
        for slot in serving.due_restarts(now) {
            match serving.add_worker(slot, &self.launch, sentinel) {
                Ok(pid) => self.out.info(format!("gen {} w{slot} restarted (pid {pid})", serving.id)),
                Err(e) => {
                    let delay = serving.schedule_restart(slot, now);
                    self.out.warn(format!(
                        "gen {} w{slot} could not restart: {e}; next try in {}",
                        serving.id,
                        output::duration(delay)
                    ));
                }
            }
        }
    }

    /// Draining generations past their stop timeout get SIGKILL.
    fn kill_overdue(&mut self, now: Instant) {
        if let Some(serving) = self.serving.as_mut() {
            for pid in serving.kill_overdue_retirees(now) {
                self.out.warn(format!(
                    "gen {} pid {pid} still running after {}; killed",
                    serving.id,
                    output::duration(self.config.stop_timeout)
                ));
            }
        }
        for generation in &mut self.draining {
            if let Phase::Draining { deadline, killed: false } = generation.phase
                && now >= deadline
            {
                self.out.warn(format!(
                    "gen {} still running after {}; killing {}",
                    generation.id,
                    output::duration(self.config.stop_timeout),
                    generation.describe_pids()
                ));
                generation.kill();
            }
        }
    }

    // ----- children ------------------------------------------------------------------------

    fn on_exit(&mut self, pid: Pid, status: ExitStatus) {
        let now = Instant::now();
        if self.build.as_ref().is_some_and(|(build, _)| build.pid == pid) {
            self.release_group(pid);
            if let Some((build, trigger)) = self.build.take() {
                self.build_finished(build, trigger, status);
            }
        } else if let Some(index) = self.cancelled_builds.iter().position(|p| *p == pid) {
            self.cancelled_builds.swap_remove(index);
            self.release_group(pid);
        } else if self.next.as_ref().is_some_and(|g| g.has_pid(pid)) {
            self.release_group(pid);
            let slot = match self.next.as_mut().and_then(|g| g.worker_exited(pid, status, now)) {
                Some(WorkerExit::Retired { slot } | WorkerExit::Ended { slot, .. }) => slot,
                None => 0,
            };
            self.roll_back(&format!("w{slot} (pid {pid}) {status} before it was ready"), now);
        } else if self.serving.as_ref().is_some_and(|g| g.has_pid(pid)) {
            self.release_group(pid);
            self.serving_worker_exited(pid, status, now);
        } else if let Some(index) = self.draining.iter().position(|g| g.has_pid(pid)) {
            self.release_group(pid);
            self.draining[index].worker_exited(pid, status, now);
            if self.draining[index].is_empty() {
                let generation = self.draining.remove(index);
                tracing::debug!("gen {} stopped", generation.id);
                self.out.info(format!("gen {} stopped", generation.id));
            }
        } else {
            tracing::debug!("reaped pid {pid} ({status}), not one of ours (an orphaned descendant)");
        }
    }

    /// A serving worker ended: a retiring one is simply gone; any other is restarted alone
    /// after its backoff, unless it has crashed `--max-restarts` times in a row.
    fn serving_worker_exited(&mut self, pid: Pid, status: ExitStatus, now: Instant) {
        let Some(serving) = self.serving.as_mut() else { return };
        let id = serving.id;
        match serving.worker_exited(pid, status, now) {
            Some(WorkerExit::Retired { slot }) => {
                self.out.info(format!("gen {id} w{slot} (pid {pid}) stopped"))
            }
            Some(WorkerExit::Ended { slot, crashes_in_a_row })
                if crashes_in_a_row > self.config.max_restarts =>
            {
                serving.give_up_restarts();
                self.out.error(format!(
                    "gen {id} w{slot} (pid {pid}) {status}: {crashes_in_a_row} crashes in a row; \
                     no more restarts until the next change or HUP"
                ));
            }
            Some(WorkerExit::Ended { slot, .. }) if serving.gave_up => {
                self.out.warn(format!("gen {id} w{slot} (pid {pid}) {status}; not restarted (crash loop)"));
            }
            Some(WorkerExit::Ended { slot, .. }) => {
                let delay = serving.schedule_restart(slot, now);
                self.out.warn(format!(
                    "gen {id} w{slot} (pid {pid}) {status}; restarting in {}",
                    output::duration(delay)
                ));
            }
            None => {}
        }
    }

    /// A process group's leader is gone: kill what is left of the group, stop tracking it.
    fn release_group(&mut self, pid: Pid) {
        let _ = killpg(pid, Signal::SIGKILL);
        if let Some(sentinel) = self.sentinel.as_mut() {
            sentinel.untrack(pid);
        }
    }

    fn on_notify(&mut self, note: &Notification) {
        let now = Instant::now();
        if let Some(status) = &note.status {
            tracing::info!("gen {}: STATUS={status}", note.generation);
        }
        let generations = self.next.iter_mut().chain(self.serving.iter_mut());
        for generation in generations.filter(|g| g.id == note.generation) {
            if generation.notified(note, now) {
                tracing::debug!("gen {}: READY=1 from {:?}", generation.id, note.sender);
                self.app_speaks_notify = true;
            }
        }
    }

    // ----- requests (signals) --------------------------------------------------------------

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Reload => self.trigger(Trigger::reload()),
            Request::Stop if self.shutdown.is_some() => self.begin_shutdown(Shutdown::Immediate),
            Request::Stop => self.begin_shutdown(Shutdown::Graceful),
            Request::Kill => self.begin_shutdown(Shutdown::Immediate),
            Request::Status => self.print_status(),
            Request::MoreWorkers => self.resize(1),
            Request::FewerWorkers => self.resize(-1),
        }
    }

    fn begin_shutdown(&mut self, mode: Shutdown) {
        let now = Instant::now();
        self.shutdown = Some(mode);
        self.queued = None;
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

    /// Starts serving workers until there are as many as wanted (TTIN, and after a rolling
    /// swap rolled back).
    fn top_up_serving(&mut self) {
        let (Some(serving), Some(sentinel)) = (self.serving.as_mut(), self.sentinel.as_mut()) else { return };
        while serving.active_count() < self.workers as usize {
            let slot = serving.free_slot();
            match serving.add_worker(slot, &self.launch, sentinel) {
                Ok(pid) => self.out.info(format!("gen {} w{slot} started (pid {pid})", serving.id)),
                Err(e) => {
                    self.out.warn(format!("gen {} w{slot} could not start: {e}", serving.id));
                    return;
                }
            }
        }
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
        let table = lines.join("\n");
        // Written whole, then renamed, so a reader never sees half a table.
        let (temp, file) = (self.runtime_dir.join("status.tmp"), self.runtime_dir.join("status"));
        if let Err(e) =
            std::fs::write(&temp, format!("{table}\n")).and_then(|()| std::fs::rename(&temp, &file))
        {
            tracing::debug!("cannot write the status file: {e}");
        }
        self.out.info(table);
    }

    /// Removes what devserve created; the sentinel has nothing left to do.
    fn clean_up(&mut self) {
        sockets::remove_unix_files(&self.sockets);
        self.serving = None;
        self.next = None;
        self.draining.clear();
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
        if let Some(sentinel) = self.sentinel.take() {
            sentinel.disarm();
        }
    }
}
