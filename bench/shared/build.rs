//! The release build of `devserve` and the `fixture-app` example, and finding programs.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `$CARGO_TARGET_DIR` (relative to `root`), else `root/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// `$CARGO`, else `cargo`.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `cargo build --release --bin devserve --example fixture-app` (its stdout goes to stderr: stdout
/// is the report's).
pub fn build_release(root: &Path) -> Result<(), String> {
    let status = Command::new(cargo())
        .args(["build", "--release", "--bin", "devserve", "--example", "fixture-app"])
        .current_dir(root)
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("release build failed ({status})")) }
}

/// The release build of [`build_release`], or the bench's end with the reason: the path of the
/// devserve it built.
pub fn release_devserve_or_exit(root: &Path) -> PathBuf {
    eprintln!("[bench] building devserve in release");
    if let Err(e) = build_release(root) {
        eprintln!("[bench] {e}");
        std::process::exit(1);
    }
    target_dir(root).join("release/devserve")
}

/// The first executable `name` in a folder of `PATH`, then of `also`.
pub fn find_on_path(name: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(also.iter().map(PathBuf::from));
    dirs.map(|dir| dir.join(name)).find(|file| is_executable(file))
}

/// A plain file with an executable bit.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
