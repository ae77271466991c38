//! The front door (`--proxy`): real apps binding their own port behind devserve's proxy, real
//! clients over loopback. Zero failed requests across swaps, held requests, retries, error pages,
//! upgrades and streams, and the supervisor's features in proxy mode.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// The Python fixture binding `$PORT` itself, under devserve's proxy; returns devserve and the
/// proxy's address.
fn serve(dir: &Path, fixture: &Fixture, args: &[&str], env: &[(&str, &str)]) -> (Devserve, String) {
    let mut all = vec!["--proxy", "127.0.0.1:0", "--log-format", "json"];
    all.extend_from_slice(args);
    all.push("--");
    let argv = fixture.argv();
    all.extend(argv.iter().copied());
    let mut vars: Vec<(&str, &str)> = fixture.env_pairs();
    vars.push(("FIXTURE_BIND_PORT_ENV", "1"));
    vars.extend_from_slice(env);
    let devserve = Devserve::start(dir, &all, &vars);
    let listening = devserve.wait_event("proxy_listening", |_| true);
    let addr = listening["address"].as_str().expect("address").to_owned();
    (devserve, addr)
}

/// Saves `edit-N.txt` and waits until a generation started for it is ready. Not by number: with
/// no build a burst is started at its first event, and a write whose events straggle on a busy
/// machine starts a second generation that supersedes the first. Returns the ready generation.
fn swap_and_wait(devserve: &Devserve, dir: &Path, n: u64) -> u64 {
    write(&dir.join(format!("edit-{n}.txt")), "edit");
    let cause = format!("edit-{n}.txt changed");
    let ready = devserve.wait_event("generation_ready", |e| e["cause"] == cause.as_str());
    ready["generation"].as_u64().expect("a generation number")
}

/// A save, and optionally a second one as soon as the new generation is starting; waits until
/// a generation newer than all before is ready.
fn save_and_wait(devserve: &Devserve, dir: &Path, name: &str, fast_second: bool) {
    let ready_before = devserve.count_events("generation_ready", |_| true);
    let starting_before = devserve.count_events("generation_starting", |_| true);
    write(&dir.join(format!("{name}.txt")), "edit");
    if fast_second {
        assert!(wait_until(WAIT, || devserve.count_events("generation_starting", |_| true) > starting_before));
        write(&dir.join(format!("{name}-again.txt")), "edit");
    }
    let settled = wait_until(WAIT, || {
        devserve.count_events("generation_ready", |_| true) > ready_before
            && devserve.count_events("generation_starting", |_| true)
                == devserve.count_events("generation_ready", |_| true)
                    + devserve.count_events("generation_failed", |_| true)
                    + devserve.count_events("generation_superseded", |_| true)
    });
    assert!(settled, "no generation settled after {name}:\n{}", devserve.output());
}

#[test]
fn zero_failed_requests_across_swaps_for_both_fixtures() {
    for fixture in Fixture::both() {
        let dir = temp_dir("proxy-swaps");
        let (devserve, addr) = serve(dir.path(), &fixture.clone().version("v1"), &["-w", "."], &[]);
        devserve.wait_event("generation_ready", |e| e["generation"] == 1);
        let load = Load::start(&addr, 2);
        for round in 0..20 {
            load.wait_for_answers(5);
            // Every fourth save is followed by another while the generation starts.
            save_and_wait(&devserve, dir.path(), &format!("edit-{round}"), round % 4 == 3);
        }
        load.wait_for_answers(5);
        let result = load.stop();
        assert!(
            result.failures.is_empty(),
            "{}: {:?}",
            fixture.name(),
            &result.failures[..result.failures.len().min(5)]
        );
    }
}

#[test]
fn requests_before_the_first_generation_is_ready_are_held_and_answered() {
    let dir = temp_dir("proxy-hold");
    let fixture = Fixture::python().version("late").env("FIXTURE_START_DELAY_MS", "1500");
    let (devserve, addr) = serve(dir.path(), &fixture, &["-w", "."], &[]);
    let started = Instant::now();
    let body = http_get(&addr, "/").expect("held, then answered");
    assert_eq!(field(&body, "version"), "late");
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited for the generation");
    let _ = devserve;
}

#[test]
fn an_app_that_drops_unread_connections_or_warms_up_with_500_loses_nothing() {
    let dir = temp_dir("proxy-uvicorn");
    let fixture = Fixture::python()
        .version("v1")
        .env("FIXTURE_STOP", "drop-unread")
        .env("FIXTURE_FAIL_FIRST_MS", "1000");
    // Ready only once GET / answers below 500: the warming-up second is never routed to.
    let (devserve, addr) = serve(dir.path(), &fixture, &["-w", ".", "--ready-path", "/"], &[]);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let load = Load::start(&addr, 2);
    for n in 2..=5 {
        load.wait_for_answers(5);
        swap_and_wait(&devserve, dir.path(), n);
    }
    load.wait_for_answers(5);
    let result = load.stop();
    assert!(result.failures.is_empty(), "{:?}", &result.failures[..result.failures.len().min(5)]);
}

#[test]
fn a_failed_first_build_is_a_page_with_its_output() {
    let dir = temp_dir("proxy-build-failed");
    let build = "echo 'src/main.rs:3:7: error: <b>boom</b>' >&2; exit 3";
    let (devserve, addr) =
        serve(dir.path(), &Fixture::python(), &["-w", ".", "-b", build, "--hold-timeout", "300ms"], &[]);
    devserve.wait_event("build_finished", |e| e["ok"] == false);
    let (head, body) = http_get_any(&addr, "/").expect("an answer");
    assert!(head.contains(" 502 ") || head.contains(" 503 "), "{head}");
    assert!(body.contains("exited with status 3") && body.contains("src/main.rs:3:7"), "{body}");
    let mut stream = TcpStream::connect(&addr).expect("connect");
    write!(stream, "GET / HTTP/1.0\r\nHost: localhost\r\nAccept: text/html\r\n\r\n").expect("write");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("read");
    assert!(page.contains("&lt;b&gt;boom&lt;/b&gt;"), "the output is shown as text, never as HTML: {page}");
}

#[test]
fn a_fixed_app_port_restarts_without_a_refused_connection() {
    let dir = temp_dir("proxy-app-port");
    let port = free_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let fixture = Fixture::python().version("v1").env("FIXTURE_BIND", &bind);
    let mut args =
        vec!["--proxy", "127.0.0.1:0", "--log-format", "json", "-w", ".", "--app-port", &port, "--"];
    let argv = fixture.argv();
    args.extend(argv.iter().copied());
    let devserve = Devserve::start(dir.path(), &args, &fixture.env_pairs());
    let addr = devserve.wait_event("proxy_listening", |_| true)["address"].as_str().expect("addr").to_owned();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let load = Load::start(&addr, 2);
    for n in 2..=4 {
        load.wait_for_answers(5);
        swap_and_wait(&devserve, dir.path(), n);
    }
    load.wait_for_answers(5);
    let result = load.stop();
    let some = &result.failures[..result.failures.len().min(5)];
    assert!(result.failures.is_empty(), "held, never refused: {some:?}\n{}", devserve.output());
}

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
    let addr = devserve.wait_event("proxy_listening", |_| true)["address"].as_str().expect("addr").to_owned();
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

#[test]
fn rollback_restart_scaling_and_once_work_behind_the_proxy() {
    let dir = temp_dir("proxy-features");
    let fixture = Fixture::python().versioned(dir.path(), "v1");
    // The version file is read at each start; reloads come from HUP.
    let (devserve, addr) = serve(dir.path(), &fixture, &["-w", ".", "-i", "version"], &[]);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    // A crashing new generation: rolled back, v1 still answers.
    write(&dir.path().join("version"), "crash");
    devserve.signal("HUP");
    devserve.wait_event("generation_failed", |e| e["generation"] == 2);
    assert_eq!(field(&http_get(&addr, "/").expect("GET"), "version"), "v1");
    write(&dir.path().join("version"), "v1");
    // A crashed serving worker restarts on a new port and gets traffic again.
    let pid = field(&http_get(&addr, "/").expect("GET"), "pid");
    let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
    devserve.wait_event("worker_started", |e| e["why"] == "restart");
    let mut last = String::new();
    let moved = wait_until(WAIT, || match http_get(&addr, "/") {
        Ok(body) => {
            last = body;
            field(&last, "pid") != pid
        }
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(moved, "the restarted worker answers; last: {last}\n{}", devserve.output());
    // TTIN: a second worker, both answer.
    devserve.signal("TTIN");
    devserve.wait_event("worker_started", |e| e["why"] == "added");
    let pids = wait_until(WAIT, || {
        let seen: std::collections::BTreeSet<String> =
            (0..20).filter_map(|_| http_get(&addr, "/").ok()).map(|b| field(&b, "pid")).collect();
        seen.len() == 2
    });
    assert!(pids, "both workers get requests");
    devserve.signal("TTOU");
    let stopping = devserve.wait_event("worker_stopping", |e| e["rolling"] == false);
    devserve.wait_event("worker_stopped", |e| e["pid"] == stopping["pid"]);
    for _ in 0..10 {
        if let Err(e) = http_get(&addr, "/") {
            panic!("a request lost after the TTOU: {e}\n{}", devserve.output());
        }
    }
    // HUP: a new generation, v2 once the file says so.
    write(&dir.path().join("version"), "v2");
    devserve.signal("HUP");
    wait_for_version(&addr, "v2");
    // kill -9 of devserve leaves no worker behind.
    let worker: i32 = field(&http_get(&addr, "/").expect("GET"), "pid").parse().expect("pid");
    let mut devserve = devserve;
    devserve.signal("KILL");
    devserve.wait_exit();
    assert!(wait_until(WAIT, || !is_alive(worker)), "the sentinel killed worker {worker}");

    let dir = temp_dir("proxy-once");
    let mut args = vec![
        "--once",
        "--proxy",
        "127.0.0.1:0",
        "--probe",
        "curl -fsS http://$DEVSERVE_ADDR/ >/dev/null || python3 -c 'import os,urllib.request;urllib.request.urlopen(\"http://\"+os.environ[\"DEVSERVE_ADDR\"]+\"/\")'",
        "--",
    ];
    let python = Fixture::python();
    let argv = python.argv();
    args.extend(argv.iter().copied());
    let result = run_devserve(dir.path(), &args, &[("FIXTURE_BIND_PORT_ENV", "1")]);
    assert_eq!(result.code(), 0, "{}", result.stderr);
}

#[test]
fn raw_tcp_mode_routes_connections_across_a_swap() {
    let dir = temp_dir("proxy-tcp");
    let fixture = Fixture::python().version("v1");
    let mut args = vec!["--proxy", "tcp:127.0.0.1:0", "--log-format", "json", "-w", ".", "--"];
    let argv = fixture.argv();
    args.extend(argv.iter().copied());
    let mut env = fixture.env_pairs();
    env.push(("FIXTURE_BIND_PORT_ENV", "1"));
    let devserve = Devserve::start(dir.path(), &args, &env);
    let listening = devserve.wait_event("proxy_listening", |_| true);
    assert_eq!(listening["raw_tcp"], true);
    let addr = listening["address"].as_str().expect("addr").to_owned();
    let first = http_get(&addr, "/").expect("bytes through");
    let generation = swap_and_wait(&devserve, dir.path(), 2).to_string();
    assert!(
        wait_until(WAIT, || http_get(&addr, "/").is_ok_and(|b| field(&b, "gen") == generation)),
        "new connections go to gen {generation} (first answer: {first})"
    );
}

#[test]
fn proxy_bad_input_is_one_line() {
    let dir = temp_dir("proxy-bad-input");
    let cases: &[(&[&str], &str, i32)] = &[
        (&["--proxy", "127.0.0.1:0", "-l", "127.0.0.1:0", "--", "true"], "--listen", 2),
        (&["--proxy", "127.0.0.1:0", "--app-port", "8080", "--", "true", "--port", "{port}"], "{port}", 2),
        (&["--proxy", "127.0.0.1:0", "--ready-path", "health", "--", "true"], "health", 2),
        (&["--app-port", "8080", "--", "true"], "--app-port needs --proxy", 2),
    ];
    for (args, culprit, code) in cases {
        let result = run_devserve(dir.path(), args, &[]);
        assert_eq!(result.code(), *code, "{args:?}: {}", result.stderr);
        let errors: Vec<&str> = result.stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {}", result.stderr);
        assert!(errors[0].contains(culprit), "{args:?}: {}", errors[0]);
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr").to_string();
    let result = run_devserve(dir.path(), &["--proxy", &busy, "--", "true"], &[]);
    assert_eq!(result.code(), 1, "{}", result.stderr);
    assert!(result.stderr.contains("address already in use"), "{}", result.stderr);
}
