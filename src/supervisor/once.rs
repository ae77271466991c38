//! `--once`: once the generation is ready the probe runs, and its verdict (or the build's, or the
//! generation's) ends the run with its exit status.
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use nix::unistd::Pid;

use super::{Outcome, Shutdown, Supervisor};
use crate::event::ExitStatus;
use crate::generation::deadline;
use crate::output::Report;
use crate::procs::{Owner, Procs};
use crate::spawn::Command;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The `--once` run: its probe, and its verdict once known.
#[derive(Debug)]
pub(super) struct OnceRun {
    /// The probe, once the generation is ready.
    pub(super) probe: Option<ProbeRun>,
    /// The verdict is known (a TERM before it makes the run fail).
    pub(super) decided: bool,
    /// How the run ends (also a plain run's: stopped by a signal is a success).
    pub(super) outcome: Outcome,
}

impl Default for OnceRun {
    fn default() -> Self {
        OnceRun { probe: None, decided: false, outcome: Outcome::Success }
    }
}

/// `--once`'s probe, once the generation is ready.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProbeRun {
    pub(super) pid: Pid,
    pub(super) started: Instant,
}

impl<P: Procs> Supervisor<P> {
    /// `--once`, generation ready: run the probe, or finish.
    pub(super) fn start_probe(&mut self, now: Instant) {
        let Some(script) = self.config.probe.clone() else {
            self.finish_once(Outcome::Success);
            return;
        };
        let addr = match &self.front.address {
            Some(front) => front.clone(),
            None => self.services[0].sockets.first().map(|s| s.bound.clone()).unwrap_or_default(),
        };
        self.out.report(Report::ProbeStarted { command: script.clone() });
        match self.procs.spawn(Command::shell(&script).env("DEVSERVE_ADDR", addr), Owner::Probe) {
            Ok(pid) => self.once.probe = Some(ProbeRun { pid, started: now }),
            Err(e) => {
                self.out.report(Report::ProbeNotStarted { error: e.to_string() });
                self.finish_once(Outcome::ProbeFailed);
            }
        }
    }

    pub(super) fn probe_finished(&mut self, status: ExitStatus) {
        if self.once.decided {
            return;
        }
        self.out.report(Report::ProbeFinished { ok: status.success(), status: status.to_string() });
        self.finish_once(if status.success() { Outcome::Success } else { Outcome::ProbeFailed });
    }

    /// `--once`: a probe still running at `--probe-timeout` is killed and fails the run.
    pub(super) fn check_probe(&mut self, now: Instant) {
        let Some(probe) = self.once.probe else { return };
        if self.once.decided || now < deadline(probe.started, self.config.probe_timeout) {
            return;
        }
        self.procs.signal(probe.pid, Signal::SIGKILL);
        self.out.report(Report::ProbeTimedOut { after_ms: ms(self.config.probe_timeout) });
        self.finish_once(Outcome::ProbeFailed);
    }

    /// `--once` is decided: remember how, stop gracefully.
    pub(super) fn finish_once(&mut self, outcome: Outcome) {
        if self.shutdown.is_none() && !self.once.decided {
            self.once.decided = true;
            self.once.outcome = outcome;
            self.begin_shutdown(Shutdown::Graceful, Instant::now());
        }
    }
}
