//! The sentinel: a tiny second devserve process that makes "no process outlives devserve" hold
//! even when devserve itself is killed with SIGKILL or aborts.
//!
//! PR_SET_PDEATHSIG only reaches devserve's direct children; a worker's own children (a shell's
//! command, a server's helpers) would survive. So devserve starts, before anything else, a copy
//! of itself in sentinel mode, in its own process group, reading a pipe:
//! `+PGID` when a process group is created, `-PGID` when it is gone, `@HEX` for one more path to
//! remove (a Unix socket bound by a live config edit; the path hex-encoded, so any byte is
//! fine), `done` on a clean exit. When the pipe reaches end-of-file without `done` — devserve is
//! dead, however it died — the sentinel sends SIGKILL to every group still listed and removes
//! devserve's runtime files (Unix socket files, the runtime directory, the pidfile), then exits.
//!
//! If the sentinel itself is killed, devserve learns it like any child's exit and starts a new
//! one at once with everything the old one knew ([`Sentinel::respawn`]).
//!
//! Every process devserve starts carries `DEVSERVE_RUN=…:MARKER` in its environment, a marker
//! unique to the run, and so does every descendant that inherits its environment. After the
//! groups, the sentinel (and devserve itself at a clean exit) [`sweep`]s: every process whose
//! environment carries the marker gets SIGKILL, whatever its process group or session — a
//! daemonising helper that called `setsid` included. What it cannot catch: a descendant that
//! execs with a cleared environment (`env -i`), or one running as another user whose
//! `/proc/PID/environ` devserve may not read.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// argv[1] that turns devserve into its sentinel.
pub const SENTINEL_ARG: &str = "__devserve_sentinel";

/// devserve's end of the sentinel pipe, and what the sentinel was told (to tell a new one).
pub struct Sentinel {
    pipe: Option<ChildStdin>,
    pid: Pid,
    groups: BTreeSet<Pid>,
    cleanup: Vec<PathBuf>,
    marker: String,
}

impl Sentinel {
    /// Starts the sentinel; `cleanup` lists paths it removes if devserve dies uncleanly, and
    /// `marker` is the run's marker it sweeps for.
    pub fn spawn(cleanup: &[PathBuf], marker: &str) -> io::Result<Sentinel> {
        let (pipe, pid) = start(cleanup, marker)?;
        Ok(Sentinel {
            pipe: Some(pipe),
            pid,
            groups: BTreeSet::new(),
            cleanup: cleanup.to_vec(),
            marker: marker.to_owned(),
        })
    }

    /// The sentinel's pid: its exit means it was killed.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Starts a new sentinel after the old one died, and tells it every group and path.
    pub fn respawn(&mut self) -> io::Result<Pid> {
        let (pipe, pid) = start(&self.cleanup, &self.marker)?;
        self.pipe = Some(pipe);
        self.pid = pid;
        for group in self.groups.clone() {
            self.send(&format!("+{group}\n"));
        }
        Ok(pid)
    }

    /// Declares a new process group to kill should devserve die.
    pub fn track(&mut self, group: Pid) {
        self.groups.insert(group);
        self.send(&format!("+{group}\n"));
    }

    /// Declares a process group gone.
    pub fn untrack(&mut self, group: Pid) {
        self.groups.remove(&group);
        self.send(&format!("-{group}\n"));
    }

    /// One more path to remove should devserve die.
    pub fn add_cleanup(&mut self, path: &std::path::Path) {
        use std::os::unix::ffi::OsStrExt;
        if self.cleanup.iter().any(|known| known == path) {
            return;
        }
        self.cleanup.push(path.to_path_buf());
        let hex: String = path.as_os_str().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("@{hex}\n"));
    }

    /// Clean exit: everything was stopped and removed by devserve itself.
    pub fn disarm(mut self) {
        self.send("done\n");
        self.pipe = None;
    }

    fn send(&mut self, line: &str) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        if let Err(e) = pipe.write_all(line.as_bytes()) {
            // Its exit is on the way as an event; the supervisor starts a new one then.
            tracing::debug!("the sentinel is gone ({e})");
            self.pipe = None;
        }
    }
}

fn start(cleanup: &[PathBuf], marker: &str) -> io::Result<(ChildStdin, Pid)> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg(SENTINEL_ARG)
        .arg(marker)
        .args(cleanup)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    let pipe = child.stdin.take().ok_or_else(|| io::Error::other("no pipe to the sentinel"))?;
    Ok((pipe, pid))
}

/// The sentinel process's whole life. Never returns an error: it has nobody to report to.
pub fn run(args: Vec<OsString>) {
    let mut args = args.into_iter();
    let marker = args.next().map(|m| m.to_string_lossy().into_owned()).unwrap_or_default();
    let mut cleanup: Vec<PathBuf> = args.map(PathBuf::from).collect();
    let mut groups = BTreeSet::new();
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line == "done" {
            return;
        }
        let (op, number) = line.split_at(line.len().min(1));
        if op == "@" {
            cleanup.extend(from_hex(number));
            continue;
        }
        let Ok(pgid) = number.parse::<i32>() else {
            continue;
        };
        match op {
            "+" => groups.insert(pgid),
            "-" => groups.remove(&pgid),
            _ => false,
        };
    }
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    sweep(&marker);
    for path in cleanup {
        let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
}

/// The name of the environment variable that carries run markers, `:`-separated (a devserve
/// run under another devserve adds its own to the outer one's).
pub const MARKER_VAR: &str = "DEVSERVE_RUN";

/// The value of [`MARKER_VAR`] for this run's children: the inherited markers and `marker`.
pub fn marker_value(marker: &str) -> String {
    match std::env::var(MARKER_VAR) {
        Ok(outer) if !outer.is_empty() => format!("{outer}:{marker}"),
        _ => marker.to_owned(),
    }
}

/// A marker unique to this run: the pid and 64 random bits.
pub fn new_marker() -> String {
    format!("{}-{:016x}", std::process::id(), crate::runtime::random_u64())
}

/// SIGKILL to every process (but this one) whose environment carries `marker`; returns how
/// many. Repeated until a pass finds none, since a killed parent cannot fork any more but a
/// pass may race with a fork in progress.
pub fn sweep(marker: &str) -> usize {
    if marker.is_empty() {
        return 0;
    }
    let needle = format!("{MARKER_VAR}=");
    let me = std::process::id();
    let mut killed = 0;
    for _ in 0..5 {
        let Ok(procs) = std::fs::read_dir("/proc") else { return killed };
        let mut found = 0;
        for entry in procs.filter_map(Result::ok) {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if pid as u32 == me {
                continue;
            }
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
            let carries = environ.split(|b| *b == 0).any(|entry| {
                entry
                    .strip_prefix(needle.as_bytes())
                    .is_some_and(|value| value.split(|b| *b == b':').any(|token| token == marker.as_bytes()))
            });
            if carries && nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                found += 1;
            }
        }
        killed += found;
        if found == 0 {
            break;
        }
    }
    killed
}

fn from_hex(hex: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
    Some(PathBuf::from(OsString::from_vec(bytes?)))
}
