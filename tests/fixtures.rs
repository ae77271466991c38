//! The fixture apps' modes for the proxy (`fixtures/README.md`), checked on both apps run on
//! their own, without devserve: binding `$PORT` (and still sending READY=1), a uvicorn-like stop
//! that resets the connections it accepted and did not read, and 500s while warming up.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

/// `fixture` on its own in `dir`, binding `127.0.0.1:PORT`; returns it once it is serving.
fn run_on_port(fixture: Fixture, dir: &TempDir) -> (Process, String) {
    let port = free_port().to_string();
    let fixture = fixture.env("FIXTURE_BIND_PORT_ENV", "1").env("PORT", &port);
    let app = Process::spawn(fixture.command(dir));
    app.wait_for("fixture: serving ");
    (app, format!("127.0.0.1:{port}"))
}

#[test]
fn bind_port_env_binds_port_and_still_sends_ready() {
    for fixture in Fixture::both() {
        let name = fixture.name();
        let dir = temp_dir(&format!("port-env-{name}"));
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        notify.set_read_timeout(Some(WAIT)).expect("timeout");
        // A LISTEN_FDS from elsewhere does not win over FIXTURE_BIND_PORT_ENV.
        let fixture = fixture
            .notify()
            .env("NOTIFY_SOCKET", notify_path.to_str().expect("utf-8"))
            .env("LISTEN_FDS", "1");
        let (_app, addr) = run_on_port(fixture, &dir);
        let mut datagram = [0u8; 64];
        let n = notify.recv(&mut datagram).unwrap_or_else(|e| panic!("{name}: no READY=1: {e}"));
        assert_eq!(&datagram[..n], b"READY=1", "{name}");
        let body = http_get(&addr, "/").unwrap_or_else(|e| panic!("{name}: GET / on $PORT: {e}"));
        assert_eq!(field(&body, "version"), "0", "{name}: {body}");
    }
}

#[test]
fn bind_port_env_without_a_port_is_exit_2() {
    for fixture in Fixture::both() {
        let name = fixture.name();
        let dir = temp_dir("port-env-missing");
        let finished =
            run_to_completion(fixture.env("FIXTURE_BIND_PORT_ENV", "1").command(&dir).env_remove("PORT"));
        assert_eq!(finished.code(), 2, "{name}: {}", finished.stderr);
        assert!(finished.stderr.contains("PORT is not set"), "{name}: {}", finished.stderr);
    }
}

#[test]
fn fail_first_ms_answers_500_while_warming_up_then_200() {
    const WINDOW: Duration = Duration::from_millis(1000);
    for fixture in Fixture::both() {
        let name = fixture.name();
        let dir = temp_dir(&format!("fail-first-{name}"));
        let spawned = Instant::now();
        let (app, addr) = run_on_port(fixture.env("FIXTURE_FAIL_FIRST_MS", "1000"), &dir);
        let serving = app.capture().find(0, |l| l.starts_with("fixture: serving ")).expect("serving line").at;
        // (sent, answered, status line, body) of each request until a 200.
        let mut answers = Vec::new();
        let got_200 = wait_until(WAIT, || {
            let sent = Instant::now();
            let (status, body) = http_get_any(&addr, "/").unwrap_or_else(|e| panic!("{name}: {e}"));
            let ok = status.starts_with("HTTP/1.1 200");
            answers.push((sent, Instant::now(), status, body));
            ok
        });
        assert!(got_200, "{name}: never a 200: {:?}", answers.last());
        let (_, _, _, body) = answers.last().expect("an answer");
        assert_eq!(field(body, "version"), "0", "{name}: {body}");
        for (sent, _, status, body) in &answers[..answers.len() - 1] {
            assert!(
                status.starts_with("HTTP/1.1 500") && body == "warming up\n",
                "{name}: {status} {body:?}"
            );
            // The window starts when the app says it serves, so no 500 comes after it ended.
            assert!(*sent < serving + WINDOW, "{name}: a 500 {:?} after the window", *sent - serving);
        }
        // An answer back within the window (counted from the spawn, before the window began)
        // must be a 500. On a machine that did not stall for a second, that is the first one.
        let (_, first_answered, first_status, _) = &answers[0];
        assert!(
            *first_answered >= spawned + WINDOW || first_status.starts_with("HTTP/1.1 500"),
            "{name}: {first_status} {:?} after the spawn",
            *first_answered - spawned
        );
    }
}

#[test]
fn drop_unread_stop_resets_connections_accepted_but_not_read() {
    for fixture in Fixture::both() {
        let name = fixture.name();
        let dir = temp_dir(&format!("drop-unread-{name}"));
        let (mut app, addr) = run_on_port(fixture.env("FIXTURE_STOP", "drop-unread"), &dir);
        let slow_addr = addr.clone();
        let slow = std::thread::spawn(move || http_get(&slow_addr, "/slow?ms=1500"));
        app.wait_for("fixture: slow request started");
        // A second request, accepted at once (one more fd in the app) but not read: the single
        // serving thread is busy with the slow one.
        let fds = fd_count(app.pid()).expect("fds");
        let mut queued = TcpStream::connect(&addr).expect("connect");
        queued.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("write");
        assert!(wait_until(WAIT, || fd_count(app.pid()) == Some(fds + 1)), "{name}: never accepted");
        app.signal("TERM");
        app.wait_for("fixture: dropped unread connections: 1 ");
        let mut response = Vec::new();
        queued.set_read_timeout(Some(WAIT)).expect("timeout");
        let read = queued.read_to_end(&mut response);
        assert!(
            read.is_err() || response.is_empty(),
            "{name}: the queued connection was closed unread, got {:?}",
            String::from_utf8_lossy(&response)
        );
        let body = slow.join().expect("slow thread").unwrap_or_else(|e| panic!("{name}: in flight: {e}"));
        assert_eq!(field(&body, "version"), "0");
        let status = app.wait_exit();
        assert_eq!(status.code(), Some(0), "{name}: {}", app.output());
        assert!(app.output().contains("fixture: drained, exiting"), "{name}");
    }
}
