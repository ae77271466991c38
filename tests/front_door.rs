//! The front door (`--proxy`) with apps that behave like real ones, where `tests/proxy.rs` uses
//! the fixture contract: an upstream that writes each response in two pieces with Nagle on (the
//! proxy must not add a delayed-ACK stall to every request on a kept-alive connection), and
//! WebSocket connections open at a swap (the old generation is asked to stop as soon as the new
//! one is ready, so its clients get the app's own close frame, 1001 "going away", and reconnect
//! to the new version, rather than staying on the old one until a bare cut at `--stop-timeout`).
//! The apps are `tests/apps/two_writes.py` and `tests/apps/ws_echo.py`.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// An app of `tests/apps/`.
fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps").join(name)
}

/// devserve's front door in front of `python3 tests/apps/<name>`, watching `dir`, with `env`
/// (which workers inherit); waits until generation 1 is ready and returns devserve and the
/// proxy's address.
fn serve_app(dir: &Path, name: &str, env: &[(&str, &str)]) -> (Devserve, String) {
    let app = app(name);
    let (watch, app) = (dir.to_str().expect("utf-8 path"), app.to_str().expect("utf-8 path"));
    let args = ["--proxy", "127.0.0.1:0", "--log-format", "json", "-w", watch, "--", "python3", app];
    let devserve = Devserve::start(dir, &args, env);
    let listening = devserve.wait_event("proxy_listening", |_| true);
    let addr = listening["address"].as_str().expect("address").to_owned();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    (devserve, addr)
}

/// A minimal HTTP/1.1 client that keeps its one connection alive: a request, its head, its body
/// (by `Content-Length`, or chunked), and the next request on the same connection.
struct KeepAlive {
    reader: BufReader<TcpStream>,
    /// The `Host` header: the address connected to, as a real client sends it.
    host: String,
}

impl KeepAlive {
    fn connect(addr: &str) -> KeepAlive {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        KeepAlive { reader: BufReader::new(stream), host: addr.to_owned() }
    }

    /// `GET path` on the kept-alive connection; the body of a 200 (anything else panics).
    fn get(&mut self, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.reader.get_mut().write_all(request.as_bytes()).expect("send the request");
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read the head");
            assert!(n > 0, "the connection closed after {head:?}: it was not kept alive");
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        assert!(head.first().is_some_and(|status| status.starts_with("HTTP/1.1 200")), "{head:?}");
        let header = |name: &str| {
            head.iter().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_ascii_lowercase())
            })
        };
        assert_ne!(header("connection").as_deref(), Some("close"), "not kept alive: {head:?}");
        let body = if let Some(length) = header("content-length") {
            let mut body = vec![0u8; length.parse().expect("a Content-Length")];
            self.reader.read_exact(&mut body).expect("read the body");
            body
        } else {
            assert_eq!(header("transfer-encoding").as_deref(), Some("chunked"), "no length: {head:?}");
            self.chunked()
        };
        String::from_utf8(body).expect("a UTF-8 body")
    }

    fn chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("a chunk size");
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .unwrap_or_else(|_| panic!("a chunk size: {size:?}"));
            let mut chunk = vec![0u8; size + 2];
            self.reader.read_exact(&mut chunk).expect("a chunk");
            body.extend_from_slice(&chunk[..size]);
            if size == 0 {
                return body;
            }
        }
    }
}

/// `GET /` on a fresh connection, to the end of the body; returns the body.
fn get_fresh(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    write!(stream, "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{response:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn a_response_written_in_two_pieces_is_not_stalled_by_a_delayed_ack() {
    let dir = temp_dir("front-door-two-writes");
    let (devserve, addr) = serve_app(&dir, "two_writes.py", &[]);
    // The same app on its own, for the baseline.
    let port = free_port().to_string();
    let mut command = Command::new("python3");
    command.arg(app("two_writes.py")).args(["--port", &port]).current_dir(&dir);
    let direct = Process::spawn(command);
    direct.wait_for("two-writes: serving");
    let direct_addr = format!("127.0.0.1:{port}");

    let mut client = KeepAlive::connect(&addr);
    let (mut through, mut alone) = (Vec::new(), Vec::new());
    // Interleaved, so that both see the same load from whatever else runs on the machine.
    for _ in 0..200 {
        let started = Instant::now();
        let body = client.get("/");
        through.push(started.elapsed());
        assert!(body.starts_with("two-writes pid="), "{body:?}");
        let started = Instant::now();
        let body = get_fresh(&direct_addr);
        alone.push(started.elapsed());
        assert!(body.starts_with("two-writes pid="), "{body:?}");
    }
    let (slowest, slowest_alone) = (*through.iter().max().expect("200"), *alone.iter().max().expect("200"));
    let (through, alone) = (median(through), median(alone));
    eprintln!("p50 through the proxy (kept alive) {through:?}, the app directly (new connections) {alone:?}");
    assert!(
        through <= alone + Duration::from_millis(2),
        "200 GETs on one kept-alive connection through the proxy: p50 {through:?} (max {slowest:?}); \
         the app directly, a new connection each: p50 {alone:?} (max {slowest_alone:?}). The app writes \
         its head and its body in two send() calls with Nagle on: a proxy that delays its ACK of the \
         head holds the body back by up to 40 ms\n{}",
        devserve.capture().tail(20)
    );
}

#[test]
fn websockets_open_at_a_swap_get_the_apps_close_frame_and_reconnect_to_the_new_version() {
    let dir = temp_dir("front-door-ws");
    let version = dir.join("version");
    write(&version, "v1");
    let version_env = version.to_str().expect("utf-8 path");
    let (devserve, addr) = serve_app(&dir, "ws_echo.py", &[("VERSION_FILE", version_env)]);
    let mut old = WsClient::connect(&addr, "/").expect("a WebSocket through the proxy");
    assert_eq!(old.echo("hello").expect("an echo"), "v1 hello");

    // A save: a new generation (the first ready after gen 1, whatever its number).
    write(&version, "v2");
    let ready = devserve.wait_event_from(0, "generation_ready", |e| e["generation"].as_u64() > Some(1));
    let generation = ready.item["generation"].as_u64().expect("a generation number");

    // The old connection: whatever comes first, within a deadline far beyond the bound.
    old.set_read_timeout(Some(WAIT));
    let outcome = loop {
        match old.read_frame() {
            Ok(Frame::Ping(_) | Frame::Pong(_)) => continue,
            other => break other,
        }
    };
    let after = Instant::now().saturating_duration_since(ready.at);
    match &outcome {
        Ok(Frame::Close(Some(1001))) => {
            // The closing handshake's answer; the app does not wait for it long.
            let _ = old.send_close(1001);
        }
        Ok(frame) => panic!(
            "the WebSocket opened before the save got {frame:?} {after:?} after gen {generation} was \
             ready, not the app's close frame 1001\n{}",
            devserve.output()
        ),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
            "the WebSocket opened before the save was still open {after:?} after gen {generation} was \
             ready: the old generation was never asked to stop\n{}",
            devserve.output()
        ),
        Err(e) => panic!(
            "the WebSocket opened before the save saw a bare TCP cut, {after:?} after gen {generation} \
             was ready: {e}; the app's own close frame (1001, going away) never reached its \
             client\n{}",
            devserve.output()
        ),
    }
    assert!(
        after <= Duration::from_secs(1),
        "the app's close frame 1001 came {after:?} after gen {generation} was ready: the old \
         generation was kept for its WebSocket instead of stopped at once\n{}",
        devserve.output()
    );

    // The client reconnects, and gets the new version.
    let mut last = String::new();
    let reconnected =
        wait_until(WAIT, || match WsClient::connect(&addr, "/").and_then(|mut new| new.echo("again")) {
            Ok(answer) => {
                last = answer;
                last == "v2 again"
            }
            Err(e) => {
                last = e;
                false
            }
        });
    assert!(
        reconnected,
        "a WebSocket opened after the swap never echoed v2; last: {last}\n{}",
        devserve.output()
    );
}
