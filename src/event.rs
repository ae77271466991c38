//! The one message type of devserve: everything the supervisor learns arrives as an [`Event`]
//! on one crossbeam channel, sent by threads that only translate an OS happening into a value
//! (watcher, signal/reaper thread, notify-socket readers). Nothing else crosses threads.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Something the supervisor must react to.
#[derive(Debug)]
pub enum Event {
    /// Files changed (already filtered and debounced).
    Change(Change),
    /// devserve's own configuration file changed.
    ConfigChanged,
    /// The watcher could not do its job completely; the text says what to do about it.
    WatchProblem(String),
    /// The watcher's first walk is done: every root is watched.
    Watching { folders: usize },
    /// The watcher's first walk failed (the inotify limit, say): one line with the fix.
    WatchFailed(String),
    /// A control signal arrived.
    Request(Request),
    /// A child of devserve was reaped.
    Exited { pid: Pid, status: ExitStatus },
    /// A datagram arrived on a generation's NOTIFY_SOCKET.
    Notify(Notification),
    /// Behind the front door: a worker's port accepts (and `--ready-path` answers below 500).
    UpstreamReady { generation: u64, pid: Pid },
    /// A worker does not listen where devserve expects it to: it was given `given` (its port
    /// behind the front door; `None` under `--listen`, where it was given the held sockets) and
    /// listens on `found` instead (empty: on nothing yet).
    OwnPort { generation: u64, pid: Pid, given: Option<u16>, found: Vec<u16> },
    /// Under `--listen`: connections wait in a held socket's queue and no worker accepts them.
    NotAccepting { generation: u64, pid: Pid, address: String, queued: u64 },
    /// The front door reports.
    Front(FrontEvent),
    /// A key pressed on devserve's terminal that is no signal's request.
    Key(Key),
    /// `--accept`: a connection accepted on a held socket, for a process of its own.
    Connection(Connection),
    /// `--accept`: the acceptor started `program`'s process for a connection itself (the serving
    /// program, no trial pending); its exec report is read once it has exited.
    Started { pid: Pid, program: u64, peer: Option<std::net::SocketAddr>, report: std::fs::File },
    /// A devserve started for an upgrade says how its start went.
    Successor { pid: Pid, news: SuccessorNews },
}

/// What a devserve started for an upgrade tells the one that started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuccessorNews {
    /// Its first generation is ready: it serves.
    Ready,
    /// Its first start failed (why): it exits.
    Failed(String),
}

/// A connection `--accept` took, and who is at the other end (`None`: a Unix socket).
#[derive(Debug)]
pub struct Connection {
    pub stream: std::os::fd::OwnedFd,
    pub peer: Option<std::net::SocketAddr>,
}

/// What a key on the terminal asks for (besides the requests signals also make).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `c`: clear the screen.
    Clear,
    /// `?`: the keys, in one line.
    Help,
    /// `r` then a letter, with several services: reload the first service whose name starts
    /// with it.
    ReloadService(char),
}

/// What the front door (`--proxy`) tells the supervisor.
///
/// It mirrors the proxy's `ProxyEvent` on purpose: this module is the bottom layer, which every
/// thread's messages go through, and cannot name a type of the proxy's layer above it (the
/// layering test); the supervisor's event sink translates one into the other, variant for
/// variant, in one `match` (`supervisor::start_front`), so a new proxy event fails to compile
/// until it is given a meaning here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontEvent {
    /// A generation asked to drain has nothing in flight any more: it can be stopped.
    Drained { generation: u64 },
    /// Connections still open to a generation at its stop timeout were closed.
    Closed { generation: u64, connections: usize },
    /// Requests held and retried since the previous routing change.
    Counters { site: usize, held: u64, retried: u64, failed: u64 },
    /// The front door could not do its job: one line for the user.
    Problem(String),
    /// The front door refused a request (allowed hosts, cross-site checks); once per value and
    /// minute.
    Refused { check: &'static str, value: String, text: String },
    /// A worker of `generation` at `upstream` was sent its `--max-requests`: replace it.
    Recycle { generation: u64, upstream: std::net::SocketAddr, requests: u64 },
}

/// A debounced set of changed paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub paths: Vec<PathBuf>,
    /// When the burst's first event arrived (the debounce wait is part of the reload time).
    pub since: Instant,
}

/// What a signal sent to devserve asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGHUP: build and start a new generation now.
    Reload,
    /// SIGTERM / SIGINT: stop gracefully (a second one: at once).
    Stop,
    /// SIGQUIT: stop at once.
    Kill,
    /// SIGUSR1: print the status table.
    Status,
    /// SIGTTIN: one worker more.
    MoreWorkers,
    /// SIGTTOU: one worker fewer.
    FewerWorkers,
    /// SIGUSR2: start the devserve binary now at its path, hand it the sockets, and retire once it
    /// serves (see `supervisor::upgrades`).
    Upgrade,
    /// From the devserve that started this one (never a signal): a newer devserve serves now;
    /// stop accepting, drain and exit.
    Retire,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(Signal),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exited with status {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by {}", signal.as_str()),
        }
    }
}

/// One sd_notify datagram, attributed by the kernel's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The generation whose socket received it.
    pub generation: u64,
    /// The sender's pid (SCM_CREDENTIALS), if the kernel told.
    pub sender: Option<Pid>,
    /// The sender's process group at receipt, to attribute a grandchild's message to its worker.
    pub sender_group: Option<Pid>,
    pub ready: bool,
    /// `WATCHDOG=1`: the worker is alive (with `--watchdog`).
    pub watchdog: bool,
    /// `RELOADING=1`: the worker is reloading itself (until its next `READY=1`).
    pub reloading: bool,
    /// `STOPPING=1`: the worker is shutting down.
    pub stopping: bool,
    /// `EXTEND_TIMEOUT_USEC=N`: the starting worker asks for this much more time to be ready.
    pub extend_timeout: Option<std::time::Duration>,
    pub status: Option<String>,
}

#[cfg(test)]
impl Notification {
    /// `READY=1` from worker `pid` of `generation`, as the policy tests send it.
    pub fn ready_from(generation: u64, pid: Pid) -> Notification {
        Notification {
            generation,
            sender: Some(pid),
            sender_group: Some(pid),
            ready: true,
            watchdog: false,
            reloading: false,
            stopping: false,
            extend_timeout: None,
            status: None,
        }
    }
}
