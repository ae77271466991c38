//! What both reports use: percentiles and the machine line.

use std::process::Command;
use std::thread;

use crate::common::try_run;

/// Nearest-rank percentile of sorted `values`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// `uname -srm`, the CPU model and the number of CPUs, on one line.
pub fn machine() -> String {
    let uname = try_run(Command::new("uname").arg("-srm"));
    let uname = uname.map(|o| o.stdout.trim().to_string()).unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.strip_prefix("model name")?.split_once(':'));
    let model = model.map(|(_, m)| m.trim().to_string()).unwrap_or_else(|| "unknown CPU".into());
    let cpus = thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{uname}, {model}, nproc {cpus}")
}
