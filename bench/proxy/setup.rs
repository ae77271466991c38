//! What the bench runs: devserve and the fixture app built in release, and the tools it measures
//! against or with: `nginx` and `wrk` (Debian packages, installed with `apt-get` when missing),
//! `python3`, and uvicorn and Django (installed with `pip` when missing). A tool that cannot be had
//! is `Err(why)`, and the figures that need it say so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::try_run;
use crate::config::{ClientKind, Config};
use crate::shared::build;

/// The programs the bench runs.
pub struct Tools {
    pub devserve: PathBuf,
    pub fixture: PathBuf,
    pub nginx: Result<PathBuf, String>,
    pub wrk: Result<PathBuf, String>,
    /// The `python3` that has uvicorn.
    pub uvicorn: Result<PathBuf, String>,
    /// `python3` (runs `tests/apps/two_writes.py`).
    pub python: Result<PathBuf, String>,
    /// The `python3` that has Django.
    pub django: Result<PathBuf, String>,
}

impl Tools {
    /// Finds the tools the parts `config` selects need, installing the missing ones.
    pub fn find(target: &Path, config: &Config) -> Tools {
        let release = target.join("release");
        let fixture = release.join("examples/fixture-app");
        let (throughput, swaps) = (config.selected("throughput"), config.selected("swaps"));
        let two_writes = config.selected("two-writes");
        let wrk = throughput && config.client == ClientKind::Wrk;
        let not_needed = || Err("not needed by the selected parts".to_owned());
        let python = || find_on_path("python3").ok_or_else(|| "no python3 on PATH".to_owned());
        Tools {
            devserve: release.join("devserve"),
            fixture: fixture.canonicalize().unwrap_or(fixture),
            nginx: if throughput || two_writes || config.selected("https") {
                debian_tool("nginx", "nginx")
            } else {
                not_needed()
            },
            wrk: if wrk { debian_tool("wrk", "wrk") } else { not_needed() },
            uvicorn: if swaps { python_with("uvicorn", "uvicorn") } else { not_needed() },
            python: if two_writes { python() } else { not_needed() },
            django: if two_writes { python_with("django", "django") } else { not_needed() },
        }
    }
}

/// First line of `program args…` (stdout, else stderr: nginx prints its version on stderr).
pub fn version_line(program: &Result<PathBuf, String>, args: &[&str]) -> String {
    let Ok(path) = program else {
        return "not used".into();
    };
    let Ok(out) = try_run(Command::new(path).args(args)) else {
        return format!("? ({})", path.display());
    };
    let text = if out.stdout.trim().is_empty() { out.stderr } else { out.stdout };
    let first = text.lines().next().unwrap_or("?");
    // wrk's line goes on with its copyright.
    let first = first.split(" Copyright").next().unwrap_or(first).trim();
    format!("{first} ({})", path.display())
}

/// `program` from `PATH`, or Debian's `package` installed with `apt-get install -y` (once more after
/// an `apt-get update` if the first try fails).
fn debian_tool(program: &str, package: &str) -> Result<PathBuf, String> {
    if let Some(path) = find_on_path(program) {
        return Ok(path);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!("no {program} on PATH, and not root to `apt-get install -y {package}`"));
    }
    if find_on_path("apt-get").is_none() {
        return Err(format!("no {program} on PATH, and no apt-get to install it"));
    }
    let nginx_before = system_nginx_pid();
    eprintln!("[bench] {program} missing: running `apt-get install -y {package}`");
    let mut installed = apt_get(&["install", "-y", "-q", package]);
    if installed.is_err() {
        eprintln!("[bench] apt-get install failed; running `apt-get update` and trying once more");
        installed = apt_get(&["update", "-q"]).and_then(|()| apt_get(&["install", "-y", "-q", package]));
    }
    if package == "nginx" {
        stop_started_service(nginx_before);
    }
    installed.map_err(|e| format!("no {program}: `apt-get install -y {package}` failed ({e})"))?;
    find_on_path(program).ok_or_else(|| format!("no {program} on PATH even after installing {package}"))
}

fn apt_get(args: &[&str]) -> Result<(), String> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(std::io::stderr()) // stdout is the report's
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if status.success() { Ok(()) } else { Err(status.to_string()) }
}

/// The pid of a system nginx (`/run/nginx.pid`) if one runs.
fn system_nginx_pid() -> Option<i32> {
    let text = std::fs::read_to_string("/run/nginx.pid").ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    crate::common::is_alive(pid).then_some(pid)
}

/// Where the package's own scripts started the system nginx service (on port 80) during the
/// install, stops it again: the bench runs its own nginx and leaves nothing running.
fn stop_started_service(before: Option<i32>) {
    let Some(pid) = system_nginx_pid() else { return };
    if before == Some(pid) {
        return;
    }
    eprintln!("[bench] the nginx package started the system service (pid {pid}); stopping it");
    let _ = Command::new("nginx").args(["-s", "quit"]).stdout(std::io::stderr()).status();
}

/// A `python3` that can import `module`, after `python3 -m pip install PACKAGE` if needed.
fn python_with(module: &str, package: &str) -> Result<PathBuf, String> {
    let python = find_on_path("python3").ok_or("no python3 on PATH")?;
    let has_it = || {
        let out = try_run(Command::new(&python).args(["-c", &format!("import {module}")]));
        out.is_ok_and(|o| o.status.success())
    };
    if has_it() {
        return Ok(python);
    }
    eprintln!("[bench] {module} missing: running `python3 -m pip install {package}`");
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "-q", package])
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !status.success() {
        return Err(format!("no {module}: `python3 -m pip install {package}` failed ({status})"));
    }
    if has_it() { Ok(python) } else { Err(format!("no {module}: installed, but `import {module}` fails")) }
}

/// `name` on `PATH`, or in the `sbin` folders a non-root `PATH` may lack (where nginx lives).
fn find_on_path(name: &str) -> Option<PathBuf> {
    build::find_on_path(name, &["/usr/sbin", "/usr/bin", "/sbin"])
}
