//! What a hostile or unlucky environment, or a client, can make devserve do; each test reproduces
//! one fault against the real binary.
//!
//! - The environment: a symlink planted for the pidfile or its temporary file, a planted runtime
//!   directory name, `--signal` against a pid that is not a devserve (or a stale pidfile naming
//!   one), stderr on `/dev/full` or on a pipe nobody reads, a `TMPDIR` too long for socket paths,
//!   control characters in file names (no forged line, no raw escape on the terminal).
//! - The front door's allowed hosts, end to end, with the Python fixture: `--allowed-host` and
//!   `allowed-hosts`, one `proxy_refused` line per host, `all` and its warning, the flag's usage
//!   errors, a proxy on `0.0.0.0` reached through this machine's own non-loopback address. (The
//!   rules themselves, cross-site upgrades and loads, and malformed heads are unit tests of the
//!   proxy in `src/proxy/tests/front_door.rs`; Chromium's view is in `tests/browser.rs`.)
//! - The limits a client or a build can hit, measured on devserve's own process (its `VmRSS` and
//!   `VmHWM` in `/proc`, never the app's), with the Python fixture or `tests/apps/limits_upload.py`
//!   behind the proxy:
//!   - a request body that arrives one byte per TCP segment costs about its bytes, not a read
//!     buffer per byte, and is answered once complete;
//!   - more clients waiting on their request bodies than the usual soft fd limit (1024) do not
//!     close the front door to the next request;
//!   - a 10 MB standing build failure is not copied into each of 80 event streams that never read;
//!   - a build that prints 100 MB without a newline is not held whole;
//!   - the memory of 5,000 idle keep-alive connections comes back once they are closed.
//!
//!   They measure memory and hold thousands of sockets, so they run one at a time.

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde_json::Value;

use common::*;

/// The pids the kernel will most likely hand out next: where a predictable name would be planted.
fn next_pids(count: u32) -> Vec<u32> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .expect("ns_last_pid");
    (last + 1..last + 1 + count).collect()
}

#[test]
fn pidfile_never_follows_a_planted_symlink() {
    let dir = temp_dir("pidfile-symlink");
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let victim = dir.join("victim");
    write(&victim, "precious\n");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The old temporary name was `app.tmp.PID`: plant it for every pid devserve may get.
    for pid in next_pids(400) {
        let _ = symlink(&victim, shared.join(format!("app.tmp.{pid}")));
    }
    let pidfile = shared.join("app.pid");
    let pidfile_arg = pidfile.to_str().expect("utf-8");
    let mut devserve = Fixture::python()
        .notify()
        .start(&dir, &["-w", "shared", "-l", "127.0.0.1:0", "--pidfile", pidfile_arg]);
    devserve.wait_for("gen 1 ready");
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious\n", "the victim is untouched");
    let written = std::fs::read_to_string(&pidfile).expect("pidfile");
    assert_eq!(written.trim(), devserve.pid().to_string());
    assert!(!std::fs::symlink_metadata(&pidfile).expect("pidfile").file_type().is_symlink());
    devserve.signal("TERM");
    assert!(devserve.wait_exit().success());
    assert!(!pidfile.exists(), "removed at exit");

    // A pidfile that is itself a symlink is refused, and its target left alone.
    symlink(&victim, &pidfile).expect("plant");
    one_error(&dir, &["--pidfile", pidfile_arg, "--once", "--", "true"], "not a regular file");
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious\n");
}

#[test]
fn a_planted_runtime_dir_name_is_not_used() {
    let dir = temp_dir("planted-runtime");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    // The old name was `devserve-PID`: plant it, owned by nobody, for every pid devserve may get.
    for pid in next_pids(400) {
        let planted = tmp.join(format!("devserve-{pid}"));
        if std::fs::create_dir(&planted).is_ok() {
            let _ = std::os::unix::fs::chown(&planted, Some(65534), Some(65534));
            let _ = std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o700));
        }
    }
    let tmp_text = tmp.to_str().expect("utf-8");
    let devserve = Fixture::python().notify().start_with(
        &dir,
        &["-w", ".", "-i", "tmp/**", "-l", "127.0.0.1:0", "--ready-delay", "1h"],
        &[("TMPDIR", tmp_text), ("XDG_RUNTIME_DIR", tmp_text)],
    );
    devserve.wait_for("gen 1 ready");
}

#[test]
fn signal_refuses_a_pid_that_is_not_a_devserve() {
    let dir = temp_dir("signal-victim");
    let mut sleeper = Command::new("sleep").arg("600").spawn().expect("sleep");
    let pidfile = dir.join("app.pid");
    write(&pidfile, &format!("{}\n", sleeper.id()));
    let pidfile_arg = pidfile.to_str().expect("utf-8");
    let code = one_error(&dir, &["-s", "reload", "--pidfile", pidfile_arg], "is not a devserve");
    assert_eq!(code, 1);
    assert!(sleeper.try_wait().expect("try_wait").is_none(), "the unrelated process got no SIGHUP");
    write(&pidfile, "1\n");
    one_error(&dir, &["-s", "stop", "--pidfile", pidfile_arg], "is not a devserve");

    // A stale pidfile whose pid now belongs to another program does not block a start.
    write(&pidfile, &format!("{}\n", sleeper.id()));
    let devserve =
        Fixture::python().notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0", "--pidfile", pidfile_arg]);
    devserve.wait_for("gen 1 ready");
    assert!(devserve.output().contains("is now another program"), "{}", devserve.output());
    let written = std::fs::read_to_string(&pidfile).expect("pidfile");
    assert_eq!(written.trim(), devserve.pid().to_string());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn a_failing_stderr_neither_panics_nor_stops_the_serving_generation() {
    let dir = temp_dir("stderr-full");
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let fixture = Fixture::python().notify().version("v1");
    let mut command =
        devserve_command(&dir, &fixture.devserve_args(&["-w", ".", "-l", &addr]), &fixture.env_pairs());
    let mut devserve = Process::adopt(command.stdout(Stdio::null()).stderr(full).spawn().expect("spawn"));
    wait_for_version(&addr, "v1");
    // Each reload prints lines that cannot be written; each one still goes through.
    for generation in 2..=4 {
        devserve.signal("HUP");
        let reloaded = wait_until(WAIT, || {
            http_get(&addr, "/").is_ok_and(|b| field(&b, "gen") == generation.to_string())
        });
        assert!(reloaded, "reload {generation} went through");
    }
    assert!(devserve.try_wait().is_none(), "devserve is still running");
    devserve.signal("TERM");
    let status = devserve.wait_exit();
    assert_eq!(status.code(), Some(0), "a clean stop, not a panic (101)");
}

#[test]
fn a_stalled_stderr_does_not_freeze_the_supervisor() {
    let dir = temp_dir("stderr-stalled");
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let fixture = Fixture::python().notify().version("v1");
    let args = fixture.devserve_args(&["-w", ".", "-l", &addr, "--stop-timeout", "2s"]);
    let mut command = devserve_command(&dir, &args, &fixture.env_pairs());
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr pipe");
    let mut devserve = Process::adopt(child);
    // The smallest pipe the kernel allows, and nobody reads it for now.
    #[cfg(target_os = "linux")]
    let _ = nix::fcntl::fcntl(&stderr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096));
    wait_for_version(&addr, "v1");
    let pid = devserve.pid().to_string();
    // Thousands of status lines: far more than the pipe and devserve's queue hold. One `kill`
    // process each, so each signal is handled before the next comes (sent at once, they merge).
    for _ in 0..1500 {
        let _ = Command::new("kill").args(["-USR1", &pid]).status();
    }
    // The loop still reacts while stderr is stuck: a reload goes through.
    devserve.signal("HUP");
    let reloaded = wait_until(WAIT, || http_get(&addr, "/").is_ok_and(|b| field(&b, "gen") == "2"));
    assert!(reloaded, "a HUP is handled while stderr is stalled");
    // Now read: the writer catches up and says what was dropped.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let asked = Instant::now();
    devserve.signal("TERM");
    let status = devserve.wait_exit();
    assert!(asked.elapsed() < Duration::from_secs(20), "TERM and --stop-timeout are obeyed");
    assert_eq!(status.code(), Some(0));
    let text = reader.join().expect("reader");
    assert!(text.contains("lines dropped (stderr was not read)"), "the reader is told what it missed");
}

#[test]
fn a_tmpdir_too_long_for_socket_paths_falls_back() {
    let dir = temp_dir("long-tmpdir");
    let mut long = dir.to_path_buf();
    while long.as_os_str().len() < 99 {
        long.push("deeper-and-deeper");
    }
    std::fs::create_dir_all(&long).expect("mkdir");
    // Ready only through READY=1 on the notify socket: the socket path must work.
    let long_text = long.to_str().expect("utf-8");
    let devserve = Fixture::python().notify().start_with(
        &dir,
        &["-w", ".", "-l", "127.0.0.1:0", "--ready-delay", "1h"],
        &[("TMPDIR", long_text), ("XDG_RUNTIME_DIR", long_text)],
    );
    devserve.wait_for("gen 1 ready");
}

#[test]
fn control_characters_in_file_names_are_escaped() {
    let dir = temp_dir("control-names");
    let devserve = Fixture::python().notify().start(&dir, &["-w", ".", "-l", "127.0.0.1:0"]);
    devserve.wait_for("gen 1 ready");
    write(&dir.join("a\n[devserve] gen 99 ready \u{1b}[31mred"), "forged");
    devserve.wait_for("gen 2 ready");
    let output = devserve.output();
    assert!(!output.lines().any(|l| l.starts_with("[devserve] gen 99")), "no forged line:\n{output}");
    assert!(!output.contains('\u{1b}'), "no raw escape reaches the terminal");
    assert!(output.contains("a\\n[devserve] gen 99 ready \\x1b[31mred changed"), "{output}");
}

/// devserve `--proxy ADDR` (plus `args`) over the Python fixture; returns it and the proxy's port.
fn serve(dir: &Path, proxy: &str, args: &[&str]) -> (Devserve, u16) {
    let (devserve, address) = Fixture::python().version("v1").behind_proxy(dir, proxy, args);
    let port = address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    (devserve, port)
}

/// `GET /` to `connect` with `Host: host`: the status code and the body.
fn get_as(connect: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(connect).unwrap_or_else(|e| panic!("connect {connect}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    write!(stream, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn foreign_hosts_are_refused_with_the_flag_that_allows_them_and_one_line_each() {
    let dir = temp_dir("allowed-hosts");
    let (devserve, port) = serve(dir.path(), "127.0.0.1:0", &["--allowed-host", "dev.test"]);
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..3 {
        let (status, body) = get_as(&addr, "evil.example");
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("--allowed-host evil.example"), "{body}");
    }
    for host in
        [format!("dev.test:{port}"), format!("localhost:{port}"), addr.clone(), "app.localhost".into()]
    {
        let (status, body) = get_as(&addr, &host);
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains("version=v1"), "{host}: {body}");
    }
    let refused = devserve.wait_event("proxy_refused", |e| e["value"] == "evil.example");
    assert_eq!(refused["check"], "host");
    assert!(refused["text"].as_str().is_some_and(|t| t.contains("--allowed-host evil.example")), "{refused}");
    assert_eq!(devserve.count_events("proxy_refused", |_| true), 1, "one line per host, not per request");
}

#[test]
fn the_config_file_takes_a_list_and_all_turns_the_checks_off_with_a_warning() {
    let dir = temp_dir("allowed-hosts-file");
    write(&dir.path().join("devserve.toml"), "allowed-hosts = [\".example.test\"]\n");
    let (devserve, port) = serve(dir.path(), "127.0.0.1:0", &[]);
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(get_as(&addr, "api.example.test").0, 200);
    assert_eq!(get_as(&addr, "example.test").0, 200);
    assert_eq!(get_as(&addr, "evil.example").0, 403);
    assert_eq!(devserve.count_events("allowed_hosts_off", |_| true), 0);
    drop(devserve);

    let open = temp_dir("allowed-hosts-all");
    let (devserve, port) = serve(open.path(), "127.0.0.1:0", &["--allowed-host", "all"]);
    devserve.wait_event("allowed_hosts_off", |_| true);
    let (status, body) = get_as(&format!("127.0.0.1:{port}"), "evil.example");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn allowed_host_needs_the_proxy_and_a_host_name() {
    let dir = temp_dir("allowed-hosts-usage");
    let without_proxy = run_devserve(dir.path(), &["--allowed-host", "dev.test", "--", "true"], &[]);
    assert_eq!(without_proxy.code(), 2, "{}", without_proxy.stderr);
    assert!(without_proxy.stderr.contains("--allowed-host needs --proxy"), "{}", without_proxy.stderr);
    let bad = run_devserve(
        dir.path(),
        &["--proxy", "127.0.0.1:0", "--allowed-host", "dev.test:80", "--", "true"],
        &[],
    );
    assert_eq!(bad.code(), 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("is not a host name"), "{}", bad.stderr);
}

/// This machine's first IPv4 address that is not loopback, from `ip -4 -o addr`.
fn own_address() -> String {
    let output = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("run `ip` (iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("this machine has no non-loopback IPv4 address to test with:\n{text}"))
}

#[test]
fn a_proxy_on_every_interface_answers_this_machines_own_address() {
    let dir = temp_dir("allowed-hosts-any");
    let (_devserve, port) = serve(dir.path(), "0.0.0.0:0", &[]);
    let own = format!("{}:{port}", own_address());
    let (status, body) = get_as(&own, &own);
    assert_eq!(status, 200, "{own}: {body}");
    assert_eq!(get_as(&own, "evil.example").0, 403);
}

/// A MiB, in the KiB that `/proc/PID/status` counts in.
const MIB: u64 = 1024;

/// The tests of this file measure one devserve's memory each and open thousands of sockets: one at
/// a time, so that they do not compete for the 2 cores and the fds.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// devserve's `VmRSS` in KiB; fails the test if devserve is gone (killed for memory, crashed).
fn rss(devserve: &Devserve) -> u64 {
    status(devserve, "VmRSS")
}

/// A `kB` field of devserve's `/proc/PID/status`; fails the test if devserve is gone.
fn status(devserve: &Devserve, field: &str) -> u64 {
    status_kib(devserve.pid(), field).unwrap_or_else(|| {
        panic!("devserve (pid {}) is gone; output:\n{}", devserve.pid(), devserve.output())
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / MIB as f64)
}

/// `--proxy 127.0.0.1:0 --log-format json`, then `args`, then `--` and `app`.
fn proxy_args<'a>(args: &[&'a str], app: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--proxy", "127.0.0.1:0", "--log-format", "json"];
    all.extend_from_slice(args);
    all.push("--");
    all.extend_from_slice(app);
    all
}

/// The Python fixture binding `$PORT` behind the proxy: its command line and environment.
fn fixture_env(fixture: &Fixture) -> Vec<(&str, &str)> {
    let mut env = fixture.env_pairs();
    env.push(("FIXTURE_BIND_PORT_ENV", "1"));
    env
}

/// devserve in `dir` with `args` behind the proxy; waits until gen 1 is ready.
fn serve_ready(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Devserve, String) {
    let devserve = Devserve::start(dir, args, env);
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    (devserve, addr)
}

/// Raises this test process's soft fd limit to its hard limit (children started from now on
/// inherit it); fails the test if the hard limit is below `needed`. Returns the hard limit.
fn raise_own_fd_limit(needed: u64) -> u64 {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(hard >= needed, "this test needs {needed} open files; the hard limit is {hard} (ulimit -Hn)");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    hard
}

fn connect(addr: &str) -> TcpStream {
    let socket: SocketAddr = addr.parse().expect("a socket address");
    let stream =
        TcpStream::connect_timeout(&socket, WAIT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    stream
}

/// An HTTP/1.1 request head: `line` (`GET /`), a `Host` that the front door answers for (the
/// proxy's own address), then `headers` (each ending in CRLF).
fn head(line: &str, addr: &str, headers: &str) -> String {
    format!("{line} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n")
}

/// Reads one HTTP/1.1 response with a `Content-Length` (the connection stays open); returns its
/// head and body.
fn read_response(stream: &mut TcpStream) -> Result<(String, String), String> {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => bytes.push(byte[0]),
            Ok(_) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&bytes))),
            Err(e) => {
                return Err(format!("reading the head: {e} after {:?}", String::from_utf8_lossy(&bytes)));
            }
        }
    }
    let head = String::from_utf8_lossy(&bytes).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no Content-Length: {head}"))?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).map_err(|e| format!("reading the body: {e}"))?;
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}

/// The `proxy_problem` events so far (how devserve says it cannot accept), for a failure message.
fn problems(devserve: &Devserve) -> Vec<String> {
    let events = devserve.events();
    let texts = events.iter().filter(|e| e["event"] == "proxy_problem");
    texts.map(|e| e["text"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Concurrent slow uploads.
const SLOW_CLIENTS: usize = 4;

/// Each one's `Content-Length`.
const SLOW_BODY: usize = 12_000;

/// The pause between two bytes on one connection: each byte is its own TCP segment (no Nagle on
/// the client) and arrives on its own at the proxy, which reads it as one frame. This pacing is the
/// attack, not a wait.
const SLOW_PACE: Duration = Duration::from_micros(500);

/// How much devserve's RSS may grow while the bodies (48,000 bytes in all) are in.
const SLOW_GROWTH: u64 = 8 * MIB;

#[test]
fn a_request_body_sent_one_byte_per_segment_costs_its_bytes_not_a_buffer_each() {
    let _one = one_at_a_time();
    let dir = temp_dir("limits-slow-body");
    let upload = app("limits_upload.py");
    let upload = upload.to_str().expect("utf-8 path");
    let (devserve, addr) = serve_ready(dir.path(), &proxy_args(&["-w", "."], &["python3", upload]), &[]);
    // One whole upload first: what a request costs once is in the baseline.
    let mut warm = connect(&addr);
    let warm_up = head("POST /warm", &addr, "Content-Length: 5\r\nConnection: close\r\n") + "hello";
    warm.write_all(warm_up.as_bytes()).expect("warm-up request");
    let (_, body) = read_response(&mut warm).expect("the warm-up upload is answered");
    assert_eq!(body.trim(), "got=5");
    drop(warm);

    let before = rss(&devserve);
    let mut clients: Vec<TcpStream> = (0..SLOW_CLIENTS)
        .map(|n| {
            let mut stream = connect(&addr);
            stream.set_nodelay(true).expect("TCP_NODELAY");
            let length = format!("Content-Length: {SLOW_BODY}\r\nConnection: close\r\n");
            stream
                .write_all(head(&format!("POST /upload/{n}"), &addr, &length).as_bytes())
                .expect("request head");
            stream
        })
        .collect();
    let mut peak = before;
    // Every byte but the last: the bodies are in, not complete.
    for sent in 1..SLOW_BODY {
        for stream in &mut clients {
            stream.write_all(b"x").expect("a body byte");
        }
        std::thread::sleep(SLOW_PACE);
        if sent % 200 == 0 || sent == SLOW_BODY - 1 {
            peak = peak.max(rss(&devserve));
            assert!(
                peak < before + SLOW_GROWTH,
                "devserve's RSS grew by {} ({} -> {}) with {sent} of {SLOW_BODY} body bytes in on each of \
                 {SLOW_CLIENTS} connections, one byte per segment ({} bytes in all): more than {} for \
                 bodies still being read",
                mib(peak - before),
                mib(before),
                mib(peak),
                sent * SLOW_CLIENTS,
                mib(SLOW_GROWTH),
            );
        }
    }
    for stream in &mut clients {
        stream.write_all(b"x").expect("the last body byte");
    }
    for (n, stream) in clients.iter_mut().enumerate() {
        let (head, body) = read_response(stream)
            .unwrap_or_else(|e| panic!("upload {n} is not answered: {e}\n{}", devserve.output()));
        assert!(head.starts_with("HTTP/1.1 200"), "upload {n}: {head}{body}");
        assert_eq!(body.trim(), format!("got={SLOW_BODY}"), "upload {n}: the app got the whole body");
    }
    eprintln!(
        "slow bodies: devserve's RSS {} before, peak {} with {} body bytes in",
        mib(before),
        mib(peak),
        (SLOW_BODY - 1) * SLOW_CLIENTS
    );
}

/// devserve's soft fd limit in the fd test, as a login shell usually has it.
const SOFT_NOFILE: u64 = 1024;

/// Clients waiting on their request body in the fd test: more than [`SOFT_NOFILE`].
const WAITING_CLIENTS: usize = 1050;

/// `inner` (devserve's command, with its arguments, environment and directory) run by
/// `prlimit --nofile=SOFT:HARD`, which sets the limits and then execs it: the pid stays
/// devserve's.
fn under_prlimit(inner: &Command, soft: u64, hard: u64) -> Command {
    let mut command = Command::new("prlimit");
    command.arg(format!("--nofile={soft}:{hard}")).arg("--").arg(inner.get_program()).args(inner.get_args());
    if let Some(dir) = inner.get_current_dir() {
        command.current_dir(dir);
    }
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
}

/// [`WAITING_CLIENTS`] connections to `addr`, each with a whole `POST` head announcing a body it
/// never sends.
fn bodiless_posts(addr: &str) -> Vec<TcpStream> {
    let post = head("POST /", addr, "Content-Length: 100\r\n");
    (0..WAITING_CLIENTS)
        .map(|_| {
            let mut stream = connect(addr);
            stream.write_all(post.as_bytes()).expect("request head");
            stream
        })
        .collect()
}

/// `GET /` on a fresh connection, answered within `limit` or an error saying where it stalled.
fn get_within(addr: &str, limit: Duration) -> Result<(String, String), String> {
    let socket: SocketAddr = addr.parse().expect("address");
    let mut stream = TcpStream::connect_timeout(&socket, limit).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(limit)).map_err(|e| format!("timeout: {e}"))?;
    stream.write_all(head("GET /", addr, "").as_bytes()).map_err(|e| format!("write: {e}"))?;
    read_response(&mut stream)
}

#[test]
fn clients_waiting_on_their_bodies_past_a_soft_fd_limit_of_1024_leave_the_front_door_open() {
    let _one = one_at_a_time();
    let found = Command::new("prlimit").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        found.is_ok_and(|status| status.success()),
        "this test needs prlimit (util-linux) to start devserve with a soft fd limit of {SOFT_NOFILE}"
    );
    let own_hard = raise_own_fd_limit(WAITING_CLIENTS as u64 + 200);
    // The usual desktop limits: 1024 soft, a high hard limit devserve may raise its soft one to
    // (65536, or this process's own hard limit if lower: raising it needs CAP_SYS_RESOURCE).
    let hard = own_hard.min(65_536);
    let dir = temp_dir("limits-nofile");
    let fixture = Fixture::python();
    let args = proxy_args(&["-w", "."], &fixture.argv());
    let env = fixture_env(&fixture);
    let devserve =
        Process::spawn(under_prlimit(&devserve_command(dir.path(), &args, &env), SOFT_NOFILE, hard));
    let addr = devserve.proxy_addr();
    let exe = PathBuf::from(devserve_bin());
    assert!(
        runs(devserve.pid(), &exe.canonicalize().unwrap_or(exe.clone())),
        "pid {} is devserve",
        devserve.pid()
    );
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);

    // Each sends a whole request head announcing a body it never sends.
    let waiting = bodiless_posts(&addr);

    let started = Instant::now();
    let limit = Duration::from_secs(10);
    let answer = get_within(&addr, limit);
    let took = started.elapsed();
    match answer {
        Ok((head, body)) => {
            assert!(head.starts_with("HTTP/1.1 200") && body.contains("version="), "GET /: {head}{body}");
            assert!(took < limit, "GET / took {took:?}");
        }
        Err(e) => panic!(
            "with {} connections waiting on their request bodies and a soft fd limit of {SOFT_NOFILE}, \
             GET / on a fresh connection was not answered within {limit:?}: {e}; devserve's problems: {:?}",
            waiting.len(),
            problems(&devserve)
        ),
    }
    eprintln!("fd limit: GET / answered in {took:?} with {} clients waiting", waiting.len());
}

/// Under a hard limit devserve cannot raise (1024:1024), the front door still takes a new client
/// when every descriptor is held by a client that never finishes its request: the reserve is
/// freed, the oldest such client is shed, and the new one is served.
#[test]
fn out_of_descriptors_the_oldest_client_waiting_on_no_app_is_shed_for_a_new_one() {
    let _one = one_at_a_time();
    let found = Command::new("prlimit").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(found.is_ok_and(|status| status.success()), "this test needs prlimit (util-linux)");
    raise_own_fd_limit(WAITING_CLIENTS as u64 + 200);
    let dir = temp_dir("limits-shed");
    let fixture = Fixture::python();
    let args = proxy_args(&["-w", "."], &fixture.argv());
    let env = fixture_env(&fixture);
    let devserve =
        Process::spawn(under_prlimit(&devserve_command(dir.path(), &args, &env), SOFT_NOFILE, SOFT_NOFILE));
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let waiting = bodiless_posts(&addr);
    let limit = Duration::from_secs(10);
    let started = Instant::now();
    let answer = get_within(&addr, limit);
    match answer {
        Ok((head, body)) => {
            assert!(head.starts_with("HTTP/1.1 200") && body.contains("version="), "{head}{body}")
        }
        Err(e) => panic!(
            "with {} clients holding every descriptor under a hard limit of {SOFT_NOFILE}, GET / was not \
             answered within {limit:?}: {e}; devserve's problems: {:?}",
            waiting.len(),
            problems(&devserve)
        ),
    }
    assert!(started.elapsed() < limit);
    let said = problems(&devserve);
    assert!(said.iter().any(|p| p.contains("out of file descriptors")), "{said:?}");
}

/// The size of the one compiler message of the failing build.
const MESSAGE_BYTES: usize = 10_000_000;

/// Event streams opened on the standing failure.
const STREAMS: usize = 80;

/// devserve's RSS bound with them open: one copy of the failure is 10 MB; 80 would be 800 MB.
const STREAMS_RSS: u64 = 100 * MIB;

fn events_request(addr: &str) -> String {
    head("GET /__devserve/events", addr, "Accept: text/event-stream\r\n")
}

/// Whether a new event stream shows the standing build failure in its first bytes (the stream is
/// read until then, at most a few seconds).
fn stream_shows_failure(addr: &str) -> bool {
    let mut stream = connect(addr);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(events_request(addr).as_bytes()).is_err() {
        return false;
    }
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        seen.extend_from_slice(&buffer[..n]);
        if seen.windows(19).any(|w| w == b"event: build-failed") {
            return true;
        }
    }
    false
}

#[test]
fn a_10_mb_standing_build_failure_is_not_copied_into_each_event_stream() {
    let _one = one_at_a_time();
    raise_own_fd_limit(STREAMS as u64 + 200);
    let dir = temp_dir("limits-failure");
    let tools = temp_dir("limits-failure-tools");
    // A `cargo` that prints one compiler message of 10 MB and fails; devserve runs a plain
    // `cargo build` with cargo's JSON messages and keeps each message for the overlay.
    let line = serde_json::json!({
        "reason": "compiler-message",
        "message": {
            "level": "error",
            "message": "x".repeat(MESSAGE_BYTES),
            // A primary span: only such a message is listed in the overlay (and kept for it).
            "spans": [{"file_name": "src/main.rs", "line_start": 1, "column_start": 1, "is_primary": true}],
            "rendered": "error: x\n"
        },
    });
    write(&tools.join("message.json"), &format!("{line}\n"));
    let cargo = tools.join("cargo");
    write(&cargo, &format!("#!/bin/sh\ncat '{}'\nexit 101\n", tools.join("message.json").display()));
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let fixture = Fixture::python();
    let watched = dir.to_str().expect("utf-8 path");
    let args = proxy_args(&["-w", watched, "-b", "cargo build"], &fixture.argv());
    let mut env = fixture_env(&fixture);
    env.push(("PATH", &path));
    let devserve = Devserve::start(dir.path(), &args, &env);
    let addr = devserve.proxy_addr();
    let failed = devserve.wait_event("build_finished", |e| e["ok"] == false);
    // The failure stands: a stream opened now gets it first (one that read it).
    assert!(
        wait_until(WAIT, || stream_shows_failure(&addr)),
        "no event stream shows the build failure ({failed}); output:\n{}",
        devserve.output()
    );

    let before = rss(&devserve);
    let mut peak = before;
    let mut streams = Vec::new();
    for n in 1..=STREAMS {
        let mut stream = connect(&addr);
        stream.write_all(events_request(&addr).as_bytes()).expect("request");
        // Its answer has started (peeked, not read: this client never reads).
        let mut first = [0u8; 12];
        let peeked = stream.peek(&mut first).unwrap_or_else(|e| panic!("event stream {n}: no answer: {e}"));
        assert!(
            first[..peeked].starts_with(b"HTTP/1."),
            "event stream {n}: {:?}",
            String::from_utf8_lossy(&first)
        );
        streams.push(stream);
        peak = peak.max(rss(&devserve));
        assert!(
            peak < STREAMS_RSS,
            "devserve's RSS is {} with {n} event streams open on a standing build failure of a {} MB \
             message ({} before them): each stream holds a copy; the bound is {} for {STREAMS}",
            mib(peak),
            MESSAGE_BYTES / 1_000_000,
            mib(before),
            mib(STREAMS_RSS)
        );
    }
    eprintln!(
        "standing failure: devserve's RSS {} before the streams, peak {} with {STREAMS}",
        mib(before),
        mib(peak)
    );
}

/// The byte-for-byte output of a child, read from a file as it grows, for the JSON events in it
/// (devserve's stderr, when it is too big to capture: lines are not lines when a build printed
/// 100 MB without a newline, so events are found by their opening, anywhere).
struct GrowingFile {
    file: File,
    offset: u64,
    /// The unsearched or incomplete end of what was read.
    carry: Vec<u8>,
}

impl GrowingFile {
    fn open(path: &Path) -> GrowingFile {
        GrowingFile { file: File::open(path).expect("open"), offset: 0, carry: Vec::new() }
    }

    /// The next complete event of `kind` for which `matches` holds, if it has been written.
    fn next_event(&mut self, kind: &str, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let needle = format!("{{\"event\":\"{kind}\"");
        let needle = needle.as_bytes();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            while let Some(start) = self.carry.windows(needle.len()).position(|w| w == needle) {
                let Some(end) = self.carry[start..].iter().position(|&b| b == b'\n') else {
                    // Incomplete: keep it for the next read.
                    self.carry.drain(..start);
                    break;
                };
                let event: Option<Value> = serde_json::from_slice(&self.carry[start..start + end]).ok();
                self.carry.drain(..start + end);
                if let Some(event) = event.filter(|e| matches(e)) {
                    return Some(event);
                }
            }
            if !self.carry.starts_with(needle) {
                let keep = self.carry.len().min(needle.len() - 1);
                self.carry.drain(..self.carry.len() - keep);
            }
            self.file.seek(SeekFrom::Start(self.offset)).ok()?;
            let n = self.file.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.offset += n as u64;
            self.carry.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The last `n` bytes of a file, as text, for a failure message.
fn file_tail(path: &Path, n: u64) -> String {
    let Ok(mut file) = File::open(path) else { return String::new() };
    let length = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(n)));
    let mut tail = Vec::new();
    let _ = file.read_to_end(&mut tail);
    String::from_utf8_lossy(&tail).into_owned()
}

/// What the build prints, without a newline.
const LINE_BYTES: usize = 100_000_000;

/// devserve's peak RSS bound: the output goes through; only its tail is kept.
const LINE_HWM: u64 = 64 * MIB;

#[test]
fn a_100_mb_build_line_without_a_newline_is_not_held_whole() {
    let _one = one_at_a_time();
    let dir = temp_dir("limits-long-line");
    let logs = temp_dir("limits-long-line-log");
    let stderr = logs.join("devserve.stderr");
    let build = format!("python3 -c \"import sys; sys.stdout.write('x' * {LINE_BYTES})\"; exit 1");
    let fixture = Fixture::python();
    let args = proxy_args(&["-w", ".", "-b", &build], &fixture.argv());
    let env = fixture_env(&fixture);
    // devserve copies the build's output to its stderr (and its JSON events go there too): into a
    // file, not into the test's memory.
    let mut command = devserve_command(dir.path(), &args, &env);
    command.stdout(Stdio::piped()).stderr(File::create(&stderr).expect("stderr file"));
    let devserve = Process::adopt(command.spawn().expect("spawn devserve"));
    let mut events = GrowingFile::open(&stderr);
    let mut finished = None;
    let done = wait_until(Duration::from_secs(120), || {
        finished = events.next_event("build_finished", |e| e["ok"] == false);
        finished.is_some() || status_kib(devserve.pid(), "VmHWM").is_none()
    });
    let hwm = status_kib(devserve.pid(), "VmHWM");
    let size = std::fs::metadata(&stderr).map_or(0, |m| m.len());
    let Some(hwm) = hwm.filter(|_| done && finished.is_some()) else {
        panic!(
            "no failed build reported (devserve alive: {}, {size} bytes on its stderr); its stderr ends with:\n{}",
            hwm.is_some(),
            file_tail(&stderr, 2000)
        );
    };
    assert!(
        hwm < LINE_HWM,
        "devserve's peak RSS (VmHWM) is {} after a build printed {} MB without a newline \
         ({size} bytes reached its stderr): the bound is {}",
        mib(hwm),
        LINE_BYTES / 1_000_000,
        mib(LINE_HWM)
    );
    eprintln!("long line: devserve's VmHWM {} ({size} bytes on its stderr)", mib(hwm));
}

/// Idle keep-alive client connections opened (and closed) at once.
const IDLE_CLIENTS: usize = 5_000;

/// How long devserve may take to give their memory back.
const GIVE_BACK: Duration = Duration::from_secs(60);

#[test]
fn memory_comes_back_after_5000_idle_keep_alive_connections_close() {
    let _one = one_at_a_time();
    raise_own_fd_limit(IDLE_CLIENTS as u64 + 200);
    let dir = temp_dir("limits-idle");
    let fixture = Fixture::python();
    let (devserve, addr) =
        serve_ready(dir.path(), &proxy_args(&["-w", "."], &fixture.argv()), &fixture_env(&fixture));
    for _ in 0..20 {
        let mut stream = connect(&addr);
        stream.write_all(head("GET /", &addr, "Connection: close\r\n").as_bytes()).expect("request");
        read_response(&mut stream).expect("a warm-up request is answered");
    }
    let idle = rss(&devserve);
    let idle_fds = fd_count(devserve.pid()).unwrap_or_default();

    // Real clients: each connection sends one GET, gets its answer and stays open (HTTP/1.1
    // keep-alive), opened from a few threads.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                (0..IDLE_CLIENTS / 4)
                    .map(|n| {
                        let mut stream = connect(&addr);
                        stream.write_all(head("GET /", &addr, "").as_bytes()).expect("request");
                        let (head, body) =
                            read_response(&mut stream).unwrap_or_else(|e| panic!("connection {n}: {e}"));
                        assert!(head.starts_with("HTTP/1.1 200"), "connection {n}: {head}{body}");
                        stream
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let clients: Vec<TcpStream> =
        threads.into_iter().flat_map(|t| t.join().expect("client thread")).collect();
    let open = rss(&devserve);
    drop(clients);

    let mut now = open;
    let back = wait_until(GIVE_BACK, || {
        now = rss(&devserve);
        now <= 2 * idle
    });
    assert!(
        back,
        "devserve's RSS is still {} {GIVE_BACK:?} after {IDLE_CLIENTS} idle keep-alive connections closed: \
         {} idle before them, {} with them open; the bound is twice the idle figure (devserve's open \
         fds: {idle_fds} idle, {} now)",
        mib(now),
        mib(idle),
        mib(open),
        fd_count(devserve.pid()).unwrap_or_default()
    );
    eprintln!(
        "idle connections: devserve's RSS {} idle, {} with them open, {} after",
        mib(idle),
        mib(open),
        mib(now)
    );
}
