//! Faults of a normal week (issue 11): reload loops from devserve's or the app's own files, a
//! rollback that must survive a later crash, descendants that leave their process group, hung
//! workers, and `-n auto`. Each test reproduces the fault on the code before the fix.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn python_command() -> Vec<String> {
    vec!["python3".into(), python_fixture().to_str().expect("utf-8").into()]
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

#[test]
fn devserves_own_log_file_in_the_tree_is_no_change() {
    let dir = temp_dir("own-log");
    let log = std::fs::File::create(dir.path().join("devserve.log")).expect("log file");
    let err = log.try_clone().expect("dup");
    let mut args = vec!["-w".to_owned(), ".".into(), "-l".into(), "127.0.0.1:0".into(), "--".into()];
    args.extend(python_command());
    let mut command = devserve_command(dir.path(), &args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    command.env("FIXTURE_NOTIFY", "1").stdout(Stdio::from(log)).stderr(Stdio::from(err));
    let mut child = command.spawn().expect("devserve");
    let read = || std::fs::read_to_string(dir.path().join("devserve.log")).unwrap_or_default();
    assert!(wait_until(WAIT, || read().contains("gen 1 ready")), "{}", read());
    // Every line devserve and the app write is a write to a watched file: a loop would be at gen 5
    // within a second or two.
    let looped = wait_until(Duration::from_secs(3), || read().contains("gen 2"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(!looped, "no reload from devserve's own log:\n{}", read());
}

#[test]
fn an_app_writing_into_the_tree_at_each_start_is_muted_and_a_real_edit_still_reloads() {
    let dir = temp_dir("app-writes");
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    let script = format!("echo started >> data/app.log; exec python3 {}", python_fixture().display());
    let args = ["-w", ".", "-l", "127.0.0.1:0", "--", "sh", "-c", &script];
    let devserve = Devserve::start(dir.path(), &args, &[("FIXTURE_NOTIFY", "1")]);
    devserve.wait_for("a reload loop");
    let output = devserve.output();
    let line = output.lines().find(|l| l.contains("a reload loop")).expect("the loop line");
    assert!(line.contains("data/app.log") && line.contains("--ignore 'data/app.log'"), "{line}");
    let starts = devserve.count(" starting (pid");
    assert!(starts <= 6, "the loop is stopped within a few starts: {starts}");
    write(&dir.path().join("main.txt"), "a real edit");
    devserve.wait_for("main.txt changed");
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
fn a_worker_that_stops_sending_watchdog_is_restarted() {
    let dir = temp_dir("watchdog");
    let hang = "import os, socket, time\n\
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                s.sendto(b'READY=1\\nWATCHDOG=1', os.environ['NOTIFY_SOCKET'])\n\
                print('hung worker', os.environ['WATCHDOG_USEC'], os.environ['WATCHDOG_PID'] == str(os.getpid()), flush=True)\n\
                time.sleep(600)\n";
    let args =
        ["-w", "nothing-here", "--watchdog", "1s", "--log-format", "json", "--", "python3", "-c", hang];
    std::fs::create_dir(dir.path().join("nothing-here")).expect("mkdir");
    let devserve = Devserve::start(dir.path(), &args, &[]);
    let ready = devserve.wait_event("generation_ready", |_| true);
    // The worker prints after it notified, so the line may come after the ready event.
    devserve.wait_for("hung worker 1000000 True");
    let missed = devserve.wait_event("watchdog_missed", |e| e["generation"] == 1);
    assert_eq!(missed["after_ms"], 1000);
    devserve.wait_event("worker_started", |e| e["why"] == "restart");
    let _ = ready;
    // Within twice the watchdog interval of the ready event.
    let times = devserve
        .capture()
        .times(0, |l| l.contains("\"generation_ready\"") || l.contains("\"watchdog_missed\""));
    assert!(times.len() >= 2 && times[1] - times[0] < Duration::from_secs(2), "{times:?}");
}

#[test]
fn workers_auto_starts_one_per_cpu() {
    let dir = temp_dir("auto");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args =
        vec!["-w".to_owned(), ".".into(), "-n".into(), "auto".into(), "-l".into(), "127.0.0.1:0".into()];
    args.extend(["--log-format".into(), "json".into(), "--".into()]);
    args.extend(python_command());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let devserve = Devserve::start(dir.path(), &args, &[("FIXTURE_NOTIFY", "1")]);
    let starting = devserve.wait_event("generation_starting", |_| true);
    assert_eq!(starting["pids"].as_array().map(Vec::len), Some(cpus));
}
