//! The load generators of the throughput cells: Debian's `wrk` (its Lua `done` hook prints the
//! figures as one JSON line), or, when wrk cannot be had or `BENCH_PROXY_CLIENT=hyper`, a small
//! client on hyper's HTTP/1.1 connection API. Both keep each client's connection alive, reopen it
//! when the server closes it, time each request from its first byte written to its last byte read,
//! and stop after a fixed duration.
//!
//! The two-writes part has its own client, [`sequential`]: one request after another on plain std
//! sockets, timed one by one.

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

/// What [`sequential`] measured.
pub struct Sequence {
    /// One per measured request that got a 200 (µs, from the first byte written, or from the
    /// connect for a fresh connection, to the last body byte read).
    pub latencies_us: Vec<u32>,
    /// Requests that failed (any error, or a status other than 200); each is followed by a new
    /// connection.
    pub errors: u64,
    /// Connections opened, the warm-up's included.
    pub connections: u64,
    /// The last failure, as the client saw it.
    pub last_error: Option<String>,
}

/// After this many failures in a row, [`sequential`] gives up.
const MAX_FAILURES_IN_A_ROW: u64 = 5;

/// How [`sequential`] uses its connections.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// One kept-alive connection, as a browser or `curl` keeps it (its ACKs delayed as the kernel
    /// sees fit); a new one only when the server closes it or a request fails.
    KeptAlive,
    /// The same, with `TCP_QUICKACK` re-armed after every read: each segment is acknowledged at once.
    QuickAck,
    /// A new connection for every request (`Connection: close`).
    Fresh,
}

/// `GET /` one request after another on plain std sockets (`Host: ADDR`, `TCP_NODELAY` on):
/// `warm_up` unrecorded ones, then `requests` timed ones, on connections used as `connections` says.
pub fn sequential(
    addr: SocketAddr,
    warm_up: usize,
    requests: usize,
    connections: Connections,
) -> Result<Sequence, String> {
    let fresh = connections == Connections::Fresh;
    let quick_ack = connections == Connections::QuickAck;
    let close = if fresh { "Connection: close\r\n" } else { "" };
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: devserve-bench\r\n{close}\r\n");
    let mut sequence =
        Sequence { latencies_us: Vec::with_capacity(requests), errors: 0, connections: 0, last_error: None };
    let mut stream: Option<std::net::TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut in_a_row = 0;
    for n in 0..warm_up + requests {
        let started = Instant::now();
        let kept = stream.take();
        if kept.is_none() {
            sequence.connections += 1;
        }
        let outcome = kept.map_or_else(|| connect(addr), Ok).and_then(|mut conn| {
            let keep = exchange(&mut conn, request.as_bytes(), &mut buf, quick_ack)?;
            Ok((keep && !fresh).then_some(conn))
        });
        let elapsed = started.elapsed();
        match outcome {
            Ok(conn) => {
                in_a_row = 0;
                if n >= warm_up {
                    sequence.latencies_us.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                }
                stream = conn;
            }
            Err(why) => {
                in_a_row += 1;
                if n >= warm_up {
                    sequence.errors += 1;
                }
                if in_a_row >= MAX_FAILURES_IN_A_ROW {
                    return Err(format!("{in_a_row} requests failed in a row, the last: {why}"));
                }
                sequence.last_error = Some(why);
            }
        }
    }
    Ok(sequence)
}

fn connect(addr: SocketAddr) -> Result<std::net::TcpStream, String> {
    let stream =
        std::net::TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| format!("set timeout: {e}"))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| format!("set timeout: {e}"))?;
    Ok(stream)
}

/// One request on `stream`: writes `request`, reads the head, then `Content-Length` body bytes
/// (with `quick_ack`, re-arming `TCP_QUICKACK` after every read, as devserve does upstream).
/// `Ok(true)` when the connection may carry another request.
fn exchange(
    stream: &mut std::net::TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    quick_ack: bool,
) -> Result<bool, String> {
    use std::io::{Read, Write};
    stream.write_all(request).map_err(|e| format!("write: {e}"))?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let mut read = |buf: &mut Vec<u8>, stream: &mut std::net::TcpStream, what: &str| {
        match stream.read(&mut chunk) {
            Ok(0) => Err(format!("closed before the {what}")),
            Ok(n) => {
                // The kernel clears it by itself: set again, it acknowledges what is pending now.
                #[cfg(target_os = "linux")]
                if quick_ack {
                    let _ = socket2::SockRef::from(&*stream).set_tcp_quickack(true);
                }
                #[cfg(not(target_os = "linux"))]
                let _ = quick_ack;
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read ({what}): {e}")),
        }
    };
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("a response head over 64 KiB".into());
        }
        read(buf, stream, "response head")?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200 ") && !status.starts_with("HTTP/1.0 200 ") {
        return Err(format!("status: {status}"));
    }
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_ascii_lowercase())
        })
    };
    let length: usize = header("content-length")
        .ok_or_else(|| format!("no Content-Length in {:?}", head.trim_end()))?
        .parse()
        .map_err(|e| format!("bad Content-Length: {e}"))?;
    while buf.len() - head_end < length {
        read(buf, stream, "body")?;
    }
    if buf.len() - head_end > length {
        return Err("more bytes than Content-Length".into());
    }
    let connection = header("connection").unwrap_or_default();
    let keep =
        if status.starts_with("HTTP/1.0") { connection == "keep-alive" } else { connection != "close" };
    Ok(keep)
}
