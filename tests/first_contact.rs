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
    let addr =
        devserve.wait_event("proxy_listening", |_| true)["address"].as_str().expect("address").to_owned();
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
    let addr =
        devserve.wait_event("proxy_listening", |_| true)["address"].as_str().expect("address").to_owned();
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

#[test]
fn under_listen_an_app_on_a_port_of_its_own_or_one_that_never_accepts_is_named() {
    let dir = temp_dir("first-contact-listen-own");
    let own = free_port();
    let bind = format!("127.0.0.1:{own}");
    // The app ignores the held socket and binds a port of its own.
    let fixture =
        Fixture::python().version("v1").env("FIXTURE_BIND", &bind).in_shell("unset LISTEN_FDS LISTEN_PID;");
    let args = fixture.devserve_args(&["-l", "127.0.0.1:0", "--log-format", "json", "-w", "."]);
    let devserve = Devserve::start(dir.path(), &args, &fixture.env_pairs());
    let found = devserve.wait_event("own_port", |e| e["generation"] == 1);
    assert_eq!(found["found"], serde_json::json!([own]), "{found}");
    assert!(found["given"].is_null(), "{found}");
    drop(devserve);

    // An app that takes neither: connections wait in the held queue, and that is said.
    let quiet = temp_dir("first-contact-listen-quiet");
    let devserve = Devserve::start(
        quiet.path(),
        &["-l", "127.0.0.1:0", "--log-format", "json", "-w", ".", "--", "sleep", "600"],
        &[],
    );
    let listening = devserve.wait_event("listening", |_| true);
    let held = listening["address"].as_str().expect("address").to_owned();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let _waiting = TcpStream::connect(&held).expect("connect to the held socket");
    let stalled = devserve.wait_event("not_accepting", |e| e["generation"] == 1);
    assert_eq!(stalled["address"], held.as_str(), "{stalled}");
}

#[test]
fn check_describes_the_front_door_and_tries_its_address() {
    let dir = temp_dir("first-contact-check");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = busy.local_addr().expect("addr").to_string();
    let finished = run_devserve(dir.path(), &["check", "--proxy", &busy, "--", "true"], &[]);
    assert_eq!(
        finished.code(),
        2,
        "a busy front door fails check, as it would fail the start\n{}",
        finished.stdout
    );
    assert!(finished.stderr.contains("address already in use"), "{}", finished.stderr);

    let free = format!("127.0.0.1:{}", free_port());
    let finished = run_devserve(dir.path(), &["check", "--proxy", &free, "--", "true"], &[]);
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    let front = finished.stdout.lines().find(|l| l.starts_with("front door:")).unwrap_or_default().to_owned();
    assert!(front.contains(&format!("proxy on {free}")), "{}", finished.stdout);
    assert!(front.contains("PORT"), "{front}");
    let restart = run_devserve(dir.path(), &["check", "--", "true"], &[]);
    assert!(restart.stdout.contains("front door: none (restart mode"), "{}", restart.stdout);
}

#[test]
fn open_opens_the_front_door_once_ready_or_says_why_not() {
    let dir = temp_dir("first-contact-open");
    let tools = temp_dir("first-contact-open-tools");
    let opened = tools.join("opened");
    let opener = tools.join("xdg-open");
    write(&opener, &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", opened.display()));
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let fixture = Fixture::python().version("v1");
    let mut args = vec!["--proxy", "127.0.0.1:0", "--open", "--log-format", "json", "-w", "."];
    args.push("--");
    args.extend(fixture.argv());
    let mut vars = fixture.env_pairs();
    vars.push(("FIXTURE_BIND_PORT_ENV", "1"));
    vars.push(("PATH", &path));
    let devserve = Devserve::start(dir.path(), &args, &vars);
    let url = devserve.wait_event("front_url", |_| true)["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "{url}");
    devserve.wait_event("browser_opened", |e| e["url"] == url.as_str());
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&opened).is_ok_and(|t| t.trim() == url)),
        "xdg-open was not run with {url}"
    );
    drop(devserve);

    // No opener at all: one line that says so, and the run goes on. PATH is an empty folder, so
    // the app is started by its interpreter's full path.
    let bare = temp_dir("first-contact-open-none");
    let empty = temp_dir("first-contact-open-empty");
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    let app = python_fixture();
    let app = app.to_str().expect("utf-8 path");
    let args = ["--proxy", "127.0.0.1:0", "--open", "--log-format", "json", "-w", ".", "--", &python, app];
    let path = empty.display().to_string();
    let vars = [("FIXTURE_BIND_PORT_ENV", "1"), ("FIXTURE_VERSION", "v1"), ("PATH", path.as_str())];
    let devserve = Devserve::start(bare.path(), &args, &vars);
    let said = devserve.wait_event("browser_not_opened", |_| true);
    assert!(said["reason"].as_str().is_some_and(|r| r.contains("xdg-open")), "{said}");
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
}
