//! The build's output on devserve's stderr, with the real binary: a `cargo` first in `PATH` that
//! prints cargo's JSON messages (devserve runs a plain `cargo build` with
//! `--message-format=json-diagnostic-rendered-ansi`) and fails. The test kit reads devserve's
//! stderr through a pipe, not a terminal.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A line of the build's own output, coloured by the build itself: passed through as written.
const COMPILING: &str = "\x1b[1m\x1b[32m   Compiling\x1b[0m app v0.1.0 (/tmp/app)";

/// A folder with a `cargo` that prints, on stdout, cargo's JSON for `let y = x;` with no `x`
/// (its `rendered` texts coloured, as cargo always does with `-ansi`), on stderr [`COMPILING`],
/// and exits 101.
fn fake_cargo(tools: &Path) {
    let rendered = concat!(
        "\x1b[0m\x1b[1m\x1b[38;5;9merror[E0425]\x1b[0m\x1b[0m\x1b[1m: ",
        "cannot find value `x` in this scope\x1b[0m\n",
        "\x1b[0m \x1b[0m\x1b[0m\x1b[1m\x1b[38;5;12m--> \x1b[0m\x1b[0msrc/main.rs:2:13\x1b[0m\n",
    );
    let aborting =
        "\x1b[0m\x1b[1m\x1b[38;5;9merror\x1b[0m\x1b[0m\x1b[1m: aborting due to 1 previous error\x1b[0m\n\n";
    let span = serde_json::json!({
        "file_name": "src/main.rs", "line_start": 2, "line_end": 2, "column_start": 13,
        "column_end": 14, "is_primary": true, "text": [], "label": "not found in this scope",
    });
    let messages = [
        serde_json::json!({"reason": "compiler-artifact", "package_id": "dep 1.0.0", "fresh": true}),
        serde_json::json!({"reason": "compiler-message", "package_id": "app 0.1.0", "message": {
            "level": "error", "message": "cannot find value `x` in this scope", "spans": [span],
            "children": [], "rendered": rendered}}),
        serde_json::json!({"reason": "compiler-message", "package_id": "app 0.1.0", "message": {
            "level": "error", "message": "aborting due to 1 previous error", "spans": [], "children": [],
            "rendered": aborting}}),
        serde_json::json!({"reason": "build-finished", "success": false}),
    ];
    let json: String = messages.iter().map(|m| format!("{m}\n")).collect();
    write(&tools.join("messages.json"), &json);
    write(&tools.join("compiling.txt"), &format!("{COMPILING}\n"));
    let script = format!(
        "#!/bin/sh\ncat '{0}/compiling.txt' >&2\ncat '{0}/messages.json'\nexit 101\n",
        tools.display()
    );
    let cargo = tools.join("cargo");
    write(&cargo, &script);
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
}

/// devserve `--once` behind the front door with `-b "cargo build"` and the fake `cargo` first in
/// `PATH`; `no_color` says whether `NO_COLOR=1` is set. Returns devserve's stderr.
fn failed_build_stderr(name: &str, no_color: bool) -> String {
    let dir = temp_dir(name);
    let tools = temp_dir(&format!("{name}-tools"));
    fake_cargo(tools.path());
    let path = format!("{}:{}", tools.path().display(), std::env::var("PATH").unwrap_or_default());
    let args = ["--once", "--proxy", "127.0.0.1:0", "-b", "cargo build", "--", "sleep", "60"];
    let mut command: Command = devserve_command(dir.path(), &args, &[("PATH", &path)]);
    if !no_color {
        command.env_remove("NO_COLOR");
    }
    let finished = run_to_completion(&mut command);
    assert_ne!(finished.code(), 0, "the build failed: {}", finished.stderr);
    assert!(
        finished.stderr.contains("cannot find value `x` in this scope"),
        "the diagnostic is shown:\n{}",
        finished.stderr
    );
    finished.stderr
}

/// What devserve printed itself, once the build's own coloured line is taken out (it must be there,
/// byte for byte).
fn without_the_build_s_own_line(stderr: &str) -> String {
    assert!(stderr.contains(COMPILING), "the build's own output is passed as written:\n{stderr:?}");
    stderr.replace(COMPILING, "")
}

#[test]
fn rendered_diagnostics_reach_a_piped_stderr_without_colour_codes() {
    let stderr = failed_build_stderr("build-output-pipe", false);
    let printed = without_the_build_s_own_line(&stderr);
    assert!(!printed.contains("\x1b["), "raw colour codes on a stderr that is not a terminal:\n{printed:?}");
    assert!(printed.contains("error[E0425]: cannot find value `x` in this scope\n --> src/main.rs:2:13\n"));
    assert!(printed.contains("error: aborting due to 1 previous error\n"), "{printed:?}");
}

#[test]
fn rendered_diagnostics_have_no_colour_codes_with_no_color() {
    let stderr = failed_build_stderr("build-output-no-color", true);
    let printed = without_the_build_s_own_line(&stderr);
    assert!(!printed.contains("\x1b["), "raw colour codes with NO_COLOR set:\n{printed:?}");
}
