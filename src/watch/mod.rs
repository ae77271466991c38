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
//! With `--poll` notify's poll watcher replaces inotify, with the same per-folder watches (so
//! ignored folders are not polled either), filters and debounce: for file systems that deliver no
//! events (network and VM shares, Docker bind mounts from another OS). A root on such a file
//! system gets a one-line hint when `--poll` is off.
//!
//! With `eager` (behind the front door, no build) a burst is reported at its first event and
//! again at its end only if more events came: the first start saves the debounce wait, and a
//! later one supersedes it, so the latest state still wins.
//!
//! Directories are not changes by themselves: an empty new folder triggers nothing. Neither are
//! sockets, FIFOs and devices (an app binding a Unix socket in the tree).
//!
//! devserve's own files (runtime directory, pidfile, socket files) never count, and virtual file
//! systems (`/proc`, `/sys`, `/dev`, cgroup, …) are never walked. Folders that cannot be read are
//! named in one warning line. Every 500 ms the roots are checked: a root folder moved away,
//! deleted or replaced (`mv src src_old; mkdir src`) is said in one line, every watch is made
//! anew (so the moved folder's events stop), and the path is watched again as soon as it exists;
//! its return counts as a change.

mod debounce;
mod filter;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode, Watcher};

use crate::event::{Change, Event};
pub use debounce::Debouncer;
pub use filter::{Filter, Root};

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
    /// Report a burst at its first event, then again at its end if more came (behind the front
    /// door without a build, where a starting generation sees no traffic and a newer one
    /// supersedes it).
    pub eager: bool,
    /// `--poll`: look for changes every interval instead of waiting for file-system events.
    pub poll: Option<Duration>,
}

/// Why the watcher could not start. Displayed as one line, with the fix when there is one.
#[derive(Debug)]
pub enum WatchError {
    /// An `--ignore` glob does not parse.
    Glob {
        glob: String,
        reason: String,
    },
    /// The file-system notification layer refused (watch limit, …).
    Notify(String),
    Thread(std::io::Error),
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Glob { glob, reason } => write!(f, "invalid --ignore glob `{glob}`: {reason}"),
            WatchError::Notify(text) => f.write_str(text),
            WatchError::Thread(e) => write!(f, "cannot start the watcher thread: {e}"),
        }
    }
}

impl std::error::Error for WatchError {}

impl From<&notify::Error> for WatchError {
    fn from(error: &notify::Error) -> WatchError {
        WatchError::Notify(describe_notify_error(error))
    }
}

/// The running watcher; dropping it stops the thread and every watch. Once every root is
/// watched, [`Event::Watching`] arrives (or [`Event::WatchFailed`]).
#[derive(Debug)]
pub struct WatchHandle {
    _stop: Sender<()>,
}

/// With `eager`: the quiet that ends a single write's events (inotify sends several per save,
/// within microseconds), before the burst is reported the first time.
const EAGER_QUIET: Duration = Duration::from_millis(5);

/// How often the watched roots are checked for having been moved, deleted or replaced.
const ROOT_CHECK: Duration = Duration::from_millis(500);

/// Starts watching. Returns at once; the roots are walked and watched on the watch thread, and no
/// change made after this call is missed (see [`WatchThread::initial_walk`]).
/// `own_files` are devserve's own paths, never reported.
pub fn spawn(
    config: WatchConfig,
    own_files: Vec<PathBuf>,
    events: Sender<Event>,
) -> Result<WatchHandle, WatchError> {
    let mut touch = config.touch.clone();
    touch.extend(config.config_file.clone());
    let filter = Filter::new(&config.roots, &touch, &config.ignore, &config.exts, config.vcs_ignore)?
        .with_own_files(own_files);
    let (raw_tx, raw_rx) = crossbeam_channel::unbounded();
    let watcher = new_watcher(&raw_tx, config.poll)?;
    let identities = filter.roots().iter().map(|root| identity(&root.dir)).collect();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
    if config.poll.is_none() {
        for root in filter.roots() {
            if let Some(kind) = misses_events(&root.dir) {
                let _ = events.send(Event::WatchProblem(format!(
                    "{} is on a {kind} file system, where changes made elsewhere may send no event; \
                     if saves are missed, use --poll",
                    root.dir.display()
                )));
            }
        }
    }
    let mut thread = WatchThread {
        watcher,
        poll: config.poll,
        raw_tx,
        filter,
        events,
        debouncer: Debouncer::new(config.debounce),
        eager: config.eager,
        eager_sent: None,
        config_file: config.config_file,
        identities,
        next_root_check: Instant::now() + ROOT_CHECK,
    };
    // The walk runs on the watch thread: the first generation starts meanwhile. A file changed
    // during the walk in a folder not watched yet is found by its modification time.
    let since = file_clock_now();
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            if thread.initial_walk(since) {
                thread.run(&raw_rx, &stop_rx);
            }
        })
        .map_err(WatchError::Thread)?;
    Ok(WatchHandle { _stop: stop_tx })
}

/// The file watcher: inotify (or the platform's own), or with `poll` notify's poll watcher, which
/// compares the watched folders' listings and file times every interval.
fn new_watcher(
    raw: &Sender<notify::Result<notify::Event>>,
    poll: Option<Duration>,
) -> Result<AnyWatcher, WatchError> {
    let raw = raw.clone();
    let handler = move |result| {
        let _ = raw.send(result);
    };
    let watcher: AnyWatcher = match poll {
        Some(interval) => {
            let config = notify::Config::default().with_poll_interval(interval);
            Box::new(notify::PollWatcher::new(handler, config).map_err(|e| WatchError::from(&e))?)
        }
        None => Box::new(notify::recommended_watcher(handler).map_err(|e| WatchError::from(&e))?),
    };
    Ok(watcher)
}

/// Either kind of watcher.
type AnyWatcher = Box<dyn Watcher + Send>;

/// File systems where inotify misses changes made by another machine or the host: the hint to
/// use `--poll`. (NFS, SMB/CIFS, 9p — WSL 2's `/mnt/c`, VM shares — and FUSE, which covers Docker
/// Desktop's and many remote mounts.)
fn misses_events(dir: &Path) -> Option<&'static str> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::statfs as fs;
        let kind = fs::statfs(dir).ok()?.filesystem_type();
        let known: [(fs::FsType, &str); 5] = [
            (fs::NFS_SUPER_MAGIC, "nfs"),
            (fs::SMB_SUPER_MAGIC, "smb"),
            (fs::FsType(0xFF53_4D42), "cifs"),
            (fs::FsType(0x0102_1997), "9p"),
            (fs::FUSE_SUPER_MAGIC, "fuse"),
        ];
        known.iter().find(|(magic, _)| *magic == kind).map(|(_, name)| *name)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// Now, as the kernel stamps files: Linux takes file times from its coarse clock (one tick, up
/// to 10 ms, behind `SystemTime::now()`; the fine-grained stamps of newer kernels never go below
/// it), so a file written a moment after `SystemTime::now()` can carry an earlier time. Compared
/// with `>=`, every write from this call on counts; so does one made earlier in the same tick,
/// which costs at most one needless reload.
fn file_clock_now() -> std::time::SystemTime {
    #[cfg(target_os = "linux")]
    if let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        && let (Ok(secs), Ok(nanos)) = (u64::try_from(now.tv_sec()), u32::try_from(now.tv_nsec()))
    {
        return std::time::UNIX_EPOCH + Duration::new(secs, nanos);
    }
    std::time::SystemTime::now()
}

/// Watches every root that exists; returns how many directories are watched.
fn watch_roots(
    watcher: &mut AnyWatcher,
    filter: &mut Filter,
    unreadable: &mut Vec<PathBuf>,
    mut modified: Option<(std::time::SystemTime, &mut Vec<PathBuf>)>,
) -> Result<usize, WatchError> {
    let mut watched = 0;
    for root in filter.roots().to_vec() {
        if !root.dir.is_dir() {
            continue;
        }
        watched += match root.only {
            // A single file is watched through its directory, so an atomic save (a new inode
            // renamed over it) is still seen; one saved before that watch counts by its time.
            Some(file) => {
                watcher.watch(&root.dir, RecursiveMode::NonRecursive).map_err(|e| WatchError::from(&e))?;
                if let Some((since, changed)) = modified.as_mut()
                    && std::fs::metadata(&file).and_then(|m| m.modified()).is_ok_and(|t| t >= *since)
                {
                    changed.push(file);
                }
                1
            }
            None => {
                let wanted = modified.as_ref().map_or(Files::None, |(since, _)| Files::ModifiedSince(*since));
                let (count, files) = register_tree(watcher, filter, &root.dir, wanted, unreadable)?;
                if let Some((_, changed)) = modified.as_mut() {
                    changed.extend(files);
                }
                count
            }
        };
    }
    Ok(watched)
}

/// One warning line for the folders that could not be read or watched: changes inside them
/// would be missed.
fn report_unreadable(events: &Sender<Event>, unreadable: &[PathBuf]) {
    if unreadable.is_empty() {
        return;
    }
    let shown: Vec<String> = unreadable.iter().take(3).map(|p| p.display().to_string()).collect();
    let more =
        if unreadable.len() > 3 { format!(" and {} more", unreadable.len() - 3) } else { String::new() };
    let folders = if unreadable.len() == 1 { "folder" } else { "folders" };
    let _ = events.send(Event::WatchProblem(format!(
        "cannot read {} {folders}: {}{more}; changes inside are missed (check permissions, or --ignore them)",
        unreadable.len(),
        shown.join(", ")
    )));
}

/// What a root directory is, to notice it was moved, deleted or replaced: (device, inode).
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()))
}

struct WatchThread {
    watcher: AnyWatcher,
    poll: Option<Duration>,
    /// For the watchers made anew when a root is replaced.
    raw_tx: Sender<notify::Result<notify::Event>>,
    filter: Filter,
    events: Sender<Event>,
    debouncer: Debouncer,
    eager: bool,
    /// With `eager`: the burst was reported at its first event, when it had taken this many.
    eager_sent: Option<usize>,
    config_file: Option<PathBuf>,
    /// Each root's (device, inode) as last watched; `None` while it is missing.
    identities: Vec<Option<(u64, u64)>>,
    next_root_check: Instant,
}

impl WatchThread {
    /// Watches every root, then says so ([`Event::Watching`]). Files modified since `since` in
    /// the folders walked count as changed: they may have changed before their folder was
    /// watched. False if the walk failed (the supervisor was told) or nobody listens any more.
    fn initial_walk(&mut self, since: std::time::SystemTime) -> bool {
        let mut unreadable = Vec::new();
        let mut changed = Vec::new();
        let walked =
            watch_roots(&mut self.watcher, &mut self.filter, &mut unreadable, Some((since, &mut changed)));
        report_unreadable(&self.events, &unreadable);
        let folders = match walked {
            Ok(folders) => folders,
            Err(e) => {
                let _ = self.events.send(Event::WatchFailed(e.to_string()));
                return false;
            }
        };
        let now = Instant::now();
        for file in changed {
            self.debouncer.add(file, false, now);
        }
        self.events.send(Event::Watching { folders }).is_ok()
    }

    /// Until the handle is dropped (the stop channel disconnects) or the supervisor is gone.
    fn run(&mut self, raw: &Receiver<notify::Result<notify::Event>>, stop: &Receiver<()>) {
        loop {
            let mut wake =
                self.debouncer.deadline().map_or(self.next_root_check, |d| d.min(self.next_root_check));
            if self.eager && self.eager_sent.is_none() {
                // The eager report comes once the first write's own events are in.
                wake = self.debouncer.eager_deadline(EAGER_QUIET).map_or(wake, |d| d.min(wake));
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(raw) -> received => match received {
                    Ok(Ok(event)) => self.absorb(event),
                    Ok(Err(error)) => self.problem(describe_notify_error(&error)),
                    Err(_) => return,
                },
                recv(stop) -> _ => return,
                default(timeout) => {}
            }
            let now = Instant::now();
            if now >= self.next_root_check {
                self.check_roots(now);
                self.next_root_check = now + ROOT_CHECK;
            }
            if self.eager
                && self.eager_sent.is_none()
                && self.debouncer.quiet_for(EAGER_QUIET, now)
                && let Some((paths, since)) = self.debouncer.peek()
            {
                // The first write of a burst: start now; the burst's end decides again.
                self.eager_sent = Some(self.debouncer.adds());
                let paths = paths.into_iter().map(|p| (p, false)).collect();
                if !self.report(paths, since) {
                    return;
                }
            }
            let adds = self.debouncer.adds();
            if let Some((paths, since)) = self.debouncer.take_due(now) {
                // Nothing came after the eager report: it stands.
                let stands = self.eager_sent.take() == Some(adds);
                if !stands && !self.report(paths, since) {
                    return;
                }
            }
        }
    }

    /// A root folder that was moved, deleted or replaced is said once; the watches are made
    /// anew, so events from the moved folder stop and the path is watched again as soon as it
    /// exists. A root that comes back counts as a change.
    fn check_roots(&mut self, now: Instant) {
        let roots: Vec<Root> = self.filter.roots().to_vec();
        let mut rebuild = false;
        for (index, root) in roots.iter().enumerate() {
            if root.only.is_some() {
                continue;
            }
            let now_is = identity(&root.dir);
            let was = self.identities[index];
            if now_is == was {
                continue;
            }
            rebuild = true;
            self.identities[index] = now_is;
            let name = root.dir.display();
            match (was, now_is) {
                (_, None) => self.problem(format!(
                    "watched folder {name} was moved or deleted; watching it again when it reappears"
                )),
                (None, Some(_)) => self.problem(format!("watched folder {name} is back; watching it again")),
                (Some(_), Some(_)) => {
                    self.problem(format!("watched folder {name} was replaced; watching the new one"))
                }
            }
            if now_is.is_some() {
                self.debouncer.add(root.dir.clone(), false, now);
            }
        }
        if rebuild {
            self.rewatch();
        }
    }

    /// Drops every watch and watches the roots again from scratch.
    fn rewatch(&mut self) {
        let result = new_watcher(&self.raw_tx, self.poll).and_then(|mut watcher| {
            let mut unreadable = Vec::new();
            watch_roots(&mut watcher, &mut self.filter, &mut unreadable, None)?;
            report_unreadable(&self.events, &unreadable);
            Ok(watcher)
        });
        match result {
            // The old watcher and its watches go with the old value.
            Ok(watcher) => self.watcher = watcher,
            Err(problem) => self.problem(problem.to_string()),
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
            // A root folder's own event (moved, deleted): the root check decides, right away.
            if self.filter.roots().iter().any(|root| root.only.is_none() && root.dir == path) {
                self.next_root_check = now;
                continue;
            }
            let meta = std::fs::metadata(&path).ok();
            // Sockets, FIFOs and devices are never source: an app binding a Unix socket in the
            // tree must not reload itself.
            if meta.as_ref().is_some_and(is_special) {
                continue;
            }
            let is_dir = meta.as_ref().is_some_and(std::fs::Metadata::is_dir);
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
        let mut unreadable = Vec::new();
        match register_tree(&mut self.watcher, &mut self.filter, dir, Files::All, &mut unreadable) {
            Ok((_, files)) => {
                for file in files {
                    self.debouncer.add(file, true, now);
                }
            }
            Err(problem) => self.problem(problem.to_string()),
        }
        report_unreadable(&self.events, &unreadable);
    }

    fn problem(&self, text: String) {
        let _ = self.events.send(Event::WatchProblem(text));
    }
}

fn is_special(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    kind.is_socket() || kind.is_fifo() || kind.is_block_device() || kind.is_char_device()
}

fn may_be_new_directory(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)))
}

/// Which files a walk returns besides watching folders.
#[derive(Debug, Clone, Copy)]
enum Files {
    None,
    /// Every file the filter keeps (a directory that just appeared: all of it is new).
    All,
    /// Those modified at or after this time (the initial walk). The time is checked before the
    /// filter, and nothing else is kept: a 100k-file tree costs one stat a file, not a list.
    ModifiedSince(std::time::SystemTime),
}

/// Watches `dir` and every directory below it that the filter keeps; loads ignore files met on
/// the way. Returns how many directories are watched and the files `wanted`.
///
/// Each directory is watched *before* it is listed, so a file created meanwhile is either in
/// the listing or reported by its own event: nothing falls between the two.
fn register_tree(
    watcher: &mut AnyWatcher,
    filter: &mut Filter,
    dir: &Path,
    wanted: Files,
    unreadable: &mut Vec<PathBuf>,
) -> Result<(usize, Vec<PathBuf>), WatchError> {
    if !cfg!(target_os = "linux") {
        watcher.watch(dir, RecursiveMode::Recursive).map_err(|e| WatchError::from(&e))?;
        return Ok((1, Vec::new()));
    }
    let mut watched = 0;
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if is_virtual(&dir) {
            tracing::debug!("not watching {}: a virtual file system", dir.display());
            continue;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => watched += 1,
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                return Err(WatchError::from(&e));
            }
            Err(notify::Error { kind: notify::ErrorKind::Io(io), .. })
                if io.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                unreadable.push(dir);
                continue;
            }
            // Gone again already (a build's temp dir): nothing to watch.
            Err(e) => {
                tracing::debug!("not watching {}: {e}", dir.display());
                continue;
            }
        }
        let Some((subdirs, dir_files)) = list_kept(filter, &dir, wanted) else {
            unreadable.push(dir);
            continue;
        };
        pending.extend(subdirs);
        files.extend(dir_files);
    }
    Ok((watched, files))
}

/// `/proc`, `/sys`, `/dev` and their kin describe the kernel, not a project: never walked, even
/// under `-w /`.
fn is_virtual(dir: &Path) -> bool {
    if [Path::new("/proc"), Path::new("/sys"), Path::new("/dev")].contains(&dir) {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        use nix::sys::statfs as fs;
        let virtual_types = [
            fs::PROC_SUPER_MAGIC,
            fs::SYSFS_MAGIC,
            fs::CGROUP_SUPER_MAGIC,
            fs::CGROUP2_SUPER_MAGIC,
            fs::DEBUGFS_MAGIC,
            fs::TRACEFS_MAGIC,
            fs::DEVPTS_SUPER_MAGIC,
            fs::SECURITYFS_MAGIC,
            fs::BPF_FS_MAGIC,
        ];
        if let Ok(stat) = fs::statfs(dir) {
            return virtual_types.contains(&stat.filesystem_type());
        }
    }
    false
}

/// The subdirectories (and the files `wanted`) of `dir` that the filter keeps, loading the
/// directory's own ignore files first so that they apply to its children. `None` when the
/// directory cannot be read (but exists).
fn list_kept(filter: &mut Filter, dir: &Path, wanted: Files) -> Option<(Vec<PathBuf>, Vec<PathBuf>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
        Err(_) => return Some((Vec::new(), Vec::new())),
    };
    let entries: Vec<_> = entries.filter_map(Result::ok).collect();
    for entry in entries.iter().filter(|e| Filter::is_ignore_file(&e.path())) {
        filter.load_ignore_file(&entry.path());
    }
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in entries {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let file_wanted = match wanted {
            Files::None => false,
            Files::All => true,
            Files::ModifiedSince(since) => {
                !is_dir && entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= since)
            }
        };
        if !is_dir && !file_wanted {
            continue;
        }
        let path = entry.path();
        if filter.is_ignored_in_walk(&path, is_dir) {
            continue;
        }
        if is_dir { dirs.push(path) } else { files.push(path) }
    }
    Some((dirs, files))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The initial walk counts a file modified at or after [`file_clock_now`] as changed: so any
    /// file written after that call must carry such a time, even a fresh file the kernel stamps
    /// from its coarse clock (with `SystemTime::now()` most of these writes fail the check).
    #[test]
    fn a_file_written_after_the_start_is_stamped_at_or_after_it() {
        let dir = std::env::temp_dir().join(format!("devserve-stamp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut early = 0;
        for n in 0..500 {
            let since = file_clock_now();
            let file = dir.join(format!("f{n}"));
            std::fs::write(&file, "x").expect("write");
            let stamped = std::fs::metadata(&file).and_then(|m| m.modified()).expect("mtime");
            early += usize::from(stamped < since);
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(early, 0, "files stamped before the start that preceded their write");
    }

    /// A file watched by name (`-w FILE`, `--touch-reload`, the config file) is watched through
    /// its folder, which the walk may reach after the file was saved: its time must count too.
    /// (The stamp is in the future, so it is after the start whatever the clock.)
    #[test]
    fn a_file_root_saved_before_its_folder_is_watched_counts() {
        let dir = std::env::temp_dir().join(format!("devserve-file-root-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.canonicalize().expect("canonical").join("devserve.toml");
        let written = std::fs::File::create(&file).expect("create");
        written.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600)).expect("set mtime");
        drop(written);
        let config = WatchConfig {
            roots: vec![file.clone()],
            touch: Vec::new(),
            config_file: None,
            exts: Vec::new(),
            ignore: Vec::new(),
            vcs_ignore: false,
            debounce: Duration::from_millis(20),
            eager: false,
            poll: None,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = spawn(config, Vec::new(), tx).expect("watch");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut reported = None;
        while let Ok(event) = rx.recv_deadline(deadline) {
            if let Event::Change(change) = event {
                reported = Some(change.paths);
                break;
            }
        }
        drop(handle);
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(reported, Some(vec![file]));
    }
}
