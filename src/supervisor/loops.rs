//! Self-triggered reload loops: an app that writes a file in the watched tree each time it
//! starts (a log, a SQLite database, an upload) would reload itself for ever.
//!
//! Rule: a change whose first event comes while a generation starts — after its start, before it
//! is ready, and within [`WINDOW`] — is a *suspect*. (An edit made after the reload is done, even
//! a moment after, is the user's, never a suspect.) When the same paths are the suspect after [`STARTS`] starts in a row,
//! with no other change in between, those paths are muted: devserve says so once, with the
//! `--ignore` that fixes it for good, and their changes no longer reload. A muted path counts
//! again at the next change that does not follow a start (the user edited something), so an
//! explicit edit of it is never lost for long. A real edit of any other file still reloads.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How soon after a start (or ready) a change counts as caused by it.
pub(super) const WINDOW: Duration = Duration::from_secs(1);
/// How many starts in a row the same paths must follow before they are muted.
pub(super) const STARTS: u32 = 4;

/// What to do about a change.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Reload for these paths.
    Reload(Vec<PathBuf>),
    /// Only muted paths changed: nothing to do.
    Ignore,
    /// These paths were just muted: say so, do not reload.
    Muted(Vec<PathBuf>),
}

#[derive(Debug, Default)]
pub(super) struct LoopGuard {
    /// The latest starts, each with its ready once known.
    recent: [Option<(Instant, Option<Instant>)>; 3],
    streak: u32,
    suspects: BTreeSet<PathBuf>,
    muted: BTreeSet<PathBuf>,
}

impl LoopGuard {
    /// A generation started at `at`.
    pub(super) fn started(&mut self, at: Instant) {
        self.recent.rotate_right(1);
        self.recent[0] = Some((at, None));
    }

    /// The latest generation became ready at `at`.
    pub(super) fn ready(&mut self, at: Instant) {
        if let Some((_, ready)) = self.recent[0].as_mut() {
            ready.get_or_insert(at);
        }
    }

    /// Judges a change of `paths` whose first event came at `since`.
    pub(super) fn judge(&mut self, paths: Vec<PathBuf>, since: Instant) -> Verdict {
        let after_start = self.recent.iter().flatten().any(|(start, ready)| {
            since.checked_duration_since(*start).is_some_and(|gap| gap <= WINDOW)
                && ready.is_none_or(|ready| since <= ready)
        });
        if !after_start {
            // Not from the loop: everything counts again.
            self.muted.clear();
            self.streak = 0;
            self.suspects.clear();
            return Verdict::Reload(paths);
        }
        let fresh: BTreeSet<PathBuf> = paths.into_iter().filter(|p| !self.muted.contains(p)).collect();
        if fresh.is_empty() {
            return Verdict::Ignore;
        }
        if fresh == self.suspects {
            self.streak += 1;
        } else {
            self.suspects = fresh.clone();
            self.streak = 1;
        }
        if self.streak >= STARTS {
            self.muted.extend(fresh.iter().cloned());
            self.streak = 0;
            self.suspects.clear();
            return Verdict::Muted(fresh.into_iter().collect());
        }
        Verdict::Reload(fresh.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Vec<PathBuf> {
        vec![PathBuf::from("/app/logs/app.log")]
    }

    #[test]
    fn the_same_file_after_each_start_is_muted_then_counts_again() {
        let mut guard = LoopGuard::default();
        let start = Instant::now();
        for n in 0..STARTS - 1 {
            let at = start + Duration::from_secs(u64::from(n) * 10);
            guard.started(at);
            assert_eq!(guard.judge(log(), at + Duration::from_millis(100)), Verdict::Reload(log()));
        }
        let at = start + Duration::from_secs(100);
        guard.started(at);
        assert_eq!(guard.judge(log(), at + Duration::from_millis(100)), Verdict::Muted(log()));
        // An edit landing while that generation starts: judged, not a reset.
        let edit = vec![PathBuf::from("/app/src/main.py")];
        assert_eq!(guard.judge(edit.clone(), at + Duration::from_millis(150)), Verdict::Reload(edit));
        guard.ready(at + Duration::from_millis(200));
        guard.started(at + Duration::from_secs(1));
        assert_eq!(guard.judge(log(), at + Duration::from_millis(1100)), Verdict::Ignore, "still muted");
        assert_eq!(
            guard.judge(log(), at + Duration::from_secs(30)),
            Verdict::Reload(log()),
            "a change long after a start is the user's: the log counts again"
        );
    }

    #[test]
    fn an_edit_right_after_each_reload_is_the_users() {
        let mut guard = LoopGuard::default();
        let start = Instant::now();
        let edit = vec![PathBuf::from("/app/version")];
        for n in 0..10 {
            let at = start + Duration::from_secs(n * 10);
            guard.started(at);
            guard.ready(at + Duration::from_millis(100));
            let verdict = guard.judge(edit.clone(), at + Duration::from_millis(110));
            assert_eq!(verdict, Verdict::Reload(edit.clone()), "saved just after ready {n}");
        }
    }

    #[test]
    fn changes_away_from_starts_are_never_suspects() {
        let mut guard = LoopGuard::default();
        let start = Instant::now();
        for n in 0..10 {
            let at = start + Duration::from_secs(n * 10);
            guard.started(at);
            assert_eq!(guard.judge(log(), at + Duration::from_secs(5)), Verdict::Reload(log()));
        }
    }
}
