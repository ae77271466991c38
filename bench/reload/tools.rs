//! The tools being compared, the command line of each, and a run of one: the shared process
//! [`Guard`] (its process group, its captured output, its clean-up) with the tool's port.

use std::ffi::OsString;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::big_tree::Tree;
use crate::client::{Outcome, http_get, poll_for_version};
use crate::common::{Fixture, Found, TempDir, descendants, free_port, runs};
use crate::config::Config;
use crate::peers::Bins;
use crate::shared::process::Guard;
use crate::{DEBOUNCE_ARG, REQUEST_TIMEOUT, SAVE_GAP, SAVE_TIMEOUT, START_TIMEOUT};

/// Runs `$0` with fd `LISTEN_FDS_FIRST_FD` (when set) duplicated onto fd 3.
const MOVE_TO_FD3: [&str; 3] = ["sh", "-c", r#"exec 3<&"${LISTEN_FDS_FIRST_FD:-3}" "$0""#];
/// How long a stopped tool gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many of its last lines an error quotes.
pub const TAIL: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Devserve,
    Watchexec,
    WatchexecSocket,
    SystemfdWatchexec,
}

impl Tool {
    pub const ALL: [Tool; 4] =
        [Tool::Devserve, Tool::Watchexec, Tool::WatchexecSocket, Tool::SystemfdWatchexec];

    pub fn label(self) -> &'static str {
        match self {
            Tool::Devserve => "devserve",
            Tool::Watchexec => "watchexec -r",
            Tool::WatchexecSocket => "watchexec -r --socket",
            Tool::SystemfdWatchexec => "systemfd + watchexec -r",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Tool::Devserve => "devserve",
            Tool::Watchexec => "watchexec",
            Tool::WatchexecSocket => "watchexec-socket",
            Tool::SystemfdWatchexec => "systemfd",
        }
    }
}

/// What the scenarios share: settings, binaries, and the idle tree (made on first use).
pub struct Ctx {
    pub config: Config,
    pub bins: Bins,
    pub tree: std::cell::OnceCell<Result<Tree, String>>,
}

impl Ctx {
    /// Why `tool` cannot run at all, if it cannot.
    pub fn unavailable(&self, tool: Tool) -> Option<String> {
        let needs: &[&Result<std::path::PathBuf, String>] = match tool {
            Tool::Devserve => &[],
            Tool::Watchexec | Tool::WatchexecSocket => &[&self.bins.watchexec],
            Tool::SystemfdWatchexec => &[&self.bins.systemfd, &self.bins.watchexec],
        };
        needs.iter().find_map(|bin| bin.as_ref().err().cloned())
    }

    /// The command line of `tool` watching `dir`, serving on 127.0.0.1:`port`.
    fn command(&self, tool: Tool, dir: &Path, port: u16) -> Result<Command, String> {
        let listen = format!("127.0.0.1:{port}");
        let fixture = Fixture::at(&self.bins.fixture).version_file(dir.join("VERSION"));
        let app: Vec<OsString> = fixture.argv().into_iter().map(Into::into).collect();
        let watchexec = || self.bins.watchexec.clone();
        let watchexec_args = |socket: bool| {
            let mut args = watchexec_flags(dir);
            if socket {
                // watchexec passes its socket at fd LISTEN_FDS_FIRST_FD (9), not at fd 3 like
                // systemd and systemfd; the fixture takes fd 3, so a shell moves it there first.
                args.extend(["--socket".into(), listen.clone().into(), "--".into()]);
                args.extend(MOVE_TO_FD3.map(Into::into));
            } else {
                args.push("--".into());
            }
            args.extend(app.iter().cloned());
            args
        };
        let mut command = match tool {
            Tool::Devserve => {
                let mut c = Command::new(&self.bins.devserve);
                c.arg("-w").arg(dir);
                c.args(["--debounce", DEBOUNCE_ARG, "--log-format", "json", "--listen", &listen, "--"]);
                c.args(&app).env("FIXTURE_NOTIFY", "1");
                c
            }
            Tool::Watchexec => {
                let mut c = Command::new(watchexec()?);
                c.args(watchexec_args(false)).env("FIXTURE_BIND", &listen);
                c
            }
            Tool::WatchexecSocket => {
                let mut c = Command::new(watchexec()?);
                c.args(watchexec_args(true));
                c
            }
            Tool::SystemfdWatchexec => {
                let mut c = Command::new(self.bins.systemfd.clone()?);
                c.args(["--no-pid", "-s", &format!("http::{listen}"), "--"]).arg(watchexec()?);
                c.args(watchexec_args(false));
                c
            }
        };
        finish(&mut command, dir, &fixture);
        Ok(command)
    }
}

/// watchexec's flags before the command: `-r --debounce 50ms -n -w DIR`.
pub fn watchexec_flags(dir: &Path) -> Vec<OsString> {
    let mut flags: Vec<OsString> = ["-r", "--debounce", DEBOUNCE_ARG, "-n", "-w"].map(Into::into).into();
    flags.push(dir.into());
    flags
}

/// What every tool's command line gets: the fixture's environment (workers inherit it), cwd in
/// `dir`, no colour, no inherited socket variables.
pub fn finish(command: &mut Command, dir: &Path, fixture: &Fixture) {
    fixture.apply_env(command);
    command.current_dir(dir).env("NO_COLOR", "1");
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "RUST_LOG"] {
        command.env_remove(var);
    }
}

/// A line from the app: it has started (one per app start, whatever the tool).
pub fn is_app_start(line: &str) -> bool {
    line.starts_with("fixture: serving ")
}

/// A tool run: the shared [`Guard`] of the tool's process (leader of its own group, output
/// captured) and its port. Dropping it stops the tool and everything it started.
pub struct Running {
    guard: Guard,
    pub port: u16,
}

impl Deref for Running {
    type Target = Guard;

    fn deref(&self) -> &Guard {
        &self.guard
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

impl Running {
    pub fn spawn(ctx: &Ctx, tool: Tool, dir: &Path, port: u16) -> Result<Running, String> {
        let command = ctx.command(tool, dir, port)?;
        let guard = Guard::spawn(tool.label(), command, STOP_GRACE, TAIL)
            .map_err(|e| format!("cannot start {}: {e}", tool.label()))?;
        Ok(Running { guard, port })
    }

    /// Spawns the tool and waits until the app answers `GET /`.
    pub fn start(ctx: &Ctx, tool: Tool, dir: &Path) -> Result<Running, String> {
        let port = free_port();
        let mut run = Running::spawn(ctx, tool, dir, port)?;
        run.wait_line(0, START_TIMEOUT, "app start", &is_app_start)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !matches!(http_get(port, REQUEST_TIMEOUT), Outcome::Ok(_)) {
            run.check_alive()?;
            if Instant::now() >= deadline {
                return Err("the app never answered GET /".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(run)
    }

    /// Waits for a matching output line from index `from` on.
    pub fn wait_line(
        &mut self,
        from: usize,
        timeout: Duration,
        what: &str,
        matches: &dyn Fn(&str) -> bool,
    ) -> Result<Found<String>, String> {
        self.wait_for(timeout, what, |log| log.find(from, matches))
    }

    /// The tool's own processes: it and its descendants, minus the fixture apps.
    pub fn own_pids(&self, fixture: &Path) -> Vec<i32> {
        descendants(self.pid()).into_iter().filter(|&pid| !is_app(pid, fixture)).collect()
    }
}

/// Whether `pid` is a fixture app: it runs `fixture`, or a copy of it (devserve runs each
/// generation from a copy of a compiled program, `gen-N-fixture-app` in its runtime dir, with
/// `fixture`'s path still as `argv[0]`).
pub fn is_app(pid: i32, fixture: &Path) -> bool {
    if runs(pid, fixture) {
        return true;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    argv0 == fixture.as_os_str().as_encoded_bytes()
}

/// A fresh folder for one scenario of one tool, with `VERSION` = `v0`; removed on drop.
pub fn scratch(scenario: &str, tool: Tool) -> Result<TempDir, String> {
    let dir = TempDir::new(&format!("bench-{scenario}-{}", tool.slug()));
    write_version(&dir, "v0")?;
    Ok(dir)
}

/// `saves` saves of `VERSION` in `dir` (v1, v2, …), [`SAVE_GAP`] apart: for each, the time from
/// the write to the first answer with the new version on `port`, and for devserve the app's
/// start-up it measured (spawn → `READY=1`) for the first generation ready after the save.
pub fn timed_saves(
    run: &mut Guard,
    tool: Tool,
    dir: &Path,
    port: u16,
    saves: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let (mut latencies, mut starts) = (Vec::new(), Vec::new());
    for n in 1..=saves {
        thread::sleep(SAVE_GAP);
        let version = format!("v{n}");
        let mark = run.log().len();
        let written = write_version(dir, &version)?;
        let served = poll_for_version(port, &version, SAVE_TIMEOUT)?;
        latencies.push(served - written);
        if tool == Tool::Devserve {
            let ready = run.wait_event(mark, SAVE_TIMEOUT, "generation_ready", |_| true)?.item;
            starts.push(measured_start(&ready)?);
        }
    }
    Ok((latencies, starts))
}

/// Refuses a `generation_ready` event whose readiness devserve only assumed (no `READY=1`): a
/// figure taken from it would measure the assumption delay, not the app.
pub fn measured_ready(ready: &Value) -> Result<&Value, String> {
    if ready["assumed_after_ms"].is_null() {
        Ok(ready)
    } else {
        Err(format!("readiness was assumed, not measured: {ready}"))
    }
}

/// The app's start-up as devserve measured it (spawn → `READY=1`), from a `generation_ready` event.
pub fn measured_start(ready: &Value) -> Result<Duration, String> {
    let start_ms =
        measured_ready(ready)?["start_ms"].as_u64().ok_or_else(|| format!("no start_ms in {ready}"))?;
    Ok(Duration::from_millis(start_ms))
}

/// Saves `version` into `dir/VERSION`; returns the instant just before the write.
pub fn write_version(dir: &Path, version: &str) -> Result<Instant, String> {
    let before = Instant::now();
    std::fs::write(dir.join("VERSION"), format!("{version}\n")).map_err(|e| format!("cannot save: {e}"))?;
    Ok(before)
}
