//! The swap: changes trigger builds, builds start generations, ready generations replace the
//! serving one, failed ones are rolled back; serving workers that die are restarted; every
//! reaped child is routed to whoever owns it.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::trigger::Trigger;
use super::{Outcome, Shutdown, Supervisor};
use crate::build::Build;
use crate::event::{ExitStatus, Notification};
use crate::generation::{Generation, Phase, WorkerExit, deadline};
use crate::output::{self, Note};
use crate::spawn::Command;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl Supervisor {
    // ----- changes and builds -------------------------------------------------------------

    /// A change, a reload or the first start: build (cancelling a build in progress), then start
    /// a generation.
    pub(super) fn trigger(&mut self, mut trigger: Trigger) {
        if self.shutdown.is_some() {
            return;
        }
        if self.config.clear && !trigger.is_initial() {
            self.out.clear_screen();
        }
        self.out.note(Note::ChangeDetected { cause: trigger.describe(), files: trigger.file_count() });
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
        self.out.note(Note::BuildStarted { cause: trigger.describe(), command: script.to_owned() });
        let Some(sentinel) = self.sentinel.as_mut() else { return };
        match Build::start(script, &self.config.env, sentinel) {
            Ok(build) => self.build = Some((build, trigger)),
            Err(e) => {
                self.out.error(format!("cannot run the build: {e}"));
                if self.config.once {
                    self.finish_once(Outcome::BuildFailed);
                }
            }
        }
    }

    fn build_finished(&mut self, build: Build, trigger: Trigger, status: ExitStatus) {
        let took = build.took();
        self.last_build = Some((status, took, Instant::now()));
        self.out.note(Note::BuildFinished {
            ok: status.success(),
            status: status.to_string(),
            duration_ms: ms(took),
            serving: self.serving.as_ref().map(|g| g.id),
        });
        if status.success() {
            self.start_generation(trigger, Some(took));
        } else if self.config.once {
            self.finish_once(Outcome::BuildFailed);
        }
    }

    // ----- generations ---------------------------------------------------------------------

    pub(super) fn start_generation(&mut self, trigger: Trigger, build_took: Option<Duration>) {
        let now = Instant::now();
        let restart_mode = self.launch.sockets.is_empty();
        if let Some(superseded) = self.next.take() {
            let newer = if self.config.build.is_some() { "build" } else { "change" };
            self.out.info(format!("gen {} superseded by a newer {newer}; stopping it", superseded.id));
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
        let culprit = self.serving.as_ref().map(|g| g.id).or(self.draining.iter().map(|g| g.id).max());
        self.rearm_sockets(culprit);
        // A rolling swap starts one worker and adds the others one by one (`roll_one`).
        let count = if self.config.rolling && self.serving.is_some() { 1 } else { self.workers };
        let Some(sentinel) = self.sentinel.as_mut() else { return };
        match Generation::start(
            id,
            count,
            self.launch.clone(),
            self.runtime_dir.path(),
            self.events.clone(),
            sentinel,
        ) {
            Ok(mut generation) => {
                generation.build_took = build_took;
                generation.cause = trigger.describe();
                generation.triggered = trigger.at;
                generation.debounced = trigger.file_count() > 0;
                let pids = generation.live_pids().iter().map(|p| p.as_raw()).collect();
                self.out.note(Note::GenerationStarting { generation: id, pids });
                self.next = Some(generation);
            }
            Err(e) if e.is_bad_command() && !self.started_once => {
                self.fatal = Some(e.to_string());
                self.begin_shutdown(Shutdown::Immediate);
            }
            Err(e) => {
                let reason = format!("could not start: {e}");
                self.out.note(Note::GenerationFailed {
                    generation: id,
                    reason,
                    serving: self.serving.as_ref().map(|g| g.id),
                });
                if self.config.once {
                    self.finish_once(Outcome::NotReady);
                }
            }
        }
    }

    /// Restart mode: start the queued generation once the old one has gone.
    pub(super) fn start_queued(&mut self) {
        if self.serving.is_some() || self.next.is_some() || !self.draining.is_empty() {
            return;
        }
        if let Some((trigger, build_took)) = self.queued.take() {
            self.start_generation(trigger, build_took);
        }
    }

    /// Readiness and ready timeout of the starting generation.
    pub(super) fn check_next(&mut self, now: Instant) {
        if let Some(serving) = self.serving.as_mut() {
            serving.apply_ready_delay(self.config.ready_delay, now);
        }
        let Some(next) = self.next.as_mut() else { return };
        if !self.app_speaks_notify {
            next.apply_ready_delay(self.config.ready_delay, now);
        }
        if next.all_ready() && next.workers.len() < self.workers as usize && self.serving.is_some() {
            self.roll_one(now);
        } else if next.all_ready() {
            self.promote(now);
        } else if now >= deadline(next.started, self.config.ready_timeout) {
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
        match next.add_worker(slot, sentinel) {
            Ok(pid) => self.out.info(format!("gen {} w{slot} starting (pid {pid})", next.id)),
            Err(e) => self.roll_back(&format!("w{slot} could not start: {e}"), now),
        }
    }

    /// The new generation is ready: it serves, the old one drains.
    fn promote(&mut self, now: Instant) {
        let Some(mut generation) = self.next.take() else { return };
        generation.phase = Phase::Serving;
        self.started_once = true;
        self.rearm_sockets(Some(generation.id));
        self.out.note(ready_note(&generation, now, self.config.ready_delay));
        if let Some(old) = self.serving.replace(generation) {
            let signal = self.config.stop_signal.as_str().to_owned();
            self.out.note(Note::GenerationStopping { generation: old.id, signal });
            self.retire(old, now);
        }
        if self.config.once {
            self.start_probe();
        }
    }

    /// The new generation failed: stop it, keep the old one.
    fn roll_back(&mut self, reason: &str, now: Instant) {
        let Some(failed) = self.next.take() else { return };
        self.out.note(Note::GenerationFailed {
            generation: failed.id,
            reason: reason.to_owned(),
            serving: self.serving.as_ref().map(|g| g.id),
        });
        self.retire(failed, now);
        // A rolling swap may have stopped old workers already: bring them back.
        self.top_up_serving();
        if self.config.once {
            self.finish_once(Outcome::NotReady);
        }
    }

    /// Sends a generation its stop signal and keeps it until its processes are reaped.
    pub(super) fn retire(&mut self, mut generation: Generation, now: Instant) {
        generation.stop(self.config.stop_signal, self.config.stop_timeout, now);
        if !generation.is_empty() {
            self.draining.push(generation);
        }
    }

    /// Serving workers whose backoff has passed start again.
    pub(super) fn restart_workers(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let (Some(serving), Some(sentinel)) = (self.serving.as_mut(), self.sentinel.as_mut()) else { return };
        for slot in serving.due_restarts(now) {
            match serving.add_worker(slot, sentinel) {
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

    /// Starts serving workers until there are as many as wanted (TTIN, and after a rolling
    /// swap rolled back).
    pub(super) fn top_up_serving(&mut self) {
        let (Some(serving), Some(sentinel)) = (self.serving.as_mut(), self.sentinel.as_mut()) else { return };
        while serving.active_count() < self.workers as usize {
            let slot = serving.free_slot();
            match serving.add_worker(slot, sentinel) {
                Ok(pid) => self.out.info(format!("gen {} w{slot} started (pid {pid})", serving.id)),
                Err(e) => {
                    self.out.warn(format!("gen {} w{slot} could not start: {e}", serving.id));
                    return;
                }
            }
        }
    }

    /// Draining generations (and retiring workers) past their stop timeout get SIGKILL.
    pub(super) fn kill_overdue(&mut self, now: Instant) {
        let timeout = output::duration(self.config.stop_timeout);
        if let Some(serving) = self.serving.as_mut() {
            for pid in serving.kill_overdue_retirees(now) {
                self.out.warn(format!("gen {} pid {pid} still running after {timeout}; killed", serving.id));
            }
        }
        for generation in &mut self.draining {
            if let Phase::Draining { deadline, killed: false } = generation.phase
                && now >= deadline
            {
                self.out.warn(format!(
                    "gen {} still running after {timeout}; killing {}",
                    generation.id,
                    generation.describe_pids()
                ));
                generation.kill();
            }
        }
    }

    // ----- --once --------------------------------------------------------------------------

    /// `--once`, generation ready: run the probe, or finish.
    fn start_probe(&mut self) {
        let Some(script) = self.config.probe.clone() else {
            self.finish_once(Outcome::Success);
            return;
        };
        let addr = self.sockets.first().map(|s| s.bound.clone()).unwrap_or_default();
        self.out.info(format!("probe: {script}"));
        let spawned = Command::shell(&script).env("DEVSERVE_ADDR", addr).spawn();
        match spawned {
            Ok(pid) => {
                if let Some(sentinel) = self.sentinel.as_mut() {
                    sentinel.track(pid);
                }
                self.probe = Some((pid, Instant::now()));
            }
            Err(e) => {
                self.out.error(format!("cannot run the probe: {e}"));
                self.finish_once(Outcome::ProbeFailed);
            }
        }
    }

    fn probe_finished(&mut self, status: ExitStatus) {
        if self.once_decided {
            return;
        }
        if status.success() {
            self.out.good("probe ok");
            self.finish_once(Outcome::Success);
        } else {
            self.out.error(format!("probe failed ({status})"));
            self.finish_once(Outcome::ProbeFailed);
        }
    }

    /// `--once`: a probe still running at `--probe-timeout` is killed and fails the run.
    pub(super) fn check_probe(&mut self, now: Instant) {
        let Some((pid, started)) = self.probe else { return };
        if self.once_decided || now < deadline(started, self.config.probe_timeout) {
            return;
        }
        let _ = killpg(pid, Signal::SIGKILL);
        self.out.error(format!(
            "probe did not finish within {}; killed",
            output::duration(self.config.probe_timeout)
        ));
        self.finish_once(Outcome::ProbeFailed);
    }

    /// `--once` is decided: remember how, stop gracefully.
    pub(super) fn finish_once(&mut self, outcome: Outcome) {
        if self.shutdown.is_none() && !self.once_decided {
            self.once_decided = true;
            self.outcome = outcome;
            self.begin_shutdown(Shutdown::Graceful);
        }
    }

    // ----- children ------------------------------------------------------------------------

    /// A child was reaped: the build, a cancelled build, the probe, or a worker of some
    /// generation; anything else is an orphaned descendant re-parented to devserve.
    pub(super) fn on_exit(&mut self, pid: Pid, status: ExitStatus) {
        let now = Instant::now();
        if self.sentinel.as_ref().is_some_and(|s| s.pid() == pid) {
            self.sentinel_exited(pid, status);
        } else if self.build.as_ref().is_some_and(|(build, _)| build.pid == pid) {
            self.release_group(pid);
            if let Some((build, trigger)) = self.build.take() {
                self.build_finished(build, trigger, status);
            }
        } else if let Some(index) = self.cancelled_builds.iter().position(|p| *p == pid) {
            self.cancelled_builds.swap_remove(index);
            self.release_group(pid);
        } else if self.probe.is_some_and(|(probe, _)| probe == pid) {
            self.probe = None;
            self.release_group(pid);
            self.probe_finished(status);
        } else if self.next.as_ref().is_some_and(|g| g.has_pid(pid)) {
            self.release_group(pid);
            let slot = match self.next.as_mut().and_then(|g| g.worker_exited(pid, status, now)) {
                Some(WorkerExit::Retired { slot } | WorkerExit::Ended { slot, .. }) => slot,
                None => 0,
            };
            let culprit = self.next.as_ref().map(|g| g.id);
            self.roll_back(&format!("w{slot} (pid {pid}) {status} before it was ready"), now);
            self.rearm_sockets(culprit);
        } else if self.serving.as_ref().is_some_and(|g| g.has_pid(pid)) {
            self.release_group(pid);
            let culprit = self.serving.as_ref().map(|g| g.id);
            self.serving_worker_exited(pid, status, now);
            self.rearm_sockets(culprit);
        } else if let Some(index) = self.draining.iter().position(|g| g.has_pid(pid)) {
            self.release_group(pid);
            self.draining[index].worker_exited(pid, status, now);
            if self.draining[index].is_empty() {
                let generation = self.draining.remove(index);
                self.out.note(Note::GenerationStopped { generation: generation.id });
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

    /// The sentinel died (someone killed it): start a new one at once, with everything it knew,
    /// so that a SIGKILL of devserve still leaves nothing behind.
    fn sentinel_exited(&mut self, pid: Pid, status: ExitStatus) {
        let Some(sentinel) = self.sentinel.as_mut() else { return };
        match sentinel.respawn() {
            Ok(new) => self.out.warn(format!("sentinel (pid {pid}) {status}; restarted (pid {new})")),
            Err(e) => self.out.error(format!(
                "sentinel (pid {pid}) {status} and cannot be restarted: {e}; \
                 a SIGKILL of devserve may now leave processes behind"
            )),
        }
    }

    /// A held socket that no longer listens (a worker called `shutdown()` on its fd) listens
    /// again, on the same port; `culprit` is the generation most likely to have done it.
    pub(super) fn rearm_sockets(&mut self, culprit: Option<u64>) {
        for socket in &self.sockets {
            match socket.rearm() {
                Ok(false) => {}
                Ok(true) => {
                    let by = culprit.map(|id| format!(" by gen {id}")).unwrap_or_default();
                    self.out.warn(format!(
                        "{} was shut down{by} (a worker called shutdown() on its fd); listening again",
                        socket.bound
                    ));
                }
                Err(e) => self.out.warn(format!("{}: cannot check or re-arm the socket: {e}", socket.bound)),
            }
        }
    }

    /// A process group's leader is gone: kill what is left of the group, stop tracking it.
    fn release_group(&mut self, pid: Pid) {
        let _ = killpg(pid, Signal::SIGKILL);
        if let Some(sentinel) = self.sentinel.as_mut() {
            sentinel.untrack(pid);
        }
    }

    pub(super) fn on_notify(&mut self, note: &Notification) {
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
}

/// `gen 4 ready in 262ms (debounce 50ms, build 180ms, start 32ms) · 3 files changed`: what is
/// neither build nor start is the debounce wait (and devserve's own overhead).
fn ready_note(generation: &Generation, now: Instant, ready_delay: Duration) -> Note {
    let total = now.duration_since(generation.triggered);
    let start = now.duration_since(generation.started);
    let build = generation.build_took.unwrap_or_default();
    Note::GenerationReady {
        generation: generation.id,
        total_ms: ms(total),
        debounce_ms: generation.debounced.then(|| ms(total.saturating_sub(start).saturating_sub(build))),
        build_ms: generation.build_took.map(ms),
        start_ms: ms(start),
        assumed_after_ms: generation.ready_by_delay.then(|| ms(ready_delay)),
        cause: generation.cause.clone(),
    }
}
