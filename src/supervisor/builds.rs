//! Changes and builds: a change (or a reload, or the first start) triggers a build, cancelling one
//! in progress and merging their causes; a finished build starts a generation, or reports its
//! failure and keeps the serving one; a build whose program is unchanged swaps nothing.
use std::time::{Duration, Instant};

use super::loops::Verdict;
use super::trigger::Trigger;
use super::{BuildRun, Next, Outcome, Supervisor};
use crate::build::Build;
use crate::event::ExitStatus;
use crate::output::Report;
use crate::procs::Procs;
use crate::proxy::BrowserEvent;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl<P: Procs> Supervisor<P> {
    /// Files changed: reload, unless only paths of a self-triggered loop did (see `loops`).
    pub(super) fn on_change(&mut self, s: usize, mut paths: Vec<std::path::PathBuf>, since: Instant) {
        // A file the build writes itself, while it ran, is its own doing: not a reason to cancel
        // it or to build again.
        let during_build = self.services[s].build.is_some()
            || self.services[s].last_build.is_some_and(|(_, _, ended)| since <= ended);
        if let Some(script) = self.services[s].config.build.as_deref()
            && during_build
        {
            paths.retain(|path| !written_by_build(script, path));
            if paths.is_empty() {
                return;
            }
        }
        match self.services[s].loops.judge(paths, since) {
            Verdict::Reload(paths) => self.trigger(s, Trigger::change(paths, since)),
            Verdict::Ignore => {}
            Verdict::Muted(paths) => {
                let cwd = std::env::current_dir().unwrap_or_default();
                let globs: Vec<String> = paths
                    .iter()
                    .map(|path| {
                        let root = self.services[s].config.watch.roots.iter().find(|r| path.starts_with(r));
                        root.and_then(|r| path.strip_prefix(r).ok()).unwrap_or(path).display().to_string()
                    })
                    .collect();
                let shown = paths.iter().map(|p| super::trigger::relative_display(p, &cwd)).collect();
                self.services[s].out.report(Report::LoopMuted {
                    paths: shown,
                    starts: super::loops::STARTS,
                    globs,
                });
            }
        }
    }

    /// A change, a reload or the first start: build (cancelling a build in progress), then start
    /// a generation.
    pub(super) fn trigger(&mut self, s: usize, mut trigger: Trigger) {
        if self.shutdown.is_some() || self.upgrades.anchored {
            return;
        }
        // Not started yet, waiting for its dependencies: the change joins its first start.
        if let Some(waiting) = self.services[s].waiting.as_mut() {
            waiting.merge(trigger);
            return;
        }
        if self.config.clear && !trigger.is_initial() {
            self.services[s].out.clear_screen();
        }
        if trigger.is_reload() {
            // The user asked: a muted path counts again.
            self.services[s].loops.user_acted();
        }
        // What is on disk now is built and started, kept muted changes included.
        self.services[s].loops.triggered();
        self.services[s]
            .out
            .report(Report::ChangeDetected { cause: trigger.describe(), files: trigger.file_count() });
        if let Some(earlier) = self.services[s].build_queued.take() {
            let mut merged = earlier;
            merged.merge(trigger);
            trigger = merged;
        }
        if let Some(BuildRun { build, trigger: earlier }) = self.services[s].build.take() {
            build.cancel(&mut self.procs);
            let mut merged = earlier;
            merged.merge(trigger);
            trigger = merged;
            self.services[s].out.report(Report::BuildRestarted { cause: trigger.describe() });
        }
        let now = Instant::now();
        match self.services[s].config.build.clone() {
            Some(_) if self.builds_running() >= self.config.build_jobs as usize => {
                let behind =
                    self.services.iter().filter(|o| o.build.is_some()).map(|o| o.name.clone()).collect();
                self.services[s].out.report(Report::BuildQueued { behind, jobs: self.config.build_jobs });
                self.services[s].build_queued = Some(trigger);
            }
            Some(script) => self.start_build(s, &script, trigger, now),
            None => self.start_generation(s, trigger, None, now),
        }
    }

    /// Builds running now, of every service.
    fn builds_running(&self) -> usize {
        self.services.iter().filter(|service| service.build.is_some()).count()
    }

    /// Builds waiting for their turn start, in service order, while fewer than `--build-jobs` run.
    pub(super) fn start_queued_builds(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        for s in 0..self.services.len() {
            if self.builds_running() >= self.config.build_jobs as usize {
                return;
            }
            if let Some(trigger) = self.services[s].build_queued.take()
                && let Some(script) = self.services[s].config.build.clone()
            {
                self.start_build(s, &script, trigger, now);
            }
        }
    }

    pub(super) fn start_build(&mut self, s: usize, script: &str, trigger: Trigger, now: Instant) {
        self.services[s]
            .out
            .report(Report::BuildStarted { cause: trigger.describe(), command: script.to_owned() });
        self.hold(s, format!("building ({script})"));
        self.tell_browsers(BrowserEvent::Building { cause: trigger.describe() });
        let prefix = self.services[s].out.service_prefix();
        match Build::start(
            script,
            &self.services[s].config.env,
            self.fronted(s),
            &prefix,
            &mut self.procs,
            now,
        ) {
            Ok(build) => self.services[s].build = Some(BuildRun { build, trigger }),
            Err(e) => {
                self.services[s].out.report(Report::BuildNotStarted { error: e.to_string() });
                if !self.services[s].started_once {
                    self.upgrade_start_failed(&format!("the build could not start: {e}"), now);
                }
                if self.config.once {
                    self.finish_once(Outcome::BuildFailed);
                }
            }
        }
    }

    pub(super) fn build_finished(&mut self, s: usize, run: BuildRun, status: ExitStatus, now: Instant) {
        let took = run.build.took(now);
        self.services[s].last_build = Some((status, took, now));
        self.services[s].out.report(Report::BuildFinished {
            ok: status.success(),
            status: status.to_string(),
            duration_ms: ms(took),
            serving: self.services[s].serving.as_ref().map(|g| g.id),
        });
        let script = self.services[s].config.build.clone().unwrap_or_default();
        let output = if status.success() { String::new() } else { run.build.output_tail() };
        self.build_result(s, &script, status.success(), status.to_string(), output.clone());
        if !status.success() && !self.services[s].started_once {
            self.upgrade_start_failed(&format!("the first build {status}"), now);
        }
        if !status.success() {
            let diagnostics = run.build.diagnostics();
            self.tell_browsers(BrowserEvent::BuildFailed {
                command: self.named(s, &script),
                status: status.to_string(),
                duration_ms: ms(took),
                output,
                diagnostics,
            });
        }
        let serving = self.services[s].serving.as_ref().map_or(0, |g| g.id);
        if status.success() && self.unchanged_program(s, &run.trigger) {
            self.services[s].out.report(Report::AppUnchanged { build_ms: ms(took), serving });
            // Nothing to reload; an overlay from an earlier failure goes.
            self.tell_browsers(BrowserEvent::Ready {
                generation: serving,
                css_only: Vec::new(),
                reload: false,
            });
        } else if status.success() && self.services[s].config.command.is_empty() {
            // A watch task: its build is all it does. Its output is served by another service,
            // whose own watch sees it.
            self.services[s].started_once = true;
            self.tell_browsers(BrowserEvent::Ready {
                generation: serving,
                css_only: Vec::new(),
                reload: false,
            });
            self.start_waiting();
            if self.config.once && self.all_started() {
                self.start_probe(now);
            }
        } else if status.success() {
            self.start_generation(s, run.trigger, Some(took), now);
        } else if self.config.once {
            self.finish_once(Outcome::BuildFailed);
        }
    }

    /// A build for changed files left the program exactly as the serving generation runs it (a
    /// comment edit, a test file, `cargo build` with nothing to do): no swap. Not for the first
    /// start, a reload asked for (HUP, a config edit), `--always-swap`, or while another
    /// generation is starting.
    pub(super) fn unchanged_program(&self, s: usize, trigger: &Trigger) -> bool {
        !self.services[s].config.always_swap
            && !trigger.is_initial()
            && trigger.file_count() > 0
            && !trigger.is_reload()
            && matches!(self.services[s].next, Next::Idle)
            && self.services[s]
                .serving
                .as_ref()
                .is_some_and(|g| g.runs_same_program(&self.services[s].launch))
    }
}

/// Files a build command writes in the watched tree itself: cargo rewrites `Cargo.lock` when
/// `Cargo.toml` changed (its `target/` is not watched by the default ignores of a Cargo project).
fn written_by_build(script: &str, path: &std::path::Path) -> bool {
    script.split_whitespace().any(|word| word == "cargo")
        && path.file_name().is_some_and(|n| n == "Cargo.lock")
}
