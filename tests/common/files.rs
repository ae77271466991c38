//! Temporary directories that are removed at the end of the test, and file writes.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty, canonical directory under the temp dir, removed (with everything in it) when
/// dropped, even when the test fails. It derefs to [`Path`], so `dir.join(…)` and `&dir` work.
///
/// Declare it before the [`Devserve`](crate::common::Devserve) that runs in it: locals drop in
/// reverse order, so devserve is stopped first. `DEVSERVE_TEST_KEEP=1` keeps every directory
/// (and prints where it is) for a post-mortem.
pub struct TempDir {
    path: PathBuf,
}

/// A new [`TempDir`] named after `name`, unique to this call.
pub fn temp_dir(name: &str) -> TempDir {
    TempDir::new(name)
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("devserve-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir { path: dir.canonicalize().expect("canonical temp dir") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("DEVSERVE_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.path.display());
            return;
        }
        // A worker killed a moment ago may still be closing files in it, and a test may have
        // left a folder unreadable: make everything writable again and retry a few times.
        for _ in 0..20 {
            match std::fs::remove_dir_all(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    make_writable(&self.path);
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                _ => return,
            }
        }
        eprintln!("cannot remove {}", self.path.display());
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        make_writable(&entry.path());
    }
}

/// Writes `text` to `path`, creating its parent folders.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write file");
}
