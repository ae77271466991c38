//! What counts as a change, and when it starts a build. 1200 writes are one build; ignored paths
//! (`.gitignore`, `.git`, `target`, `node_modules`, editor files, `-i`) and `--exts` trigger
//! nothing; an atomic save counts once, as the real file; new folders are watched and an empty one
//! is no change; a watched folder moved away and replaced is watched again; duplicate roots are
//! merged; an unreadable folder gets one warning line (as `nobody` when run as root); `--poll` sees
//! an edit, an atomic save and a new folder without inotify; the first generation does not wait for
//! the walk, and a change during it is kept. What must not loop: a build that writes into the tree,
//! devserve's own log file and runtime dir in the tree, an app that writes into the tree at each
//! start (muted within a few starts, with the fix named, while a real edit still reloads). A change
//! during a build restarts it and the latest save wins; behind the proxy a burst starts at its
//! first event and its final state is served. The Rust and Python fixtures.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// devserve with a build step that announces itself, on the Rust fixture (READY=1).
fn serve(dir: &Path, extra: &[&str]) -> Devserve {
    let args = [&["-w", ".", "-l", "127.0.0.1:0", "-b", "echo build-ran"], extra].concat();
    Fixture::rust().notify().serve(dir, &args).0
}

/// Writes `marker` and waits until that one file, alone, has triggered a build; every change
/// before it has been handled by then (events are handled in order).
fn change_only(devserve: &Devserve, dir: &Path, marker: &str) {
    write(&dir.join(marker), "marker");
    devserve.wait_for(&format!("{marker} changed: building"));
}

#[test]
fn a_burst_of_a_thousand_writes_is_one_build() {
    let dir = temp_dir("burst");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    // A generous quiet period: the test's own writes must not stall longer than it on a busy CI.
    let devserve = serve(&dir, &["--debounce", "300ms"]);
    for i in 0..1200 {
        let sub = if i % 2 == 0 { "src" } else { "src/generated/deep" };
        write(&dir.join(format!("{sub}/file{i}.txt")), &format!("content {i}"));
    }
    devserve.wait_for("gen 2 ready");
    change_only(&devserve, &dir, "src/marker");
    let output = devserve.output();
    assert_eq!(output.matches(": building (").count(), 3, "start, burst, marker:\n{output}");
    assert!(output.contains("1200 files changed: building"), "{output}");
}

#[test]
fn ignored_paths_trigger_nothing() {
    let dir = temp_dir("ignored");
    write(&dir.join(".gitignore"), "*.log\n/dist\n");
    std::fs::create_dir_all(dir.join(".git/objects")).expect("mkdir");
    let devserve = serve(&dir, &["-i", "assets/**"]);
    for ignored in [
        "debug.log",
        "dist/bundle.js",
        ".git/objects/ab",
        "target/debug/app",
        "node_modules/pkg/index.js",
        "src/.main.rs.swp",
        "src/main.rs~",
        "assets/logo.png",
    ] {
        write(&dir.join(ignored), "ignored");
    }
    change_only(&devserve, &dir, "marker");
    let output = devserve.output();
    assert_eq!(output.matches(": building (").count(), 2, "only the first start and the marker:\n{output}");
}

#[test]
fn extensions_filter_changes() {
    let dir = temp_dir("exts");
    let devserve = serve(&dir, &["-e", "rs,toml"]);
    write(&dir.join("notes.md"), "ignored by extension");
    change_only(&devserve, &dir, "main.rs");
    assert_eq!(devserve.count(": building ("), 2, "{}", devserve.output());
}

#[test]
fn an_atomic_save_counts_once_as_the_real_file() {
    let dir = temp_dir("atomic");
    write(&dir.join("main.rs"), "fn main() {}");
    let devserve = serve(&dir, &[]);
    // An editor's save: write a temporary file, rename it over the real one.
    let temp = dir.join("main.rs.tmp-8841");
    write(&temp, "fn main() { println!(); }");
    std::fs::rename(&temp, dir.join("main.rs")).expect("rename");
    devserve.wait_for("main.rs changed: building");
    devserve.wait_for("gen 2 ready");
    change_only(&devserve, &dir, "marker");
    assert_eq!(devserve.count(": building ("), 3, "{}", devserve.output());
}

#[test]
fn new_directories_are_watched() {
    let dir = temp_dir("newdir");
    let devserve = serve(&dir, &[]);
    // An empty folder is no change; a file in it is, and later files too (the folder is watched).
    std::fs::create_dir_all(dir.join("pkg/sub")).expect("mkdir");
    change_only(&devserve, &dir, "pkg/sub/first.txt");
    devserve.wait_for("gen 2 ready");
    change_only(&devserve, &dir, "pkg/sub/late.txt");
    assert_eq!(devserve.count(": building ("), 3, "{}", devserve.output());
}

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

#[test]
fn duplicate_roots_are_merged() {
    let dir = temp_dir("duplicate-roots");
    let devserve =
        Fixture::python().notify().start(&dir, &["-w", ".", "-w", ".", "-w", "./", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    assert!(devserve.output().contains("watching . ("), "{}", devserve.output());
}

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
fn a_build_writing_into_the_tree_does_not_loop() {
    let dir = temp_dir("self-write");
    let build = "echo build-ran; mkdir -p target/debug && date +%N > target/debug/stamp";
    let devserve = Fixture::rust().notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0", "-b", build]);
    devserve.wait_for("gen 1 ready");
    change_only(&devserve, &dir, "marker");
    devserve.wait_for("gen 2 ready");
    change_only(&devserve, &dir, "marker2");
    assert_eq!(devserve.count(": building ("), 3, "{}", devserve.output());
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
fn a_change_during_a_build_restarts_it_and_the_latest_save_wins() {
    let dir = temp_dir("cancel");
    write(&dir.join("src/version"), "v1");
    let build = "echo \"build-start $(cat src/version)\"; sleep 2; mkdir -p out; cp src/version out/version";
    let fixture = Fixture::rust().notify().version_file("out/version");
    let devserve = fixture.start(&dir, &["-w", "src", "-l", "127.0.0.1:0", "-b", build]);
    let addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    write(&dir.join("src/version"), "v2");
    devserve.wait_for("build-start v2");
    write(&dir.join("src/version"), "v3");
    devserve.wait_for("restarting the build");
    devserve.wait_for("gen 2 ready");
    assert_eq!(field(&http_get(&addr, "/").expect("GET"), "version"), "v3");
    assert_eq!(devserve.count("build ok"), 2, "the cancelled build never finished:\n{}", devserve.output());
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
    let addr = devserve.proxy_addr();
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
