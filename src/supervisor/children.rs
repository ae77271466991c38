//! Children: every reaped child is routed, by the process table, to whoever owns it (a worker,
//! the build, the probe, the sentinel, the opener); readiness (`READY=1`, the upstream probe) and
//! the held sockets a crashed app shut down.
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::Supervisor;
use crate::event::{ExitStatus, Notification};
use crate::generation::WorkerExit;
use crate::output::Report;
use crate::procs::{Owner, Procs};

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl<P: Procs> Supervisor<P> {
    /// A child was reaped: the process table says whose it was, in one lookup.
    pub(super) fn on_exit(&mut self, pid: Pid, status: ExitStatus, now: Instant) {
        match self.procs.reaped(pid) {
            Some(Owner::Sentinel) => self.sentinel_exited(pid, status),
            Some(Owner::Build) => {
                let built =
                    self.services.iter().position(|s| s.build.as_ref().is_some_and(|r| r.build.pid == pid));
                if let Some(s) = built
                    && let Some(run) = self.services[s].build.take()
                {
                    self.build_finished(s, run, status, now);
                }
            }
            Some(Owner::CancelledBuild) => {}
            Some(Owner::Opener) if !status.success() => {
                self.out.report(Report::BrowserNotOpened { reason: format!("the opener {status}") });
            }
            Some(Owner::Opener) => {}
            Some(Owner::Probe) => {
                self.once.probe = None;
                self.probe_finished(status);
            }
            Some(Owner::Successor) => self.successor_exited(pid, status),
            Some(Owner::Connection { generation }) => self.connection_exited(generation, pid, status, now),
            Some(Owner::Worker { generation, slot }) => {
                if let Some(s) = self.service_of(generation) {
                    self.worker_exited(s, generation, slot, pid, status, now);
                }
            }
            None => {
                tracing::debug!("reaped pid {pid} ({status}), not one of ours (an orphaned descendant)");
                self.unknown_exit(pid, status);
            }
        }
    }

    pub(super) fn worker_exited(
        &mut self,
        s: usize,
        generation: u64,
        slot: u32,
        pid: Pid,
        status: ExitStatus,
        now: Instant,
    ) {
        let port = self.port_of(s, generation, pid);
        if self.services[s].next.generation().is_some_and(|g| g.id == generation) {
            if let Some(next) = self.services[s].next.generation_mut() {
                next.worker_exited(pid, status, now);
            }
            if self.lost_port_race(s, generation, slot, port, now) {
                return;
            }
            self.roll_back(s, &format!("w{slot} (pid {pid}) {status} before it was ready"), now);
            self.rearm_sockets(s, Some(generation));
        } else if self.services[s].serving.as_ref().is_some_and(|g| g.id == generation) {
            self.upstream_removed(generation, port, pid);
            self.serving_worker_exited(s, pid, status, now);
            self.rearm_sockets(s, Some(generation));
        } else if let Some(index) =
            self.services[s].draining.iter().position(|d| d.generation.id == generation)
        {
            self.services[s].draining[index].generation.worker_exited(pid, status, now);
            if self.services[s].draining[index].generation.is_empty() {
                // Released (its notify socket and reader closed) before it is reported stopped.
                let generation = self.services[s].draining.remove(index).generation.id;
                self.services[s].out.report(Report::GenerationStopped { generation });
            }
        }
    }

    /// A serving worker ended: a retiring one is simply gone; any other is restarted alone
    /// after its backoff, unless it has crashed `--max-restarts` times in a row.
    pub(super) fn serving_worker_exited(&mut self, s: usize, pid: Pid, status: ExitStatus, now: Instant) {
        let max_restarts = self.services[s].config.max_restarts;
        let Some(serving) = self.services[s].serving.as_mut() else { return };
        let generation = serving.id;
        let (pid, status_text) = (pid.as_raw(), status.to_string());
        let report = match serving.worker_exited(Pid::from_raw(pid), status, now) {
            Some(WorkerExit::Retired { slot }) => Report::WorkerStopped { generation, worker: slot, pid },
            Some(WorkerExit::Ended { slot, crashes_in_a_row }) => {
                let crash_loop = crashes_in_a_row > max_restarts;
                let restart_in_ms = if crash_loop {
                    serving.give_up_restarts();
                    None
                } else if serving.gave_up {
                    None
                } else {
                    Some(ms(serving.schedule_restart(slot, now)))
                };
                Report::WorkerExited {
                    generation,
                    worker: slot,
                    pid,
                    status: status_text,
                    crashes_in_a_row,
                    restart_in_ms,
                    crash_loop,
                }
            }
            None => return,
        };
        self.services[s].out.report(report);
    }

    /// The sentinel died (someone killed it): start a new one at once, with everything it knew,
    /// so that a SIGKILL of devserve still leaves nothing behind.
    pub(super) fn sentinel_exited(&mut self, pid: Pid, status: ExitStatus) {
        let (new_pid, error) = match self.procs.restart_sentinel() {
            Ok(new) => (Some(new.as_raw()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.out.report(Report::SentinelRestarted {
            old_pid: pid.as_raw(),
            status: status.to_string(),
            new_pid,
            error,
        });
    }

    /// A held socket that no longer listens (a worker called `shutdown()` on its fd) listens
    /// again, on the same port; `culprit` is the generation most likely to have done it.
    pub(super) fn rearm_sockets(&mut self, s: usize, culprit: Option<u64>) {
        for socket in &self.services[s].sockets {
            match socket.rearm() {
                Ok(false) => {}
                Ok(true) => self
                    .out
                    .report(Report::SocketRearmed { address: socket.bound.clone(), generation: culprit }),
                Err(e) => self.services[s].out.report(Report::SocketRearmFailed {
                    address: socket.bound.clone(),
                    error: e.to_string(),
                }),
            }
        }
    }

    pub(super) fn on_notify(&mut self, s: usize, note: &Notification, now: Instant) {
        if let Some(status) = &note.status {
            tracing::info!("gen {}: STATUS={status}", note.generation);
        }
        let mut ready_again = None;
        let service = &mut self.services[s];
        let serving = service.serving.as_ref().map(|g| g.id);
        let mut speaks_notify = false;
        let generations = service.next.generation_mut().into_iter().chain(service.serving.as_mut());
        for generation in generations.filter(|g| g.id == note.generation) {
            if generation.notified(note, now) {
                tracing::debug!("gen {}: READY=1 from {:?}", generation.id, note.sender);
                speaks_notify = true;
                if Some(generation.id) == serving {
                    ready_again = note.sender.and_then(|pid| generation.port_of(pid));
                }
            }
        }
        service.app_speaks_notify |= speaks_notify;
        if let (Some(generation), Some(port)) = (serving, ready_again) {
            self.upstream_added(generation, Some(port));
        }
    }

    /// Behind the front door: a worker's port accepts. A starting generation counts it toward
    /// its promotion; a serving one (a restarted or added worker) gets the upstream back.
    pub(super) fn on_upstream_ready(&mut self, s: usize, generation: u64, pid: Pid, now: Instant) {
        if let Some(next) = self.services[s].next.generation_mut().filter(|g| g.id == generation) {
            next.upstream_ready(pid);
        } else if let Some(serving) = self.services[s].serving.as_mut().filter(|g| g.id == generation)
            && serving.upstream_ready(pid)
        {
            let port = serving.port_of(pid);
            self.upstream_added(generation, port);
            // A replacement for a worker at --max-requests: that one goes now.
            self.recycled(s, generation, pid, now);
        }
    }
}
