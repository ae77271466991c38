//! Several services in one devserve (`[services.NAME]`), behind one front door: a save swaps only
//! the service whose folder it is in, with no failed request on any route; `NAME.localhost`
//! reaches a service; a failed build keeps that service's generation and touches no other;
//! `depends-on` orders the first start and, reversed, the stop; nothing is left after TERM.
//! The Python fixture as every service.

mod common;

use std::path::Path;

use common::*;

/// `devserve.toml` for services behind a front door on a free port, each running the Python
/// fixture on its `PORT` with its version in `NAME/VERSION` and watching `NAME/`; `extra` is
/// added to each service's table by name, `env` to its environment table.
fn stack(dir: &Path, services: &[(&str, &str)]) -> String {
    stack_env(dir, &services.iter().map(|(name, extra)| (*name, *extra, "")).collect::<Vec<_>>())
}

fn stack_env(dir: &Path, services: &[(&str, &str, &str)]) -> String {
    let fixture = python_fixture();
    let mut text = "proxy = \"127.0.0.1:0\"\nlog-format = \"json\"\n".to_owned();
    for (name, extra, env) in services {
        std::fs::create_dir_all(dir.join(name)).expect("service folder");
        write(&dir.join(name).join("VERSION"), &format!("{name}-1"));
        text.push_str(&format!(
            "\n[services.{name}]\nwatch = [\"{name}\"]\ncommand = [\"python3\", \"{}\"]\n{extra}\n\
             [services.{name}.env]\nFIXTURE_BIND_PORT_ENV = \"1\"\nFIXTURE_VERSION_FILE = \"{name}/VERSION\"\n{env}\n",
            fixture.display()
        ));
    }
    write(&dir.join("devserve.toml"), &text);
    text
}

fn start(dir: &Path) -> Devserve {
    let devserve = Devserve::start(dir, &[], &[]);
    devserve.wait_event("proxy_listening", |_| true);
    devserve
}

/// Events of service `name`.
fn of(name: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |e| e["service"] == name
}

#[test]
fn a_save_swaps_only_its_service_and_no_request_fails_on_any_route() {
    let dir = temp_dir("services-swap");
    stack(dir.path(), &[("api", "route = \"/api\"\nstrip-prefix = true"), ("web", "route = \"/\"")]);
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("api"));
    devserve.wait_event("generation_ready", of("web"));
    let addr = devserve.proxy_addr();
    assert_eq!(field(&wait_for_version(&addr, "web-1"), "version"), "web-1");
    let api = http_get(&addr, "/api").expect("/api");
    assert_eq!(field(&api, "version"), "api-1", "/api reaches api, its prefix stripped: {api}");
    let port = addr.rsplit(':').next().expect("a port");
    let by_name = http_get_host(&addr, &format!("api.localhost:{port}"), "/").expect("api.localhost");
    assert_eq!(field(&by_name, "version"), "api-1", "api.localhost reaches api: {by_name}");

    let web_load = Load::start_on(&addr, "/", 2);
    let api_load = Load::start_on(&addr, "/api", 2);
    web_load.wait_for_answers(10);
    api_load.wait_for_answers(10);
    for n in 2..=11 {
        save_and_wait(&devserve, &dir.path().join("api/VERSION"), &addr, "/api", &format!("api-{n}"));
        api_load.wait_for_answers(5);
        web_load.wait_for_answers(5);
    }
    let (web, api) = (web_load.stop(), api_load.stop());
    assert!(web.failures.is_empty(), "failed on /: {:?}", web.failures);
    assert!(api.failures.is_empty(), "failed on /api: {:?}", api.failures);
    assert_eq!(devserve.count_events("generation_starting", of("web")), 1, "web never restarted");
    assert_eq!(devserve.count_events("generation_ready", of("api")), 11);
    stop_gracefully(&mut devserve);
}

#[test]
fn a_failed_build_keeps_its_service_and_touches_no_other() {
    let dir = temp_dir("services-build");
    // api builds: `broken` in its folder fails the build.
    let build = "build = \"test ! -e api/broken\"";
    stack(
        dir.path(),
        &[("api", &format!("route = \"/api\"\nstrip-prefix = true\n{build}")), ("web", "route = \"/\"")],
    );
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("api"));
    devserve.wait_event("generation_ready", of("web"));
    let addr = devserve.proxy_addr();
    write(&dir.path().join("api/broken"), "yes");
    write(&dir.path().join("api/VERSION"), "api-2");
    devserve.wait_event("build_finished", |e| e["service"] == "api" && e["ok"] == false);
    assert_eq!(field(&http_get(&addr, "/api").expect("/api"), "version"), "api-1", "the old api serves");
    // Every page's overlay names the service whose build failed.
    let failure = event_stream_start(&addr, "build-failed");
    assert!(failure.contains("\"command\":\"api: test ! -e api/broken\""), "{failure}");
    assert_eq!(field(&http_get(&addr, "/").expect("/"), "version"), "web-1", "web is untouched");
    assert_eq!(devserve.count_events("build_started", of("web")), 0, "web has no build");
    std::fs::remove_file(dir.path().join("api/broken")).expect("fix");
    assert!(
        wait_until(WAIT, || http_get(&addr, "/api").is_ok_and(|b| field(&b, "version") == "api-2")),
        "the fixed api never served:\n{}",
        devserve.output()
    );
    assert_eq!(devserve.count_events("generation_starting", of("web")), 1, "web never restarted");
    stop_gracefully(&mut devserve);
}

/// The browsers' event stream from its start until a `kind` message (the hub replays a standing
/// failure to a new stream), as text.
fn event_stream_start(addr: &str, kind: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(15))).expect("timeout");
    write!(stream, "GET /__devserve/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
        .expect("write");
    let (mut text, mut buffer) = (String::new(), [0u8; 4096]);
    let marker = format!("event: {kind}");
    // The stream is chunked: the message is whole once a blank line follows its `event:` line.
    while !text.split_once(&marker).is_some_and(|(_, after)| after.contains("\n\n")) {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
        }
    }
    text
}

#[test]
fn a_service_may_hold_sockets_instead_of_a_route() {
    let dir = temp_dir("services-listen");
    let text = stack(
        dir.path(),
        &[("api", "route = \"/api\"\nstrip-prefix = true"), ("raw", "listen = [\"127.0.0.1:0\"]")],
    );
    // The fixture takes fd 3 when it is not told to bind its PORT.
    write(
        &dir.path().join("devserve.toml"),
        &text.replacen(
            "FIXTURE_BIND_PORT_ENV = \"1\"\nFIXTURE_VERSION_FILE = \"raw/VERSION\"",
            "FIXTURE_VERSION_FILE = \"raw/VERSION\"",
            1,
        ),
    );
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("raw"));
    let listening = devserve.wait_event("listening", |_| true);
    let raw = listening["address"].as_str().expect("an address").to_owned();
    assert_eq!(field(&http_get(&raw, "/").expect("raw's socket"), "version"), "raw-1");
    assert_eq!(field(&http_get(&devserve.proxy_addr(), "/api").expect("/api"), "version"), "api-1");
    stop_gracefully(&mut devserve);
}

#[test]
fn depends_on_orders_the_start_and_the_stop_and_term_leaves_nothing() {
    let dir = temp_dir("services-order");
    stack_env(
        dir.path(),
        &[
            ("web", "route = \"/\"\ndepends-on = [\"api\"]", ""),
            ("api", "route = \"/api\"\nstrip-prefix = true", "FIXTURE_START_DELAY_MS = \"300\""),
        ],
    );
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("web"));
    let events = devserve.events();
    let at = |kind: &str, name: &str| events.iter().position(|e| e["event"] == kind && e["service"] == name);
    let api_ready = at("generation_ready", "api").expect("api ready");
    let web_starting = at("generation_starting", "web").expect("web starting");
    assert!(api_ready < web_starting, "web started before api was ready:\n{}", devserve.output());
    assert!(at("service_waiting", "web").is_some(), "web said it waits:\n{}", devserve.output());
    let addr = devserve.proxy_addr();
    let pids: Vec<i32> = ["/", "/api"]
        .iter()
        .map(|path| field(&http_get(&addr, path).expect("answer"), "pid").parse().expect("a pid"))
        .collect();
    stop_gracefully(&mut devserve);
    let events = devserve.events();
    let at = |kind: &str, name: &str| events.iter().position(|e| e["event"] == kind && e["service"] == name);
    let web_stopped = at("generation_stopped", "web").expect("web stopped");
    let api_stopping = at("generation_stopping", "api").expect("api told to stop");
    assert!(web_stopped < api_stopping, "api was stopped before web was gone:\n{}", devserve.output());
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} is left");
    }
}

#[test]
fn lines_are_prefixed_with_their_service_and_mistakes_name_theirs() {
    let dir = temp_dir("services-lines");
    let text = stack(dir.path(), &[("api", "route = \"/api\""), ("worker-two", "route = \"/\"")]);
    write(&dir.path().join("devserve.toml"), &text.replace("log-format = \"json\"\n", ""));
    let mut devserve = Devserve::start(dir.path(), &[], &[]);
    devserve.wait_for("api        | [devserve] gen");
    devserve.wait_for("worker-two | [devserve] gen");
    // The apps' own lines too, from their stdout and stderr.
    devserve.wait_for("api        | fixture: serving version=api-1");
    devserve.wait_for("worker-two | fixture: serving version=worker-two-1");
    stop_gracefully(&mut devserve);

    let cycle = "[services.a]\ncommand = [\"true\"]\ndepends-on = [\"b\"]\n[services.b]\ncommand = [\"true\"]\ndepends-on = [\"a\"]\n";
    write(&dir.path().join("devserve.toml"), cycle);
    let done = run_devserve(dir.path(), &[], &[]);
    assert_eq!(done.code(), 2, "{}", done.stderr);
    assert!(done.stderr.contains("devserve.toml:3:14: depends-on: a cycle, a → b → a"), "{}", done.stderr);
}

#[test]
fn a_procfile_with_several_processes_runs_each_as_a_service() {
    let dir = temp_dir("services-procfile");
    let fixture = python_fixture();
    let fixture = fixture.display();
    write(
        &dir.path().join("Procfile"),
        &format!(
            "web: FIXTURE_BIND_PORT_ENV=1 FIXTURE_VERSION=web-p python3 {fixture}\n\
             api: PORT=$PORT FIXTURE_BIND_PORT_ENV=1 FIXTURE_VERSION=api-p python3 {fixture}\n\
             ticker: echo ticker up; exec sleep 1000\n"
        ),
    );
    let mut devserve = Devserve::start(dir.path(), &["--log-format", "json"], &[]);
    devserve.wait_event("generation_ready", of("web"));
    devserve.wait_event("generation_ready", of("api"));
    devserve.wait_event("generation_ready", of("ticker"));
    let addr = devserve.proxy_addr();
    assert_eq!(field(&http_get(&addr, "/").expect("/"), "version"), "web-p");
    assert_eq!(field(&http_get(&addr, "/api").expect("/api"), "version"), "api-p");
    devserve.wait_for("ticker | ticker up");
    stop_gracefully(&mut devserve);
}

#[test]
fn an_env_file_is_loaded_under_devserve_s_environment_and_its_edit_swaps_its_service() {
    let dir = temp_dir("services-env-file");
    write(
        &dir.path().join("api.env"),
        "# api's settings\nFIXTURE_EXTRA=one\nNODE_EXTRA_CA_CERTS=from-file\n",
    );
    stack(
        dir.path(),
        &[
            ("api", "route = \"/api\"\nstrip-prefix = true\nenv-file = [\"api.env\"]"),
            ("web", "route = \"/\""),
        ],
    );
    let mut devserve = Devserve::start(dir.path(), &[], &[("NODE_EXTRA_CA_CERTS", "from-shell")]);
    devserve.wait_event("generation_ready", of("api"));
    devserve.wait_event("generation_ready", of("web"));
    let addr = devserve.proxy_addr();
    let env = http_get(&addr, "/api/env").expect("/api/env");
    assert!(env.contains("FIXTURE_EXTRA=one\n"), "{env}");
    assert!(env.contains("NODE_EXTRA_CA_CERTS=from-shell\n"), "devserve's own environment wins: {env}");
    write(&dir.path().join("api.env"), "FIXTURE_EXTRA=two\n");
    assert!(
        wait_until(WAIT, || http_get(&addr, "/api/env").is_ok_and(|e| e.contains("FIXTURE_EXTRA=two\n"))),
        "the edited env-file never reached api:\n{}",
        devserve.output()
    );
    assert_eq!(devserve.count_events("generation_starting", of("web")), 1, "web never restarted");
    stop_gracefully(&mut devserve);
}

#[test]
fn s_reload_names_a_service_and_status_has_a_row_for_each() {
    let dir = temp_dir("services-control");
    let text =
        stack(dir.path(), &[("api", "route = \"/api\"\nstrip-prefix = true"), ("web", "route = \"/\"")]);
    write(&dir.path().join("devserve.toml"), &format!("pidfile = \"devserve.pid\"\n{text}"));
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("api"));
    devserve.wait_event("generation_ready", of("web"));
    let control = |words: &[&str]| {
        let mut args = vec!["--pidfile", "devserve.pid", "-s"];
        args.extend(words);
        run_devserve(dir.path(), &args, &[])
    };
    let done = control(&["reload", "api"]);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(
        wait_until(WAIT, || devserve.count_events("generation_ready", of("api")) == 2),
        "api never reloaded:\n{}",
        devserve.output()
    );
    assert_eq!(devserve.count_events("generation_starting", of("web")), 1, "web was not asked");
    let done = control(&["reload", "nope"]);
    assert_eq!(done.code(), 2, "an unknown service is a usage error: {}", done.stderr);
    assert!(done.stderr.contains("no service is named `nope` (the services: api, web)"), "{}", done.stderr);
    let done = control(&["status"]);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stdout.contains("service api: 1 worker(s)"), "{}", done.stdout);
    assert!(done.stdout.contains("service web: 1 worker(s)"), "{}", done.stdout);
    stop_gracefully(&mut devserve);
}

#[test]
fn on_a_terminal_r_then_an_initial_reloads_that_service() {
    use std::io::Write;
    let dir = temp_dir("services-keys");
    let text = stack(dir.path(), &[("api", "route = \"/api\""), ("web", "route = \"/\"")]);
    write(&dir.path().join("devserve.toml"), &text.replace("log-format = \"json\"\n", ""));
    // `script` gives devserve a terminal of its own (a pty), fed from our pipe.
    let (mut keys, mut devserve) = on_terminal(dir.path(), &devserve_bin(), &[]);
    devserve.wait_for("keys: r reload all · ra api · rw web");
    devserve.wait_for("api | [devserve] gen 1 ready");
    devserve.wait_for("web | [devserve] gen 2 ready");
    keys.write_all(b"ra").expect("ra");
    devserve.wait_for("api | [devserve] gen 3 ready");
    keys.write_all(b"rx").expect("rx");
    devserve.wait_for("rx: no service's name starts with `x`");
    assert!(
        !devserve.output().contains("web | [devserve] gen 4"),
        "web was not reloaded:\n{}",
        devserve.output()
    );
    keys.write_all(b"q").expect("q");
    let status = devserve.wait_exit();
    assert!(status.success(), "q stops gracefully:\n{}", devserve.output());
}

/// A page asked for as a browser navigates, over HTTP/1.1: the body.
fn navigate(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(15))).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/html\r\nSec-Fetch-Dest: document\r\n\
         Sec-Fetch-Mode: navigate\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn a_self_reloading_dev_server_is_supervised_not_swapped_and_keeps_its_websocket() {
    let dir = temp_dir("services-self-reloading");
    let text = stack(dir.path(), &[("api", "route = \"/api\"\nstrip-prefix = true")]);
    // `web` stands for Vite: its own watcher and HMR socket, so no watch and no reload script;
    // `docs` is the same server with devserve's reload, to show what `web` is spared.
    let echo = app("ws_echo.py");
    let server = |name: &str, extra: &str| {
        format!(
            "\n[services.{name}]\ncommand = [\"python3\", \"{}\"]\n{extra}\n[services.{name}.env]\nWS_ECHO_HTML = \"1\"\n",
            echo.display()
        )
    };
    let text = format!(
        "{text}{}{}",
        server("web", "route = \"/\"\nwatch = []\nbrowser-reload = false\ndepends-on = [\"api\"]"),
        server("docs", "route = \"/docs\"\nstrip-prefix = true\nwatch = [\"api\"]")
    );
    write(&dir.path().join("devserve.toml"), &text);
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("web"));
    devserve.wait_event("generation_ready", of("docs"));
    let addr = devserve.proxy_addr();
    let page = navigate(&addr, "/");
    assert!(page.contains("ws-echo version"), "{page}");
    assert!(!page.contains("__devserve"), "web's pages get no script: {page}");
    let docs = navigate(&addr, "/docs");
    assert!(docs.contains("/__devserve/"), "a page with browser-reload gets the script: {docs}");
    let mut hmr = WsClient::connect(&addr, "/").expect("web's socket");
    assert_eq!(hmr.echo("hello").expect("echo"), "0 hello");
    for n in 2..=4 {
        save_and_wait(&devserve, &dir.path().join("api/VERSION"), &addr, "/api", &format!("api-{n}"));
        assert_eq!(hmr.echo(&format!("after {n}")).expect("the socket stays"), format!("0 after {n}"));
    }
    assert_eq!(devserve.count_events("generation_starting", of("web")), 1, "web was never restarted");
    stop_gracefully(&mut devserve);
}

#[test]
fn a_save_in_a_shared_folder_builds_each_service_once_one_build_at_a_time() {
    let dir = temp_dir("services-shared");
    std::fs::create_dir_all(dir.path().join("shared")).expect("shared");
    write(&dir.path().join("shared/lib.txt"), "1");
    let build = "build = \"sleep 0.3\"";
    let text = stack(
        dir.path(),
        &[
            ("api", &format!("route = \"/api\"\nstrip-prefix = true\n{build}")),
            ("web", &format!("route = \"/\"\n{build}")),
        ],
    );
    let text = text
        .replace("watch = [\"api\"]", "watch = [\"api\", \"shared\"]")
        .replace("watch = [\"web\"]", "watch = [\"web\", \"shared\"]");
    write(&dir.path().join("devserve.toml"), &format!("build-jobs = 1\n{text}"));
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("api"));
    devserve.wait_event("generation_ready", of("web"));
    let from = devserve.events().len();
    write(&dir.path().join("shared/lib.txt"), "2");
    assert!(
        wait_until(WAIT, || devserve.count_events("generation_ready", |_| true) == 4),
        "both services swapped once:\n{}",
        devserve.output()
    );
    let events: Vec<serde_json::Value> = devserve.events().into_iter().skip(from).collect();
    let builds: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["event"] == "build_started" || e["event"] == "build_finished")
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_owned(),
                e["service"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(builds.len(), 4, "one build each: {builds:?}");
    assert_eq!(builds[0].0, "build_started");
    assert_eq!(
        builds[1],
        ("build_finished".to_owned(), builds[0].1.clone()),
        "never two at once: {builds:?}"
    );
    assert!(events.iter().any(|e| e["event"] == "build_queued"), "the second build said it waits");
    stop_gracefully(&mut devserve);
}

#[test]
fn a_watch_task_builds_on_its_changes_and_serves_nothing() {
    let dir = temp_dir("services-watch-task");
    std::fs::create_dir_all(dir.path().join("styles")).expect("styles");
    write(&dir.path().join("styles/app.css"), "body { color: red }");
    let text = stack(dir.path(), &[("web", "route = \"/\"\ndepends-on = [\"css\"]")]);
    let task = "\n[services.css]\nwatch = [\"styles\"]\nbuild = \"cp styles/app.css built.css\"\n";
    write(&dir.path().join("devserve.toml"), &format!("{text}{task}"));
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("web"));
    let events = devserve.events();
    let built = events.iter().position(|e| e["event"] == "build_finished" && e["service"] == "css");
    let web = events.iter().position(|e| e["event"] == "generation_starting" && e["service"] == "web");
    assert!(built.is_some_and(|b| web.is_some_and(|w| b < w)), "web waits for the task's first build");
    assert_eq!(std::fs::read_to_string(dir.path().join("built.css")).expect("built"), "body { color: red }");
    write(&dir.path().join("styles/app.css"), "body { color: blue }");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(dir.path().join("built.css"))
            .is_ok_and(|t| t.contains("blue"))),
        "the task built again:\n{}",
        devserve.output()
    );
    assert_eq!(devserve.count_events("generation_starting", of("css")), 0, "a watch task starts nothing");
    stop_gracefully(&mut devserve);
    // `--once` with services: the verdict comes once every service has served (or built).
    let done = run_devserve(dir.path(), &["--once"], &[]);
    assert_eq!(done.code(), 0, "{}", done.stderr);
}

#[test]
fn a_config_edit_applies_per_service_and_a_new_service_needs_a_restart() {
    let dir = temp_dir("services-edit");
    let text =
        stack(dir.path(), &[("api", "route = \"/api\"\nstrip-prefix = true"), ("web", "route = \"/\"")]);
    let mut devserve = start(dir.path());
    devserve.wait_event("generation_ready", of("api"));
    devserve.wait_event("generation_ready", of("web"));
    let addr = devserve.proxy_addr();
    // A variable of api's only: api swaps, web does not.
    let edited = text.replace(
        "FIXTURE_VERSION_FILE = \"api/VERSION\"\n",
        "FIXTURE_VERSION_FILE = \"api/VERSION\"\nFIXTURE_EXTRA = \"edited\"\n",
    );
    write(&dir.path().join("devserve.toml"), &edited);
    assert!(
        wait_until(WAIT, || http_get(&addr, "/api/env").is_ok_and(|e| e.contains("FIXTURE_EXTRA=edited\n"))),
        "the edit never reached api:\n{}",
        devserve.output()
    );
    assert_eq!(devserve.count_events("generation_starting", of("web")), 1, "web was not swapped");
    // A service added: refused, the running config stays.
    write(&dir.path().join("devserve.toml"), &format!("{edited}\n[services.more]\ncommand = [\"true\"]\n"));
    let rejected = devserve.wait_event("config_rejected", |_| true);
    assert!(rejected["problems"][0].as_str().is_some_and(|p| p.contains("restart devserve")), "{rejected}");
    stop_gracefully(&mut devserve);
}
