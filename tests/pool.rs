//! Worker pools, and control of a running devserve. `-n 3` answers from 3 pids and `-n auto` starts
//! one worker per CPU; TTIN/TTOU change the count, which the next generation keeps; a killed worker
//! is replaced alone; a worker that stops sending `WATCHDOG=1` is killed and restarted within twice
//! the interval; the crash-loop limit holds without burning CPU; USR1 lists every live pid. The
//! pidfile (stale, live, removed at exit) and `--signal status|reload|stop`, which find devserve
//! through its pid whatever the client's `TMPDIR`; `--touch-reload` outside the watched paths and
//! on an ignored name; `--rolling` keeps N workers answering; 100 reloads leave fds and children
//! unchanged. The Rust fixture; the Python fixture for `-n auto` and the client's `TMPDIR`, and a
//! Python worker that hangs for the watchdog.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// devserve with `n` Rust fixture workers (READY=1), version from `dir/version` (`v1` unless it
/// exists already), watching `dir/src`; gen 1 is ready.
fn pool(dir: &Path, n: &str, extra: &[&str]) -> (Devserve, String) {
    write(&dir.join("src/keep"), "");
    let fixture = Fixture::rust().notify().versioned(dir, "v1");
    fixture.serve(dir, &[&["-w", "src", "-l", "127.0.0.1:0", "-n", n], extra].concat())
}

/// Waits until requests have been answered by exactly `n` distinct pids among the last
/// `window` answers; returns them.
fn wait_for_pids(addr: &str, n: usize) -> BTreeSet<String> {
    let mut recent: Vec<String> = Vec::new();
    let window = 40 * n;
    let found = wait_until(WAIT, || {
        if let Ok(body) = http_get(addr, "/") {
            recent.push(field(&body, "pid"));
        }
        if recent.len() > window {
            recent.remove(0);
        }
        recent.len() == window && recent.iter().collect::<BTreeSet<_>>().len() == n
    });
    let pids: BTreeSet<String> = recent.into_iter().collect();
    assert!(found, "never saw exactly {n} pids answering; last window had {pids:?}");
    pids
}

#[test]
fn three_workers_answer_from_three_pids() {
    let dir = temp_dir("three");
    let (devserve, addr) = pool(&dir, "3", &[]);
    let pids = wait_for_pids(&addr, 3);
    assert_eq!(pids.len(), 3);
    assert!(devserve.output().contains("gen 1 starting (pids "));
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

#[test]
fn ttin_and_ttou_change_the_worker_count() {
    let dir = temp_dir("ttin");
    let (devserve, addr) = pool(&dir, "2", &[]);
    wait_for_pids(&addr, 2);
    devserve.signal("TTIN");
    devserve.wait_for("workers: 3");
    wait_for_pids(&addr, 3);
    devserve.signal("TTOU");
    devserve.wait_for("workers: 2");
    devserve.signal("TTOU");
    devserve.wait_for("workers: 1");
    devserve.wait_for_count(") stopped", 2);
    wait_for_pids(&addr, 1);
    devserve.signal("TTOU");
    devserve.wait_for("workers: already 1, the minimum");
    // The next generation keeps the new count.
    devserve.signal("HUP");
    devserve.wait_for("gen 2 ready");
    assert!(devserve.output().contains("gen 2 starting (pid "), "one worker, not a list of pids");
}

#[test]
fn a_killed_worker_is_replaced_alone() {
    let dir = temp_dir("kill-one");
    let (devserve, addr) = pool(&dir, "3", &[]);
    let before = wait_for_pids(&addr, 3);
    let victim = before.iter().next().expect("a pid").clone();
    assert!(Command::new("kill").args(["-KILL", &victim]).status().expect("kill").success());
    devserve.wait_for(&format!("(pid {victim}) killed by SIGKILL; restarting in"));
    devserve.wait_for("restarted (pid ");
    let after = wait_for_pids(&addr, 3);
    assert!(!after.contains(&victim));
    assert_eq!(after.intersection(&before).count(), 2, "the siblings kept serving: {before:?} → {after:?}");
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
fn a_crash_loop_stops_after_the_limit_without_burning_cpu() {
    let dir = temp_dir("crash-loop");
    let (devserve, addr) = pool(&dir, "1", &["--max-restarts", "3"]);
    let pid = field(&http_get(&addr, "/").expect("GET"), "pid");
    // From now on every start crashes; the version file is outside the watched `src`.
    write(&dir.join("version"), "crash");
    let ticks_before = cpu_ticks(devserve.pid()).expect("cpu ticks");
    assert!(Command::new("kill").args(["-KILL", &pid]).status().expect("kill").success());
    devserve.wait_for("4 crashes in a row; no more restarts until the next change or HUP");
    devserve.signal("USR1");
    devserve.wait_for("serving, crash loop: not restarting");
    assert_eq!(devserve.count("restarting in"), 3, "{}", devserve.output());
    let used = cpu_ticks(devserve.pid()).expect("cpu ticks") - ticks_before;
    assert!(used < 100, "devserve used {used} CPU ticks during the crash loop");
    // A change gets a new generation going again.
    write(&dir.join("version"), "v2");
    write(&dir.join("src/trigger"), "go");
    devserve.wait_for("gen 2 ready");
    wait_for_version(&addr, "v2");
}

#[test]
fn usr1_prints_every_live_pid() {
    let dir = temp_dir("usr1");
    let (devserve, addr) = pool(&dir, "2", &[]);
    let pids = wait_for_pids(&addr, 2);
    devserve.signal("USR1");
    devserve.wait_for("status: pid ");
    for pid in &pids {
        devserve.wait_for(&format!("pid {pid} ready, up "));
    }
}

#[test]
fn pidfile_lifecycle_and_control_commands() {
    let dir = temp_dir("pidfile");
    let pidfile = dir.join("devserve.pid");
    let pidfile_arg = pidfile.to_str().expect("utf-8").to_owned();
    // Stale: a pid that no longer exists.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let gone_pid = gone.id();
    gone.wait().expect("wait true");
    write(&pidfile, &format!("{gone_pid}\n"));
    let (mut devserve, addr) = pool(&dir, "1", &["--pidfile", &pidfile_arg]);
    assert!(devserve.output().contains("replacing stale pidfile"), "{}", devserve.output());
    assert_eq!(std::fs::read_to_string(&pidfile).expect("pidfile"), format!("{}\n", devserve.pid()));

    // Live: a second devserve refuses.
    let finished = run_devserve(&dir, &["--pidfile", &pidfile_arg, "-l", "127.0.0.1:0", "--", "true"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("devserve is already running (pid {}", devserve.pid())), "{stderr}");

    // Control: status, reload, stop.
    let worker = field(&http_get(&addr, "/").expect("GET"), "pid");
    let finished = run_devserve(&dir, &["--signal", "status", "--pidfile", &pidfile_arg], &[]);
    let (code, stdout, stderr) = (finished.code(), finished.stdout, finished.stderr);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("pid {worker} ready")), "{stdout}");
    let finished = run_devserve(&dir, &["--signal", "reload", "--pidfile", &pidfile_arg], &[]);
    let code = finished.code();
    assert_eq!(code, 0);
    devserve.wait_for("gen 2 ready");
    let finished = run_devserve(&dir, &["-s", "stop", "--pidfile", &pidfile_arg], &[]);
    let code = finished.code();
    assert_eq!(code, 0);
    assert!(devserve.wait_exit().success());
    assert!(!pidfile.exists(), "the pidfile is removed at exit");

    // Nobody there any more.
    let finished = run_devserve(&dir, &["-s", "reload", "--pidfile", &pidfile_arg], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 1);
    assert!(stderr.contains("no devserve running"), "{stderr}");
}

#[test]
fn status_is_found_through_the_pid_whatever_the_clients_tmpdir() {
    let dir = temp_dir("status-tmpdir");
    let (server_tmp, client_tmp) = (dir.join("server-tmp"), dir.join("client-tmp"));
    std::fs::create_dir(&server_tmp).expect("mkdir");
    std::fs::create_dir(&client_tmp).expect("mkdir");
    let pidfile = dir.join("devserve.pid");
    let pidfile_arg = pidfile.to_str().expect("utf-8");
    let server_tmp_text = server_tmp.to_str().expect("utf-8");
    let devserve = Fixture::python().notify().start_with(
        &dir,
        &["-w", "server-tmp", "-l", "127.0.0.1:0", "--pidfile", pidfile_arg],
        &[("TMPDIR", server_tmp_text), ("XDG_RUNTIME_DIR", server_tmp_text)],
    );
    devserve.wait_for("gen 1 ready");
    let client_tmp_text = client_tmp.to_str().expect("utf-8");
    let output = run_devserve(
        &dir,
        &["-s", "status", "--pidfile", pidfile_arg],
        &[("TMPDIR", client_tmp_text), ("XDG_RUNTIME_DIR", client_tmp_text)],
    );
    let table = output.stdout;
    assert!(output.status.success(), "{}", output.stderr);
    assert!(table.contains("gen 1 serving"), "{table}");
}

#[test]
fn touch_reload_works_outside_the_watched_paths_and_when_ignored() {
    let dir = temp_dir("touch");
    let (devserve, _addr) =
        pool(&dir, "1", &["--touch-reload", "restart.txt", "--touch-reload", "src/skip.tmp"]);
    write(&dir.join("restart.txt"), "now");
    devserve.wait_for("restart.txt changed");
    devserve.wait_for("gen 2 ready");
    // `*.tmp` is an ignored editor pattern, but a touch-reload file always counts.
    write(&dir.join("src/skip.tmp"), "now");
    devserve.wait_for("src/skip.tmp changed");
    devserve.wait_for("gen 3 ready");
}

#[test]
fn a_rolling_swap_keeps_n_workers_answering() {
    let dir = temp_dir("rolling");
    let (devserve, addr) = pool(&dir, "3", &["--rolling", "-v"]);
    wait_for_pids(&addr, 3);
    let load = Load::start(&addr, 1);
    load.wait_for_answers(3);
    write(&dir.join("version"), "v2");
    write(&dir.join("src/trigger"), "go");
    devserve.wait_for("gen 2 ready");
    devserve.wait_for("gen 1 stopped");
    load.wait_for_answers(3);
    let result = load.stop();
    assert!(result.failures.is_empty(), "failed requests: {:?}", result.failures);
    // Capacity = old workers not yet stopped + new workers ready: never under 3. So before the
    // k-th old worker is told to stop, at least k new workers must have been ready.
    let output = devserve.output();
    let (mut new_ready, mut old_stopped) = (0, 0);
    for line in output.lines() {
        if line.contains("gen 2 w") && line.ends_with(") ready") {
            new_ready += 1;
        }
        if line.contains("stopping (rolling)") {
            old_stopped += 1;
            assert!(
                new_ready >= old_stopped,
                "old worker {old_stopped} stopped with {new_ready} new ready:\n{output}"
            );
        }
    }
    assert_eq!((new_ready, old_stopped), (3, 2), "{output}");
    wait_for_pids(&addr, 3);
}

#[test]
fn a_hundred_reloads_leave_fds_and_children_unchanged() {
    let dir = temp_dir("hundred");
    let (devserve, _addr) = pool(&dir, "2", &[]);
    let fds = || fd_targets(devserve.pid()).expect("fd dir");
    let (fds_before, children_before) = (fds(), devserve.children().len());
    for generation in 2..=101 {
        devserve.signal("HUP");
        devserve.wait_for(&format!("gen {generation} ready"));
    }
    // A generation releases its descriptors before it is reported stopped, so no waiting here.
    devserve.wait_for("gen 100 stopped");
    let fds_after = fds();
    assert_eq!(fds_after.len(), fds_before.len(), "open fds grew: {fds_before:?} -> {fds_after:?}");
    assert_eq!(devserve.children().len(), children_before, "children: {:?}", devserve.children());
}

/// gunicorn's `max_requests`, without its moment one worker short: behind the proxy each worker
/// is replaced after its requests (plus jitter), the replacement ready and routed before the old
/// one drains, under a 2-client load with no failed request.
#[test]
fn max_requests_recycles_workers_with_no_failed_request() {
    let dir = temp_dir("max-requests");
    let fixture = Fixture::python().version("v1");
    let (devserve, addr) = fixture.behind_proxy(
        dir.path(),
        "127.0.0.1:0",
        &["-n", "2", "--max-requests", "20", "--max-requests-jitter", "5"],
    );
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let load = Load::start(&addr, 2);
    let recycled = wait_until(WAIT, || devserve.count_events("worker_recycled", |_| true) >= 4);
    load.wait_for_answers(10);
    let result = load.stop();
    assert!(recycled, "fewer than 4 workers recycled:\n{}", devserve.output());
    assert!(
        result.failures.is_empty(),
        "{:?}\n{}",
        &result.failures[..result.failures.len().min(3)],
        devserve.output()
    );
    let first = devserve.wait_event("worker_recycled", |_| true);
    let requests = first["requests"].as_u64().expect("a count");
    assert!((20..=25).contains(&requests), "recycled after {requests} requests");
    assert!(devserve.count_events("worker_started", |e| e["why"] == "recycle") >= 4);
}

#[test]
fn max_requests_needs_the_proxy_to_count_requests() {
    let dir = temp_dir("max-requests-listen");
    let run = run_devserve(dir.path(), &["-l", "127.0.0.1:0", "--max-requests", "5", "--", "true"], &[]);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(run.stderr.contains("--max-requests needs --proxy"), "{}", run.stderr);
}
