//! The load generators of the throughput cells: Debian's `wrk` (its Lua `done` hook prints the
//! figures as one JSON line), or, when wrk cannot be had or `BENCH_PROXY_CLIENT=hyper`, a small
//! client on hyper's HTTP/1.1 connection API. Both keep each client's connection alive, reopen it
//! when the server closes it, time each request from its first byte written to its last byte read,
//! and stop after a fixed duration.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST};
use hyper_util::rt::TokioIo;

use crate::procs::Spawned;

/// A request slower than this is an error (timed out).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many requests per client per cell (bounds the hyper client's memory).
const MAX_REQUESTS_PER_CLIENT: usize = 5_000_000;

/// What one load run measured.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Completed requests (any status).
    pub requests: u64,
    /// Socket errors, timeouts and non-2xx/3xx responses.
    pub errors: u64,
    pub secs: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs.max(1e-9)
    }
}

/// The wrk script: a `done` hook that prints the figures as JSON on one line.
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_RESULT {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// Writes the wrk script into `dir`; returns its path.
pub fn write_wrk_script(dir: &Path) -> Result<std::path::PathBuf, String> {
    let path = dir.join("report.lua");
    std::fs::write(&path, WRK_SCRIPT).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// `wrk -t1 -cCLIENTS -dSECS --timeout 2s -s SCRIPT http://ADDR/`: one wrk thread (the machine
/// has 2 cores, shared with the server under test).
pub fn wrk(
    wrk: &Path,
    script: &Path,
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
) -> Result<Stats, String> {
    let mut command = Command::new(wrk);
    command
        .arg("-t1")
        .arg(format!("-c{clients}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg(format!("--timeout={}s", REQUEST_TIMEOUT.as_secs()))
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/"));
    let mut run = Spawned::spawn("wrk", command)?;
    let status = run.wait_exit(duration + Duration::from_secs(15));
    let Some(status) = status else {
        return Err("wrk did not finish in time".into());
    };
    let text = run.log().text();
    let line = text.lines().find_map(|line| line.strip_prefix("BENCH_RESULT "));
    let Some(line) = line else {
        return Err(format!("wrk ({status}) printed no result: {}", run.log().tail(3)));
    };
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("wrk printed a bad result line ({e}): {line}"))?;
    let number = |key: &str| value[key].as_f64().ok_or_else(|| format!("wrk result without {key}: {line}"));
    Ok(Stats {
        requests: number("requests")? as u64,
        errors: number("errors")? as u64,
        secs: number("duration_us")? / 1e6,
        p50_us: number("p50_us")?,
        p99_us: number("p99_us")?,
    })
}

/// What one hyper client saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    requests: u64,
    errors: u64,
}

/// `clients` keep-alive connections on one thread (like `wrk -t1`), each sending `GET /` back to
/// back for `duration`.
pub fn hyper_load(addr: SocketAddr, clients: usize, duration: Duration) -> Result<Stats, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let began = Instant::now();
    let tallies = runtime.block_on(async move {
        let deadline = tokio::time::Instant::now() + duration;
        let tasks: Vec<_> = (0..clients).map(|_| tokio::spawn(client(addr, deadline))).collect();
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await);
        }
        tallies
    });
    let secs = began.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for tally in tallies {
        let tally = tally.map_err(|e| format!("a client task failed: {e}"))?;
        all.latencies_us.extend(tally.latencies_us);
        all.requests += tally.requests;
        all.errors += tally.errors;
    }
    all.latencies_us.sort_unstable();
    let percentile =
        |p: f64| crate::shared::report::percentile(&all.latencies_us, p).map_or(f64::NAN, f64::from);
    Ok(Stats {
        requests: all.requests,
        errors: all.errors,
        secs,
        p50_us: percentile(50.0),
        p99_us: percentile(99.0),
    })
}

/// One client: a connection, requests on it until the server closes it (then a new one), until
/// `deadline`.
async fn client(addr: SocketAddr, deadline: tokio::time::Instant) -> Tally {
    let mut tally = Tally::default();
    let host = addr.to_string();
    'connections: while tokio::time::Instant::now() < deadline
        && tally.latencies_us.len() < MAX_REQUESTS_PER_CLIENT
    {
        let stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            tally.errors += 1;
            continue;
        };
        let driver = tokio::spawn(connection);
        while tokio::time::Instant::now() < deadline && tally.latencies_us.len() < MAX_REQUESTS_PER_CLIENT {
            if sender.ready().await.is_err() {
                break;
            }
            let request = Request::get("/").header(HOST, &host).body(Empty::<Bytes>::new());
            let Ok(request) = request else {
                tally.errors += 1;
                break 'connections;
            };
            let started = Instant::now();
            let exchange = async {
                let response = sender.send_request(request).await?;
                let status = response.status();
                let closes = response
                    .headers()
                    .get(CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                response.into_body().collect().await?;
                Ok::<_, hyper::Error>((status, closes))
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(Ok((status, closes))) => {
                    tally.requests += 1;
                    if status.is_success() || status.is_redirection() {
                        let micros = started.elapsed().as_micros();
                        tally.latencies_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    } else {
                        tally.errors += 1;
                    }
                    if closes {
                        break;
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    tally.errors += 1;
                    break;
                }
            }
        }
        driver.abort();
    }
    tally
}
