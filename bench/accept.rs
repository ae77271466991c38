//! A process per connection: `devserve --accept` against `systemd-socket-activate --accept` and
//! Python's `socketserver.ForkingTCPServer`, in the same run.
//!
//! Run with `cargo bench --bench accept`. It builds `devserve` in release and serves a trivial echo
//! on 127.0.0.1 three ways:
//! - `devserve -l ADDR --accept=stdio -- cat` (a `cat` per connection, given it as stdin/stdout);
//! - `systemd-socket-activate -l ADDR --accept --inetd cat` (Debian's `systemd` package; the same
//!   `cat` per connection, given the same way);
//! - `python3 -c '…ForkingTCPServer…'`, whose forked child echoes one line (no exec).
//!
//! A client thread connects, writes `ping\n`, reads it back and closes, again and again, for
//! `BENCH_ACCEPT_SECS` (5) per cell after a warm-up, at 1 and `BENCH_ACCEPT_CLIENTS` (8) clients in
//! parallel, `BENCH_ACCEPT_ROUNDS` (3) rounds (the three servers run at once and each round
//! measures them in turn, so a busier moment falls on all alike), medians reported: connections per second and the p50
//! of one exchange (connect to close). A peer that is not installed is skipped with a line saying
//! so. The target (issue 17): devserve's connections per second ≥ the best peer's, at every client
//! count. It prints a Markdown report on stdout (progress on stderr); every process started is
//! stopped on every path (`shared/process.rs`), and the run ends with `no process left running`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/mod.rs"]
mod shared;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use shared::process::Guard;

/// The Python peer: a forked child per connection echoes one line.
const FORKING_SERVER: &str = r#"
import socketserver, sys
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline())
socketserver.ForkingTCPServer.allow_reuse_address = True
socketserver.ForkingTCPServer.request_queue_size = 1024
with socketserver.ForkingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo) as server:
    server.serve_forever()
"#;

/// A server running (its guard and address), or why not.
type Running = Result<(Guard, String), String>;

/// How to start one server on a port: `None` when it is not installed.
type Starter = Option<Box<dyn Fn(u16) -> Command>>;

struct Settings {
    secs: u64,
    rounds: usize,
    clients: usize,
}

/// One cell's medians.
#[derive(Clone, Copy)]
struct Cell {
    per_sec: f64,
    p50_us: u128,
    failed: usize,
}

fn main() {
    let settings = Settings {
        secs: shared::env::number("BENCH_ACCEPT_SECS", 5u64),
        rounds: shared::env::number("BENCH_ACCEPT_ROUNDS", 3usize),
        clients: shared::env::number("BENCH_ACCEPT_CLIENTS", 8usize),
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let devserve = shared::build::release_devserve_or_exit(&root);
    let work = common::temp_dir("bench-accept");
    let counts = [1, settings.clients];
    let mut rows: Vec<(String, Option<Vec<Cell>>, String)> = Vec::new();
    let peers: [(&str, Starter); 3] = [
        ("devserve --accept=stdio", {
            let (devserve, dir) = (devserve.clone(), work.path().to_path_buf());
            Some(Box::new(move |port| {
                let mut command = Command::new(&devserve);
                let addr = format!("127.0.0.1:{port}");
                command.current_dir(&dir).args(["-q", "-w", ".", "-l", &addr, "--accept=stdio", "--", "cat"]);
                command
            }))
        }),
        (
            "systemd-socket-activate --accept",
            shared::build::find_on_path("systemd-socket-activate", &["/usr/lib/systemd"]).map(|exe| {
                Box::new(move |port: u16| {
                    let mut command = Command::new(&exe);
                    command.args(["-l", &format!("127.0.0.1:{port}"), "--accept", "--inetd", "cat"]);
                    command
                }) as Box<dyn Fn(u16) -> Command>
            }),
        ),
        (
            "python3 ForkingTCPServer",
            shared::build::find_on_path("python3", &[]).map(|exe| {
                Box::new(move |port: u16| {
                    let mut command = Command::new(&exe);
                    command.args(["-c", FORKING_SERVER, &port.to_string()]);
                    command
                }) as Box<dyn Fn(u16) -> Command>
            }),
        ),
    ];
    // Every server runs at once, and each round measures them in turn: a slower or busier moment
    // of the machine falls on all of them alike.
    let mut running: Vec<(String, Running)> = Vec::new();
    for (name, start) in &peers {
        let started = match start {
            Some(start) => start_server(start.as_ref()),
            None => Err("not installed".into()),
        };
        running.push((name.to_string(), started));
    }
    let mut samples: Vec<Vec<Vec<Cell>>> = vec![vec![Vec::new(); counts.len()]; running.len()];
    for (index, &clients) in counts.iter().enumerate() {
        for (_, server) in &running {
            if let Ok((_, addr)) = server {
                run_clients(addr, clients, Duration::from_secs(1));
            }
        }
        for round in 0..settings.rounds {
            for (peer, (name, server)) in running.iter().enumerate() {
                if let Ok((_, addr)) = server {
                    eprintln!("[bench] {clients} client(s), round {}: {name}", round + 1);
                    samples[peer][index].push(run_clients(addr, clients, Duration::from_secs(settings.secs)));
                }
            }
        }
    }
    for ((name, server), cells) in running.iter_mut().zip(samples) {
        let row = match server {
            Ok((guard, _)) => match guard.check_alive() {
                Ok(()) => Some(cells.into_iter().map(median).collect()),
                Err(e) => {
                    rows.push((name.clone(), None, e));
                    continue;
                }
            },
            Err(e) => {
                rows.push((name.clone(), None, e.clone()));
                continue;
            }
        };
        rows.push((name.clone(), row, String::new()));
    }
    drop(running);
    shared::process::report_leftovers();
    println!("{}", render(&rows, &counts, &settings));
}

/// Starts a server on a free port and waits until it answers: its guard and address.
fn start_server(start: &dyn Fn(u16) -> Command) -> Running {
    let port = common::free_port();
    let mut guard =
        Guard::spawn("server", start(port), Duration::from_secs(5), 20).map_err(|e| e.to_string())?;
    let addr = format!("127.0.0.1:{port}");
    if !common::wait_until(common::WAIT, || exchange(&addr).is_ok()) {
        guard.check_alive()?;
        return Err("never answered".into());
    }
    Ok((guard, addr))
}

/// The rounds' medians: connections per second and p50 each on its own; failures summed.
fn median(mut rounds: Vec<Cell>) -> Cell {
    rounds.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
    let mut cell = rounds[rounds.len() / 2];
    let mut p50s: Vec<u128> = rounds.iter().map(|r| r.p50_us).collect();
    p50s.sort_unstable();
    cell.p50_us = p50s[p50s.len() / 2];
    cell.failed = rounds.iter().map(|r| r.failed).sum();
    cell
}

/// `clients` threads exchanging for `secs`: connections per second, p50, failures.
fn run_clients(addr: &str, clients: usize, secs: Duration) -> Cell {
    let until = Instant::now() + secs;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                let (mut times, mut failed) = (Vec::new(), 0);
                while Instant::now() < until {
                    let began = Instant::now();
                    match exchange(&addr) {
                        Ok(()) => times.push(began.elapsed().as_micros()),
                        Err(_) => failed += 1,
                    }
                }
                (times, failed)
            })
        })
        .collect();
    let (mut times, mut failed) = (Vec::new(), 0);
    for thread in threads {
        if let Ok((t, f)) = thread.join() {
            times.extend(t);
            failed += f;
        }
    }
    times.sort_unstable();
    Cell {
        per_sec: times.len() as f64 / secs.as_secs_f64(),
        p50_us: shared::report::percentile(&times, 0.5).unwrap_or(0),
        failed,
    }
}

/// One connection: `ping\n` out, the same back, close.
fn exchange(addr: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    stream.write_all(b"ping\n")?;
    let mut back = [0u8; 5];
    stream.read_exact(&mut back)?;
    if &back != b"ping\n" {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(())
}

fn render(rows: &[(String, Option<Vec<Cell>>, String)], counts: &[usize], settings: &Settings) -> String {
    let mut out = format!(
        "# A process per connection (`cargo bench --bench accept`)\n\n{}\n\n{} s per cell, {} rounds (medians); \
         an exchange is connect, `ping\\n` both ways, close.\n\n| Server |",
        shared::report::machine(),
        settings.secs,
        settings.rounds
    );
    for clients in counts {
        out.push_str(&format!(" {clients} client(s): conn/s | p50 |"));
    }
    out.push_str("\n|---|");
    for _ in counts {
        out.push_str("---|---|");
    }
    out.push('\n');
    let best_peer = |index: usize| {
        rows.iter()
            .skip(1)
            .filter_map(|(_, cells, _)| cells.as_ref().map(|c| c[index].per_sec))
            .fold(None, |best: Option<f64>, v| Some(best.map_or(v, |b| b.max(v))))
    };
    for (name, cells, why) in rows {
        out.push_str(&format!("| {name} |"));
        match cells {
            Some(cells) => {
                for cell in cells {
                    let failed =
                        if cell.failed > 0 { format!(" ({} failed)", cell.failed) } else { String::new() };
                    out.push_str(&format!(" {:.0}{failed} | {} µs |", cell.per_sec, cell.p50_us));
                }
            }
            None => {
                for _ in counts {
                    out.push_str(&format!(" skipped: {why} | – |"));
                }
            }
        }
        out.push('\n');
    }
    out.push('\n');
    if let Some(Some(ours)) = rows.first().map(|(_, cells, _)| cells.as_ref()) {
        for (index, clients) in counts.iter().enumerate() {
            match best_peer(index) {
                Some(best) => {
                    let ratio = ours[index].per_sec / best;
                    let verdict = if ratio >= 1.0 { "PASS" } else { "MISS" };
                    out.push_str(&format!(
                        "- {verdict}: {clients} client(s): devserve {:.0} conn/s = {ratio:.2}× the best peer ({best:.0})\n",
                        ours[index].per_sec
                    ));
                }
                None => out.push_str(&format!("- SKIP: {clients} client(s): no peer could be measured\n")),
            }
        }
    }
    out
}
