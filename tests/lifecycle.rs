//! Stopping: graceful TERM, a second INT, stop escalation, and no process outliving devserve —
//! not after TERM, not after SIGKILL of devserve itself; no zombies along the way.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// devserve on the Rust fixture wrapped in `sh -c` that leaves a grandchild (`sleep`) in the
/// worker's process group and writes its pid to `grandchild.pid`. `exec` keeps LISTEN_PID right.
fn serve_with_grandchild(dir: &Path, extra: &[&str], version: &str) -> (Devserve, String, i32) {
    serve_with_grandchild_in(dir, extra, Fixture::rust().version(version))
}

/// [`serve_with_grandchild`] with more environment in `fixture`.
fn serve_with_grandchild_in(dir: &Path, extra: &[&str], fixture: Fixture) -> (Devserve, String, i32) {
    let fixture = fixture.in_shell("sleep 1000 & echo $! > grandchild.pid;").notify();
    let (devserve, addr) =
        fixture.serve(dir, &[&["-w", ".", "-i", "*.pid", "-l", "127.0.0.1:0"], extra].concat());
    let pid_file = dir.join("grandchild.pid");
    assert!(wait_until(WAIT, || std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))));
    let grandchild = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("pid number");
    assert!(is_alive(grandchild));
    (devserve, addr, grandchild)
}

#[test]
fn term_stops_everything_gracefully_and_exits_zero() {
    let dir = temp_dir("term");
    let (mut devserve, addr, grandchild) = serve_with_grandchild(&dir, &[], "t1");
    let worker: i32 = field(&http_get(&addr, "/").expect("GET"), "pid").parse().expect("pid");
    devserve.signal("TERM");
    let status = devserve.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(devserve.output().contains("fixture: drained, exiting"), "the worker drained");
    assert!(wait_until(WAIT, || !is_alive(worker) && !is_alive(grandchild)), "orphans left behind");
    assert!(std::net::TcpStream::connect(&addr).is_err(), "the socket is closed after exit");
}

/// devserve dies by `signal` without any chance to clean up; the sentinel must.
fn dies_without_orphans(signal: &str) {
    let dir = temp_dir(&format!("die-{signal}"));
    // A runtime dir of its own, where the test can see it come and go.
    let runtime = temp_dir(&format!("die-{signal}-runtime"));
    let runtime_text = runtime.to_str().expect("utf-8");
    let fixture =
        Fixture::rust().version("k1").env("TMPDIR", runtime_text).env("XDG_RUNTIME_DIR", runtime_text);
    let (devserve, addr, grandchild) = serve_with_grandchild_in(&dir, &[], fixture);
    let prefix = format!("devserve-{}-", devserve.pid());
    let runtime_dirs = || -> Vec<PathBuf> {
        let entries = std::fs::read_dir(&runtime).expect("runtime parent").filter_map(Result::ok);
        entries.filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
    };
    assert_eq!(runtime_dirs().len(), 1, "devserve's runtime dir {prefix}… in {runtime_text}");
    let worker: i32 = field(&http_get(&addr, "/").expect("GET"), "pid").parse().expect("pid");
    devserve.signal(signal);
    assert!(
        wait_until(WAIT, || !is_alive(worker) && !is_alive(grandchild)),
        "worker {worker} or grandchild {grandchild} outlived devserve ({signal})"
    );
    assert!(wait_until(WAIT, || runtime_dirs().is_empty()), "the sentinel removes the runtime dir");
}

#[test]
fn sigkill_of_devserve_leaves_no_orphan() {
    dies_without_orphans("KILL");
}

/// An abort is how a panic ends a process built with `panic = "abort"` (and what a double panic
/// does): no destructor runs, like SIGKILL.
#[test]
fn an_abort_of_devserve_leaves_no_orphan() {
    dies_without_orphans("ABRT");
}

#[test]
fn a_second_int_kills_at_once() {
    let dir = temp_dir("int-twice");
    let (mut devserve, _addr, grandchild) =
        serve_with_grandchild(&dir, &["--stop-timeout", "1m"], "ignore-term");
    let started = Instant::now();
    devserve.signal("INT");
    devserve.wait_for("stopping (SIGTERM to workers");
    devserve.signal("INT");
    devserve.wait_for("stopping now (SIGKILL)");
    assert!(devserve.wait_exit().success());
    assert!(started.elapsed() < Duration::from_secs(30), "did not wait for the 1m stop timeout");
    assert!(wait_until(WAIT, || !is_alive(grandchild)));
}

#[test]
fn a_worker_ignoring_the_stop_signal_is_killed_after_the_stop_timeout() {
    let dir = temp_dir("escalate");
    let (mut devserve, _addr, _grandchild) =
        serve_with_grandchild(&dir, &["--stop-timeout", "500ms"], "ignore-term");
    devserve.signal("TERM");
    devserve.wait_for("gen 1 still running after 500ms; killing pid");
    assert!(devserve.wait_exit().success());
}

#[test]
fn swaps_leave_no_zombie_and_no_stray_child() {
    let dir = temp_dir("zombies");
    write(&dir.join("version"), "z1");
    let devserve =
        Fixture::rust().version_file("version").notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    for round in 2..=4 {
        write(&dir.join("version"), &format!("z{round}"));
        devserve.wait_for(&format!("gen {} stopped", round - 1));
    }
    // The serving worker and the sentinel, nothing else, and nothing defunct.
    let children = devserve.children();
    assert_eq!(children.len(), 2, "children: {children:?}");
    assert!(children.iter().all(|(_, state)| *state != 'Z'), "zombie among {children:?}");
}
