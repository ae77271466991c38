//! Every process a bench starts: the leader of its own process group, with a marker in its
//! environment and `PR_SET_PDEATHSIG=SIGTERM`, its output captured by the kit's [`Process`].
//! Dropping a [`Guard`] stops it: SIGTERM to its group, SIGKILL after its grace, then SIGKILL by
//! pid to anything still carrying its marker (a worker or an app in a group of its own).
//! [`report_leftovers`] sweeps every marker the bench handed out, at the end of the run.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use serde_json::Value;

use crate::common::{Capture, Found, Process};

/// How often [`Guard::wait_for`] looks at the output again.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// Environment variable that marks every process a bench starts.
const MARK_VAR: &str = "DEVSERVE_BENCH_MARK";

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The start of every marker this bench hands out.
fn marker_prefix() -> String {
    format!("{}.", std::process::id())
}

/// A started process; stopped (with everything it started) when dropped.
pub struct Guard {
    name: String,
    process: Process,
    marker: String,
    /// How long [`Guard::stop`] waits between SIGTERM and SIGKILL.
    grace: Duration,
    /// How many of its last lines an error quotes.
    tail: usize,
    /// Just before the spawn.
    pub spawned: Instant,
    stopped: bool,
}

impl Guard {
    /// Starts `command` as the leader of a new process group, stdin from /dev/null, stdout and
    /// stderr captured. `name` is for messages; `grace` is the time between SIGTERM and SIGKILL
    /// when it is stopped; `tail` is how many of its last lines [`Guard::check_alive`] quotes.
    pub fn spawn(name: &str, mut command: Command, grace: Duration, tail: usize) -> std::io::Result<Guard> {
        // The trailing `.` keeps run 1's marker from being a prefix of run 10's.
        let marker = format!("{}{}.", marker_prefix(), RUNS.fetch_add(1, Ordering::Relaxed));
        command.env(MARK_VAR, &marker).process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. If the bench
        // dies, the child gets SIGTERM (and stops its own children) instead of living on.
        #[cfg(target_os = "linux")]
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let spawned = Instant::now();
        let child = command.spawn()?;
        let process = Process::adopt(child);
        Ok(Guard { name: name.to_owned(), process, marker, grace, tail, spawned, stopped: false })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Everything it (and what it started) printed so far, stdout and stderr merged, each line
    /// stamped with its arrival time.
    pub fn log(&self) -> &Capture {
        self.process.capture()
    }

    /// An error naming the process and its last lines if it has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.process.try_wait() {
            None => Ok(()),
            Some(status) => Err(format!("{} exited ({status}): {}", self.name, self.log().tail(self.tail))),
        }
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit_within(timeout)
    }

    /// Looks at the output every millisecond until `find` finds something: an error naming
    /// `what` and the last lines once `timeout` has passed, or naming the exit if the process
    /// exits first.
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
                let (seconds, tail) = (timeout.as_secs_f64(), self.log().tail(self.tail));
                return Err(format!("{}: no {what} within {seconds:.1} s; last lines: {tail}", self.name));
            }
            thread::sleep(LOOK_EVERY);
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

    /// SIGTERM to its group, SIGKILL after the grace, then SIGKILL to anything still marked.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = Pid::from_raw(self.pid());
        let _ = killpg(group, Signal::SIGTERM);
        if self.process.wait_exit_within(self.grace).is_none() {
            eprintln!(
                "[bench] {} ignored SIGTERM for {} s; killing its group",
                self.name,
                self.grace.as_secs()
            );
            let _ = killpg(group, Signal::SIGKILL);
            self.process.kill();
        }
        kill_marked(&self.marker);
    }
}

impl Drop for Guard {
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
