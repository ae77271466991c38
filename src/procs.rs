//! The process table: every child devserve starts, who owns it, and the one way to signal,
//! track and route them.
//!
//! Contract:
//! - Every child (worker, build, probe) is started here, leads its own process group, and is
//!   declared to the sentinel at once; its owner is recorded in one pid → [`Owner`] map. The
//!   exception is `--accept`'s process per connection ([`Procs::spawn_unconfirmed`]): hundreds a
//!   second, each short-lived, they are not declared group by group; PR_SET_PDEATHSIG ends each
//!   one, and the sentinel's marker sweep what they started, should devserve die (only a
//!   descendant that also clears its environment would escape).
//! - An exit is routed by one lookup ([`Procs::reaped`]): the rest of the child's group is
//!   SIGKILLed, the sentinel forgets the group, and the owner is returned. A pid nobody owns is an
//!   orphaned descendant that devserve, as subreaper, reaped.
//! - Signals go to whole process groups ([`Procs::signal`]).
//! - Every child carries the run's marker in `DEVSERVE_RUN`; at a clean exit [`Procs::disarm`]
//!   kills whatever still carries it (the sentinel does the same if devserve dies).
//! - The sentinel itself is a child: [`Procs::reaped`] answers [`Owner::Sentinel`] for it, and
//!   [`Procs::restart_sentinel`] starts a new one that knows every group.
//!
//! [`Procs`] is a trait so that the supervisor's policy can be driven in unit tests by a fake
//! table that records what it was asked to do ([`FakeProcs`]), without any process.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::event::Event;
use crate::readiness::NotifySocket;
use crate::sentinel::Sentinel;
use crate::spawn::{Command, SpawnError};

/// Who a child process belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A worker of a generation, in a slot (`DEVSERVE_WORKER`).
    Worker { generation: u64, slot: u32 },
    /// The build in progress.
    Build,
    /// A build cancelled by a newer change, not yet reaped.
    CancelledBuild,
    /// `--once`'s probe.
    Probe,
    /// The sentinel (see [`crate::sentinel`]).
    Sentinel,
    /// `--open`'s `xdg-open` (or `open`), opening the front door in a browser.
    Opener,
    /// `--accept`: the process for one connection, running `generation`'s program.
    Connection { generation: u64 },
    /// A devserve started from the binary at devserve's path, for an upgrade.
    Successor,
}

/// A generation's `NOTIFY_SOCKET`: its path, and the socket kept open while it lives.
#[derive(Debug)]
pub struct NotifyEndpoint {
    pub path: PathBuf,
    _socket: Option<NotifySocket>,
}

/// A generation's copy of its program (made when it starts); the file goes with the value.
#[derive(Debug)]
pub struct Snapshot {
    pub path: PathBuf,
    /// The source file's identity when it was copied: (device, inode, modification time in ns).
    pub source: Option<(u64, u64, i128)>,
    remove: bool,
}

/// A file's identity as a build leaves it: (device, inode, modification time in ns). A build
/// that rewrites or replaces the file changes it; one that leaves the file alone does not.
pub fn file_stamp(path: &Path) -> Option<(u64, u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())))
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the supervisor may do to processes.
pub trait Procs {
    /// Starts `command` as the child owned by `owner`.
    fn spawn(&mut self, command: Command, owner: Owner) -> Result<Pid, SpawnError>;
    /// [`Procs::spawn`] without waiting for the exec (see [`Command::spawn_unconfirmed`]): the
    /// exec report comes back to read once the child has exited (`None` in the fake table).
    fn spawn_unconfirmed(
        &mut self,
        command: Command,
        owner: Owner,
    ) -> Result<(Pid, Option<std::fs::File>), SpawnError>;
    /// Records a child started elsewhere (`--accept`'s acceptor thread, see [`Procs::marker`]) as
    /// `owner`'s.
    fn adopt(&mut self, pid: Pid, owner: Owner);
    /// The `DEVSERVE_RUN` value children carry, for a child started elsewhere.
    fn marker(&self) -> String;
    /// Sends `signal` to the process group led by `leader`.
    fn signal(&mut self, leader: Pid, signal: Signal);
    /// Records that the child was reaped: kills what is left of its group, forgets it, and says
    /// whose it was (`None`: an orphaned descendant).
    fn reaped(&mut self, pid: Pid) -> Option<Owner>;
    /// Changes the owner of a live child (a build that was cancelled).
    fn reassign(&mut self, pid: Pid, owner: Owner);
    /// Children still running, the sentinel aside.
    fn live(&self) -> usize;
    /// Opens a generation's notify socket.
    fn open_notify(&mut self, generation: u64) -> io::Result<NotifyEndpoint>;
    /// The sentinel died: start a new one with everything it must know. Returns its pid.
    fn restart_sentinel(&mut self) -> io::Result<Pid>;
    /// A private copy of `program` for `generation` to start (and restart) its workers from,
    /// removed when the returned value is dropped.
    fn snapshot(&mut self, generation: u64, program: &Path) -> io::Result<Snapshot>;
    /// Watches a worker behind the front door until its port accepts (and `ready_path` answers
    /// below 500): then [`Event::UpstreamReady`] arrives. Gives up when the worker is gone.
    fn probe_upstream(&mut self, generation: u64, pid: Pid, port: u16, ready_path: Option<String>);
    /// Watches a worker given the held sockets (`--listen`) for a while: [`Event::OwnPort`] if it
    /// listens on a port of its own instead, [`Event::NotAccepting`] if connections wait in a held
    /// socket's queue while nothing accepts them. `held`: (address, socket inode) per socket.
    fn watch_handover(&mut self, generation: u64, pid: Pid, held: Vec<(String, u64)>);
    /// Another path for the sentinel to remove should devserve die.
    fn add_cleanup(&mut self, path: &Path);
    /// Clean exit: the sentinel has nothing left to do.
    fn disarm(&mut self);
}

/// The real table, on the OS.
pub struct OsProcs {
    owners: HashMap<Pid, Owner>,
    sentinel: Option<Sentinel>,
    /// This run's marker (see [`crate::sentinel::sweep`]), and the value children get.
    marker: String,
    marker_value: String,
    runtime_dir: PathBuf,
    events: Sender<Event>,
}

impl OsProcs {
    /// `marker` must be the one the sentinel was started with.
    pub fn new(sentinel: Sentinel, marker: String, runtime_dir: &Path, events: Sender<Event>) -> OsProcs {
        let mut owners = HashMap::new();
        owners.insert(sentinel.pid(), Owner::Sentinel);
        let marker_value = crate::sentinel::marker_value(&marker);
        OsProcs {
            owners,
            sentinel: Some(sentinel),
            marker,
            marker_value,
            runtime_dir: runtime_dir.to_path_buf(),
            events,
        }
    }
}

impl Procs for OsProcs {
    fn spawn(&mut self, command: Command, owner: Owner) -> Result<Pid, SpawnError> {
        let pid = command.env(crate::sentinel::MARKER_VAR, &self.marker_value).spawn()?;
        if let Some(sentinel) = self.sentinel.as_mut() {
            sentinel.track(pid);
        }
        self.owners.insert(pid, owner);
        tracing::debug!("started pid {pid} for {owner:?}");
        Ok(pid)
    }

    fn spawn_unconfirmed(
        &mut self,
        command: Command,
        owner: Owner,
    ) -> Result<(Pid, Option<std::fs::File>), SpawnError> {
        let (pid, report) =
            command.env(crate::sentinel::MARKER_VAR, &self.marker_value).spawn_unconfirmed()?;
        if let Some(sentinel) = self.sentinel.as_mut() {
            sentinel.track(pid);
        }
        self.owners.insert(pid, owner);
        Ok((pid, Some(report)))
    }

    fn adopt(&mut self, pid: Pid, owner: Owner) {
        self.owners.insert(pid, owner);
    }

    fn marker(&self) -> String {
        self.marker_value.clone()
    }

    fn signal(&mut self, leader: Pid, signal: Signal) {
        if let Err(e) = killpg(leader, signal) {
            tracing::debug!("killpg({leader}, {signal}) failed: {e}");
        }
    }

    fn reaped(&mut self, pid: Pid) -> Option<Owner> {
        let owner = self.owners.remove(&pid)?;
        if owner != Owner::Sentinel {
            let _ = killpg(pid, Signal::SIGKILL);
            if let Some(sentinel) = self.sentinel.as_mut()
                && !matches!(owner, Owner::Connection { .. })
            {
                sentinel.untrack(pid);
            }
        }
        Some(owner)
    }

    fn reassign(&mut self, pid: Pid, owner: Owner) {
        if let Some(known) = self.owners.get_mut(&pid) {
            *known = owner;
        }
    }

    fn live(&self) -> usize {
        self.owners.values().filter(|o| **o != Owner::Sentinel).count()
    }

    fn open_notify(&mut self, generation: u64) -> io::Result<NotifyEndpoint> {
        let socket = NotifySocket::open(&self.runtime_dir, generation, self.events.clone())?;
        Ok(NotifyEndpoint { path: socket.path().to_path_buf(), _socket: Some(socket) })
    }

    fn snapshot(&mut self, generation: u64, program: &Path) -> io::Result<Snapshot> {
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = self.runtime_dir.join(format!("gen-{generation}-{name}"));
        // A copy, not a hard link: a build that rewrites the file in place (`cp new app`) would
        // change a hard link too. std::fs::copy uses copy_file_range, a reflink where the file
        // system can.
        let source = file_stamp(program);
        crate::spawn::write_executable(|| std::fs::copy(program, &path))?;
        Ok(Snapshot { path, source, remove: true })
    }

    fn probe_upstream(&mut self, generation: u64, pid: Pid, port: u16, ready_path: Option<String>) {
        crate::readiness::probe_upstream(generation, pid, port, ready_path, self.events.clone());
    }

    fn watch_handover(&mut self, generation: u64, pid: Pid, held: Vec<(String, u64)>) {
        crate::readiness::watch_handover(generation, pid, held, self.events.clone());
    }

    fn restart_sentinel(&mut self) -> io::Result<Pid> {
        let sentinel = self.sentinel.as_mut().ok_or_else(|| io::Error::other("no sentinel"))?;
        let pid = sentinel.respawn()?;
        self.owners.insert(pid, Owner::Sentinel);
        Ok(pid)
    }

    fn add_cleanup(&mut self, path: &Path) {
        if let Some(sentinel) = self.sentinel.as_mut() {
            sentinel.add_cleanup(path);
        }
    }

    fn disarm(&mut self) {
        // Whatever escaped its process group (setsid) but carries the marker goes too.
        let swept = crate::sentinel::sweep(&self.marker);
        if swept > 0 {
            tracing::debug!("swept {swept} process(es) that had left their group");
        }
        if let Some(sentinel) = self.sentinel.take() {
            sentinel.disarm();
        }
    }
}

/// A table without processes, for unit tests of the policy: pids are handed out in order,
/// and every spawn and signal is recorded. Built for tests only.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeProcs {
    next_pid: i32,
    pub owners: HashMap<Pid, Owner>,
    /// Every signal sent, in order: (group leader, signal).
    pub signals: Vec<(Pid, Signal)>,
    /// Every spawn, in order: (pid, owner, program and arguments).
    pub spawned: Vec<(Pid, Owner, Vec<String>)>,
    /// Spawns that fail from now on (a missing program, say).
    pub fail_spawns: bool,
    /// Upstream probes asked for: (generation, pid, port).
    pub probes: Vec<(u64, Pid, u16)>,
    /// Hand-over watches asked for: (generation, pid).
    pub handover_watches: Vec<(u64, Pid)>,
}

#[cfg(test)]
impl FakeProcs {
    pub fn new() -> FakeProcs {
        FakeProcs { next_pid: 1000, ..FakeProcs::default() }
    }

    /// Registers a sentinel, as the real table has one; returns its pid.
    pub fn add_sentinel(&mut self) -> Pid {
        self.next_pid += 1;
        let pid = Pid::from_raw(self.next_pid);
        self.owners.insert(pid, Owner::Sentinel);
        pid
    }

    /// The live pids owned by a worker of `generation`.
    pub fn workers_of(&self, generation: u64) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self
            .owners
            .iter()
            .filter(|(_, owner)| matches!(owner, Owner::Worker { generation: g, .. } if *g == generation))
            .map(|(pid, _)| *pid)
            .collect();
        pids.sort();
        pids
    }

    /// The live pid with this owner.
    pub fn pid_of(&self, owner: Owner) -> Option<Pid> {
        self.owners.iter().find(|(_, o)| **o == owner).map(|(pid, _)| *pid)
    }

    /// Whether `signal` was sent to `pid`'s group.
    pub fn was_signalled(&self, pid: Pid, signal: Signal) -> bool {
        self.signals.contains(&(pid, signal))
    }
}

#[cfg(test)]
impl Procs for FakeProcs {
    fn spawn(&mut self, command: Command, owner: Owner) -> Result<Pid, SpawnError> {
        if self.fail_spawns {
            return Err(SpawnError::NotFound(command.program().into()));
        }
        self.next_pid += 1;
        let pid = Pid::from_raw(self.next_pid);
        self.owners.insert(pid, owner);
        self.spawned.push((pid, owner, command.words()));
        Ok(pid)
    }

    fn spawn_unconfirmed(
        &mut self,
        command: Command,
        owner: Owner,
    ) -> Result<(Pid, Option<std::fs::File>), SpawnError> {
        self.spawn(command, owner).map(|pid| (pid, None))
    }

    fn adopt(&mut self, pid: Pid, owner: Owner) {
        self.owners.insert(pid, owner);
    }

    fn marker(&self) -> String {
        "fake-marker".into()
    }

    fn signal(&mut self, leader: Pid, signal: Signal) {
        self.signals.push((leader, signal));
    }

    fn reaped(&mut self, pid: Pid) -> Option<Owner> {
        self.owners.remove(&pid)
    }

    fn reassign(&mut self, pid: Pid, owner: Owner) {
        if let Some(known) = self.owners.get_mut(&pid) {
            *known = owner;
        }
    }

    fn live(&self) -> usize {
        self.owners.values().filter(|o| **o != Owner::Sentinel).count()
    }

    fn open_notify(&mut self, generation: u64) -> io::Result<NotifyEndpoint> {
        Ok(NotifyEndpoint { path: PathBuf::from(format!("/fake/notify-{generation}.sock")), _socket: None })
    }

    fn snapshot(&mut self, generation: u64, program: &Path) -> io::Result<Snapshot> {
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Snapshot {
            path: PathBuf::from(format!("/fake/gen-{generation}-{name}")),
            source: None,
            remove: false,
        })
    }

    fn probe_upstream(&mut self, generation: u64, pid: Pid, port: u16, _ready_path: Option<String>) {
        self.probes.push((generation, pid, port));
    }

    fn watch_handover(&mut self, generation: u64, pid: Pid, _held: Vec<(String, u64)>) {
        self.handover_watches.push((generation, pid));
    }

    fn restart_sentinel(&mut self) -> io::Result<Pid> {
        self.next_pid += 1;
        let pid = Pid::from_raw(self.next_pid);
        self.owners.insert(pid, Owner::Sentinel);
        Ok(pid)
    }

    fn add_cleanup(&mut self, _path: &Path) {}

    fn disarm(&mut self) {}
}
