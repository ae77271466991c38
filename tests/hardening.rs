//! Hardening: a hostile or unlucky environment must not take devserve, the app or the user's
//! files down. One test per fault found in the adversarial pass, each reproducing it.

mod common;

use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Exactly one error line naming `culprit`, no panic, and the exit code.
fn one_error(dir: &Path, args: &[&str], culprit: &str) -> i32 {
    let finished = run_devserve(dir, args, &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_ne!(code, 0, "{args:?} must fail:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line for {args:?}:\n{stderr}");
    assert!(errors[0].contains(culprit), "{:?} should name {culprit:?}", errors[0]);
    code
}

/// The pids the kernel will most likely hand out next: where a predictable name would be planted.
fn next_pids(count: u32) -> Vec<u32> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .expect("ns_last_pid");
    (last + 1..last + 1 + count).collect()
}

// ----- 1. the pidfile ----------------------------------------------------------------------------

#[test]
fn pidfile_never_follows_a_planted_symlink() {
    let dir = temp_dir("pidfile-symlink");
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let victim = dir.join("victim");
    write(&victim, "precious\n");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The old temporary name was `app.tmp.PID`: plant it for every pid devserve may get.
    for pid in next_pids(400) {
        let _ = symlink(&victim, shared.join(format!("app.tmp.{pid}")));
    }
    let pidfile = shared.join("app.pid");
    let pidfile_arg = pidfile.to_str().expect("utf-8");
    let mut devserve = Fixture::python()
        .notify()
        .start(&dir, &["-w", "shared", "-l", "127.0.0.1:0", "--pidfile", pidfile_arg]);
    devserve.wait_for("gen 1 ready");
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious\n", "the victim is untouched");
    let written = std::fs::read_to_string(&pidfile).expect("pidfile");
    assert_eq!(written.trim(), devserve.pid().to_string());
    assert!(!std::fs::symlink_metadata(&pidfile).expect("pidfile").file_type().is_symlink());
    devserve.signal("TERM");
    assert!(devserve.wait_exit().success());
    assert!(!pidfile.exists(), "removed at exit");

    // A pidfile that is itself a symlink is refused, and its target left alone.
    symlink(&victim, &pidfile).expect("plant");
    one_error(&dir, &["--pidfile", pidfile_arg, "--once", "--", "true"], "not a regular file");
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious\n");
}

// ----- 2. stderr that fails or stalls ------------------------------------------------------------

#[test]
fn a_failing_stderr_neither_panics_nor_stops_the_serving_generation() {
    let dir = temp_dir("stderr-full");
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let fixture = Fixture::python().notify().version("v1");
    let mut command =
        devserve_command(&dir, &fixture.devserve_args(&["-w", ".", "-l", &addr]), &fixture.env_pairs());
    let mut devserve = Process::adopt(command.stdout(Stdio::null()).stderr(full).spawn().expect("spawn"));
    wait_for_version(&addr, "v1");
    // Each reload prints lines that cannot be written; each one still goes through.
    for generation in 2..=4 {
        devserve.signal("HUP");
        let reloaded = wait_until(WAIT, || {
            http_get(&addr, "/").is_ok_and(|b| field(&b, "gen") == generation.to_string())
        });
        assert!(reloaded, "reload {generation} went through");
    }
    assert!(devserve.try_wait().is_none(), "devserve is still running");
    devserve.signal("TERM");
    let status = devserve.wait_exit();
    assert_eq!(status.code(), Some(0), "a clean stop, not a panic (101)");
}

#[test]
fn a_stalled_stderr_does_not_freeze_the_supervisor() {
    let dir = temp_dir("stderr-stalled");
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let fixture = Fixture::python().notify().version("v1");
    let args = fixture.devserve_args(&["-w", ".", "-l", &addr, "--stop-timeout", "2s"]);
    let mut command = devserve_command(&dir, &args, &fixture.env_pairs());
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr pipe");
    let mut devserve = Process::adopt(child);
    // The smallest pipe the kernel allows, and nobody reads it for now.
    #[cfg(target_os = "linux")]
    let _ = nix::fcntl::fcntl(&stderr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096));
    wait_for_version(&addr, "v1");
    let pid = devserve.pid().to_string();
    // Thousands of status lines: far more than the pipe and devserve's queue hold. One `kill`
    // process each, so each signal is handled before the next comes (sent at once, they merge).
    for _ in 0..1500 {
        let _ = Command::new("kill").args(["-USR1", &pid]).status();
    }
    // The loop still reacts while stderr is stuck: a reload goes through.
    devserve.signal("HUP");
    let reloaded = wait_until(WAIT, || http_get(&addr, "/").is_ok_and(|b| field(&b, "gen") == "2"));
    assert!(reloaded, "a HUP is handled while stderr is stalled");
    // Now read: the writer catches up and says what was dropped.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let asked = Instant::now();
    devserve.signal("TERM");
    let status = devserve.wait_exit();
    assert!(asked.elapsed() < Duration::from_secs(20), "TERM and --stop-timeout are obeyed");
    assert_eq!(status.code(), Some(0));
    let text = reader.join().expect("reader");
    assert!(text.contains("lines dropped (stderr was not read)"), "the reader is told what it missed");
}

// ----- 3. a worker that shuts the shared socket down ---------------------------------------------

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

// ----- 4. --signal checks what it signals --------------------------------------------------------

#[test]
fn signal_refuses_a_pid_that_is_not_a_devserve() {
    let dir = temp_dir("signal-victim");
    let mut sleeper = Command::new("sleep").arg("600").spawn().expect("sleep");
    let pidfile = dir.join("app.pid");
    write(&pidfile, &format!("{}\n", sleeper.id()));
    let pidfile_arg = pidfile.to_str().expect("utf-8");
    let code = one_error(&dir, &["-s", "reload", "--pidfile", pidfile_arg], "is not a devserve");
    assert_eq!(code, 1);
    assert!(sleeper.try_wait().expect("try_wait").is_none(), "the unrelated process got no SIGHUP");
    write(&pidfile, "1\n");
    one_error(&dir, &["-s", "stop", "--pidfile", pidfile_arg], "is not a devserve");

    // A stale pidfile whose pid now belongs to another program does not block a start.
    write(&pidfile, &format!("{}\n", sleeper.id()));
    let devserve =
        Fixture::python().notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0", "--pidfile", pidfile_arg]);
    devserve.wait_for("gen 1 ready");
    assert!(devserve.output().contains("is now another program"), "{}", devserve.output());
    let written = std::fs::read_to_string(&pidfile).expect("pidfile");
    assert_eq!(written.trim(), devserve.pid().to_string());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

// ----- 5. durations ------------------------------------------------------------------------------

#[test]
fn huge_durations_are_refused_not_a_panic() {
    let dir = temp_dir("durations");
    for flag in ["--ready-timeout", "--debounce", "--stop-timeout", "--ready-delay", "--probe-timeout"] {
        let code =
            one_error(&dir, &[flag, "18446744073709551615s", "--once", "--", "true"], "maximum is 24h");
        assert_eq!(code, 2);
    }
    write(&dir.join("devserve.toml"), "command = [\"true\"]\ndebounce = \"9000000000000000000s\"\n");
    let code = one_error(&dir, &["check"], "devserve.toml:2:12: debounce");
    assert_eq!(code, 2);
}

#[test]
fn a_live_edit_with_a_huge_duration_is_not_applied() {
    let dir = temp_dir("durations-live");
    let fixture = python_fixture();
    let config = |extra: &str| {
        format!("command = [\"python3\", \"{}\"]\nlisten = [\"127.0.0.1:0\"]\n{extra}", fixture.display())
    };
    write(&dir.join("devserve.toml"), &config(""));
    let devserve = Devserve::start(&dir, &[], &[("FIXTURE_NOTIFY", "1"), ("FIXTURE_VERSION", "v1")]);
    let addr = devserve.listen_addr(0);
    wait_for_version(&addr, "v1");
    write(&dir.join("devserve.toml"), &config("ready-timeout = \"18446744073709551615s\"\n"));
    devserve.wait_for("not applied; the running config stays");
    assert!(devserve.output().contains("maximum is 24h"), "{}", devserve.output());
    wait_for_version(&addr, "v1");
}

// ----- 6. --once never hangs ---------------------------------------------------------------------

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

// ----- 7. devserve's own files inside the watched tree -------------------------------------------

#[test]
fn a_runtime_dir_inside_the_watched_tree_is_no_change() {
    let dir = temp_dir("tmpdir-inside");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let pidfile = dir.join("devserve.pid");
    let tmp_text = tmp.to_str().expect("utf-8");
    let devserve = Fixture::python().notify().start_with(
        &dir,
        &["-w", ".", "-l", "127.0.0.1:0", "--pidfile", pidfile.to_str().expect("utf-8")],
        &[("TMPDIR", tmp_text), ("XDG_RUNTIME_DIR", tmp_text)],
    );
    devserve.wait_for("gen 1 ready");
    write(&dir.join("real.txt"), "edit");
    devserve.wait_for("gen 2 ready");
    // A loop would have started gen 3 from gen 2's notify socket by now; give it a second.
    let looped = wait_until(Duration::from_secs(1), || devserve.output().contains("gen 3"));
    assert!(!looped, "no generation triggered by devserve's own files:\n{}", devserve.output());
}

// ----- 8. a watched root that is moved away and replaced ------------------------------------------

#[test]
fn a_replaced_watch_root_is_watched_again() {
    let dir = temp_dir("root-replaced");
    std::fs::create_dir(dir.join("src")).expect("mkdir");
    let devserve = Fixture::python().notify().start(&dir, &["-w", "src", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    std::fs::rename(dir.join("src"), dir.join("src_old")).expect("mv");
    std::fs::create_dir(dir.join("src")).expect("mkdir");
    devserve.wait_for("watched folder");
    // The folder's return is a change.
    devserve.wait_for("gen 2 ready");
    write(&dir.join("src_old/stale.txt"), "edit in the old folder");
    write(&dir.join("src/fresh.txt"), "edit in the new folder");
    devserve.wait_for("src/fresh.txt changed");
    let output = devserve.output();
    assert!(!output.contains("stale.txt"), "an edit in the moved folder is not a change:\n{output}");
}

// ----- 9. a long TMPDIR --------------------------------------------------------------------------

#[test]
fn a_tmpdir_too_long_for_socket_paths_falls_back() {
    let dir = temp_dir("long-tmpdir");
    let mut long = dir.to_path_buf();
    while long.as_os_str().len() < 99 {
        long.push("deeper-and-deeper");
    }
    std::fs::create_dir_all(&long).expect("mkdir");
    // Ready only through READY=1 on the notify socket: the socket path must work.
    let long_text = long.to_str().expect("utf-8");
    let devserve = Fixture::python().notify().start_with(
        &dir,
        &["-w", ".", "-l", "127.0.0.1:0", "--ready-delay", "1h"],
        &[("TMPDIR", long_text), ("XDG_RUNTIME_DIR", long_text)],
    );
    devserve.wait_for("gen 1 ready");
}

// ----- 10. file names on the terminal ------------------------------------------------------------

#[test]
fn control_characters_in_file_names_are_escaped() {
    let dir = temp_dir("control-names");
    let devserve = Fixture::python().notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    write(&dir.join("a\n[devserve] gen 99 ready \u{1b}[31mred"), "forged");
    devserve.wait_for("gen 2 ready");
    let output = devserve.output();
    assert!(!output.lines().any(|l| l.starts_with("[devserve] gen 99")), "no forged line:\n{output}");
    assert!(!output.contains('\u{1b}'), "no raw escape reaches the terminal");
    assert!(output.contains("a\\n[devserve] gen 99 ready \\x1b[31mred changed"), "{output}");
}

// ----- 11. nothing left behind -------------------------------------------------------------------

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

#[test]
fn a_nul_in_a_unix_socket_path_is_refused() {
    let dir = temp_dir("nul-path");
    write(&dir.join("devserve.toml"), "command = [\"true\"]\nlisten = [\"unix:/tmp/a\\u0000b\"]\n");
    one_error(&dir, &["check"], "NUL");
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

// ----- 12–14. the config file, the pidfile and the environment --------------------------------------

#[test]
fn config_files_and_env_are_validated() {
    let dir = temp_dir("config-files");
    write(&dir.join("devserve.toml"), "command = [\"true\"]\n[env]\n\"\" = \"x\"\n");
    let finished = run_devserve(&dir, &["check"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("devserve.toml:") && stderr.contains("is not a variable name"), "{stderr}");
    std::fs::remove_file(dir.join("devserve.toml")).expect("rm");
    symlink(dir.join("nowhere.toml"), dir.join("devserve.toml")).expect("symlink");
    one_error(&dir, &["check", "--", "true"], "dangling");
    std::fs::remove_file(dir.join("devserve.toml")).expect("rm");
    symlink("devserve.toml", dir.join("devserve.toml")).expect("loop");
    one_error(&dir, &["check", "--", "true"], "symlink loop");
    std::fs::remove_file(dir.join("devserve.toml")).expect("rm");
    nix::unistd::mkfifo(&dir.join("fifo.toml"), nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("fifo");
    let started = Instant::now();
    one_error(&dir, &["check", "-c", "fifo.toml", "--", "true"], "not a regular file");
    assert!(started.elapsed() < WAIT, "a FIFO does not hang devserve");
    one_error(&dir, &["check", "-c", "/dev/zero", "--", "true"], "not a regular file");
    std::fs::create_dir(dir.join("pid-dir")).expect("mkdir");
    one_error(&dir, &["--pidfile", "pid-dir", "--once", "--", "true"], "not a regular file");
    for name in ["NOTIFY_SOCKET", "DEVSERVE_GENERATION", "DEVSERVE_WORKER", "LISTEN_FDS", "LISTEN_PID"] {
        let code = one_error(&dir, &["-E", &format!("{name}=x"), "--", "true"], name);
        assert_eq!(code, 2);
    }
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

// ----- 15. unreadable folders --------------------------------------------------------------------

#[test]
fn an_unreadable_folder_gets_one_warning_line() {
    let dir = temp_dir("unreadable");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::create_dir_all(dir.join("locked/inside")).expect("mkdir");
    std::fs::set_permissions(dir.join("locked"), std::fs::Permissions::from_mode(0o000)).expect("chmod");
    // Root reads everything: act as `nobody` there (setpriv), as the user itself elsewhere.
    let root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self")) == 0;
    let mut command = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", devserve_bin().as_str()]);
        c
    } else {
        Command::new(devserve_bin())
    };
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    command
        .args(["--ready-delay", "10ms", "-w", ".", "--", "sleep", "600"])
        .current_dir(&dir)
        .env("TMPDIR", &tmp)
        .env_remove("XDG_RUNTIME_DIR")
        .env("NO_COLOR", "1");
    let mut devserve = Process::spawn(command);
    // The warning comes from the walk, before the first generation is ready.
    devserve.wait_for("gen 1 ready");
    devserve.kill();
    let output = devserve.output();
    let seen: Vec<&str> = output.lines().collect();
    let _ = std::fs::set_permissions(dir.join("locked"), std::fs::Permissions::from_mode(0o755));
    let warnings: Vec<&str> = seen.iter().copied().filter(|l| l.contains("cannot read")).collect();
    assert_eq!(warnings.len(), 1, "{seen:#?}");
    assert!(warnings[0].contains("locked"), "{seen:#?}");
}

// ----- 16. the sentinel --------------------------------------------------------------------------

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

// ----- 17. a runtime dir name planted by someone else --------------------------------------------

#[test]
fn a_planted_runtime_dir_name_is_not_used() {
    let dir = temp_dir("planted-runtime");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    // The old name was `devserve-PID`: plant it, owned by nobody, for every pid devserve may get.
    for pid in next_pids(400) {
        let planted = tmp.join(format!("devserve-{pid}"));
        if std::fs::create_dir(&planted).is_ok() {
            let _ = std::os::unix::fs::chown(&planted, Some(65534), Some(65534));
            let _ = std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o700));
        }
    }
    let tmp_text = tmp.to_str().expect("utf-8");
    let devserve = Fixture::python().notify().start_with(
        &dir,
        &["-w", ".", "-i", "tmp/**", "-l", "127.0.0.1:0", "--ready-delay", "1h"],
        &[("TMPDIR", tmp_text), ("XDG_RUNTIME_DIR", tmp_text)],
    );
    devserve.wait_for("gen 1 ready");
}

// ----- 18. small ones ----------------------------------------------------------------------------

#[test]
fn small_mistakes_get_one_clear_line() {
    let dir = temp_dir("small");
    one_error(&dir, &["--stop-signal", "STOP", "--", "true"], "pauses or resumes");
    one_error(&dir, &["--stop-signal", "CONT", "--", "true"], "pauses or resumes");
    one_error(&dir, &["--", ""], "empty command");
    one_error(&dir, &["--", "/tmp"], "is a directory");
    one_error(&dir, &["-b", "true", "--", ""], "empty command");
    symlink("loop", dir.join("loop")).expect("symlink loop");
    one_error(&dir, &["-w", "loop", "--", "true"], "symlink loop");
    one_error(&dir, &["--once", "--probe", "", "--", "true"], "probe: needs a command");
}

#[test]
fn duplicate_roots_are_merged() {
    let dir = temp_dir("duplicate-roots");
    let devserve =
        Fixture::python().notify().start(&dir, &["-w", ".", "-w", ".", "-w", "./", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    assert!(devserve.output().contains("watching . ("), "{}", devserve.output());
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
