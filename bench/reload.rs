//! Reload benchmark: devserve against `watchexec -r`, `watchexec -r --socket` and
//! `systemfd --no-pid -s … -- watchexec -r`.
//!
//! Run with `cargo bench --bench reload`. It builds `devserve` and the `fixture-app` example in
//! release, finds (or installs) the peers, and runs every scenario once per tool, all with the same
//! fixture app and the same 50 ms debounce, over 127.0.0.1 only:
//!
//! 1. **Fresh latency**: write `vN` into the watched version file, then poll `GET /` (a new
//!    connection each time, 1 ms pause after a failure) until a response carries `vN`. For
//!    devserve, its own overhead is that latency minus the 50 ms debounce minus the app's start-up
//!    time that devserve reports in its `gen N ready in … (…, start S)` line.
//! 2. **Load**: two client threads, a new connection per `GET /` (2 s timeout), while the main
//!    thread saves a new version every second. Every outcome is counted: ok, refused, reset (or
//!    EOF before the full response), timed out, other.
//! 3. **Storm**: 5,000 small files in one burst; count the app starts that follow.
//! 4. **Idle cost**: watch a tree of 100,000 files in 10,000 folders: time from spawn until a
//!    probe write restarts the app, peak RSS (VmHWM) and CPU time of the tool's own processes over
//!    10 s of idle (the fixture app excluded).
//! 5. **Hygiene** (devserve only): RSS, open fds and children before and after N HUP reloads.
//!
//! Every tool runs in its own process group with a marker in its environment; at the end of each
//! scenario the group gets SIGTERM, then SIGKILL, and any process still carrying the marker is
//! killed by pid. A tool that fails a scenario gets `failed: reason` in its cells; the run goes on.
//!
//! Settings: `BENCH_SAVES` (20), `BENCH_LOAD_SECS` (30), `BENCH_RELOADS` (500), `BENCH_SCENARIOS`
//! (a comma-separated subset of `fresh,load,storm,idle,hygiene`; default all), and
//! `DEVSERVE_BENCH_PEERS` (folder with `bin/watchexec` and `bin/systemfd`; default
//! `target/bench-peers`, where they are installed with `cargo install` when missing).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The debounce every tool gets.
const DEBOUNCE: Duration = Duration::from_millis(50);
const DEBOUNCE_ARG: &str = "50ms";
/// Timeout of one HTTP request (connect, write and read together).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed request before the next attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// Longest wait for a tool to start serving, and for one save to be served.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const SAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two saves in the latency scenario, so each one is its own change.
const SAVE_GAP: Duration = Duration::from_millis(300);
const STORM_FILES: usize = 5_000;
const STORM_DIRS: usize = 5;
const STORM_QUIET: Duration = Duration::from_secs(3);
const STORM_LIMIT: Duration = Duration::from_secs(30);
/// The idle tree: TREE_TOP × TREE_SUB folders of TREE_FILES files each.
const TREE_TOP: usize = 100;
const TREE_SUB: usize = 100;
const TREE_FILES: usize = 10;
const PROBE_EVERY: Duration = Duration::from_millis(50);
const WATCH_LIMIT: Duration = Duration::from_secs(120);
const IDLE: Duration = Duration::from_secs(10);
/// Runs `$0` with fd `LISTEN_FDS_FIRST_FD` (when set) duplicated onto fd 3.
const MOVE_TO_FD3: [&str; 3] = ["sh", "-c", r#"exec 3<&"${LISTEN_FDS_FIRST_FD:-3}" "$0""#];
/// Environment variable that marks every process a tool run starts.
const MARK_VAR: &str = "DEVSERVE_BENCH_MARK";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

fn main() {
    let config = Config::from_env();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = target_dir(&root);
    let began = Instant::now();
    eprintln!("[bench] building devserve and fixture-app in release");
    if let Err(e) = build_release(&root) {
        eprintln!("[bench] {e}");
        std::process::exit(1);
    }
    let bins = Bins::find(&root, &target);
    let mut ctx = Ctx { config, bins, tree: std::cell::OnceCell::new() };
    let mut rows = Vec::new();
    for scenario in scenarios(&ctx.config).into_iter().filter(|s| ctx.config.selected(s.key)) {
        rows.extend(run_scenario(&ctx, &scenario));
        if scenario.uses_tree {
            drop(ctx.tree.take()); // removes the idle tree
        }
    }
    report_leftovers(&marker_prefix());
    let took = began.elapsed();
    println!("{}", render_report(&ctx, &rows, took));
}

// ---------------------------------------------------------------------------------------------
// Settings, binaries, peers
// ---------------------------------------------------------------------------------------------

struct Config {
    saves: usize,
    load_secs: u64,
    reloads: usize,
    /// `BENCH_SCENARIOS=fresh,load,storm,idle,hygiene`: a subset to run (default all).
    only: Option<String>,
}

impl Config {
    fn from_env() -> Config {
        Config {
            saves: env_number("BENCH_SAVES", 20),
            load_secs: env_number("BENCH_LOAD_SECS", 30),
            reloads: env_number("BENCH_RELOADS", 500),
            only: std::env::var("BENCH_SCENARIOS").ok().filter(|s| !s.trim().is_empty()),
        }
    }

    fn selected(&self, key: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only.split(',').any(|k| k.trim() == key))
    }

    /// The command line that reproduces this run.
    fn command(&self) -> String {
        let peers = std::env::var("DEVSERVE_BENCH_PEERS").map(|p| format!("DEVSERVE_BENCH_PEERS={p} "));
        let only = self.only.as_ref().map(|only| format!("BENCH_SCENARIOS={only} "));
        format!(
            "{}{}BENCH_SAVES={} BENCH_LOAD_SECS={} BENCH_RELOADS={} cargo bench --bench reload",
            peers.unwrap_or_default(),
            only.unwrap_or_default(),
            self.saves,
            self.load_secs,
            self.reloads
        )
    }
}

fn env_number<T: std::str::FromStr + Copy + PartialOrd + From<u8>>(name: &str, default: T) -> T {
    let Ok(text) = std::env::var(name) else {
        return default;
    };
    match text.trim().parse::<T>() {
        Ok(n) if n >= T::from(1) => n,
        _ => {
            eprintln!("[bench] {name}={text:?} is not a positive whole number");
            std::process::exit(2);
        }
    }
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn build_release(root: &Path) -> Result<(), String> {
    let status = Command::new(cargo())
        .args(["build", "--release", "--bin", "devserve", "--example", "fixture-app"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("release build failed ({status})")) }
}

/// The programs being measured. A peer is `Err(why)` when it cannot be found or installed.
struct Bins {
    devserve: PathBuf,
    fixture: PathBuf,
    watchexec: Result<PathBuf, String>,
    systemfd: Result<PathBuf, String>,
}

impl Bins {
    fn find(root: &Path, target: &Path) -> Bins {
        let release = target.join("release");
        let peers_root = match std::env::var_os("DEVSERVE_BENCH_PEERS") {
            Some(dir) => root.join(dir),
            None => target.join("bench-peers"),
        };
        let peers_bin = peers_root.join("bin");
        let locate = |name: &str| find_on_path(name).or_else(|| executable(&peers_bin.join(name)));
        if locate("watchexec").is_none() || locate("systemfd").is_none() {
            install_peers(&peers_root);
        }
        let peer = |name: &str| {
            locate(name).ok_or_else(|| format!("skipped: no {name} (not found, `cargo install` failed)"))
        };
        let fixture = release.join("examples/fixture-app");
        Bins {
            devserve: release.join("devserve"),
            fixture: fixture.canonicalize().unwrap_or(fixture),
            watchexec: peer("watchexec"),
            systemfd: peer("systemfd"),
        }
    }

    fn version(path: &Result<PathBuf, String>) -> String {
        let path = match path {
            Ok(path) => path,
            Err(why) => return why.clone(),
        };
        let out = Command::new(path).arg("--version").output();
        let first = out.map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string());
        format!("{} ({})", first.unwrap_or_default(), path.display())
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| executable(&dir.join(name)))
}

fn executable(path: &Path) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| path.to_path_buf())
}

fn install_peers(peers_root: &Path) {
    eprintln!(
        "[bench] peers missing: running `cargo install --locked watchexec-cli systemfd --root {}`",
        peers_root.display()
    );
    let status = Command::new(cargo())
        .args(["install", "--locked", "watchexec-cli", "systemfd", "--root"])
        .arg(peers_root)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("[bench] cargo install failed ({s}); the missing peers are skipped"),
        Err(e) => eprintln!("[bench] cannot run cargo install ({e}); the missing peers are skipped"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tools and their processes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Devserve,
    Watchexec,
    WatchexecSocket,
    SystemfdWatchexec,
}

impl Tool {
    const ALL: [Tool; 4] = [Tool::Devserve, Tool::Watchexec, Tool::WatchexecSocket, Tool::SystemfdWatchexec];

    fn label(self) -> &'static str {
        match self {
            Tool::Devserve => "devserve",
            Tool::Watchexec => "watchexec -r",
            Tool::WatchexecSocket => "watchexec -r --socket",
            Tool::SystemfdWatchexec => "systemfd + watchexec -r",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Tool::Devserve => "devserve",
            Tool::Watchexec => "watchexec",
            Tool::WatchexecSocket => "watchexec-socket",
            Tool::SystemfdWatchexec => "systemfd",
        }
    }
}

/// What the scenarios share: settings, binaries, and the idle tree (made on first use).
struct Ctx {
    config: Config,
    bins: Bins,
    tree: std::cell::OnceCell<Result<Tree, String>>,
}

impl Ctx {
    /// Why `tool` cannot run at all, if it cannot.
    fn unavailable(&self, tool: Tool) -> Option<String> {
        let needs: &[&Result<PathBuf, String>] = match tool {
            Tool::Devserve => &[],
            Tool::Watchexec | Tool::WatchexecSocket => &[&self.bins.watchexec],
            Tool::SystemfdWatchexec => &[&self.bins.systemfd, &self.bins.watchexec],
        };
        needs.iter().find_map(|bin| bin.as_ref().err().cloned())
    }

    /// The command line of `tool` watching `dir`, serving on 127.0.0.1:`port`.
    fn command(&self, tool: Tool, dir: &Path, port: u16) -> Result<Command, String> {
        let listen = format!("127.0.0.1:{port}");
        let watchexec = || self.bins.watchexec.clone();
        let watchexec_args = |socket: bool| {
            let mut args: Vec<OsString> =
                ["-r", "--debounce", DEBOUNCE_ARG, "-n", "-w"].map(Into::into).into();
            args.push(dir.into());
            if socket {
                // watchexec passes its socket at fd LISTEN_FDS_FIRST_FD (9), not at fd 3 like
                // systemd and systemfd; the fixture takes fd 3, so a shell moves it there first.
                args.extend(["--socket".into(), listen.clone().into(), "--".into()]);
                args.extend(
                    [MOVE_TO_FD3.map(Into::into).as_slice(), &[self.bins.fixture.clone().into()]].concat(),
                );
            } else {
                args.extend(["--".into(), self.bins.fixture.clone().into()]);
            }
            args
        };
        let mut command = match tool {
            Tool::Devserve => {
                let mut c = Command::new(&self.bins.devserve);
                c.arg("-w").arg(dir).args(["--debounce", DEBOUNCE_ARG, "--listen", &listen, "--"]);
                c.arg(&self.bins.fixture).env("FIXTURE_NOTIFY", "1");
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
        command.current_dir(dir).env("FIXTURE_VERSION_FILE", dir.join("VERSION")).env("NO_COLOR", "1");
        for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "RUST_LOG"] {
            command.env_remove(var);
        }
        Ok(command)
    }
}

/// One line of a tool's output, stamped when it arrived.
struct Line {
    at: Instant,
    text: String,
}

/// Everything a tool (and the apps it runs) printed on stdout and stderr, in arrival order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Line>>>);

impl Log {
    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<Line>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lines().len()
    }

    fn follow(&self, stream: impl Read + Send + 'static) {
        let log = self.clone();
        thread::spawn(move || {
            for text in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lines().push(Line { at: Instant::now(), text });
            }
        });
    }

    /// The first line from index `from` on that matches, with its index and arrival time.
    fn find(&self, from: usize, matches: &dyn Fn(&str) -> bool) -> Option<(usize, Instant, String)> {
        let lines = self.lines();
        let mut found = lines.iter().enumerate().skip(from).filter(|(_, line)| matches(&line.text));
        found.next().map(|(i, line)| (i, line.at, line.text.clone()))
    }

    /// Arrival times of the matching lines from index `from` on.
    fn times(&self, from: usize, matches: &dyn Fn(&str) -> bool) -> Vec<Instant> {
        self.lines().iter().skip(from).filter(|line| matches(&line.text)).map(|line| line.at).collect()
    }

    fn tail(&self) -> String {
        let lines = self.lines();
        let last: Vec<&str> = lines.iter().rev().take(3).map(|line| line.text.as_str()).collect();
        last.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

fn is_app_start(line: &str) -> bool {
    line.starts_with("fixture: serving ")
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

fn marker_prefix() -> String {
    format!("{}.", std::process::id())
}

/// A tool run: the tool's process (leader of its own group) and its captured output.
/// Dropping it stops the tool and everything it started.
struct Running {
    tool: Tool,
    child: Child,
    spawned: Instant,
    log: Log,
    marker: String,
    port: u16,
    stopped: bool,
}

impl Running {
    fn spawn(ctx: &Ctx, tool: Tool, dir: &Path, port: u16) -> Result<Running, String> {
        let mut command = ctx.command(tool, dir, port)?;
        let marker = format!("{}{}", marker_prefix(), RUNS.fetch_add(1, Ordering::Relaxed));
        command.env(MARK_VAR, &marker).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. If the bench
        // dies, the tool gets SIGTERM and stops its apps, instead of living on.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let spawned = Instant::now();
        let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", tool.label()))?;
        let log = Log::default();
        log.follow(child.stdout.take().expect("stdout is piped"));
        log.follow(child.stderr.take().expect("stderr is piped"));
        Ok(Running { tool, child, spawned, log, marker, port, stopped: false })
    }

    /// Spawns the tool and waits until the app answers `GET /`.
    fn start(ctx: &Ctx, tool: Tool, dir: &Path) -> Result<Running, String> {
        let port = free_port()?;
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

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status}): {}", self.tool.label(), self.log.tail())),
            Err(e) => Err(format!("cannot check on {}: {e}", self.tool.label())),
        }
    }

    /// Waits for a matching output line from index `from` on.
    fn wait_line(
        &mut self,
        from: usize,
        timeout: Duration,
        what: &str,
        matches: &dyn Fn(&str) -> bool,
    ) -> Result<(usize, Instant, String), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.log.find(from, matches) {
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
    fn own_pids(&self, fixture: &Path) -> Vec<i32> {
        descendants(self.pid()).into_iter().filter(|&pid| !proc_is(pid, fixture)).collect()
    }

    /// SIGTERM to the tool's group, SIGKILL after 10 s, then SIGKILL to anything still marked.
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = Pid::from_raw(self.pid());
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            eprintln!("[bench] {} ignored SIGTERM for 10 s; killing its group", self.tool.label());
            let _ = killpg(group, Signal::SIGKILL);
            let _ = self.child.wait();
        }
        kill_marked(&self.marker);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("cannot find a free port: {e}"))
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

/// `pid` and all its descendants, from `/proc/PID/task/*/children`.
fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = VecDeque::from([pid]);
    while let Some(pid) = queue.pop_front() {
        if found.contains(&pid) || found.len() > 1000 {
            continue;
        }
        found.push(pid);
        queue.extend(children(pid));
    }
    found
}

fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let lists = tasks.flatten().filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok());
    lists
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<_>>())
        .collect()
}

fn proc_is(pid: i32, exe: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|link| link == exe)
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`), in KiB.
fn status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    line.split_whitespace().next()?.parse().ok()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn fd_count(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
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

fn report_leftovers(prefix: &str) {
    kill_marked(prefix);
    match marked_pids(prefix).as_slice() {
        [] => eprintln!("[bench] no process left running"),
        left => eprintln!("[bench] WARNING: processes still running after SIGKILL: {left:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

enum Outcome {
    Ok(String),
    Refused,
    Reset,
    TimedOut,
    Other(String),
}

impl Outcome {
    fn from_error(e: &std::io::Error) -> Outcome {
        match e.kind() {
            ErrorKind::ConnectionRefused => Outcome::Refused,
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => Outcome::Reset,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::TimedOut,
            _ => Outcome::Other(e.to_string()),
        }
    }
}

/// `GET /` on a new connection to 127.0.0.1:`port`; the body if the full 200 response came.
fn http_get(port: u16, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(stream) => stream,
        Err(e) => return Outcome::from_error(&e),
    };
    if let Err(e) = stream.set_write_timeout(Some(left())).and_then(|()| stream.write_all(REQUEST)) {
        return Outcome::from_error(&e);
    }
    let mut response = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if Instant::now() >= deadline {
            return Outcome::TimedOut;
        }
        if let Err(e) = stream.set_read_timeout(Some(left())) {
            return Outcome::from_error(&e);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return parse_response(&response),
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Outcome::from_error(&e),
        }
    }
}

/// A complete `200` response gives its body; a cut-off one counts as a reset.
fn parse_response(response: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Outcome::Reset;
    };
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Outcome::Other(format!("status {status:?}"));
    }
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(length) if length == body.len() => Outcome::Ok(body.to_string()),
        _ => Outcome::Reset,
    }
}

/// Polls `GET /` until a response carries `version`; returns when that response arrived.
fn poll_for_version(port: u16, version: &str, timeout: Duration) -> Result<Instant, String> {
    let wanted = format!("version={version} ");
    let deadline = Instant::now() + timeout;
    loop {
        match http_get(port, REQUEST_TIMEOUT) {
            Outcome::Ok(body) if body.starts_with(&wanted) => return Ok(Instant::now()),
            Outcome::Ok(_) => {}
            _ => thread::sleep(RETRY_PAUSE),
        }
        if Instant::now() >= deadline {
            return Err(format!("{version} not served within {}", secs(timeout)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// A fresh folder under the temp dir, with `VERSION` = `v0`; removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(scenario: &str, tool: Tool) -> Result<Scratch, String> {
        let name = format!("devserve-bench-{}-{scenario}-{}", std::process::id(), tool.slug());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dir = dir.canonicalize().map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
        write_version(&dir, "v0")?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Saves `version` into `dir/VERSION`; returns the instant just before the write.
fn write_version(dir: &Path, version: &str) -> Result<Instant, String> {
    let before = Instant::now();
    std::fs::write(dir.join("VERSION"), format!("{version}\n")).map_err(|e| format!("cannot save: {e}"))?;
    Ok(before)
}

/// The idle-cost tree: 100 × 100 folders of 10 files, plus `VERSION` at the top.
struct Tree {
    root: PathBuf,
    /// Where the watch probe is written: the last folder created.
    probe: PathBuf,
}

impl Tree {
    /// Creates the tree; on failure, whatever was created is removed again (by `Drop`).
    fn create() -> Result<Tree, String> {
        let fail = |e: std::io::Error| format!("cannot create the idle tree: {e}");
        let root = std::env::temp_dir().join(format!("devserve-bench-{}-tree", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(fail)?;
        let root = root.canonicalize().map_err(fail)?;
        let last = format!("d{:03}/s{:03}/probe.txt", TREE_TOP - 1, TREE_SUB - 1);
        let tree = Tree { probe: root.join(last), root };
        let began = Instant::now();
        for top in 0..TREE_TOP {
            for sub in 0..TREE_SUB {
                let dir = tree.root.join(format!("d{top:03}/s{sub:03}"));
                std::fs::create_dir_all(&dir).map_err(fail)?;
                for file in 0..TREE_FILES {
                    std::fs::write(dir.join(format!("f{file}.txt")), b"idle\n").map_err(fail)?;
                }
            }
        }
        write_version(&tree.root, "idle")?;
        eprintln!(
            "[bench] idle tree: {} files in {} folders at {} ({:.1}s)",
            TREE_TOP * TREE_SUB * TREE_FILES,
            TREE_TOP * TREE_SUB,
            tree.root.display(),
            began.elapsed().as_secs_f64()
        );
        Ok(tree)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => eprintln!("[bench] idle tree removed"),
            Err(e) => eprintln!("[bench] cannot remove {}: {e}", self.root.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Unit {
    Ms,
    Count,
    MiB,
}

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Lower,
    /// No ratio: informational, or devserve only.
    Neither,
}

#[derive(Clone)]
enum Cell {
    Num(f64, Unit),
    Text(String),
    NotApplicable,
    Failed(String),
}

impl Cell {
    fn ms(d: Duration) -> Cell {
        Cell::Num(d.as_secs_f64() * 1000.0, Unit::Ms)
    }

    fn count(n: impl Into<u64>) -> Cell {
        Cell::Num(n.into() as f64, Unit::Count)
    }

    fn render(&self) -> String {
        match self {
            Cell::Num(v, Unit::Ms) if v.abs() < 10.0 => format!("{v:.1} ms"),
            Cell::Num(v, Unit::Ms) => format!("{v:.0} ms"),
            Cell::Num(v, Unit::Count) => format!("{v:.0}"),
            Cell::Num(v, Unit::MiB) => format!("{v:.1} MiB"),
            Cell::Text(text) => text.clone(),
            Cell::NotApplicable => "n/a".into(),
            Cell::Failed(reason) => format!("failed: {reason}"),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Cell::Num(v, _) => Some(*v),
            _ => None,
        }
    }
}

struct Figure {
    label: String,
    better: Better,
}

fn figure(label: impl Into<String>, better: Better) -> Figure {
    Figure { label: label.into(), better }
}

struct Row {
    label: String,
    better: Better,
    /// One per tool, in `Tool::ALL` order.
    cells: Vec<Cell>,
}

type Measure = fn(&Ctx, Tool) -> Result<Vec<Cell>, String>;

struct Scenario {
    name: &'static str,
    /// Its name in `BENCH_SCENARIOS`.
    key: &'static str,
    figures: Vec<Figure>,
    measure: Measure,
    devserve_only: bool,
    uses_tree: bool,
}

fn scenarios(config: &Config) -> Vec<Scenario> {
    use Better::{Lower, Neither};
    let load_secs = config.load_secs;
    vec![
        Scenario {
            name: "fresh latency",
            key: "fresh",
            figures: vec![
                figure(
                    format!("fresh latency, median of {} saves (save → new version served)", config.saves),
                    Lower,
                ),
                figure("fresh latency, p90", Lower),
                figure("devserve overhead, median (latency − 50 ms debounce − app start)", Neither),
            ],
            measure: fresh_latency,
            devserve_only: false,
            uses_tree: false,
        },
        Scenario {
            name: "load",
            key: "load",
            figures: vec![
                figure(format!("load {load_secs} s, 2 clients, save every 1 s: requests ok"), Neither),
                figure("load: refused (ECONNREFUSED)", Lower),
                figure("load: reset (ECONNRESET or cut-off response)", Lower),
                figure("load: timed out (2 s)", Lower),
                figure("load: other errors", Lower),
                figure("load: latency p50 of ok requests", Lower),
                figure("load: latency p99", Lower),
                figure("load: latency max", Lower),
                figure("load: app starts during the run", Neither),
            ],
            measure: load,
            devserve_only: false,
            uses_tree: false,
        },
        Scenario {
            name: "storm",
            key: "storm",
            figures: vec![
                figure(format!("storm: app starts after {STORM_FILES} files in one burst (target 1)"), Lower),
                figure("storm: time to write the burst", Neither),
            ],
            measure: storm,
            devserve_only: false,
            uses_tree: false,
        },
        Scenario {
            name: "idle cost",
            key: "idle",
            figures: vec![
                figure("100k-file tree: time until watching (spawn → probe restarts the app)", Lower),
                figure("100k-file tree: peak RSS of the tool (VmHWM, app excluded)", Lower),
                figure(format!("100k-file tree: tool CPU time over {} s idle", IDLE.as_secs()), Lower),
            ],
            measure: idle_cost,
            devserve_only: false,
            uses_tree: true,
        },
        Scenario {
            name: "hygiene",
            key: "hygiene",
            figures: vec![
                figure(
                    format!("hygiene: devserve VmRSS before → after {} HUP reloads", config.reloads),
                    Neither,
                ),
                figure("hygiene: devserve open fds before → after", Neither),
                figure("hygiene: devserve children before → after", Neither),
                figure("hygiene: HUP → gen ready, median", Neither),
            ],
            measure: hygiene,
            devserve_only: true,
            uses_tree: false,
        },
    ]
}

/// Runs one scenario for every tool; a failure or panic fills that tool's cells with the reason.
fn run_scenario(ctx: &Ctx, scenario: &Scenario) -> Vec<Row> {
    let n = scenario.figures.len();
    let mut columns = Vec::new();
    for tool in Tool::ALL {
        let cells = if scenario.devserve_only && tool != Tool::Devserve {
            vec![Cell::NotApplicable; n]
        } else if let Some(reason) = ctx.unavailable(tool) {
            vec![Cell::Text(reason); n]
        } else {
            eprintln!("[bench] {} · {} …", scenario.name, tool.label());
            let began = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| (scenario.measure)(ctx, tool)));
            let cells = match outcome {
                Ok(Ok(cells)) if cells.len() == n => cells,
                Ok(Ok(_)) => vec![Cell::Failed("wrong number of figures (bench bug)".into()); n],
                Ok(Err(reason)) => vec![Cell::Failed(reason); n],
                Err(panic) => vec![Cell::Failed(panic_text(&panic)); n],
            };
            let summary: Vec<String> = cells.iter().map(Cell::render).collect();
            eprintln!("[bench]   {} ({:.1}s)", summary.join(" | "), began.elapsed().as_secs_f64());
            cells
        };
        columns.push(cells);
    }
    let rows = scenario.figures.iter().enumerate();
    rows.map(|(i, fig)| Row {
        label: fig.label.clone(),
        better: fig.better,
        cells: columns.iter().map(|cells| cells[i].clone()).collect(),
    })
    .collect()
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
    format!("panic: {}", text.unwrap_or_default())
}

/// devserve's value over the best (lowest) peer's, for figures where lower is better.
fn ratio(row: &Row) -> String {
    let Some(ours) = row.cells[0].number() else {
        return "–".into();
    };
    let peers = Tool::ALL.iter().zip(&row.cells).skip(1);
    let numbers = peers.filter_map(|(tool, cell)| Some((tool.label(), cell.number()?)));
    let best = match row.better {
        Better::Neither => None,
        Better::Lower => numbers.min_by(|a, b| a.1.total_cmp(&b.1)),
    };
    let Some((peer, best)) = best else {
        return "–".into();
    };
    if best != 0.0 {
        format!("{:.2}× ({peer})", ours / best)
    } else if ours == 0.0 {
        "equal (0)".into()
    } else {
        format!("– ({peer}: 0)")
    }
}

fn render_report(ctx: &Ctx, rows: &[Row], took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Results\n");
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(out, "- Command: `{}`", ctx.config.command());
    let _ = writeln!(out, "- watchexec: {}", Bins::version(&ctx.bins.watchexec));
    let _ = writeln!(out, "- systemfd: {}", Bins::version(&ctx.bins.systemfd));
    let _ = writeln!(out, "- Total run time: {:.1} min\n", took.as_secs_f64() / 60.0);
    let mut header: Vec<&str> = vec!["figure"];
    header.extend(Tool::ALL.map(Tool::label));
    header.push("devserve ÷ best peer");
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let mut cells = vec![row.label.clone()];
        cells.extend(row.cells.iter().map(Cell::render));
        cells.push(ratio(row));
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|").replace('\n', " ")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

fn machine() -> String {
    let uname = Command::new("uname").arg("-srm").output();
    let uname = uname.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.strip_prefix("model name")?.split_once(':'));
    let model = model.map(|(_, m)| m.trim().to_string()).unwrap_or_else(|| "unknown CPU".into());
    let cpus = thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{uname}, {model}, nproc {cpus}")
}

// ---------------------------------------------------------------------------------------------
// Statistics and parsing
// ---------------------------------------------------------------------------------------------

/// Nearest-rank percentile of sorted `values`.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

fn secs(d: Duration) -> String {
    format!("{:.0} s", d.as_secs_f64())
}

/// devserve's durations: `212ms`, `1.52s`, `2m05s`.
fn parse_duration(text: &str) -> Option<Duration> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    let text = text.strip_suffix('s')?;
    if let Some((minutes, seconds)) = text.split_once('m') {
        return Some(Duration::from_secs(minutes.parse::<u64>().ok()? * 60 + seconds.parse::<u64>().ok()?));
    }
    text.parse().ok().map(Duration::from_secs_f64)
}

/// The start phase of `[devserve] gen 4 ready in 212ms (debounce 50ms, start 32ms) · …`.
fn ready_line_start(line: &str) -> Option<Duration> {
    let (_, rest) = line.split_once(" ready in ")?;
    let (_, phases) = rest.split_once(" (")?;
    let (phases, _) = phases.split_once(')')?;
    phases.split(", ").find_map(|phase| parse_duration(phase.strip_prefix("start ")?))
}

fn is_ready_line(line: &str) -> bool {
    line.starts_with("[devserve] gen ") && line.contains(" ready in ")
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// 1. Save → first response with the new version, for `BENCH_SAVES` saves 300 ms apart.
fn fresh_latency(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = Scratch::new("fresh", tool)?;
    let mut run = Running::start(ctx, tool, &scratch.dir)?;
    let mut latencies = Vec::new();
    let mut starts = Vec::new();
    for n in 1..=ctx.config.saves {
        thread::sleep(SAVE_GAP);
        let version = format!("v{n}");
        let mark = run.log.len();
        let written = write_version(&scratch.dir, &version)?;
        let served = poll_for_version(run.port, &version, SAVE_TIMEOUT)?;
        latencies.push(served - written);
        if tool == Tool::Devserve {
            let (_, _, line) = run.wait_line(mark, SAVE_TIMEOUT, "`gen N ready` line", &is_ready_line)?;
            starts.push(ready_line_start(&line).ok_or_else(|| format!("cannot parse {line:?}"))?);
        }
    }
    run.stop();
    let overheads = latencies.iter().zip(&starts).map(|(latency, start)| {
        (latency.as_secs_f64() - DEBOUNCE.as_secs_f64() - start.as_secs_f64()) * 1000.0
    });
    let mut overheads: Vec<f64> = overheads.collect();
    overheads.sort_by(f64::total_cmp);
    latencies.sort();
    let overhead = match percentile(&overheads, 50.0) {
        Some(ms) if tool == Tool::Devserve => Cell::Num(ms, Unit::Ms),
        _ => Cell::NotApplicable,
    };
    Ok(vec![
        percentile(&latencies, 50.0).map_or(Cell::NotApplicable, Cell::ms),
        percentile(&latencies, 90.0).map_or(Cell::NotApplicable, Cell::ms),
        overhead,
    ])
}

/// Outcomes of the load clients.
#[derive(Default)]
struct Tally {
    ok: Vec<Duration>,
    refused: u64,
    reset: u64,
    timed_out: u64,
    other: u64,
    other_example: Option<String>,
}

impl Tally {
    fn add(&mut self, outcome: Outcome, took: Duration) {
        match outcome {
            Outcome::Ok(_) => self.ok.push(took),
            Outcome::Refused => self.refused += 1,
            Outcome::Reset => self.reset += 1,
            Outcome::TimedOut => self.timed_out += 1,
            Outcome::Other(what) => {
                self.other += 1;
                self.other_example.get_or_insert(what);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok.extend(other.ok);
        self.refused += other.refused;
        self.reset += other.reset;
        self.timed_out += other.timed_out;
        self.other += other.other;
        if self.other_example.is_none() {
            self.other_example = other.other_example;
        }
    }
}

/// One load client: `GET /` on a new connection each time until `until`.
fn load_client(port: u16, until: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let began = Instant::now();
        let outcome = http_get(port, REQUEST_TIMEOUT);
        let failed = !matches!(outcome, Outcome::Ok(_));
        tally.add(outcome, began.elapsed());
        if failed {
            thread::sleep(RETRY_PAUSE);
        }
    }
    tally
}

/// 2. Two clients hammer `GET /` for `BENCH_LOAD_SECS` while a new version is saved every second.
fn load(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = Scratch::new("load", tool)?;
    let mut run = Running::start(ctx, tool, &scratch.dir)?;
    let port = run.port;
    let mark = run.log.len();
    let began = Instant::now();
    let until = began + Duration::from_secs(ctx.config.load_secs);
    let clients: Vec<_> = (0..2).map(|_| thread::spawn(move || load_client(port, until))).collect();
    let mut saving = Ok(());
    for second in 1..ctx.config.load_secs {
        thread::sleep((began + Duration::from_secs(second)).saturating_duration_since(Instant::now()));
        saving = saving.and(write_version(&scratch.dir, &format!("load{second}")).map(drop));
    }
    let mut tally = Tally::default();
    for client in clients {
        tally.merge(client.join().map_err(|_| "a load client panicked".to_string())?);
    }
    saving?;
    run.check_alive()?;
    let app_starts = run.log.times(mark, &is_app_start).len();
    run.stop();
    if let Some(example) = &tally.other_example {
        eprintln!("[bench]   {}: {} other errors, e.g. {example}", tool.label(), tally.other);
    }
    tally.ok.sort();
    let latency = |p| percentile(&tally.ok, p).map_or(Cell::NotApplicable, Cell::ms);
    Ok(vec![
        Cell::count(tally.ok.len() as u64),
        Cell::count(tally.refused),
        Cell::count(tally.reset),
        Cell::count(tally.timed_out),
        Cell::count(tally.other),
        latency(50.0),
        latency(99.0),
        latency(100.0),
        Cell::count(app_starts as u64),
    ])
}

/// 3. 5,000 small files in one burst: how many app starts follow.
fn storm(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = Scratch::new("storm", tool)?;
    let mut run = Running::start(ctx, tool, &scratch.dir)?;
    thread::sleep(SAVE_GAP);
    let mark = run.log.len();
    let began = Instant::now();
    for dir in 0..STORM_DIRS {
        let dir = scratch.dir.join(format!("storm{dir}"));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for file in 0..STORM_FILES / STORM_DIRS {
            std::fs::write(dir.join(format!("f{file}.txt")), b"storm\n")
                .map_err(|e| format!("write: {e}"))?;
        }
    }
    let burst = began.elapsed();
    let mut last_change = Instant::now();
    let mut seen = 0;
    while last_change.elapsed() < STORM_QUIET && began.elapsed() < STORM_LIMIT {
        thread::sleep(Duration::from_millis(20));
        run.check_alive()?;
        let starts = run.log.times(mark, &is_app_start).len();
        if starts != seen {
            seen = starts;
            last_change = Instant::now();
        }
    }
    if !matches!(http_get(run.port, REQUEST_TIMEOUT), Outcome::Ok(_)) {
        return Err(format!("not serving after the storm ({} starts)", seen));
    }
    run.stop();
    Ok(vec![Cell::count(seen as u64), Cell::ms(burst)])
}

/// 4. Watching a 100,000-file tree: time until a change is seen, peak RSS, idle CPU.
fn idle_cost(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let tree = ctx.tree.get_or_init(Tree::create).as_ref().map_err(Clone::clone)?;
    let _ = std::fs::remove_file(&tree.probe);
    let result = measure_idle(ctx, tool, tree);
    let _ = std::fs::remove_file(&tree.probe);
    result
}

fn measure_idle(ctx: &Ctx, tool: Tool, tree: &Tree) -> Result<Vec<Cell>, String> {
    let mut run = Running::spawn(ctx, tool, &tree.root, free_port()?)?;
    // (a) Probe every 50 ms until the app starts a second time.
    let mut probes = 0u32;
    let watching = loop {
        if let Some(second) = run.log.times(0, &is_app_start).get(1) {
            break *second - run.spawned;
        }
        run.check_alive()?;
        if run.spawned.elapsed() > WATCH_LIMIT {
            return Err(format!("no restart within {} of probing", secs(WATCH_LIMIT)));
        }
        probes += 1;
        std::fs::write(&tree.probe, format!("{probes}\n")).map_err(|e| format!("cannot probe: {e}"))?;
        thread::sleep(PROBE_EVERY);
    };
    // Let restarts from the last probes settle: 1 s without a new app start (at most 10 s).
    let settle = Instant::now();
    let mut starts = run.log.times(0, &is_app_start);
    while starts.last().is_some_and(|t| t.elapsed() < Duration::from_secs(1)) && settle.elapsed() < IDLE {
        thread::sleep(Duration::from_millis(50));
        starts = run.log.times(0, &is_app_start);
    }
    // (b), (c) over 10 s of idle.
    let pids = run.own_pids(&ctx.bins.fixture);
    let ticks = |pids: &[i32]| pids.iter().filter_map(|&pid| cpu_ticks(pid)).sum::<u64>();
    let before = ticks(&pids);
    thread::sleep(IDLE);
    run.check_alive()?;
    let cpu = (ticks(&pids) - before) as f64 / clock_ticks_per_sec() * 1000.0;
    let hwm_kib: u64 = pids.iter().filter_map(|&pid| status_kib(pid, "VmHWM")).sum();
    eprintln!("[bench]   {} processes measured: {pids:?}, {probes} probes", tool.label());
    run.stop();
    Ok(vec![Cell::ms(watching), Cell::Num(hwm_kib as f64 / 1024.0, Unit::MiB), Cell::Num(cpu, Unit::Ms)])
}

/// RSS, open fds and children of devserve.
struct Footprint {
    rss_kib: u64,
    fds: usize,
    children: usize,
}

impl Footprint {
    fn of(pid: i32) -> Result<Footprint, String> {
        Ok(Footprint {
            rss_kib: status_kib(pid, "VmRSS").ok_or("cannot read VmRSS")?,
            fds: fd_count(pid).ok_or("cannot list /proc/PID/fd")?,
            children: children(pid).len(),
        })
    }
}

/// 5. devserve only: footprint before and after `BENCH_RELOADS` HUP reloads.
fn hygiene(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = Scratch::new("hygiene", tool)?;
    let mut run = Running::start(ctx, tool, &scratch.dir)?;
    let pid = run.pid();
    run.wait_line(0, START_TIMEOUT, "gen 1 ready", &|line| line.starts_with("[devserve] gen 1 ready"))?;
    thread::sleep(SAVE_GAP);
    let before = Footprint::of(pid)?;
    let mut reloads = Vec::new();
    let last = ctx.config.reloads + 1;
    for generation in 2..=last {
        let mark = run.log.len();
        let sent = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| format!("cannot send SIGHUP: {e}"))?;
        let ready = format!("[devserve] gen {generation} ready in ");
        let (_, at, _) = run.wait_line(mark, SAVE_TIMEOUT, &ready, &|line| line.starts_with(&ready))?;
        reloads.push(at - sent);
    }
    let stopped = format!("[devserve] gen {} stopped", last - 1);
    run.wait_line(0, SAVE_TIMEOUT, &stopped, &|line| line == stopped)?;
    thread::sleep(SAVE_GAP);
    let after = Footprint::of(pid)?;
    run.stop();
    reloads.sort();
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(vec![
        Cell::Text(format!("{:.1} → {:.1} MiB", mib(before.rss_kib), mib(after.rss_kib))),
        Cell::Text(format!("{} → {}", before.fds, after.fds)),
        Cell::Text(format!("{} → {}", before.children, after.children)),
        percentile(&reloads, 50.0).map_or(Cell::NotApplicable, Cell::ms),
    ])
}
