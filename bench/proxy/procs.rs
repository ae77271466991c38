//! Every process the bench starts (devserve, nginx, the apps, wrk): the leader of its own process
//! group, with a marker in its environment, its output captured by the kit's [`Process`]. Dropping
//! a [`Spawned`] stops it: SIGTERM to its group, SIGKILL after 5 s, then SIGKILL by pid to anything
//! still carrying its marker (a worker in a group of its own).

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{Capture, Found, Process, http_get};

/// Environment variable that marks every process the bench starts.
const MARK_VAR: &str = "DEVSERVE_PROXY_BENCH_MARK";
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The start of every marker this bench hands out.
pub fn marker_prefix() -> String {
    format!("{}.", std::process::id())
}

/// A started process; stopped (with everything it started) when dropped.
pub struct Spawned {
    name: String,
    process: Process,
    marker: String,
    stopped: bool,
}

impl Spawned {
    /// Starts `command` as the leader of a new process group, stdin from /dev/null, stdout and
    /// stderr captured. `name` is for messages.
    pub fn spawn(name: &str, mut command: Command) -> Result<Spawned, String> {
        let marker = format!("{}{}", marker_prefix(), RUNS.fetch_add(1, Ordering::Relaxed));
        command.env(MARK_VAR, &marker).process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. If the bench
        // dies, the child gets SIGTERM instead of living on.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command.spawn().map_err(|e| format!("cannot start {name} ({program}): {e}"))?;
        Ok(Spawned { name: name.to_owned(), process: Process::adopt(child), marker, stopped: false })
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Everything it printed so far, stdout and stderr merged, each line stamped.
    pub fn log(&self) -> &Capture {
        self.process.capture()
    }

    /// An error naming the process and its last lines if it has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.process.try_wait() {
            None => Ok(()),
            Some(status) => Err(format!("{} exited ({status}): {}", self.name, self.log().tail(4))),
        }
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit_within(timeout)
    }

    /// Waits until `find` finds something in the output; an error if the process exits first or
    /// `timeout` passes.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        find: impl Fn(&Capture) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = find(self.log()) {
                return Ok(found);
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                let tail = self.log().tail(4);
                return Err(format!(
                    "{}: no {what} within {} s; last lines: {tail}",
                    self.name,
                    timeout.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for a JSON event of `kind` (devserve's `--log-format json`) from line `from` on.
    pub fn wait_event(
        &mut self,
        from: usize,
        timeout: Duration,
        kind: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Found<Value>, String> {
        self.wait_for(timeout, &format!("{kind} event"), |log| log.find_event(from, kind, &matches))
    }

    /// Waits until `GET /` on `addr` answers 200 (the process must stay alive meanwhile).
    pub fn wait_serving(&mut self, addr: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let error = match http_get(addr, "/") {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(format!("{}: GET http://{addr}/ never answered 200 ({error})", self.name));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to its group, SIGKILL after [`STOP_GRACE`], then SIGKILL to anything still marked.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = Pid::from_raw(self.pid());
        let _ = killpg(group, Signal::SIGTERM);
        if self.process.wait_exit_within(STOP_GRACE).is_none() {
            eprintln!(
                "[bench] {} ignored SIGTERM for {} s; killing its group",
                self.name,
                STOP_GRACE.as_secs()
            );
            let _ = killpg(group, Signal::SIGKILL);
            self.process.kill();
        }
        kill_marked(&self.marker);
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Live processes whose environment has `MARK_VAR` starting with `marker`.
fn marked_pids(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted = format!("{MARK_VAR}={marker}");
    let pids = entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|pid| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        environ.split(|&b| b == 0).any(|var| var.starts_with(wanted.as_bytes()))
    })
    .collect()
}

/// SIGKILLs, by pid, every process still carrying `marker`, and waits (bounded) until they are gone.
fn kill_marked(marker: &str) {
    for round in 0..50 {
        let left = marked_pids(marker);
        if left.is_empty() {
            return;
        }
        if round == 0 {
            eprintln!("[bench] killing {} leftover process(es): {left:?}", left.len());
        }
        for pid in left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Kills what is left of every process the bench started, and says whether anything is.
pub fn report_leftovers() {
    let prefix = marker_prefix();
    kill_marked(&prefix);
    match marked_pids(&prefix).as_slice() {
        [] => eprintln!("[bench] no process left running"),
        left => eprintln!("[bench] WARNING: processes still running after SIGKILL: {left:?}"),
    }
}
