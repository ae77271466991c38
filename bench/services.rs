//! Services: a stack of three (two routed, one not) in one devserve, against the same stack
//! under honcho, in the same run.
//!
//! Run with `cargo bench --bench services`. It builds `devserve` in release and runs, in a scratch
//! folder, `api` and `web` (the Python fixture on its port, its version in `NAME/VERSION`) and
//! `worker` (a shell that prints its version and sleeps):
//! - devserve: one `devserve.toml`, `web` at `/`, `api` at `/api` on one front door, `worker`
//!   unrouted, each watching its folder;
//! - honcho (`python3 -m honcho`, when installed: `pip install honcho`): the same three processes in a
//!   Procfile, `web` and `api` on ports of their own. honcho watches nothing and restarts no single
//!   process, so a save there is what its users do: stop the stack and start it again (process-compose
//!   restarts one process in place, with the same refused connections while it is down).
//!
//! Two client threads request `web` and `api` (a new connection each, 2 s timeout) while
//! `BENCH_SERVICES_SAVES` (20) saves go round robin to `api`, `web`, `worker`; each save waits
//! until that service serves the new version (for `worker`: devserve's `generation_ready`, or the
//! version line under honcho), then 300 ms. Reported per tool: requests answered and failed, save
//! → fresh p50 and max per service, and after 5 s idle the tool's own resident memory (VmRSS, the
//! apps excluded) and CPU time over 5 s more. Targets (issue 19): devserve fails no request, its RSS
//! is at most 8 MiB + 1 MiB per service, and it uses no CPU while idle.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/mod.rs"]
mod shared;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shared::process::Guard;

const SERVICES: [&str; 3] = ["api", "web", "worker"];

/// What a run under load gave: save → fresh per service (ms, sorted), requests answered, failed.
type Driven = (Vec<(String, Vec<u128>)>, usize, usize);

/// One tool's figures.
struct Row {
    name: String,
    ok: usize,
    failed: usize,
    /// Per service: save → fresh, in ms, sorted.
    fresh: Vec<(String, Vec<u128>)>,
    rss_kib: Option<u64>,
    idle_ticks: Option<u64>,
}

fn main() {
    let saves = shared::env::number("BENCH_SERVICES_SAVES", 20usize);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let devserve = shared::build::release_devserve_or_exit(&root);
    let mut rows: Vec<Result<Row, (String, String)>> = Vec::new();
    rows.push(run_devserve(&devserve, saves).map_err(|e| ("devserve".into(), e)));
    let honcho = Command::new("python3").args(["-m", "honcho", "--version"]).output();
    if honcho.is_ok_and(|o| o.status.success()) {
        rows.push(run_honcho(saves).map_err(|e| ("honcho".into(), e)));
    } else {
        rows.push(Err(("honcho".into(), "not installed (pip install honcho)".into())));
    }
    shared::process::report_leftovers();
    println!("{}", render(&rows, saves));
}

/// The stack's folders and versions in a scratch folder.
fn stack(name: &str) -> common::TempDir {
    let dir = common::temp_dir(name);
    for service in SERVICES {
        std::fs::create_dir_all(dir.path().join(service)).expect("service folder");
        common::write(&dir.path().join(service).join("VERSION"), &format!("{service}-0"));
    }
    dir
}

/// The worker: prints its version, then sleeps.
const WORKER: &str = "echo worker-version=$(cat worker/VERSION); exec sleep 100000";

fn run_devserve(devserve: &Path, saves: usize) -> Result<Row, String> {
    let dir = stack("bench-services-devserve");
    let fixture = common::python_fixture();
    let mut text = "proxy = \"127.0.0.1:0\"\nlog-format = \"json\"\n".to_owned();
    for (name, route) in [("api", "route = \"/api\"\nstrip-prefix = true"), ("web", "route = \"/\"")] {
        text.push_str(&format!(
            "\n[services.{name}]\nwatch = [\"{name}\"]\ncommand = [\"python3\", \"{}\"]\n{route}\n\
             [services.{name}.env]\nFIXTURE_BIND_PORT_ENV = \"1\"\nFIXTURE_VERSION_FILE = \"{name}/VERSION\"\n",
            fixture.display()
        ));
    }
    text.push_str(&format!(
        "\n[services.worker]\nwatch = [\"worker\"]\ncommand = [\"sh\", \"-c\", \"{WORKER}\"]\n"
    ));
    common::write(&dir.path().join("devserve.toml"), &text);
    let mut command = Command::new(devserve);
    command.current_dir(dir.path());
    let mut guard =
        Guard::spawn("devserve", command, Duration::from_secs(10), 30).map_err(|e| e.to_string())?;
    let front = guard.wait_event(0, common::WAIT, "proxy_listening", |_| true)?;
    let addr = front.item["address"].as_str().unwrap_or_default().to_owned();
    for service in SERVICES {
        guard.wait_event(0, common::WAIT, "generation_ready", |e| e["service"] == service)?;
    }
    let routes = [("web", addr.clone(), "/"), ("api", addr.clone(), "/api")];
    let pid = guard.pid();
    let fresh = drive(&dir, saves, &routes, |service, version, served| {
        if service != "worker" {
            return served;
        }
        // `worker-N` is the worker's (N / 3)th save: its generations ready are one more.
        let n: usize = version.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let ready = guard
            .log()
            .events()
            .iter()
            .filter(|e| e["event"] == "generation_ready" && e["service"] == "worker")
            .count();
        ready > n / SERVICES.len()
    });
    let (fresh, ok, failed) = fresh?;
    let (rss_kib, idle_ticks) = idle(pid);
    guard.check_alive()?;
    Ok(Row { name: "devserve (one front door)".into(), ok, failed, fresh, rss_kib, idle_ticks })
}

fn run_honcho(saves: usize) -> Result<Row, String> {
    let dir = stack("bench-services-honcho");
    let fixture = common::python_fixture();
    let (web_port, api_port) = (common::free_port(), common::free_port());
    let procfile = format!(
        "web: PORT={web_port} FIXTURE_BIND_PORT_ENV=1 FIXTURE_VERSION_FILE=web/VERSION python3 {f}\n\
         api: PORT={api_port} FIXTURE_BIND_PORT_ENV=1 FIXTURE_VERSION_FILE=api/VERSION python3 {f}\n\
         worker: {WORKER}\n",
        f = fixture.display()
    );
    common::write(&dir.path().join("Procfile"), &procfile);
    let start = || {
        let mut command = Command::new("python3");
        command.current_dir(dir.path()).args(["-m", "honcho", "start"]);
        Guard::spawn("honcho", command, Duration::from_secs(10), 30).map_err(|e| e.to_string())
    };
    let guard = start()?;
    let web = format!("127.0.0.1:{web_port}");
    let api = format!("127.0.0.1:{api_port}");
    let routes = [("web", web.clone(), "/"), ("api", api.clone(), "/")];
    let slot = std::cell::RefCell::new(Some(guard));
    for addr in [&web, &api] {
        if !common::wait_until(common::WAIT, || common::http_get(addr, "/").is_ok()) {
            if let Some(guard) = slot.borrow_mut().as_mut() {
                guard.check_alive()?;
            }
            return Err(format!("{addr} never answered"));
        }
    }
    let mut restarts = 0usize;
    // A save: the whole stack stops and starts again (honcho restarts no single process).
    let mut restart = || {
        restarts += 1;
        drop(slot.borrow_mut().take());
        match start() {
            Ok(guard) => {
                *slot.borrow_mut() = Some(guard);
                true
            }
            Err(_) => false,
        }
    };
    // The worker is fresh once the new stack's worker printed the saved version.
    let mut fresh = |service: &str, version: &str, served: bool| {
        if service != "worker" {
            return served;
        }
        let line = format!("worker-version={version}");
        slot.borrow().as_ref().is_some_and(|guard| guard.log().find(0, |l| l.contains(&line)).is_some())
    };
    let fresh = drive_inner(&dir, saves, &routes, &mut fresh, &mut restart);
    let (fresh, ok, failed) = fresh?;
    let pid = slot.borrow().as_ref().map(Guard::pid).ok_or("honcho could not be started again")?;
    let (rss_kib, idle_ticks) = idle(pid);
    Ok(Row {
        name: format!("honcho (two origins; the stack restarted per save, {restarts} times)"),
        ok,
        failed,
        fresh,
        rss_kib,
        idle_ticks,
    })
}

/// Load on `routes` while `saves` saves go round robin to the services; `fresh(service, version,
/// served)` says whether a save is fresh (`served`: its route answers the new version).
fn drive(
    dir: &common::TempDir,
    saves: usize,
    routes: &[(&str, String, &str)],
    mut fresh: impl FnMut(&str, &str, bool) -> bool,
) -> Result<Driven, String> {
    drive_inner(dir, saves, routes, &mut fresh, &mut || true)
}

fn drive_inner(
    dir: &common::TempDir,
    saves: usize,
    routes: &[(&str, String, &str)],
    fresh: &mut dyn FnMut(&str, &str, bool) -> bool,
    restart: &mut dyn FnMut() -> bool,
) -> Result<Driven, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let threads: Vec<_> = routes
        .iter()
        .map(|(_, addr, path)| {
            let (stop, ok, failed, addr, path) =
                (stop.clone(), ok.clone(), failed.clone(), addr.clone(), (*path).to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match common::http_get(&addr, &path) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let mut times: Vec<(String, Vec<u128>)> =
        SERVICES.iter().map(|s| ((*s).to_owned(), Vec::new())).collect();
    let mut outcome = Ok(());
    for n in 1..=saves {
        let service = SERVICES[(n - 1) % SERVICES.len()];
        let version = format!("{service}-{n}");
        let began = Instant::now();
        common::write(&dir.path().join(service).join("VERSION"), &version);
        if !restart() {
            outcome = Err("the stack could not be started again".to_owned());
            break;
        }
        let route = routes.iter().find(|(name, _, _)| *name == service);
        let done = common::wait_until(common::WAIT, || {
            let served = route.is_some_and(|(_, addr, path)| {
                common::http_get(addr, path).is_ok_and(|body| common::field(&body, "version") == version)
            });
            fresh(service, &version, served)
        });
        if !done {
            outcome = Err(format!("{version} never served"));
            break;
        }
        if let Some((_, list)) = times.iter_mut().find(|(name, _)| name == service) {
            list.push(began.elapsed().as_millis());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    outcome?;
    for (_, list) in &mut times {
        list.sort_unstable();
    }
    Ok((times, ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed)))
}

/// After 5 s of quiet: the process's resident memory, and its CPU ticks over 5 s more.
fn idle(pid: i32) -> (Option<u64>, Option<u64>) {
    std::thread::sleep(Duration::from_secs(5));
    let rss = common::status_kib(pid, "VmRSS");
    let before = common::cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(5));
    let after = common::cpu_ticks(pid);
    (rss, before.zip(after).map(|(b, a)| a.saturating_sub(b)))
}

fn render(rows: &[Result<Row, (String, String)>], saves: usize) -> String {
    let mut out = format!(
        "# Services (`cargo bench --bench services`)\n\n{}\n\n{saves} saves round robin over api, web, worker \
         under a 2-client load (web and api); save → fresh p50 / max per service.\n\n\
         | Tool | answered | failed | api | web | worker | RSS | idle CPU (5 s) |\n|---|---|---|---|---|---|---|---|\n",
        shared::report::machine()
    );
    for row in rows {
        match row {
            Ok(row) => {
                let cell = |name: &str| {
                    row.fresh
                        .iter()
                        .find(|(service, _)| service == name)
                        .and_then(|(_, times)| {
                            Some(format!(
                                "{} / {} ms",
                                shared::report::percentile(times, 0.5)?,
                                times.last()?
                            ))
                        })
                        .unwrap_or_else(|| "–".into())
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    row.name,
                    row.ok,
                    row.failed,
                    cell("api"),
                    cell("web"),
                    cell("worker"),
                    row.rss_kib.map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                    row.idle_ticks.map_or("–".into(), |t| format!("{t} ticks")),
                ));
            }
            Err((name, why)) => out.push_str(&format!("| {name} | skipped: {why} | | | | | | |\n")),
        }
    }
    if let Some(Ok(ours)) = rows.first() {
        let budget = 8 * 1024 + 1024 * SERVICES.len() as u64;
        let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
        out.push_str(&format!(
            "\n- {}: devserve failed {} requests (target 0)\n",
            verdict(ours.failed == 0),
            ours.failed
        ));
        if let Some(rss) = ours.rss_kib {
            out.push_str(&format!(
                "- {}: devserve's RSS {:.1} MiB (target ≤ 8 MiB + 1 MiB per service = {} MiB)\n",
                verdict(rss <= budget),
                rss as f64 / 1024.0,
                budget / 1024
            ));
        }
        if let Some(ticks) = ours.idle_ticks {
            out.push_str(&format!(
                "- {}: devserve's idle CPU {ticks} ticks in 5 s (target 0)\n",
                verdict(ticks == 0)
            ));
        }
    }
    out
}
