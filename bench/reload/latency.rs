//! 1. Fresh latency: save → first response with the new version, for `BENCH_SAVES` saves 300 ms
//!    apart; for devserve, its overhead beyond the debounce and the app's start-up.

use crate::DEBOUNCE;
use crate::config::Config;
use crate::report::{Better, Cell, Scenario, Unit, figure};
use crate::shared::report::percentile;
use crate::tools::{Ctx, Running, Tool, scratch, timed_saves};

pub fn scenario(config: &Config) -> Scenario {
    Scenario {
        name: "fresh latency",
        key: "fresh",
        figures: vec![
            figure(
                format!("fresh latency, median of {} saves (save → new version served)", config.saves),
                Better::Lower,
            ),
            figure("fresh latency, p90", Better::Lower),
            figure("devserve overhead, median (latency − 50 ms debounce − app start)", Better::Neither),
        ],
        measure: fresh_latency,
        devserve_only: false,
        uses_tree: false,
    }
}

fn fresh_latency(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = scratch("fresh", tool)?;
    let mut run = Running::start(ctx, tool, &scratch)?;
    let port = run.port;
    let (mut latencies, starts) = timed_saves(&mut run, tool, &scratch, port, ctx.config.saves)?;
    run.stop();
    let overheads = latencies.iter().zip(&starts).map(|(latency, start)| {
        (latency.as_secs_f64() - DEBOUNCE.as_secs_f64() - start.as_secs_f64()) * 1000.0
    });
    let mut overheads: Vec<f64> = overheads.collect();
    overheads.sort_by(f64::total_cmp);
    latencies.sort();
    let overhead = match percentile(&overheads, 50.0) {
        Some(ms) if tool == Tool::Devserve => Cell::Num(ms, Unit::Ms),
        _ => Cell::NotApplicable,
    };
    Ok(vec![
        percentile(&latencies, 50.0).map_or(Cell::NotApplicable, Cell::ms),
        percentile(&latencies, 90.0).map_or(Cell::NotApplicable, Cell::ms),
        overhead,
    ])
}
