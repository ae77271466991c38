//! Starting a child process: fork, a few async-signal-safe steps, execve.
//!
//! Why not `std::process::Command`: a worker must see `LISTEN_PID` equal to its *own* pid, which
//! exists only after `fork`. std builds the environment block before forking and installs it
//! itself after the `pre_exec` hook, so the hook can neither allocate (forbidden after `fork` in a
//! threaded program) nor change the block std will use. So this module builds everything before
//! forking — the resolved program path, argv, an envp whose `LISTEN_PID=` (and, for a worker with
//! a watchdog, `WATCHDOG_PID=`) entry has a fixed-width slot, the fd plan — and the child only
//! writes its pid's digits into those slots.
//!
//! Every child, worker or build:
//! - leads a new process group (so its whole tree can be signalled, and a terminal's Ctrl-C
//!   reaches devserve only, which then stops it);
//! - gets PR_SET_PDEATHSIG=SIGKILL (Linux), re-checked with `getppid` against the fork race;
//!   grandchildren are covered by the `sentinel`;
//! - has stdin on /dev/null (a background process group reading the terminal would be stopped),
//!   stdout and stderr shared with devserve so its output passes through unaltered — except a
//!   `--accept=stdio` connection's process, whose stdin and stdout are its connection;
//! - gets the held sockets at fds 3, 4, … without FD_CLOEXEC, and nothing else: every other fd
//!   above them is marked close-on-exec (close_range), whatever its origin;
//! - gets devserve's environment minus its own activation variables (LISTEN_*, NOTIFY_SOCKET,
//!   DEVSERVE_*), with the variables set for it replacing any of the same name;
//! - has SIGPIPE back at its default (the Rust runtime ignores it, and ignoring survives exec)
//!   and an empty signal mask.
//!
//! Exec failures travel back over a close-on-exec pipe, as std does, so `spawn` reports
//! "not found" or "permission denied" synchronously instead of a mysterious exit 127.
//!
//! A file open for writing in devserve is inherited by a child forked meanwhile (by another
//! thread: the `--accept` acceptors start processes while the supervisor copies a build's
//! program), until that child execs; executing the file in that moment fails with ETXTBSY ("Text
//! file busy"). So forks hold [`FORK_LOCK`] shared until the child has exec'd, and
//! [`write_executable`] holds it exclusively: an executable devserve writes is never open in a
//! child (Go's `syscall.ForkLock` serves the same purpose).

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock};

use nix::unistd::Pid;

/// Held shared from a fork until its child has exec'd, exclusively while devserve writes a file
/// it will execute (see the module's doc).
static FORK_LOCK: RwLock<()> = RwLock::new(());

/// Runs `write`, which creates or writes a file devserve will execute, while no child is between
/// fork and exec, so no child holds that file open for writing when it is executed.
pub fn write_executable<T>(write: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let _exclusive = FORK_LOCK.write().unwrap_or_else(PoisonError::into_inner);
    write()
}

/// Environment variables that describe devserve's own activation; never inherited by children.
pub const ACTIVATION_VARS: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "DEVSERVE_GENERATION",
    "DEVSERVE_WORKER",
    "DEVSERVE_RUN",
    "DEVSERVE_UPGRADE",
    "DEVSERVE_UPGRADE_FDS",
];

/// Room for any pid's digits plus the terminating NUL.
const PID_DIGITS: usize = 21;

/// The soft `RLIMIT_NOFILE` devserve was started with, once [`raise_fd_limit`] raised its own
/// (0: not raised). Children get it back, so an app sees the limit its shell gave it.
static STARTED_WITH_NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Raises devserve's soft limit of open files to the hard limit, as servers do (nginx's
/// `worker_rlimit_nofile`, Go since 1.19): the front door holds two descriptors per proxied
/// request, and the common soft limit of 1024 is a few hundred clients. Workers and builds are
/// started with the soft limit devserve had (see [`Command::spawn`]). Returns the limits before and
/// after, or `None` when nothing was raised (already at the hard limit, or refused).
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    // macOS reports an unlimited hard limit but refuses a soft one above OPEN_MAX (10240 in
    // <sys/syslimits.h>; the libc crate does not carry it).
    #[cfg(target_os = "macos")]
    let hard = hard.min(10240);
    if soft >= hard {
        return None;
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    STARTED_WITH_NOFILE.store(soft, std::sync::atomic::Ordering::Relaxed);
    Some((soft, hard))
}

/// What to run and what to give it.
#[derive(Debug, Clone)]
pub struct Command {
    program: OsString,
    /// The file to execute instead of resolving `program` (a generation's copy of it);
    /// `argv[0]` stays `program`.
    exec_path: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    sockets: Vec<RawFd>,
    listen_pid: bool,
    /// Variables set to the child's own pid (besides `LISTEN_PID`).
    own_pid_vars: Vec<&'static str>,
    /// Where the child's stdout and stderr go instead of devserve's own.
    output: Option<RawFd>,
    /// A connection to give the child as its stdin and stdout (inetd style, `--accept=stdio`).
    stdio: Option<RawFd>,
}

/// Why a child could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// The program is not on PATH or does not exist.
    NotFound(OsString),
    /// The command's program is the empty string.
    Empty,
    /// The program names a directory.
    IsDirectory(OsString),
    /// execve failed, e.g. permission denied or not an executable.
    Exec(OsString, io::Error),
    /// Something before exec failed (fork, pipe, /dev/null).
    Setup(io::Error),
}

impl SpawnError {
    /// True when the command itself is at fault (missing, not executable), not the machine.
    pub fn is_bad_command(&self) -> bool {
        matches!(
            self,
            SpawnError::NotFound(_) | SpawnError::Empty | SpawnError::IsDirectory(_) | SpawnError::Exec(..)
        )
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound(program) => {
                write!(f, "command not found: {}", program.to_string_lossy())
            }
            SpawnError::Empty => write!(f, "empty command: the program name is an empty string"),
            SpawnError::IsDirectory(program) => {
                write!(f, "cannot execute {}: is a directory", program.to_string_lossy())
            }
            SpawnError::Exec(program, e) => {
                write!(f, "cannot execute {}: {}", program.to_string_lossy(), describe(e))
            }
            SpawnError::Setup(e) => write!(f, "cannot start a process: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::ENOEXEC) => "not an executable file".into(),
        Some(libc::ENOENT) => "no such file".into(),
        _ => e.to_string(),
    }
}

impl Command {
    pub fn new(program: impl Into<OsString>) -> Self {
        Command {
            program: program.into(),
            exec_path: None,
            args: Vec::new(),
            env: Vec::new(),
            sockets: Vec::new(),
            listen_pid: false,
            own_pid_vars: Vec::new(),
            output: None,
            stdio: None,
        }
    }

    /// Executes `path` instead of the program as resolved; `argv[0]` is unchanged.
    pub fn exec_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.exec_path = Some(path.into());
        self
    }

    /// The program as given.
    #[cfg(test)]
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The program and its arguments, for the tests' fake process table.
    #[cfg(test)]
    pub fn words(&self) -> Vec<String> {
        std::iter::once(&self.program).chain(&self.args).map(|w| w.to_string_lossy().into_owned()).collect()
    }

    /// The `sh -c SCRIPT` form used for build commands.
    pub fn shell(script: &str) -> Self {
        Command::new("sh").arg("-c").arg(script)
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable for the child; a later value for the same name replaces an earlier one.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        let key = key.into();
        self.env.retain(|(known, _)| *known != key);
        self.own_pid_vars.retain(|name| OsStr::new(name) != key);
        self.env.push((key, value.into()));
        self
    }

    /// Sets `key` to the child's own pid (known only after fork), as `WATCHDOG_PID` must be.
    pub fn own_pid_env(mut self, key: &'static str) -> Self {
        self.env.retain(|(known, _)| known != key);
        self.own_pid_vars.push(key);
        self
    }

    /// Places `fds` at 3, 4, … in the child; with `listen_pid`, `LISTEN_PID` is set to the
    /// child's own pid.
    pub fn sockets(mut self, fds: Vec<RawFd>, listen_pid: bool) -> Self {
        self.sockets = fds;
        self.listen_pid = listen_pid;
        self
    }

    /// Sends the child's stdout and stderr to `fd` (a pipe devserve reads) instead of its own.
    pub fn output_to(mut self, fd: RawFd) -> Self {
        self.output = Some(fd);
        self
    }

    /// Gives the child `fd` (a connected socket) as its stdin and stdout; stderr stays devserve's.
    pub fn stdio(mut self, fd: RawFd) -> Self {
        self.stdio = Some(fd);
        self
    }

    /// Checks that the program can be found, without running it.
    pub fn resolve(&self) -> Result<PathBuf, SpawnError> {
        resolve_program(&self.program)
    }

    /// Forks and execs without waiting for the exec: the pid, and the exec report to read with
    /// [`exec_failure`] once the child has exited. For a process per connection, where waiting
    /// for each exec would serialise every start behind the one before.
    pub fn spawn_unconfirmed(&self) -> Result<(Pid, File), SpawnError> {
        Plan::new(self)?.fork(true).map_err(|e| match e {
            ChildError::Exec(e) => SpawnError::Exec(self.program.clone(), e),
            ChildError::Setup(e) => SpawnError::Setup(e),
        })
    }

    /// Forks and execs; returns the child's pid once exec has succeeded.
    pub fn spawn(&self) -> Result<Pid, SpawnError> {
        let plan = Plan::new(self)?;
        plan.fork_exec().map_err(|e| match e {
            ChildError::Exec(e) => SpawnError::Exec(self.program.clone(), e),
            ChildError::Setup(e) => SpawnError::Setup(e),
        })
    }
}

/// How a child started with [`Command::spawn_unconfirmed`] went at exec: read once it has exited
/// (the report is complete then). `Some`: exec failed, and why; the child exited with 127.
pub fn exec_failure(report: File, program: &OsStr) -> Option<SpawnError> {
    match read_exec_report(report) {
        Ok(ExecReport::Failed(e)) => Some(SpawnError::Exec(program.to_owned(), e)),
        Ok(ExecReport::Started) | Err(_) => None,
    }
}

fn resolve_program(program: &OsStr) -> Result<PathBuf, SpawnError> {
    if program.is_empty() {
        return Err(SpawnError::Empty);
    }
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(SpawnError::IsDirectory(program.into())),
            Ok(_) => Ok(path),
            Err(_) => Err(SpawnError::NotFound(program.into())),
        };
    }
    which::which(program).map_err(|_| SpawnError::NotFound(program.into()))
}

fn c_string(bytes: &[u8]) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| {
        SpawnError::Setup(io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
    })
}

/// Everything the child needs, allocated before `fork`.
struct Plan {
    program: CString,
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the strings `envp_ptrs` points into, the own-pid slots among them.
    env: Vec<Vec<u8>>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// The entries of `env` whose value the child fills with its pid: (index, length of `NAME=`).
    pid_slots: Vec<(usize, usize)>,
    sockets: Vec<RawFd>,
    /// Scratch space for the child's temporary socket dups (no allocation after fork).
    scratch: Vec<RawFd>,
    /// One past the highest fd the child may hold (RLIMIT_NOFILE), for the close_range fallback.
    max_fd: RawFd,
    dev_null: File,
    output: Option<RawFd>,
    stdio: Option<RawFd>,
    /// The open-files limit to give the child back (see [`raise_fd_limit`]).
    nofile: Option<libc::rlimit>,
}

enum ChildError {
    Exec(io::Error),
    Setup(io::Error),
}

impl Plan {
    fn new(command: &Command) -> Result<Plan, SpawnError> {
        let resolved = match &command.exec_path {
            Some(path) => path.clone(),
            None => resolve_program(&command.program)?,
        };
        let program = c_string(resolved.as_os_str().as_bytes())?;
        let argv = std::iter::once(&command.program)
            .chain(&command.args)
            .map(|a| c_string(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        // Variables set for the child replace devserve's own of the same name: one entry each.
        let overridden: Vec<&OsStr> = command.env.iter().map(|(key, _)| key.as_os_str()).collect();
        let mut env: Vec<Vec<u8>> = std::env::vars_os()
            .filter(|(key, _)| !ACTIVATION_VARS.iter().any(|v| OsStr::new(v) == key))
            .filter(|(key, _)| !overridden.contains(&key.as_os_str()))
            .map(|(key, value)| env_entry(&key, &value))
            .collect();
        env.extend(command.env.iter().map(|(key, value)| env_entry(key, value)));
        let listen_pid = (command.listen_pid && !command.sockets.is_empty()).then_some("LISTEN_PID");
        let mut pid_slots = Vec::new();
        for name in listen_pid.into_iter().chain(command.own_pid_vars.iter().copied()) {
            let mut slot = format!("{name}=").into_bytes();
            let prefix = slot.len();
            slot.resize(prefix + PID_DIGITS, 0);
            env.push(slot);
            pid_slots.push((env.len() - 1, prefix));
        }
        let dev_null = File::open("/dev/null").map_err(SpawnError::Setup)?;
        let mut plan = Plan {
            program,
            argv_ptrs: Vec::new(),
            _argv: argv,
            envp_ptrs: Vec::new(),
            env,
            pid_slots,
            sockets: command.sockets.clone(),
            scratch: vec![-1; command.sockets.len()],
            max_fd: open_file_limit(),
            dev_null,
            output: command.output,
            stdio: command.stdio,
            nofile: started_with_nofile(),
        };
        plan.argv_ptrs = plan._argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
        plan.envp_ptrs = plan.env.iter().map(|e| e.as_ptr().cast()).chain([std::ptr::null()]).collect();
        Ok(plan)
    }

    fn fork_exec(self) -> Result<Pid, ChildError> {
        // Until the report says exec happened (or failed), the child holds copies of devserve's
        // descriptors.
        let _shared = FORK_LOCK.read().unwrap_or_else(PoisonError::into_inner);
        let (pid, report) = self.fork(false)?;
        match read_exec_report(report) {
            Ok(ExecReport::Started) => Ok(pid),
            Ok(ExecReport::Failed(e)) => Err(ChildError::Exec(e)),
            // Whether exec worked is unknown: the child must not run untracked. Its exit
            // arrives at the reaper as that of a process nobody owns.
            Err(e) => {
                let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
                Err(ChildError::Setup(e))
            }
        }
    }

    /// Forks the child, which execs; returns its pid and the read end of its exec report.
    fn fork(mut self, shared_memory: bool) -> Result<(Pid, File), ChildError> {
        let (report_read, report_write) = cloexec_pipe().map_err(ChildError::Setup)?;
        let parent = nix::unistd::getpid().as_raw();
        // Where the child writes its pid: pointers taken (and allocated) before the fork.
        let mut slots: Vec<*mut u8> = Vec::with_capacity(self.pid_slots.len());
        for &(index, prefix) in &self.pid_slots {
            if let Some(entry) = self.env.get_mut(index) {
                // The entry is `prefix + PID_DIGITS` bytes long: the pointer stays inside it.
                slots.push(entry[prefix..].as_mut_ptr());
            }
        }
        #[cfg(target_os = "linux")]
        if shared_memory {
            // clone_vfork returns once the child has exec'd: its copies of devserve's
            // descriptors are gone by then.
            let shared = FORK_LOCK.read().unwrap_or_else(PoisonError::into_inner);
            let pid = self.clone_vfork(parent, &slots, report_write.as_raw_fd());
            drop(shared);
            let pid = pid?;
            drop(report_write);
            let pid = Pid::from_raw(pid);
            let _ = nix::unistd::setpgid(pid, pid);
            return Ok((pid, File::from(report_read)));
        }
        #[cfg(not(target_os = "linux"))]
        let _ = shared_memory;
        // SAFETY: fork is what the OS demands here. In the child (a copy of this possibly
        // multi-threaded process) `child_after_fork` makes only async-signal-safe calls and
        // writes only into memory allocated before the fork; it never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(ChildError::Setup(io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: see above; this is the child and the call does not return.
            unsafe { self.child_after_fork(parent, &slots, report_write.as_raw_fd()) }
        }
        drop(report_write);
        let pid = Pid::from_raw(pid);
        // Also set the group from the parent, so it exists before we signal it.
        let _ = nix::unistd::setpgid(pid, pid);
        Ok((pid, File::from(report_read)))
    }

    /// The child as glibc's `posix_spawn` makes it: `clone(CLONE_VM | CLONE_VFORK)`, so nothing of
    /// devserve's memory is copied and devserve is suspended until the child has called `execve`
    /// (or exited). The child runs `child_after_fork` on a stack of its own, in devserve's memory:
    /// it writes only into this plan, which outlives the call. Every signal is blocked around the
    /// call, so no handler of devserve's runs in the child before it resets them.
    #[cfg(target_os = "linux")]
    fn clone_vfork(
        &mut self,
        parent: libc::pid_t,
        slots: &[*mut u8],
        report: RawFd,
    ) -> Result<libc::pid_t, ChildError> {
        struct Start<'a> {
            plan: &'a mut Plan,
            parent: libc::pid_t,
            slots: &'a [*mut u8],
            report: RawFd,
        }
        extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `arg` is the `Start` below, alive until the parent resumes, which is after
            // this child has exec'd or exited; `child_after_fork` never returns.
            unsafe {
                let start = &mut *arg.cast::<Start>();
                start.plan.child_after_fork(start.parent, start.slots, start.report)
            }
        }
        const STACK: usize = 64 * 1024;
        // Never read before the child writes it: no need to zero it.
        let mut stack: Vec<u8> = Vec::with_capacity(STACK);
        let mut start = Start { plan: self, parent, slots, report };
        // SAFETY: the stack and `start` are allocated before the call and outlive the child's use
        // of them (CLONE_VFORK: this thread waits until the child execs or exits). The signal
        // masks are this thread's own, restored right after.
        unsafe {
            let top = stack.spare_capacity_mut().as_mut_ptr().cast::<u8>().add(STACK);
            let top = top.sub(top as usize % 16).cast::<libc::c_void>();
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::clone(
                child,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut start).cast::<libc::c_void>(),
            );
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 { Err(ChildError::Setup(error)) } else { Ok(pid) }
        }
    }

    /// Runs in the forked child. Only async-signal-safe libc calls from here to `execve`.
    ///
    /// # Safety
    /// Must be called only in the child of `fork`, with each of `slots` pointing at `PID_DIGITS`
    /// bytes inside an entry of `self.env`.
    unsafe fn child_after_fork(&mut self, parent: libc::pid_t, slots: &[*mut u8], report: RawFd) -> ! {
        // SAFETY: setpgid, prctl, getppid, sigaction, sigprocmask, signal, dup2, fcntl, syscall(close_range),
        // setrlimit, getpid, execve, write and _exit are async-signal-safe; the pointers are to memory
        // allocated before fork and owned by `self`, which outlives this function (it never returns).
        unsafe {
            libc::setpgid(0, 0);
            #[cfg(target_os = "linux")]
            {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = parent;
            // devserve's handlers go before any signal is unblocked: one of them running here
            // would report the child's signal as devserve's own.
            for signal in crate::signals::HANDLED {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_DFL
                    && old.sa_sigaction != libc::SIG_IGN
                {
                    let mut default: libc::sigaction = std::mem::zeroed();
                    default.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(signal, &default, std::ptr::null_mut());
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let stdin = self.stdio.unwrap_or(self.dev_null.as_raw_fd());
            if libc::dup2(stdin, 0) < 0 {
                fail_in_child(report);
            }
            if let Some(connection) = self.stdio
                && libc::dup2(connection, 1) < 0
            {
                fail_in_child(report);
            }
            if let Some(output) = self.output
                && (libc::dup2(output, 1) < 0 || libc::dup2(output, 2) < 0)
            {
                fail_in_child(report);
            }
            let first_free = 3 + self.sockets.len() as RawFd;
            // Two steps so that a source fd sitting in 3..first_free is never overwritten
            // before it is copied: first above the target range, then into place.
            // Iterators, not indexing: nothing after fork may panic.
            for (scratch, fd) in self.scratch.iter_mut().zip(&self.sockets) {
                *scratch = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, first_free);
                if *scratch < 0 {
                    fail_in_child(report);
                }
            }
            for (target, fd) in (3..).zip(&self.scratch) {
                // dup2 leaves the new fd without FD_CLOEXEC: exactly the inherited sockets.
                if libc::dup2(*fd, target) < 0 {
                    fail_in_child(report);
                }
            }
            #[cfg(target_os = "linux")]
            let marked = libc::syscall(
                libc::SYS_close_range,
                first_free as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            ) == 0;
            #[cfg(not(target_os = "linux"))]
            let marked = false;
            if !marked {
                // close_range missing (before Linux 5.11) or failing: mark each fd in turn.
                for fd in first_free..self.max_fd {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            if let Some(limit) = &self.nofile {
                // The soft limit devserve was started with; a failure leaves the higher one.
                libc::setrlimit(libc::RLIMIT_NOFILE, limit);
            }
            let own = libc::getpid() as u32;
            for slot in slots {
                write_decimal(std::slice::from_raw_parts_mut(*slot, PID_DIGITS), own);
            }
            libc::execve(self.program.as_ptr(), self.argv_ptrs.as_ptr(), self.envp_ptrs.as_ptr());
            fail_in_child(report)
        }
    }
}

/// A pipe whose two ends are close-on-exec: (read end, write end).
///
/// # Errors
/// The OS refused a pipe (out of file descriptors).
pub fn cloexec_pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    return Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?);
    // macOS has no pipe2: the flag is set right after. A child forked in between still gets
    // nothing, as every child marks the fds above its sockets close-on-exec itself.
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let (read, write) = nix::unistd::pipe()?;
        for end in [&read, &write] {
            nix::fcntl::fcntl(end, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
        }
        Ok((read, write))
    }
}

/// Sends errno to the parent and exits; async-signal-safe.
///
/// # Safety
/// Only for the forked child.
unsafe fn fail_in_child(report: RawFd) -> ! {
    // SAFETY: errno location, write and _exit are async-signal-safe.
    unsafe {
        let errno = *errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

#[cfg(target_os = "linux")]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot; async-signal-safe.
    unsafe { libc::__errno_location() }
}

#[cfg(not(target_os = "linux"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot; async-signal-safe.
    unsafe { libc::__error() }
}

/// What the child said about its exec.
enum ExecReport {
    Started,
    Failed(io::Error),
}

/// Reads the child's exec report: end-of-file means exec succeeded, four bytes are an errno.
/// An error reading the pipe itself is returned as such.
fn read_exec_report(mut pipe: File) -> Result<ExecReport, io::Error> {
    let mut bytes = [0u8; 4];
    let mut filled = 0;
    loop {
        match pipe.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if filled == bytes.len() {
            break;
        }
    }
    if filled == bytes.len() {
        return Ok(ExecReport::Failed(io::Error::from_raw_os_error(i32::from_ne_bytes(bytes))));
    }
    Ok(ExecReport::Started)
}

/// The limit a child gets back, if devserve raised its own.
fn started_with_nofile() -> Option<libc::rlimit> {
    let soft = STARTED_WITH_NOFILE.load(std::sync::atomic::Ordering::Relaxed);
    if soft == 0 {
        return None;
    }
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    Some(libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t })
}

/// RLIMIT_NOFILE's soft limit, capped so the fallback loop stays short.
fn open_file_limit() -> RawFd {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    RawFd::try_from(limit.min(1 << 20)).unwrap_or(1024)
}

/// Writes `n` in decimal followed by a NUL into `out` without allocating or panicking
/// (child-safe): digits that do not fit are left out.
fn write_decimal(out: &mut [u8], mut n: u32) {
    let mut reversed = [0u8; 10];
    let mut len = 0;
    for digit in reversed.iter_mut() {
        *digit = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = reversed.iter().take(len).rev().chain(std::iter::once(&0u8));
    for (slot, digit) in out.iter_mut().zip(digits) {
        *slot = *digit;
    }
}

/// `KEY=VALUE\0`, as execve wants it.
fn env_entry(key: &OsStr, value: &OsStr) -> Vec<u8> {
    let mut entry = key.as_bytes().to_vec();
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    entry.push(0);
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits_are_nul_terminated() {
        let mut buf = [0xffu8; PID_DIGITS];
        write_decimal(&mut buf, 4_194_304);
        assert_eq!(&buf[..8], b"4194304\0");
        write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }

    #[test]
    fn own_pid_variables_hold_the_childs_pid() {
        let path = std::env::temp_dir().join(format!("devserve-own-pid-{}", std::process::id()));
        let out = File::create(&path).expect("output file");
        let pid = Command::new("sh")
            .arg("-c")
            .arg("echo \"$$ $WATCHDOG_PID $OTHER\"")
            .env("WATCHDOG_PID", "stale")
            .own_pid_env("WATCHDOG_PID")
            .env("OTHER", "kept")
            .output_to(out.as_raw_fd())
            .spawn()
            .expect("spawn");
        let status = nix::sys::wait::waitpid(pid, None).expect("wait");
        assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)), "{status:?}");
        let printed = std::fs::read_to_string(&path).expect("output");
        let _ = std::fs::remove_file(&path);
        assert_eq!(printed, format!("{pid} {pid} kept\n"));
    }

    #[test]
    fn devserve_raises_its_open_files_limit_and_children_get_the_original_back() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        // A soft limit below the hard one, so that there is something to raise.
        let low = if soft < hard { soft } else { hard.saturating_sub(1).max(1024) };
        assert!(low < hard, "the hard limit {hard} leaves nothing to raise");
        setrlimit(Resource::RLIMIT_NOFILE, low, hard).expect("lower the soft limit");
        assert_eq!(raise_fd_limit(), Some((low, hard)));
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit"), (hard, hard));
        let path = std::env::temp_dir().join(format!("devserve-nofile-{}", std::process::id()));
        let out = File::create(&path).expect("output file");
        let pid =
            Command::new("sh").arg("-c").arg("ulimit -Sn").output_to(out.as_raw_fd()).spawn().expect("spawn");
        let status = nix::sys::wait::waitpid(pid, None).expect("wait");
        assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)), "{status:?}");
        let printed = std::fs::read_to_string(&path).expect("output");
        let _ = std::fs::remove_file(&path);
        assert_eq!(printed.trim(), low.to_string());
    }

    #[test]
    fn missing_program_is_reported_before_fork() {
        let error = Command::new("devserve-no-such-program").spawn().expect_err("missing");
        assert_eq!(error.to_string(), "command not found: devserve-no-such-program");
        assert!(error.is_bad_command());
    }

    #[test]
    fn exec_failure_comes_back_synchronously() {
        let error = Command::new("/dev/null").spawn().expect_err("not executable");
        assert_eq!(error.to_string(), "cannot execute /dev/null: permission denied");
    }
}
