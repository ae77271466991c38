//! `devserve -s upgrade` (SIGUSR2): the binary now at devserve's path takes over the held sockets
//! without a failed request; a broken binary changes nothing; the first devserve stays the process
//! the shell waits on, and nothing is left behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Copies an executable with `cp`, not `std::fs::copy`: a file this test process opened for
/// writing is inherited, for the moment between fork and exec, by every child another test thread
/// starts, and executing it meanwhile fails with ETXTBSY ("Text file busy"). `cp`'s descriptor
/// lives and dies in its own process.
fn copy_executable(from: &Path, to: &Path) {
    let done = run_to_completion(Command::new("cp").arg(from).arg(to));
    assert_eq!(done.code(), 0, "cp {} {}: {}", from.display(), to.display(), done.stderr);
}

/// A copy of devserve in `dir`, so that a test can replace the file it runs from.
fn devserve_copy(dir: &Path) -> PathBuf {
    let path = dir.join("devserve");
    copy_executable(Path::new(&devserve_bin()), &path);
    path
}

/// Replaces `path` the way an install does: a new file renamed over it (the running binary stays).
fn replace(path: &Path, with: &Path) {
    let new = path.with_extension("new");
    copy_executable(with, &new);
    std::fs::rename(&new, path).expect("rename");
}

fn upgrade(dir: &Path) {
    let done = run_to_completion(Command::new(devserve_bin()).current_dir(dir).args([
        "-s",
        "upgrade",
        "--pidfile",
        "devserve.pid",
    ]));
    assert_eq!(done.code(), 0, "{}", done.stderr);
}

fn pidfile_pid(dir: &Path) -> i32 {
    std::fs::read_to_string(dir.join("devserve.pid")).expect("pidfile").trim().parse().expect("a pid")
}

/// Starts the copy of devserve in `dir` with `args` (JSON output, a pidfile) and the Rust fixture.
fn start(dir: &Path, front: &[&str]) -> Devserve {
    let exe = devserve_copy(dir);
    let fixture = rust_fixture();
    let mut args: Vec<&str> = vec!["-w", "src", "--pidfile", "devserve.pid", "--log-format", "json"];
    args.extend(front);
    args.push("--");
    args.push(fixture.to_str().expect("utf-8"));
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    let mut command = Command::new(&exe);
    command.current_dir(dir).args(&args).env("FIXTURE_NOTIFY", "1").env("FIXTURE_BIND_PORT_ENV", "1");
    command.env_remove("DEVSERVE_GENERATION");
    if front.contains(&"-l") {
        command.env_remove("FIXTURE_BIND_PORT_ENV");
    }
    let devserve = Devserve::spawn(command);
    devserve.wait_event("generation_ready", |_| true);
    devserve
}

/// The address requests go to: the front door's, or the first held socket's.
fn address(devserve: &Devserve) -> String {
    let proxy = devserve.events().into_iter().find(|e| e["event"] == "proxy_listening");
    match proxy.and_then(|e| e["address"].as_str().map(str::to_owned)) {
        Some(address) => address,
        None => devserve.listen_addr(0),
    }
}

fn five_upgrades_under_load(front: &[&str]) {
    let dir = temp_dir("upgrade-load");
    let mut devserve = start(dir.path(), front);
    let addr = address(&devserve);
    let first = devserve.pid();
    let load = Load::start(&addr, 2);
    load.wait_for_answers(20);
    for n in 1..=5 {
        upgrade(dir.path());
        assert!(
            wait_until(WAIT, || devserve.count_events("upgrade_done", |_| true) == n),
            "upgrade {n} never served:\n{}",
            devserve.output()
        );
        let serving = devserve
            .events()
            .into_iter()
            .rfind(|e| e["event"] == "upgrade_done")
            .and_then(|e| e["pid"].as_i64())
            .expect("upgrade_done pid");
        assert_eq!(i64::from(pidfile_pid(dir.path())), serving, "the pidfile names the devserve that serves");
        load.wait_for_answers(20);
    }
    let result = load.stop();
    assert!(
        result.failures.is_empty(),
        "{} of {} failed: {:?}\n{}",
        result.failures.len(),
        result.ok,
        result.failures,
        devserve.output()
    );
    // The first devserve is still the one the shell waits on; a stop of it stops everything.
    assert_eq!(devserve.pid(), first);
    let everything = descendants(first);
    devserve.signal("INT");
    let status = devserve.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", devserve.output());
    assert!(wait_until(WAIT, || everything.iter().all(|pid| !is_alive(*pid))), "left: {everything:?}");
    assert!(!dir.path().join("devserve.pid").exists(), "the pidfile is removed");
}

#[test]
fn five_upgrades_under_load_fail_no_request_with_listen() {
    five_upgrades_under_load(&["-l", "127.0.0.1:0"]);
}

#[test]
fn five_upgrades_under_load_fail_no_request_behind_the_proxy() {
    five_upgrades_under_load(&["--proxy", "127.0.0.1:0"]);
}

#[test]
fn a_broken_binary_at_the_path_leaves_the_old_devserve_serving() {
    for front in [&["-l", "127.0.0.1:0"][..], &["--proxy", "127.0.0.1:0"][..]] {
        let dir = temp_dir("upgrade-broken");
        let devserve = start(dir.path(), front);
        let addr = address(&devserve);
        replace(&dir.path().join("devserve"), Path::new("/bin/false"));
        upgrade(dir.path());
        let failed = devserve.wait_event("upgrade_failed", |_| true);
        assert!(failed["reason"].as_str().is_some_and(|r| r.contains("exited with status 1")), "{failed}");
        assert_eq!(
            pidfile_pid(dir.path()),
            devserve.pid(),
            "the pidfile still names the devserve that serves"
        );
        assert!(http_get(&addr, "/").is_ok_and(|b| field(&b, "gen") == "1"), "{}", devserve.output());
        // A good binary again: the upgrade goes through.
        replace(&dir.path().join("devserve"), Path::new(&devserve_bin()));
        upgrade(dir.path());
        devserve.wait_event("upgrade_done", |_| true);
        assert!(http_get(&addr, "/").is_ok());
    }
}

#[test]
fn kill_9_of_the_first_devserve_after_an_upgrade_leaves_nothing() {
    let dir = temp_dir("upgrade-kill");
    let mut devserve = start(dir.path(), &["-l", "127.0.0.1:0"]);
    upgrade(dir.path());
    devserve.wait_event("upgrade_done", |_| true);
    let serving = pidfile_pid(dir.path());
    assert_ne!(serving, devserve.pid());
    let everything = descendants(devserve.pid());
    assert!(everything.contains(&serving), "{everything:?}");
    devserve.kill();
    assert!(wait_until(WAIT, || everything.iter().all(|pid| !is_alive(*pid))), "left: {everything:?}");
}

#[test]
fn kill_9_of_the_devserve_that_serves_ends_the_run_and_leaves_nothing() {
    let dir = temp_dir("upgrade-kill-new");
    let mut devserve = start(dir.path(), &["--proxy", "127.0.0.1:0"]);
    upgrade(dir.path());
    devserve.wait_event("upgrade_done", |_| true);
    let serving = pidfile_pid(dir.path());
    let everything = descendants(devserve.pid());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(serving), nix::sys::signal::Signal::SIGKILL)
        .expect("kill");
    let status = devserve.wait_exit();
    assert_eq!(status.code(), Some(1), "the run ends with a failure: {}", devserve.output());
    assert!(wait_until(WAIT, || everything.iter().all(|pid| !is_alive(*pid))), "left: {everything:?}");
}
