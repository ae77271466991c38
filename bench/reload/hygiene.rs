//! 5. Hygiene (devserve only): RSS, open fds and children before and after `BENCH_RELOADS` HUP
//!    reloads, each sent once the previous generation is ready, and the time from each HUP to its
//!    `generation_ready` event.

use std::thread;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{children, fd_count, status_kib};
use crate::config::Config;
use crate::report::{Better, Cell, Scenario, figure};
use crate::shared::report::percentile;
use crate::tools::{Ctx, Running, Tool, measured_ready, scratch};
use crate::{SAVE_GAP, SAVE_TIMEOUT, START_TIMEOUT};

pub fn scenario(config: &Config) -> Scenario {
    Scenario {
        name: "hygiene",
        key: "hygiene",
        figures: vec![
            figure(
                format!("hygiene: devserve VmRSS before → after {} HUP reloads", config.reloads),
                Better::Neither,
            ),
            figure("hygiene: devserve open fds before → after", Better::Neither),
            figure("hygiene: devserve children before → after", Better::Neither),
            figure("hygiene: HUP → gen ready, median", Better::Neither),
        ],
        measure: hygiene,
        devserve_only: true,
        uses_tree: false,
    }
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

fn hygiene(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = scratch("hygiene", tool)?;
    let mut run = Running::start(ctx, tool, &scratch)?;
    let pid = run.pid();
    run.wait_event(0, START_TIMEOUT, "generation_ready", |e| e["generation"] == 1)?;
    thread::sleep(SAVE_GAP);
    let before = Footprint::of(pid)?;
    let mut reloads = Vec::new();
    let last = ctx.config.reloads + 1;
    for generation in 2..=last {
        let mark = run.log().len();
        let sent = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| format!("cannot send SIGHUP: {e}"))?;
        let ready =
            run.wait_event(mark, SAVE_TIMEOUT, "generation_ready", |e| e["generation"] == generation)?;
        measured_ready(&ready.item)?;
        reloads.push(ready.at - sent);
    }
    run.wait_event(0, SAVE_TIMEOUT, "generation_stopped", |e| e["generation"] == last - 1)?;
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
