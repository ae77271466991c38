//! Long-lived connections through the front door (`--proxy`), and what a swap does to them. An
//! Upgrade echoes across a swap while new upgrades go to the new generation, and the old one's ends
//! when its generation stops (drained at once, with nothing left for the proxy to cut, though
//! `--stop-timeout` is 60s). A WebSocket open at a swap gets the app's own close frame (1001)
//! within a second of the new generation being ready, and reconnects to the new version
//! (`tests/apps/ws_echo.py`). An event stream arrives as it is sent; a 50 MB upload is streamed,
//! with devserve's RSS flat. The streams app (`/ws`, `/sse`, `/upload`) is a small Python server
//! the test writes.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// An upstream for streams: `/ws` (an Upgrade that echoes), `/sse` (an event every 100 ms, until
/// the client goes) and `POST /upload` (counts the body), on `127.0.0.1:$PORT`.
const STREAMS_APP: &str = r#"
import os, socket, threading, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(os.environ["PORT"]))); srv.listen(64)
gen = os.environ.get("DEVSERVE_GENERATION", "-")
def serve(c):
    f = c.makefile("rb")
    line = f.readline().decode()
    headers = {}
    while True:
        h = f.readline().decode().strip()
        if not h: break
        k, _, v = h.partition(":"); headers[k.strip().lower()] = v.strip()
    path = line.split(" ")[1] if " " in line else "/"
    if path == "/ws":
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        while True:
            data = c.recv(4096)
            if not data: break
            c.sendall(data)
    elif path == "/sse":
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
        i = 0
        while True:  # until the client goes: a proxy that buffered to the end would send nothing
            try: c.sendall(("data: %d\n\n" % i).encode())
            except OSError: break
            i += 1; time.sleep(0.1)
    elif path == "/upload":
        left = int(headers.get("content-length", "0")); n = 0
        while left > 0:
            chunk = f.read(min(left, 1 << 16))
            if not chunk: break
            n += len(chunk); left -= len(chunk)
        body = ("got=%d" % n).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    else:
        body = ("gen=%s" % gen).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn streams_app(dir: &Path, extra: &[&str]) -> (Devserve, String) {
    write(&dir.join("streams.py"), STREAMS_APP);
    let mut args = vec!["--proxy", "127.0.0.1:0", "--log-format", "json", "-w", ".", "-i", "*.py"];
    args.extend_from_slice(extra);
    args.extend(["--", "python3", "streams.py"]);
    let devserve = Devserve::start(dir, &args, &[]);
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    (devserve, addr)
}

fn open_upgrade(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    write!(stream, "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

fn echo(stream: &mut TcpStream, text: &str) -> String {
    stream.write_all(text.as_bytes()).expect("send");
    let mut buffer = vec![0u8; text.len()];
    stream.read_exact(&mut buffer).expect("echo");
    String::from_utf8_lossy(&buffer).into_owned()
}

#[test]
fn upgrades_stream_across_a_swap_and_end_when_the_old_generation_stops() {
    let dir = temp_dir("proxy-upgrade");
    // A stop timeout far beyond the wait below: the old generation is not kept for it.
    let (devserve, addr) = streams_app(dir.path(), &["--stop-timeout", "60s"]);
    let mut old = open_upgrade(&addr);
    assert_eq!(echo(&mut old, "ping"), "ping");
    swap_and_wait(&devserve, dir.path(), 2);
    let mut new = open_upgrade(&addr);
    assert_eq!(echo(&mut new, "pong"), "pong", "a new upgrade goes to the new generation");
    // Only an upgraded connection left: gen 1 is drained at once and stopped, and its app ends
    // the connection itself (this one just exits on SIGTERM).
    devserve.wait_event("generation_stopped", |e| e["generation"] == 1);
    let mut rest = Vec::new();
    let closed = old.read_to_end(&mut rest).is_ok() || rest.is_empty();
    assert!(closed, "the old generation's upgraded connection is closed");
    assert_eq!(devserve.count_events("proxy_closed", |_| true), 0, "nothing was left to cut");
    assert_eq!(echo(&mut new, "still"), "still");
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

#[test]
fn an_event_stream_arrives_as_it_is_sent() {
    let dir = temp_dir("proxy-sse");
    let (_devserve, addr) = streams_app(dir.path(), &[]);
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    write!(stream, "GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    let mut reader = BufReader::new(stream);
    // The stream never ends: its events can only arrive if the proxy forwards them as they come.
    let mut events = 0;
    let mut line = String::new();
    while events < 3 {
        line.clear();
        reader.read_line(&mut line).expect("an event while the stream is still open");
        if line.starts_with("data:") {
            events += 1;
        }
    }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_50_mb_upload_is_streamed_not_buffered() {
    let dir = temp_dir("proxy-upload");
    let (devserve, addr) = streams_app(dir.path(), &[]);
    let before = rss_kib(devserve.pid());
    let size: usize = 50 * 1024 * 1024;
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {size}\r\n\r\n"
    )
    .expect("head");
    let chunk = vec![b'x'; 1 << 16];
    let mut peak = before;
    for _ in 0..size / chunk.len() {
        stream.write_all(&chunk).expect("body");
        peak = peak.max(rss_kib(devserve.pid()));
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.contains(&format!("got={size}")), "{response}");
    assert!(peak < before + 20 * 1024, "devserve's RSS stays flat: {before} KiB → peak {peak} KiB");
}
