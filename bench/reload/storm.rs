//! 3. Storm: 5,000 small files in one burst; how many app starts follow (the target is 1).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{Outcome, http_get};
use crate::report::{Better, Cell, Scenario, figure};
use crate::tools::{Ctx, Running, Tool, is_app_start, scratch};
use crate::{REQUEST_TIMEOUT, SAVE_GAP};

pub const STORM_FILES: usize = 5_000;
const STORM_DIRS: usize = 5;
pub const STORM_QUIET: Duration = Duration::from_secs(3);
pub const STORM_LIMIT: Duration = Duration::from_secs(30);

pub fn scenario() -> Scenario {
    Scenario {
        name: "storm",
        key: "storm",
        figures: vec![
            figure(
                format!("storm: app starts after {STORM_FILES} files in one burst (target 1)"),
                Better::Lower,
            ),
            figure("storm: time to write the burst", Better::Neither),
        ],
        measure: storm,
        devserve_only: false,
        uses_tree: false,
    }
}

fn storm(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = scratch("storm", tool)?;
    let mut run = Running::start(ctx, tool, &scratch)?;
    thread::sleep(SAVE_GAP);
    let mark = run.log().len();
    let began = Instant::now();
    write_burst(&scratch)?;
    let burst = began.elapsed();
    let mut last_change = Instant::now();
    let mut seen = 0;
    while last_change.elapsed() < STORM_QUIET && began.elapsed() < STORM_LIMIT {
        thread::sleep(Duration::from_millis(20));
        run.check_alive()?;
        let starts = run.log().times(mark, is_app_start).len();
        if starts != seen {
            seen = starts;
            last_change = Instant::now();
        }
    }
    if !matches!(http_get(run.port, REQUEST_TIMEOUT), Outcome::Ok(_)) {
        return Err(format!("not serving after the storm ({} starts)", seen));
    }
    run.stop();
    Ok(vec![Cell::count(seen as u64), Cell::ms(burst)])
}

/// The burst: [`STORM_FILES`] small files in [`STORM_DIRS`] new folders of `root`.
pub fn write_burst(root: &Path) -> Result<(), String> {
    for dir in 0..STORM_DIRS {
        let dir = root.join(format!("storm{dir}"));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for file in 0..STORM_FILES / STORM_DIRS {
            std::fs::write(dir.join(format!("f{file}.txt")), b"storm\n")
                .map_err(|e| format!("write: {e}"))?;
        }
    }
    Ok(())
}
