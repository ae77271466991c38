//! The build step: `sh -c CMD` in its own process group while the serving generation keeps
//! serving. Its output goes straight to the terminal. A newer change cancels it (SIGKILL to the
//! whole group: the compiler processes too) and the supervisor starts it again — the latest save
//! wins. Its exit arrives like every other child's, as `Event::Exited`.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::sentinel::Sentinel;
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
        sentinel: &mut Sentinel,
    ) -> Result<Build, SpawnError> {
        let mut command = Command::shell(script);
        for (key, value) in env {
            command = command.env(key, value);
        }
        let pid = command.spawn()?;
        sentinel.track(pid);
        Ok(Build { pid, started: Instant::now() })
    }

    /// Kills the build's whole process group; its exit still arrives as an event.
    pub fn cancel(&self) {
        if let Err(e) = killpg(self.pid, Signal::SIGKILL) {
            tracing::debug!("cancelling build {}: {e}", self.pid);
        }
    }

    pub fn took(&self) -> Duration {
        self.started.elapsed()
    }
}
