//! Running devserve (or any program) with its output captured: waits on human lines and on JSON
//! events, signals, exit; and devserve run to completion.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::capture::{Capture, Found, events_in, parse_event};
use super::procfs::{children, process_state};
use super::wait::{WAIT, wait_until};

/// The devserve binary cargo built for this test or bench, unless `DEVSERVE_TEST_BIN` names
/// another: a test of a fix is seen to fail against a build without it.
pub fn devserve_bin() -> String {
    std::env::var("DEVSERVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_devserve").to_owned())
}

/// devserve in `dir` with `args` and extra environment: no colour, no `RUST_LOG`, a backtrace if
/// it ever panics, stdin from /dev/null.
pub fn devserve_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(devserve_bin());
    command
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        // Tests run from inside a devserve worker still test a devserve of their own.
        .env_remove("DEVSERVE_GENERATION")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// TERM, and devserve exits 0.
pub fn stop_gracefully(devserve: &mut Process) {
    devserve.signal("TERM");
    let status = devserve.wait_exit();
    assert_eq!(status.code(), Some(0), "TERM is a graceful stop:\n{}", devserve.output());
}

/// `command_line` (a shell command) run in `dir` on a terminal of its own (a pty, through
/// util-linux's `script`), with `NO_COLOR=1` and `env`: its keys (what is written to the pty)
/// and the process.
pub fn on_terminal(
    dir: &Path,
    command_line: &str,
    env: &[(&str, &str)],
) -> (std::process::ChildStdin, Process) {
    let mut command = Command::new("script");
    command.args(["-qfec", command_line, "/dev/null"]).current_dir(dir).env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("script");
    let keys = child.stdin.take().expect("stdin");
    (keys, Process::adopt(child))
}

/// How long [`Process::wait_exit`] waits for the output of a process that exited.
const OUTPUT_AFTER_EXIT: Duration = Duration::from_secs(5);

/// A running devserve: a [`Process`] started by [`Devserve::start`].
pub type Devserve = Process;

/// A running child with its stdout and stderr captured (merged, in arrival order). Dropping it
/// SIGKILLs the child if it is still running.
pub struct Process {
    child: Child,
    capture: Capture,
}

impl Process {
    /// Starts devserve in `dir` with `args` and extra environment.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        Process::spawn(devserve_command(dir, args, env))
    }

    /// Spawns `command` with stdout and stderr piped into a [`Capture`] (stdin: /dev/null).
    pub fn spawn(mut command: Command) -> Process {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot spawn {program}: {e}"));
        let capture = Capture::attach(&mut child);
        Process { child, capture }
    }

    /// Takes over a child spawned by hand (its stdout and stderr are captured if they are still
    /// piped; whatever the test took or redirected is not).
    pub fn adopt(mut child: Child) -> Process {
        let capture = Capture::attach(&mut child);
        Process { child, capture }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Everything printed so far, stdout and stderr merged.
    pub fn output(&self) -> String {
        self.capture.text()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.capture.count(needle)
    }

    /// Waits until `needle` has appeared `times` times in the output.
    pub fn wait_for_count(&self, needle: &str, times: usize) {
        if !wait_until(WAIT, || self.count(needle) >= times) {
            panic!("timed out waiting for {times}× {needle:?}; output:\n{}", self.output());
        }
    }

    pub fn wait_for(&self, needle: &str) {
        self.wait_for_count(needle, 1);
    }

    /// The JSON events so far (`--log-format json`).
    pub fn events(&self) -> Vec<Value> {
        self.capture.events()
    }

    /// Waits for the first event of `kind` for which `matches` holds, and returns it:
    /// `devserve.wait_event("generation_ready", |e| e["generation"] == 2)`.
    pub fn wait_event(&self, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_event_from(0, kind, matches).item
    }

    /// Like [`Process::wait_event`], among the lines from index `from` on (a
    /// [`Capture::len`] taken earlier), with the line's index and arrival time.
    pub fn wait_event_from(&self, from: usize, kind: &str, matches: impl Fn(&Value) -> bool) -> Found<Value> {
        let mut found = None;
        if !wait_until(WAIT, || {
            found = self.capture.find_event(from, kind, &matches);
            found.is_some()
        }) {
            panic!("timed out waiting for a {kind:?} event; output:\n{}", self.output());
        }
        found.expect("found")
    }

    /// How many events of `kind` for which `matches` holds have come so far.
    pub fn count_events(&self, kind: &str, matches: impl Fn(&Value) -> bool) -> usize {
        self.events().iter().filter(|e| e["event"] == kind && matches(e)).count()
    }

    /// The address devserve reported for its `index`-th `--listen` socket: from a human
    /// `listening on ADDR …` line, a JSON message with that text, or a `listening` event.
    pub fn listen_addr(&self, index: usize) -> String {
        let nth = || self.capture.lines().iter().filter_map(|line| listen_address(&line.text)).nth(index);
        if !wait_until(WAIT, || nth().is_some()) {
            panic!("timed out waiting for listen address #{index}; output:\n{}", self.output());
        }
        nth().expect("listen address")
    }

    /// The front door's address, once devserve says it listens (its `proxy_listening` event).
    pub fn proxy_addr(&self) -> String {
        self.wait_event("proxy_listening", |_| true)["address"]
            .as_str()
            .expect("the proxy's address")
            .to_owned()
    }

    /// Sends `signal` (`TERM`, `HUP`, `SIGUSR1`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let name = if signal.starts_with("SIG") { signal.to_owned() } else { format!("SIG{signal}") };
        let signal = Signal::from_str(&name).unwrap_or_else(|_| panic!("unknown signal {name}"));
        kill(Pid::from_raw(self.pid()), signal).unwrap_or_else(|e| panic!("kill -{name} failed: {e}"));
    }

    /// The exit status if the process has exited (and is reaped now).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit; fails the test if it does not within [`WAIT`]. Then waits
    /// (a few seconds at most: a descendant may hold the pipes on) until its output is all read,
    /// so that what it printed last is in [`Process::output`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        match self.wait_exit_within(WAIT) {
            Some(status) => {
                wait_until(OUTPUT_AFTER_EXIT, || self.capture.closed());
                status
            }
            None => panic!("{} did not exit; output:\n{}", self.pid(), self.output()),
        }
    }

    /// SIGKILLs the process (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Pids of the process's direct children, with their state letter (R, S, Z, …).
    pub fn children(&self) -> Vec<(i32, char)> {
        children(self.pid()).into_iter().map(|pid| (pid, process_state(pid).unwrap_or('?'))).collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listen_address(line: &str) -> Option<String> {
    if let Some(event) = parse_event(line)
        && event["event"] == "listening"
    {
        return event["address"].as_str().map(str::to_owned);
    }
    let after = line.split("listening on ").nth(1)?;
    Some(after.split([' ', '"']).next()?.to_owned())
}

/// What a program run to completion left: its exit status, its output, how long it took.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Finished {
    /// The exit code; fails the test if the program was killed by a signal (a panic with
    /// `panic = "abort"`, a crash): that is never an answer.
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(code) => code,
            None => panic!("killed by a signal ({}), not exited; stderr:\n{}", self.status, self.stderr),
        }
    }

    /// The JSON events on stderr (`--log-format json`).
    pub fn events(&self) -> Vec<Value> {
        events_in(&self.stderr)
    }
}

/// Runs `command` to completion with stdin from /dev/null, capturing stdout and stderr; fails the
/// test if it cannot be started.
pub fn run_to_completion(command: &mut Command) -> Finished {
    let program = command.get_program().to_string_lossy().into_owned();
    try_run(command).unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// [`run_to_completion`], with the error if `command` cannot be started.
pub fn try_run(command: &mut Command) -> std::io::Result<Finished> {
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).output()?;
    Ok(Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    })
}

/// Runs devserve in `dir` to completion (see [`devserve_command`] for its environment).
pub fn run_devserve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Finished {
    run_to_completion(&mut devserve_command(dir, args, env))
}

/// Runs devserve in `dir` with `args`: it must fail with exactly one error line naming `culprit`
/// and no panic. Returns the exit code.
pub fn one_error(dir: &Path, args: &[&str], culprit: &str) -> i32 {
    let finished = run_devserve(dir, args, &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_ne!(code, 0, "{args:?} must fail:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line for {args:?}:\n{stderr}");
    assert!(errors[0].contains(culprit), "{:?} should name {culprit:?}", errors[0]);
    code
}
