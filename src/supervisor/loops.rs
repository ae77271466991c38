//! Self-triggered reload loops: an app that writes a file in the watched tree each time it
//! starts (a log, a SQLite database, an upload) would reload itself for ever.
//!
//! Rule: a change whose first event comes while a generation starts — after its start, before it
//! is ready, and within [`WINDOW`] — is a *suspect*. (An edit made after the reload is done, even
//! a moment after, is the user's, never a suspect.) When the same paths are the suspect after [`STARTS`] starts in a row,
//! with no other change in between, those paths are muted: devserve says so once, with the
//! `--ignore` that fixes it for good, and their changes no longer reload at once. A muted path
//! counts again at the next change that does not follow a start (the user edited something), or
//! at a reload asked for (HUP). A real edit of any other file still reloads.
//!
//! **No save is lost.** Timing cannot tell an app's write at each start from a user saving the
//! same file faster than the app starts: both follow each start. So a muted change is *kept*,
//! until a reload begins after it (any reload: it builds and starts from the state on disk). When
//! the generation starting settles (ready or failed) with a change still kept, that change is
//! reloaded for after a quiet time that doubles at each such reload in a row ([`QUIET`], up to
//! [`QUIET_MAX`]): a user's last save is served within seconds, and an app that writes at each
//! start reloads ever more rarely instead of for ever. A settled start with nothing kept ends the
//! episode (the writes stopped: nothing is muted any more).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How soon after a start (or ready) a change counts as caused by it.
pub(super) const WINDOW: Duration = Duration::from_secs(1);
/// How many starts in a row the same paths must follow before they are muted.
pub(super) const STARTS: u32 = 4;
/// The quiet time before a kept change is reloaded for; it doubles at each such reload in a row.
pub(super) const QUIET: Duration = Duration::from_secs(1);
/// The longest quiet time.
pub(super) const QUIET_MAX: Duration = Duration::from_secs(60);

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
    /// Muted changes no reload has begun after yet.
    kept: BTreeSet<PathBuf>,
    /// When the kept changes are reloaded for.
    due: Option<Instant>,
    /// Reloads for kept changes in a row (the quiet time doubles with each).
    deferred: u32,
}

impl LoopGuard {
    /// A generation started at `at`.
    pub(super) fn started(&mut self, at: Instant) {
        self.recent.rotate_right(1);
        self.recent[0] = Some((at, None));
    }

    /// The latest generation became ready at `at`.
    pub(super) fn ready(&mut self, at: Instant) {
        self.settled(at);
    }

    /// The generation starting became ready or failed at `at` (its start window closes): a kept
    /// change is reloaded for after the quiet time; with nothing kept after a reload for kept
    /// changes, the writes stopped.
    pub(super) fn settled(&mut self, at: Instant) {
        if let Some((_, ready)) = self.recent[0].as_mut() {
            ready.get_or_insert(at);
        }
        if !self.kept.is_empty() {
            self.due = Some(at + self.quiet());
        } else if self.deferred > 0 {
            self.user_acted();
        }
    }

    /// The quiet time before the next reload for kept changes.
    fn quiet(&self) -> Duration {
        QUIET.saturating_mul(2u32.saturating_pow(self.deferred)).min(QUIET_MAX)
    }

    /// Keeps a muted change that came at `since`; when the latest start has already settled,
    /// nothing else will: it is due after the quiet time from now.
    fn keep(&mut self, paths: Vec<PathBuf>, since: Instant) {
        self.kept.extend(paths);
        let settled = self.recent[0].is_some_and(|(_, ready)| ready.is_some());
        if self.due.is_none() && settled {
            self.due = Some(since + self.quiet());
        }
    }

    /// A reload began (a build or a start, for any cause): it reads what is on disk now, kept
    /// changes included.
    pub(super) fn triggered(&mut self) {
        self.kept.clear();
        self.due = None;
    }

    /// When the kept changes are due, if any are.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The kept changes, once their quiet time has passed at `now` (then they are reloaded for).
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<PathBuf> {
        if self.due.is_none_or(|due| now < due) {
            return Vec::new();
        }
        self.due = None;
        self.deferred = self.deferred.saturating_add(1);
        std::mem::take(&mut self.kept).into_iter().collect()
    }

    /// The user acted (an edit away from any start, a reload asked for): whatever was muted or
    /// kept counts again.
    pub(super) fn user_acted(&mut self) {
        *self = LoopGuard { recent: self.recent, ..LoopGuard::default() };
    }

    /// Judges a change of `paths` whose first event came at `since`.
    pub(super) fn judge(&mut self, paths: Vec<PathBuf>, since: Instant) -> Verdict {
        let after_start = self.recent.iter().flatten().any(|(start, ready)| {
            since.checked_duration_since(*start).is_some_and(|gap| gap <= WINDOW)
                && ready.is_none_or(|ready| since <= ready)
        });
        if !after_start {
            // Not from the loop: everything counts again.
            self.user_acted();
            return Verdict::Reload(paths);
        }
        let fresh: BTreeSet<PathBuf> = paths.iter().filter(|p| !self.muted.contains(*p)).cloned().collect();
        if fresh.is_empty() {
            self.keep(paths, since);
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
            self.keep(paths, since);
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
        assert_eq!(guard.due(), Some(at + Duration::from_millis(200) + QUIET), "the muted change is kept");
        assert_eq!(
            guard.take_due(at + Duration::from_millis(1200)),
            log(),
            "and reloaded for after a quiet time"
        );
        guard.triggered();
        guard.started(at + Duration::from_secs(1));
        assert_eq!(guard.judge(log(), at + Duration::from_millis(1100)), Verdict::Ignore, "still muted");
        guard.ready(at + Duration::from_millis(1300));
        assert_eq!(guard.due(), Some(at + Duration::from_millis(1300) + QUIET * 2), "the quiet time doubles");
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

    #[test]
    fn saves_faster_than_the_app_starts_end_in_the_last_one_served() {
        let version = vec![PathBuf::from("/app/version")];
        for (saves, every) in [(8, 100), (12, 150), (30, 40)] {
            let mut guard = LoopGuard::default();
            let start = Instant::now();
            // Each save lands while the generation started for the one before is still starting.
            let (mut muted, mut last_reloaded) = (0, false);
            for n in 0..saves {
                let at = start + Duration::from_millis(n * every);
                last_reloaded = match guard.judge(version.clone(), at) {
                    Verdict::Reload(_) => {
                        guard.triggered();
                        guard.started(at);
                        true
                    }
                    Verdict::Muted(_) | Verdict::Ignore => {
                        muted += 1;
                        false
                    }
                };
            }
            assert!(muted > 0, "{saves} saves every {every} ms: the guard took them for a loop");
            let ready = start + Duration::from_secs(5);
            guard.ready(ready);
            let kept = guard.take_due(ready + QUIET);
            assert!(
                last_reloaded || kept == version,
                "{saves} saves every {every} ms: the last one was neither reloaded for nor kept"
            );
        }
    }

    #[test]
    fn an_app_that_writes_at_each_start_reloads_ever_more_rarely_until_it_stops() {
        let mut guard = LoopGuard::default();
        let mut at = Instant::now();
        let mut quiet = Vec::new();
        for _ in 0..(STARTS + 6) {
            guard.triggered();
            guard.started(at);
            guard.judge(log(), at + Duration::from_millis(50));
            let ready = at + Duration::from_millis(100);
            guard.ready(ready);
            match guard.due() {
                Some(due) => {
                    quiet.push(due - ready);
                    assert_eq!(guard.take_due(due), log());
                    at = due;
                }
                None => at = ready + Duration::from_millis(10),
            }
        }
        assert_eq!(quiet[..4], [QUIET, QUIET * 2, QUIET * 4, QUIET * 8], "{quiet:?}");
        // The app stops writing: the episode ends, the log counts again.
        guard.triggered();
        guard.started(at);
        guard.ready(at + Duration::from_millis(100));
        assert_eq!(guard.due(), None);
        guard.started(at + Duration::from_secs(1));
        assert_eq!(guard.judge(log(), at + Duration::from_millis(1050)), Verdict::Reload(log()));
    }

    #[test]
    fn a_reload_asked_for_unmutes() {
        let mut guard = LoopGuard::default();
        let start = Instant::now();
        for n in 0..STARTS {
            let at = start + Duration::from_secs(u64::from(n) * 10);
            guard.started(at);
            guard.judge(log(), at + Duration::from_millis(100));
        }
        guard.user_acted();
        let at = start + Duration::from_secs(100);
        guard.started(at);
        assert_eq!(guard.judge(log(), at + Duration::from_millis(100)), Verdict::Reload(log()));
    }
}
