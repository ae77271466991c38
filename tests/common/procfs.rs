//! What `/proc` says about a process: state, children, descendants, open fds, CPU time, memory.

use std::collections::VecDeque;
use std::path::Path;

/// The state letter of a process (R, S, Z, …), or None if it does not exist.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim().chars().next()
}

/// A process that exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    process_state(pid).is_some_and(|s| s != 'Z')
}

/// Pids of the direct children of `pid`, from `/proc/PID/task/*/children`.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let lists = tasks.flatten().filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok());
    lists
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<_>>())
        .collect()
}

/// `pid` and all its descendants (at most about a thousand).
pub fn descendants(pid: i32) -> Vec<i32> {
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

/// Whether the executable of `pid` is `exe`.
pub fn runs(pid: i32, exe: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|link| link == exe)
}

/// The number of open fds of `pid`, or None if it is gone.
pub fn fd_count(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// What each open fd of `pid` points to (`socket:[…]`, `pipe:[…]`, a path), sorted by fd.
pub fn fd_targets(pid: i32) -> Option<Vec<(u32, String)>> {
    let mut targets: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect();
    targets.sort();
    Some(targets)
}

/// utime + stime of `pid`, in clock ticks ([`clock_ticks_per_sec`]).
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`), in KiB.
pub fn status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    line.split_whitespace().next()?.parse().ok()
}
