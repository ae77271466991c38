//! The command line, and the terminal. `-h` fits a screen (the front doors, the ten most used
//! flags, the verbs, where to read more); `--help` lists every option under a topic and wraps to
//! `COLUMNS`; a misspelt flag keeps clap's suggestion on its one error line; a flag from
//! cargo-watch, nodemon, air or watchexec gets one line with the exact devserve words to type
//! instead; `--signal` without a pidfile names the `kill` to use. Bad input (an unknown flag, a
//! missing command, watch paths, addresses, durations up to the 24h maximum, signals, commands not
//! found or not executable, the inotify watch limit, `--proxy` flags, a stop signal that pauses, an
//! empty command or probe, a folder as the command, a symlink loop) gives one error line naming the
//! culprit, exit 2 (usage) or 1, never a panic. `cargo devserve`, `cargo run`, completions and the
//! man page. On a terminal, keys reload (r), show the status (s) and the keys (?) and stop (q), and
//! `--clear` wipes the screen before each reload; stdin that is not a terminal is never read. All
//! through the real binary, with no terminal unless `script` gives it one (so clap reads
//! `COLUMNS`).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use common::*;

/// devserve's help, asked with `flag` at `columns` columns: its lines.
fn help(flag: &str, columns: &str) -> Vec<String> {
    let dir = temp_dir("help");
    let finished = run_devserve(&dir, &[flag], &[("COLUMNS", columns)]);
    assert_eq!(finished.code(), 0, "{flag}: {}", finished.stderr);
    assert!(finished.stderr.is_empty(), "{flag} prints on stdout: {}", finished.stderr);
    finished.stdout.lines().map(str::to_owned).collect()
}

/// The lines of `lines` longer than `columns` characters.
fn too_long(lines: &[String], columns: usize) -> Vec<&String> {
    lines.iter().filter(|l| l.chars().count() > columns).collect()
}

#[test]
fn short_help_fits_a_screen_with_the_front_doors_the_main_flags_and_the_verbs() {
    let lines = help("-h", "80");
    let text = lines.join("\n");
    assert!(lines.len() <= 40, "-h has {} lines at COLUMNS=80:\n{text}", lines.len());
    assert!(too_long(&lines, 80).is_empty(), "-h wider than 80 columns:\n{text}");
    assert!(text.starts_with("Rebuild and swap") && text.contains("\nUsage: devserve "), "{text}");
    // The three front doors, one line each.
    let door = |start: &str| lines.iter().find(|l| l.trim_start().starts_with(start)).cloned();
    let proxy = door("--proxy ADDR").unwrap_or_else(|| panic!("a line for --proxy ADDR:\n{text}"));
    assert!(proxy.contains("any HTTP app") && proxy.contains("$PORT") && proxy.contains("{port}"), "{proxy}");
    let listen = door("--listen ADDR").unwrap_or_else(|| panic!("a line for --listen ADDR:\n{text}"));
    assert!(listen.contains("socket hand-over") && listen.contains("fd 3"), "{listen}");
    let neither = door("neither").unwrap_or_else(|| panic!("a line for neither:\n{text}"));
    assert!(neither.contains("restart mode"), "{neither}");
    // The ten most used flags, and none of the rest.
    for flag in [
        "-w, --watch",
        "-e, --exts",
        "-i, --ignore",
        "-b, --build",
        "--proxy <ADDR>",
        "-l, --listen",
        "--app-port",
        "--ready-path",
        "-n, --workers",
        "--once",
    ] {
        assert!(text.contains(flag), "-h shows {flag}:\n{text}");
    }
    for hidden in ["--stop-timeout", "--hold-timeout", "--completions", "--pidfile"] {
        assert!(!text.contains(hidden), "-h leaves {hidden} to --help:\n{text}");
    }
    // The verbs, and where to read more.
    let verb = |start: &str| lines.iter().any(|l| l.trim_start().starts_with(start));
    assert!(verb("devserve check") && verb("devserve init") && verb("devserve  "), "the verbs:\n{text}");
    assert!(
        text.contains("devserve --help") && text.contains("docs/"),
        "a pointer to --help and the book:\n{text}"
    );
}

#[test]
fn long_help_groups_every_option_by_topic_and_wraps_to_columns() {
    let lines = help("--help", "80");
    let text = lines.join("\n");
    let headings = [
        "Watching:",
        "Building:",
        "Front door:",
        "Workers:",
        "Readiness and stopping:",
        "Control:",
        "Output:",
    ];
    let found: Vec<&str> = lines.iter().map(String::as_str).filter(|l| headings.contains(l)).collect();
    assert_eq!(found, headings, "--help's topics, in order:\n{text}");
    // Only -h and -V stay under clap's own `Options:`.
    let options =
        text.split("\nOptions:\n").nth(1).expect("Options:").split("\n\nWatching:").next().expect("section");
    let flags: Vec<&str> = options.lines().filter(|l| l.starts_with("  -")).map(str::trim).collect();
    assert_eq!(flags, ["-h, --help", "-V, --version"], "--help:\n{text}");
    assert!(too_long(&lines, 80).is_empty(), "--help lines over 80 columns: {:#?}", too_long(&lines, 80));
    assert!(text.contains("devserve check") && text.contains("devserve init"), "the verbs:\n{text}");
    // Narrower: clap wraps to COLUMNS, not to a width of its own.
    let narrow = help("--help", "60");
    assert!(narrow.len() > lines.len(), "COLUMNS=60 wraps more lines than 80");
    assert!(too_long(&narrow, 60).is_empty(), "--help lines over 60 columns: {:#?}", too_long(&narrow, 60));
}

/// devserve run in `dir` with `args`: exit 2 and exactly one line on stderr, returned.
fn usage_error(dir: &Path, args: &[&str]) -> String {
    let mut command = devserve_command(dir, args, &[]);
    // The program `cargo build` makes is under the package's own target/.
    command.env_remove("CARGO_TARGET_DIR").env_remove("CARGO_BUILD_TARGET_DIR");
    let finished = run_to_completion(&mut command);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 2, "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line:\n{stderr}");
    lines[0]
        .strip_prefix("[devserve] error: ")
        .unwrap_or_else(|| panic!("an error line: {stderr}"))
        .to_owned()
}

#[test]
fn a_misspelt_flag_keeps_clap_suggestion_on_its_one_line() {
    let dir = temp_dir("misspelt");
    let cases = [
        (
            ["--ext", "rs", "--", "true"],
            "unexpected argument '--ext' found; a similar argument exists: '--exts'",
        ),
        (
            ["--wach", "src", "--", "true"],
            "unexpected argument '--wach' found; a similar argument exists: '--watch'",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(usage_error(&dir, &args), format!("{expected} (see --help)"), "{args:?}");
    }
}

#[test]
fn flags_from_other_tools_get_the_exact_words_to_type_instead() {
    let plain = temp_dir("peer-hints");
    let project = temp_dir("peer-hints-cargo");
    write(
        &project.join("Cargo.toml"),
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(&project.join("src/main.rs"), "fn main() {}\n");
    let air = temp_dir("peer-hints-air");
    write(&air.join(".air.toml"), "[build]\ncmd = \"go build -o ./tmp/web ./cmd/web\"\nbin = \"tmp/web\"\n");

    let run = "cargo run is the server and never finishes, so build with -b and run the program after --";
    let zero = "(plain devserve runs a cargo project with no arguments)";
    let step = "devserve runs the build step given with -b, and the server after --";
    let server = "devserve runs the server given after --";
    let hello = "devserve -b 'cargo build' -- target/debug/hello";
    let check =
        |dir: &Path, args: &[&str], expected: &str| assert_eq!(usage_error(dir, args), expected, "{args:?}");

    // cargo-watch's -x: the binary named by `cargo metadata`, or NAME without a Cargo.toml.
    check(&project, &["-x", "cargo run"], &format!("-x 'cargo run': {run}: {hello} {zero}"));
    check(&project, &["-x", "run"], &format!("-x run: {run}: {hello} {zero}"));
    check(
        &plain,
        &["-x", "run"],
        &format!("-x run: {run}: devserve -b 'cargo build' -- target/debug/NAME {zero}"),
    );
    check(
        &project,
        &["-x", "check", "--", "true"],
        &format!("-x check: {step}: devserve -b 'cargo check' -- true"),
    );
    check(&project, &["-x", "check"], &format!("-x check: {step}: devserve -b 'cargo check' -- COMMAND"));
    check(&project, &["-x", "build"], &format!("-x build: {step}: {hello}"));
    // nodemon's --exec: the server after --.
    check(
        &plain,
        &["--exec", "python3 app.py"],
        &format!("--exec 'python3 app.py': {server}: devserve -- python3 app.py"),
    );
    // air's -c: devserve reads devserve.toml; the file's build and program as flags.
    check(
        &air,
        &["-c", ".air.toml"],
        "-c .air.toml: that is air's configuration; devserve reads devserve.toml (devserve init writes one), \
         or takes the same on its command line: devserve -b 'go build -o ./tmp/web ./cmd/web' -- tmp/web",
    );
    // cargo-watch's -s (a shell command): a build step, or the server.
    check(
        &plain,
        &["-s", "make", "--", "./app"],
        "-s make: devserve's -s is --signal; a build command is the build step: devserve -b 'make' -- ./app",
    );
    check(
        &plain,
        &["-s", "python3 app.py | tee log"],
        &format!(
            "-s 'python3 app.py | tee log': devserve's -s is --signal; {server}: \
             devserve -- sh -c 'python3 app.py | tee log'"
        ),
    );
    // The hints devserve gave before, now naming the value typed.
    check(
        &plain,
        &["--delay", "1s", "--", "true"],
        "--delay 1s: devserve calls it --debounce DUR (e.g. --debounce 200ms)",
    );
    check(
        &plain,
        &["-r", "--", "true"],
        "-r: devserve always replaces the server on a change (the old one drains); drop -r",
    );
    check(
        &plain,
        &["--postpone", "--", "true"],
        "--postpone: devserve always starts the server at once; there is no --postpone",
    );
    check(&plain, &["-p", "--", "true"], "-p: devserve calls it --poll [DUR] (default 500ms)");
    check(
        &plain,
        &["--signal", "SIGTERM", "--", "true"],
        "--signal SIGTERM: to choose the signal that stops workers use --stop-signal SIGTERM; \
         devserve's --signal controls a running devserve (reload, stop, quit, status)",
    );
}

#[test]
fn flags_from_other_tools_get_one_line_pointing_to_devserves_way() {
    let dir = temp_dir("peer-flags");
    let cases: &[(&[&str], &str)] = &[
        (&["--delay", "1s", "--", "true"], "--debounce"),
        (&["-x", "check", "--", "true"], "-b 'cargo check'"),
        (&["--exec", "run", "--", "true"], "-b 'cargo build' -- target/debug/NAME"),
        (&["-r", "--", "true"], "always replaces the server"),
        (&["--restart", "--", "true"], "always replaces the server"),
        (&["--postpone", "--", "true"], "no --postpone"),
        (&["-p", "--", "true"], "--poll [DUR]"),
        (&["--signal", "SIGTERM", "--", "true"], "--stop-signal SIGTERM"),
    ];
    for (args, hint) in cases {
        let finished = run_devserve(&dir, args, &[]);
        let (code, stderr) = (finished.code(), finished.stderr);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line:\n{stderr}");
        assert!(lines[0].contains(hint), "{args:?} should point to {hint:?}: {}", lines[0]);
    }
}

#[test]
fn signal_without_a_pidfile_names_the_kill_to_use() {
    let dir = temp_dir("signal-no-pidfile");
    let finished = run_devserve(&dir, &["-s", "reload"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--signal needs --pidfile PATH") && stderr.contains("no devserve runs"),
        "{stderr}"
    );
    let devserve = Fixture::python().notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    let finished = run_devserve(&dir, &["-s", "reload"], &[]);
    let (code, stderr) = (finished.code(), finished.stderr);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("`kill -HUP {}`", devserve.pid())), "{stderr}");
}

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
fn proxy_bad_input_is_one_line() {
    let dir = temp_dir("proxy-bad-input");
    let cases: &[(&[&str], &str, i32)] = &[
        (&["--proxy", "127.0.0.1:0", "-l", "127.0.0.1:0", "--", "true"], "--listen", 2),
        (&["--proxy", "127.0.0.1:0", "--app-port", "8080", "--", "true", "--port", "{port}"], "{port}", 2),
        (&["--proxy", "127.0.0.1:0", "--ready-path", "health", "--", "true"], "health", 2),
        (&["--app-port", "8080", "--", "true"], "--app-port needs --proxy", 2),
    ];
    for (args, culprit, code) in cases {
        let result = run_devserve(dir.path(), args, &[]);
        assert_eq!(result.code(), *code, "{args:?}: {}", result.stderr);
        let errors: Vec<&str> = result.stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {}", result.stderr);
        assert!(errors[0].contains(culprit), "{args:?}: {}", errors[0]);
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr").to_string();
    let result = run_devserve(dir.path(), &["--proxy", &busy, "--", "true"], &[]);
    assert_eq!(result.code(), 1, "{}", result.stderr);
    assert!(result.stderr.contains("address already in use"), "{}", result.stderr);
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
fn keys_on_a_terminal_reload_show_status_and_stop() {
    use std::io::Write;
    let dir = temp_dir("keys");
    let command_line =
        format!("{} -w . -l 127.0.0.1:0 -- python3 {}", devserve_bin(), python_fixture().display());
    // `script` gives devserve a terminal of its own (a pty), fed from our pipe.
    let (mut keys, mut devserve) = on_terminal(dir.path(), &command_line, &[("FIXTURE_NOTIFY", "1")]);
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
