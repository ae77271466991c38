//! The programs being measured: devserve and the fixture app built in release, and the peers
//! (`watchexec`, `systemfd`), found on `PATH` or in `DEVSERVE_BENCH_PEERS`, or installed there.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::try_run;

pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

pub fn build_release(root: &Path) -> Result<(), String> {
    let status = Command::new(cargo())
        .args(["build", "--release", "--bin", "devserve", "--example", "fixture-app"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("release build failed ({status})")) }
}

/// The programs being measured. A peer is `Err(why)` when it cannot be found or installed.
pub struct Bins {
    pub devserve: PathBuf,
    pub fixture: PathBuf,
    pub watchexec: Result<PathBuf, String>,
    pub systemfd: Result<PathBuf, String>,
}

impl Bins {
    pub fn find(root: &Path, target: &Path) -> Bins {
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

    /// The first line of `PEER --version`, and where the peer is.
    pub fn version(path: &Result<PathBuf, String>) -> String {
        let path = match path {
            Ok(path) => path,
            Err(why) => return why.clone(),
        };
        let out = try_run(Command::new(path).arg("--version"));
        let first = out.map(|o| o.stdout.lines().next().unwrap_or("").to_string());
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
