//! The supervisor: one loop, one owner of all state, like gunicorn's arbiter.
//!
//! `run` sets the stage (signal thread, pidfile, held sockets, runtime directory, sentinel,
//! watcher) and then loops: wait for the next [`Event`] or the next deadline, react with a short
//! named verb, repeat until everything it started is reaped. The verbs live in two files:
//! `swap.rs` (trigger, build, start a generation, promote, roll back, restart, reap) and
//! `requests.rs` (signals, the config file, status, shutdown).
//!
//! State and its meaning:
//! - `build`: the build in progress and the change it is for; a newer change cancels it.
//! - `serving`: the generation answering requests; its crashed workers restart with backoff.
//! - `next`: the generation starting; promoted when every worker is ready, rolled back when one
//!   exits first or the ready timeout passes. The old one keeps serving meanwhile.
//! - `draining`: generations told to stop; their process groups are killed at the deadline.
//! - `queued`: restart mode only (no `--listen`): a generation waiting for the old one to exit,
//!   since both would bind the same port.
//! - `sockets` / `old_sockets`: the held sockets; after a config change of `listen`, the old ones
//!   are kept until no generation started on them is left.

mod requests;
mod swap;
mod trigger;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::unistd::Pid;

use crate::build::Build;
use crate::config::{Config, Loader};
use crate::control::Pidfile;
use crate::event::{Event, ExitStatus};
use crate::generation::{Generation, Launch, Phase};
use crate::output::LogFormat;
use crate::output::Output;
use crate::runtime::RuntimeDir;
use crate::sentinel::Sentinel;
use crate::signals;
use crate::sockets::{self, HeldSocket};
use crate::watch::{self, WatchHandle};
use trigger::Trigger;

/// How a run ended, for the exit status (distinct codes matter for `--once` in CI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by a signal, or `--once` succeeded.
    Success,
    /// `--once`: the build failed.
    BuildFailed,
    /// `--once`: the generation crashed or was not ready in time.
    NotReady,
    /// `--once`: the probe command failed.
    ProbeFailed,
    /// `--once`: stopped by a signal before a verdict.
    Interrupted,
}

impl Outcome {
    /// 0, 3, 4, 5 (1 is a runtime error, 2 a usage error, and an interrupted `--once`).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Interrupted => 1,
            Outcome::BuildFailed => 3,
            Outcome::NotReady => 4,
            Outcome::ProbeFailed => 5,
        }
    }
}

/// Starts everything and supervises until stopped. Errors are one line for the user.
///
/// Whatever fails during set-up leaves nothing behind: the pidfile, the Unix socket files and
/// the runtime directory are each removed when their owner is dropped.
pub fn run(loader: Loader, config: Config) -> Result<Outcome, String> {
    let out = Output::new(config.quiet).with_json(config.log_format == LogFormat::Json);
    let (events_tx, events) = crossbeam_channel::unbounded();
    // First, so that no child can exit before SIGCHLD is handled.
    signals::spawn(events_tx.clone()).map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let pidfile = config.pidfile.as_deref().map(|p| Pidfile::create(p, &out)).transpose()?;
    let sockets = sockets::bind_all(&config.listen).map_err(|e| e.to_string())?;
    let runtime_dir = RuntimeDir::create()?;
    let mut cleanup = sockets::unix_paths(&sockets);
    cleanup.push(runtime_dir.path().to_path_buf());
    cleanup.extend(pidfile.as_ref().map(|p| p.path().to_path_buf()));
    let sentinel = Sentinel::spawn(&cleanup).map_err(|e| format!("cannot start the sentinel: {e}"))?;
    announce_sockets(&out, &sockets);
    // devserve's own files are never changes, wherever they are.
    let own_files = own_files(&cleanup);
    // `--once` reacts to nothing on disk.
    let watcher = if config.once { None } else { Some(start_watcher(&config, &own_files, &events_tx)?) };
    if let Some(handle) = &watcher {
        announce_watcher(&out, &config, handle);
    }

    let mut supervisor = Supervisor::new(loader, config, out, sockets, runtime_dir, sentinel, events_tx);
    supervisor.own_files = own_files;
    supervisor.watcher = watcher;
    supervisor.trigger(Trigger::start());
    let result = supervisor.run(&events);
    supervisor.clean_up();
    drop(pidfile);
    result
}

fn start_watcher(
    config: &Config,
    own_files: &[PathBuf],
    events: &Sender<Event>,
) -> Result<WatchHandle, String> {
    watch::spawn(config.watch.clone(), own_files.to_vec(), events.clone())
}

/// Canonical forms of devserve's own paths (runtime directory, pidfile, socket files).
fn own_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().filter_map(|p| crate::cli::absolute_file(p).ok()).collect()
}

/// `watching src, Cargo.toml (12 folders)`
fn announce_watcher(out: &Output, config: &Config, handle: &WatchHandle) {
    let cwd = std::env::current_dir().unwrap_or_default();
    let roots: Vec<String> = config.watch.roots.iter().map(|r| trigger::relative_display(r, &cwd)).collect();
    let folders = if handle.watched == 1 { "folder" } else { "folders" };
    out.info(format!("watching {} ({} {folders})", roots.join(", "), handle.watched));
}

fn announce_sockets(out: &Output, sockets: &[HeldSocket]) {
    announce_listening(out, sockets);
    if sockets.is_empty() {
        out.info("no --listen: restart mode (the app binds its own port; old and new cannot overlap)");
    }
}

/// `listening on 127.0.0.1:8080 (fd 3, listen0)`, one line a socket.
fn announce_listening(out: &Output, sockets: &[HeldSocket]) {
    for (index, socket) in sockets.iter().enumerate() {
        out.info(format!("listening on {} (fd {}, {})", socket.bound, 3 + index, socket.name));
    }
}

/// How every process of a generation is started, from the config and the held sockets.
fn launch_for(config: &Config, sockets: &[HeldSocket]) -> Launch {
    Launch {
        command: config.command.clone(),
        env: config.env.clone(),
        sockets: sockets.iter().map(HeldSocket::raw_fd).collect(),
        fd_names: sockets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(":"),
        listen_pid: config.listen_pid,
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
    loader: Loader,
    config: Config,
    out: Output,
    sockets: Vec<HeldSocket>,
    /// Sockets replaced by a config change, kept while generations older than the id live.
    old_sockets: Vec<(u64, Vec<HeldSocket>)>,
    launch: Launch,
    runtime_dir: RuntimeDir,
    /// Paths devserve itself writes (never changes).
    own_files: Vec<PathBuf>,
    sentinel: Option<Sentinel>,
    events: Sender<Event>,
    watcher: Option<WatchHandle>,
    build: Option<(Build, Trigger)>,
    /// How the last finished build went, for the status table.
    last_build: Option<(ExitStatus, Duration, Instant)>,
    /// Builds killed because a newer change arrived, not yet reaped.
    cancelled_builds: Vec<Pid>,
    /// `--once`: the probe command and when it started, once the generation is ready.
    probe: Option<(Pid, Instant)>,
    /// `--once`: the verdict is known (a TERM before it makes the run fail).
    once_decided: bool,
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
    outcome: Outcome,
    fatal: Option<String>,
}

impl Supervisor {
    fn new(
        loader: Loader,
        config: Config,
        out: Output,
        sockets: Vec<HeldSocket>,
        runtime_dir: RuntimeDir,
        sentinel: Sentinel,
        events: Sender<Event>,
    ) -> Supervisor {
        let launch = launch_for(&config, &sockets);
        let workers = config.workers;
        Supervisor {
            loader,
            config,
            out,
            sockets,
            old_sockets: Vec::new(),
            launch,
            runtime_dir,
            own_files: Vec::new(),
            sentinel: Some(sentinel),
            events,
            watcher: None,
            build: None,
            last_build: None,
            cancelled_builds: Vec::new(),
            probe: None,
            once_decided: false,
            serving: None,
            next: None,
            draining: Vec::new(),
            queued: None,
            next_id: 1,
            workers,
            app_speaks_notify: false,
            started_once: false,
            shutdown: None,
            outcome: Outcome::Success,
            fatal: None,
        }
    }

    fn run(&mut self, events: &Receiver<Event>) -> Result<Outcome, String> {
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
                Ok(self.outcome)
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Change(change) => self.trigger(Trigger::change(change.paths, change.since)),
            Event::ConfigChanged => {
                self.reload_config();
            }
            Event::WatchProblem(text) => self.out.warn(text),
            Event::Request(request) => self.on_request(request),
            Event::Exited { pid, status } => self.on_exit(pid, status),
            Event::Notify(note) => self.on_notify(&note),
        }
    }

    /// Time-driven transitions; safe to call at any moment.
    fn tick(&mut self, now: Instant) {
        self.check_next(now);
        self.check_probe(now);
        self.restart_workers(now);
        self.kill_overdue(now);
        self.start_queued();
        self.release_old_sockets();
    }

    fn finished(&self) -> bool {
        self.shutdown.is_some()
            && self.build.is_none()
            && self.cancelled_builds.is_empty()
            && self.probe.is_none()
            && self.serving.is_none()
            && self.next.is_none()
            && self.draining.is_empty()
    }

    /// The earliest deadline the loop must wake up for.
    fn next_wakeup(&self) -> Option<Instant> {
        let mut times = Vec::new();
        if let Some(next) = &self.next {
            times.push(crate::generation::deadline(next.started, self.config.ready_timeout));
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
        if let Some((_, started)) = self.probe
            && !self.once_decided
        {
            times.push(crate::generation::deadline(started, self.config.probe_timeout));
        }
        times.into_iter().min()
    }

    /// Drops sockets replaced by a config change once no generation started on them is left.
    fn release_old_sockets(&mut self) {
        if self.old_sockets.is_empty() {
            return;
        }
        let oldest = self.next.iter().chain(&self.serving).chain(&self.draining).map(|g| g.id).min();
        let (keep, release): (Vec<_>, Vec<_>) = std::mem::take(&mut self.old_sockets)
            .into_iter()
            .partition(|(first_on_new, _)| oldest.is_some_and(|id| id < *first_on_new));
        self.old_sockets = keep;
        for (_, released) in release {
            // Dropping them closes them and removes their files.
            tracing::debug!("released {} socket(s) replaced by the config change", released.len());
        }
    }

    /// Removes what devserve created; the sentinel has nothing left to do.
    fn clean_up(&mut self) {
        self.watcher = None;
        // Dropping a held socket removes its file.
        self.sockets.clear();
        self.old_sockets.clear();
        self.serving = None;
        self.next = None;
        self.draining.clear();
        self.runtime_dir.remove();
        if let Some(sentinel) = self.sentinel.take() {
            sentinel.disarm();
        }
    }
}
