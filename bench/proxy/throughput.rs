//! Part 1, throughput: requests/s and p50/p99 latency of `GET /` on the fixture app reached
//! directly, through devserve's front door and through nginx, at 1 and 16 keep-alive clients,
//! and devserve's RSS under that load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::client::{Stats, hyper_load, write_wrk_script, wrk};
use crate::common::{TempDir, descendants, status_kib};
use crate::config::{ClientKind, Config};
use crate::report::median;
use crate::servers::{self, Server};
use crate::setup::Tools;

/// The concurrencies measured.
pub const CLIENTS: [usize; 2] = [1, 16];
/// An unrecorded load run before each measured one.
const WARM_UP: Duration = Duration::from_secs(1);
/// How often RSS is sampled during the cells with the most clients (16).
const RSS_EVERY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Peer {
    Direct,
    Devserve,
    Nginx,
}

impl Peer {
    pub const ALL: [Peer; 3] = [Peer::Direct, Peer::Devserve, Peer::Nginx];

    pub fn label(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::Devserve => "devserve --proxy",
            Peer::Nginx => "nginx proxy_pass",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Median figures of one cell (one peer at one concurrency) over the rounds.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Summed over the rounds.
    pub errors: u64,
    pub requests: u64,
}

/// What part 1 measured.
pub struct Throughput {
    /// `cells[c][peer]`: `c` indexes [`CLIENTS`]; `Err(why)` when that peer could not run.
    pub cells: Vec<Vec<Result<Figures, String>>>,
    /// devserve's VmRSS before the load, and the largest sample during the 16-client cells (KiB).
    pub devserve_rss: Result<(u64, u64), String>,
    /// nginx's master and worker VmRSS summed, the same way.
    pub nginx_rss: Result<(u64, u64), String>,
    /// Which load generator ran.
    pub client: String,
}

/// How the clients run: wrk with its script, or the hyper client.
enum Generator {
    Wrk { wrk: std::path::PathBuf, script: std::path::PathBuf },
    Hyper,
}

impl Generator {
    fn run(&self, addr: SocketAddr, clients: usize, duration: Duration) -> Result<Stats, String> {
        match self {
            Generator::Wrk { wrk: path, script } => wrk(path, script, addr, clients, duration),
            Generator::Hyper => hyper_load(addr, clients, duration),
        }
    }
}

pub fn run(config: &Config, tools: &Tools) -> Result<Throughput, String> {
    let scratch = TempDir::new("bench-proxy");
    let nginx_dir = TempDir::new("bench-proxy-nginx");
    let (generator, client) = match (&tools.wrk, config.client) {
        (Ok(path), ClientKind::Wrk) => {
            let script = write_wrk_script(&scratch)?;
            let version = crate::setup::version_line(&tools.wrk, &["--version"]);
            (Generator::Wrk { wrk: path.clone(), script }, format!("wrk -t1 ({version})"))
        }
        (Err(why), ClientKind::Wrk) => {
            eprintln!("[bench] {why}; the hyper client stands in for wrk");
            (Generator::Hyper, format!("the bench's hyper client (wrk: {why})"))
        }
        (_, ClientKind::Hyper) => {
            (Generator::Hyper, "the bench's hyper client (BENCH_PROXY_CLIENT=hyper)".into())
        }
    };
    eprintln!("[bench] throughput: starting the fixture app, devserve --proxy and nginx");
    let direct = servers::direct(&tools.fixture, &scratch)?;
    let devserve = servers::devserve(&tools.devserve, &tools.fixture, &scratch)?;
    let nginx = match &tools.nginx {
        Ok(path) => servers::nginx(path, &nginx_dir, direct.addr),
        Err(why) => Err(why.clone()),
    };
    if let Err(why) = &nginx {
        eprintln!("[bench] nginx skipped: {why}");
    }
    let mut servers: Vec<Result<Server, String>> = vec![Ok(direct), Ok(devserve), nginx];
    let pid = |peer: Peer, servers: &[Result<Server, String>]| {
        servers[peer.index()].as_ref().ok().map(|s| s.process.pid())
    };
    let idle = |peer| pid(peer, &servers).and_then(|pid| rss_kib(peer, pid));
    let (devserve_idle, nginx_idle) = (idle(Peer::Devserve), idle(Peer::Nginx));

    let duration = Duration::from_secs(config.secs);
    let mut runs: Vec<Vec<Vec<Stats>>> = vec![vec![Vec::new(); Peer::ALL.len()]; CLIENTS.len()];
    let mut failures: Vec<Vec<Option<String>>> = vec![vec![None; Peer::ALL.len()]; CLIENTS.len()];
    let mut peaks = [0u64; 3];
    for round in 1..=config.rounds {
        for (c, &clients) in CLIENTS.iter().enumerate() {
            for peer in Peer::ALL {
                let Ok(server) = &mut servers[peer.index()] else { continue };
                if failures[c][peer.index()].is_some() {
                    continue;
                }
                let outcome = measure(&generator, server, peer, clients, duration);
                match outcome {
                    Ok((stats, peak)) => {
                        eprintln!(
                            "[bench]   round {round}/{} · {clients:>2} client(s) · {:<16} {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  errors {}",
                            config.rounds,
                            peer.label(),
                            stats.rps(),
                            stats.p50_us,
                            stats.p99_us,
                            stats.errors
                        );
                        if Some(&clients) == CLIENTS.last() {
                            peaks[peer.index()] = peaks[peer.index()].max(peak.unwrap_or(0));
                        }
                        runs[c][peer.index()].push(stats);
                    }
                    Err(why) => {
                        eprintln!("[bench]   {clients} client(s) · {}: failed: {why}", peer.label());
                        failures[c][peer.index()] = Some(why);
                    }
                }
            }
        }
    }
    let cells = (0..CLIENTS.len())
        .map(|c| {
            Peer::ALL
                .iter()
                .map(|&peer| {
                    if let Err(why) = &servers[peer.index()] {
                        return Err(format!("skipped: {why}"));
                    }
                    if let Some(why) = &failures[c][peer.index()] {
                        return Err(format!("failed: {why}"));
                    }
                    summarize(&runs[c][peer.index()]).ok_or_else(|| "no run".to_owned())
                })
                .collect()
        })
        .collect();
    let rss = |peer: Peer, idle: Option<u64>, servers: &[Result<Server, String>]| match &servers[peer.index()]
    {
        Err(why) => Err(format!("skipped: {why}")),
        Ok(_) => match (idle, peaks[peer.index()]) {
            (Some(idle), peak) if peak > 0 => Ok((idle, peak)),
            _ => Err("no RSS sample".to_owned()),
        },
    };
    let result = Throughput {
        devserve_rss: rss(Peer::Devserve, devserve_idle, &servers),
        nginx_rss: rss(Peer::Nginx, nginx_idle, &servers),
        cells,
        client,
    };
    for server in servers.iter_mut().rev().flatten() {
        server.process.stop();
    }
    Ok(result)
}

/// One cell: a warm-up, then the measured run, with the peer's RSS sampled meanwhile.
fn measure(
    generator: &Generator,
    server: &mut Server,
    peer: Peer,
    clients: usize,
    duration: Duration,
) -> Result<(Stats, Option<u64>), String> {
    generator.run(server.addr, clients, WARM_UP)?;
    server.process.check_alive()?;
    let sampler = (peer != Peer::Direct).then(|| RssSampler::start(peer, server.process.pid()));
    let stats = generator.run(server.addr, clients, duration);
    let peak = sampler.map(RssSampler::stop);
    server.process.check_alive()?;
    let stats = stats?;
    if stats.requests == 0 {
        return Err("no request completed".into());
    }
    Ok((stats, peak.flatten()))
}

fn summarize(runs: &[Stats]) -> Option<Figures> {
    let pick = |f: fn(&Stats) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Some(Figures {
        rps: pick(Stats::rps)?,
        p50_us: pick(|s| s.p50_us)?,
        p99_us: pick(|s| s.p99_us)?,
        errors: runs.iter().map(|s| s.errors).sum(),
        requests: runs.iter().map(|s| s.requests).sum(),
    })
}

/// VmRSS of devserve's own pid, or of nginx's master and worker together (KiB).
fn rss_kib(peer: Peer, pid: i32) -> Option<u64> {
    match peer {
        Peer::Nginx => descendants(pid).into_iter().map(|pid| status_kib(pid, "VmRSS")).sum(),
        _ => status_kib(pid, "VmRSS"),
    }
}

/// A thread reading a peer's RSS every [`RSS_EVERY`] and keeping the largest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Option<u64>>,
}

impl RssSampler {
    fn start(peer: Peer, pid: i32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut peak = None;
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(peer, pid) {
                    peak = Some(peak.unwrap_or(0).max(kib));
                }
                thread::sleep(RSS_EVERY);
            }
            peak
        });
        RssSampler { stop, thread }
    }

    fn stop(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}
