//! The event output. `--log-format json` writes one JSON object a line and nothing else from
//! devserve (the app's own lines pass through): every event of a `--once` run (change, build
//! started and finished, generation starting, ready and stopped), with the timings of
//! `generation_ready` (`total_ms`, `build_ms`, `start_ms`) and `build_finished`. The figures of a
//! ready report are the ones measured: a first start shows no debounce phase, and a readiness
//! assumed after `--ready-delay` (no READY=1) is said to be assumed, on the human line too. The
//! Rust and Python fixtures.

mod common;

use common::*;

#[test]
fn json_events_parse_and_carry_timings() {
    let dir = temp_dir("json");
    let fixture = rust_fixture();
    let args =
        ["--once", "--log-format", "json", "-b", "true", "-l", "127.0.0.1:0", "-E", "FIXTURE_NOTIFY=1", "--"];
    let mut args: Vec<&str> = args.to_vec();
    args.push(fixture.to_str().expect("utf-8"));
    let finished = run_devserve(&dir, &args, &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in [
        "change_detected",
        "build_started",
        "build_finished",
        "generation_starting",
        "generation_ready",
        "generation_stopped",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let ready = events.iter().find(|e| e["event"] == "generation_ready").expect("ready event");
    for timing in ["total_ms", "build_ms", "start_ms"] {
        assert!(ready[timing].is_u64(), "{timing} in {ready}");
    }
    // A first start waited for no debounce: no phase is made up for it.
    assert!(ready["debounce_ms"].is_null(), "{ready}");
    assert!(ready["assumed_after_ms"].is_null(), "READY=1 was sent: {ready}");
    assert!(!stderr.contains("\"text\":\"gen 1 ready") && !stderr.contains("debounce 0ms"), "{stderr}");
    let build = events.iter().find(|e| e["event"] == "build_finished").expect("build event");
    assert_eq!(build["ok"], true);
    assert!(build["duration_ms"].is_u64());
    assert!(
        stderr.lines().all(|l| l.starts_with('{') || l.starts_with("fixture:")),
        "only JSON from devserve:\n{stderr}"
    );
}

#[test]
fn an_assumed_readiness_is_not_shown_as_a_measurement() {
    let dir = temp_dir("assumed-ready");
    let args = ["-w", ".", "-l", "127.0.0.1:0", "--ready-delay", "300ms"];
    // No FIXTURE_NOTIFY: the fixture never sends READY=1.
    let devserve = Fixture::python().start(&dir, &args);
    devserve.wait_for("gen 1 ready");
    let output = devserve.output();
    let line = output.lines().find(|l| l.contains("gen 1 ready")).expect("ready line");
    assert!(line.contains("gen 1 ready: assumed after 300ms up (no READY=1) · first start"), "{line}");
    assert!(!line.contains("debounce"), "a first start has no debounce phase: {line}");

    // With READY=1 the ready line is a measurement, and a first start shows no debounce phase.
    // (A long delay: on a busy machine Python may take more than 300 ms to send READY=1.)
    let dir = temp_dir("measured-ready");
    let args = ["-w", ".", "-l", "127.0.0.1:0", "--ready-delay", "20s"];
    let devserve = Fixture::python().notify().start(&dir, &args);
    devserve.wait_for("gen 1 ready in");
    let output = devserve.output();
    let line = output.lines().find(|l| l.contains("gen 1 ready in")).expect("ready line");
    assert!(line.contains("(start ") && !line.contains("debounce"), "{line}");
}
