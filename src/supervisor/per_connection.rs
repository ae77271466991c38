//! `--accept`: a process per connection (Python's `ForkingMixIn`, systemd's `Accept=yes`,
//! inetd). The acceptor's threads take connections from the held sockets; each one gets a process
//! of the serving program. Swaps and rollback, per connection:
//! - A finished build makes a [`Program`] (its program copy, no process). The first one serves at
//!   once. A later one is the *candidate*: the next connection is its trial, and every other
//!   connection goes on starting the serving program meanwhile.
//! - The trial passes when its process writes to the connection, exits 0, or stays up for
//!   `--ready-delay`: the candidate then serves every new connection, and connections in flight
//!   finish on the program they started with.
//! - It fails when the process cannot be started, or exits with a failure having written nothing
//!   (the kernel's byte counters say so): the candidate is dropped and the serving program stays.
//!   If the failed process had also read nothing of its connection, the serving program is
//!   started on that same connection, so the client never sees the failure. A Unix socket has no
//!   such counters: there only a program that cannot be started is rolled back.
//! - `--max-connections`: the acceptor holds back when that many processes run; further
//!   connections wait in the socket's queue.
//! - At a stop the acceptor stops first; processes get the stop signal, SIGKILL at the stop
//!   timeout (an immediate stop: SIGKILL at once).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::trigger::Trigger;
use super::{Outcome, Shutdown, Supervisor};
use crate::accept::{Acceptor, FastSlot, FastStart, transfer};
use crate::cli::AcceptMode;
use crate::event::{Connection, ExitStatus};
use crate::generation::{Program, deadline};
use crate::output::Report;
use crate::procs::Procs;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// `--accept`'s state: the acceptor, the programs and the processes of the connections.
#[derive(Default)]
pub(super) struct PerConnection {
    /// Started once a program serves; dropped at a stop.
    pub(super) acceptor: Option<Acceptor>,
    pub(super) serving: Option<std::sync::Arc<Program>>,
    /// The newest build's program, until its trial passes or fails.
    pub(super) candidate: Option<std::sync::Arc<Program>>,
    /// What the acceptor may start by itself (see [`PerConnection::fast_allowed`]).
    pub(super) fast: FastSlot,
    /// Exits of pids not known yet: a process the acceptor started can be reaped before its
    /// [`crate::event::Event::Started`] arrives.
    pub(super) early: HashMap<Pid, ExitStatus>,
    /// The candidate's first connection, in progress.
    pub(super) trial: Option<Trial>,
    /// Every connection's process: pid → the program it runs, its peer and start.
    pub(super) live: HashMap<Pid, Live>,
    /// At a stop: when the processes still running get SIGKILL.
    pub(super) kill_at: Option<Instant>,
}

/// A candidate's first connection: the process, and a copy of the connection to read the
/// kernel's counters from and to give the serving program should the candidate fail.
pub(super) struct Trial {
    pid: Pid,
    program: u64,
    pub(super) stream: OwnedFd,
    peer: Option<SocketAddr>,
    started: Instant,
}

/// A connection's process.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) program: u64,
    peer: Option<SocketAddr>,
    /// Its exec report, read once it has exited (see [`crate::spawn::exec_failure`]).
    report: Option<std::fs::File>,
}

impl PerConnection {
    /// When the trial in progress passes by staying up.
    pub(super) fn trial_deadline(&self, ready_delay: Duration) -> Option<Instant> {
        self.trial.as_ref().map(|t| deadline(t.started, ready_delay))
    }

    /// Live processes by program, for the status table: (program, count), serving first.
    pub(super) fn counts(&self) -> Vec<(u64, usize)> {
        let mut counts: Vec<(u64, usize)> = Vec::new();
        for live in self.live.values() {
            match counts.iter_mut().find(|(id, _)| *id == live.program) {
                Some((_, n)) => *n += 1,
                None => counts.push((live.program, 1)),
            }
        }
        counts.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
        counts
    }
}

impl<P: Procs> Supervisor<P> {
    /// Under `--accept`, how connections are given: `None` in every other mode.
    pub(super) fn accept_mode(&self) -> Option<AcceptMode> {
        self.config.accept
    }

    /// A build's program is ready (see the module doc): it serves, or waits for its trial.
    pub(super) fn prepare_program(&mut self, trigger: Trigger, now: Instant) {
        let id = self.next_generation;
        self.next_generation += 1;
        let program =
            std::sync::Arc::new(Program::prepare(id, self.services[0].launch.clone(), &mut self.procs));
        let total_ms = ms(now.saturating_duration_since(trigger.at));
        let serving = self.connections.serving.as_ref().map(|p| p.id);
        self.out.report(Report::ProgramReady {
            generation: id,
            serving,
            total_ms,
            cause: trigger.describe(),
        });
        self.services[0].loops.started(now);
        if serving.is_some() {
            // An earlier candidate not yet tried is superseded; one on trial finishes its connection.
            self.connections.candidate = Some(program);
            self.update_fast();
            return;
        }
        self.connections.serving = Some(program);
        self.services[0].started_once = true;
        self.services[0].loops.ready(now);
        if self.connections.acceptor.is_none() {
            let max = self.config.max_connections;
            match Acceptor::start(&self.services[0].sockets, max, &self.connections.fast, &self.events) {
                Ok(acceptor) => self.connections.acceptor = Some(acceptor),
                Err(e) => {
                    self.fatal = Some(super::StartError::Accept(e));
                    self.begin_shutdown(Shutdown::Immediate, now);
                    return;
                }
            }
        }
        self.update_fast();
        self.tell_anchor_ready();
        if self.config.once {
            self.start_probe(now);
        }
    }

    /// The acceptor may start the serving program by itself while no new one waits for its trial
    /// connection and nothing stops; otherwise connections come here.
    fn update_fast(&mut self) {
        let c = &self.connections;
        let allowed = self.shutdown.is_none()
            && c.acceptor.is_some()
            && (c.candidate.is_none() || c.trial.is_some())
            && !self.upgrades.anchored;
        let fast = match (&c.serving, allowed) {
            (Some(program), true) => Some(FastStart {
                program: std::sync::Arc::clone(program),
                stdio: self.config.accept == Some(AcceptMode::Stdio),
                marker: self.procs.marker(),
            }),
            _ => None,
        };
        if let Ok(mut slot) = self.connections.fast.lock() {
            *slot = fast;
        }
    }

    /// The acceptor started a process for a connection itself: it is the supervisor's from now on.
    pub(super) fn connection_started(
        &mut self,
        pid: Pid,
        program: u64,
        peer: Option<SocketAddr>,
        report: std::fs::File,
        now: Instant,
    ) {
        self.procs.adopt(pid, crate::procs::Owner::Connection { generation: program });
        self.connections.live.insert(pid, Live { program, peer, report: Some(report) });
        if let Some(status) = self.connections.early.remove(&pid) {
            // Reaped before it was adopted: its exit, now.
            let _ = self.procs.reaped(pid);
            self.connection_exited(program, pid, status, now);
        } else if let Some(kill_at) = self.connections.kill_at {
            // Started as devserve began to stop: it gets what the others got.
            let signal = if kill_at <= now { Signal::SIGKILL } else { self.config.stop_signal };
            self.procs.signal(pid, signal);
        }
    }

    /// A pid nobody owns was reaped: under `--accept` it may be a process the acceptor started
    /// whose `Started` is still on its way.
    pub(super) fn unknown_exit(&mut self, pid: Pid, status: ExitStatus) {
        if self.accept_mode().is_some() {
            if self.connections.early.len() >= 4096 {
                self.connections.early.clear();
            }
            self.connections.early.insert(pid, status);
        }
    }

    /// A connection was accepted: the candidate's trial if one waits, else the serving program.
    pub(super) fn on_connection(&mut self, connection: Connection, now: Instant) {
        if self.shutdown.is_some() {
            self.release_connection();
            return;
        }
        if self.connections.trial.is_none()
            && let Some(candidate) = self.connections.candidate.as_ref().map(|c| c.id)
        {
            match (connection.stream.try_clone(), self.start_connection_on(true, &connection)) {
                (Ok(stream), Ok(pid)) => {
                    self.connections.trial =
                        Some(Trial { pid, program: candidate, stream, peer: connection.peer, started: now });
                    self.update_fast();
                    return;
                }
                (_, Err(e)) => self.reject_candidate(candidate, format!("could not start: {e}"), true),
                // No copy of the connection (out of descriptors): it runs without a trial.
                (Err(_), Ok(_)) => return,
            }
        }
        if let Err(e) = self.start_connection_on(false, &connection) {
            let generation = self.connections.serving.as_ref().map_or(0, |p| p.id);
            self.out.report(Report::ConnectionFailed {
                generation,
                pid: 0,
                peer: connection.peer.map(|p| p.to_string()),
                status: format!("could not start: {e}"),
            });
            self.release_connection();
        }
    }

    /// Starts the candidate's (`trial`) or the serving program's process for `connection`.
    fn start_connection_on(
        &mut self,
        trial: bool,
        connection: &Connection,
    ) -> Result<Pid, crate::spawn::SpawnError> {
        let stdio = self.config.accept == Some(AcceptMode::Stdio);
        let connections = &mut self.connections;
        let program = if trial { connections.candidate.as_ref() } else { connections.serving.as_ref() };
        let Some(program) = program else {
            return Err(crate::spawn::SpawnError::Setup(std::io::Error::other("no program serves")));
        };
        let (pid, report) = program.start_connection(
            connection.stream.as_raw_fd(),
            connection.peer,
            stdio,
            &mut self.procs,
        )?;
        connections.live.insert(pid, Live { program: program.id, peer: connection.peer, report });
        Ok(pid)
    }

    /// A connection's process was reaped.
    pub(super) fn connection_exited(&mut self, generation: u64, pid: Pid, status: ExitStatus, now: Instant) {
        let live = self.connections.live.remove(&pid);
        let (peer, report) = live.map_or((None, None), |l| (l.peer, l.report));
        let program = self.config.command.first().map_or(std::ffi::OsStr::new(""), |p| p.as_os_str());
        let failure = report.and_then(|r| crate::spawn::exec_failure(r, program));
        let status_text = match &failure {
            Some(e) => format!("could not start: {e}"),
            None => status.to_string(),
        };
        if let Some(trial) = self.connections.trial.take_if(|t| t.pid == pid) {
            self.judge_trial(trial, status, status_text, now);
            return;
        }
        self.release_connection();
        if !status.success() && self.shutdown.is_none() {
            self.out.report(Report::ConnectionFailed {
                generation,
                pid: pid.as_raw(),
                peer: peer.map(|p| p.to_string()),
                status: status_text,
            });
        }
    }

    /// The trial's process ended (`status`, or `status_text` when it could not exec): the
    /// candidate serves, or is rolled back (see the module doc).
    fn judge_trial(&mut self, trial: Trial, status: ExitStatus, status_text: String, now: Instant) {
        let used = transfer(&trial.stream);
        let wrote = used.is_some_and(|u| u.wrote);
        let is_candidate = self.connections.candidate.as_ref().is_some_and(|c| c.id == trial.program);
        if status.success() || wrote {
            let how = if wrote { format!("was answered ({status})") } else { "exited 0".to_owned() };
            if is_candidate {
                self.promote_candidate(how, now);
            }
            self.release_connection();
            return;
        }
        // A process that could not exec never touched the connection, counters or not.
        let untouched = status_text.starts_with("could not start") || used.is_some_and(|u| !u.read);
        let rerun = untouched && self.shutdown.is_none();
        let reason = format!("its first connection's process {status_text}, having written nothing");
        if is_candidate {
            self.reject_candidate(trial.program, reason, rerun);
        }
        let connection = Connection { stream: trial.stream, peer: trial.peer };
        if rerun && self.start_connection_on(false, &connection).is_ok() {
            // The connection keeps its token: it has a process again.
            return;
        }
        self.release_connection();
    }

    /// The trial has stayed up for `--ready-delay`: it passes.
    pub(super) fn check_trial(&mut self, now: Instant) {
        let Some(due) = self.connections.trial_deadline(self.config.ready_delay) else { return };
        if now < due {
            return;
        }
        let program = self.connections.trial.as_ref().map(|t| t.program);
        let answered =
            self.connections.trial.as_ref().and_then(|t| transfer(&t.stream)).is_some_and(|u| u.wrote);
        // The connection now belongs to its process alone: no verdict at its exit.
        self.connections.trial = None;
        if self.connections.candidate.as_ref().is_some_and(|c| Some(c.id) == program) {
            let how = if answered { "was answered" } else { "stayed up for the ready delay" };
            let how = format!("{how} ({} ms)", ms(self.config.ready_delay));
            self.promote_candidate(how, now);
        }
    }

    fn promote_candidate(&mut self, how: String, now: Instant) {
        let Some(candidate) = self.connections.candidate.take() else { return };
        let generation = candidate.id;
        let replaced = self.connections.serving.replace(candidate).map(|p| p.id);
        self.update_fast();
        self.services[0].loops.ready(now);
        self.out.report(Report::ProgramServing { generation, replaced, how });
    }

    fn reject_candidate(&mut self, generation: u64, reason: String, rerun: bool) {
        self.connections.candidate = None;
        self.update_fast();
        let serving = self.connections.serving.as_ref().map_or(0, |p| p.id);
        self.out.report(Report::ProgramRolledBack { generation, reason, serving, rerun });
        self.services[0].loops.settled(Instant::now());
        if self.config.once {
            self.finish_once(Outcome::NotReady);
        }
    }

    /// A connection is done with (its process reaped, or never started): one more may come.
    fn release_connection(&mut self) {
        if let Some(acceptor) = &self.connections.acceptor {
            acceptor.release();
        }
    }

    /// A stop: no connection is accepted any more; the processes get `mode`'s treatment.
    pub(super) fn stop_connections(&mut self, mode: Shutdown, now: Instant) {
        self.update_fast();
        self.connections.acceptor = None;
        self.connections.candidate = None;
        let signal = match mode {
            Shutdown::Graceful => self.config.stop_signal,
            Shutdown::Immediate => Signal::SIGKILL,
        };
        for pid in self.connections.live.keys().copied().collect::<Vec<_>>() {
            self.procs.signal(pid, signal);
        }
        self.connections.kill_at = Some(deadline(now, self.config.stop_timeout));
    }

    /// A newer devserve serves (an upgrade): no connection is accepted any more, and those in
    /// flight finish on their own, killed only at the stop timeout.
    pub(super) fn let_connections_finish(&mut self, now: Instant) {
        if self.accept_mode().is_none() {
            return;
        }
        self.connections.acceptor = None;
        self.connections.candidate = None;
        self.update_fast();
        self.connections.kill_at = Some(deadline(now, self.config.stop_timeout));
    }

    /// The stop timeout passed: what still runs is killed.
    pub(super) fn kill_overdue_connections(&mut self, now: Instant) {
        if self.connections.kill_at.is_some_and(|at| now >= at) {
            self.connections.kill_at = None;
            for pid in self.connections.live.keys().copied().collect::<Vec<_>>() {
                self.procs.signal(pid, Signal::SIGKILL);
            }
        }
    }
}
