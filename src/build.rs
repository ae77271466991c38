//! The build step: `sh -c CMD` in its own process group while the serving generation keeps
//! serving. Its output goes straight to the terminal. A newer change cancels it (SIGKILL to the
//! whole group: the compiler processes too) and the supervisor starts it again — the latest save
//! wins. Its exit arrives like every other child's, through the process table.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::procs::{Owner, Procs};
use crate::spawn::{Command, SpawnError};

/// A build in progress.
#[derive(Debug)]
pub struct Build {
    pub pid: Pid,
    pub started: Instant,
}

impl Build {
    /// Starts `script` under `sh -c`, with the extra environment.
    pub fn start(
        script: &str,
        env: &[(String, String)],
        procs: &mut dyn Procs,
        now: Instant,
    ) -> Result<Build, SpawnError> {
        let mut command = Command::shell(script);
        for (key, value) in env {
            command = command.env(key, value);
        }
        let pid = procs.spawn(command, Owner::Build)?;
        Ok(Build { pid, started: now })
    }

    /// Kills the build's whole process group; its exit still arrives, as a cancelled build's.
    pub fn cancel(&self, procs: &mut dyn Procs) {
        procs.signal(self.pid, Signal::SIGKILL);
        procs.reassign(self.pid, Owner::CancelledBuild);
    }

    pub fn took(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}
