//! The sentinel: a tiny second devserve process that makes "no process outlives devserve" hold
//! even when devserve itself is killed with SIGKILL or aborts.
//!
//! PR_SET_PDEATHSIG only reaches devserve's direct children; a worker's own children (a shell's
//! command, a server's helpers) would survive. So devserve starts, before anything else, a copy
//! of itself in sentinel mode, in its own process group, reading a pipe:
//! `+PGID` when a process group is created, `-PGID` when it is gone, `done` on a clean exit.
//! When the pipe reaches end-of-file without `done` — devserve is dead, however it died — the
//! sentinel sends SIGKILL to every group still listed and removes devserve's runtime files
//! (Unix socket files, the notify-socket directory), then exits.
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

/// devserve's end of the sentinel pipe.
pub struct Sentinel {
    pipe: Option<ChildStdin>,
}

impl Sentinel {
    /// Starts the sentinel; `cleanup` lists paths it removes if devserve dies uncleanly.
    pub fn spawn(cleanup: &[PathBuf]) -> io::Result<Sentinel> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .arg(SENTINEL_ARG)
            .args(cleanup)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Sentinel { pipe: child.stdin })
    }

    /// Declares a new process group to kill should devserve die.
    pub fn track(&mut self, group: Pid) {
        self.send(&format!("+{group}\n"));
    }

    /// Declares a process group gone.
    pub fn untrack(&mut self, group: Pid) {
        self.send(&format!("-{group}\n"));
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
            tracing::warn!("the sentinel is gone ({e}); a SIGKILL of devserve may now leave orphans");
            self.pipe = None;
        }
    }
}

/// The sentinel process's whole life. Never returns an error: it has nobody to report to.
pub fn run(cleanup: Vec<OsString>) {
    let mut groups = BTreeSet::new();
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line == "done" {
            return;
        }
        let (op, number) = line.split_at(line.len().min(1));
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
    for path in cleanup.into_iter().map(PathBuf::from) {
        let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
}
