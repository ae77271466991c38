//! The pidfile, and control commands that find a running devserve through it
//! (`devserve --signal reload --pidfile PATH`, like nginx's `-s reload` or uWSGI's `--reload`).
//!
//! Contract: the pidfile is written atomically before anything starts and holds the pid and a
//! newline. The temporary file is created with `O_CREAT|O_EXCL|O_NOFOLLOW` under an unpredictable
//! name (retried if taken), then renamed over the pidfile, so a symlink planted in a shared
//! directory is never followed; the pidfile itself is read without following a symlink, and one
//! that is not a regular file is refused. It is removed at exit (by the sentinel if devserve is
//! killed). A pidfile naming a live devserve refuses the start; one naming a dead process, or a
//! pid reused by another program, is stale and replaced with a warning.
//!
//! `--signal` signals only a process that is a devserve (see [`runtime::is_devserve`]); `status`
//! asks for SIGUSR1 and prints the table devserve writes to its runtime directory, found through
//! the pid ([`runtime::find`]).

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::output::{Output, Report};
use crate::runtime;

/// What `--signal` asks of a running devserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlAction {
    /// Build and start a new generation now (SIGHUP)
    Reload,
    /// Stop gracefully (SIGTERM)
    Stop,
    /// Stop at once (SIGQUIT)
    Quit,
    /// Print its status table here (SIGUSR1)
    Status,
    /// Start the devserve binary now at its path on the same sockets; the old one drains and exits
    /// once the new one serves (SIGUSR2)
    Upgrade,
}

/// How long `--signal status` waits for devserve to write its table.
const STATUS_WAIT: Duration = Duration::from_secs(5);
/// A pidfile is a pid and a newline; anything longer is not a pidfile.
const MAX_PIDFILE: u64 = 64;

/// Why a pidfile could not be claimed, or a running devserve not controlled. One line each.
#[derive(Debug)]
pub enum ControlError {
    NotRegular {
        path: PathBuf,
    },
    AlreadyRunning {
        pid: Pid,
        path: PathBuf,
    },
    Write {
        path: PathBuf,
        error: io::Error,
    },
    Unreadable {
        path: PathBuf,
        error: io::Error,
    },
    Gone {
        pid: Pid,
        path: PathBuf,
    },
    NotDevserve {
        pid: Pid,
        path: PathBuf,
    },
    NoRuntimeDir {
        pid: Pid,
    },
    Signal {
        pid: Pid,
        error: Errno,
    },
    NoStatus {
        pid: Pid,
        file: PathBuf,
    },
    /// `-s reload NAME`: devserve runs no service of that name (a usage error).
    UnknownService {
        name: String,
        known: Vec<String>,
    },
    /// `-s ACTION NAME` for an action that takes no name (a usage error).
    NameNotTaken {
        action: &'static str,
    },
    /// The reload request could not be written into the runtime directory.
    Request {
        file: PathBuf,
        error: io::Error,
    },
}

impl ControlError {
    /// The mistake is in the command line (exit 2), not in the running devserve.
    pub fn is_usage(&self) -> bool {
        matches!(self, ControlError::UnknownService { .. } | ControlError::NameNotTaken { .. })
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NotRegular { path } => {
                write!(f, "pidfile {} is not a regular file; refusing to replace it", path.display())
            }
            ControlError::AlreadyRunning { pid, path } => {
                write!(f, "devserve is already running (pid {pid}, pidfile {})", path.display())
            }
            ControlError::Write { path, error } => {
                write!(f, "cannot write pidfile {}: {error}", path.display())
            }
            ControlError::Unreadable { path, error } => {
                write!(f, "no devserve running: cannot read pidfile {}: {error}", path.display())
            }
            ControlError::Gone { pid, path } => {
                write!(f, "no devserve running: pid {pid} from {} is gone (stale pidfile)", path.display())
            }
            ControlError::NotDevserve { pid, path } => write!(
                f,
                "pid {pid} from {} is not a devserve (a stale pidfile whose pid was reused); nothing signalled",
                path.display()
            ),
            ControlError::NoRuntimeDir { pid } => write!(
                f,
                "cannot find the runtime directory of devserve pid {pid} (is /proc/{pid}/fd readable?)"
            ),
            ControlError::Signal { pid, error } => write!(f, "cannot signal pid {pid}: {error}"),
            ControlError::UnknownService { name, known } => write!(
                f,
                "no service is named `{name}` (the services: {})",
                if known.is_empty() { "none: one app".to_owned() } else { known.join(", ") }
            ),
            ControlError::NameNotTaken { action } => {
                write!(f, "`-s {action}` takes no service name (only `-s reload NAME…` does)")
            }
            ControlError::Request { file, error } => {
                write!(f, "cannot write the reload request {}: {error}", file.display())
            }
            ControlError::NoStatus { pid, file } => write!(
                f,
                "devserve (pid {pid}) did not write its status to {} within {}s; its own output says why",
                file.display(),
                STATUS_WAIT.as_secs()
            ),
        }
    }
}

impl std::error::Error for ControlError {}

/// devserve's own pidfile, removed on drop if it still names the pid it was last given.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    /// The pid it names: this process's, or after an upgrade the devserve that serves now.
    named: u32,
}

impl Pidfile {
    /// Claims `path` for this process.
    pub fn create(path: &Path, out: &Output) -> Result<Pidfile, ControlError> {
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && !meta.file_type().is_file()
        {
            return Err(ControlError::NotRegular { path: path.into() });
        }
        if let Ok(pid) = read_pid(path) {
            let running = is_running(pid);
            if running && runtime::is_devserve(pid.as_raw() as u32) {
                return Err(ControlError::AlreadyRunning { pid, path: path.into() });
            }
            let path = path.display().to_string();
            out.report(Report::PidfileReplaced { path, pid: pid.as_raw(), reused: running });
        }
        let write_error = |error| ControlError::Write { path: path.into(), error };
        let temp = write_temp(path, format!("{}\n", std::process::id()).as_bytes()).map_err(write_error)?;
        std::fs::rename(&temp, path).map_err(|error| {
            let _ = std::fs::remove_file(&temp);
            write_error(error)
        })?;
        Ok(Pidfile { path: path.to_path_buf(), named: std::process::id() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// After an upgrade: the pidfile names the devserve that serves now, so that `-s` reaches it
    /// (written whole and renamed, as at start).
    pub fn point_to(&mut self, pid: u32) -> io::Result<()> {
        let temp = write_temp(&self.path, format!("{pid}\n").as_bytes())?;
        std::fs::rename(&temp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })?;
        self.named = pid;
        Ok(())
    }
}

/// Writes `bytes` to a new file beside `path` with an unpredictable name, never following a
/// symlink and never reusing an existing file; returns its path.
fn write_temp(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for _ in 0..100 {
        let temp = dir.join(format!(".{stem}.{:016x}.tmp", runtime::random_u64()));
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp);
        match opened {
            Ok(mut file) => {
                return match file.write_all(bytes) {
                    Ok(()) => Ok(temp),
                    Err(e) => {
                        let _ = std::fs::remove_file(&temp);
                        Err(e)
                    }
                };
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "every temporary name tried exists"))
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        if read_pid(&self.path).is_ok_and(|pid| pid.as_raw() as u32 == self.named) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The file in devserve's runtime directory that lists its services, one name a line.
pub const SERVICES_FILE: &str = "services";

/// The prefix of a reload request's file in the runtime directory (`reload.PID`): the services
/// to reload, one name a line. devserve reads and removes every such file when HUP arrives; a
/// HUP with none reloads every service.
pub const RELOAD_REQUEST: &str = "reload.";

/// `--signal ACTION --pidfile PATH`: signals the devserve named there. `services`: the names
/// after `-s reload` (only reload takes any).
pub fn send(action: ControlAction, pidfile: &Path, services: &[String]) -> Result<(), ControlError> {
    if !services.is_empty() && action != ControlAction::Reload {
        let name = match action {
            ControlAction::Stop => "stop",
            ControlAction::Quit => "quit",
            ControlAction::Status => "status",
            ControlAction::Upgrade => "upgrade",
            ControlAction::Reload => "reload",
        };
        return Err(ControlError::NameNotTaken { action: name });
    }
    let pid = read_pid(pidfile).map_err(|error| ControlError::Unreadable { path: pidfile.into(), error })?;
    if !is_running(pid) {
        return Err(ControlError::Gone { pid, path: pidfile.into() });
    }
    if !runtime::is_devserve(pid.as_raw() as u32) {
        return Err(ControlError::NotDevserve { pid, path: pidfile.into() });
    }
    let signal = match action {
        ControlAction::Reload => Signal::SIGHUP,
        ControlAction::Stop => Signal::SIGTERM,
        ControlAction::Quit => Signal::SIGQUIT,
        ControlAction::Status => Signal::SIGUSR1,
        ControlAction::Upgrade => Signal::SIGUSR2,
    };
    if !services.is_empty() {
        request_reload(pid, services)?;
    }
    if action != ControlAction::Status {
        return kill(pid, signal).map_err(|error| ControlError::Signal { pid, error });
    }
    let dir = runtime::find(pid.as_raw() as u32).ok_or(ControlError::NoRuntimeDir { pid })?;
    let status_file = dir.join("status");
    // File times are too coarse to tell an old table from a new one: start from none.
    let _ = std::fs::remove_file(&status_file);
    kill(pid, signal).map_err(|error| ControlError::Signal { pid, error })?;
    crate::output::stdout(wait_for_status(pid, &status_file)?.as_bytes());
    Ok(())
}

/// `-s reload NAME…`: checks the names against the services devserve runs and leaves the request
/// in its runtime directory (private to the user), written whole then renamed, for the HUP
/// that follows.
fn request_reload(pid: Pid, services: &[String]) -> Result<(), ControlError> {
    let dir = runtime::find(pid.as_raw() as u32).ok_or(ControlError::NoRuntimeDir { pid })?;
    let known: Vec<String> = std::fs::read_to_string(dir.join(SERVICES_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .filter(|line| !line.is_empty())
        .collect();
    if let Some(name) = services.iter().find(|name| !known.contains(name)) {
        return Err(ControlError::UnknownService { name: name.clone(), known });
    }
    let file = dir.join(format!("{RELOAD_REQUEST}{}", std::process::id()));
    let temp = dir.join(format!(".{RELOAD_REQUEST}{}", std::process::id()));
    std::fs::write(&temp, format!("{}\n", services.join("\n")))
        .and_then(|()| std::fs::rename(&temp, &file))
        .map_err(|error| ControlError::Request { file, error })
}

/// `--signal` without `--pidfile`: say what is missing and, when exactly one devserve runs in this
/// directory, the `kill` that does the same.
pub fn without_pidfile(action: ControlAction) -> String {
    let missing = "--signal needs --pidfile PATH, the pidfile of the devserve to control";
    let here = devserves_in_this_directory();
    let signal = match action {
        ControlAction::Reload => "HUP",
        ControlAction::Stop => "TERM",
        ControlAction::Quit => "QUIT",
        ControlAction::Status => "USR1",
        ControlAction::Upgrade => "USR2",
    };
    match here.as_slice() {
        [pid] => format!(
            "{missing}; devserve pid {pid} runs in this directory: `kill -{signal} {pid}` does the same"
        ),
        [] => format!("{missing} (no devserve runs in this directory)"),
        pids => {
            let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
            format!("{missing} ({} devserves run in this directory: pids {})", pids.len(), pids.join(", "))
        }
    }
}

/// Pids of the devserves (their runtime directory found through /proc) whose working directory
/// is this one; not this process.
fn devserves_in_this_directory() -> Vec<u32> {
    let Ok(cwd) = std::env::current_dir() else { return Vec::new() };
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = procs
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|dir| dir == cwd))
        .filter(|pid| runtime::find(*pid).is_some())
        .collect();
    pids.sort_unstable();
    pids
}

/// Waits for the status file devserve writes on SIGUSR1 (written whole, then renamed).
fn wait_for_status(pid: Pid, file: &Path) -> Result<String, ControlError> {
    let deadline = Instant::now() + STATUS_WAIT;
    while Instant::now() < deadline {
        if let Ok(table) = std::fs::read_to_string(file) {
            return Ok(table);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(ControlError::NoStatus { pid, file: file.into() })
}

/// The pid in a pidfile, read without following a symlink.
fn read_pid(path: &Path) -> io::Result<Pid> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_PIDFILE).read_to_string(&mut text)?;
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
