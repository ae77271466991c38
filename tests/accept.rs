//! `--accept`: a process per connection (systemd's `Accept=yes`, inetd, Python's
//! `ForkingTCPServer`), its swaps and rollback, `--max-connections`, and nothing left behind.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// A build that copies the Rust fixture to `./app`, or `/bin/false` when the file `broken` exists
/// (a program that fails before reading or writing anything); `extra` makes each build differ.
fn build_script() -> String {
    format!(
        "if [ -f broken ]; then cat /bin/false > app.new; else cat {} > app.new; fi && \
         date +%s%N >> app.new && chmod +x app.new && mv -f app.new app",
        rust_fixture().display()
    )
}

#[test]
fn each_connection_gets_a_process_with_the_variables_systemd_sets() {
    for fixture in Fixture::both() {
        let dir = temp_dir("accept-env");
        let devserve = fixture.start(dir.path(), &["-l", "127.0.0.1:0", "--accept", "--log-format", "json"]);
        devserve.wait_event("program_ready", |e| e["generation"] == 1);
        let addr = devserve.listen_addr(0);
        let mut pids = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(&addr).expect("connect");
            let local_port = stream.local_addr().expect("local").port();
            stream.write_all(b"GET /env HTTP/1.0\r\n\r\n").expect("send");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("read");
            assert!(answer.starts_with("HTTP/1.1 200"), "{}: {answer}", fixture.name());
            for line in [
                "LISTEN_FDS=1\n",
                "LISTEN_FDNAMES=connection\n",
                "REMOTE_ADDR=127.0.0.1\n",
                "DEVSERVE_GENERATION=1\n",
            ] {
                assert!(answer.contains(line), "{}: {line:?} missing from {answer}", fixture.name());
            }
            assert!(answer.contains(&format!("REMOTE_PORT={local_port}\n")), "{answer}");
            let pid = field(&answer, "LISTEN_PID");
            assert!(!pid.is_empty(), "{answer}");
            pids.push(pid);
        }
        assert_ne!(pids[0], pids[1], "{}: a process per connection", fixture.name());
        // The processes are reaped: none is left as a zombie.
        assert!(
            wait_until(WAIT, || devserve.children().iter().all(|(_, state)| *state != 'Z')),
            "zombies: {:?}",
            devserve.children()
        );
    }
}

#[test]
fn stdio_gives_the_connection_as_stdin_and_stdout() {
    let dir = temp_dir("accept-stdio");
    // Reads the whole head (a process that leaves unread bytes behind resets its connection).
    let script = r#"import os, sys
line = sys.stdin.readline().strip()
while sys.stdin.readline().strip():
    pass
sys.stdout.write("HTTP/1.0 200 OK\r\n\r\nfrom %s: %s\n" % (os.environ["REMOTE_ADDR"], line))"#;
    let devserve = Devserve::start(
        dir.path(),
        &["-l", "127.0.0.1:0", "--accept=stdio", "--log-format", "json", "--", "python3", "-c", script],
        &[],
    );
    devserve.wait_event("program_ready", |_| true);
    let answer = http_get(&devserve.listen_addr(0), "/hello").expect("GET");
    assert!(answer.contains("from 127.0.0.1: GET /hello HTTP/1.0"), "{answer}");
}

#[test]
fn a_swap_moves_new_connections_and_a_failing_program_is_rolled_back_without_a_failed_request() {
    let dir = temp_dir("accept-swap");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    let build = build_script();
    let args =
        ["-w", "src", "-b", &build, "-l", "127.0.0.1:0", "--accept", "--log-format", "json", "--", "./app"];
    let devserve = Devserve::start(dir.path(), &args, &[]);
    devserve.wait_event("program_ready", |e| e["generation"] == 1);
    let addr = devserve.listen_addr(0);
    let load = Load::start(&addr, 2);
    load.wait_for_answers(20);
    for generation in 2..=4u64 {
        write(&dir.path().join("src/code.rs"), &format!("// edit {generation}"));
        devserve.wait_event("program_serving", |e| e["generation"] == generation);
        load.wait_for_answers(20);
        assert!(wait_until(WAIT, || http_get(&addr, "/")
            .is_ok_and(|b| field(&b, "gen") == generation.to_string())));
    }
    // A build whose program fails before answering: it is tried on one connection, rolled back,
    // and that connection is served by gen 4.
    write(&dir.path().join("broken"), "");
    write(&dir.path().join("src/code.rs"), "// broken");
    let rolled = devserve.wait_event("program_rolled_back", |e| e["generation"] == 5);
    assert_eq!(rolled["serving"], 4);
    assert_eq!(rolled["rerun"], true, "{rolled}");
    load.wait_for_answers(20);
    // Fixed: the next build serves.
    std::fs::remove_file(dir.path().join("broken")).expect("rm");
    write(&dir.path().join("src/code.rs"), "// fixed");
    devserve.wait_event("program_serving", |e| e["generation"] == 6);
    load.wait_for_answers(20);
    let result = load.stop();
    assert!(
        result.failures.is_empty(),
        "{} failed of {}: {:?}\n{}",
        result.failures.len(),
        result.ok,
        result.failures,
        devserve.output()
    );
}

/// Opens a connection and asks for `/slow?ms=N`, without reading the answer yet.
fn slow_request(addr: &str, ms: u64) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(format!("GET /slow?ms={ms} HTTP/1.0\r\n\r\n").as_bytes()).expect("send");
    stream
}

fn answer(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The connection processes running: devserve's children, its sentinel aside.
fn connection_processes(devserve: &Devserve) -> Vec<i32> {
    devserve
        .children()
        .into_iter()
        .filter(|(pid, state)| {
            *state != 'Z'
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.starts_with(rust_fixture().as_os_str().as_encoded_bytes()))
        })
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn connections_beyond_max_connections_wait_in_the_queue_and_are_all_served() {
    let dir = temp_dir("accept-max");
    let fixture = rust_fixture();
    let args = ["-l", "127.0.0.1:0", "--accept", "--max-connections", "2", "--log-format", "json", "--"];
    let mut argv: Vec<&str> = args.to_vec();
    argv.push(fixture.to_str().expect("utf-8"));
    let devserve = Devserve::start(dir.path(), &argv, &[]);
    devserve.wait_event("program_ready", |_| true);
    let addr = devserve.listen_addr(0);
    let streams: Vec<TcpStream> = (0..4).map(|_| slow_request(&addr, 1500)).collect();
    assert!(wait_until(WAIT, || connection_processes(&devserve).len() == 2), "{:?}", devserve.children());
    let started = Instant::now();
    // Never more than two at once while the four are served.
    let mut most = 0;
    while started.elapsed() < Duration::from_millis(1000) {
        most = most.max(connection_processes(&devserve).len());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(most, 2, "at most --max-connections processes");
    // The status table shows the connection processes running.
    devserve.signal("USR1");
    let status = devserve.wait_event("status", |_| true);
    let connections = &status["table"]["connections"];
    assert_eq!(connections["max_connections"], 2, "{status}");
    assert_eq!(connections["live"][0][0], 1, "{status}");
    assert!(connections["live"][0][1].as_u64().is_some_and(|n| n >= 1), "{status}");
    for stream in streams {
        let text = answer(stream);
        assert!(text.starts_with("HTTP/1.1 200"), "every connection served, none refused: {text:?}");
    }
}

#[test]
fn term_stops_every_connection_process_and_kill_9_leaves_none() {
    for how in ["TERM", "KILL"] {
        let dir = temp_dir("accept-stop");
        let fixture = rust_fixture();
        let argv =
            ["-l", "127.0.0.1:0", "--accept", "--log-format", "json", "--", fixture.to_str().expect("utf-8")];
        let mut devserve = Devserve::start(dir.path(), &argv, &[]);
        devserve.wait_event("program_ready", |_| true);
        let addr = devserve.listen_addr(0);
        let _streams: Vec<TcpStream> = (0..3).map(|_| slow_request(&addr, 60_000)).collect();
        assert!(wait_until(WAIT, || connection_processes(&devserve).len() == 3), "{:?}", devserve.children());
        let pids = connection_processes(&devserve);
        if how == "TERM" {
            devserve.signal("TERM");
            devserve.wait_exit();
        } else {
            devserve.kill();
        }
        assert!(wait_until(WAIT, || pids.iter().all(|pid| !is_alive(*pid))), "{how}: left behind: {pids:?}");
    }
}

#[test]
fn accept_needs_listen() {
    let dir = temp_dir("accept-usage");
    let done = run_devserve(dir.path(), &["--accept", "--", "true"], &[]);
    assert_eq!(done.code(), 2, "{}", done.stderr);
    assert!(done.stderr.contains("--listen"), "{}", done.stderr);
}
