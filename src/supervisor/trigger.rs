//! Why a new generation is wanted: the first start, a reload (signal or config file), changed
//! files. Triggers merge across cancelled builds, so the final message names every change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub(super) struct Trigger {
    /// When it began: the first file event of the burst, or the signal.
    pub(super) at: Instant,
    paths: BTreeSet<PathBuf>,
    reload: Option<&'static str>,
    initial: bool,
}

impl Trigger {
    pub(super) fn start(at: Instant) -> Trigger {
        Trigger { at, paths: BTreeSet::new(), reload: None, initial: true }
    }

    /// A reload without a file change; `why` is e.g. `SIGHUP` or `config changed`.
    pub(super) fn reload(why: &'static str, at: Instant) -> Trigger {
        Trigger { reload: Some(why), initial: false, ..Trigger::start(at) }
    }

    /// Files changed; the first event came `since` (before the debounce wait).
    pub(super) fn change(paths: Vec<PathBuf>, since: Instant) -> Trigger {
        Trigger { at: since, paths: paths.into_iter().collect(), reload: None, initial: false }
    }

    /// Folds a newer trigger into this one, keeping the earlier start time.
    pub(super) fn merge(&mut self, newer: Trigger) {
        self.paths.extend(newer.paths);
        self.reload = self.reload.or(newer.reload);
        self.initial |= newer.initial;
    }

    pub(super) fn is_initial(&self) -> bool {
        self.initial
    }

    /// When every changed file is a `.css` file (and there is at least one): their names, for a
    /// stylesheet swap in the browser instead of a reload.
    pub(super) fn css_only(&self) -> Vec<String> {
        let css = |p: &PathBuf| p.extension().is_some_and(|e| e == "css");
        if self.paths.is_empty() || self.reload.is_some() || !self.paths.iter().all(css) {
            return Vec::new();
        }
        self.paths.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect()
    }

    /// A reload was asked for (a signal, a config edit), whatever files changed too.
    pub(super) fn is_reload(&self) -> bool {
        self.reload.is_some()
    }

    pub(super) fn file_count(&self) -> usize {
        self.paths.len()
    }

    /// `src/main.rs changed`, `3 files changed`, `reload (SIGHUP)`, `first start`.
    pub(super) fn describe(&self) -> String {
        let cwd = std::env::current_dir().unwrap_or_default();
        let files = match self.paths.len() {
            0 => None,
            1 => self.paths.first().map(|p| format!("{} changed", relative_display(p, &cwd))),
            n => Some(format!("{n} files changed")),
        };
        match (files, self.reload, self.initial) {
            (Some(files), _, _) => files,
            (None, Some(why), _) => format!("reload ({why})"),
            (None, None, true) => "first start".into(),
            (None, None, false) => "change".into(),
        }
    }
}

/// `path` relative to `cwd` when it is inside it, `.` for `cwd` itself.
pub(super) fn relative_display(path: &Path, cwd: &Path) -> String {
    match path.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
