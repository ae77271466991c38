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
    pub(super) fn on_change(&mut self, mut paths: Vec<std::path::PathBuf>, since: Instant) {
        // A file the build writes itself, while it ran, is its own doing: not a reason to cancel
        // it or to build again.
        let during_build = self.service.build.is_some()
            || self.service.last_build.is_some_and(|(_, _, ended)| since <= ended);
        if let Some(script) = self.config.build.as_deref()
            && during_build
        {
            paths.retain(|path| !written_by_build(script, path));
            if paths.is_empty() {
                return;
            }
        }
        match self.service.loops.judge(paths, since) {
            Verdict::Reload(paths) => self.trigger(Trigger::change(paths, since)),
            Verdict::Ignore => {}
            Verdict::Muted(paths) => {
                let cwd = std::env::current_dir().unwrap_or_default();
                let globs: Vec<String> = paths
                    .iter()
                    .map(|path| {
                        let root = self.config.watch.roots.iter().find(|r| path.starts_with(r));
                        root.and_then(|r| path.strip_prefix(r).ok()).unwrap_or(path).display().to_string()
                    })
                    .collect();
                let shown = paths.iter().map(|p| super::trigger::relative_display(p, &cwd)).collect();
                self.out.report(Report::LoopMuted { paths: shown, starts: super::loops::STARTS, globs });
            }
        }
    }

    /// A change, a reload or the first start: build (cancelling a build in progress), then start
    /// a generation.
    pub(super) fn trigger(&mut self, mut trigger: Trigger) {
        if self.shutdown.is_some() || self.upgrades.anchored {
            return;
        }
        if self.config.clear && !trigger.is_initial() {
            self.out.clear_screen();
        }
        if trigger.is_reload() {
            // The user asked: a muted path counts again.
            self.service.loops.user_acted();
        }
        // What is on disk now is built and started, kept muted changes included.
        self.service.loops.triggered();
        self.out.report(Report::ChangeDetected { cause: trigger.describe(), files: trigger.file_count() });
        if let Some(BuildRun { build, trigger: earlier }) = self.service.build.take() {
            build.cancel(&mut self.procs);
            let mut merged = earlier;
            merged.merge(trigger);
            trigger = merged;
            self.out.report(Report::BuildRestarted { cause: trigger.describe() });
        }
        let now = Instant::now();
        match self.config.build.clone() {
            Some(script) => self.start_build(&script, trigger, now),
            None => self.start_generation(trigger, None, now),
        }
    }

    pub(super) fn start_build(&mut self, script: &str, trigger: Trigger, now: Instant) {
        self.out.report(Report::BuildStarted { cause: trigger.describe(), command: script.to_owned() });
        self.hold(format!("building ({script})"));
        self.tell_browsers(BrowserEvent::Building { cause: trigger.describe() });
        match Build::start(script, &self.config.env, self.front.door.is_some(), &mut self.procs, now) {
            Ok(build) => self.service.build = Some(BuildRun { build, trigger }),
            Err(e) => {
                self.out.report(Report::BuildNotStarted { error: e.to_string() });
                if !self.service.started_once {
                    self.upgrade_start_failed(&format!("the build could not start: {e}"), now);
                }
                if self.config.once {
                    self.finish_once(Outcome::BuildFailed);
                }
            }
        }
    }

    pub(super) fn build_finished(&mut self, run: BuildRun, status: ExitStatus, now: Instant) {
        let took = run.build.took(now);
        self.service.last_build = Some((status, took, now));
        self.out.report(Report::BuildFinished {
            ok: status.success(),
            status: status.to_string(),
            duration_ms: ms(took),
            serving: self.service.serving.as_ref().map(|g| g.id),
        });
        let script = self.config.build.clone().unwrap_or_default();
        let output = if status.success() { String::new() } else { run.build.output_tail() };
        self.build_result(&script, status.success(), status.to_string(), output.clone());
        if !status.success() && !self.service.started_once {
            self.upgrade_start_failed(&format!("the first build {status}"), now);
        }
        if !status.success() {
            let diagnostics = run.build.diagnostics();
            self.tell_browsers(BrowserEvent::BuildFailed {
                command: script.clone(),
                status: status.to_string(),
                duration_ms: ms(took),
                output,
                diagnostics,
            });
        }
        if status.success() && self.unchanged_program(&run.trigger) {
            let serving = self.service.serving.as_ref().map_or(0, |g| g.id);
            self.out.report(Report::AppUnchanged { build_ms: ms(took), serving });
            // Nothing to reload; an overlay from an earlier failure goes.
            self.tell_browsers(BrowserEvent::Ready { generation: serving, css_only: Vec::new() });
        } else if status.success() {
            self.start_generation(run.trigger, Some(took), now);
        } else if self.config.once {
            self.finish_once(Outcome::BuildFailed);
        }
    }

    /// A build for changed files left the program exactly as the serving generation runs it (a
    /// comment edit, a test file, `cargo build` with nothing to do): no swap. Not for the first
    /// start, a reload asked for (HUP, a config edit), `--always-swap`, or while another
    /// generation is starting.
    pub(super) fn unchanged_program(&self, trigger: &Trigger) -> bool {
        !self.config.always_swap
            && !trigger.is_initial()
            && trigger.file_count() > 0
            && !trigger.is_reload()
            && matches!(self.service.next, Next::Idle)
            && self.service.serving.as_ref().is_some_and(|g| g.runs_same_program(&self.service.launch))
    }
}

/// Files a build command writes in the watched tree itself: cargo rewrites `Cargo.lock` when
/// `Cargo.toml` changed (its `target/` is not watched by the default ignores of a Cargo project).
fn written_by_build(script: &str, path: &std::path::Path) -> bool {
    script.split_whitespace().any(|word| word == "cargo")
        && path.file_name().is_some_and(|n| n == "Cargo.lock")
}
