//! Reload benchmark: devserve against `watchexec -r`, `watchexec -r --socket` and
//! `systemfd --no-pid -s … -- watchexec -r`.
//!
//! Run with `cargo bench --bench reload`. It builds `devserve` and the `fixture-app` example in
//! release, finds (or installs) the peers, and runs every scenario once per tool, all with the same
//! fixture app and the same 50 ms debounce, over 127.0.0.1 only:
//!
//! 1. **Fresh latency** (`reload/latency.rs`): write `vN` into the watched version file, then poll
//!    `GET /` (a new connection each time, 1 ms pause after a failure) until a response carries
//!    `vN`. For devserve, its own overhead is that latency minus the 50 ms debounce minus the app's
//!    start-up time that devserve reports in its `generation_ready` JSON event (`start_ms`).
//! 2. **Load** (`reload/load.rs`): two client threads, a new connection per `GET /` (2 s timeout),
//!    while the main thread saves a new version every second. Every outcome is counted: ok,
//!    refused, reset (or EOF before the full response), timed out, other.
//! 3. **Storm** (`reload/storm.rs`): 5,000 small files in one burst; count the app starts that
//!    follow.
//! 4. **Idle cost** (`reload/big_tree.rs`): watch a tree of 100,000 files in 10,000 folders: time
//!    from spawn until a probe write restarts the app, peak RSS (VmHWM) and CPU time of the tool's
//!    own processes over 10 s of idle (the fixture app excluded).
//! 5. **Hygiene** (`reload/hygiene.rs`, devserve only): RSS, open fds and children before and after
//!    N HUP reloads, and the time from each HUP to its `generation_ready` event.
//! 6. **Poll cost** (`reload/poll_cost.rs`): `--poll 500ms` CPU time per interval on 10k- and
//!    100k-file trees, and on the 100k tree with 90% ignored, beside `watchexec --poll 500ms`.
//! 7. **First serve** (`reload/first_serve.rs`): spawn → first 200 in an empty folder and on a
//!    100k-file tree (target: ≤ 1.2×), beside `watchexec -r`.
//! 8. **Proxy save → fresh** (`reload/proxy_fresh.rs`): save → fresh behind `--proxy` against
//!    the app's start-up (target: p50 ≤ start-up + 10 ms), beside `watchexec -r`.
//! 9. **Proxy storm** (`reload/proxy_fresh.rs`): 5,000 files in one burst behind the proxy
//!    (target: one serving generation, with the final state).
//!
//! Sections 6–9 run their tools through `reload/launch.rs` (their own command lines), share the
//! trees of `reload/trees.rs`, and print a `PASS`/`MISS` line per target under the table
//! (`reload/targets.rs`).
//!
//! The rest: `reload/config.rs` (settings), `reload/peers.rs` (finding and installing the
//! peers), `reload/tools.rs` (each tool's command line, and a run of it), `reload/client.rs` (the
//! HTTP client), `reload/report.rs` (cells, the scenario runner, the table). What this bench
//! shares with `proxy.rs` is in `shared/`: the release build, settings parsing, the process guard
//! and marker sweep, percentiles and the machine line. Spawning, output capture, JSON events,
//! `/proc` and scratch folders come from the test kit, `tests/common/`, which the integration
//! tests use too.
//!
//! devserve runs with `--log-format json`: the bench reads its events, not its human lines. Every
//! tool runs in its own process group with a marker in its environment; at the end of each
//! scenario the group gets SIGTERM, then SIGKILL, and any process still carrying the marker is
//! killed by pid. A tool that fails a scenario gets `failed: reason` in its cells; the run goes on.
//!
//! Settings: `BENCH_SAVES` (20), `BENCH_LOAD_SECS` (30), `BENCH_RELOADS` (500), `BENCH_SCENARIOS`
//! (a comma-separated subset of `fresh,load,storm,idle,hygiene,poll,first,proxy,proxy-storm`;
//! default all), and `DEVSERVE_BENCH_PEERS` (folder with `bin/watchexec` and `bin/systemfd`;
//! default `target/bench-peers`, where they are installed with `cargo install` when missing).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/mod.rs"]
mod shared;

#[path = "reload/big_tree.rs"]
mod big_tree;
#[path = "reload/client.rs"]
mod client;
#[path = "reload/config.rs"]
mod config;
#[path = "reload/first_serve.rs"]
mod first_serve;
#[path = "reload/hygiene.rs"]
mod hygiene;
#[path = "reload/latency.rs"]
mod latency;
#[path = "reload/launch.rs"]
mod launch;
#[path = "reload/load.rs"]
mod load;
#[path = "reload/peers.rs"]
mod peers;
#[path = "reload/poll_cost.rs"]
mod poll_cost;
#[path = "reload/proxy_fresh.rs"]
mod proxy_fresh;
#[path = "reload/report.rs"]
mod report;
#[path = "reload/storm.rs"]
mod storm;
#[path = "reload/targets.rs"]
mod targets;
#[path = "reload/tools.rs"]
mod tools;
#[path = "reload/trees.rs"]
mod trees;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use config::Config;
use peers::Bins;
use tools::Ctx;

/// The debounce every tool gets.
const DEBOUNCE: Duration = Duration::from_millis(50);
const DEBOUNCE_ARG: &str = "50ms";
/// Timeout of one HTTP request (connect, write and read together).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed request before the next attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// Longest wait for a tool to start serving, and for one save to be served.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const SAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two saves in the latency scenario, so each one is its own change.
const SAVE_GAP: Duration = Duration::from_millis(300);

fn main() {
    let config = Config::from_env();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = shared::build::target_dir(&root);
    let began = Instant::now();
    eprintln!("[bench] building devserve and fixture-app in release");
    if let Err(e) = shared::build::build_release(&root) {
        eprintln!("[bench] {e}");
        std::process::exit(1);
    }
    let bins = Bins::find(&root, &target);
    let scenarios = [
        latency::scenario(&config),
        load::scenario(&config),
        storm::scenario(),
        big_tree::scenario(),
        hygiene::scenario(&config),
        poll_cost::scenario(),
        first_serve::scenario(),
        proxy_fresh::fresh_scenario(&config),
        proxy_fresh::storm_scenario(),
    ];
    let mut ctx = Ctx { config, bins, tree: std::cell::OnceCell::new() };
    let mut rows = Vec::new();
    for scenario in scenarios.iter().filter(|s| ctx.config.selected(s.key)) {
        rows.extend(report::run_scenario(&ctx, scenario));
        if scenario.uses_tree {
            drop(ctx.tree.take()); // removes the idle tree
        }
    }
    trees::remove_all();
    shared::process::report_leftovers();
    let took = began.elapsed();
    println!("{}", report::render_report(&ctx, &rows, took));
    print!("{}", targets::render());
}
