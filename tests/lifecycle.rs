//! Stopping, and nothing left behind. TERM stops every process (the worker's grandchildren too) and
//! exits 0; a second INT kills at once; a worker that ignores the stop signal is killed after
//! `--stop-timeout`; swaps leave no zombie and no stray child. When devserve cannot clean up itself
//! (SIGKILL, an abort) its sentinel kills the workers and removes the runtime dir; a killed
//! sentinel is restarted and still does; Unix socket files added by a live edit are removed after a
//! `kill -9`. A descendant that left its session (`setsid`) is gone after TERM and after SIGKILL of
//! devserve. A failed start (a busy address, or each fd limit from 4 to 24) leaves no runtime dir
//! and no socket file. The Rust fixture run through `sh -c` with a `sleep` grandchild; the Python
//! fixture.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
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

#[test]
fn a_killed_sentinel_is_restarted_and_still_cleans_up() {
    let dir = temp_dir("sentinel-killed");
    let mut devserve = Fixture::python().notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0"]);
    let addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    let worker: i32 = field(&http_get(&addr, "/").expect("GET"), "pid").parse().expect("pid");
    let sentinel = find_sentinel(&devserve).expect("a sentinel child");
    let _ = Command::new("kill").args(["-KILL", &sentinel.to_string()]).status();
    devserve.wait_for(&format!("sentinel (pid {sentinel}) killed by SIGKILL; restarted"));
    devserve.signal("KILL");
    devserve.wait_exit();
    assert!(wait_until(WAIT, || !is_alive(worker)), "the new sentinel killed the worker");
}

fn find_sentinel(devserve: &Devserve) -> Option<i32> {
    devserve.children().into_iter().map(|(pid, _)| pid).find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("__devserve_sentinel"))
    })
}

#[test]
fn sockets_added_by_a_live_edit_are_removed_after_a_kill() {
    let dir = temp_dir("live-socket-kill");
    let fixture = python_fixture();
    let (a, b) = (dir.join("a.sock"), dir.join("b.sock"));
    let config =
        |listen: &str| format!("command = [\"python3\", \"{}\"]\nlisten = [{listen}]\n", fixture.display());
    write(&dir.join("devserve.toml"), &config(&format!("\"unix:{}\"", a.display())));
    let mut devserve = Devserve::start(&dir, &[], &[("FIXTURE_NOTIFY", "1")]);
    devserve.wait_for("gen 1 ready");
    write(
        &dir.join("devserve.toml"),
        &config(&format!("\"unix:{}\", \"unix:{}\"", a.display(), b.display())),
    );
    devserve.wait_for("gen 2 ready");
    assert!(a.exists() && b.exists());
    devserve.signal("KILL");
    devserve.wait_exit();
    assert!(wait_until(WAIT, || !a.exists() && !b.exists()), "the sentinel removed both socket files");
}

/// Processes whose command line is exactly `words` (NUL-separated in /proc).
fn processes_running(words: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = words.iter().flat_map(|w| w.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .filter(|pid| is_alive(*pid))
        .collect()
}

fn setsid_devserve(dir: &Path, tag: &str) -> Devserve {
    let script = format!("setsid sleep {tag} & exec python3 {}", python_fixture().display());
    let args = ["-w", ".", "-l", "127.0.0.1:0", "--", "sh", "-c", &script];
    let devserve = Devserve::start(dir, &args, &[("FIXTURE_NOTIFY", "1")]);
    devserve.wait_for("gen 1 ready");
    assert!(wait_until(WAIT, || !processes_running(&["sleep", tag]).is_empty()), "the escapee runs");
    devserve
}

#[test]
fn a_descendant_that_left_its_session_is_gone_after_term_and_after_kill() {
    let dir = temp_dir("escapee");
    let mut devserve = setsid_devserve(dir.path(), "6001");
    devserve.signal("TERM");
    devserve.wait_exit();
    assert!(wait_until(WAIT, || processes_running(&["sleep", "6001"]).is_empty()), "swept at stop");

    let mut devserve = setsid_devserve(dir.path(), "6002");
    devserve.signal("KILL");
    devserve.wait_exit();
    assert!(wait_until(WAIT, || processes_running(&["sleep", "6002"]).is_empty()), "swept by the sentinel");
}

#[test]
fn a_failed_listen_leaves_no_socket_file() {
    let dir = temp_dir("listen-leftover");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr").to_string();
    let sock = dir.join("first.sock");
    let unix = format!("unix:{}", sock.display());
    one_error(&dir, &["-l", &unix, "-l", &busy, "--", "true"], "address already in use");
    assert!(!sock.exists(), "the first socket's file is removed");
}

#[test]
fn no_start_failure_leaves_a_runtime_dir_or_socket_file() {
    let dir = temp_dir("fd-limits");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let sock = dir.join("app.sock");
    let unix = format!("unix:{}", sock.display());
    let mut failures = 0;
    // Each limit makes a different step of the start fail (signals, bind, runtime dir, sentinel…).
    for limit in 4..=24 {
        let script = format!(
            "ulimit -n {limit} && exec {} --once --ready-delay 10ms -l {unix} -- sleep 5",
            devserve_bin()
        );
        let output = run_to_completion(
            Command::new("sh")
                .args(["-c", &script])
                .current_dir(&dir)
                .env("TMPDIR", &tmp)
                .env("XDG_RUNTIME_DIR", &tmp)
                .env("NO_COLOR", "1"),
        );
        let stderr = output.stderr;
        assert!(!stderr.contains("panicked"), "limit {limit}: {stderr}");
        if output.status.code() != Some(0) {
            failures += 1;
        }
        let left: Vec<PathBuf> =
            std::fs::read_dir(&tmp).expect("tmp").filter_map(Result::ok).map(|e| e.path()).collect();
        assert!(left.is_empty(), "limit {limit} left {left:?}: {stderr}");
        assert!(!sock.exists(), "limit {limit} left the socket file: {stderr}");
    }
    assert!(failures > 0, "some limits must make the start fail, or nothing was tested");
}
