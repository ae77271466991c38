//! The watcher: bursts fold into one build, ignored paths trigger nothing, atomic saves count
//! once, new directories are watched, a build that writes into the tree does not loop, and a
//! change during a build restarts it.

mod common;

use std::path::Path;

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
