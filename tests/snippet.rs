//! The book's Rust example (fixtures/axum-app, shown in docs/src/front-doors.md) is a real program: it
//! builds from its committed lock file, takes fd 3 from devserve, says READY=1, and drains a request in
//! flight across a swap.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Builds fixtures/axum-app, its own workspace, into target/axum-app with its `Cargo.lock`, and
/// returns the binary. A failed build fails the test: the book must not show code that rotted.
fn build_axum_example() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = repo.join("target/axum-app");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = run_to_completion(
        Command::new(&cargo)
            .args(["build", "--locked", "--manifest-path"])
            .arg(repo.join("fixtures/axum-app/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target),
    );
    assert!(
        output.status.success(),
        "building fixtures/axum-app failed ({}):\n{}",
        output.status,
        output.stderr
    );
    let binary = target.join("debug/axum-example");
    assert!(binary.exists(), "{} missing after the build", binary.display());
    binary
}

#[test]
fn the_axum_example_takes_fd_3_and_drains_a_request_in_flight_across_a_swap() {
    let app = build_axum_example();
    let dir = temp_dir("axum-example");
    // A ready-delay longer than the harness's wait: gen 1 is ready in time only through READY=1.
    let devserve = Devserve::start(
        &dir,
        &[
            "-w",
            ".",
            "-l",
            "127.0.0.1:0",
            "--ready-delay",
            "5m",
            "--ready-timeout",
            "10m",
            "--",
            app.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    let addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    let body = http_get(&addr, "/").expect("GET / on gen 1");
    assert!(body.starts_with("axum-example "), "unexpected body: {body:?}");
    let old_pid = field(&body, "pid");

    let slow_addr = addr.clone();
    let slow = std::thread::spawn(move || http_get(&slow_addr, "/slow?ms=1500"));
    // The app prints this once the request is read and in its handler: surely accepted by gen 1.
    devserve.wait_for(&format!("axum-example: slow request started pid={old_pid}"));
    devserve.signal("HUP");
    devserve.wait_for("gen 2 ready");
    devserve.wait_for("gen 1 stopping");

    let body = slow.join().expect("slow thread").expect("the in-flight request must complete with 200");
    assert_eq!(field(&body, "pid"), old_pid, "the slow request was answered by gen 1");
    devserve.wait_for("gen 1 stopped");
    devserve.wait_for(&format!("axum-example: drained, exiting pid={old_pid}"));

    // Only gen 2 accepts now: it answers at once.
    let body = http_get(&addr, "/").expect("GET / on gen 2");
    let new_pid = field(&body, "pid");
    assert!(!new_pid.is_empty() && new_pid != old_pid, "gen 2 answered {body:?}");
}

/// The book's chapter on front doors shows the example's `main` verbatim, so it cannot drift from
/// the code tested above.
#[test]
fn the_book_rust_example_is_an_excerpt_of_the_axum_app() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chapter =
        std::fs::read_to_string(repo.join("docs/src/front-doors.md")).expect("read docs/src/front-doors.md");
    let source =
        std::fs::read_to_string(repo.join("fixtures/axum-app/src/main.rs")).expect("read the example");
    let section = chapter
        .split_once("\n## Taking the socket in your app\n")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("docs/src/front-doors.md section \"Taking the socket in your app\"");
    let block = section
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(code, _)| code)
        .expect("a ```rust block in that section");
    assert!(
        source.contains(block),
        "the book's Rust example is not a verbatim excerpt of fixtures/axum-app/src/main.rs:\n{block}"
    );
}
