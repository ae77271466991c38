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
//! Limits, stated: a grandchild that leaves its process group (setsid, setpgid) escapes, as it
//! would escape systemd's KillMode=process-group; only cgroups would catch it.

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
}

impl Sentinel {
    /// Starts the sentinel; `cleanup` lists paths it removes if devserve dies uncleanly.
    pub fn spawn(cleanup: &[PathBuf]) -> io::Result<Sentinel> {
        let (pipe, pid) = start(cleanup)?;
        Ok(Sentinel { pipe: Some(pipe), pid, groups: BTreeSet::new(), cleanup: cleanup.to_vec() })
    }

    /// The sentinel's pid: its exit means it was killed.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Starts a new sentinel after the old one died, and tells it every group and path.
    pub fn respawn(&mut self) -> io::Result<Pid> {
        let (pipe, pid) = start(&self.cleanup)?;
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

fn start(cleanup: &[PathBuf]) -> io::Result<(ChildStdin, Pid)> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg(SENTINEL_ARG)
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
pub fn run(cleanup: Vec<OsString>) {
    let mut cleanup: Vec<PathBuf> = cleanup.into_iter().map(PathBuf::from).collect();
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
    for path in cleanup {
        let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
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
