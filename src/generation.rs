//! A generation: N worker processes started together from one build, sharing the held sockets
//! and one NOTIFY_SOCKET, and the state of each worker.
//!
//! This module knows how to start, signal and account for workers; it decides nothing. When to
//! promote, roll back, restart or kill is the supervisor's call. Processes are started and
//! signalled only through the process table ([`Procs`]), so a generation can be driven in unit
//! tests without any process. A generation holds the sockets its workers were given (through
//! its [`Launch`]), so a socket replaced by a config edit closes when the last generation that
//! uses it is gone.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::event::{ExitStatus, Notification};
use crate::output;
use crate::procs::{NotifyEndpoint, Owner, Procs, Snapshot};
use crate::sockets::NamedSocket;
use crate::spawn::{Command, SpawnError};

/// Restart delay after the first crash; doubles with each crash in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A worker that stayed up this long before exiting starts its backoff afresh.
const STABLE_UPTIME: Duration = Duration::from_secs(10);

/// How every worker of every generation is started.
#[derive(Debug, Clone)]
pub struct Launch {
    pub command: Vec<OsString>,
    /// Extra environment (`--env`, the config file's `[env]`).
    pub env: Vec<(String, String)>,
    /// The held sockets, placed at fds 3, 4, … (shared: see the module doc).
    pub sockets: Vec<NamedSocket>,
    pub listen_pid: bool,
    /// `--watchdog`: given to workers as `WATCHDOG_USEC`.
    pub watchdog: Option<Duration>,
    /// Behind the front door: the port each worker listens on.
    pub upstream: Upstream,
    /// `--ready-path`: readiness by an HTTP GET on the worker's port.
    pub ready_path: Option<String>,
    /// With several services: where workers write their stdout and stderr (a pipe devserve
    /// reads, to put the service's name before each line).
    pub output: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

/// What it takes to start a generation again the way an earlier one was started: its launch
/// and its program copy (kept alive by this value).
#[derive(Debug)]
pub struct Relaunch {
    pub launch: Launch,
    pub snapshot: Option<Snapshot>,
}

/// `--accept`'s unit of a swap: one build's program, started once per connection instead of as
/// long-lived workers. It keeps its program copy like a generation's, and the same number space
/// (`gen N` in every line).
#[derive(Debug)]
pub struct Program {
    pub id: u64,
    relaunch: Relaunch,
    /// Where `PATH` led the program, when it is not run from a copy.
    resolved: Option<std::path::PathBuf>,
}

impl Program {
    /// Makes the program copy (as [`Generation::start`] does) and nothing else: no process runs
    /// until a connection comes. A program found on `PATH` is looked up once, here.
    pub fn prepare(id: u64, launch: Launch, procs: &mut dyn Procs) -> Program {
        let snapshot = snapshot_wanted(&launch).and_then(|program| procs.snapshot(id, &program).ok());
        let resolved = match &snapshot {
            Some(_) => None,
            None => launch.command.first().and_then(|program| Command::new(program).resolve().ok()),
        };
        Program { id, relaunch: Relaunch { launch, snapshot }, resolved }
    }

    /// Starts the command for one connection: at fd 3 with `LISTEN_FDS=1`,
    /// `LISTEN_FDNAMES=connection` and `LISTEN_PID` (or as stdin and stdout with `stdio`), and
    /// `REMOTE_ADDR`/`REMOTE_PORT` for a TCP peer, as systemd's `Accept=yes` sets them. It does
    /// not wait for the exec: the returned report says, once the process has exited, whether the
    /// exec failed ([`crate::spawn::exec_failure`]).
    pub fn start_connection(
        &self,
        stream: RawFd,
        peer: Option<std::net::SocketAddr>,
        stdio: bool,
        procs: &mut dyn Procs,
    ) -> Result<(Pid, Option<std::fs::File>), SpawnError> {
        let owner = Owner::Connection { generation: self.id };
        procs.spawn_unconfirmed(self.command(stream, peer, stdio), owner)
    }

    /// The command for one connection (see [`Program::start_connection`]).
    pub fn command(&self, stream: RawFd, peer: Option<std::net::SocketAddr>, stdio: bool) -> Command {
        let launch = &self.relaunch.launch;
        let (program, args) = match launch.command.split_first() {
            Some((program, args)) => (program.clone(), args),
            None => (OsString::new(), &[][..]),
        };
        let mut command = Command::new(program);
        if let Some(path) = self.relaunch.snapshot.as_ref().map(|s| &s.path).or(self.resolved.as_ref()) {
            command = command.exec_path(path);
        }
        let mut command = command.args(args).env("DEVSERVE_GENERATION", self.id.to_string());
        for (key, value) in &launch.env {
            command = command.env(key, value);
        }
        if let Some(addr) = peer {
            command =
                command.env("REMOTE_ADDR", addr.ip().to_string()).env("REMOTE_PORT", addr.port().to_string());
        }
        if stdio {
            command.stdio(stream)
        } else {
            command
                .env("LISTEN_FDS", "1")
                .env("LISTEN_FDNAMES", "connection")
                .sockets(vec![stream], launch.listen_pid)
        }
    }
}

/// Where a worker behind the front door (`--proxy`) listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Not behind the front door.
    None,
    /// A free loopback port picked for each worker as it starts (`PORT`, `{port}`).
    PerWorker,
    /// `--app-port`: the port the app binds whatever it is told.
    Fixed(u16),
}

/// A loopback port that was free a moment ago. The app binds it a few milliseconds later, so
/// another process can take it in between; a worker that then exits before it is ready, with its
/// port now taken, is started again on another port instead of counting as a crash.
pub fn pick_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Whether someone else now listens on `port` (a lost race for a picked port).
pub fn port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

impl Launch {
    /// `LISTEN_FDNAMES`, colon-separated.
    fn fd_names(&self) -> String {
        self.sockets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(":")
    }

    fn raw_fds(&self) -> Vec<RawFd> {
        self.sockets.iter().map(|s| s.raw_fd()).collect()
    }
}

/// One worker slot's process and its history.
#[derive(Debug)]
pub struct Worker {
    /// 0-based; `DEVSERVE_WORKER`.
    pub slot: u32,
    pub state: WorkerState,
    /// Crashes in a row (reset once a run lasted [`STABLE_UPTIME`]).
    pub restarts: u32,
    pub last_exit: Option<ExitStatus>,
    /// The last `WATCHDOG=1` of the current process.
    pub last_ping: Option<Instant>,
    /// What the app said it is doing (`RELOADING=1`, `STOPPING=1`), for the status table.
    pub app_state: Option<&'static str>,
    /// The current process was killed for missing its watchdog.
    pub missed_watchdog: bool,
    /// Behind the front door: the loopback port the current process listens on.
    pub port: Option<u16>,
}

/// A worker's process, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Running, not yet ready.
    Starting { pid: Pid, since: Instant },
    /// Running and ready (READY=1, or up for the ready delay) since it started at `started`.
    Ready { pid: Pid, started: Instant },
    /// Exited; to be started again at `at` (serving generations only).
    Restarting { at: Instant },
    /// Told to stop on its own (one worker fewer, or a rolling swap); killed at `deadline`.
    Retiring { pid: Pid, deadline: Instant, killed: bool },
    /// Exited for good.
    Gone,
}

impl Worker {
    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            WorkerState::Starting { pid, .. }
            | WorkerState::Ready { pid, .. }
            | WorkerState::Retiring { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Running and not on its way out.
    pub fn is_active(&self) -> bool {
        matches!(self.state, WorkerState::Starting { .. } | WorkerState::Ready { .. })
    }

    fn started(&self) -> Option<Instant> {
        match self.state {
            WorkerState::Starting { since, .. } => Some(since),
            WorkerState::Ready { started, .. } => Some(started),
            _ => None,
        }
    }

    /// `pid 12, up 3.2s, ready`-style description for the status table.
    pub fn status(&self, now: Instant) -> output::status::WorkerStatus {
        use output::status::WorkerState as Shown;
        let up_ms = |since: Instant| now.saturating_duration_since(since).as_millis();
        let state = match self.state {
            WorkerState::Starting { pid, since } => {
                Shown::Starting { pid: pid.as_raw(), up_ms: up_ms(since) }
            }
            WorkerState::Ready { pid, started } => Shown::Ready {
                pid: pid.as_raw(),
                up_ms: up_ms(started),
                doing: self.app_state.map(str::to_owned),
            },
            WorkerState::Retiring { pid, .. } => Shown::Retiring { pid: pid.as_raw() },
            WorkerState::Restarting { at } => {
                Shown::Restarting { in_ms: at.saturating_duration_since(now).as_millis() }
            }
            WorkerState::Gone => Shown::Exited,
        };
        output::status::WorkerStatus {
            slot: self.slot,
            state,
            restarts: self.restarts,
            last_exit: self.last_exit.map(|s| s.to_string()),
        }
    }
}

/// What a worker's exit means for its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// It had been told to stop alone; the slot is gone.
    Retired { slot: u32 },
    /// It ended on its own: a crash (or an unexpected clean exit), the n-th in a row.
    Ended { slot: u32, crashes_in_a_row: u32 },
}

/// Why and when a generation was started: what its "ready" line and the browsers are told.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// When the change (or signal) that led to it arrived (`None`: as it starts).
    pub triggered: Option<Instant>,
    /// How long the build before it took.
    pub build_took: Option<Duration>,
    /// What triggered it ("src/main.rs changed", "rollback: the previous command").
    pub cause: String,
    /// Files changed before it (so there was a debounce wait to report).
    pub debounced: bool,
    /// The changed files when all were `.css` (a stylesheet swap in the browser).
    pub css_only: Vec<String>,
}

/// A set of workers started together.
#[derive(Debug)]
pub struct Generation {
    pub id: u64,
    pub workers: Vec<Worker>,
    pub started: Instant,
    /// When the change (or signal) that led to it arrived.
    pub triggered: Instant,
    /// How long the build before it took, for the "ready" line.
    pub build_took: Option<Duration>,
    /// What triggered it, for the "ready" line.
    pub cause: String,
    /// Crash-loop policy hit: its workers are no longer restarted.
    pub gave_up: bool,
    /// A worker asked for more time to get ready (`EXTEND_TIMEOUT_USEC`).
    pub extended_until: Option<Instant>,
    /// Files changed before it (so there was a debounce wait to report).
    pub debounced: bool,
    /// The changed files when all were `.css` (a stylesheet swap in the browser).
    pub css_only: Vec<String>,
    /// A worker was taken as ready after `--ready-delay` rather than by READY=1.
    pub ready_by_delay: bool,
    /// How its workers are started (restarts too), fixed when it starts.
    launch: Launch,
    /// The copy of a compiled program its workers run (see [`snapshot_wanted`]).
    snapshot: Option<Snapshot>,
    notify: NotifyEndpoint,
}

impl Generation {
    /// Opens the generation's notify socket and starts `count` workers. On a spawn failure the
    /// workers already started are killed and the error is returned.
    pub fn start(
        id: u64,
        count: u32,
        launch: Launch,
        provenance: Provenance,
        procs: &mut dyn Procs,
        now: Instant,
    ) -> Result<Generation, SpawnError> {
        Generation::start_from(id, count, Relaunch { launch, snapshot: None }, provenance, procs, now)
    }

    /// [`Generation::start`] from a previous generation's launch and program copy (a rollback
    /// that restarts the old command); without a copy, one is made as usual.
    pub fn start_from(
        id: u64,
        count: u32,
        previous: Relaunch,
        provenance: Provenance,
        procs: &mut dyn Procs,
        now: Instant,
    ) -> Result<Generation, SpawnError> {
        let Relaunch { launch, snapshot: kept } = previous;
        let notify = procs.open_notify(id).map_err(SpawnError::Setup)?;
        let snapshot = kept.or_else(|| {
            snapshot_wanted(&launch).and_then(|program| match procs.snapshot(id, &program) {
                Ok(snapshot) => Some(snapshot),
                Err(e) => {
                    tracing::warn!(
                        "gen {id}: no copy of {}: {e}; workers run the file itself",
                        program.display()
                    );
                    None
                }
            })
        });
        let mut generation = Generation {
            id,
            workers: Vec::new(),
            started: now,
            triggered: provenance.triggered.unwrap_or(now),
            build_took: provenance.build_took,
            cause: provenance.cause,
            gave_up: false,
            extended_until: None,
            debounced: provenance.debounced,
            css_only: provenance.css_only,
            ready_by_delay: false,
            launch,
            snapshot,
            notify,
        };
        for slot in 0..count {
            if let Err(e) = generation.add_worker(slot, procs, now) {
                generation.kill(procs);
                return Err(e);
            }
        }
        Ok(generation)
    }

    /// Starts a worker in `slot` (a new slot, or one waiting to restart).
    pub fn add_worker(&mut self, slot: u32, procs: &mut dyn Procs, now: Instant) -> Result<Pid, SpawnError> {
        let owner = Owner::Worker { generation: self.id, slot };
        let port = match self.launch.upstream {
            Upstream::None => None,
            Upstream::PerWorker => Some(pick_port().map_err(SpawnError::Setup)?),
            Upstream::Fixed(port) => Some(port),
        };
        let pid = match (&self.snapshot, procs.spawn(self.command(slot, port), owner)) {
            // The copy cannot be executed (a runtime dir on a noexec mount): the file itself.
            (Some(_), Err(SpawnError::Exec(_, e))) if e.raw_os_error() == Some(libc::EACCES) => {
                tracing::warn!(
                    "gen {}: cannot execute the program's copy ({e}); running the file itself",
                    self.id
                );
                self.snapshot = None;
                procs.spawn(self.command(slot, port), owner)?
            }
            (_, spawned) => spawned?,
        };
        let state = WorkerState::Starting { pid, since: now };
        match self.workers.iter_mut().find(|w| w.slot == slot) {
            Some(worker) => {
                worker.state = state;
                worker.last_ping = None;
                worker.app_state = None;
                worker.missed_watchdog = false;
                worker.port = port;
            }
            None => self.workers.push(Worker {
                slot,
                state,
                restarts: 0,
                last_exit: None,
                last_ping: None,
                app_state: None,
                missed_watchdog: false,
                port,
            }),
        }
        if let Some(port) = port {
            procs.probe_upstream(self.id, pid, port, self.launch.ready_path.clone());
        } else if !self.launch.sockets.is_empty() {
            let held = self
                .launch
                .sockets
                .iter()
                .filter_map(|s| Some((s.bound.clone(), crate::ports::own_socket_inode(s.raw_fd())?)))
                .collect();
            procs.watch_handover(self.id, pid, held);
        }
        Ok(pid)
    }

    /// The command for the worker in `slot`: the program, the generation's environment and the
    /// held sockets, or behind the front door its port (`PORT`, `DEVSERVE_UPSTREAM` and `{port}`
    /// in the arguments).
    fn command(&self, slot: u32, port: Option<u16>) -> Command {
        let launch = &self.launch;
        let (program, args) = match launch.command.split_first() {
            Some((program, args)) => (program.clone(), args),
            None => (OsString::new(), &[][..]),
        };
        let args: Vec<OsString> = match port {
            Some(port) => args.iter().map(|a| with_port(a, port)).collect(),
            None => args.to_vec(),
        };
        let mut command = Command::new(program);
        if let Some(snapshot) = &self.snapshot {
            command = command.exec_path(&snapshot.path);
        }
        let mut command = command
            .args(args)
            .env("NOTIFY_SOCKET", &self.notify.path)
            .env("DEVSERVE_GENERATION", self.id.to_string())
            .env("DEVSERVE_WORKER", slot.to_string());
        for (key, value) in &launch.env {
            command = command.env(key, value);
        }
        if let Some(watchdog) = launch.watchdog {
            // WATCHDOG_PID: `sd_watchdog_enabled()` then answers yes in the worker only, not in
            // the processes it starts.
            command =
                command.env("WATCHDOG_USEC", watchdog.as_micros().to_string()).own_pid_env("WATCHDOG_PID");
        }
        if let Some(port) = port {
            command =
                command.env("PORT", port.to_string()).env("DEVSERVE_UPSTREAM", format!("127.0.0.1:{port}"));
        }
        if let Some(output) = &launch.output {
            command = command.output_to(std::os::fd::AsRawFd::as_raw_fd(output.as_ref()));
        }
        if !launch.sockets.is_empty() {
            command = command
                .env("LISTEN_FDS", launch.sockets.len().to_string())
                .env("LISTEN_FDNAMES", launch.fd_names())
                .sockets(launch.raw_fds(), launch.listen_pid);
        }
        command
    }

    /// Records a worker's exit. A retiring worker's slot is freed; for any other the caller
    /// decides whether it restarts.
    pub fn worker_exited(&mut self, pid: Pid, status: ExitStatus, now: Instant) -> Option<WorkerExit> {
        let index = self.workers.iter().position(|w| w.pid() == Some(pid))?;
        if let WorkerState::Retiring { .. } = self.workers[index].state {
            let worker = self.workers.remove(index);
            return Some(WorkerExit::Retired { slot: worker.slot });
        }
        let worker = &mut self.workers[index];
        if worker.started().is_some_and(|s| now.duration_since(s) >= STABLE_UPTIME) {
            worker.restarts = 0;
        }
        worker.last_exit = Some(status);
        worker.state = WorkerState::Gone;
        Some(WorkerExit::Ended { slot: worker.slot, crashes_in_a_row: worker.restarts + 1 })
    }

    /// Where the longest-running active worker is in `workers`: the one a TTOU or a rolling step
    /// stops.
    fn oldest_active(&self) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.is_active())
            .min_by_key(|(_, w)| w.started())
            .map(|(i, _)| i)
    }

    /// The pid and port of the worker [`Generation::retire_oldest`] would stop, behind the front
    /// door.
    pub fn oldest_active_pid_and_port(&self) -> Option<(Pid, Option<u16>)> {
        let worker = self.workers.get(self.oldest_active()?)?;
        Some((worker.pid()?, worker.port))
    }

    /// Whether a ready worker other than `except` listens on `port` (with `--app-port` every
    /// worker shares one).
    pub fn port_served_by_another(&self, port: u16, except: Pid) -> bool {
        self.workers.iter().any(|w| {
            w.port == Some(port) && w.pid() != Some(except) && matches!(w.state, WorkerState::Ready { .. })
        })
    }

    /// Asks the longest-running active worker alone to stop (SIGTTOU, rolling swaps).
    pub fn retire_oldest(
        &mut self,
        signal: Signal,
        timeout: Duration,
        now: Instant,
        procs: &mut dyn Procs,
    ) -> Option<(u32, Pid)> {
        let oldest = self.oldest_active()?;
        let worker = self.workers.get_mut(oldest)?;
        let pid = worker.pid()?;
        procs.signal(pid, signal);
        worker.state = WorkerState::Retiring { pid, deadline: deadline(now, timeout), killed: false };
        Some((worker.slot, pid))
    }

    /// Retiring workers past their deadline get SIGKILL; returns their pids.
    pub fn kill_overdue_retirees(&mut self, now: Instant, procs: &mut dyn Procs) -> Vec<Pid> {
        let mut killed_now = Vec::new();
        for worker in &mut self.workers {
            if let WorkerState::Retiring { pid, deadline, killed: false } = worker.state
                && now >= deadline
            {
                procs.signal(pid, Signal::SIGKILL);
                worker.state = WorkerState::Retiring { pid, deadline, killed: true };
                killed_now.push(pid);
            }
        }
        killed_now
    }

    pub fn next_retiree_deadline(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter_map(|w| match w.state {
                WorkerState::Retiring { deadline, killed: false, .. } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// The lowest slot number not in use.
    pub fn free_slot(&self) -> u32 {
        (0..).find(|slot| !self.workers.iter().any(|w| w.slot == *slot)).unwrap_or(0)
    }

    /// Workers running and not retiring.
    pub fn active_count(&self) -> usize {
        self.workers.iter().filter(|w| w.is_active()).count()
    }

    /// Stops restarting: every slot waiting for a restart is given up.
    pub fn give_up_restarts(&mut self) {
        self.cancel_restarts();
        self.gave_up = true;
    }

    /// Slots waiting for a restart will not get one.
    fn cancel_restarts(&mut self) {
        for worker in &mut self.workers {
            if let WorkerState::Restarting { .. } = worker.state {
                worker.state = WorkerState::Gone;
            }
        }
    }

    /// Schedules `slot` to start again after its backoff; returns the delay.
    pub fn schedule_restart(&mut self, slot: u32, now: Instant) -> Duration {
        let Some(worker) = self.workers.iter_mut().find(|w| w.slot == slot) else {
            return Duration::ZERO;
        };
        let delay = backoff(worker.restarts);
        worker.restarts += 1;
        worker.state = WorkerState::Restarting { at: deadline(now, delay) };
        delay
    }

    /// The backoff the next restart of `slot` will wait (what [`Generation::schedule_restart`]
    /// would schedule now).
    pub fn next_backoff(&self, slot: u32) -> Duration {
        backoff(self.workers.iter().find(|w| w.slot == slot).map_or(0, |w| w.restarts))
    }

    /// Slots whose restart time has come.
    pub fn due_restarts(&self, now: Instant) -> Vec<u32> {
        self.workers
            .iter()
            .filter(|w| matches!(w.state, WorkerState::Restarting { at } if at <= now))
            .map(|w| w.slot)
            .collect()
    }

    /// Applies a READY=1 (or other) notification; true if it made a worker ready.
    pub fn notified(&mut self, note: &Notification, now: Instant) -> bool {
        let by_sender = |w: &Worker| {
            let pid = w.pid();
            pid.is_some() && (pid == note.sender || pid == note.sender_group)
        };
        let index = match note.sender {
            Some(_) => self.workers.iter().position(by_sender),
            // No credentials (not Linux): READY=1 goes to the first worker still starting.
            None if note.ready => {
                self.workers.iter().position(|w| matches!(w.state, WorkerState::Starting { .. }))
            }
            None => None,
        };
        if let Some(extra) = note.extend_timeout {
            let until = deadline(now, extra);
            self.extended_until = Some(self.extended_until.map_or(until, |known| known.max(until)));
        }
        let Some(worker) = index.and_then(|i| self.workers.get_mut(i)) else { return false };
        if note.watchdog {
            worker.last_ping = Some(now);
        }
        if note.reloading {
            worker.app_state = Some("reloading");
        }
        if note.stopping {
            worker.app_state = Some("stopping");
        }
        if !note.ready {
            return false;
        }
        worker.app_state = None;
        // With --ready-path the app's own word is not enough: the probe's answer decides.
        if self.launch.ready_path.is_some() {
            return false;
        }
        mark_ready(self.id, worker)
    }

    /// Whether the build just rewrote the program into byte for byte the one this generation runs:
    /// both a compiled executable named by path (see [`snapshot_wanted`]), the file rewritten or
    /// replaced since this generation's copy was made, and identical to it. False for an
    /// interpreter or a script (its sources are not the program file), when there is no copy to
    /// compare with, and when the build left the file alone: then it may have made something
    /// else the app reads (assets, templates, data), and a swap is what the user expects.
    pub fn runs_same_program(&self, launch: &Launch) -> bool {
        let (Some(snapshot), Some(program)) = (&self.snapshot, snapshot_wanted(launch)) else { return false };
        let rewritten = snapshot.source.is_some() && crate::procs::file_stamp(&program) != snapshot.source;
        launch.command == self.launch.command
            && rewritten
            && same_bytes(&snapshot.path, &program).unwrap_or(false)
    }

    /// How to start this generation's command again later; its program copy moves along.
    pub fn relaunch(&mut self) -> Relaunch {
        Relaunch { launch: self.launch.clone(), snapshot: self.snapshot.take() }
    }

    /// The front door's prober found the worker's port accepting (and `--ready-path` answering):
    /// that worker is ready. True if it made a worker ready.
    pub fn upstream_ready(&mut self, pid: Pid) -> bool {
        let id = self.id;
        match self.workers.iter_mut().find(|w| w.pid() == Some(pid)) {
            Some(worker) => mark_ready(id, worker),
            None => false,
        }
    }

    /// The private addresses of the ready workers, for the front door.
    pub fn ready_upstreams(&self) -> Vec<std::net::SocketAddr> {
        self.workers
            .iter()
            .filter(|w| matches!(w.state, WorkerState::Ready { .. }))
            .filter_map(|w| w.port)
            .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .collect()
    }

    /// The pid of the active worker listening on `port`.
    pub fn pid_on_port(&self, port: u16) -> Option<Pid> {
        self.workers.iter().filter(|w| w.is_active() && w.port == Some(port)).find_map(Worker::pid)
    }

    /// The pid of the worker in `slot`.
    pub fn pid_of_slot(&self, slot: u32) -> Option<Pid> {
        self.workers.iter().find(|w| w.slot == slot).and_then(Worker::pid)
    }

    /// Asks the worker running as `pid` alone to stop (`--max-requests`); its slot goes once it
    /// exits. Returns its slot.
    pub fn retire_worker(
        &mut self,
        pid: Pid,
        signal: Signal,
        timeout: Duration,
        now: Instant,
        procs: &mut dyn Procs,
    ) -> Option<u32> {
        let worker = self.workers.iter_mut().find(|w| w.pid() == Some(pid) && w.is_active())?;
        procs.signal(pid, signal);
        worker.state = WorkerState::Retiring { pid, deadline: deadline(now, timeout), killed: false };
        Some(worker.slot)
    }

    /// The slot of the worker running as `pid`.
    pub fn slot_of(&self, pid: Pid) -> Option<u32> {
        self.workers.iter().find(|w| w.pid() == Some(pid)).map(|w| w.slot)
    }

    /// The worker running as `pid` listens on `port` of its own, not on the port it was given:
    /// from now on its port is that one, and so is every later worker's of this generation (as
    /// with `--app-port`). False if no such worker.
    pub fn adopt_port(&mut self, pid: Pid, port: u16) -> bool {
        let Some(worker) = self.workers.iter_mut().find(|w| w.pid() == Some(pid)) else { return false };
        worker.port = Some(port);
        self.launch.upstream = Upstream::Fixed(port);
        true
    }

    /// The port of the worker running as `pid`.
    pub fn port_of(&self, pid: Pid) -> Option<u16> {
        self.workers.iter().find(|w| w.pid() == Some(pid)).and_then(|w| w.port)
    }

    /// When the ready timeout passes: `--ready-timeout` after the start, or later if a worker
    /// asked for more time (`EXTEND_TIMEOUT_USEC`).
    pub fn ready_deadline(&self, timeout: Duration) -> Instant {
        let normal = deadline(self.started, timeout);
        self.extended_until.map_or(normal, |until| until.max(normal))
    }

    /// Ready workers whose last `WATCHDOG=1` (or start) is older than `timeout`: each is marked
    /// and returned once.
    pub fn missed_watchdogs(&mut self, timeout: Duration, now: Instant) -> Vec<(u32, Pid)> {
        let mut missed = Vec::new();
        for worker in &mut self.workers {
            if let WorkerState::Ready { pid, started } = worker.state
                && !worker.missed_watchdog
                && now >= deadline(worker.last_ping.map_or(started, |ping| ping.max(started)), timeout)
            {
                worker.missed_watchdog = true;
                missed.push((worker.slot, pid));
            }
        }
        missed
    }

    /// The earliest moment a ready worker's watchdog runs out.
    pub fn next_watchdog(&self, timeout: Duration) -> Option<Instant> {
        self.workers
            .iter()
            .filter_map(|w| match w.state {
                WorkerState::Ready { started, .. } if !w.missed_watchdog => {
                    Some(deadline(w.last_ping.map_or(started, |ping| ping.max(started)), timeout))
                }
                _ => None,
            })
            .min()
    }

    /// Marks ready every worker that has been up for `delay`.
    pub fn apply_ready_delay(&mut self, delay: Duration, now: Instant) {
        for worker in &mut self.workers {
            if matches!(worker.state, WorkerState::Starting { since, .. } if now.duration_since(since) >= delay)
                && mark_ready(self.id, worker)
            {
                self.ready_by_delay = true;
            }
        }
    }

    /// The earliest moment a starting worker passes the ready delay.
    pub fn next_ready_delay(&self, delay: Duration) -> Option<Instant> {
        self.workers
            .iter()
            .filter_map(|w| match w.state {
                WorkerState::Starting { since, .. } => Some(deadline(since, delay)),
                _ => None,
            })
            .min()
    }

    pub fn next_restart(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter_map(|w| match w.state {
                WorkerState::Restarting { at } => Some(at),
                _ => None,
            })
            .min()
    }

    pub fn all_ready(&self) -> bool {
        self.workers.iter().all(|w| matches!(w.state, WorkerState::Ready { .. }))
    }

    /// No process left and none to come.
    pub fn is_empty(&self) -> bool {
        self.workers.iter().all(|w| w.state == WorkerState::Gone)
    }

    pub fn live_pids(&self) -> Vec<Pid> {
        self.workers.iter().filter_map(Worker::pid).collect()
    }

    /// Sends `signal` to every worker's process group; no restart follows.
    pub fn stop(&mut self, signal: Signal, procs: &mut dyn Procs) {
        self.cancel_restarts();
        for pid in self.live_pids() {
            procs.signal(pid, signal);
        }
    }

    /// SIGKILL to every worker's process group.
    pub fn kill(&mut self, procs: &mut dyn Procs) {
        self.stop(Signal::SIGKILL, procs);
    }
}

/// Whether two files hold the same bytes (compared in chunks, sizes first).
fn same_bytes(a: &std::path::Path, b: &std::path::Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut left, mut right) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut left)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut right[..n])?;
        if left[..n] != right[..n] {
            return Ok(false);
        }
    }
}

/// The restart delay after `restarts` crashes in a row: 100 ms, doubling up to 10 s.
fn backoff(restarts: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << restarts.min(16)).min(MAX_BACKOFF)
}

/// `arg` with every `{port}` replaced by the worker's port.
fn with_port(arg: &OsString, port: u16) -> OsString {
    match arg.to_str() {
        Some(text) if text.contains("{port}") => text.replace("{port}", &port.to_string()).into(),
        _ => arg.clone(),
    }
}

/// The program to keep a copy of, if it is worth one: a compiled executable (ELF or Mach-O)
/// named by a path (`./app`, `target/debug/app`), which a build may replace. Not a program found
/// on PATH (an interpreter: `python3`, `node`, whose source files a copy would not cover), and
/// not a script: its interpreter would see the copy's path as `$0`.
fn snapshot_wanted(launch: &Launch) -> Option<std::path::PathBuf> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let program = launch.command.first()?;
    if !program.as_bytes().contains(&b'/') {
        return None;
    }
    let path = std::path::PathBuf::from(program);
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(&path).ok()?;
    file.read_exact(&mut magic).ok()?;
    const MAGICS: [[u8; 4]; 5] = [
        *b"\x7fELF",
        [0xcf, 0xfa, 0xed, 0xfe],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xca, 0xfe, 0xba, 0xbe],
        [0xfe, 0xed, 0xfa, 0xcf],
    ];
    MAGICS.contains(&magic).then_some(path)
}

/// `from + after` without the panic of `Instant + Duration` on overflow: an unreachable moment
/// stays unreachable (settings are bounded at validation, so this is belt and braces).
pub fn deadline(from: Instant, after: Duration) -> Instant {
    from.checked_add(after).or_else(|| from.checked_add(Duration::from_secs(365 * 24 * 3600))).unwrap_or(from)
}

fn mark_ready(generation: u64, worker: &mut Worker) -> bool {
    match worker.state {
        WorkerState::Starting { pid, since } => {
            tracing::debug!("gen {generation} w{} (pid {pid}) ready", worker.slot);
            worker.state = WorkerState::Ready { pid, started: since };
            true
        }
        _ => false,
    }
}
