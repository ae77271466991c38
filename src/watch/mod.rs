//! The watcher: file-system events in, one debounced [`Change`] at a time out.
//!
//! notify's recommended watcher (inotify on Linux) feeds raw events to a thread that owns the
//! watcher, drops the paths the [`Filter`] rejects, folds the rest with the [`Debouncer`] and
//! sends `Event::Change` to the supervisor (a change of devserve's own configuration file is sent
//! apart, as `Event::ConfigChanged`). Nothing flows back; dropping the [`WatchHandle`] stops it.
//!
//! On Linux every directory that is not ignored gets its own watch (the `ignore` crate's
//! gitignore rules decide), so ignored trees such as `target/` or `node_modules/` cost no inotify watch at all;
//! directories that appear later are walked and watched as they come, and files already inside
//! them count as changed (they may have been written before the watch existed). Elsewhere the
//! roots are watched recursively and events are filtered the same way.
//!
//! A path that was created during a burst and is gone when the burst is due (an editor's temp file
//! renamed over the real one) is not reported: an atomic save is one change to the real file.
//! Directories are not changes by themselves: an empty new folder triggers nothing.

mod debounce;
mod filter;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::event::{Change, Event};
pub use debounce::Debouncer;
pub use filter::Filter;

/// What to watch and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// Canonical paths of existing files or directories.
    pub roots: Vec<PathBuf>,
    /// `--touch-reload` files: absolute, may not exist yet; never filtered out.
    pub touch: Vec<PathBuf>,
    /// devserve's own configuration file: its changes are reported apart (`ConfigChanged`).
    pub config_file: Option<PathBuf>,
    pub exts: Vec<String>,
    pub ignore: Vec<String>,
    pub vcs_ignore: bool,
    pub debounce: std::time::Duration,
}

/// The running watcher; dropping it stops the thread and every watch.
#[derive(Debug)]
pub struct WatchHandle {
    _stop: Sender<()>,
    /// How many directories are watched.
    pub watched: usize,
}

/// Starts watching; returns once every root is watched, so no change after this is missed.
pub fn spawn(config: WatchConfig, events: Sender<Event>) -> Result<WatchHandle, String> {
    let mut touch = config.touch.clone();
    touch.extend(config.config_file.clone());
    let mut filter = Filter::new(&config.roots, &touch, &config.ignore, &config.exts, config.vcs_ignore)?;
    let (raw_tx, raw_rx) = crossbeam_channel::unbounded();
    let mut watcher = notify::recommended_watcher(move |result| {
        let _ = raw_tx.send(result);
    })
    .map_err(|e| describe_notify_error(&e))?;
    let mut watched = 0;
    for root in filter.roots().to_vec() {
        watched += match root.only {
            // A single file is watched through its directory, so an atomic save (a new inode
            // renamed over it) is still seen.
            Some(_) => {
                watcher
                    .watch(&root.dir, RecursiveMode::NonRecursive)
                    .map_err(|e| describe_notify_error(&e))?;
                1
            }
            None => register_tree(&mut watcher, &mut filter, &root.dir, false)?.0,
        };
    }
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
    let mut thread = WatchThread {
        watcher,
        filter,
        events,
        debouncer: Debouncer::new(config.debounce),
        config_file: config.config_file,
    };
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || thread.run(&raw_rx, &stop_rx))
        .map_err(|e| format!("cannot start the watcher thread: {e}"))?;
    Ok(WatchHandle { _stop: stop_tx, watched })
}

struct WatchThread {
    watcher: RecommendedWatcher,
    filter: Filter,
    events: Sender<Event>,
    debouncer: Debouncer,
    config_file: Option<PathBuf>,
}

impl WatchThread {
    /// Until the handle is dropped (the stop channel disconnects) or the supervisor is gone.
    fn run(&mut self, raw: &Receiver<notify::Result<notify::Event>>, stop: &Receiver<()>) {
        loop {
            let timeout = self
                .debouncer
                .deadline()
                .map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
            crossbeam_channel::select! {
                recv(raw) -> received => match received {
                    Ok(Ok(event)) => self.absorb(event),
                    Ok(Err(error)) => self.problem(describe_notify_error(&error)),
                    Err(_) => return,
                },
                recv(stop) -> _ => return,
                default(timeout) => {}
            }
            if let Some((paths, since)) = self.debouncer.take_due(Instant::now())
                && !self.report(paths, since)
            {
                return;
            }
        }
    }

    /// Sends a due burst: a change of devserve's own config file apart, the rest as a change.
    /// False once the supervisor is gone.
    fn report(&self, paths: Vec<(PathBuf, bool)>, since: Instant) -> bool {
        let mut paths: Vec<PathBuf> = paths
            .into_iter()
            .filter(|(path, created)| !*created || path.exists())
            .map(|(path, _)| path)
            .collect();
        let config_count = paths.len();
        paths.retain(|path| Some(path) != self.config_file.as_ref());
        if paths.len() != config_count && self.events.send(Event::ConfigChanged).is_err() {
            return false;
        }
        paths.is_empty() || self.events.send(Event::Change(Change { paths, since })).is_ok()
    }

    /// Takes one raw event into the current burst.
    fn absorb(&mut self, event: notify::Event) {
        if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
            return;
        }
        let now = Instant::now();
        let created = matches!(event.kind, EventKind::Create(_));
        for path in event.paths {
            if Filter::is_ignore_file(&path) {
                self.filter.load_ignore_file(&path);
            }
            let is_dir = path.is_dir();
            if !self.filter.counts_entry(&path, is_dir) {
                continue;
            }
            // A directory is not a change by itself; the files in a new one are.
            if is_dir {
                if may_be_new_directory(&event.kind) {
                    self.watch_new_directory(&path, now);
                }
                continue;
            }
            self.debouncer.add(path, created, now);
        }
    }

    fn watch_new_directory(&mut self, dir: &Path, now: Instant) {
        match register_tree(&mut self.watcher, &mut self.filter, dir, true) {
            Ok((_, files)) => {
                for file in files {
                    self.debouncer.add(file, true, now);
                }
            }
            Err(problem) => self.problem(problem),
        }
    }

    fn problem(&self, text: String) {
        let _ = self.events.send(Event::WatchProblem(text));
    }
}

fn may_be_new_directory(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)))
}

/// Watches `dir` and every directory below it that the filter keeps; loads ignore files met on
/// the way. Returns how many directories are watched and, with `want_files` (a directory that
/// just appeared), the files found in it.
///
/// Each directory is watched *before* it is listed, so a file created meanwhile is either in
/// the listing or reported by its own event: nothing falls between the two.
fn register_tree(
    watcher: &mut RecommendedWatcher,
    filter: &mut Filter,
    dir: &Path,
    want_files: bool,
) -> Result<(usize, Vec<PathBuf>), String> {
    if !cfg!(target_os = "linux") {
        watcher.watch(dir, RecursiveMode::Recursive).map_err(|e| describe_notify_error(&e))?;
        return Ok((1, Vec::new()));
    }
    let mut watched = 0;
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => watched += 1,
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                return Err(describe_notify_error(&e));
            }
            // Gone again already (a build's temp dir): nothing to watch.
            Err(e) => {
                tracing::debug!("not watching {}: {e}", dir.display());
                continue;
            }
        }
        let (subdirs, dir_files) = list_kept(filter, &dir, want_files);
        pending.extend(subdirs);
        files.extend(dir_files);
    }
    Ok((watched, files))
}

/// The subdirectories (and, with `want_files`, the files) of `dir` that the filter keeps, loading
/// the directory's own ignore files first so that they apply to its children.
fn list_kept(filter: &mut Filter, dir: &Path, want_files: bool) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (Vec::new(), Vec::new()) };
    let entries: Vec<_> = entries.filter_map(Result::ok).collect();
    for entry in entries.iter().filter(|e| Filter::is_ignore_file(&e.path())) {
        filter.load_ignore_file(&entry.path());
    }
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in entries {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir && !want_files {
            continue;
        }
        let path = entry.path();
        if filter.is_ignored_in_walk(&path, is_dir) {
            continue;
        }
        if is_dir { dirs.push(path) } else { files.push(path) }
    }
    (dirs, files)
}

/// One line, with the fix when there is one.
fn describe_notify_error(error: &notify::Error) -> String {
    match &error.kind {
        notify::ErrorKind::MaxFilesWatch => {
            let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into());
            format!(
                "inotify watch limit reached (fs.inotify.max_user_watches = {limit}): raise it with \
                 `sudo sysctl fs.inotify.max_user_watches=524288`, or --ignore large folders"
            )
        }
        _ => format!("file watcher: {error}"),
    }
}
