//! Bad input: one clear line naming the culprit, a non-zero exit, never a panic or backtrace.

mod common;

use std::process::Command;

use common::*;

/// Exactly one error line, which names `culprit`.
fn assert_one_line_error(args: &[&str], culprit: &str) -> i32 {
    let dir = temp_dir("bad-input");
    let finished = run_devserve(&dir, args, &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_ne!(code, 0, "{args:?} must fail");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line for {args:?}, got:\n{stderr}");
    assert!(errors[0].contains(culprit), "{:?} should name {culprit:?}", errors[0]);
    code
}

#[test]
fn unknown_flag() {
    assert_eq!(assert_one_line_error(&["--bogus", "--", "true"], "--bogus"), 2);
}

#[test]
fn missing_command() {
    assert_eq!(assert_one_line_error(&["-w", "."], "missing COMMAND"), 2);
}

#[test]
fn watch_path_that_does_not_exist() {
    assert_eq!(assert_one_line_error(&["-w", "no/such/dir", "--", "true"], "no/such/dir"), 2);
}

#[test]
fn address_that_does_not_parse() {
    assert_eq!(assert_one_line_error(&["-l", "localhost:http", "--", "true"], "localhost:http"), 2);
}

#[test]
fn malformed_duration() {
    assert_eq!(assert_one_line_error(&["--stop-timeout", "10", "--", "true"], "`10` is not a duration"), 2);
}

#[test]
fn unknown_signal() {
    assert_eq!(assert_one_line_error(&["--stop-signal", "SIGNOPE", "--", "true"], "SIGNOPE"), 2);
}

#[test]
fn address_already_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let culprit = format!("cannot listen on {addr}: address already in use");
    assert_eq!(assert_one_line_error(&["-l", &addr, "--", "true"], &culprit), 1);
}

#[test]
fn command_not_found() {
    assert_one_line_error(
        &["-l", "127.0.0.1:0", "--", "devserve-no-such-command"],
        "command not found: devserve-no-such-command",
    );
}

#[test]
fn command_not_executable() {
    let dir = temp_dir("not-exec");
    let script = dir.join("app.sh");
    write(&script, "#!/bin/sh\n");
    let script = script.to_str().expect("utf-8");
    assert_one_line_error(&["-l", "127.0.0.1:0", "--", script], "permission denied");
}

#[test]
fn command_missing_after_the_first_build() {
    assert_one_line_error(&["-b", "true", "--", "./not-built"], "command not found: ./not-built");
}

#[test]
fn inotify_watch_limit_is_one_line_with_the_fix() {
    // A user namespace has its own inotify limit, which root in it may lower: no sysctl needed.
    let dir = temp_dir("inotify-limit");
    std::fs::create_dir_all(dir.join("a/b/c/d/e/f")).expect("mkdir");
    let script = format!(
        "echo 3 > /proc/sys/user/max_inotify_watches && exec {} -w {} -- true",
        devserve_bin(),
        dir.display()
    );
    // Not a skip: on a machine without user namespaces this test fails, and says why.
    let probe = run_to_completion(Command::new("unshare").args(["-U", "-r", "true"]));
    assert!(
        probe.status.success(),
        "this test needs user namespaces, and `unshare -U -r true` failed ({}): {}\n\
         allow them (`sysctl user.max_user_namespaces=10000`, and on Debian kernels \
         `kernel.unprivileged_userns_clone=1`)",
        probe.status,
        probe.stderr.trim()
    );
    let output = run_to_completion(Command::new("unshare").args(["-U", "-r", "sh", "-c", &script]));
    let stderr = output.stderr;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("inotify watch limit reached") && errors[0].contains("sysctl"), "{stderr}");
}
