//! Proxy benchmark: devserve's front door (`--proxy`) against direct access to the app and against
//! nginx's `proxy_pass`, uvicorn across swaps behind `--proxy` and behind `--listen`, and the
//! latency of an app that writes each response in two pieces with Nagle on.
//!
//! Run with `cargo bench --bench proxy`. It builds `devserve` and the `fixture-app` example in
//! release, installs what is missing (`apt-get install -y nginx wrk`, `python3 -m pip install
//! uvicorn django`), and runs, over 127.0.0.1 only:
//!
//! 1. **Throughput** (`proxy/throughput.rs`): `GET /` on the release-built fixture app reached
//!    directly (`FIXTURE_BIND`), through `devserve --proxy` (the fixture binds the port devserve
//!    gives it in `PORT`) and through nginx (`proxy_pass` to the direct app, one worker, a
//!    keepalive upstream pool, config in a temp dir: `proxy/servers.rs`), at 1 and 16 keep-alive
//!    clients: `wrk -t1` for `BENCH_PROXY_SECS` per cell after a 1 s warm-up (or the hyper client
//!    of `proxy/client.rs`), `BENCH_PROXY_ROUNDS` rounds, medians reported. Meanwhile devserve's
//!    VmRSS (its own pid) and nginx's (master + worker) are sampled every 50 ms.
//! 2. **Swaps** (`proxy/swaps.rs`): a tiny ASGI app under uvicorn, behind `devserve --proxy … --
//!    python3 -m uvicorn app:app --port {port}` and behind `devserve -l … -- … --fd 3`, each under
//!    the test kit's 2-client `Load` (a new connection per `GET /`) across `BENCH_PROXY_SWAPS`
//!    swaps, each a file written into the watched folder; every failed request is counted.
//! 3. **Two writes** (`proxy/two_writes.rs`): `tests/apps/two_writes.py` and a minimal Django
//!    project under `manage.py runserver --noreload`, both of which write a response in two
//!    `write(2)` calls with Nagle on, reached by one client sending `BENCH_PROXY_REQUESTS` requests
//!    one after another per round (after a warm-up) on one kept-alive connection: directly (the
//!    client delaying its ACKs, then re-arming `TCP_QUICKACK`), directly with a fresh connection per
//!    request (the baseline: a new connection acknowledges at once), through `devserve --proxy` and
//!    through nginx. A reader that delays its ACKs to the app pays about 40 ms per request; the
//!    target is devserve's added p50 (over the baseline) ≤ nginx's.
//!
//! It prints a Markdown report on stdout (progress on stderr): each figure with its ratio to the
//! peers measured in the same run, and a `PASS`/`MISS`/`SKIP` line per target of the issue. A peer
//! that cannot be had (nginx not installable, say) is skipped with a line saying why; the rest of
//! the run goes on. Every process started runs in its own process group with a marker in its
//! environment, and is stopped on every path (`proxy/procs.rs` over `shared/process.rs`); the run
//! ends with `no process left running`.
//!
//! 4. **HTTPS** (`proxy/https.rs`): devserve's `--proxy https://` against nginx's `ssl http2`, both
//!    in front of the directly reached fixture app with a certificate from the same local CA: new
//!    TLS connections per second (and the handshake's p50) and HTTP/2 requests per second at 1 and
//!    16 clients, and devserve's peak RSS. Targets: throughput ≥ 0.8× nginx's, handshake p50 ≤ 1.2×.
//!
//! Settings: `BENCH_PROXY_SECS` (5), `BENCH_PROXY_ROUNDS` (3), `BENCH_PROXY_SWAPS` (20),
//! `BENCH_PROXY_REQUESTS` (300), `BENCH_PROXY_CLIENT` (`wrk` or `hyper`), `BENCH_PROXY_PARTS`
//! (`throughput,swaps,two-writes,https`).
//!
//! What this bench shares with `reload.rs` (the release build, settings parsing, the process guard
//! and marker sweep, percentiles and the machine line) is in `shared/`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/mod.rs"]
mod shared;

#[path = "proxy/client.rs"]
mod client;
#[path = "proxy/config.rs"]
mod config;
#[cfg(feature = "https")]
#[path = "proxy/https.rs"]
mod https;
#[path = "proxy/procs.rs"]
mod procs;
#[path = "proxy/report.rs"]
mod report;
#[path = "proxy/servers.rs"]
mod servers;
#[path = "proxy/setup.rs"]
mod setup;
#[path = "proxy/swaps.rs"]
mod swaps;
#[path = "proxy/throughput.rs"]
mod throughput;
#[path = "proxy/two_writes.rs"]
mod two_writes;

use std::path::PathBuf;
use std::time::Instant;

use config::Config;
use report::Results;
use setup::Tools;

fn main() {
    let config = Config::from_env();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let began = Instant::now();
    eprintln!("[bench] building devserve and fixture-app in release");
    if let Err(e) = shared::build::build_release(&root) {
        eprintln!("[bench] {e}");
        std::process::exit(1);
    }
    let (throughput, swaps) = (config.selected("throughput"), config.selected("swaps"));
    let two_writes = config.selected("two-writes");
    let https = config.selected("https");
    if !throughput && !swaps && !two_writes && !https {
        eprintln!(
            "[bench] BENCH_PROXY_PARTS selects nothing: use throughput, swaps, two-writes, https or a list of them"
        );
        std::process::exit(2);
    }
    let tools = Tools::find(&shared::build::target_dir(&root), &config);
    for (what, path) in [("devserve", &tools.devserve), ("fixture-app", &tools.fixture)] {
        if !path.exists() {
            eprintln!("[bench] {what} missing at {} after the release build", path.display());
            std::process::exit(1);
        }
    }
    let results = Results {
        throughput: throughput.then(|| throughput::run(&config, &tools)),
        swaps: swaps.then(|| swaps::run(&tools.uvicorn, &tools.devserve, config.swaps)),
        two_writes: two_writes.then(|| two_writes::run(&config, &tools)),
        #[cfg(feature = "https")]
        https: https.then(|| https::run(&config, &tools)),
        #[cfg(not(feature = "https"))]
        https: https.then(|| Err("devserve was built without its `https` feature".to_owned())),
        took: began.elapsed(),
    };
    shared::process::report_leftovers();
    println!("{}", report::render(&config, &tools, &results));
}
