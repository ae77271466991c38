//! A real-process soak of the one promise a dev runner must keep: the last save is what the page
//! shows. The real binary runs behind its front door (`--proxy`) over the Python fixture, which
//! serves the content of a version file it reads at start; bursts of saves of that file come at
//! random intervals (some immediate, some 150 ms apart, some with a SIGHUP in between), and after
//! each burst `GET /` through the proxy must answer the last version written within 30 s.
//!
//! Each burst also picks how long the app takes to start listening (0, 100 or 250 ms, a sleep
//! before the fixture), so saves land both after and during the starts of the generations they
//! cause. The run is seeded: the seed is printed first (`DEVSERVE_SOAK_SEED=N` replays the same
//! bursts; the machine's timing still varies). It lasts `DEVSERVE_SOAK_SECS` (default 25) of
//! bursts, plus at most one 30 s wait: at most a minute on 2 cores.
//!
//! A lost save with the signature of the cause already known (devserve muted the file as a
//! reload loop at some point, and did not react to the burst's last save at all: see
//! `Kind::KnownLoopGuard` in `src/supervisor/stress.rs`) is counted and reported, and the run
//! goes on after a save that is not muted; `DEVSERVE_SOAK_STRICT=1` fails on it too. Any other
//! lost save fails the test at once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// How long a burst's last version may take to be served.
const SERVED_WITHIN: Duration = Duration::from_secs(30);

/// splitmix64, as in the supervisor's stress test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One step of a burst.
#[derive(Debug, Clone)]
enum Step {
    Save(String),
    Hup,
    Pause(Duration),
}

fn random_burst(rng: &mut Rng, burst: usize) -> Vec<Step> {
    let saves = 1 + rng.below(8) as usize;
    // The burst's rhythm: immediate saves, the 150 ms of the Node check, or anything up to 400 ms.
    let rhythm = rng.below(4);
    let mut steps = Vec::new();
    for n in 0..saves {
        if n > 0 {
            let gap = match rhythm {
                0 => 0,
                1 => 150,
                2 => 60 + rng.below(90),
                _ => rng.below(400),
            };
            if gap > 0 {
                steps.push(Step::Pause(Duration::from_millis(gap)));
            }
            if rng.below(6) == 0 {
                steps.push(Step::Hup);
            }
        }
        steps.push(Step::Save(format!("b{burst}-{n}")));
    }
    if rng.below(5) == 0 {
        steps.push(Step::Hup);
    }
    steps
}

/// The version `GET /` answers through the proxy, or what went wrong.
fn served(addr: &str) -> String {
    match http_get(addr, "/") {
        Ok(body) => field(&body, "version"),
        Err(e) => format!("({e})"),
    }
}

/// Waits until `GET /` answers `version`; returns what it answered last.
fn wait_served(addr: &str, version: &str, within: Duration) -> Result<(), String> {
    let mut last = String::new();
    let ok = wait_until(within, || {
        last = served(addr);
        last == version
    });
    if ok { Ok(()) } else { Err(last) }
}

/// Waits until `GET /` answers `version`, for [`SERVED_WITHIN`]. The error: the last answer, and
/// whether the loss has the known cause's signature: devserve muted the file at some point, and
/// the burst ended with a save (`last_save`, when it was written) that devserve did not react
/// to at all (no `change_detected` since). Then, unless `strict`, it gives up 2 s after that save
/// once nothing is starting.
fn wait_for(
    devserve: &Devserve,
    addr: &str,
    version: &str,
    last_save: Option<Instant>,
    strict: bool,
) -> Result<(), (String, bool)> {
    let deadline = Instant::now() + SERVED_WITHIN;
    let dropped = || {
        last_save.is_some_and(|at| {
            !devserve.capture().lines().iter().any(|line| {
                line.at >= at
                    && parse_event(&line.text).is_some_and(|e| {
                        e["event"] == "change_detected"
                            && e["cause"].as_str().is_some_and(|c| c.contains("version"))
                    })
            })
        })
    };
    loop {
        let answer = served(addr);
        if answer == version {
            return Ok(());
        }
        let known = devserve.count_events("loop_muted", |_| true) > 0 && dropped();
        let given_up = known
            && !strict
            && last_save.is_some_and(|at| at.elapsed() > Duration::from_secs(2))
            && settled(devserve);
        if given_up || Instant::now() >= deadline {
            return Err((answer, known));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every generation started so far has ended: ready, failed or superseded.
fn settled(devserve: &Devserve) -> bool {
    let count = |kind: &str| devserve.count_events(kind, |_| true);
    count("generation_starting")
        == count("generation_ready") + count("generation_failed") + count("generation_superseded")
}

fn write_version(dir: &Path, version: &str) {
    write(&dir.join("version"), version);
}

#[test]
fn the_last_save_is_always_served() {
    let seed = std::env::var("DEVSERVE_SOAK_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) ^ now_nanos());
    let secs: u64 =
        std::env::var("DEVSERVE_SOAK_SECS").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(25);
    // The loop guard's lost saves are fixed (it keeps muted changes): every lost save fails.
    let strict = true;
    eprintln!("soak seed {seed} (DEVSERVE_SOAK_SEED={seed} replays it), {secs}s of bursts");
    let mut rng = Rng(seed);

    let dir = temp_dir("soak");
    let knobs = temp_dir("soak-knobs");
    let delay_file = knobs.join("start-delay");
    write(&delay_file, "0");
    let fixture = Fixture::python()
        .versioned(dir.path(), "v0")
        .in_shell(&format!("sleep \"$(cat '{}')\";", delay_file.display()));
    let watch = dir.to_str().expect("utf-8 path");
    let mut args = vec!["--proxy", "127.0.0.1:0", "--log-format", "json", "-w", watch, "--"];
    let argv = fixture.argv();
    args.extend(argv.iter().copied());
    let mut env = fixture.env_pairs();
    env.push(("FIXTURE_BIND_PORT_ENV", "1"));
    let devserve = Devserve::start(dir.path(), &args, &env);
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    if let Err(last) = wait_served(&addr, "v0", SERVED_WITHIN) {
        panic!("seed {seed}: v0 never served (last answer: {last})\n{}", devserve.output());
    }

    let started = Instant::now();
    let (mut bursts, mut saves, mut hups, mut known) = (0, 0, 0, Vec::new());
    let mut previous_mark = devserve.capture().len();
    while started.elapsed() < Duration::from_secs(secs) {
        let delay = ["0", "0.1", "0.25"][rng.below(3) as usize];
        write(&delay_file, delay);
        let steps = random_burst(&mut rng, bursts);
        let mark = devserve.capture().len();
        let burst_started = Instant::now();
        let mut last = String::new();
        // When the burst's last step, a save, was written (not after a HUP: that reloads anyway).
        let mut last_save = None;
        for step in &steps {
            match step {
                Step::Save(version) => {
                    last_save = Some(Instant::now());
                    write_version(dir.path(), version);
                    last.clone_from(version);
                    saves += 1;
                }
                Step::Hup => {
                    devserve.signal("HUP");
                    last_save = None;
                    hups += 1;
                }
                Step::Pause(gap) => std::thread::sleep(*gap),
            }
        }
        bursts += 1;
        let outcome = wait_for(&devserve, &addr, &last, last_save, strict);
        if let Err((answer, known_cause)) = outcome {
            let lines: Vec<String> = devserve.capture().lines()[previous_mark..]
                .iter()
                .map(|l| format!("    {}", l.text))
                .collect();
            let what = format!(
                "seed {seed}, burst {bursts} (app start-up delay {delay}s): {steps:?}\n  {last} not served \
                 {:.1}s after the burst began; GET / answers {answer}\n  devserve since the burst before:\n{}",
                burst_started.elapsed().as_secs_f64(),
                lines.join("\n")
            );
            if !known_cause || strict {
                panic!("lost save: {what}");
            }
            eprintln!("known lost save (loop guard): {what}");
            known.push(bursts);
            // A save well after the last start and its readiness is the user's again.
            std::thread::sleep(Duration::from_millis(1200));
            let again = format!("b{bursts}-again");
            write_version(dir.path(), &again);
            if let Err(answer) = wait_served(&addr, &again, SERVED_WITHIN) {
                panic!(
                    "seed {seed}: {again} not served after the muted burst: {answer}\n{}",
                    devserve.output()
                );
            }
        }
        previous_mark = mark;
    }
    eprintln!(
        "soak seed {seed}: {bursts} bursts, {saves} saves, {hups} HUPs in {:.1}s; lost to the known loop \
         guard: {} burst(s) {known:?}",
        started.elapsed().as_secs_f64(),
        known.len()
    );
}

/// Nanoseconds of the wall clock, for a fresh seed.
fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
