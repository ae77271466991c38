//! The pidfile, and control commands that find a running devserve through it
//! (`devserve --signal reload --pidfile PATH`, like nginx's `-s reload` or uWSGI's `--reload`).
//!
//! Contract: the pidfile is written atomically (temporary file, then rename) before anything
//! starts, holds the pid and a newline, and is removed at exit (by the sentinel if devserve is
//! killed). A pidfile naming a live process refuses the start; one naming a dead process is
//! stale and replaced with a warning. `status` asks for SIGUSR1 and prints the table devserve
//! writes to its runtime directory (`supervisor::runtime_dir_of`: `$TMPDIR/devserve-PID/status`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli::ControlAction;
use crate::output::Output;

/// How long `--signal status` waits for devserve to write its table.
const STATUS_WAIT: Duration = Duration::from_secs(5);

/// devserve's own pidfile, removed on drop.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
}

impl Pidfile {
    /// Claims `path` for this process.
    pub fn create(path: &Path, out: &Output) -> Result<Pidfile, String> {
        match read_pid(path) {
            Ok(pid) if is_running(pid) => {
                return Err(format!("devserve is already running (pid {pid}, pidfile {})", path.display()));
            }
            Ok(pid) => out.warn(format!("replacing stale pidfile {} (pid {pid} is gone)", path.display())),
            Err(_) => {}
        }
        let temp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> io::Result<()> {
            std::fs::write(&temp, format!("{}\n", std::process::id()))?;
            std::fs::rename(&temp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            format!("cannot write pidfile {}: {e}", path.display())
        })?;
        Ok(Pidfile { path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        if read_pid(&self.path).is_ok_and(|pid| pid.as_raw() as u32 == std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `--signal ACTION --pidfile PATH`: signals the devserve named there.
pub fn send(action: ControlAction, pidfile: &Path) -> Result<(), String> {
    let pid = read_pid(pidfile)
        .map_err(|e| format!("no devserve running: cannot read pidfile {}: {e}", pidfile.display()))?;
    if !is_running(pid) {
        return Err(format!(
            "no devserve running: pid {pid} from {} is gone (stale pidfile)",
            pidfile.display()
        ));
    }
    let signal = match action {
        ControlAction::Reload => Signal::SIGHUP,
        ControlAction::Stop => Signal::SIGTERM,
        ControlAction::Quit => Signal::SIGQUIT,
        ControlAction::Status => Signal::SIGUSR1,
    };
    let status_file = crate::supervisor::runtime_dir_of(pid.as_raw() as u32).join("status");
    if action == ControlAction::Status {
        // File times are too coarse to tell an old table from a new one: start from none.
        let _ = std::fs::remove_file(&status_file);
    }
    kill(pid, signal).map_err(|e| format!("cannot signal pid {pid}: {e}"))?;
    if action == ControlAction::Status {
        print!("{}", wait_for_status(pid, &status_file)?);
    }
    Ok(())
}

/// Waits for the status file devserve writes on SIGUSR1 (written whole, then renamed).
fn wait_for_status(pid: Pid, file: &Path) -> Result<String, String> {
    let deadline = Instant::now() + STATUS_WAIT;
    while Instant::now() < deadline {
        if let Ok(table) = std::fs::read_to_string(file) {
            return Ok(table);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("devserve (pid {pid}) did not answer with its status within {}s", STATUS_WAIT.as_secs()))
}

fn read_pid(path: &Path) -> io::Result<Pid> {
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .map(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no pid in it"))
}

/// Alive, whoever owns it (EPERM means it exists).
fn is_running(pid: Pid) -> bool {
    matches!(kill(pid, None), Ok(()) | Err(Errno::EPERM))
}
