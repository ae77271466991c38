//! 4. Idle cost: watching a 100,000-file tree. Time from the spawn until a probe write restarts
//!    the app, then peak RSS and CPU time of the tool's own processes over 10 s of idle.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{TempDir, clock_ticks_per_sec, cpu_ticks, free_port, status_kib};
use crate::report::{Better, Cell, Scenario, Unit, figure, secs};
use crate::tools::{Ctx, Running, Tool, is_app_start, write_version};

/// The idle tree: TREE_TOP × TREE_SUB folders of TREE_FILES files each.
const TREE_TOP: usize = 100;
const TREE_SUB: usize = 100;
const TREE_FILES: usize = 10;
const PROBE_EVERY: Duration = Duration::from_millis(50);
const WATCH_LIMIT: Duration = Duration::from_secs(120);
const IDLE: Duration = Duration::from_secs(10);

pub fn scenario() -> Scenario {
    Scenario {
        name: "idle cost",
        key: "idle",
        figures: vec![
            figure("100k-file tree: time until watching (spawn → probe restarts the app)", Better::Lower),
            figure("100k-file tree: peak RSS of the tool (VmHWM, app excluded)", Better::Lower),
            figure(format!("100k-file tree: tool CPU time over {} s idle", IDLE.as_secs()), Better::Lower),
        ],
        measure: idle_cost,
        devserve_only: false,
        uses_tree: true,
    }
}

/// The idle-cost tree: 100 × 100 folders of 10 files, plus `VERSION` at the top. Made once,
/// shared by every tool, removed on drop.
pub struct Tree {
    root: TempDir,
    /// Where the watch probe is written: the last folder created.
    probe: PathBuf,
}

impl Tree {
    /// Creates the tree; on failure, whatever was created is removed again (by `Drop`).
    fn create() -> Result<Tree, String> {
        let fail = |e: std::io::Error| format!("cannot create the idle tree: {e}");
        let root = TempDir::new("bench-tree");
        let last = format!("d{:03}/s{:03}/probe.txt", TREE_TOP - 1, TREE_SUB - 1);
        let tree = Tree { probe: root.join(last), root };
        let began = Instant::now();
        for top in 0..TREE_TOP {
            for sub in 0..TREE_SUB {
                let dir = tree.root.join(format!("d{top:03}/s{sub:03}"));
                std::fs::create_dir_all(&dir).map_err(fail)?;
                for file in 0..TREE_FILES {
                    std::fs::write(dir.join(format!("f{file}.txt")), b"idle\n").map_err(fail)?;
                }
            }
        }
        write_version(&tree.root, "idle")?;
        eprintln!(
            "[bench] idle tree: {} files in {} folders at {} ({:.1}s)",
            TREE_TOP * TREE_SUB * TREE_FILES,
            TREE_TOP * TREE_SUB,
            tree.root.display(),
            began.elapsed().as_secs_f64()
        );
        Ok(tree)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // The TempDir removes it right after this.
        eprintln!("[bench] removing the idle tree");
    }
}

fn idle_cost(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let tree = ctx.tree.get_or_init(Tree::create).as_ref().map_err(Clone::clone)?;
    let _ = std::fs::remove_file(&tree.probe);
    let result = measure_idle(ctx, tool, tree);
    let _ = std::fs::remove_file(&tree.probe);
    result
}

fn measure_idle(ctx: &Ctx, tool: Tool, tree: &Tree) -> Result<Vec<Cell>, String> {
    let mut run = Running::spawn(ctx, tool, &tree.root, free_port())?;
    // (a) Probe every 50 ms until the app starts a second time.
    let mut probes = 0u32;
    let watching = loop {
        if let Some(second) = run.log().times(0, is_app_start).get(1) {
            break *second - run.spawned;
        }
        run.check_alive()?;
        if run.spawned.elapsed() > WATCH_LIMIT {
            return Err(format!("no restart within {} of probing", secs(WATCH_LIMIT)));
        }
        probes += 1;
        std::fs::write(&tree.probe, format!("{probes}\n")).map_err(|e| format!("cannot probe: {e}"))?;
        thread::sleep(PROBE_EVERY);
    };
    // Let restarts from the last probes settle: 1 s without a new app start (at most 10 s).
    let settle = Instant::now();
    let mut starts = run.log().times(0, is_app_start);
    while starts.last().is_some_and(|t| t.elapsed() < Duration::from_secs(1)) && settle.elapsed() < IDLE {
        thread::sleep(Duration::from_millis(50));
        starts = run.log().times(0, is_app_start);
    }
    // (b), (c) over 10 s of idle.
    let pids = run.own_pids(&ctx.bins.fixture);
    let ticks = |pids: &[i32]| pids.iter().filter_map(|&pid| cpu_ticks(pid)).sum::<u64>();
    let before = ticks(&pids);
    thread::sleep(IDLE);
    run.check_alive()?;
    let cpu = (ticks(&pids) - before) as f64 / clock_ticks_per_sec() * 1000.0;
    let hwm_kib: u64 = pids.iter().filter_map(|&pid| status_kib(pid, "VmHWM")).sum();
    eprintln!("[bench]   {} processes measured: {pids:?}, {probes} probes", tool.label());
    run.stop();
    Ok(vec![Cell::ms(watching), Cell::Num(hwm_kib as f64 / 1024.0, Unit::MiB), Cell::Num(cpu, Unit::Ms)])
}
