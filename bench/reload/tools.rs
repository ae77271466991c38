//! The tools being compared, the command line of each, and a run of one: its process group, its
//! captured output (the kit's [`Process`]), and its clean-up.

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

use crate::big_tree::Tree;
use crate::client::{Outcome, http_get};
use crate::common::{Capture, Fixture, Found, Process, TempDir, descendants, free_port, runs};
use crate::config::Config;
use crate::peers::Bins;
use crate::report::secs;
use crate::{DEBOUNCE_ARG, REQUEST_TIMEOUT, START_TIMEOUT};

/// Runs `$0` with fd `LISTEN_FDS_FIRST_FD` (when set) duplicated onto fd 3.
const MOVE_TO_FD3: [&str; 3] = ["sh", "-c", r#"exec 3<&"${LISTEN_FDS_FIRST_FD:-3}" "$0""#];
/// Environment variable that marks every process a tool run starts.
const MARK_VAR: &str = "DEVSERVE_BENCH_MARK";

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
            let mut args: Vec<OsString> =
                ["-r", "--debounce", DEBOUNCE_ARG, "-n", "-w"].map(Into::into).into();
            args.push(dir.into());
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
        fixture.apply_env(&mut command);
        command.current_dir(dir).env("NO_COLOR", "1");
        for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "RUST_LOG"] {
            command.env_remove(var);
        }
        Ok(command)
    }
}

/// A line from the app: it has started (one per app start, whatever the tool).
pub fn is_app_start(line: &str) -> bool {
    line.starts_with("fixture: serving ")
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The start of every marker this bench hands out.
pub fn marker_prefix() -> String {
    format!("{}.", std::process::id())
}

/// A tool run: the tool's process (leader of its own group) and its captured output.
/// Dropping it stops the tool and everything it started.
pub struct Running {
    tool: Tool,
    process: Process,
    pub spawned: Instant,
    marker: String,
    pub port: u16,
    stopped: bool,
}

impl Running {
    pub fn spawn(ctx: &Ctx, tool: Tool, dir: &Path, port: u16) -> Result<Running, String> {
        let mut command = ctx.command(tool, dir, port)?;
        let marker = format!("{}{}", marker_prefix(), RUNS.fetch_add(1, Ordering::Relaxed));
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
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", tool.label()))?;
        let process = Process::adopt(child);
        Ok(Running { tool, process, spawned, marker, port, stopped: false })
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
            Some(status) => Err(format!("{} exited ({status}): {}", self.tool.label(), self.log().tail(3))),
        }
    }

    /// Waits for a matching output line from index `from` on.
    pub fn wait_line(
        &mut self,
        from: usize,
        timeout: Duration,
        what: &str,
        matches: &dyn Fn(&str) -> bool,
    ) -> Result<Found<String>, String> {
        self.wait(timeout, what, |log| log.find(from, matches))
    }

    /// Waits for a JSON event of `kind` (devserve's `--log-format json`) from line `from` on.
    pub fn wait_event(
        &mut self,
        from: usize,
        timeout: Duration,
        kind: &str,
        matches: &dyn Fn(&Value) -> bool,
    ) -> Result<Found<Value>, String> {
        self.wait(timeout, &format!("{kind} event"), |log| log.find_event(from, kind, matches))
    }

    fn wait<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        find: impl Fn(&Capture) -> Option<Found<T>>,
    ) -> Result<Found<T>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = find(self.log()) {
                return Ok(found);
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(format!("no {what} within {}", secs(timeout)));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// The tool's own processes: it and its descendants, minus the fixture apps.
    pub fn own_pids(&self, fixture: &Path) -> Vec<i32> {
        descendants(self.pid()).into_iter().filter(|&pid| !runs(pid, fixture)).collect()
    }

    /// SIGTERM to the tool's group, SIGKILL after 10 s, then SIGKILL to anything still marked.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = Pid::from_raw(self.pid());
        let _ = killpg(group, Signal::SIGTERM);
        if self.process.wait_exit_within(Duration::from_secs(10)).is_none() {
            eprintln!("[bench] {} ignored SIGTERM for 10 s; killing its group", self.tool.label());
            let _ = killpg(group, Signal::SIGKILL);
            self.process.kill();
        }
        kill_marked(&self.marker);
    }
}

impl Drop for Running {
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

/// Kills what is left of every run, and says whether anything is.
pub fn report_leftovers(prefix: &str) {
    kill_marked(prefix);
    match marked_pids(prefix).as_slice() {
        [] => eprintln!("[bench] no process left running"),
        left => eprintln!("[bench] WARNING: processes still running after SIGKILL: {left:?}"),
    }
}

/// A fresh folder for one scenario of one tool, with `VERSION` = `v0`; removed on drop.
pub fn scratch(scenario: &str, tool: Tool) -> Result<TempDir, String> {
    let dir = TempDir::new(&format!("bench-{scenario}-{}", tool.slug()));
    write_version(&dir, "v0")?;
    Ok(dir)
}

/// Saves `version` into `dir/VERSION`; returns the instant just before the write.
pub fn write_version(dir: &Path, version: &str) -> Result<Instant, String> {
    let before = Instant::now();
    std::fs::write(dir.join("VERSION"), format!("{version}\n")).map_err(|e| format!("cannot save: {e}"))?;
    Ok(before)
}
