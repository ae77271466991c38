//! Test harness: runs the real `devserve` binary against the fixture apps over loopback.
//! Every wait is on a condition with a generous deadline, never a fixed sleep.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Long enough for a loaded 2-core CI machine; conditions usually hold within milliseconds.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn devserve_bin() -> &'static str {
    env!("CARGO_BIN_EXE_devserve")
}

/// The Rust fixture, built by `cargo test` as an example.
pub fn rust_fixture() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let debug = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = debug.join("examples/fixture-app");
    assert!(path.exists(), "{} missing: run `cargo build --example fixture-app`", path.display());
    path
}

pub fn python_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/app.py")
}

/// A fresh, empty, canonical directory, unique to this call.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("devserve-it-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir.canonicalize().expect("canonical temp dir")
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running devserve with its merged stdout+stderr captured.
pub struct Devserve {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Devserve {
    /// Starts devserve in `dir` with `args` and extra environment.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Devserve {
        let mut command = Command::new(devserve_bin());
        command
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn devserve");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("DEVSERVE_TEST_ECHO").is_some() {
                        eprintln!("  | {line}");
                    }
                    let mut text = sink.lock().expect("output lock");
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        Devserve { child, output }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.output().matches(needle).count()
    }

    /// Waits until `needle` has appeared `times` times in the output.
    pub fn wait_for_count(&self, needle: &str, times: usize) {
        if !wait_until(WAIT, || self.count(needle) >= times) {
            panic!("timed out waiting for {times}× {needle:?}; output:\n{}", self.output());
        }
    }

    pub fn wait_for(&self, needle: &str) {
        self.wait_for_count(needle, 1);
    }

    /// The address devserve reported for its `index`-th `--listen` socket.
    pub fn listen_addr(&self, index: usize) -> String {
        self.wait_for_count("listening on ", index + 1);
        let output = self.output();
        let line = output.lines().filter(|l| l.contains("listening on ")).nth(index).expect("listen line");
        let after = line.split("listening on ").nth(1).expect("address");
        after.split(' ').next().expect("address").to_owned()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "devserve did not exit; output:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Pids of devserve's direct children, with their state letter (R, S, Z, …).
    pub fn children(&self) -> Vec<(i32, char)> {
        let task_dir = format!("/proc/{}/task", self.pid());
        let mut children = Vec::new();
        for task in std::fs::read_dir(task_dir).into_iter().flatten().flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for pid in list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                children.push((pid, process_state(pid).unwrap_or('?')));
            }
        }
        children
    }
}

impl Drop for Devserve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The state letter of a process from /proc, or None if it does not exist.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim().chars().next()
}

/// A process that exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    process_state(pid).is_some_and(|s| s != 'Z')
}

/// One HTTP GET on a new TCP connection; returns the body of a 200, or an error text.
pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
    exchange(stream, path)
}

pub fn http_get_unix(socket: &Path, path: &str) -> Result<String, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
    exchange(stream, path)
}

/// No request in these tests takes this long; one that does is a failure, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

fn exchange<S: Read + Write>(mut stream: S, path: &str) -> Result<String, String> {
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("read: {e}"))?;
    let (head, body) =
        response.split_once("\r\n\r\n").ok_or_else(|| format!("bad response: {response:?}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("status: {head}"));
    }
    Ok(body.to_owned())
}

/// `version=v pid=1 gen=1 worker=0` → value of `key`.
pub fn field(body: &str, key: &str) -> String {
    body.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{key}="))).unwrap_or_default().to_owned()
}

/// Waits until GET / answers with `version`; returns the body.
pub fn wait_for_version(addr: &str, version: &str) -> String {
    let mut last = String::new();
    let found = wait_until(WAIT, || match http_get(addr, "/") {
        Ok(body) if field(&body, "version") == version => {
            last = body;
            true
        }
        Ok(body) => {
            last = body;
            false
        }
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(found, "version {version} never served; last answer: {last}");
    last
}

/// A port that was free a moment ago (restart mode needs the app to bind it itself).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write file");
}

/// Client threads hitting `GET /` on a new connection each time until stopped.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

/// What a [`Load`] saw.
pub struct LoadResult {
    pub ok: usize,
    pub failures: Vec<String>,
}

impl Load {
    pub fn start(addr: &str, threads: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (stop, addr) = (stop.clone(), addr.to_owned());
                std::thread::spawn(move || {
                    let (mut ok, mut failures) = (0, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match http_get(&addr, "/") {
                            Ok(_) => ok += 1,
                            Err(e) => failures.push(e),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load { stop, threads }
    }

    pub fn stop(self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut result = LoadResult { ok: 0, failures: Vec::new() };
        for thread in self.threads {
            let (ok, failures) = thread.join().expect("load thread");
            result.ok += ok;
            result.failures.extend(failures);
        }
        result
    }
}
