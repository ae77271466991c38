//! 7. First serve vs tree size: the time from spawning the tool to the first `200` from the
//!    fixture app, in an empty folder and on the 100k-file tree, the median of a few starts each
//!    (taken in turn: empty, tree, empty, tree, …). devserve runs `-w DIR -l 127.0.0.1:0` and
//!    walks the tree on its watch thread while the first generation starts; the target is
//!    100k ≤ 1.2 × empty. Beside it `watchexec -r`, whose app binds its own port.

use std::thread;
use std::time::{Duration, Instant};

use crate::client::{Outcome, http_get};
use crate::common::{TempDir, free_port};
use crate::launch::{self, Launch};
use crate::report::{Better, Cell, Scenario, figure, secs};
use crate::shared::report::percentile;
use crate::targets;
use crate::tools::{Ctx, Tool};
use crate::trees;
use crate::{REQUEST_TIMEOUT, RETRY_PAUSE, START_TIMEOUT};

/// Starts per tree size.
const STARTS: usize = 7;
const TREE_FILES: usize = 100_000;
/// The target: first serve on the tree ≤ this × first serve in an empty folder.
const TARGET_RATIO: f64 = 1.2;
const TARGET: &str = "first serve, 100k-file tree ≤ 1.2 × empty folder (devserve)";

pub fn scenario() -> Scenario {
    Scenario {
        name: "first serve",
        key: "first",
        figures: vec![
            figure(
                format!("first serve, empty folder: spawn → first 200, median of {STARTS}"),
                Better::Lower,
            ),
            figure(
                format!("first serve, 100k-file tree: spawn → first 200, median of {STARTS}"),
                Better::Lower,
            ),
            figure("first serve: 100k-file tree ÷ empty folder (target ≤ 1.2×)", Better::Neither),
            figure("first serve, 100k-file tree: spawn → `watching` (walk done), median", Better::Neither),
        ],
        measure: first_serve,
        devserve_only: false,
        uses_tree: false,
    }
}

fn first_serve(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    match tool {
        Tool::Devserve => targets::or_miss(TARGET, measure(ctx, tool)),
        Tool::Watchexec => measure(ctx, tool),
        _ => Ok(vec![Cell::NotApplicable; 4]),
    }
}

fn measure(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let tree = trees::get(TREE_FILES)?;
    let mut empty = Vec::new();
    let mut full = Vec::new();
    let mut walks = Vec::new();
    for _ in 0..STARTS {
        let folder = TempDir::new(&format!("bench-empty-{}", tool.slug()));
        empty.push(start(ctx, tool, &folder)?.0);
        let (served, walked) = start(ctx, tool, tree.root())?;
        full.push(served);
        walks.extend(walked);
    }
    let median = |mut values: Vec<Duration>| {
        values.sort();
        percentile(&values, 50.0).ok_or("no start measured")
    };
    let show = |values: &[Duration]| {
        values.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0)).collect::<Vec<_>>().join(" ")
    };
    eprintln!("[bench]   {}: empty [{}] ms, 100k [{}] ms", tool.label(), show(&empty), show(&full));
    let (empty, full) = (median(empty)?, median(full)?);
    let ratio = full.as_secs_f64() / empty.as_secs_f64();
    let walk = if walks.is_empty() { Cell::NotApplicable } else { Cell::ms(median(walks)?) };
    if tool == Tool::Devserve {
        let measured = format!(
            "{:.1} ms vs {:.1} ms, {ratio:.2}×",
            full.as_secs_f64() * 1000.0,
            empty.as_secs_f64() * 1000.0
        );
        targets::verdict(ratio <= TARGET_RATIO, TARGET, &measured);
    }
    Ok(vec![Cell::ms(empty), Cell::ms(full), Cell::Text(format!("{ratio:.2}×")), walk])
}

/// Spawns the tool on `dir` and times the first `200`; for devserve also its `watching` event
/// (waited for after the first `200`, so the wait does not slow the start).
fn start(ctx: &Ctx, tool: Tool, dir: &std::path::Path) -> Result<(Duration, Option<Duration>), String> {
    let fixture = launch::fixture(ctx);
    let (command, port) = match tool {
        Tool::Devserve => {
            let args = ["-w", ".", "-l", "127.0.0.1:0"];
            (launch::devserve(ctx, dir, &args, &fixture.notify()), None)
        }
        _ => {
            let port = free_port();
            let fixture = fixture.env("FIXTURE_BIND", &format!("127.0.0.1:{port}"));
            (launch::watchexec(ctx, dir, &[], &fixture)?, Some(port))
        }
    };
    let mut run = Launch::spawn(tool.label(), command)?;
    let port = match port {
        Some(port) => port,
        None => run.port_of("listening", START_TIMEOUT)?,
    };
    let deadline = run.spawned + START_TIMEOUT;
    let served = loop {
        if let Outcome::Ok(_) = http_get(port, REQUEST_TIMEOUT) {
            break run.spawned.elapsed();
        }
        run.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!("no 200 within {}", secs(START_TIMEOUT)));
        }
        thread::sleep(RETRY_PAUSE);
    };
    let walked = match tool {
        Tool::Devserve => Some(run.wait_event(0, START_TIMEOUT, "watching", |_| true)?.at - run.spawned),
        _ => None,
    };
    run.stop();
    Ok((served, walked))
}
