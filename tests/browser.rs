//! The browser side of the loop, in a real browser: headless Chromium, driven over WebDriver by
//! `tests/browser/drive.py` (selenium, one JSON command a line), opens the pages of
//! `tests/browser/app.py` behind devserve's `--proxy`.
//!
//! Needs `chromium`, `chromium-driver` (Debian) and `pip install selenium`. Without them the tests
//! fail and say what to install; `DEVSERVE_SKIP_BROWSER=1` turns that into a visible `SKIP:` line
//! (cargo then counts the test as passed, so that is for machines that cannot have Chromium).
//!
//! How "the page reloads only after the new generation is ready" is checked: the app logs each
//! request on stderr, the pipe devserve writes its JSON events to, so the captured lines are in
//! the order things happened. The first request the new generation gets for the page must come
//! after its `generation_ready`, the page must keep showing the old version until then, and the
//! page's own load log (sessionStorage) must show exactly one reload, straight to the new version,
//! caused by the client's `ready` for that generation.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// One browser at a time: Chromium, the app and devserve share 2 cores with the other tests.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// How long one driver command may take (a wait command has its own timeout below this).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);

/// How long the page may take to show what the test waits for.
const PAGE_WAIT: f64 = 30.0;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The first of `candidates` that exists, or the one `which` finds for a name.
fn find_program(variable: &str, candidates: &[&str]) -> Option<String> {
    if let Ok(path) = std::env::var(variable) {
        return Some(path);
    }
    for candidate in candidates {
        if candidate.starts_with('/') {
            if Path::new(candidate).exists() {
                return Some((*candidate).to_owned());
            }
        } else if let Ok(path) = which_program(candidate) {
            return Some(path);
        }
    }
    None
}

fn which_program(name: &str) -> Result<String, ()> {
    let output = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().map_err(|_| ())?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && !path.is_empty() { Ok(path) } else { Err(()) }
}

/// Headless Chromium behind the driver script.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
}

impl Browser {
    /// Starts the driver and Chromium (with the extra flags `args` and environment `env`), or says
    /// why it cannot.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Result<Browser, String> {
        let chromium = find_program(
            "CHROMIUM",
            &["/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"],
        )
        .ok_or("chromium is not installed (apt-get install chromium)")?;
        let chromedriver = find_program("CHROMEDRIVER", &["/usr/bin/chromedriver", "chromedriver"])
            .ok_or("chromedriver is not installed (apt-get install chromium-driver)")?;
        let mut child = Command::new("python3")
            .arg(browser_dir().join("drive.py"))
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut browser = Browser { child, stdin, answers };
        let started = browser
            .send(&json!({"op": "start", "chromium": chromium, "chromedriver": chromedriver, "args": args}));
        if let Some(why) = started["unavailable"].as_str() {
            return Err(why.to_owned());
        }
        if let Some(error) = started["error"].as_str() {
            return Err(format!("Chromium did not start: {error}"));
        }
        eprintln!("browser: Chromium {} at {chromium}", started["version"]);
        Ok(browser)
    }

    fn send(&mut self, command: &Value) -> Value {
        writeln!(self.stdin, "{command}").expect("write to the driver");
        self.stdin.flush().expect("flush to the driver");
        match self.answers.recv_timeout(DRIVER_TIMEOUT) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}")),
            Err(RecvTimeoutError::Timeout) => {
                panic!("the driver did not answer {command} in {DRIVER_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the driver exited while running {command}"),
        }
    }

    fn call(&mut self, command: Value) -> Value {
        let answer = self.send(&command);
        if let Some(error) = answer["error"].as_str() {
            panic!("driver: {command} failed: {error}\n{}", answer["trace"].as_str().unwrap_or(""));
        }
        answer
    }

    fn open(&mut self, url: &str) {
        self.call(json!({"op": "open", "url": url}));
    }

    fn new_tab(&mut self, url: &str) -> usize {
        self.call(json!({"op": "new_tab", "url": url}))["index"].as_u64().expect("index") as usize
    }

    fn switch(&mut self, index: usize) {
        self.call(json!({"op": "switch", "index": index}));
    }

    /// The value of `js` (a function body: `return …`) in the current tab.
    fn eval(&mut self, js: &str) -> Value {
        self.call(json!({"op": "eval", "js": js}))["value"].take()
    }

    /// Waits until `js` is truthy in the current tab and returns its value; fails the test with
    /// `what` (and what `context` says then) if it never is.
    fn wait(&mut self, what: &str, js: &str, context: impl Fn() -> String) -> Value {
        let answer = self.call(json!({"op": "wait", "js": js, "timeout": PAGE_WAIT}));
        if answer["timeout"] == true {
            panic!(
                "the page never showed {what} ({}s): last value {}, error {}\n{}",
                PAGE_WAIT,
                answer["value"],
                answer["last_error"],
                context()
            );
        }
        answer["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser, with the lock that keeps it the only one (keep the guard while it runs), or `None`
/// after a visible `SKIP:` line when `DEVSERVE_SKIP_BROWSER=1` allows it.
fn browser_or_skip(test: &str) -> Option<(MutexGuard<'static, ()>, Browser)> {
    browser_or_skip_with(test, &[], &[])
}

/// [`browser_or_skip`] with extra Chromium flags (`--host-resolver-rules=…`) and environment
/// (`HOME`, whose NSS database Chromium trusts).
fn browser_or_skip_with(
    test: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Option<(MutexGuard<'static, ()>, Browser)> {
    let one = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match Browser::start(args, env) {
        Ok(browser) => Some((one, browser)),
        Err(why) if std::env::var_os("DEVSERVE_SKIP_BROWSER").is_some() => {
            eprintln!("SKIP: {test}: {why} (DEVSERVE_SKIP_BROWSER is set)");
            println!("SKIP: {test}: {why}");
            None
        }
        Err(why) => panic!(
            "{test} needs a browser: {why}.\nInstall: apt-get install -y chromium chromium-driver && \
             pip install selenium\n(or set DEVSERVE_SKIP_BROWSER=1 to skip it with a SKIP line)"
        ),
    }
}

/// The build: fails with a `file:line:col` (and markup that must stay text) when version.txt
/// says `broken`.
const BUILD: &str = r#"if grep -q broken version.txt; then
  printf 'src/app.py:3:7: \033[1;31merror\033[0m: <b>not html</b> in the version\n' >&2
  exit 2
fi
echo build ok
"#;

/// devserve behind `--proxy proxy` (e.g. `127.0.0.1:0`) running the app in `dir` with a build;
/// returns it and the proxy's address once gen 1 is ready.
fn start_devserve(dir: &Path, proxy: &str) -> (Devserve, String) {
    start_devserve_with(dir, proxy, &[])
}

/// [`start_devserve`] with more environment (`HOME`, for the local CA).
fn start_devserve_with(dir: &Path, proxy: &str, env: &[(&str, &str)]) -> (Devserve, String) {
    write(&dir.join("build.sh"), BUILD);
    let app = browser_dir().join("app.py");
    let app = app.to_str().expect("utf-8 path");
    let args =
        ["--proxy", proxy, "--log-format", "json", "-w", ".", "-b", "sh build.sh", "--", "python3", app];
    let mut env = env.to_vec();
    env.push(("APP_START_DELAY_MS", "700"));
    let devserve = Devserve::start(dir, &args, &env);
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    (devserve, addr)
}

/// The proxy's `/__devserve/stats`: `{"instance","ready","streams","opened"}`.
fn stats(addr: &str) -> Value {
    serde_json::from_str(&http_get(addr, "/__devserve/stats").expect("stats")).expect("stats JSON")
}

/// What devserve printed, for a failure message.
fn tail(devserve: &Devserve) -> impl Fn() -> String + '_ {
    move || format!("devserve's last lines: {}", devserve.capture().tail(25))
}

const VERSION_JS: &str =
    "return document.getElementById('version') && document.getElementById('version').textContent";
const LOADS_JS: &str = "return JSON.parse(sessionStorage.getItem('loads') || '[]')";
const OVERLAY_JS: &str = "const o = document.querySelector('devserve-overlay'); \
                          return o ? {kind: o.dataset.kind, text: o.shadowRoot.textContent, \
                          locs: Array.from(o.shadowRoot.querySelectorAll('.loc')).map(e => e.textContent), \
                          markup: o.shadowRoot.querySelectorAll('pre b, pre script').length} : null";

fn version_is(version: &str) -> String {
    format!(
        "return document.getElementById('version') && document.getElementById('version').textContent === '{version}'"
    )
}

fn connected() -> &'static str {
    "return window.__devserve && window.__devserve.connected && window.__devserve.transport"
}

/// One GET with the given extra header lines; the status line and head, and the raw body.
fn raw_get(addr: &str, path: &str, headers: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n")
        .expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    (String::from_utf8_lossy(&response[..split]).into_owned(), response[split..].to_vec())
}

const NAVIGATION: &str = "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate\r\n\
                          Sec-Fetch-Dest: document\r\n";

/// The port of the app's generation `generation` (from its `serving … port=N` line).
fn app_port(devserve: &Devserve, generation: u64) -> String {
    let prefix = format!("app: gen={generation} serving");
    let line = devserve.capture().find(0, |l| l.starts_with(&prefix)).expect("the app's serving line").item;
    line.rsplit("port=").next().expect("port").trim().to_owned()
}

/// Index of the first captured line from `from` on that `matches`.
fn line_index(devserve: &Devserve, from: usize, matches: impl Fn(&str) -> bool) -> Option<usize> {
    devserve.capture().find(from, matches).map(|found| found.index)
}

#[test]
fn the_open_page_follows_saves_failures_and_crashes() {
    let Some((_one, mut browser)) = browser_or_skip("the_open_page_follows_saves_failures_and_crashes")
    else {
        return;
    };
    let dir = temp_dir("browser-loop");
    write(&dir.join("version.txt"), "v1");
    write(&dir.join("style.css"), "h1 { color: rgb(1, 2, 3); }");
    let (devserve, addr) = start_devserve(&dir, "127.0.0.1:0");
    let page = format!("http://{addr}/");
    let context = tail(&devserve);

    // The page loads with the client, connected through the shared worker.
    browser.open(&page);
    assert_eq!(browser.wait("the client connected", connected(), &context), "shared-worker");
    assert_eq!(browser.eval(VERSION_JS), "v1");

    // A save: the page keeps the old version while the new generation builds and starts (700 ms),
    // then reloads once, straight to the new version.
    let mark = devserve.capture().len();
    write(&dir.join("version.txt"), "v2");
    let mut checks = 0;
    while devserve.capture().find_event(mark, "generation_ready", |e| e["generation"] == 2).is_none() {
        let seen = browser.eval(VERSION_JS);
        let ready_now = devserve.capture().find_event(mark, "generation_ready", |e| e["generation"] == 2);
        assert!(
            seen == "v1" || ready_now.is_some(),
            "the page showed {seen} before gen 2 was ready\n{}",
            context()
        );
        checks += 1;
        assert!(checks < 3000, "gen 2 never became ready\n{}", context());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(checks > 5, "the page was watched while gen 2 started ({checks} checks)");
    browser.wait("v2", &version_is("v2"), &context);
    let loads = browser.eval(LOADS_JS);
    let loaded: Vec<(String, u64)> = loads
        .as_array()
        .expect("loads")
        .iter()
        .map(|l| (l["version"].as_str().unwrap_or("?").to_owned(), l["gen"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(loaded, [("v1".to_owned(), 1), ("v2".to_owned(), 2)], "one reload, straight to gen 2");
    let reload = browser.eval("return JSON.parse(sessionStorage.getItem('__devserve.reload'))");
    assert_eq!(
        (reload["reason"].as_str(), reload["generation"].as_u64()),
        (Some("ready"), Some(2)),
        "{reload}"
    );
    // The order, from the one stderr pipe devserve and the app share.
    let ready_line = devserve.wait_event_from(mark, "generation_ready", |e| e["generation"] == 2).index;
    let starting_line = devserve.wait_event_from(mark, "generation_starting", |e| e["generation"] == 2).index;
    let first_request =
        line_index(&devserve, mark, |l| l.trim_end() == "app: gen=2 GET /").expect("gen 2 served /");
    assert!(
        starting_line < ready_line && ready_line < first_request,
        "gen 2 starting (line {starting_line}) < ready (line {ready_line}) < the page's request to it (line {first_request})"
    );

    // A failing build: the overlay with the output and its location; the page is still v2.
    write(&dir.join("version.txt"), "v3 broken");
    let overlay = browser.wait("the build-failure overlay", OVERLAY_JS, &context);
    assert_eq!(overlay["kind"], "build-failed", "{overlay}");
    let text = overlay["text"].as_str().expect("text");
    assert!(text.contains("sh build.sh") && text.contains("<b>not html</b> in the version"), "{text}");
    assert!(overlay["locs"].as_array().expect("locs").iter().any(|l| l == "src/app.py:3:7"), "{overlay}");
    assert_eq!(overlay["markup"], 0, "the output is text, never HTML");
    assert_eq!(browser.eval(VERSION_JS), "v2", "the page underneath is the old version");
    // A page opened now shows the overlay at once.
    browser.open(&page);
    let overlay = browser.wait("the overlay on a page opened while broken", OVERLAY_JS, &context);
    assert_eq!(overlay["kind"], "build-failed");
    assert_eq!(browser.eval(VERSION_JS), "v2");
    // Dismissed, it stays away, and nothing reloads while the build is broken.
    browser.eval(
        "document.querySelector('devserve-overlay').shadowRoot.querySelector('.close').click(); return true",
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(browser.eval(OVERLAY_JS), Value::Null);
    assert_eq!(browser.eval("return JSON.parse(sessionStorage.getItem('loads')).length"), 3);

    // The fix: the overlay goes, the new version shows.
    write(&dir.join("version.txt"), "v4");
    browser.wait("v4 after the fix", &version_is("v4"), &context);
    assert_eq!(browser.eval(OVERLAY_JS), Value::Null);
    browser.wait("the client connected again", connected(), &context);

    // A new generation that crashes at start: the overlay with its exit status; v4 keeps serving.
    let mark = devserve.capture().len();
    write(&dir.join("version.txt"), "crash");
    let failed = devserve.wait_event_from(mark, "generation_failed", |_| true).item;
    let overlay = browser.wait("the crash overlay", OVERLAY_JS, &context);
    assert_eq!(overlay["kind"], "crashed", "{overlay}");
    let text = overlay["text"].as_str().expect("text").to_owned();
    assert!(text.contains(&format!("generation {}", failed["generation"])), "{text}");
    assert!(text.contains("status 1"), "the exit status is shown: {text}");
    assert_eq!(browser.eval(VERSION_JS), "v4");
    let json: Value = serde_json::from_slice(&raw_get(&addr, "/json", "").1).expect("JSON");
    assert_eq!(json["version"], "v4", "the old generation keeps serving");
    write(&dir.join("version.txt"), "v5");
    browser.wait("v5 after the crash", &version_is("v5"), &context);
    assert_eq!(browser.eval(OVERLAY_JS), Value::Null);

    // A CSS-only change: the stylesheet is swapped without a reload.
    browser.wait("the client connected again", connected(), &context);
    let loads_before = browser.eval("return JSON.parse(sessionStorage.getItem('loads')).length");
    let colour = "return getComputedStyle(document.getElementById('version')).color";
    assert_eq!(browser.eval(colour), "rgb(1, 2, 3)");
    write(&dir.join("style.css"), "h1 { color: rgb(4, 5, 6); }");
    browser.wait("the new stylesheet", &format!("{colour} === 'rgb(4, 5, 6)'"), &context);
    assert_eq!(
        browser.eval("return JSON.parse(sessionStorage.getItem('loads')).length"),
        loads_before,
        "no reload"
    );
    assert!(
        browser.eval("return window.__devserve.events.join(',')").as_str().unwrap_or("").contains("css ")
    );

    pages_are_injected_or_untouched(&mut browser, &devserve, &addr);
}

/// `/nobody` and `/gz` get the client; `/gz-always` (compressed whatever was asked) and `/json`
/// pass byte for byte.
fn pages_are_injected_or_untouched(browser: &mut Browser, devserve: &Devserve, addr: &str) {
    let context = tail(devserve);
    let serving = devserve
        .events()
        .iter()
        .filter(|e| e["event"] == "generation_ready")
        .filter_map(|e| e["generation"].as_u64())
        .max()
        .expect("a generation serves");
    let direct = format!("127.0.0.1:{}", app_port(devserve, serving));

    browser.open(&format!("http://{addr}/nobody"));
    browser.wait("the client on a page without </body>", connected(), &context);
    let (head, body) = raw_get(addr, "/nobody", NAVIGATION);
    let body = String::from_utf8(body).expect("utf-8");
    assert!(
        body.contains("<script src=\"/__devserve/client.js\"") && body.contains("></script></head>"),
        "{body}"
    );
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().expect("length"))
        })
        .expect("a content-length");
    assert_eq!(length, body.len(), "Content-Length fixed");

    // The browser accepts gzip; devserve asks the app for identity, so the page gets the client.
    browser.open(&format!("http://{addr}/gz"));
    browser.wait("the client on /gz", connected(), &context);
    let (head, body) = raw_get(addr, "/gz", NAVIGATION);
    assert!(!head.to_ascii_lowercase().contains("content-encoding"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("/__devserve/client.js"));

    // An app that compresses anyway: its bytes pass untouched, the page still renders.
    browser.open(&format!("http://{addr}/gz-always"));
    assert!(browser.wait("the gzip page", VERSION_JS, &context).as_str().unwrap_or("").starts_with("gz "));
    assert_eq!(browser.eval("return typeof window.__devserve"), "undefined");
    let through = raw_get(addr, "/gz-always", NAVIGATION);
    let straight = raw_get(&direct, "/gz-always", NAVIGATION);
    assert!(through.0.to_ascii_lowercase().contains("content-encoding: gzip"), "{}", through.0);
    assert_eq!(through.1, straight.1, "gzip-encoded HTML is byte-identical through the proxy");

    // JSON: untouched, byte for byte (even asked for as a page would be).
    browser.open(&format!("http://{addr}/json"));
    let shown = browser.eval("return document.body.innerText");
    assert!(shown.as_str().unwrap_or("").contains("</body>"), "{shown}");
    for headers in ["Accept: application/json\r\n", NAVIGATION] {
        assert_eq!(raw_get(addr, "/json", headers).1, raw_get(&direct, "/json", headers).1, "{headers}");
    }
}

#[test]
fn eight_tabs_share_one_event_stream_that_survives_a_devserve_restart() {
    let Some((_one, mut browser)) =
        browser_or_skip("eight_tabs_share_one_event_stream_that_survives_a_devserve_restart")
    else {
        return;
    };
    let dir = temp_dir("browser-tabs");
    write(&dir.join("version.txt"), "v1");
    let port = free_port();
    let proxy = format!("127.0.0.1:{port}");
    let (devserve, addr) = start_devserve(&dir, &proxy);
    let page = format!("http://{addr}/");
    {
        let context = tail(&devserve);
        browser.open(&page);
        browser.wait("tab 0 connected", connected(), &context);
        for tab in 1..8 {
            assert_eq!(browser.new_tab(&page), tab);
            assert_eq!(
                browser.wait("the tab connected", connected(), &context),
                "shared-worker",
                "tab {tab}"
            );
        }
        let now = stats(&addr);
        assert_eq!(now["streams"], 1, "8 tabs, one event stream: {now}");
        assert_eq!(now["opened"], 1, "one stream was ever opened: {now}");

        // Every tab follows a save through that one stream.
        write(&dir.join("version.txt"), "v2");
        for tab in (0..8).rev() {
            browser.switch(tab);
            browser.wait(&format!("v2 in tab {tab}"), &version_is("v2"), &context);
        }
        browser.wait("the client connected again", connected(), &context);
        assert_eq!(stats(&addr)["streams"], 1, "still one stream after 8 reloads");
    }

    // devserve restarts on the same port: the worker reconnects by itself and every tab reloads.
    let mut devserve = devserve;
    devserve.signal("TERM");
    devserve.wait_exit();
    write(&dir.join("version.txt"), "v3");
    let (devserve, addr) = start_devserve(&dir, &proxy);
    let context = tail(&devserve);
    for tab in [7, 3, 0] {
        browser.switch(tab);
        browser.wait(&format!("v3 in tab {tab} after the restart"), &version_is("v3"), &context);
    }
    assert!(
        wait_until(WAIT, || stats(&addr)["streams"] == 1),
        "one stream to the new devserve: {}",
        stats(&addr)
    );
}

/// Where `SharedWorker` is missing, a tab opens its own event stream and still follows a save.
/// A frame's client stays inert under an ancestor of another origin and under a page that has a
/// client of its own, and runs in a same-origin frame of a page without one.
#[test]
fn a_tab_without_shared_workers_streams_alone_and_frames_follow_the_origin_rules() {
    let Some((_one, mut browser)) =
        browser_or_skip("a_tab_without_shared_workers_streams_alone_and_frames_follow_the_origin_rules")
    else {
        return;
    };
    let dir = temp_dir("browser-fallback");
    write(&dir.join("version.txt"), "v1");
    let (devserve, addr) = start_devserve(&dir, "127.0.0.1:0");
    let context = tail(&devserve);

    // The per-tab fallback: an EventSource of the tab's own, which follows a save.
    browser.open(&format!("http://{addr}/no-shared-worker"));
    assert_eq!(browser.wait("the client connected", connected(), &context), "event-source");
    assert_eq!(stats(&addr)["streams"], 1, "the tab's own stream: {}", stats(&addr));
    write(&dir.join("version.txt"), "v2");
    browser.wait("v2 through the tab's own stream", &version_is("v2"), &context);
    assert_eq!(browser.wait("connected again", connected(), &context), "event-source");

    // Frames: what the framed page's client reports to its parent (`typeof window.__devserve`).
    let reports = "return window.frameReports && window.frameReports.length > 0 && window.frameReports";
    let port = addr.rsplit(':').next().expect("a port");
    let cases = [
        (
            format!("http://localhost:{port}/frames?src=http://{addr}/frame-child"),
            "undefined",
            "another origin above",
        ),
        (format!("http://{addr}/frames?src=/frame-child"), "undefined", "the top page has its own client"),
        (format!("http://{addr}/frames?src=/frame-child&gz=1"), "object", "same origin, no client above"),
    ];
    for (url, expected, why) in cases {
        browser.open(&url);
        let reported = browser.wait(&format!("the frame's report ({why})"), reports, &context);
        assert_eq!(reported, json!([expected]), "{why}: {url}");
    }
    assert_eq!(
        browser.eval("return typeof window.__devserve"),
        "undefined",
        "the gzip-encoded top page was left without a client"
    );
}

/// A second, separate web server on loopback (`python3 -m http.server`), serving `files` from a
/// directory of its own: "another site" for the browser. Stopped when dropped.
struct StaticSite {
    server: Process,
    port: u16,
    _dir: TempDir,
}

impl StaticSite {
    fn serve(files: &[(&str, &str)]) -> StaticSite {
        let dir = temp_dir("browser-other-site");
        for (name, text) in files {
            write(&dir.join(name), text);
        }
        let port = free_port();
        let mut command = Command::new("python3");
        command.args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"]);
        command.arg(dir.path());
        let server = Process::spawn(command);
        assert!(
            wait_until(WAIT, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "python3 -m http.server never listened on {port}: {}",
            server.output()
        );
        StaticSite { server, port, _dir: dir }
    }
}

/// The page of another site that includes the app's `/secret.js` from `localhost:{app_port}` and,
/// once loaded, reports in `window.report` what it got: `secret` is `window.appSecret` (or its
/// `typeof` when it is not a string), `failed` whether the script element's `error` fired.
fn including_page(app_port: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>another site</title></head><body>
<script>window.includeFailed = false;</script>
<script src="http://localhost:{app_port}/secret.js" onerror="window.includeFailed = true"></script>
<script>
addEventListener('load', function () {{
  var secret = window.appSecret;
  window.report = {{ secret: typeof secret === 'string' ? secret : typeof secret, failed: window.includeFailed }};
}});
</script>
</body></html>
"#
    )
}

/// webpack-dev-server's CVE-2025-30359 class, in a real browser: a page on another site cannot
/// include the app's script (and read it through the globals it sets), nor reach the app under a
/// name of its own that resolves to loopback (DNS rebinding); a page on another port of
/// `localhost` is the same site and still can. Each hole is noted and the test fails at the end
/// with all of them, so a build without the checks shows every one.
#[test]
fn a_page_on_another_site_cannot_include_the_apps_script_nor_rebind_to_it() {
    // `other.test` resolves to 127.0.0.1 in this browser only: a hostile site that rebound its
    // name to loopback.
    let Some((_one, mut browser)) = browser_or_skip_with(
        "a_page_on_another_site_cannot_include_the_apps_script_nor_rebind_to_it",
        &["--host-resolver-rules=MAP other.test 127.0.0.1"],
        &[],
    ) else {
        return;
    };
    let dir = temp_dir("browser-cross-site");
    write(&dir.join("version.txt"), "v1");
    let (devserve, addr) = start_devserve(&dir, "127.0.0.1:0");
    let app = addr.rsplit(':').next().expect("a port").to_owned();
    let site = StaticSite::serve(&[("page.html", &including_page(&app))]);
    let context =
        || format!("{}\nthe other site's log: {}", tail(&devserve)(), site.server.capture().tail(10));
    let report = "return window.report";
    let asked_for = |path: &str, from: usize| {
        let line = format!("app: gen=1 GET {path}");
        line_index(&devserve, from, |l| l.trim_end() == line).is_some()
    };
    let mut holes = Vec::new();

    // A page on another site: the include fails, and the app is never asked for the file.
    browser.open(&format!("http://other.test:{}/page.html", site.port));
    let got = browser.wait("the include's outcome on another site", report, context);
    if got != json!({"secret": "undefined", "failed": true}) {
        holes.push(format!("a page on other.test included the app's script: {got}"));
    }
    if asked_for("/secret.js", 0) {
        holes.push("the cross-site include reached the app".to_owned());
    }

    // The same page on localhost (another port, the same site): the include works.
    let mark = devserve.capture().len();
    browser.open(&format!("http://localhost:{}/page.html", site.port));
    let got = browser.wait("the include's outcome on localhost", report, context);
    assert_eq!(
        got,
        json!({"secret": "s3cret", "failed": false}),
        "a page on localhost:{} could not include the app's script from localhost:{app}\n{}",
        site.port,
        context()
    );
    assert!(asked_for("/secret.js", mark), "the app served the include\n{}", context());

    // The app under a name that is not allowed (DNS rebinding): devserve's 403 page, not the app.
    let mark = devserve.capture().len();
    browser.open(&format!("http://other.test:{app}/"));
    let shown =
        browser.wait("a page under other.test", "return document.body && document.body.innerText", context);
    let shown = shown.as_str().unwrap_or("").to_owned();
    if browser.eval("return document.getElementById('version') !== null") == true || asked_for("/", mark) {
        holes.push(format!("the app answered under other.test (DNS rebinding): {shown:?}"));
    }
    if !shown.contains("--allowed-host other.test") {
        holes.push(format!("the page under other.test is not devserve's refusal naming the flag: {shown:?}"));
    }

    assert!(holes.is_empty(), "{} hole(s):\n- {}\n{}", holes.len(), holes.join("\n- "), context());
}

/// A HOME of its own (and its path): devserve's local CA made there and trusted in the NSS
/// database Chromium reads from it (`devserve ca install`).
fn home_trusting_the_ca(name: &str) -> (TempDir, String) {
    let home = temp_dir(name);
    let home_text = home.path().to_str().expect("utf-8").to_owned();
    let installed = run_to_completion(
        Command::new(devserve_bin())
            .args(["ca", "install"])
            .env("HOME", &home_text)
            .env_remove("XDG_DATA_HOME"),
    );
    assert_eq!(installed.code(), 0, "devserve ca install: {}", installed.stderr);
    (home, home_text)
}

#[test]
fn an_https_page_loads_over_http2_with_no_warning_once_the_ca_is_trusted_and_a_save_reloads_it_once() {
    let (_home, home_text) = home_trusting_the_ca("browser-https-home");
    let env = [("HOME", home_text.as_str())];
    let Some((_one, mut browser)) = browser_or_skip_with(
        "an_https_page_loads_over_http2_with_no_warning_once_the_ca_is_trusted_and_a_save_reloads_it_once",
        &[],
        &env,
    ) else {
        return;
    };
    let dir = temp_dir("browser-https");
    write(&dir.join("version.txt"), "v1");
    let (devserve, addr) = start_devserve_with(&dir, "https://127.0.0.1:0", &env);
    let port = addr.rsplit(':').next().expect("port");
    let context = tail(&devserve);
    // A certificate warning would be Chromium's own interstitial, without the app's page.
    browser.open(&format!("https://localhost:{port}/"));
    assert_eq!(browser.wait("the client connected", connected(), &context), "shared-worker");
    assert_eq!(browser.eval(VERSION_JS), "v1");
    let protocol = browser.eval("return performance.getEntriesByType('navigation')[0].nextHopProtocol");
    assert_eq!(protocol, "h2", "{}", context());
    write(&dir.join("version.txt"), "v2");
    browser.wait("v2", &version_is("v2"), &context);
    let loads = browser.eval(LOADS_JS);
    let loaded: Vec<u64> =
        loads.as_array().expect("loads").iter().map(|l| l["gen"].as_u64().unwrap_or(0)).collect();
    assert_eq!(loaded, [1, 2], "one reload, straight to gen 2: {loads}");
}

#[test]
fn a_websocket_keeps_working_over_https_in_chromium() {
    let (_home, home_text) = home_trusting_the_ca("browser-wss-home");
    let env = [("HOME", home_text.as_str())];
    let Some((_one, mut browser)) =
        browser_or_skip_with("a_websocket_keeps_working_over_https_in_chromium", &[], &env)
    else {
        return;
    };
    let dir = temp_dir("browser-wss");
    let app = app("ws_echo.py");
    let args = [
        "--proxy",
        "https://127.0.0.1:0",
        "--log-format",
        "json",
        "--",
        "python3",
        app.to_str().expect("utf-8"),
    ];
    let devserve = Devserve::start(&dir, &args, &env);
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let port = addr.rsplit(':').next().expect("port").to_owned();
    let context = tail(&devserve);
    browser.open(&format!("https://localhost:{port}/"));
    browser.eval(&format!(
        "window.__got = []; const ws = new WebSocket('wss://localhost:{port}/'); \
         ws.onopen = () => ws.send('over tls'); ws.onmessage = (m) => window.__got.push(m.data); return true"
    ));
    let got = browser.wait("the echo", "return window.__got.length > 0 && window.__got[0]", &context);
    assert_eq!(got, "0 over tls", "{}", context());
}

/// Services behind one front door: a page of `web` that fetches `/api/` from the `api` service
/// (same origin, so no CORS anywhere) shows the new API after a save in api's folder, by the
/// reload api's swap sends.
#[test]
fn a_page_of_one_service_sees_another_service_swap_on_the_same_origin() {
    let Some((_one, mut browser)) =
        browser_or_skip("a_page_of_one_service_sees_another_service_swap_on_the_same_origin")
    else {
        return;
    };
    let dir = temp_dir("browser-services");
    std::fs::create_dir_all(dir.join("web")).expect("web");
    std::fs::create_dir_all(dir.join("api")).expect("api");
    write(
        &dir.join("web/index.html"),
        "<!doctype html><html><head><title>web</title></head><body><p id=\"api\">…</p><script>\n\
         fetch('/api/').then(r => r.text()).then(t => { document.getElementById('api').textContent = t.trim(); });\n\
         </script></body></html>\n",
    );
    write(&dir.join("api/VERSION"), "api-1");
    let config = format!(
        "proxy = \"127.0.0.1:0\"\nlog-format = \"json\"\n\n\
         [services.api]\nwatch = [\"api\"]\ncommand = [\"python3\", \"{}\"]\nroute = \"/api\"\nstrip-prefix = true\n\
         [services.api.env]\nFIXTURE_BIND_PORT_ENV = \"1\"\nFIXTURE_VERSION_FILE = \"api/VERSION\"\n\n\
         [services.web]\nwatch = [\"web\"]\nroute = \"/\"\n\
         command = [\"sh\", \"-c\", \"exec python3 -m http.server $PORT --bind 127.0.0.1 --directory web\"]\n",
        python_fixture().display()
    );
    write(&dir.join("devserve.toml"), &config);
    let devserve = Devserve::start(&dir, &[], &[]);
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["service"] == "web");
    browser.open(&format!("http://{addr}/"));
    browser.wait(
        "api-1 from /api/",
        "return document.getElementById('api').textContent.includes('version=api-1')",
        tail(&devserve),
    );
    browser.wait("the client connected", connected(), tail(&devserve));
    write(&dir.join("api/VERSION"), "api-2");
    browser.wait(
        "api-2 after the save",
        "return document.getElementById('api').textContent.includes('version=api-2')",
        tail(&devserve),
    );
    let (head, _) = raw_get(&addr, "/api/", "Origin: http://localhost\r\n");
    assert!(!head.to_ascii_lowercase().contains("access-control-"), "no CORS header: {head}");
    assert_eq!(
        devserve.count_events("generation_starting", |e| e["service"] == "web"),
        1,
        "web never restarted"
    );
}
