//! First contact: what a new user meets when the app does not do what devserve expects, each seen
//! in a trial from a fresh clone. A failed first generation is told at once behind the proxy; an
//! app that binds a port of its own is found and named (and, behind the proxy, served through it);
//! `check` describes and tries the front door; a build's own rewrite of `Cargo.lock` does not
//! cancel it; an app that reloads itself is named.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// devserve `--proxy 127.0.0.1:0 --log-format json` with `args`, over the Python fixture binding
/// `$PORT`; returns it and the proxy's address.
fn behind_proxy(dir: &Path, fixture: &Fixture, args: &[&str]) -> (Devserve, String) {
    let mut all = vec!["--proxy", "127.0.0.1:0", "--log-format", "json", "-w", "."];
    all.extend_from_slice(args);
    all.push("--");
    let argv = fixture.argv();
    all.extend(argv.iter().copied());
    let mut vars = fixture.env_pairs();
    vars.push(("FIXTURE_BIND_PORT_ENV", "1"));
    let devserve = Devserve::start(dir, &all, &vars);
    let addr = devserve.wait_event("proxy_listening", |_| true)["address"].as_str().expect("address").to_owned();
    (devserve, addr)
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
