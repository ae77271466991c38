//! The programs being measured: devserve and the fixture app built in release (the build is
//! `shared/build.rs`), and the peers (`watchexec`, `systemfd`), found on `PATH` or in
//! `DEVSERVE_BENCH_PEERS`, or installed there.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::try_run;
use crate::shared::build::{cargo, find_on_path, is_executable};

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
        let locate = |name: &str| {
            find_on_path(name, &[]).or_else(|| Some(peers_bin.join(name)).filter(|path| is_executable(path)))
        };
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
