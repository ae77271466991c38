//! devserve.toml (validate-or-keep live reloads), `check`, `--once` exit codes, JSON events,
//! `cargo devserve`, completions and the man page.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A config file for the Rust fixture on port 0, with `env` lines added to its `[env]` table.
fn config_text(env: &str) -> String {
    format!(
        "command = [\"{}\"]\nwatch = [\"src\"]\nlisten = [\"127.0.0.1:0\"]\n[env]\nFIXTURE_NOTIFY = \"1\"\n{env}",
        rust_fixture().display()
    )
}

#[test]
fn a_valid_config_edit_swaps_in_the_new_env_without_refusing_a_connection() {
    let dir = temp_dir("config-edit");
    write(&dir.join("src/keep"), "");
    write(&dir.join("devserve.toml"), &config_text("FIXTURE_EXTRA = \"one\"\n"));
    let devserve = Devserve::start(&dir, &[], &[]);
    let addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    assert!(http_get(&addr, "/env").expect("GET /env").contains("FIXTURE_EXTRA=one\n"));
    let load = Load::start(&addr, 1);
    load.wait_for_answers(3);
    write(&dir.join("devserve.toml"), &config_text("FIXTURE_EXTRA = \"two\"\n"));
    devserve.wait_for("devserve.toml: applied");
    devserve.wait_for("gen 2 ready");
    assert!(devserve.output().contains("· reload (config changed)"), "{}", devserve.output());
    assert!(wait_until(WAIT, || http_get(&addr, "/env").is_ok_and(|b| b.contains("FIXTURE_EXTRA=two\n"))));
    load.wait_for_answers(3);
    let result = load.stop();
    assert!(result.failures.is_empty(), "failed requests: {:?}", result.failures);
    // A config edit is not a source change: only one generation came of it.
    assert_eq!(devserve.count(": building") + devserve.count("starting (pid"), 2, "{}", devserve.output());
}

#[test]
fn invalid_config_edits_keep_the_old_config_and_generation() {
    let dir = temp_dir("config-invalid");
    write(&dir.join("src/keep"), "");
    write(&dir.join("devserve.toml"), &config_text(""));
    let devserve = Devserve::start(&dir, &[], &[]);
    let addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    let pid = field(&http_get(&addr, "/").expect("GET"), "pid");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    let edits = [
        ("command = [\n", "devserve.toml:"),
        ("wrkers = 2\n", "devserve.toml:1:1: unknown field `wrkers`"),
        ("listen = [\"nowhere\"]\n", "devserve.toml:1:10: listen: `nowhere` is not a listen address"),
        (&format!("listen = [\"{busy_addr}\"]\n"), "devserve.toml:1:10: listen: cannot listen on"),
    ];
    for (round, (first_line, expected)) in edits.iter().enumerate() {
        let text = config_text("").replacen(
            "listen = [\"127.0.0.1:0\"]\n",
            "",
            usize::from(first_line.starts_with("listen")),
        );
        write(&dir.join("devserve.toml"), &format!("{first_line}{text}"));
        devserve.wait_for(expected);
        devserve.wait_for_count("not applied; the running config stays", round + 1);
        assert_eq!(field(&http_get(&addr, "/").expect("GET"), "pid"), pid, "gen 1 keeps serving");
    }
    assert_eq!(devserve.count("gen 2"), 0, "{}", devserve.output());
}

#[test]
fn check_lists_every_problem_or_what_would_run() {
    let dir = temp_dir("check");
    write(&dir.join("src/keep"), "");
    write(&dir.join("devserve.toml"), &format!("workers = 2\n{}", config_text("")));
    let finished = run_devserve(&dir, &["check"], &[]);
    let (code, stdout, stderr) = (finished.code(), finished.stdout, finished.stderr);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("workers: 2") && stdout.contains("front door: listen on 127.0.0.1:0") && stdout.ends_with("ok\n"),
        "{stdout}"
    );
    write(
        &dir.join("devserve.toml"),
        "command = [\"devserve-no-such-app\"]\nready-delay = \"soon\"\nwatch = [\"gone\"]\n",
    );
    let finished = run_devserve(&dir, &["check"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 2);
    for problem in [
        "devserve.toml:2:15: ready-delay",
        "devserve.toml:3:9: watch path does not exist: gone",
        "devserve.toml:1:11: command not found",
    ] {
        assert!(stderr.contains(problem), "{problem:?} missing from:\n{stderr}");
    }
    // The command line wins over the file.
    let finished = run_devserve(&dir, &["check", "-w", "src", "--ready-delay", "2s", "--", "true"], &[]);
    let (code, stdout, stderr) = (finished.code(), finished.stdout, finished.stderr);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ready-delay 2s"), "{stdout}");
}

/// Fetches `/` from the generation under test; fails unless it answers 200.
const PROBE: &str = "python3 -c 'import os, urllib.request; urllib.request.urlopen(\"http://\" + os.environ[\"DEVSERVE_ADDR\"] + \"/\")'";

#[test]
fn once_exit_codes_for_each_outcome() {
    let dir = temp_dir("once");
    write(&dir.join("version"), "v1");
    let fixture = rust_fixture();
    let fixture = fixture.to_str().expect("utf-8");
    let base = [
        "--once",
        "-w",
        ".",
        "-l",
        "127.0.0.1:0",
        "-E",
        "FIXTURE_NOTIFY=1",
        "-E",
        "FIXTURE_VERSION_FILE=version",
    ];
    let cases: [(&[&str], &str, i32); 5] = [
        (&["--probe", PROBE], "v1", 0),
        (&["-b", "exit 7"], "v1", 3),
        (&[], "crash", 4),
        (&["--ready-timeout", "1s"], "hang", 4),
        (&["--probe", "exit 1"], "v1", 5),
    ];
    for (extra, version, expected) in cases {
        write(&dir.join("version"), version);
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        args.extend(["--", fixture]);
        let finished = run_devserve(&dir, &args, &[]);
        let (code, stderr, took) = (finished.code(), finished.stderr, finished.took);
        assert_eq!(code, expected, "{extra:?} with version {version}:\n{stderr}");
        assert!(took < Duration::from_secs(30), "{extra:?} took {took:?}");
    }
}

#[test]
fn json_events_parse_and_carry_timings() {
    let dir = temp_dir("json");
    let fixture = rust_fixture();
    let args =
        ["--once", "--log-format", "json", "-b", "true", "-l", "127.0.0.1:0", "-E", "FIXTURE_NOTIFY=1", "--"];
    let mut args: Vec<&str> = args.to_vec();
    args.push(fixture.to_str().expect("utf-8"));
    let finished = run_devserve(&dir, &args, &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in [
        "change_detected",
        "build_started",
        "build_finished",
        "generation_starting",
        "generation_ready",
        "generation_stopped",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let ready = events.iter().find(|e| e["event"] == "generation_ready").expect("ready event");
    for timing in ["total_ms", "build_ms", "start_ms"] {
        assert!(ready[timing].is_u64(), "{timing} in {ready}");
    }
    // A first start waited for no debounce: no phase is made up for it.
    assert!(ready["debounce_ms"].is_null(), "{ready}");
    assert!(ready["assumed_after_ms"].is_null(), "READY=1 was sent: {ready}");
    assert!(!stderr.contains("\"text\":\"gen 1 ready") && !stderr.contains("debounce 0ms"), "{stderr}");
    let build = events.iter().find(|e| e["event"] == "build_finished").expect("build event");
    assert_eq!(build["ok"], true);
    assert!(build["duration_ms"].is_u64());
    assert!(
        stderr.lines().all(|l| l.starts_with('{') || l.starts_with("fixture:")),
        "only JSON from devserve:\n{stderr}"
    );
}

#[test]
fn cargo_devserve_cargo_run_completions_and_man_page() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cargo-devserve")).parent().expect("bin dir").to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = run_to_completion(
        Command::new(option_env!("CARGO").unwrap_or("cargo")).args(["devserve", "--help"]).env("PATH", path),
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("Usage: devserve"));

    // The README's quick start is `cargo run -- …`: with two binaries, devserve is the default.
    let out = run_to_completion(
        Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["run", "-q", "--", "--version"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.starts_with("devserve "));

    let dir = temp_dir("completions");
    let finished = run_devserve(&dir, &["--completions", "bash"], &[]);
    let (code, stdout) = (finished.code(), finished.stdout);
    assert_eq!(code, 0);
    assert!(stdout.contains("--ready-timeout") && stdout.contains("complete"), "{stdout}");
    let finished = run_devserve(&dir, &["--man"], &[]);
    let (code, stdout) = (finished.code(), finished.stdout);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(".ie") || stdout.contains(".TH devserve"),
        "{}",
        &stdout[..stdout.len().min(200)]
    );
}

#[test]
fn watch_rules_from_an_edit_take_effect_at_once() {
    let dir = temp_dir("config-watch");
    write(&dir.join("src/keep"), "");
    write(&dir.join("other/keep"), "");
    write(&dir.join("devserve.toml"), &config_text(""));
    let devserve = Devserve::start(&dir, &[], &[]);
    devserve.wait_for("gen 1 ready");
    let edited = config_text("").replace("watch = [\"src\"]", "watch = [\"other\"]");
    write(&dir.join("devserve.toml"), &edited);
    devserve.wait_for("devserve.toml: applied");
    devserve.wait_for("watching other");
    write(&dir.join("src/ignored-now"), "x");
    write(&dir.join("other/watched-now"), "x");
    devserve.wait_for("other/watched-now changed");
    devserve.wait_for("gen 2 ready");
    assert!(!devserve.output().contains("src/ignored-now"), "{}", devserve.output());
}

#[test]
fn a_new_listen_address_is_bound_first_and_the_old_released_after_the_swap() {
    let dir = temp_dir("config-listen");
    write(&dir.join("src/keep"), "");
    write(&dir.join("devserve.toml"), &config_text(""));
    let devserve = Devserve::start(&dir, &[], &[]);
    let old_addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    let edited = config_text("").replace("listen = [\"127.0.0.1:0\"]", "listen = [\"web=127.0.0.2:0\"]");
    write(&dir.join("devserve.toml"), &edited);
    let new_addr = devserve.listen_addr(1);
    devserve.wait_for("gen 2 ready");
    devserve.wait_for("gen 1 stopped");
    assert!(http_get(&new_addr, "/env").expect("new address serves").contains("LISTEN_FDNAMES=web\n"));
    assert!(
        wait_until(WAIT, || std::net::TcpStream::connect(&old_addr).is_err()),
        "the old socket is released once no generation uses it"
    );
}

#[test]
fn clear_wipes_the_screen_before_each_reload_but_not_the_first_start() {
    let dir = temp_dir("clear");
    let devserve = Fixture::rust().notify().start(&dir, &["--clear", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    assert!(!devserve.output().contains("\x1b[2J"), "no clear at the first start");
    write(&dir.join("changed"), "x");
    devserve.wait_for("gen 2 ready");
    assert_eq!(devserve.count("\x1b[2J"), 1, "{:?}", devserve.output());
}

#[test]
fn a_listen_edit_keeps_the_addresses_already_held() {
    let dir = temp_dir("config-keep-listen");
    write(&dir.join("src/keep"), "");
    let port = free_port();
    let first = format!("127.0.0.1:{port}");
    write(&dir.join("devserve.toml"), &config_text("").replace("127.0.0.1:0", &first));
    let devserve = Devserve::start(&dir, &[], &[]);
    devserve.wait_for("gen 1 ready");
    let load = Load::start(&first, 1);
    load.wait_for_answers(3);
    let both = format!("listen = [\"{first}\", \"admin=127.0.0.1:0\"]");
    write(&dir.join("devserve.toml"), &config_text("").replace("listen = [\"127.0.0.1:0\"]", &both));
    devserve.wait_for("devserve.toml: applied");
    let admin = devserve.listen_addr(2);
    devserve.wait_for("gen 2 ready");
    load.wait_for_answers(3);
    let result = load.stop();
    assert!(result.failures.is_empty(), "the kept address never refused: {:?}", result.failures);
    // The fixture serves fd 3 only; the new socket is fd 4 and listening (held by devserve).
    let env = wait_until(WAIT, || {
        http_get(&first, "/env")
            .is_ok_and(|env| env.contains("LISTEN_FDS=2\n") && env.contains("LISTEN_FDNAMES=listen0:admin\n"))
    });
    assert!(env, "gen 2 got both sockets");
    assert!(std::net::TcpStream::connect(&admin).is_ok(), "the new address is listening");
}

#[test]
fn env_given_to_workers_replaces_devserves_own_value() {
    let dir = temp_dir("env-override");
    let fixture = Fixture::rust().notify().env("FIXTURE_EXTRA", "from-devserve");
    let devserve = fixture.start(&dir, &["-l", "127.0.0.1:0", "-E", "FIXTURE_EXTRA=from-flag"]);
    let addr = devserve.listen_addr(0);
    devserve.wait_for("gen 1 ready");
    let env = http_get(&addr, "/env").expect("GET /env");
    assert!(env.contains("FIXTURE_EXTRA=from-flag\n"), "{env}");
}

#[test]
fn an_edit_that_changes_nothing_is_no_change_and_one_that_waits_says_so() {
    let dir = temp_dir("config-no-change");
    write(&dir.join("src/keep"), "");
    write(&dir.join("devserve.toml"), &config_text(""));
    let devserve = Devserve::start(&dir, &[], &[]);
    devserve.wait_for("gen 1 ready");
    // A comment above `listen` moves its location, and changes nothing.
    write(&dir.join("devserve.toml"), &format!("# a comment\n{}", config_text("")));
    devserve.wait_for("devserve.toml: no change");
    write(&dir.join("devserve.toml"), &format!("# a comment\npidfile = \"x.pid\"\n{}", config_text("")));
    devserve.wait_for("devserve.toml: applied (pidfile); from the next start: pidfile");
    assert_eq!(
        devserve.count("starting (pid"),
        1,
        "neither edit starts a generation:\n{}",
        devserve.output()
    );
}
