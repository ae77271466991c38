//! Generations and the swap between them, on sockets devserve holds (`--listen`). No refused
//! connection across five swaps of the Rust fixture under load. What a worker gets: `LISTEN_*`,
//! `NOTIFY_SOCKET` and `DEVSERVE_*`, and no fd besides stdio, its two sockets and the connection it
//! serves. Rollback when the new generation crashes, hangs past `--ready-timeout` or its build
//! fails, and a rollback that survives a later crash of the old generation (its worker restarts
//! from the good copy). An in-flight request finishes across a swap; a crashed serving worker is
//! restarted; HUP reloads; in restart mode (no socket) the old generation stops before the new one
//! starts; a Unix socket is served and its file removed at exit; an old generation that ignores
//! SIGTERM delays only its own exit; a held socket shut down by a worker is re-armed for the next
//! generations. No swap when a build leaves the program unchanged (unless `--always-swap`); a start
//! without a build is superseded by a newer change. The Rust and Python fixtures.

mod common;

use common::*;

/// devserve on the Rust fixture, reading its version (`v1`) from `dir/version`, sending READY=1;
/// gen 1 is ready.
fn serve_rust(dir: &std::path::Path, extra: &[&str]) -> (Devserve, String) {
    Fixture::rust()
        .notify()
        .versioned(dir, "v1")
        .serve(dir, &[&["-w", ".", "-l", "127.0.0.1:0"], extra].concat())
}

#[test]
fn zero_refused_connections_across_repeated_swaps_under_load() {
    let dir = temp_dir("load");
    let (devserve, addr) = serve_rust(&dir, &["--log-format", "json"]);
    let load = Load::start(&addr, 2);
    for round in 2..=6 {
        load.wait_for_answers(20);
        let version = format!("v{round}");
        write(&dir.join("version"), &version);
        devserve.wait_event("generation_ready", |e| e["generation"] == round);
        wait_for_version(&addr, &version);
        devserve.wait_event("generation_stopped", |e| e["generation"] == round - 1);
    }
    load.wait_for_answers(20);
    let result = load.stop();
    assert!(
        result.failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        result.failures.len(),
        result.failures.first()
    );
}

#[test]
fn workers_get_the_socket_protocol_and_no_other_fd() {
    let dir = temp_dir("protocol");
    let (devserve, addr) = serve_rust(&dir, &["-l", "admin=127.0.0.1:0"]);
    let body = http_get(&addr, "/").expect("GET /");
    let pid = field(&body, "pid");
    let env = http_get(&addr, "/env").expect("GET /env");
    assert!(env.contains("LISTEN_FDS=2\n"), "{env}");
    assert!(env.contains(&format!("LISTEN_PID={pid}\n")), "LISTEN_PID must be the worker's own pid: {env}");
    assert!(
        env.contains("LISTEN_FDNAMES=listen1:admin\n") || env.contains("LISTEN_FDNAMES=listen0:admin\n"),
        "{env}"
    );
    assert!(env.contains("DEVSERVE_GENERATION=1\n") && env.contains("DEVSERVE_WORKER=0\n"), "{env}");
    assert!(env.contains("NOTIFY_SOCKET=/"), "{env}");
    // 0-2 stdio, 3-4 the held sockets, then only the accepted connection: once the worker's
    // threads have closed the connections of the requests before (on a busy machine a moment
    // after their answers), for ever if devserve leaked a descriptor into it.
    let mut fds: Vec<i32> = Vec::new();
    let settled = wait_until(WAIT, || {
        fds = http_get(&addr, "/fds")
            .expect("GET /fds")
            .split_whitespace()
            .filter_map(|fd| fd.parse().ok())
            .collect();
        fds.len() == 6
    });
    assert_eq!(&fds[..5], &[0, 1, 2, 3, 4], "fds: {fds:?}");
    assert!(settled, "a devserve fd leaked into the worker: {fds:?}");
    drop(devserve);
}

#[test]
fn a_crashing_generation_rolls_back_and_the_old_one_keeps_serving() {
    let dir = temp_dir("crash");
    let (devserve, addr) = serve_rust(&dir, &[]);
    let before = http_get(&addr, "/").expect("GET /");
    write(&dir.join("version"), "crash");
    devserve.wait_for("gen 2 failed: w0");
    assert!(devserve.output().contains("exited with status 1 before it was ready; gen 1 still serving"));
    let after = http_get(&addr, "/").expect("GET / after rollback");
    assert_eq!(field(&after, "pid"), field(&before, "pid"), "the old generation must keep serving");
    // The next good save is served.
    write(&dir.join("version"), "v3");
    devserve.wait_for("gen 3 ready");
    wait_for_version(&addr, "v3");
}

#[test]
fn a_generation_that_never_gets_ready_is_rolled_back_at_the_timeout() {
    let dir = temp_dir("hang");
    let (devserve, addr) = serve_rust(&dir, &["--ready-timeout", "1s"]);
    let before = http_get(&addr, "/").expect("GET /");
    write(&dir.join("version"), "hang");
    devserve.wait_for("gen 2 failed: not ready within 1.00s; gen 1 still serving");
    devserve.wait_for("gen 2 stopped");
    let after = http_get(&addr, "/").expect("GET / after rollback");
    assert_eq!(field(&after, "pid"), field(&before, "pid"));
}

#[test]
fn a_failed_build_keeps_the_old_generation() {
    let dir = temp_dir("build-fails");
    write(&dir.join("src/version"), "v1");
    let build = "test \"$(cat src/version)\" != broken && mkdir -p out && cp src/version out/version";
    let fixture = Fixture::at(&python_fixture()).version_file("out/version").notify();
    let devserve = fixture.start(&dir, &["-w", "src", "-b", build, "-l", "127.0.0.1:0"]);
    let addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    assert_eq!(field(&http_get(&addr, "/").expect("GET"), "version"), "v1");
    write(&dir.join("src/version"), "broken");
    devserve.wait_for("build failed in");
    assert!(
        devserve.output().contains("(exited with status 1); gen 1 still serving"),
        "{}",
        devserve.output()
    );
    assert_eq!(field(&http_get(&addr, "/").expect("GET"), "version"), "v1");
    // Fixing the file builds and serves the new version (Python fixture, with a build step).
    write(&dir.join("src/version"), "v2");
    devserve.wait_for("gen 2 ready in");
    let output = devserve.output();
    let ready = output.lines().find(|l| l.contains("gen 2 ready in")).expect("ready line");
    for phase in ["(debounce ", ", build ", ", start ", "· src/version changed"] {
        assert!(ready.contains(phase), "the ready line names {phase:?}: {ready}");
    }
    wait_for_version(&addr, "v2");
}

#[test]
fn a_rollback_survives_a_crash_of_the_old_generation() {
    let dir = temp_dir("lasting-rollback");
    let good = rust_fixture();
    write(&dir.path().join("choice"), "good");
    let build = format!(
        "if [ \"$(cat choice)\" = good ]; then cp {} app.new; else cp /bin/false app.new; fi && mv app.new app",
        good.display()
    );
    let args = ["-w", ".", "-i", "app*", "-b", &build, "-l", "127.0.0.1:0", "--", "./app"];
    let devserve =
        Devserve::start(dir.path(), &args, &[("FIXTURE_NOTIFY", "1"), ("FIXTURE_VERSION", "good")]);
    let addr = devserve.listen_addr(0);
    wait_for_version(&addr, "good");
    write(&dir.path().join("choice"), "bad");
    devserve.wait_for("gen 2 failed");
    // The old generation's worker dies: it must come back as the good program, not ./app.
    let pid: i32 = field(&http_get(&addr, "/").expect("GET"), "pid").parse().expect("pid");
    let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    devserve.wait_for("w0 restarted");
    wait_for_version(&addr, "good");
    assert!(!devserve.output().contains("crash loop"), "{}", devserve.output());
}

#[test]
fn an_in_flight_request_completes_across_a_swap() {
    let dir = temp_dir("inflight");
    let (devserve, addr) = serve_rust(&dir, &[]);
    let slow_addr = addr.clone();
    let slow = std::thread::spawn(move || http_get(&slow_addr, "/slow?ms=2000"));
    devserve.wait_for("fixture: slow request started");
    write(&dir.join("version"), "v2");
    devserve.wait_for("gen 2 ready");
    devserve.wait_for("gen 1 stopping");
    let body = slow.join().expect("slow thread").expect("the in-flight request must complete");
    assert_eq!(field(&body, "version"), "v1");
    devserve.wait_for("gen 1 stopped");
    wait_for_version(&addr, "v2");
}

#[test]
fn a_crashed_serving_worker_is_restarted() {
    let dir = temp_dir("restart-worker");
    let (devserve, addr) = serve_rust(&dir, &[]);
    let pid = field(&http_get(&addr, "/").expect("GET"), "pid");
    let status = std::process::Command::new("kill").args(["-KILL", &pid]).status().expect("kill");
    assert!(status.success());
    devserve.wait_for(&format!("gen 1 w0 (pid {pid}) killed by SIGKILL; restarting in"));
    devserve.wait_for("gen 1 w0 restarted");
    assert!(wait_until(WAIT, || http_get(&addr, "/").is_ok_and(|b| field(&b, "pid") != pid)));
}

#[test]
fn hup_reloads_without_a_file_change() {
    let dir = temp_dir("hup");
    let (devserve, addr) = serve_rust(&dir, &[]);
    let pid = field(&http_get(&addr, "/").expect("GET"), "pid");
    devserve.signal("HUP");
    devserve.wait_for("gen 2 ready");
    assert!(devserve.output().contains("· reload (SIGHUP)"), "{}", devserve.output());
    assert!(wait_until(WAIT, || http_get(&addr, "/").is_ok_and(|b| field(&b, "pid") != pid)));
}

#[test]
fn restart_mode_stops_the_old_generation_before_starting_the_new() {
    let dir = temp_dir("restart-mode");
    write(&dir.join("version"), "v1");
    let port = free_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let fixture = Fixture::rust().version_file("version").env("FIXTURE_BIND", &bind).notify();
    let devserve = fixture.start(&dir, &["-w", "."]);
    devserve.wait_for("gen 1 ready");
    wait_for_version(&bind, "v1");
    write(&dir.join("version"), "v2");
    devserve.wait_for("gen 2 ready");
    wait_for_version(&bind, "v2");
    let output = devserve.output();
    let stopped = output.find("gen 1 stopped").expect("gen 1 stopped");
    let started = output.find("gen 2 starting").expect("gen 2 starting");
    assert!(stopped < started, "old must stop before new starts:\n{output}");
}

#[test]
fn unix_socket_listening_and_removal_at_exit() {
    let dir = temp_dir("unix");
    let socket = dir.join("app.sock");
    let listen = format!("unix:{}", socket.display());
    let mut devserve = Fixture::at(&python_fixture())
        .version("u1")
        .notify()
        .start(&dir, &["-w", ".", "-i", "*.sock", "-l", &listen]);
    devserve.wait_for("gen 1 ready");
    let body = http_get_unix(&socket, "/").expect("GET over the unix socket");
    assert_eq!(field(&body, "version"), "u1");
    devserve.signal("TERM");
    assert!(devserve.wait_exit().success());
    assert!(!socket.exists(), "the socket file must be removed at exit");
}

#[test]
fn an_old_generation_ignoring_the_stop_signal_delays_only_its_own_exit() {
    let dir = temp_dir("ignore-term");
    write(&dir.join("version"), "ignore-term");
    let fixture = Fixture::rust().version_file("version").notify();
    let devserve = fixture.start(&dir, &["-w", ".", "-l", "127.0.0.1:0", "--stop-timeout", "3s"]);
    let addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    write(&dir.join("version"), "v2");
    devserve.wait_for("gen 2 ready");
    let ready_at = std::time::Instant::now();
    wait_for_version(&addr, "v2");
    devserve.wait_for("gen 1 still running after 3.00s; killing pid");
    devserve.wait_for("gen 1 stopped");
    let output = devserve.output();
    assert!(
        output.find("gen 2 ready").expect("ready") < output.find("gen 1 still running").expect("killed"),
        "the new generation did not wait for the old one:\n{output}"
    );
    assert!(ready_at.elapsed() >= std::time::Duration::from_secs(2), "the old one got its stop timeout");
}

#[test]
fn a_socket_shut_down_by_a_worker_is_rearmed_for_later_generations() {
    let dir = temp_dir("shutdown-socket");
    write(&dir.join("version"), "v1");
    let devserve = Fixture::python()
        .version_file("version")
        .notify()
        .start(&dir, &["-w", ".", "-i", "version.*", "-l", "127.0.0.1:0"]);
    let addr = devserve.listen_addr(0);
    wait_for_version(&addr, "v1");
    write(&dir.join("version"), "shutdown-socket");
    devserve.wait_for("was shut down by gen 2");
    write(&dir.join("version"), "v3");
    wait_for_version(&addr, "v3");
}

/// A build that copies the Rust fixture to `./app`, with `extra` appended when that file exists
/// (an ELF file runs the same with bytes after it): the program changes only when `extra` does.
fn copying_build() -> String {
    format!(
        "cat {} > app.new && if [ -f extra ]; then cat extra >> app.new; fi && chmod +x app.new && mv -f app.new app",
        rust_fixture().display()
    )
}

#[test]
fn a_build_that_leaves_the_program_unchanged_swaps_nothing() {
    let dir = temp_dir("unchanged");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    let build = copying_build();
    let args = [
        "-w",
        "src",
        "-w",
        "extra.txt",
        "-b",
        &build,
        "-l",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--",
        "./app",
    ];
    write(&dir.path().join("extra.txt"), "bytes after the program");
    let devserve = Devserve::start(dir.path(), &args, &[("FIXTURE_NOTIFY", "1")]);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    write(&dir.path().join("src/comment.rs"), "// a comment edit");
    let unchanged = devserve.wait_event("app_unchanged", |_| true);
    assert_eq!(unchanged["serving"], 1);
    assert_eq!(devserve.count_events("generation_starting", |_| true), 1, "no new generation");
    // A build that changes the program swaps.
    std::fs::rename(dir.path().join("extra.txt"), dir.path().join("extra")).expect("rename");
    write(&dir.path().join("src/code.rs"), "fn changed() {}");
    devserve.wait_event("generation_ready", |e| e["generation"] == 2);
}

#[test]
fn always_swap_swaps_an_unchanged_program() {
    let dir = temp_dir("always-swap");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    let build = copying_build();
    let args = [
        "-w",
        "src",
        "-b",
        &build,
        "-l",
        "127.0.0.1:0",
        "--always-swap",
        "--log-format",
        "json",
        "--",
        "./app",
    ];
    let devserve = Devserve::start(dir.path(), &args, &[("FIXTURE_NOTIFY", "1")]);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    write(&dir.path().join("src/comment.rs"), "// a comment edit");
    devserve.wait_event("generation_ready", |e| e["generation"] == 2);
    assert_eq!(devserve.count_events("app_unchanged", |_| true), 0);
}

#[test]
fn a_superseded_start_without_a_build_says_newer_change() {
    let dir = temp_dir("superseded");
    let devserve = Fixture::python()
        .notify()
        .env("FIXTURE_START_DELAY_MS", "3000")
        .start(&dir, &["-w", ".", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    write(&dir.join("one.txt"), "1");
    devserve.wait_for("gen 2 starting");
    write(&dir.join("two.txt"), "2");
    devserve.wait_for("gen 2 superseded by a newer change");
}
