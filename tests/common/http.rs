//! A minimal HTTP client for the fixture apps, and load threads that count failures.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::wait::{WAIT, wait_until};

/// No request in these tests takes this long; one that does is a failure, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// One HTTP GET on a new TCP connection; returns the body of a 200, or an error text.
pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
    exchange(stream, path)
}

/// One HTTP GET on a new connection to a Unix socket.
pub fn http_get_unix(socket: &Path, path: &str) -> Result<String, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
    exchange(stream, path)
}

/// One HTTP GET; returns the status line and the body whatever the status.
pub fn http_get_any(addr: &str, path: &str) -> Result<(String, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
    let (head, body) = request(&mut stream, path)?;
    Ok((head.lines().next().unwrap_or_default().to_owned(), body))
}

/// One HTTP GET with its own `Host` header (`api.localhost:8080`); the body of a 200.
pub fn http_get_host(addr: &str, host: &str, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("read: {e}"))?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") => {
            Ok(body.to_owned())
        }
        _ => Err(format!("bad response: {response:?}")),
    }
}

fn exchange<S: Read + Write>(mut stream: S, path: &str) -> Result<String, String> {
    let (head, body) = request(&mut stream, path)?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("status: {head}"));
    }
    Ok(body)
}

fn request<S: Read + Write>(stream: &mut S, path: &str) -> Result<(String, String), String> {
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("read: {e}"))?;
    let (head, body) =
        response.split_once("\r\n\r\n").ok_or_else(|| format!("bad response: {response:?}"))?;
    Ok((head.to_owned(), body.to_owned()))
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

/// Client threads hitting `GET /` on a new connection each time until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<(usize, Vec<String>)>>,
}

/// What a [`Load`] saw.
pub struct LoadResult {
    pub ok: usize,
    pub failures: Vec<String>,
}

impl Load {
    pub fn start(addr: &str, threads: usize) -> Load {
        Load::start_on(addr, "/", threads)
    }

    /// The same, requesting `path`.
    pub fn start_on(addr: &str, path: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, answered, addr, path) =
                    (stop.clone(), answered.clone(), addr.to_owned(), path.to_owned());
                std::thread::spawn(move || {
                    let (mut ok, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match http_get(&addr, &path) {
                            Ok(_) => {
                                ok += 1;
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures.push(e),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load { stop, answered, threads }
    }

    /// Waits until `n` more requests have been answered: the load ran across what comes next,
    /// however slow the machine. Panics after [`WAIT`].
    pub fn wait_for_answers(&self, n: usize) {
        let target = self.answered.load(Ordering::Relaxed) + n;
        assert!(
            wait_until(WAIT, || self.answered.load(Ordering::Relaxed) >= target),
            "the load stalled: {} answered, waiting for {target}",
            self.answered.load(Ordering::Relaxed)
        );
    }

    pub fn stop(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = LoadResult { ok: 0, failures: Vec::new() };
        for thread in self.threads {
            let (ok, failures) = thread.join().expect("load thread");
            result.ok += ok;
            result.failures.extend(failures);
        }
        result
    }
}
