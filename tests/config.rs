//! The configuration: `devserve.toml` and its live edits, `check`, and `-E`. A valid edit swaps in
//! the new environment as one generation with no refused connection; invalid edits (TOML syntax, an
//! unknown key, a bad or busy address, each reported at `file:line:col`; a huge duration) are not
//! applied and gen 1 keeps serving; edited watch rules apply at once; a new listen address is bound
//! first and the old one released after the swap, and an edit that keeps an address keeps its
//! socket (no refusal) and adds the new one; an edit that changes nothing, or only what applies
//! from the next start, starts no generation and says so. `check` lists every problem or what would
//! run (the command line over the file), and describes and tries the front door. The file itself is
//! validated: `[env]` names, a dangling or looping symlink, a FIFO or a device, a NUL in a socket
//! path, a pidfile that is a folder; devserve's own variables are refused in `-E`, and `-E`
//! replaces devserve's own value of any other. The Rust fixture on port 0; the Python fixture.

mod common;

use std::os::unix::fs::symlink;
use std::time::Instant;

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

#[test]
fn check_lists_every_problem_or_what_would_run() {
    let dir = temp_dir("check");
    write(&dir.join("src/keep"), "");
    write(&dir.join("devserve.toml"), &format!("workers = 2\n{}", config_text("")));
    let finished = run_devserve(&dir, &["check"], &[]);
    let (code, stdout, stderr) = (finished.code(), finished.stdout, finished.stderr);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("workers: 2")
            && stdout.contains("front door: listen on 127.0.0.1:0")
            && stdout.ends_with("ok\n"),
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

#[test]
fn check_describes_the_front_door_and_tries_its_address() {
    let dir = temp_dir("first-contact-check");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = busy.local_addr().expect("addr").to_string();
    let finished = run_devserve(dir.path(), &["check", "--proxy", &busy, "--", "true"], &[]);
    assert_eq!(
        finished.code(),
        2,
        "a busy front door fails check, as it would fail the start\n{}",
        finished.stdout
    );
    assert!(finished.stderr.contains("address already in use"), "{}", finished.stderr);

    let free = format!("127.0.0.1:{}", free_port());
    let finished = run_devserve(dir.path(), &["check", "--proxy", &free, "--", "true"], &[]);
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    let front = finished.stdout.lines().find(|l| l.starts_with("front door:")).unwrap_or_default().to_owned();
    assert!(front.contains(&format!("proxy on {free}")), "{}", finished.stdout);
    assert!(front.contains("PORT"), "{front}");
    let restart = run_devserve(dir.path(), &["check", "--", "true"], &[]);
    assert!(restart.stdout.contains("front door: none (restart mode"), "{}", restart.stdout);
}

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
fn a_nul_in_a_unix_socket_path_is_refused() {
    let dir = temp_dir("nul-path");
    write(&dir.join("devserve.toml"), "command = [\"true\"]\nlisten = [\"unix:/tmp/a\\u0000b\"]\n");
    one_error(&dir, &["check"], "NUL");
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
