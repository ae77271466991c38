//! What the command line says about itself: `-h` fits a screen (the front doors, the ten most
//! used flags, the verbs, where to read more), `--help` lists every option under a topic and is
//! wrapped to `COLUMNS`, a misspelt flag keeps clap's suggestion on its one error line, and a
//! flag from cargo-watch, nodemon, air or watchexec gets the exact devserve words to type
//! instead. All through the real binary, with no terminal (so clap reads `COLUMNS`).

mod common;

use std::path::Path;

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
