//! The build step: `sh -c CMD` in its own process group while the serving generation keeps
//! serving. Its output goes straight to the terminal. A newer change cancels it (SIGKILL to the
//! whole group: the compiler processes too) and the supervisor starts it again — the latest save
//! wins. Its exit arrives like every other child's, through the process table.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::procs::{Owner, Procs};
use crate::spawn::{Command, SpawnError};

/// How much of a build's output is kept for the front door's error page.
const TAIL: usize = 16 * 1024;

/// A build in progress.
#[derive(Debug)]
pub struct Build {
    pub pid: Pid,
    pub started: Instant,
    /// With `keep_output`: the end of what the build printed (see [`Build::output_tail`]).
    tail: Option<OutputTail>,
}

/// The build's output, passed through to devserve's stderr as it comes, its last [`TAIL`]
/// bytes kept.
#[derive(Debug)]
struct OutputTail {
    kept: Arc<Mutex<Vec<u8>>>,
    done: crossbeam_channel::Receiver<()>,
}

impl Build {
    /// Starts `script` under `sh -c`, with the extra environment.
    /// With `keep_output`, the output goes through a pipe that devserve copies to its own stderr
    /// while keeping the tail (for the front door's error page); otherwise it goes straight to the
    /// terminal.
    pub fn start(
        script: &str,
        env: &[(String, String)],
        keep_output: bool,
        procs: &mut dyn Procs,
        now: Instant,
    ) -> Result<Build, SpawnError> {
        let mut command = Command::shell(script);
        for (key, value) in env {
            command = command.env(key, value);
        }
        let (tail, write_end) = if keep_output {
            let (read_end, write_end) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Setup(e.into()))?;
            command = command.output_to(std::os::fd::AsRawFd::as_raw_fd(&write_end));
            (Some(copy_output(std::fs::File::from(read_end))), Some(write_end))
        } else {
            (None, None)
        };
        let pid = procs.spawn(command, Owner::Build)?;
        // The child has its copy; ours must close, or the reader would never see end-of-file.
        drop(write_end);
        Ok(Build { pid, started: now, tail })
    }

    /// The end of the build's output, once it has all been read (waits at most 200 ms for the
    /// last of it after the build exited). Empty without `keep_output`.
    pub fn output_tail(&self) -> String {
        let Some(tail) = &self.tail else { return String::new() };
        let _ = tail.done.recv_timeout(std::time::Duration::from_millis(200));
        let kept = tail.kept.lock().map(|k| k.clone()).unwrap_or_default();
        String::from_utf8_lossy(&kept).into_owned()
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

/// A thread that copies the build's output to devserve's stderr and keeps its last bytes.
fn copy_output(mut pipe: std::fs::File) -> OutputTail {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let sink = Arc::clone(&kept);
    let spawned = std::thread::Builder::new().name("build-output".into()).spawn(move || {
        let mut buffer = [0u8; 8192];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = &buffer[..n];
                    // The build's own output, as it would have gone to the terminal.
                    let _ = std::io::stderr().lock().write_all(chunk);
                    if let Ok(mut kept) = sink.lock() {
                        kept.extend_from_slice(chunk);
                        let excess = kept.len().saturating_sub(TAIL);
                        kept.drain(..excess);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot read the build's output: {e}");
    }
    OutputTail { kept, done }
}
