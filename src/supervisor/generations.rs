//! Generations: one starts (or is queued behind the old one in restart mode), becomes ready and
//! replaces the serving one, or fails and is rolled back; serving workers that die are restarted;
//! retiring generations drain and are killed at their deadline.
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::trigger::Trigger;
use super::{Draining, Next, Outcome, Shutdown, StartError, Supervisor};
use crate::generation::{Generation, Provenance, deadline};
use crate::output::{Report, WorkerStart};
use crate::procs::Procs;
use crate::proxy::BrowserEvent;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl<P: Procs> Supervisor<P> {
    pub(super) fn start_generation(
        &mut self,
        s: usize,
        trigger: Trigger,
        build_took: Option<Duration>,
        now: Instant,
    ) {
        if self.accept_mode().is_some() {
            return self.prepare_program(trigger, now);
        }
        // Without held sockets and without a port of its own per worker, old and new would bind
        // the same port: the old one stops first.
        let restart_mode = self.services[s].launch.sockets.is_empty() && !self.behind_front(s);
        if let Some(superseded) = self.services[s].next.take_generation() {
            let by_build = self.services[s].config.build.is_some();
            self.services[s].out.report(Report::GenerationSuperseded { generation: superseded.id, by_build });
            self.retire(s, superseded, now);
        }
        if restart_mode && (self.services[s].serving.is_some() || !self.services[s].draining.is_empty()) {
            if let Some(mut old) = self.services[s].serving.take() {
                if self.fronted(s) {
                    // --app-port: if the new generation does not come up, the old command starts again.
                    self.services[s].relaunch.previous = Some(old.relaunch());
                }
                self.retire_and_say(s, old, true, now);
            }
            self.services[s].next = Next::Queued { trigger, build_took };
            self.hold(
                s,
                "restarting: with --app-port the old generation stops before the new one starts".into(),
            );
            return;
        }
        let id = self.next_generation;
        self.next_generation += 1;
        let culprit = self.services[s].serving.as_ref().map(|g| g.id).or(self.services[s]
            .draining
            .iter()
            .map(|d| d.generation.id)
            .max());
        self.rearm_sockets(s, culprit);
        // A rolling swap starts one worker and adds the others one by one (`roll_one`).
        // Behind the front door a swap is already one atomic switch: no rolling.
        let rolling =
            self.services[s].config.rolling && self.services[s].serving.is_some() && !self.fronted(s);
        let count = if rolling { 1 } else { self.services[s].workers };
        let provenance = Provenance {
            triggered: Some(trigger.at),
            build_took,
            cause: trigger.describe(),
            debounced: trigger.file_count() > 0,
            css_only: trigger.css_only(),
        };
        match Generation::start(id, count, self.services[s].launch.clone(), provenance, &mut self.procs, now)
        {
            Ok(generation) => {
                let pids = generation.live_pids().iter().map(|p| p.as_raw()).collect();
                self.services[s].out.report(Report::GenerationStarting { generation: id, pids });
                // Nothing serves: requests wait for this one (after a failure they were refused).
                self.hold(s, format!("gen {id} starting"));
                self.services[s].loops.started(now);
                self.services[s].next =
                    if rolling { Next::Rolling(generation) } else { Next::Starting(generation) };
            }
            Err(e) if e.is_bad_command() && !self.services[s].started_once => {
                self.fatal = Some(StartError::Command(e));
                self.begin_shutdown(Shutdown::Immediate, now);
            }
            Err(e) => {
                let reason = format!("could not start: {e}");
                self.down(s, format!("gen {id} failed: {reason}; waiting for a change"));
                self.services[s].out.report(Report::GenerationFailed {
                    generation: id,
                    reason,
                    serving: self.services[s].serving.as_ref().map(|g| g.id),
                });
                if self.config.once {
                    self.finish_once(Outcome::NotReady);
                }
            }
        }
    }

    /// Restart mode: start the queued generation once the old one has gone.
    pub(super) fn start_queued(&mut self, s: usize, now: Instant) {
        if self.services[s].serving.is_none()
            && self.services[s].draining.is_empty()
            && matches!(self.services[s].next, Next::Idle)
            && let Some(previous) = self.services[s].relaunch.queued.take()
        {
            self.restart_previous(s, previous, now);
            return;
        }
        if self.services[s].serving.is_some()
            || !self.services[s].draining.is_empty()
            || !matches!(self.services[s].next, Next::Queued { .. })
        {
            return;
        }
        if let Next::Queued { trigger, build_took } = std::mem::take(&mut self.services[s].next) {
            self.start_generation(s, trigger, build_took, now);
        }
    }

    /// Readiness and ready timeout of the starting generation.
    pub(super) fn check_next(&mut self, s: usize, now: Instant) {
        // Behind the front door readiness is observed (the port, --ready-path, READY=1), never
        // assumed after a delay.
        let assume = !self.fronted(s);
        let ready_delay = self.services[s].config.ready_delay;
        if let Some(serving) = self.services[s].serving.as_mut()
            && assume
        {
            serving.apply_ready_delay(ready_delay, now);
        }
        let (ready_delay, ready_timeout, workers) = (
            self.services[s].config.ready_delay,
            self.services[s].config.ready_timeout,
            self.services[s].workers,
        );
        let speaks_notify = self.services[s].app_speaks_notify || !assume;
        let Some(next) = self.services[s].next.generation_mut() else { return };
        // Up for the ready delay counts only before the ready timeout (equal ones: not ready).
        if !speaks_notify && now < next.ready_deadline(ready_timeout) {
            next.apply_ready_delay(ready_delay, now);
        }
        let all_ready = next.all_ready();
        let timed_out = now >= next.ready_deadline(ready_timeout);
        let rolling_short =
            matches!(self.services[s].next, Next::Rolling(ref g) if g.workers.len() < workers as usize);
        if all_ready && rolling_short && self.services[s].serving.is_some() {
            self.roll_one(s, now);
        } else if all_ready {
            self.promote(s, now);
        } else if timed_out {
            let reason = format!("not ready within {}", crate::output::duration(ready_timeout));
            self.roll_back(s, &reason, now);
        }
    }

    /// `--watchdog`: a ready worker silent for that long is killed; its exit then counts as a
    /// crash (restart with backoff when serving, rollback when starting).
    pub(super) fn check_watchdogs(&mut self, s: usize, now: Instant) {
        let Some(watchdog) = self.services[s].config.watchdog else { return };
        let service = &mut self.services[s];
        let generations = service.next.generation_mut().into_iter().chain(service.serving.as_mut());
        for generation in generations {
            for (slot, pid) in generation.missed_watchdogs(watchdog, now) {
                self.procs.signal(pid, Signal::SIGKILL);
                service.out.report(Report::WatchdogMissed {
                    generation: generation.id,
                    worker: slot,
                    pid: pid.as_raw(),
                    after_ms: ms(watchdog),
                });
            }
        }
    }

    /// Sends the stop signal to the serving generation's oldest running worker and says so
    /// (`rolling`: a step of a rolling swap, else a TTOU). Behind the front door its upstream is
    /// removed first: no new request goes to it, and the proxy closes its idle pooled connections,
    /// which an app would otherwise wait on before it exits (its in-flight requests finish).
    pub(super) fn retire_oldest_worker(&mut self, s: usize, now: Instant, rolling: bool) {
        let (signal, timeout) = (self.services[s].config.stop_signal, self.services[s].config.stop_timeout);
        let Some((generation, (pid, port))) =
            self.services[s].serving.as_ref().and_then(|g| Some((g.id, g.oldest_active_pid_and_port()?)))
        else {
            return;
        };
        self.upstream_removed(generation, port, pid);
        if let Some(serving) = self.services[s].serving.as_mut()
            && let Some((slot, pid)) = serving.retire_oldest(signal, timeout, now, &mut self.procs)
        {
            self.services[s].out.report(Report::WorkerStopping {
                generation,
                worker: slot,
                pid: pid.as_raw(),
                rolling,
            });
        }
    }

    /// Rolling swap step: every new worker so far is ready, so one old worker stops and one
    /// more new worker starts. Capacity never drops below the worker count.
    pub(super) fn roll_one(&mut self, s: usize, now: Instant) {
        self.retire_oldest_worker(s, now, true);
        let Some(next) = self.services[s].next.generation_mut() else { return };
        let slot = next.free_slot();
        let id = next.id;
        match next.add_worker(slot, &mut self.procs, now) {
            Ok(pid) => self.services[s].out.report(Report::WorkerStarted {
                generation: id,
                worker: slot,
                pid: pid.as_raw(),
                why: WorkerStart::Rolling,
            }),
            Err(e) => self.roll_back(s, &format!("w{slot} could not start: {e}"), now),
        }
    }

    /// The new generation is ready: it serves, the old one drains.
    pub(super) fn promote(&mut self, s: usize, now: Instant) {
        let Some(generation) = self.services[s].next.take_generation() else { return };
        let first = !self.services[s].started_once;
        self.services[s].started_once = true;
        self.services[s].loops.ready(now);
        self.services[s].relaunch.previous = None;
        self.rearm_sockets(s, Some(generation.id));
        self.services[s].out.report(ready_report(&generation, now, self.services[s].config.ready_delay));
        let css_only = generation.css_only.clone();
        let id = generation.id;
        let old = self.services[s].serving.replace(generation);
        // New requests go to the new generation before the old one drains; then pages reload,
        // into the new generation.
        self.route(s);
        // Every service serves for the first time: the page can open, an upgrade has served.
        let everything = first && self.all_started();
        if everything {
            self.open_browser();
            self.tell_anchor_ready();
        }
        self.tell_browsers_swapped(s, id, css_only);
        if let Some(old) = old {
            self.retire_and_say(s, old, false, now);
        }
        // A TTIN while it started: the serving generation grows to the wanted count.
        self.top_up_serving(s, now);
        if first {
            self.start_waiting();
        }
        if self.config.once && everything {
            self.start_probe(now);
        }
    }

    /// The new generation failed: stop it, keep the old one.
    pub(super) fn roll_back(&mut self, s: usize, reason: &str, now: Instant) {
        let Some(failed) = self.services[s].next.take_generation() else { return };
        self.services[s].out.report(Report::GenerationFailed {
            generation: failed.id,
            reason: reason.to_owned(),
            serving: self.services[s].serving.as_ref().map(|g| g.id),
        });
        let why = format!("gen {} failed: {reason}; waiting for a change", failed.id);
        // With --app-port the previous generation starts again: a wait worth holding for.
        if self.services[s].relaunch.previous.is_some() {
            self.hold(s, why)
        } else {
            self.down(s, why)
        }
        let status = self.named(s, reason);
        self.tell_browsers(BrowserEvent::Crashed { generation: failed.id, status });
        let failed_id = failed.id;
        self.retire(s, failed, now);
        if !self.services[s].started_once && self.services[s].relaunch.previous.is_none() {
            self.upgrade_start_failed(&format!("gen {failed_id} failed: {reason}"), now);
        }
        if self.services[s].serving.is_none()
            && let Some(previous) = self.services[s].relaunch.previous.take()
        {
            self.restart_previous(s, previous, now);
        }
        self.services[s].loops.settled(now);
        // A rolling swap may have stopped old workers already: bring them back.
        self.top_up_serving(s, now);
        if self.config.once {
            self.finish_once(Outcome::NotReady);
        }
    }

    /// `--app-port` rollback: the generation stopped for the one that failed starts again, from its
    /// own launch and program copy, once the failed one is gone (they share the port).
    pub(super) fn restart_previous(&mut self, s: usize, previous: crate::generation::Relaunch, now: Instant) {
        if !self.services[s].draining.is_empty() {
            self.services[s].relaunch.queued = Some(previous);
            return;
        }
        let id = self.next_generation;
        self.next_generation += 1;
        let provenance =
            Provenance { cause: "rollback: the previous command".into(), ..Provenance::default() };
        match Generation::start_from(id, self.services[s].workers, previous, provenance, &mut self.procs, now)
        {
            Ok(generation) => {
                let pids = generation.live_pids().iter().map(|p| p.as_raw()).collect();
                self.services[s].out.report(Report::GenerationStarting { generation: id, pids });
                self.services[s].next = Next::Starting(generation);
            }
            Err(e) => {
                let reason = format!("could not start the previous command again: {e}");
                self.services[s].out.report(Report::GenerationFailed {
                    generation: id,
                    reason,
                    serving: None,
                });
            }
        }
    }

    /// Draining generations with no process left are gone: reported stopped and released. A worker
    /// that exits takes its generation out when it is the last, but a generation whose only
    /// worker was waiting for its restart has none to exit once it is stopped (the stop cancels
    /// the restart), and would otherwise block a queued start and devserve's exit for ever.
    pub(super) fn release_stopped(&mut self, s: usize) {
        while let Some(index) =
            self.services[s].draining.iter().position(|d| d.signalled && d.generation.is_empty())
        {
            let generation = self.services[s].draining.remove(index).generation.id;
            self.services[s].out.report(Report::GenerationStopped { generation });
        }
    }

    /// Changes the loop guard kept (see `loops`) whose quiet time has passed: reloaded for now.
    pub(super) fn reload_kept(&mut self, s: usize, now: Instant) {
        let kept = self.services[s].loops.take_due(now);
        if !kept.is_empty() && self.shutdown.is_none() {
            self.trigger(s, Trigger::change(kept, now));
        }
    }

    /// [`Self::retire`], and the "stopping" line unless it drains first behind the front door
    /// (then the line comes with the signal).
    pub(super) fn retire_and_say(&mut self, s: usize, old: Generation, restart_mode: bool, now: Instant) {
        let (id, signal) = (old.id, self.services[s].config.stop_signal.as_str().to_owned());
        if !self.retire(s, old, now) {
            self.services[s].out.report(Report::GenerationStopping { generation: id, signal, restart_mode });
        }
    }

    /// Sends a generation its stop signal and keeps it until its processes are reaped. Behind the
    /// front door a generation requests were routed to drains first: the signal waits for the
    /// proxy (or the stop timeout). True when the signal waits.
    pub(super) fn retire(&mut self, s: usize, mut generation: Generation, now: Instant) -> bool {
        let wait = self.drain_first(generation.id);
        if !wait {
            generation.stop(self.services[s].config.stop_signal, &mut self.procs);
        }
        if !generation.is_empty() {
            let deadline = deadline(now, self.services[s].config.stop_timeout);
            self.services[s].draining.push(Draining {
                generation,
                deadline,
                signalled: !wait,
                killed: false,
            });
        }
        wait
    }

    /// Serving workers whose backoff has passed start again.
    pub(super) fn restart_workers(&mut self, s: usize, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let due = self.services[s].serving.as_ref().map(|g| g.due_restarts(now)).unwrap_or_default();
        for slot in due {
            if !self.start_serving_worker(s, slot, WorkerStart::Restart, now) {
                let Some(serving) = self.services[s].serving.as_mut() else { return };
                serving.schedule_restart(slot, now);
            }
        }
    }

    /// Starts serving workers until there are as many as wanted (TTIN, a generation promoted
    /// while the count grew, and after a rolling swap rolled back).
    pub(super) fn top_up_serving(&mut self, s: usize, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        while let Some(serving) = self.services[s].serving.as_ref()
            && serving.active_count() < self.services[s].workers as usize
        {
            let slot = serving.free_slot();
            if !self.start_serving_worker(s, slot, WorkerStart::Added, now) {
                return;
            }
        }
    }

    /// Starts a worker of the serving generation in `slot` and says so; false if it could not
    /// start (a restart then tries again after its next backoff).
    pub(super) fn start_serving_worker(
        &mut self,
        s: usize,
        slot: u32,
        why: WorkerStart,
        now: Instant,
    ) -> bool {
        let Some(serving) = self.services[s].serving.as_mut() else { return false };
        let generation = serving.id;
        match serving.add_worker(slot, &mut self.procs, now) {
            Ok(pid) => {
                self.services[s].out.report(Report::WorkerStarted {
                    generation,
                    worker: slot,
                    pid: pid.as_raw(),
                    why,
                });
                true
            }
            Err(e) => {
                let retry_in_ms = (why == WorkerStart::Restart).then(|| ms(serving.next_backoff(slot)));
                self.services[s].out.report(Report::WorkerNotStarted {
                    generation,
                    worker: slot,
                    error: e.to_string(),
                    retry_in_ms,
                });
                false
            }
        }
    }

    /// Draining generations (and retiring workers) past their stop timeout get SIGKILL.
    pub(super) fn kill_overdue(&mut self, s: usize, now: Instant) {
        let after_ms = ms(self.services[s].config.stop_timeout);
        if let Some(serving) = self.services[s].serving.as_mut() {
            let generation = serving.id;
            for pid in serving.kill_overdue_retirees(now, &mut self.procs) {
                self.services[s].out.report(Report::WorkerKilled { generation, pid: pid.as_raw(), after_ms });
            }
        }
        let (signal, timeout) = (self.services[s].config.stop_signal, self.services[s].config.stop_timeout);
        let mut timed_out = Vec::new();
        let service = &mut self.services[s];
        for draining in &mut service.draining {
            if !draining.signalled && now >= draining.deadline {
                // The proxy still had requests for it: close them, then the stop signal.
                timed_out.push(draining.generation.id);
                let line = draining.signal(signal, timeout, false, &mut self.procs, now);
                service.out.report(line);
            } else if !draining.killed && now >= draining.deadline {
                let pids = draining.generation.live_pids().iter().map(|p| p.as_raw()).collect();
                service.out.report(Report::GenerationKilled {
                    generation: draining.generation.id,
                    pids,
                    after_ms,
                });
                draining.generation.kill(&mut self.procs);
                draining.killed = true;
            }
        }
        for generation in timed_out {
            self.drain_timed_out(generation);
        }
    }
}

/// `gen 4 ready in 262ms (debounce 50ms, build 180ms, start 32ms) · 3 files changed`: what is
/// neither build nor start is the debounce wait (and devserve's own overhead).
fn ready_report(generation: &Generation, now: Instant, ready_delay: Duration) -> Report {
    let total = now.saturating_duration_since(generation.triggered);
    let start = now.saturating_duration_since(generation.started);
    let build = generation.build_took.unwrap_or_default();
    Report::GenerationReady {
        generation: generation.id,
        total_ms: ms(total),
        debounce_ms: generation.debounced.then(|| ms(total.saturating_sub(start).saturating_sub(build))),
        build_ms: generation.build_took.map(ms),
        start_ms: ms(start),
        assumed_after_ms: generation.ready_by_delay.then(|| ms(ready_delay)),
        cause: generation.cause.clone(),
    }
}
