//! Part 2, swaps: uvicorn serving a tiny ASGI app under a 2-client load (the kit's [`Load`]: a new
//! connection for every `GET /`), across `BENCH_PROXY_SWAPS` swaps, behind `--proxy` (uvicorn
//! binds the port devserve gives it) and behind `--listen` (uvicorn takes devserve's socket with
//! `--fd 3`). Each swap is a write to a file in the watched folder, and is done once the new
//! generation's `generation_ready` event has come and the old generation's `generation_stopped`.
//! Every failed request is counted: refused, reset or closed without a response, non-200, other.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Capture, Load, TempDir};
use crate::procs::Spawned;

/// Longest wait for gen 1 (a first `import uvicorn` can be slow), and for one swap.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);
/// Load before the first swap and after the last one.
const SETTLE: Duration = Duration::from_millis(500);
/// Load on the new generation alone between two swaps.
const BETWEEN: Duration = Duration::from_millis(200);

/// The ASGI app: `200 ok` to every request, and a lifespan that starts and stops cleanly.
const APP: &str = r#"# Written by devserve's proxy bench.
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"ok\n"})
"#;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Proxy,
    Listen,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Proxy, Mode::Listen];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Proxy => "--proxy (uvicorn --port {port})",
            Mode::Listen => "--listen (uvicorn --fd 3)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Mode::Proxy => "proxy",
            Mode::Listen => "listen",
        }
    }
}

/// What one mode's run saw.
#[derive(Default)]
pub struct SwapRun {
    pub swaps: usize,
    /// Generations that failed to start (`generation_failed`) during the run.
    pub failed_generations: usize,
    pub ok: usize,
    pub refused: usize,
    /// Reset, or closed before a response came.
    pub reset: usize,
    pub status: usize,
    pub other: usize,
    /// One failure of each kind as the client saw it.
    pub examples: Vec<String>,
    pub secs: f64,
}

impl SwapRun {
    pub fn failed(&self) -> usize {
        self.refused + self.reset + self.status + self.other
    }

    fn count(&mut self, failure: String) {
        let text = failure.to_ascii_lowercase();
        let kind = if text.starts_with("status:") {
            &mut self.status
        } else if text.contains("refused") {
            &mut self.refused
        } else if text.contains("reset")
            || text.contains("broken pipe")
            || text.contains("aborted")
            || text.starts_with("bad response: \"\"")
        {
            &mut self.reset
        } else {
            &mut self.other
        };
        *kind += 1;
        if self.examples.len() < 4 && !self.examples.iter().any(|e| same_kind(e, &failure)) {
            self.examples.push(failure);
        }
    }
}

fn same_kind(a: &str, b: &str) -> bool {
    a.split(':').next() == b.split(':').next()
}

/// Both modes, one after the other.
pub fn run(
    python: &Result<std::path::PathBuf, String>,
    devserve: &Path,
    swaps: usize,
) -> Vec<(Mode, Result<SwapRun, String>)> {
    Mode::ALL
        .iter()
        .map(|&mode| {
            let outcome = match python {
                Ok(python) => {
                    eprintln!("[bench] swaps: uvicorn behind {} …", mode.label());
                    let outcome = run_mode(mode, python, devserve, swaps);
                    match &outcome {
                        Ok(run) => eprintln!(
                            "[bench]   {} swaps, {} requests ok, {} failed ({:.0} s)",
                            run.swaps,
                            run.ok,
                            run.failed(),
                            run.secs
                        ),
                        Err(why) => eprintln!("[bench]   failed: {why}"),
                    }
                    outcome
                }
                Err(why) => Err(format!("skipped: {why}")),
            };
            (mode, outcome)
        })
        .collect()
}

fn run_mode(mode: Mode, python: &Path, devserve: &Path, swaps: usize) -> Result<SwapRun, String> {
    let dir = TempDir::new(&format!("bench-proxy-uvicorn-{}", mode.slug()));
    std::fs::write(dir.join("app.py"), APP).map_err(|e| format!("cannot write app.py: {e}"))?;
    let mut command = Command::new(devserve);
    match mode {
        Mode::Proxy => command.args(["--proxy", "127.0.0.1:0"]),
        Mode::Listen => command.args(["-l", "127.0.0.1:0"]),
    };
    command.args(["--log-format", "json", "-w"]).arg(dir.path()).arg("--");
    command.arg(python).args(["-m", "uvicorn", "app:app", "--no-access-log"]);
    match mode {
        Mode::Proxy => command.args(["--port", "{port}"]),
        Mode::Listen => command.args(["--fd", "3"]),
    };
    command.current_dir(dir.path()).env("NO_COLOR", "1").env("PYTHONDONTWRITEBYTECODE", "1");
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "RUST_LOG"] {
        command.env_remove(var);
    }
    let mut devserve = Spawned::spawn(&format!("devserve {}", mode.slug()), command)?;
    let kind = if mode == Mode::Proxy { "proxy_listening" } else { "listening" };
    let listening = devserve.wait_event(0, START_TIMEOUT, kind, |_| true)?;
    let addr = listening.item["address"].as_str().ok_or("no address in the listening event")?.to_owned();
    let first = devserve.wait_event(0, START_TIMEOUT, "generation_ready", |e| e["generation"] == 1)?;
    devserve.wait_serving(&addr, START_TIMEOUT)?;

    let began = Instant::now();
    let load = Load::start(&addr, 2);
    thread::sleep(SETTLE);
    let mut serving = generation(&first.item);
    let mut swapped = 0;
    let mut error = None;
    for n in 1..=swaps {
        match swap(&mut devserve, &dir, n, serving) {
            Ok(next) => {
                serving = next;
                swapped += 1;
            }
            Err(why) => {
                error = Some(format!("swap {n}: {why}"));
                break;
            }
        }
        thread::sleep(BETWEEN);
    }
    thread::sleep(SETTLE);
    let result = load.stop();
    let secs = began.elapsed().as_secs_f64();
    let failed_generations = count(devserve.log(), "generation_failed");
    devserve.stop();
    if let Some(error) = error {
        return Err(error);
    }
    let mut run = SwapRun { swaps: swapped, failed_generations, ok: result.ok, secs, ..SwapRun::default() };
    for failure in result.failures {
        run.count(failure);
    }
    Ok(run)
}

fn generation(event: &Value) -> u64 {
    event["generation"].as_u64().unwrap_or(0)
}

fn count(log: &Capture, kind: &str) -> usize {
    log.events().iter().filter(|e| e["event"] == kind).count()
}

/// Writes `touch.txt` in the watched folder, waits until a newer generation is ready and no other
/// is still starting, then until `serving` (the generation it replaces) has stopped. Returns the
/// generation now serving.
fn swap(devserve: &mut Spawned, dir: &Path, n: usize, serving: u64) -> Result<u64, String> {
    std::fs::write(dir.join("touch.txt"), format!("{n}\n")).map_err(|e| format!("cannot write: {e}"))?;
    let settled = |log: &Capture| {
        let events = log.events();
        let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
        let ready = events.iter().filter(|e| e["event"] == "generation_ready");
        let newest = ready.map(generation).max().unwrap_or(0);
        let starting = count("generation_starting");
        let ended = count("generation_ready") + count("generation_failed") + count("generation_superseded");
        (newest > serving && starting == ended).then_some(newest)
    };
    let next = devserve.wait_for(SWAP_TIMEOUT, "new generation ready", settled)?;
    devserve.wait_event(0, SWAP_TIMEOUT, "generation_stopped", |e| generation(e) == serving)?;
    Ok(next)
}
