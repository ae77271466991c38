//! 2. Load: two clients hammer `GET /` for `BENCH_LOAD_SECS` while a new version is saved every
//!    second; every outcome is counted.

use std::thread;
use std::time::{Duration, Instant};

use crate::client::{Outcome, http_get};
use crate::config::Config;
use crate::report::{Better, Cell, Scenario, figure};
use crate::shared::report::percentile;
use crate::tools::{Ctx, Running, Tool, is_app_start, scratch, write_version};
use crate::{REQUEST_TIMEOUT, RETRY_PAUSE};

pub fn scenario(config: &Config) -> Scenario {
    use Better::{Lower, Neither};
    let load_secs = config.load_secs;
    Scenario {
        name: "load",
        key: "load",
        figures: vec![
            figure(format!("load {load_secs} s, 2 clients, save every 1 s: requests ok"), Neither),
            figure("load: refused (ECONNREFUSED)", Lower),
            figure("load: reset (ECONNRESET or cut-off response)", Lower),
            figure("load: timed out (2 s)", Lower),
            figure("load: other errors", Lower),
            figure("load: latency p50 of ok requests", Lower),
            figure("load: latency p99", Lower),
            figure("load: latency max", Lower),
            figure("load: app starts during the run", Neither),
        ],
        measure: load,
        devserve_only: false,
        uses_tree: false,
    }
}

/// Outcomes of the load clients.
#[derive(Default)]
struct Tally {
    ok: Vec<Duration>,
    refused: u64,
    reset: u64,
    timed_out: u64,
    other: u64,
    other_example: Option<String>,
}

impl Tally {
    fn add(&mut self, outcome: Outcome, took: Duration) {
        match outcome {
            Outcome::Ok(_) => self.ok.push(took),
            Outcome::Refused => self.refused += 1,
            Outcome::Reset => self.reset += 1,
            Outcome::TimedOut => self.timed_out += 1,
            Outcome::Other(what) => {
                self.other += 1;
                self.other_example.get_or_insert(what);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok.extend(other.ok);
        self.refused += other.refused;
        self.reset += other.reset;
        self.timed_out += other.timed_out;
        self.other += other.other;
        if self.other_example.is_none() {
            self.other_example = other.other_example;
        }
    }
}

/// One load client: `GET /` on a new connection each time until `until`.
fn load_client(port: u16, until: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let began = Instant::now();
        let outcome = http_get(port, REQUEST_TIMEOUT);
        let failed = !matches!(outcome, Outcome::Ok(_));
        tally.add(outcome, began.elapsed());
        if failed {
            thread::sleep(RETRY_PAUSE);
        }
    }
    tally
}

/// 2. Two clients hammer `GET /` for `BENCH_LOAD_SECS` while a new version is saved every second.
fn load(ctx: &Ctx, tool: Tool) -> Result<Vec<Cell>, String> {
    let scratch = scratch("load", tool)?;
    let mut run = Running::start(ctx, tool, &scratch)?;
    let port = run.port;
    let mark = run.log().len();
    let began = Instant::now();
    let until = began + Duration::from_secs(ctx.config.load_secs);
    let clients: Vec<_> = (0..2).map(|_| thread::spawn(move || load_client(port, until))).collect();
    let mut saving = Ok(());
    for second in 1..ctx.config.load_secs {
        thread::sleep((began + Duration::from_secs(second)).saturating_duration_since(Instant::now()));
        saving = saving.and(write_version(&scratch, &format!("load{second}")).map(drop));
    }
    let mut tally = Tally::default();
    for client in clients {
        tally.merge(client.join().map_err(|_| "a load client panicked".to_string())?);
    }
    saving?;
    run.check_alive()?;
    let app_starts = run.log().times(mark, is_app_start).len();
    run.stop();
    if let Some(example) = &tally.other_example {
        eprintln!("[bench]   {}: {} other errors, e.g. {example}", tool.label(), tally.other);
    }
    tally.ok.sort();
    let latency = |p| percentile(&tally.ok, p).map_or(Cell::NotApplicable, Cell::ms);
    Ok(vec![
        Cell::count(tally.ok.len() as u64),
        Cell::count(tally.refused),
        Cell::count(tally.reset),
        Cell::count(tally.timed_out),
        Cell::count(tally.other),
        latency(50.0),
        latency(99.0),
        latency(100.0),
        Cell::count(app_starts as u64),
    ])
}
