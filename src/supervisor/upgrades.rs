//! Upgrades (`devserve -s upgrade`, SIGUSR2): nginx's binary upgrade, for a dev server that has
//! run all day. The design:
//! - **The first devserve stays.** The devserve the user started is the process the shell waits
//!   on for the whole run. An upgrade starts the binary now at the path it was started from, with
//!   the same arguments, on the same held sockets (`--listen`'s and the front door's, see
//!   [`crate::upgrade`]). The new devserve reads its configuration afresh, builds and starts its
//!   own first generation, and says `ready` once that serves.
//! - **Then the old one retires**: its front door stops accepting and closes its client
//!   connections as their requests finish, its generation drains and stops (`--accept`: the
//!   processes of connections in flight finish), exactly as after a swap. The first devserve
//!   retires its own service and stays as the *anchor*: it forwards every signal and key to the
//!   devserve that serves (Ctrl-C still stops everything), points the pidfile at it (so `-s`
//!   reaches it), and exits with its status when it stops. A later upgrade, asked of whichever
//!   devserve, is made by the anchor, which then tells the previous one to retire.
//! - **A failed upgrade changes nothing**: a new devserve that exits, fails its first build or
//!   generation (it says why and exits), or is not ready within [`UPGRADE_TIMEOUT`] is stopped
//!   and reported; the devserve that served goes on serving.
//! - Every new devserve is the anchor's child, known to its sentinel, with PR_SET_PDEATHSIG: a
//!   `kill -9` of the anchor takes everything with it; a `kill -9` of the devserve that serves
//!   kills its own workers (its sentinel), and the anchor then exits.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Outcome, Shutdown, StartError, Supervisor};
use crate::control::Pidfile;
use crate::event::{Event, ExitStatus, Request, SuccessorNews};
use crate::generation::deadline;
use crate::output::Report;
use crate::procs::{Owner, Procs};
use crate::proxy::ProxyCommand;
use crate::upgrade;

/// How long a new devserve may take to serve (its build included) before it is given up.
pub(super) const UPGRADE_TIMEOUT: Duration = Duration::from_secs(300);

/// The upgrade state of this devserve.
#[derive(Default)]
pub(super) struct Upgrades {
    /// The binary's path when devserve started, and its arguments: what a new one runs.
    pub(super) exe: Option<PathBuf>,
    pub(super) args: Vec<OsString>,
    /// The pidfile (`--pidfile`), kept by the first devserve for the whole run.
    pub(super) pidfile: Option<Pidfile>,
    /// A new devserve, not serving yet.
    starting: Option<Started>,
    /// The newer devserve that serves: this one is the anchor.
    serving: Option<Started>,
    /// Devserves told to retire, until they exit.
    retiring: Vec<Pid>,
    /// This devserve's own service has been handed over.
    pub(super) anchored: bool,
    /// Started for an upgrade: the devserve that started it, and the channel to it.
    pub(super) anchor: Option<(Pid, UnixStream)>,
    /// `ready` was said to the anchor.
    said_ready: bool,
    /// The last devserve that served stopped with this: the anchor exits with it.
    pub(super) final_status: Option<ExitStatus>,
}

/// A devserve this one started.
struct Started {
    pid: Pid,
    control: UnixStream,
    since: Instant,
    /// It said why it failed: its exit needs no second line.
    said_failed: bool,
}

impl Upgrades {
    /// When the new devserve is given up.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.starting.as_ref().map(|s| deadline(s.since, UPGRADE_TIMEOUT))
    }
}

impl<P: Procs> Supervisor<P> {
    /// SIGUSR2: start the binary at devserve's path on the held sockets (see the module doc).
    pub(super) fn upgrade(&mut self, now: Instant) {
        if let Some((anchor, _)) = &self.upgrades.anchor {
            let anchor = *anchor;
            let _ = kill(anchor, Signal::SIGUSR2);
            self.out.report(Report::UpgradeForwarded { pid: anchor.as_raw() });
            return;
        }
        if self.shutdown.is_some() {
            return;
        }
        if let Some(starting) = &self.upgrades.starting {
            self.out.report(Report::UpgradeBusy { pid: starting.pid.as_raw() });
            return;
        }
        if self.services.len() > 1 {
            // Each service's held sockets would need a name on the way: not done yet.
            let reason = "devserve runs several services: an upgrade hands over one app's sockets only; \
                          restart devserve instead"
                .to_owned();
            self.out.report(Report::UpgradeFailed { pid: None, reason });
            return;
        }
        let Some(exe) = self.upgrades.exe.clone() else {
            let reason = "the path devserve was started from is unknown".to_owned();
            self.out.report(Report::UpgradeFailed { pid: None, reason });
            return;
        };
        let started = upgrade::control_pair().map_err(|e| e.to_string()).and_then(|(mine, theirs)| {
            let command = upgrade::successor_command(
                &exe,
                &self.upgrades.args,
                &theirs,
                &self.services[0].sockets,
                self.front.socket.as_ref(),
            );
            let pid = self.procs.spawn(command, Owner::Successor).map_err(|e| e.to_string())?;
            Ok((pid, mine))
        });
        match started {
            Ok((pid, control)) => {
                let events = self.events.clone();
                let listening = upgrade::read_lines(&control, move |line| {
                    let news = match line.as_deref() {
                        Some("ready") => SuccessorNews::Ready,
                        Some(text) => match text.strip_prefix("failed ") {
                            Some(reason) => SuccessorNews::Failed(reason.to_owned()),
                            None => return,
                        },
                        None => return,
                    };
                    let _ = events.send(Event::Successor { pid, news });
                });
                if let Err(e) = listening {
                    tracing::warn!("upgrade: cannot read the new devserve's channel: {e}");
                }
                let path = exe.display().to_string();
                self.out.report(Report::UpgradeStarting { pid: pid.as_raw(), path });
                self.upgrades.starting = Some(Started { pid, control, since: now, said_failed: false });
            }
            Err(reason) => self.out.report(Report::UpgradeFailed { pid: None, reason }),
        }
    }

    /// What a new devserve said about its start.
    pub(super) fn on_successor(&mut self, pid: Pid, news: SuccessorNews, now: Instant) {
        let Some(starting) = self.upgrades.starting.as_mut().filter(|s| s.pid == pid) else { return };
        match news {
            SuccessorNews::Ready => self.successor_serves(now),
            SuccessorNews::Failed(reason) => {
                starting.said_failed = true;
                self.out.report(Report::UpgradeFailed { pid: Some(pid.as_raw()), reason });
            }
        }
    }

    /// The new devserve serves: the one that served before retires.
    fn successor_serves(&mut self, now: Instant) {
        let Some(new) = self.upgrades.starting.take() else { return };
        let replaced = match self.upgrades.serving.take() {
            Some(old) => {
                upgrade::send(&old.control, "retire");
                self.upgrades.retiring.push(old.pid);
                old.pid.as_raw()
            }
            None => {
                self.hand_over(now);
                self.upgrades.anchored = true;
                std::process::id() as i32
            }
        };
        if let Some(pidfile) = self.upgrades.pidfile.as_mut()
            && let Err(e) = pidfile.point_to(new.pid.as_raw() as u32)
        {
            tracing::warn!("upgrade: cannot rewrite the pidfile: {e}");
        }
        self.out.report(Report::UpgradeDone { pid: new.pid.as_raw(), replaced });
        self.upgrades.serving = Some(new);
    }

    /// A devserve this one started was reaped.
    pub(super) fn successor_exited(&mut self, pid: Pid, status: ExitStatus) {
        if let Some(starting) = self.upgrades.starting.take_if(|s| s.pid == pid) {
            if !starting.said_failed {
                let reason = format!("{status} before it served");
                self.out.report(Report::UpgradeFailed { pid: Some(pid.as_raw()), reason });
            }
            return;
        }
        if let Some(index) = self.upgrades.retiring.iter().position(|p| *p == pid) {
            self.upgrades.retiring.remove(index);
            self.out.report(Report::UpgradeRetired { pid: pid.as_raw(), status: status.to_string() });
            return;
        }
        if self.upgrades.serving.take_if(|s| s.pid == pid).is_some() {
            // The devserve that served stopped (a stop forwarded to it, `-s stop`, a crash): so
            // does the run.
            self.out.report(Report::UpgradeServingStopped { pid: pid.as_raw(), status: status.to_string() });
            self.upgrades.final_status = Some(status);
            self.once.outcome = outcome_of(status);
            self.stop_upgrade(Signal::SIGTERM);
            self.shutdown = Some(Shutdown::Graceful);
        }
    }

    /// Given up after [`UPGRADE_TIMEOUT`]: the new devserve is stopped.
    pub(super) fn check_upgrade(&mut self, now: Instant) {
        if self.upgrades.deadline().is_some_and(|at| now >= at)
            && let Some(starting) = self.upgrades.starting.as_mut()
            && !starting.said_failed
        {
            starting.said_failed = true;
            let reason = format!("not serving within {}s", UPGRADE_TIMEOUT.as_secs());
            self.out.report(Report::UpgradeFailed { pid: Some(starting.pid.as_raw()), reason });
            self.procs.signal(starting.pid, Signal::SIGKILL);
        }
    }

    /// The anchor passes requests (signals, keys) on to the devserve that serves; false when this
    /// devserve serves itself.
    pub(super) fn forward(&mut self, request: Request, now: Instant) -> bool {
        if !self.upgrades.anchored {
            return false;
        }
        let signal = match request {
            Request::Upgrade => {
                self.upgrade(now);
                return true;
            }
            Request::Retire => return true,
            Request::Reload => Signal::SIGHUP,
            Request::Stop if self.shutdown.is_some() => Signal::SIGQUIT,
            Request::Stop => Signal::SIGTERM,
            Request::Kill => Signal::SIGQUIT,
            Request::Status => Signal::SIGUSR1,
            Request::MoreWorkers => Signal::SIGTTIN,
            Request::FewerWorkers => Signal::SIGTTOU,
        };
        if matches!(request, Request::Stop | Request::Kill) {
            self.shutdown = Some(Shutdown::Graceful);
            self.stop_upgrade(Signal::SIGTERM);
        }
        if let Some(serving) = &self.upgrades.serving {
            // It leads its own process group, of which it is the only member.
            self.procs.signal(serving.pid, signal);
        }
        true
    }

    /// A stop: a devserve still starting for an upgrade is stopped too.
    pub(super) fn stop_upgrade(&mut self, signal: Signal) {
        if let Some(starting) = &self.upgrades.starting {
            self.procs.signal(starting.pid, signal);
        }
    }

    /// A newer devserve serves: stop accepting, drain, stop the generations (see the module doc).
    /// Nothing is built or started after this.
    pub(super) fn hand_over(&mut self, now: Instant) {
        self.watcher = None;
        if let Some(door) = &self.front.door {
            door.send(ProxyCommand::HandOver);
        }
        for s in 0..self.services.len() {
            self.stop_service(s, now);
        }
        self.let_connections_finish(now);
    }

    /// The anchor (through the channel): a newer devserve serves. Hand over, then exit once
    /// everything is gone; the socket files stay (the newer one listens on them).
    pub(super) fn retire_for_newer(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        crate::sockets::keep_files();
        self.out.report(Report::UpgradeRetiring);
        self.hand_over(now);
        self.shutdown = Some(Shutdown::Graceful);
    }

    /// Started for an upgrade: the first generation serves; the anchor is told once.
    pub(super) fn tell_anchor_ready(&mut self) {
        if let Some((_, control)) = &self.upgrades.anchor
            && !self.upgrades.said_ready
        {
            self.upgrades.said_ready = true;
            upgrade::send(control, "ready");
        }
    }

    /// Started for an upgrade and not yet serving: the first start failed, so this devserve says
    /// why and exits (the anchor's devserve goes on serving). True when it did.
    pub(super) fn upgrade_start_failed(&mut self, reason: &str, now: Instant) -> bool {
        let Some((_, control)) = &self.upgrades.anchor else { return false };
        if self.upgrades.said_ready {
            return false;
        }
        upgrade::send(control, &format!("failed {reason}"));
        self.fatal = Some(StartError::Upgrade(reason.to_owned()));
        self.begin_shutdown(Shutdown::Immediate, now);
        true
    }
}

/// The exit status of the last devserve that served, as this one's outcome.
fn outcome_of(status: ExitStatus) -> Outcome {
    match status {
        ExitStatus::Code(0) => Outcome::Success,
        ExitStatus::Code(3) => Outcome::BuildFailed,
        ExitStatus::Code(4) => Outcome::NotReady,
        ExitStatus::Code(5) => Outcome::ProbeFailed,
        _ => Outcome::Interrupted,
    }
}
