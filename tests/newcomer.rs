//! What a new user trips on: flags from other tools, `--signal` without a pidfile, and lines whose
//! figures could be misread.

mod common;

use common::*;

#[test]
fn flags_from_other_tools_get_one_line_pointing_to_devserves_way() {
    let dir = temp_dir("peer-flags");
    let cases: &[(&[&str], &str)] = &[
        (&["--delay", "1s", "--", "true"], "--debounce"),
        (&["-x", "check", "--", "true"], "-b 'cargo check'"),
        (&["--exec", "run", "--", "true"], "-b 'cargo build' -- target/debug/NAME"),
        (&["-r", "--", "true"], "always replaces the server"),
        (&["--restart", "--", "true"], "always replaces the server"),
        (&["--postpone", "--", "true"], "no --postpone"),
        (&["-p", "--", "true"], "--poll [DUR]"),
        (&["--signal", "SIGTERM", "--", "true"], "--stop-signal SIGTERM"),
    ];
    for (args, hint) in cases {
        let finished = run_devserve(&dir, args, &[]);
        let (code, stderr) = (finished.code(), finished.stderr);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line:\n{stderr}");
        assert!(lines[0].contains(hint), "{args:?} should point to {hint:?}: {}", lines[0]);
    }
}

#[test]
fn signal_without_a_pidfile_names_the_kill_to_use() {
    let dir = temp_dir("signal-no-pidfile");
    let finished = run_devserve(&dir, &["-s", "reload"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--signal needs --pidfile PATH") && stderr.contains("no devserve runs"),
        "{stderr}"
    );
    let devserve = Fixture::python().notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    let finished = run_devserve(&dir, &["-s", "reload"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("`kill -HUP {}`", devserve.pid())), "{stderr}");
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
