//! Zero-config, and first contact with an app that does not do what devserve expects. `devserve`
//! with no COMMAND runs the project in front of it: the README's quick start (`fixtures/hello`, a
//! std-only Cargo project, copied into a fresh folder) is served on the default front door (or the
//! next free port) and a save swaps it with no failed request; the same app with its port written
//! in the code is found and served through it. `devserve init` writes a file `check` accepts and
//! refuses to overwrite it; Django, Node and bundler projects are recognised (or declined) without
//! running them, and a Django app's own database and caches start no generation; an empty folder
//! says what was looked for; a verb is never run as a program. An app that reloads itself is named;
//! under `--listen`, an app that binds a port of its own, or never accepts, is named; `--open`
//! opens the front door once it is ready, or says why it cannot.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn hello_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hello")
}

/// A copy of the README's quick-start project in a fresh folder (no `target/`).
fn hello_project(name: &str) -> TempDir {
    let dir = temp_dir(name);
    let source = hello_fixture();
    for file in ["Cargo.toml", "src/main.rs"] {
        let text = std::fs::read_to_string(source.join(file)).expect("read the quick-start project");
        write(&dir.path().join(file), &text);
    }
    dir
}

/// `GET /` on `addr`: the status line and the body.
fn get(addr: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    write!(stream, "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// `http://127.0.0.1:8081/` → `127.0.0.1:8081`.
fn address_of(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

#[test]
fn devserve_alone_serves_the_quick_start_and_a_save_swaps_it_with_no_failed_request() {
    let project = hello_project("zero-config-hello");
    let devserve = Devserve::start(project.path(), &["--log-format", "json"], &[]);
    let found = devserve.wait_event("detected", |_| true);
    let line = found["command_line"].as_str().expect("a command line").to_owned();
    assert!(line.contains("--build 'cargo build'") && line.ends_with("-- target/debug/hello"), "{line}");
    assert!(line.contains("--proxy auto"), "{line}");
    let url = devserve.wait_event("front_url", |_| true)["url"].as_str().expect("url").to_owned();
    let port: u16 = address_of(&url).rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    assert!((8080..=8099).contains(&port), "the default front door or the next free port: {url}");
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let addr = address_of(&url);
    let (status, body) = get(&addr);
    assert!(status.contains(" 200 ") && body.contains("Hello from v1"), "{status}: {body}");
    assert!(body.contains("/__devserve/client.js"), "the page gets the reload script: {body}");

    let load = Load::start(&addr, 2);
    load.wait_for_answers(5);
    let main = project.path().join("src/main.rs");
    let source = std::fs::read_to_string(&main).expect("read main.rs");
    write(&main, &source.replace("Hello from v1", "Hello from v2"));
    let swapped = wait_until(Duration::from_secs(120), || get(&addr).1.contains("Hello from v2"));
    assert!(swapped, "the save was never served\n{}", devserve.output());
    load.wait_for_answers(5);
    let result = load.stop();
    assert!(
        result.failures.is_empty(),
        "{:?}\n{}",
        &result.failures[..result.failures.len().min(3)],
        devserve.output()
    );
}

#[test]
fn the_same_app_with_its_port_in_the_code_is_found_and_served_through_it() {
    let project = hello_project("zero-config-fixed-port");
    let own = free_port();
    let main = project.path().join("src/main.rs");
    let source = std::fs::read_to_string(&main).expect("read main.rs");
    let fixed = source.replace(
        r#"std::env::var("PORT").unwrap_or_else(|_| "3000".into())"#,
        &format!(r#"String::from("{own}")"#),
    );
    assert_ne!(fixed, source, "the quick start reads PORT where this test expects it");
    write(&main, &fixed);
    let devserve = Devserve::start(project.path(), &["--log-format", "json"], &[]);
    let url = devserve.wait_event("front_url", |_| true)["url"].as_str().expect("url").to_owned();
    let found = devserve.wait_event("own_port", |e| e["generation"] == 1);
    assert_eq!(found["found"], serde_json::json!([own]), "{found}");
    devserve.wait_event("app_port_found", |e| e["port"] == own);
    let (status, body) = get(&address_of(&url));
    assert!(status.contains(" 200 ") && body.contains("Hello from v1"), "{status}: {body}");
}

#[test]
fn init_writes_what_check_accepts_and_never_overwrites_or_runs_anything() {
    let project = hello_project("zero-config-init");
    let finished = run_devserve(project.path(), &["init"], &[]);
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    let written = std::fs::read_to_string(project.path().join("devserve.toml")).expect("devserve.toml");
    for line in [
        "command = [\"target/debug/hello\"]",
        "build = \"cargo build\"",
        "proxy = \"auto\"",
        "# the default front door",
    ] {
        assert!(written.contains(line), "{line:?} missing from:\n{written}");
    }
    assert!(!project.path().join("target").exists(), "init built or ran something");
    let check = run_devserve(project.path(), &["check"], &[]);
    assert_eq!(check.code(), 0, "{}", check.stderr);
    assert!(check.stdout.contains("config file: devserve.toml"), "{}", check.stdout);
    assert!(check.stdout.contains("command: target/debug/hello"), "{}", check.stdout);

    let again = run_devserve(project.path(), &["init"], &[]);
    assert_eq!(again.code(), 2, "{}", again.stderr);
    assert!(again.stderr.contains("devserve init --force"), "{}", again.stderr);
    write(&project.path().join("devserve.toml"), "# mine\n");
    let forced = run_devserve(project.path(), &["init", "--force"], &[]);
    assert_eq!(forced.code(), 0, "{}", forced.stderr);
    assert!(!std::fs::read_to_string(project.path().join("devserve.toml")).expect("file").contains("# mine"));
}

#[test]
fn django_and_node_projects_are_recognised_without_running_them_and_bundlers_declined() {
    let django = temp_dir("zero-config-django");
    write(&django.path().join("manage.py"), "#!/usr/bin/env python3\nimport sys\n");
    let check = run_devserve(django.path(), &["check"], &[]);
    assert_eq!(check.code(), 0, "{}", check.stderr);
    assert!(check.stdout.contains("found: a Django project"), "{}", check.stdout);
    assert!(check.stdout.contains("runserver 127.0.0.1:{port} --noreload"), "{}", check.stdout);
    assert!(check.stdout.contains("*.sqlite3"), "Django's database is ignored:\n{}", check.stdout);

    // Node: through `init`, which needs no npm to write what it would run.
    let node = temp_dir("zero-config-node");
    write(&node.path().join("package.json"), r#"{"name": "api", "scripts": {"start": "node server.js"}}"#);
    write(&node.path().join("server.js"), "require('http').createServer().listen(process.env.PORT)\n");
    let init = run_devserve(node.path(), &["init"], &[]);
    assert_eq!(init.code(), 0, "{}", init.stderr);
    let written = std::fs::read_to_string(node.path().join("devserve.toml")).expect("devserve.toml");
    assert!(written.contains("command = [\"npm\", \"start\"]"), "{written}");
    assert!(written.contains("node_modules/**"), "{written}");

    // A bundler's dev server: a service routed at `/`, supervised, never swapped.
    let vite = temp_dir("zero-config-vite");
    write(&vite.path().join("package.json"), r#"{"name": "web", "scripts": {"dev": "vite"}}"#);
    let check = run_devserve(vite.path(), &["check"], &[]);
    assert_eq!(check.code(), 0, "{}", check.stderr);
    assert!(
        check.stdout.contains("found: a Node front end (`vite`, supervised, not swapped)"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("service web: /, and web.localhost · never restarted by changes (watch = []) · command npm run dev -- --port {port} --strictPort"),
        "{}",
        check.stdout
    );
}

#[test]
fn an_empty_folder_says_what_was_looked_for_and_a_verb_is_never_a_program() {
    let empty = temp_dir("zero-config-empty");
    let run = run_devserve(empty.path(), &[], &[]);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(run.stderr.contains("missing COMMAND"), "{}", run.stderr);
    assert!(run.stderr.contains("looked for Cargo.toml"), "{}", run.stderr);
    let slip = run_devserve(empty.path(), &["-w", ".", "init"], &[]);
    assert_eq!(slip.code(), 2, "{}", slip.stderr);
    assert!(slip.stderr.contains("`init` is a devserve verb"), "{}", slip.stderr);
    assert!(slip.stderr.contains("devserve -- init"), "{}", slip.stderr);
    let nothing = run_devserve(empty.path(), &["init"], &[]);
    assert_eq!(nothing.code(), 2, "{}", nothing.stderr);
    assert!(!empty.path().join("devserve.toml").exists());
}

#[test]
fn an_app_that_reloads_itself_is_named() {
    let dir = temp_dir("zero-config-reloaders");
    let tools = temp_dir("zero-config-reloaders-tools");
    let nodemon = tools.path().join("nodemon");
    write(&nodemon, "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&nodemon, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", tools.path().display(), std::env::var("PATH").unwrap_or_default());
    let run = run_devserve(
        dir.path(),
        &["--once", "--ready-delay", "10ms", "--log-format", "json", "--", "nodemon", "server.js"],
        &[("PATH", &path)],
    );
    let hint = run.events().into_iter().find(|e| event_kind(e) == "self_reloading");
    let hint = hint.unwrap_or_else(|| panic!("no self_reloading event:\n{}{}", run.stdout, run.stderr));
    assert!(hint["hint"].as_str().is_some_and(|h| h.contains("nodemon")), "{hint}");
}

/// The README's quick start shows `fixtures/hello/src/main.rs` whole, so it cannot drift from the
/// project the tests above run.
#[test]
fn the_readme_quick_start_is_the_tested_project() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let source = std::fs::read_to_string(hello_fixture().join("src/main.rs")).expect("main.rs");
    let section =
        readme.split_once("\n## Quick start\n").map(|(_, rest)| rest).expect("a Quick start section");
    let block = section
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(code, _)| code)
        .expect("a ```rust block in the quick start");
    assert_eq!(block, source, "the README's quick start is not fixtures/hello/src/main.rs");
}

/// A stand-in for Django's `manage.py runserver ADDR --noreload`: it creates its database at its
/// first start (as Django does with `db.sqlite3`) and serves ADDR.
const MANAGE_PY: &str = r#"import http.server, os, sys
addr = sys.argv[2]
host, port = addr.rsplit(":", 1)
open("db.sqlite3", "a").close()
os.makedirs("__pycache__", exist_ok=True)
open(os.path.join("__pycache__", "manage.cpython.pyc"), "w").close()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("django pid=%d\n" % os.getpid()).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((host, int(port)), Handler).serve_forever()
"#;

#[test]
fn a_django_apps_own_database_and_caches_are_not_changes() {
    let project = temp_dir("zero-config-django-run");
    write(&project.path().join("manage.py"), MANAGE_PY);
    let devserve = Devserve::start(project.path(), &["--log-format", "json"], &[]);
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    assert!(project.path().join("db.sqlite3").exists(), "the app made its database");
    // A save after the app's own writes: the next generation is for it, and nothing came between.
    write(&project.path().join("views.py"), "# edit\n");
    let ready = devserve.wait_event("generation_ready", |e| e["cause"] == "views.py changed");
    assert_eq!(ready["generation"], 2, "the app's own files started a generation:\n{}", devserve.output());
    assert_eq!(devserve.count_events("generation_superseded", |_| true), 0, "{}", devserve.output());
}

#[test]
fn under_listen_an_app_on_a_port_of_its_own_or_one_that_never_accepts_is_named() {
    let dir = temp_dir("first-contact-listen-own");
    let own = free_port();
    let bind = format!("127.0.0.1:{own}");
    // The app ignores the held socket and binds a port of its own.
    let fixture =
        Fixture::python().version("v1").env("FIXTURE_BIND", &bind).in_shell("unset LISTEN_FDS LISTEN_PID;");
    let args = fixture.devserve_args(&["-l", "127.0.0.1:0", "--log-format", "json", "-w", "."]);
    let devserve = Devserve::start(dir.path(), &args, &fixture.env_pairs());
    let found = devserve.wait_event("own_port", |e| e["generation"] == 1);
    assert_eq!(found["found"], serde_json::json!([own]), "{found}");
    assert!(found["given"].is_null(), "{found}");
    drop(devserve);

    // An app that takes neither: connections wait in the held queue, and that is said.
    let quiet = temp_dir("first-contact-listen-quiet");
    let devserve = Devserve::start(
        quiet.path(),
        &["-l", "127.0.0.1:0", "--log-format", "json", "-w", ".", "--", "sleep", "600"],
        &[],
    );
    let listening = devserve.wait_event("listening", |_| true);
    let held = listening["address"].as_str().expect("address").to_owned();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let _waiting = TcpStream::connect(&held).expect("connect to the held socket");
    let stalled = devserve.wait_event("not_accepting", |e| e["generation"] == 1);
    assert_eq!(stalled["address"], held.as_str(), "{stalled}");
}

#[test]
fn open_opens_the_front_door_once_ready_or_says_why_not() {
    let dir = temp_dir("first-contact-open");
    let tools = temp_dir("first-contact-open-tools");
    let opened = tools.join("opened");
    let opener = tools.join("xdg-open");
    write(&opener, &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", opened.display()));
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let fixture = Fixture::python().version("v1");
    let mut args = vec!["--proxy", "127.0.0.1:0", "--open", "--log-format", "json", "-w", "."];
    args.push("--");
    args.extend(fixture.argv());
    let mut vars = fixture.env_pairs();
    vars.push(("FIXTURE_BIND_PORT_ENV", "1"));
    vars.push(("PATH", &path));
    let devserve = Devserve::start(dir.path(), &args, &vars);
    let url = devserve.wait_event("front_url", |_| true)["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "{url}");
    devserve.wait_event("browser_opened", |e| e["url"] == url.as_str());
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&opened).is_ok_and(|t| t.trim() == url)),
        "xdg-open was not run with {url}"
    );
    drop(devserve);

    // No opener at all: one line that says so, and the run goes on. PATH is an empty folder, so
    // the app is started by its interpreter's full path.
    let bare = temp_dir("first-contact-open-none");
    let empty = temp_dir("first-contact-open-empty");
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    let app = python_fixture();
    let app = app.to_str().expect("utf-8 path");
    let args = ["--proxy", "127.0.0.1:0", "--open", "--log-format", "json", "-w", ".", "--", &python, app];
    let path = empty.display().to_string();
    let vars = [("FIXTURE_BIND_PORT_ENV", "1"), ("FIXTURE_VERSION", "v1"), ("PATH", path.as_str())];
    let devserve = Devserve::start(bare.path(), &args, &vars);
    let said = devserve.wait_event("browser_not_opened", |_| true);
    assert!(said["reason"].as_str().is_some_and(|r| r.contains("xdg-open")), "{said}");
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
}

/// devserve alone in devserve's own repository would run devserve alone again as its worker, and
/// so on: a worker detects nothing.
#[test]
fn a_devserve_run_as_a_worker_detects_nothing() {
    let project = hello_project("zero-config-nested");
    let run = run_devserve(project.path(), &[], &[("DEVSERVE_GENERATION", "1")]);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(run.stderr.contains("another devserve's worker"), "{}", run.stderr);
    assert!(!project.path().join("target").exists(), "nothing was built");
}
