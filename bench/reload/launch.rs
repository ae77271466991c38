//! A run of a command line of its own, for the sections whose tools need flags that
//! `tools.rs`'s fixed command lines do not have (`--poll`, `--proxy`, `-l 127.0.0.1:0`,
//! `--ignore`): the same process group, marker, death signal, capture and clean-up as
//! [`crate::tools::Running`], with the command line given by the section.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::DEBOUNCE_ARG;
use crate::common::{Capture, Fixture, Found, Process, descendants, runs};
use crate::report::secs;
use crate::tools::{Ctx, marker_prefix};

/// The variable `tools.rs` marks its runs with (its `MARK_VAR`): the same name, so the bench's
/// final sweep (`report_leftovers`) finds these runs too.
const MARK_VAR: &str = "DEVSERVE_BENCH_MARK";

/// How often a wait looks at the captured output again.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// devserve with `--log-format json`, then `args`, then `--` and the fixture: in `dir`, with the
/// fixture's environment (workers inherit it), no colour, no inherited socket variables.
pub fn devserve(ctx: &Ctx, dir: &Path, args: &[&str], fixture: &Fixture) -> Command {
    let mut command = Command::new(&ctx.bins.devserve);
    command.args(["--log-format", "json"]).args(args).arg("--").args(fixture.argv());
    finish(&mut command, dir, fixture);
    command
}

/// `watchexec -r --debounce 50ms -n -w DIR`, then `args`, then `--` and the fixture.
pub fn watchexec(ctx: &Ctx, dir: &Path, args: &[&str], fixture: &Fixture) -> Result<Command, String> {
    let mut command = Command::new(ctx.bins.watchexec.clone()?);
    let mut all: Vec<OsString> = ["-r", "--debounce", DEBOUNCE_ARG, "-n", "-w"].map(Into::into).into();
    all.push(dir.into());
    all.extend(args.iter().map(Into::into));
    all.push("--".into());
    command.args(all).args(fixture.argv());
    finish(&mut command, dir, fixture);
    Ok(command)
}

fn finish(command: &mut Command, dir: &Path, fixture: &Fixture) {
    fixture.apply_env(command);
    command.current_dir(dir).env("NO_COLOR", "1");
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "RUST_LOG"] {
        command.env_remove(var);
    }
}

/// The release-built fixture app.
pub fn fixture(ctx: &Ctx) -> Fixture {
    Fixture::at(&ctx.bins.fixture)
}

static LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// A running tool: leader of its own process group, output captured. Dropping it stops the
/// tool and everything it started.
pub struct Launch {
    label: String,
    process: Process,
    marker: String,
    pub spawned: Instant,
    stopped: bool,
}

impl Launch {
    pub fn spawn(label: &str, mut command: Command) -> Result<Launch, String> {
        // The trailing `.` keeps run 1's marker from being a prefix of run 10's.
        let marker = format!("{}x{}.", marker_prefix(), LAUNCHES.fetch_add(1, Ordering::Relaxed));
        command.env(MARK_VAR, &marker).process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. If the bench
        // dies, the tool gets SIGTERM and stops its apps, instead of living on.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let spawned = Instant::now();
        let child = command.spawn().map_err(|e| format!("cannot start {label}: {e}"))?;
        let process = Process::adopt(child);
        Ok(Launch { label: label.to_owned(), process, marker, spawned, stopped: false })
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Everything the tool and its apps printed, stamped with arrival times.
    pub fn log(&self) -> &Capture {
        self.process.capture()
    }

    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.process.try_wait() {
            None => Ok(()),
            Some(status) => Err(format!("{} exited ({status}): {}", self.label, self.log().tail(3))),
        }
    }

    /// Waits (looking every millisecond) until `find` finds something in the output.
    pub fn wait<T>(
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
                return Err(format!("no {what} within {}: {}", secs(timeout), self.log().tail(3)));
            }
            thread::sleep(LOOK_EVERY);
        }
    }

    /// Waits for a JSON event of `kind` from line `from` on.
    pub fn wait_event(
        &mut self,
        from: usize,
        timeout: Duration,
        kind: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Found<Value>, String> {
        self.wait(timeout, &format!("{kind} event"), |log| log.find_event(from, kind, &matches))
    }

    /// The port of the address in devserve's first `kind` event (`listening`, `proxy_listening`).
    pub fn port_of(&mut self, kind: &str, timeout: Duration) -> Result<u16, String> {
        let event = self.wait_event(0, timeout, kind, |_| true)?.item;
        let address = event["address"].as_str().unwrap_or_default();
        let port = address.rsplit_once(':').and_then(|(_, port)| port.parse().ok());
        port.ok_or_else(|| format!("no port in {event}"))
    }

    /// The tool's own processes: it and its descendants, minus the fixture apps.
    pub fn own_pids(&self, fixture: &Path) -> Vec<i32> {
        descendants(self.pid()).into_iter().filter(|&pid| !is_app(pid, fixture)).collect()
    }

    /// The fixture apps running under the tool.
    pub fn apps(&self, fixture: &Path) -> Vec<i32> {
        descendants(self.pid()).into_iter().filter(|&pid| is_app(pid, fixture)).collect()
    }

    /// SIGTERM to the tool's group, SIGKILL after 10 s, then SIGKILL to anything still marked.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = Pid::from_raw(self.pid());
        let _ = killpg(group, Signal::SIGTERM);
        if self.process.wait_exit_within(Duration::from_secs(10)).is_none() {
            eprintln!("[bench] {} ignored SIGTERM for 10 s; killing its group", self.label);
            let _ = killpg(group, Signal::SIGKILL);
            self.process.kill();
        }
        kill_marked(&self.marker);
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `pid` is a fixture app: it runs `fixture`, or a copy of it (devserve runs each
/// generation from a copy of a compiled program, `gen-N-fixture-app` in its runtime dir, with
/// `fixture`'s path still as `argv[0]`).
fn is_app(pid: i32, fixture: &Path) -> bool {
    if runs(pid, fixture) {
        return true;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    argv0 == fixture.as_os_str().as_encoded_bytes()
}

/// SIGKILLs, by pid, every process still carrying `marker`, and waits (bounded) until they are gone.
fn kill_marked(marker: &str) {
    let wanted = format!("{MARK_VAR}={marker}");
    let marked = || -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let pids = entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
        pids.filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ.split(|&b| b == 0).any(|var| var == wanted.as_bytes())
        })
        .collect()
    };
    for round in 0..50 {
        let left = marked();
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
