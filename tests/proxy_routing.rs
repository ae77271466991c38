//! The front door (`--proxy`) routing requests to the app: real apps binding their own port behind
//! devserve's proxy, real clients over loopback. No failed request under a 2-client load across 20
//! swaps for both fixtures (saves faster than start-up included), nor across the restarts of a
//! fixed `--app-port`, nor to an app on a port of its own (found, and served through it); in raw
//! TCP mode (`tcp:`) new connections go to the new generation. Requests made before the first
//! generation is ready are held and answered; an app that drops accepted-but-unread connections on
//! SIGTERM and answers 500 while it warms up (uvicorn's behaviour) loses nothing and shows no 500.
//! Errors: a failed first build is a page with its output (as text, never HTML); a failed first
//! generation is a 503 at once. A response written in two pieces on a kept-alive connection is as
//! fast through the proxy as from the app directly (no delayed-ACK stall;
//! `tests/apps/two_writes.py`). Rollback, crash restart, TTIN/TTOU, HUP, SIGKILL of devserve and
//! `--once` behind the proxy. The Python fixture binding `$PORT` (and the Rust one for the swaps).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
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
    let addr = devserve.proxy_addr();
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

/// devserve `--proxy 127.0.0.1:0 --log-format json` with `args`, over the Python fixture binding
/// `$PORT`; returns it and the proxy's address.
fn behind_proxy(dir: &Path, fixture: &Fixture, args: &[&str]) -> (Devserve, String) {
    fixture.behind_proxy(dir, "127.0.0.1:0", args)
}

/// `GET /` with a short read timeout: the status line and the body.
fn get(addr: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(stream, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

#[test]
fn a_failed_first_generation_is_told_at_once_behind_the_proxy() {
    let dir = temp_dir("first-contact-failed");
    let (devserve, addr) = behind_proxy(dir.path(), &Fixture::python().version("crash"), &[]);
    devserve.wait_event("generation_failed", |e| e["generation"] == 1);
    let started = Instant::now();
    let (status, body) = get(&addr);
    assert!(status.contains(" 503 "), "{status}: {body}");
    assert!(body.contains("gen 1 failed"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the request waited {:?} for a generation that nothing starts",
        started.elapsed()
    );
}

#[test]
fn an_app_on_a_port_of_its_own_is_found_and_served_through_it_behind_the_proxy() {
    let dir = temp_dir("first-contact-own-port");
    let own = free_port();
    let bind = format!("127.0.0.1:{own}");
    // Without FIXTURE_BIND_PORT_ENV the fixture binds FIXTURE_BIND, not $PORT: a port in its code.
    let fixture = Fixture::python().version("v1").env("FIXTURE_BIND", &bind);
    let mut args = vec!["--proxy", "127.0.0.1:0", "--log-format", "json", "-w", "."];
    args.push("--");
    args.extend(fixture.argv());
    let devserve = Devserve::start(dir.path(), &args, &fixture.env_pairs());
    let addr = devserve.proxy_addr();
    let found = devserve.wait_event("own_port", |e| e["generation"] == 1);
    assert_eq!(found["found"], serde_json::json!([own]), "{found}");
    devserve.wait_event("app_port_found", |e| e["port"] == own);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let (status, body) = get(&addr);
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert!(body.contains("version=v1"), "{body}");

    // A save: the app-port path (the old one stops first, requests wait), no request fails.
    let load = Load::start(&addr, 2);
    load.wait_for_answers(5);
    write(&dir.path().join("edit.txt"), "edit");
    devserve.wait_event("generation_ready", |e| e["generation"] == 2);
    load.wait_for_answers(5);
    let result = load.stop();
    assert!(
        result.failures.is_empty(),
        "{:?}\n{}",
        &result.failures[..result.failures.len().min(3)],
        devserve.output()
    );
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
