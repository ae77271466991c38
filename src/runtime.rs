//! devserve's private runtime directory, and how another devserve finds it by pid.
//!
//! Contract:
//! - Each run creates one directory, mode 0700, with a fresh unpredictable name
//!   (`devserve-PID-RANDOM`, created with `mkdir`, retried on EEXIST like `mkdtemp`), so a name
//!   planted by another user is never used. It holds the generations' notify sockets and the
//!   status table, and is removed at exit (by the sentinel if devserve is killed).
//! - The parent is the first of `$XDG_RUNTIME_DIR`, `$TMPDIR`, `/tmp` in which the longest socket
//!   path devserve will bind fits a Unix socket address (108 bytes on Linux). When none does,
//!   the start fails with one line naming the fix.
//! - devserve keeps the directory open for its whole life, so `devserve --signal status` finds it
//!   through `/proc/PID/fd`, whatever the client's own `TMPDIR`.
//! - [`is_devserve`] tells whether a pid is a devserve, before anything signals it.

use std::ffi::OsStr;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Room in `sockaddr_un.sun_path`, the terminating NUL included.
const SUN_PATH_LEN: usize = 108;
/// The longest name devserve binds inside the directory.
const LONGEST_ENTRY: &str = "notify-18446744073709551615.sock";
/// How the directory's name starts, before the pid.
const PREFIX: &str = "devserve-";

/// Why no runtime directory could be made. Displayed as one line with the fix.
#[derive(Debug)]
pub enum RuntimeError {
    /// No candidate parent leaves room for a socket path.
    TooLong {
        tried: Vec<PathBuf>,
    },
    Create {
        parent: PathBuf,
        error: io::Error,
    },
    Open {
        path: PathBuf,
        error: io::Error,
    },
    /// 100 fresh names were all taken.
    Exhausted {
        parent: PathBuf,
    },
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::TooLong { tried } => {
                let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "no runtime directory with a path short enough for a Unix socket (tried {}); set TMPDIR \
                     to a short path such as /tmp",
                    tried.join(", ")
                )
            }
            RuntimeError::Create { parent, error } => {
                write!(f, "cannot create a runtime directory in {}: {error}", parent.display())
            }
            RuntimeError::Open { path, error } => write!(f, "cannot open {}: {error}", path.display()),
            RuntimeError::Exhausted { parent } => {
                write!(
                    f,
                    "cannot create a runtime directory in {}: every name tried exists",
                    parent.display()
                )
            }
        }
    }
}

impl std::error::Error for RuntimeError {}

/// The directory, open for as long as this value lives; removed by [`RuntimeDir::remove`].
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
    /// Held open so that `/proc/PID/fd` names the directory (closed at removal).
    handle: Option<File>,
}

impl RuntimeDir {
    /// Creates this process's directory in the first candidate parent where socket paths fit.
    pub fn create() -> Result<RuntimeDir, RuntimeError> {
        let candidates = candidate_parents();
        let pid = std::process::id();
        let Some(parent) = candidates.iter().find(|p| fits(p, pid)) else {
            return Err(RuntimeError::TooLong { tried: candidates });
        };
        for _ in 0..100 {
            let path = parent.join(format!("{PREFIX}{pid}-{:08x}", random_u64() as u32));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return match File::open(&path) {
                        Ok(handle) => Ok(RuntimeDir { path, handle: Some(handle) }),
                        Err(error) => {
                            let _ = std::fs::remove_dir(&path);
                            Err(RuntimeError::Open { path, error })
                        }
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(RuntimeError::Create { parent: parent.clone(), error }),
            }
        }
        Err(RuntimeError::Exhausted { parent: parent.clone() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and what is in it (also done on drop). Its own fd is closed first,
    /// and an empty directory is removed even when no fd is left to list it (EMFILE).
    pub fn remove(&mut self) {
        self.handle = None;
        if std::fs::remove_dir_all(&self.path).is_err() {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `$XDG_RUNTIME_DIR`, `$TMPDIR`, `/tmp`: the absolute ones that are directories, in that order.
fn candidate_parents() -> Vec<PathBuf> {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut parents: Vec<PathBuf> = Vec::new();
    for candidate in
        [from_env("XDG_RUNTIME_DIR"), from_env("TMPDIR"), Some(PathBuf::from("/tmp"))].into_iter().flatten()
    {
        if candidate.is_absolute() && candidate.is_dir() && !parents.contains(&candidate) {
            parents.push(candidate);
        }
    }
    parents
}

/// Whether the longest socket path in a directory under `parent` fits a socket address.
fn fits(parent: &Path, pid: u32) -> bool {
    let dir_name = format!("{PREFIX}{pid}-{:08x}", u32::MAX);
    let longest = parent.join(dir_name).join(LONGEST_ENTRY);
    longest.as_os_str().len() < SUN_PATH_LEN
}

/// The runtime directory of the devserve with process id `pid`, found through the directory it
/// holds open. `None` when the process is gone, is not a devserve, or `/proc` is not readable.
pub fn find(pid: u32) -> Option<PathBuf> {
    let wanted = format!("{PREFIX}{pid}-");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.filter_map(Result::ok).filter_map(|fd| std::fs::read_link(fd.path()).ok()).find(|target| {
        target.file_name().and_then(OsStr::to_str).is_some_and(|name| name.starts_with(&wanted))
            && target.is_dir()
    })
}

/// Whether `pid` runs devserve: its executable is named `devserve` (or is this very binary), or
/// it holds a devserve runtime directory. Pid 1, kernel threads and unrelated programs are not.
pub fn is_devserve(pid: u32) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return find(pid).is_some();
    };
    let name = exe.file_name().and_then(OsStr::to_str).unwrap_or_default();
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    let own = std::env::current_exe().ok();
    name == "devserve" || own.is_some_and(|own| own == exe) || find(pid).is_some()
}

/// 64 unpredictable bits, from the standard library's randomly keyed hasher (no extra crate).
pub fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_too_long_for_a_socket_path_is_skipped() {
        assert!(fits(Path::new("/tmp"), 4_194_304));
        let long = PathBuf::from(format!("/{}", "x".repeat(60)));
        assert!(!fits(&long, 4_194_304));
    }

    #[test]
    fn the_directory_is_private_fresh_and_found_by_pid() {
        use std::os::unix::fs::PermissionsExt;
        let mut first = RuntimeDir::create().expect("runtime dir");
        let second = RuntimeDir::create().expect("another one");
        assert_ne!(first.path(), second.path(), "a fresh name each time");
        let mode = std::fs::metadata(first.path()).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let found = find(std::process::id()).expect("found through /proc");
        assert!(found == first.path() || found == second.path(), "{found:?}");
        let (first_path, second_path) = (first.path().to_path_buf(), second.path().to_path_buf());
        first.remove();
        assert!(!first_path.exists());
        drop(second);
        assert!(!second_path.exists(), "dropping removes it too");
    }

    #[test]
    fn init_is_not_a_devserve() {
        assert!(!is_devserve(1));
        assert_ne!(random_u64(), random_u64());
    }
}
