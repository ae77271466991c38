//! Reach and speed of the loop (issue 12): no swap when a build leaves the program unchanged, and
//! behind the front door a start at the first event of a burst that still serves its final state.

mod common;

use common::*;

/// A build that copies the Rust fixture to `./app`, with `extra` appended when that file exists
/// (an ELF file runs the same with bytes after it): the program changes only when `extra` does.
fn copying_build() -> String {
    format!(
        "cat {} > app.new && if [ -f extra ]; then cat extra >> app.new; fi && chmod +x app.new && mv -f app.new app",
        rust_fixture().display()
    )
}

#[test]
fn a_build_that_leaves_the_program_unchanged_swaps_nothing() {
    let dir = temp_dir("unchanged");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    let build = copying_build();
    let args = [
        "-w",
        "src",
        "-w",
        "extra.txt",
        "-b",
        &build,
        "-l",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--",
        "./app",
    ];
    write(&dir.path().join("extra.txt"), "bytes after the program");
    let devserve = Devserve::start(dir.path(), &args, &[("FIXTURE_NOTIFY", "1")]);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    write(&dir.path().join("src/comment.rs"), "// a comment edit");
    let unchanged = devserve.wait_event("app_unchanged", |_| true);
    assert_eq!(unchanged["serving"], 1);
    assert_eq!(devserve.count_events("generation_starting", |_| true), 1, "no new generation");
    // A build that changes the program swaps.
    std::fs::rename(dir.path().join("extra.txt"), dir.path().join("extra")).expect("rename");
    write(&dir.path().join("src/code.rs"), "fn changed() {}");
    devserve.wait_event("generation_ready", |e| e["generation"] == 2);
}

#[test]
fn always_swap_swaps_an_unchanged_program() {
    let dir = temp_dir("always-swap");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    let build = copying_build();
    let args = [
        "-w",
        "src",
        "-b",
        &build,
        "-l",
        "127.0.0.1:0",
        "--always-swap",
        "--log-format",
        "json",
        "--",
        "./app",
    ];
    let devserve = Devserve::start(dir.path(), &args, &[("FIXTURE_NOTIFY", "1")]);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    write(&dir.path().join("src/comment.rs"), "// a comment edit");
    devserve.wait_event("generation_ready", |e| e["generation"] == 2);
    assert_eq!(devserve.count_events("app_unchanged", |_| true), 0);
}

#[test]
fn behind_the_proxy_a_burst_starts_at_its_first_event_and_serves_its_final_state() {
    let dir = temp_dir("eager");
    let fixture = Fixture::python().versioned(dir.path(), "v1");
    let mut args = vec!["--proxy", "127.0.0.1:0", "--log-format", "json", "-w", ".", "--"];
    let argv = fixture.argv();
    args.extend(argv.iter().copied());
    let mut env = fixture.env_pairs();
    env.push(("FIXTURE_BIND_PORT_ENV", "1"));
    let devserve = Devserve::start(dir.path(), &args, &env);
    let addr = devserve.wait_event("proxy_listening", |_| true)["address"].as_str().expect("addr").to_owned();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    // One save: the generation starts at its first event, with no debounce wait.
    write(&dir.path().join("version"), "v2");
    let ready = devserve.wait_event("generation_ready", |e| e["generation"] == 2);
    assert!(ready["debounce_ms"].as_u64().is_some_and(|d| d < 30), "no debounce wait: {ready}");
    wait_for_version(&addr, "v2");
    // A burst: the first event starts a generation at once, the burst's end supersedes it, and
    // the final content is what serves.
    write(&dir.path().join("version"), "v3");
    for n in 0..20 {
        write(&dir.path().join(format!("burst-{n}.txt")), "x");
    }
    write(&dir.path().join("version"), "v4");
    wait_for_version(&addr, "v4");
}

/// Sets a file's modification time `seconds` into the future.
fn later(path: &std::path::Path, seconds: u64) {
    let file = std::fs::File::options().write(true).open(path).expect("open");
    let when = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
    file.set_modified(when).expect("set mtime");
}

/// Whether the process holds an inotify instance.
fn uses_inotify(pid: i32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target.to_string_lossy().contains("inotify"))
}

#[test]
fn poll_mode_sees_an_edit_an_atomic_save_and_a_new_folder_without_inotify() {
    let dir = temp_dir("poll");
    write(&dir.path().join("main.txt"), "one");
    let fixture = Fixture::python().notify();
    let devserve = fixture
        .start(dir.path(), &["--poll", "100ms", "-w", ".", "-l", "127.0.0.1:0", "--log-format", "json"]);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    assert!(!uses_inotify(devserve.pid()), "no inotify instance in poll mode");
    // notify's poll watcher compares modification times in whole seconds: each save here is
    // stamped a few seconds later, as a save in a later second would be (no sleep).
    write(&dir.path().join("main.txt"), "two");
    later(&dir.path().join("main.txt"), 2);
    devserve.wait_event("generation_ready", |e| e["generation"] == 2);
    // An atomic save: a new file renamed over the old one.
    write(&dir.path().join(".main.txt.new"), "three");
    later(&dir.path().join(".main.txt.new"), 4);
    std::fs::rename(dir.path().join(".main.txt.new"), dir.path().join("main.txt")).expect("rename");
    devserve.wait_event("generation_ready", |e| e["generation"] == 3);
    // A new folder with a file in it.
    write(&dir.path().join("sub/new.txt"), "four");
    devserve.wait_event("generation_ready", |e| e["generation"] == 4 && e["cause"] == "sub/new.txt changed");
}

#[test]
fn the_first_generation_does_not_wait_for_the_walk_and_a_change_during_it_is_kept() {
    let dir = temp_dir("walk");
    // A tree whose walk takes a while: 400 folders of 50 files.
    for d in 0..400 {
        let folder = dir.path().join(format!("tree/d{d:03}"));
        std::fs::create_dir_all(&folder).expect("mkdir");
        for f in 0..50 {
            std::fs::write(folder.join(format!("f{f}.txt")), "x").expect("write");
        }
    }
    let fixture = Fixture::python().notify();
    let devserve = fixture.start(dir.path(), &["-w", ".", "-l", "127.0.0.1:0", "--log-format", "json"]);
    devserve.wait_event("generation_starting", |e| e["generation"] == 1);
    // Written as soon as the first generation starts: before the walk is done, in a folder that
    // may not be watched yet.
    write(&dir.path().join("tree/d399/f0.txt"), "changed during the walk");
    let written = std::time::Instant::now();
    let watching = devserve.wait_event("watching", |_| true);
    assert_eq!(watching["folders"], 402);
    let watched_at = devserve.capture().times(0, |l| l.contains("\"event\":\"watching\""))[0];
    assert!(written < watched_at, "the edit landed before the walk was done (else this tests nothing)");
    let ready = devserve.wait_event("generation_ready", |e| e["cause"] == "tree/d399/f0.txt changed");
    assert!(ready["generation"].as_u64() >= Some(2));
}

#[test]
fn keys_on_a_terminal_reload_show_status_and_stop() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = temp_dir("keys");
    let command_line =
        format!("{} -w . -l 127.0.0.1:0 -- python3 {}", devserve_bin(), python_fixture().display());
    // `script` gives devserve a terminal of its own (a pty), fed from our pipe.
    let mut child = Command::new("script")
        .args(["-qfec", &command_line, "/dev/null"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("FIXTURE_NOTIFY", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut keys = child.stdin.take().expect("stdin");
    let mut devserve = Process::adopt(child);
    devserve.wait_for("keys: r reload");
    devserve.wait_for("gen 1 ready");
    keys.write_all(b"r").expect("r");
    devserve.wait_for("gen 2 ready");
    keys.write_all(b"s").expect("s");
    devserve.wait_for("status: pid");
    keys.write_all(b"?").expect("?");
    devserve.wait_for_count("keys: r reload", 2);
    keys.write_all(b"q").expect("q");
    let status = devserve.wait_exit();
    assert!(status.success(), "q stops gracefully:\n{}", devserve.output());
}

#[test]
fn stdin_that_is_not_a_terminal_is_never_read() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = temp_dir("no-keys");
    let fixture = Fixture::python().notify();
    let args = fixture.devserve_args(&["-w", ".", "-l", "127.0.0.1:0"]);
    let mut command = devserve_command(dir.path(), &args, &fixture.env_pairs());
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let devserve = Process::adopt(child);
    devserve.wait_for("gen 1 ready");
    stdin.write_all(b"rq\n").expect("write");
    let reacted = wait_until(std::time::Duration::from_secs(1), || {
        devserve.output().contains("gen 2") || devserve.output().contains("stopping")
    });
    assert!(!reacted, "keys on a pipe are not read:\n{}", devserve.output());
    assert!(!devserve.output().contains("keys:"), "no key hint without a terminal");
}
