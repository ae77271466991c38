//! `--once`, the CI mode: one build, one generation, an optional `--probe`, and an exit code for
//! each outcome: 0 when it served (and the probe passed), 3 when the build failed, 4 when the
//! generation crashed or was not ready within `--ready-timeout`, 5 when the probe failed, each in
//! under 30 s. A build that cannot even be started (an environment over the kernel's limit, a NUL
//! in the command) fails fast with 3; a hung probe is killed at `--probe-timeout` (5); a TERM
//! during the probe ends the run with 1. The Rust and Python fixtures.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Fetches `/` from the generation under test; fails unless it answers 200.
const PROBE: &str = "python3 -c 'import os, urllib.request; urllib.request.urlopen(\"http://\" + os.environ[\"DEVSERVE_ADDR\"] + \"/\")'";

#[test]
fn once_exit_codes_for_each_outcome() {
    let dir = temp_dir("once");
    write(&dir.join("version"), "v1");
    let fixture = rust_fixture();
    let fixture = fixture.to_str().expect("utf-8");
    let base = [
        "--once",
        "-w",
        ".",
        "-l",
        "127.0.0.1:0",
        "-E",
        "FIXTURE_NOTIFY=1",
        "-E",
        "FIXTURE_VERSION_FILE=version",
    ];
    let cases: [(&[&str], &str, i32); 5] = [
        (&["--probe", PROBE], "v1", 0),
        (&["-b", "exit 7"], "v1", 3),
        (&[], "crash", 4),
        (&["--ready-timeout", "1s"], "hang", 4),
        (&["--probe", "exit 1"], "v1", 5),
    ];
    for (extra, version, expected) in cases {
        write(&dir.join("version"), version);
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        args.extend(["--", fixture]);
        let finished = run_devserve(&dir, &args, &[]);
        let (code, stderr, took) = (finished.code(), finished.stderr, finished.took);
        assert_eq!(code, expected, "{extra:?} with version {version}:\n{stderr}");
        assert!(took < Duration::from_secs(30), "{extra:?} took {took:?}");
    }
}

#[test]
fn once_fails_fast_when_the_build_cannot_start() {
    let dir = temp_dir("once-no-build");
    // One environment string over the kernel's 128 KiB limit: execve fails with E2BIG.
    let big = "x".repeat(140 * 1024);
    write(
        &dir.join("devserve.toml"),
        &format!("build = \"true\"\ncommand = [\"true\"]\n[env]\nBIG = \"{big}\"\n"),
    );
    let started = Instant::now();
    let finished = run_devserve(&dir, &["--once"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cannot run the build"), "{stderr}");
    assert!(started.elapsed() < WAIT);
    // A NUL byte in the build command.
    write(&dir.join("devserve.toml"), "build = \"tr\\u0000ue\"\ncommand = [\"true\"]\n");
    let finished = run_devserve(&dir, &["--once"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("NUL"), "{stderr}");
}

#[test]
fn once_kills_a_hung_probe_and_a_term_ends_the_run() {
    let dir = temp_dir("once-probe");
    let fixture = Fixture::python().notify();
    let args = fixture.devserve_args(&[
        "--once",
        "-l",
        "127.0.0.1:0",
        "--probe",
        "sleep 600",
        "--probe-timeout",
        "500ms",
    ]);
    let started = Instant::now();
    let finished = run_devserve(&dir, &args, &fixture.env_pairs());
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("probe did not finish within 500ms; killed"), "{stderr}");
    assert!(started.elapsed() < WAIT);

    let mut devserve =
        fixture.start(&dir, &["--once", "-l", "127.0.0.1:0", "--probe", "echo probing; sleep 600"]);
    devserve.wait_for("probing");
    devserve.signal("TERM");
    let status = devserve.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", devserve.output());
    assert!(devserve.output().contains("stopped before a verdict"));
}
