//! Folding a burst of file events into one change: a sliding quiet window, capped.
//!
//! The change is due once no relevant event has arrived for `quiet` (the `--debounce` value), or
//! once `max_wait` has passed since the burst's first event, so that an endless stream (a
//! process rewriting a file in a loop) still triggers. A `git checkout` of thousands of files
//! arrives with gaps far shorter than the quiet period and is therefore one change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The cap is this many quiet periods, but never under [`MIN_MAX_WAIT`].
const MAX_WAIT_FACTOR: u32 = 20;
const MIN_MAX_WAIT: Duration = Duration::from_secs(2);

/// Paths seen in the current burst, and when the burst is due.
#[derive(Debug)]
pub struct Debouncer {
    quiet: Duration,
    max_wait: Duration,
    /// Each path, and whether it first appeared (was created) inside this burst.
    pending: BTreeMap<PathBuf, bool>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Events taken into the current burst.
    adds: usize,
}

impl Debouncer {
    pub fn new(quiet: Duration) -> Debouncer {
        let max_wait = quiet.saturating_mul(MAX_WAIT_FACTOR).max(MIN_MAX_WAIT);
        Debouncer { quiet, max_wait, pending: BTreeMap::new(), first: None, last: None, adds: 0 }
    }

    /// Records a relevant path; `created` marks a path that did not exist before this burst.
    pub fn add(&mut self, path: PathBuf, created: bool, now: Instant) {
        *self.pending.entry(path).or_insert(false) |= created;
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.adds += 1;
    }

    /// Whether a burst is pending and no event came for `quiet` before `now`.
    pub fn quiet_for(&self, quiet: Duration, now: Instant) -> bool {
        self.last.and_then(|last| last.checked_add(quiet)).is_some_and(|at| at <= now)
    }

    /// When a pending burst will have been quiet for `quiet`.
    pub fn eager_deadline(&self, quiet: Duration) -> Option<Instant> {
        self.last?.checked_add(quiet)
    }

    /// How many events the current burst has taken so far.
    pub fn adds(&self) -> usize {
        self.adds
    }

    /// The current burst's paths and its start, without ending it.
    pub fn peek(&self) -> Option<(Vec<PathBuf>, Instant)> {
        Some((self.pending.keys().cloned().collect(), self.first?))
    }

    /// When the pending burst is due, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        let last = self.last?.checked_add(self.quiet);
        let first = self.first?.checked_add(self.max_wait);
        last.into_iter().chain(first).min()
    }

    /// The burst's paths with their `created` flag, and when it began, if it is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<(Vec<(PathBuf, bool)>, Instant)> {
        if self.deadline()? > now {
            return None;
        }
        let first = self.first.take()?;
        self.last = None;
        self.adds = 0;
        Some((std::mem::take(&mut self.pending).into_iter().collect(), first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(50);

    #[test]
    fn a_burst_with_short_gaps_is_one_change() {
        let start = Instant::now();
        let mut debouncer = Debouncer::new(QUIET);
        for i in 0..1000u32 {
            let now = start + Duration::from_millis(u64::from(i));
            assert_eq!(debouncer.take_due(now), None, "due in the middle of the burst");
            debouncer.add(PathBuf::from(format!("f{i}")), false, now);
        }
        let end = start + Duration::from_millis(999);
        assert_eq!(debouncer.deadline(), Some(end + QUIET));
        let (paths, first) = debouncer.take_due(end + QUIET).expect("due after the quiet period");
        assert_eq!(paths.len(), 1000);
        assert_eq!(first, start);
        assert_eq!(debouncer.deadline(), None);
    }

    #[test]
    fn an_endless_stream_still_triggers() {
        let start = Instant::now();
        let mut debouncer = Debouncer::new(QUIET);
        let mut now = start;
        while debouncer.take_due(now).is_none() {
            debouncer.add(PathBuf::from("log"), false, now);
            now += Duration::from_millis(10);
        }
        assert!(now - start >= MIN_MAX_WAIT && now - start < MIN_MAX_WAIT + QUIET);
    }

    #[test]
    fn created_sticks_to_a_path() {
        let now = Instant::now();
        let mut debouncer = Debouncer::new(QUIET);
        debouncer.add(PathBuf::from("tmp"), true, now);
        debouncer.add(PathBuf::from("tmp"), false, now);
        assert_eq!(debouncer.take_due(now + QUIET), Some((vec![(PathBuf::from("tmp"), true)], now)));
    }
}
