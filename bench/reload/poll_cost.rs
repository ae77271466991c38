//! 6. Poll cost: `--poll 500ms` on a 10k-file tree, a 100k-file tree, and the 100k-file tree
//!    with 90% of it ignored: the tool's own CPU time (utime + stime, the fixture app excluded)
//!    over 10 s of idle, divided by the 20 poll intervals in it. devserve beside
//!    `watchexec -r --poll 500ms`, on the same trees, with the same ignore glob.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::{clock_ticks_per_sec, cpu_ticks, free_port};
use crate::launch::{self, Launch};
use crate::report::{Better, Cell, Scenario, Unit, figure, secs};
use crate::tools::{Ctx, Tool, is_app_start};
use crate::trees::{self, Tree};
use crate::{DEBOUNCE_ARG, START_TIMEOUT};

const POLL: Duration = Duration::from_millis(500);
const POLL_ARG: &str = "--poll=500ms";
const IDLE: Duration = Duration::from_secs(10);
/// A new probe file this often until the app restarts: the tool polls, and sees changes.
const PROBE_EVERY: Duration = Duration::from_millis(100);
const WATCH_LIMIT: Duration = Duration::from_secs(120);
/// Restarts from the last probes are over once no app started for this long (at most 15 s).
const SETTLE_QUIET: Duration = Duration::from_secs(2);
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// The trees: (files, ignore 90% of it).
const CASES: [(usize, bool); 3] = [(10_000, false), (100_000, false), (100_000, true)];

pub fn scenario() -> Scenario {
    let per = |what: &str| {
        figure(
            format!("poll 500ms, {what}: tool CPU per interval ({} s idle ÷ 20)", IDLE.as_secs()),
            Better::Lower,
        )
    };
    Scenario {
        name: "poll cost",
        key: "poll",
        figures: vec![
            per("10k-file tree"),
            per("100k-file tree"),
            per("100k-file tree, 90% ignored (`-i 'd0[1-9]?'`)"),
        ],
        measure: poll_cost,
        devserve_only: false,
        uses_tree: false,
    }
}

fn poll_cost(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    if !matches!(tool, Tool::Devserve | Tool::Watchexec) {
        return Ok(vec![Cell::NotApplicable; CASES.len()]);
    }
    let mut cells = Vec::new();
    for (files, ignore) in CASES {
        let tree = trees::get(files)?;
        let cpu = measure(ctx, tool, &tree, ignore);
        remove_probes(&tree);
        cells.push(Cell::Num(cpu?.as_secs_f64() * 1000.0, Unit::Ms));
    }
    Ok(cells)
}

/// The tool's CPU time per poll interval on `tree`.
fn measure(ctx: &Ctx, tool: Tool, tree: &Tree, ignore: bool) -> Result<Duration, String> {
    let glob = if ignore { Some(tree.ignore_90_percent()?) } else { None };
    let fixture = launch::fixture(ctx);
    let mut args = vec![POLL_ARG];
    if let Some(glob) = glob {
        args.extend(["-i", glob]);
    }
    let command = match tool {
        Tool::Devserve => {
            args.extend(["--debounce", DEBOUNCE_ARG, "-l", "127.0.0.1:0"]);
            let mut args_with_root = vec!["-w", tree.root().to_str().ok_or("non-UTF-8 temp dir")?];
            args_with_root.extend(args);
            launch::devserve(ctx, tree.root(), &args_with_root, &fixture.notify())
        }
        _ => {
            let fixture = fixture.env("FIXTURE_BIND", &format!("127.0.0.1:{}", free_port()));
            launch::watchexec(ctx, tree.root(), &args, &fixture)?
        }
    };
    let label = format!(
        "{} --poll ({}k files{})",
        tool.label(),
        tree.files / 1000,
        glob.map_or("", |_| ", 90% ignored")
    );
    let mut run = Launch::spawn(&label, command)?;
    run.wait_for(START_TIMEOUT, "app start", |log| log.find(0, is_app_start))?;
    // Probe until a change restarts the app: the tool has walked the tree and polls it.
    let mut probes = 0u32;
    loop {
        if run.log().times(0, is_app_start).len() >= 2 {
            break;
        }
        run.check_alive()?;
        if run.spawned.elapsed() > WATCH_LIMIT {
            return Err(format!("no restart within {} of probing", secs(WATCH_LIMIT)));
        }
        probes += 1;
        let probe = tree.root().join(format!("probe-{probes}.txt"));
        std::fs::write(&probe, b"probe\n").map_err(|e| format!("cannot probe: {e}"))?;
        thread::sleep(PROBE_EVERY);
    }
    let watching = run.spawned.elapsed();
    let settle = Instant::now();
    while run.log().times(0, is_app_start).last().is_some_and(|t| t.elapsed() < SETTLE_QUIET)
        && settle.elapsed() < SETTLE_LIMIT
    {
        thread::sleep(Duration::from_millis(50));
    }
    if tool == Tool::Devserve {
        let event = run.wait_event(0, START_TIMEOUT, "watching", |_| true)?.item;
        eprintln!("[bench]   {label}: devserve watches {} folders", event["folders"]);
    }
    let pids = run.own_pids(&ctx.bins.fixture);
    let ticks = |pids: &[i32]| pids.iter().filter_map(|&pid| cpu_ticks(pid)).sum::<u64>();
    let before = ticks(&pids);
    let idle_from = Instant::now();
    thread::sleep(IDLE);
    run.check_alive()?;
    let after = ticks(&pids);
    let idle = idle_from.elapsed();
    let restarts = run.log().times(0, is_app_start).into_iter().filter(|t| *t >= idle_from).count();
    run.stop();
    if restarts > 0 {
        return Err(format!("the app restarted {restarts} time(s) during the idle period"));
    }
    let cpu = Duration::from_secs_f64((after - before) as f64 / clock_ticks_per_sec());
    let intervals = idle.as_secs_f64() / POLL.as_secs_f64();
    eprintln!(
        "[bench]   {label}: {probes} probe(s), changes seen after {:.1}s; CPU {:.0} ms in {:.1}s ({pids:?})",
        watching.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0,
        idle.as_secs_f64()
    );
    Ok(cpu.div_f64(intervals))
}

/// Removes the probe files a run left in the tree's root.
fn remove_probes(tree: &Tree) {
    let Ok(entries) = std::fs::read_dir(tree.root()) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|name| name.starts_with("probe-")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
