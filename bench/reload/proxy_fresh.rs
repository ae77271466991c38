//! 8. and 9. Behind the front door (`--proxy`, no build), where devserve starts a generation at the
//!    first event of a burst:
//!    - **save → fresh**: write `vN` into the watched version file, then poll `GET /` through
//!      the proxy until a response carries `vN`, `BENCH_SAVES` times 300 ms apart; p50 and p90,
//!      against the app's own start-up (`generation_ready.start_ms`). Target: p50 ≤ start-up +
//!      10 ms. Beside it `watchexec -r` on the same app binding a fixed port (its latency includes
//!      its 50 ms debounce).
//!    - **storm**: 5,000 files in one burst, then the version file last; once 3 s pass without a
//!      new output line, count the app starts (and devserve's `generation_ready` events) since the
//!      burst, and check that one app runs and that it serves the last version. Target: one
//!      serving generation, with the final state.

use std::thread;
use std::time::{Duration, Instant};

use crate::client::{Outcome, http_get};
use crate::common::{Fixture, free_port};
use crate::config::Config;
use crate::launch::{self, Launch};
use crate::report::{Better, Cell, Scenario, Unit, figure, secs};
use crate::shared::report::percentile;
use crate::storm::{STORM_FILES, STORM_LIMIT, STORM_QUIET, write_burst};
use crate::targets;
use crate::tools::{Ctx, Tool, is_app_start, scratch, timed_saves, write_version};
use crate::{DEBOUNCE_ARG, REQUEST_TIMEOUT, SAVE_GAP, START_TIMEOUT};

/// The target: save → fresh p50 ≤ the app's start-up + this.
const SLACK: Duration = Duration::from_millis(10);
const FRESH_TARGET: &str = "proxy save → fresh p50 ≤ app start-up + 10 ms (devserve --proxy)";
const STORM_TARGET: &str = "proxy storm: one serving generation, with the final state (devserve --proxy)";

pub fn fresh_scenario(config: &Config) -> Scenario {
    Scenario {
        name: "proxy save → fresh",
        key: "proxy",
        figures: vec![
            figure(
                format!(
                    "proxy: save → fresh, p50 of {} saves (watchexec -r: app on a fixed port)",
                    config.saves
                ),
                Better::Lower,
            ),
            figure("proxy: save → fresh, p90", Better::Lower),
            figure("proxy: app start-up (`generation_ready.start_ms`), median", Better::Neither),
            figure("proxy: p50 − median start-up (target ≤ 10 ms)", Better::Neither),
            figure("proxy: generations started per save", Better::Neither),
        ],
        measure: fresh,
        devserve_only: false,
        uses_tree: false,
    }
}

pub fn storm_scenario() -> Scenario {
    Scenario {
        name: "proxy storm",
        key: "proxy-storm",
        figures: vec![
            figure(
                format!("proxy storm: app starts after {STORM_FILES} files + the version file"),
                Better::Lower,
            ),
            figure("proxy storm: `generation_ready` events", Better::Neither),
            figure("proxy storm: apps running at the end (target 1)", Better::Neither),
            figure("proxy storm: the final version served", Better::Neither),
        ],
        measure: storm,
        devserve_only: false,
        uses_tree: false,
    }
}

/// The tool on `dir`, serving the fixture that reads `dir/VERSION` at start; the port to `GET`.
fn start(ctx: &Ctx, tool: Tool, dir: &std::path::Path) -> Result<(Launch, u16), String> {
    let fixture = launch::fixture(ctx).version_file(dir.join("VERSION"));
    let (command, port) = match tool {
        Tool::Devserve => {
            let fixture: Fixture = fixture.notify().env("FIXTURE_BIND_PORT_ENV", "1");
            let args = ["-w", ".", "--debounce", DEBOUNCE_ARG, "--proxy", "127.0.0.1:0"];
            (launch::devserve(ctx, dir, &args, &fixture), None)
        }
        _ => {
            let port = free_port();
            let fixture = fixture.env("FIXTURE_BIND", &format!("127.0.0.1:{port}"));
            (launch::watchexec(ctx, dir, &[], &fixture)?, Some(port))
        }
    };
    let label = match tool {
        Tool::Devserve => "devserve --proxy",
        _ => tool.label(),
    };
    let mut run = Launch::spawn(label, command)?;
    let port = match port {
        Some(port) => port,
        None => run.port_of("proxy_listening", START_TIMEOUT)?,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while !matches!(http_get(port, REQUEST_TIMEOUT), Outcome::Ok(_)) {
        run.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!("the app never answered GET / within {}", secs(START_TIMEOUT)));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok((run, port))
}

fn fresh(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    match tool {
        Tool::Devserve => targets::or_miss(FRESH_TARGET, measure_fresh(ctx, tool)),
        Tool::Watchexec => measure_fresh(ctx, tool),
        _ => Ok(vec![Cell::NotApplicable; 5]),
    }
}

fn measure_fresh(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = scratch("proxy-fresh", tool)?;
    let (mut run, port) = start(ctx, tool, &scratch)?;
    let begun = run.log().len();
    let (mut latencies, mut starts) = timed_saves(&mut run, tool, &scratch, port, ctx.config.saves)?;
    thread::sleep(SAVE_GAP);
    let started = match tool {
        Tool::Devserve => count_events(&run, begun, "generation_starting"),
        _ => run.log().times(begun, is_app_start).len(),
    };
    run.stop();
    latencies.sort();
    starts.sort();
    let p50 = percentile(&latencies, 50.0).ok_or("no save measured")?;
    let p90 = percentile(&latencies, 90.0).ok_or("no save measured")?;
    let per_save = Cell::Text(format!("{:.2}", started as f64 / ctx.config.saves as f64));
    if tool != Tool::Devserve {
        return Ok(vec![Cell::ms(p50), Cell::ms(p90), Cell::NotApplicable, Cell::NotApplicable, per_save]);
    }
    let start = percentile(&starts, 50.0).ok_or("no start-up measured")?;
    let over = (p50.as_secs_f64() - start.as_secs_f64()) * 1000.0;
    let measured = format!(
        "p50 {:.1} ms, start-up {} ms (median), p50 − start-up {over:.1} ms",
        p50.as_secs_f64() * 1000.0,
        start.as_millis()
    );
    targets::verdict(p50 <= start + SLACK, FRESH_TARGET, &measured);
    Ok(vec![Cell::ms(p50), Cell::ms(p90), Cell::ms(start), Cell::Num(over, Unit::Ms), per_save])
}

/// devserve's events of `kind` from line `from` on.
fn count_events(run: &Launch, from: usize, kind: &str) -> usize {
    let lines = run.log().lines();
    let events = lines.iter().skip(from).filter_map(|line| crate::common::parse_event(&line.text));
    events.filter(|event| crate::common::event_kind(event) == kind).count()
}

fn storm(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    match tool {
        Tool::Devserve => targets::or_miss(STORM_TARGET, measure_storm(ctx, tool)),
        Tool::Watchexec => measure_storm(ctx, tool),
        _ => Ok(vec![Cell::NotApplicable; 4]),
    }
}

fn measure_storm(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = scratch("proxy-storm", tool)?;
    let (mut run, port) = start(ctx, tool, &scratch)?;
    thread::sleep(SAVE_GAP);
    let mark = run.log().len();
    let began = Instant::now();
    write_burst(&scratch)?;
    write_version(&scratch, "final")?;
    let burst = began.elapsed();
    // Until STORM_QUIET passes with no new app start and no new event (at most STORM_LIMIT).
    let mut last_change = Instant::now();
    let mut seen = run.log().len();
    while last_change.elapsed() < STORM_QUIET && began.elapsed() < STORM_LIMIT {
        thread::sleep(Duration::from_millis(20));
        run.check_alive()?;
        let now = run.log().len();
        if now != seen {
            seen = now;
            last_change = Instant::now();
        }
    }
    let app_starts = run.log().times(mark, is_app_start).len();
    let readies = count_events(&run, mark, "generation_ready");
    let apps = run.apps(&ctx.bins.fixture).len();
    let body = match http_get(port, REQUEST_TIMEOUT) {
        Outcome::Ok(body) => body,
        _ => String::new(),
    };
    run.stop();
    let final_served = body.starts_with("version=final ");
    let served = if final_served { "yes".to_owned() } else { format!("no: {:?}", body.trim()) };
    eprintln!(
        "[bench]   {}: burst written in {} ms; {app_starts} app start(s), {apps} app(s) at the end",
        tool.label(),
        burst.as_millis()
    );
    let readies = match tool {
        Tool::Devserve => {
            let measured = format!(
                "{apps} app(s) running at the end, final version served: {served}; \
                 {readies} generation_ready event(s), {app_starts} app start(s)"
            );
            targets::verdict(apps == 1 && final_served, STORM_TARGET, &measured);
            Cell::count(readies as u64)
        }
        _ => Cell::NotApplicable,
    };
    Ok(vec![Cell::count(app_starts as u64), readies, Cell::count(apps as u64), Cell::Text(served)])
}
