//! The front door's allowed hosts, end to end: the real binary behind `--proxy` with the Python
//! fixture, `--allowed-host` from the command line and the configuration file, `all` and its
//! warning, one line per refused host, and a proxy on every interface reached through this
//! machine's own non-loopback address. (The rules themselves, cross-site upgrades and loads, and
//! malformed heads are tested on the proxy alone in `src/proxy/tests/front_door.rs`; Chromium's
//! view in `tests/browser.rs`.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::*;

/// devserve `--proxy ADDR` (plus `args`) over the Python fixture; returns it and the proxy's port.
fn serve(dir: &Path, proxy: &str, args: &[&str]) -> (Devserve, u16) {
    let fixture = Fixture::python().version("v1");
    let mut all = vec!["--proxy", proxy, "--log-format", "json", "-w", "."];
    all.extend_from_slice(args);
    all.push("--");
    let argv = fixture.argv();
    all.extend(argv.iter().copied());
    let mut vars = fixture.env_pairs();
    vars.push(("FIXTURE_BIND_PORT_ENV", "1"));
    let devserve = Devserve::start(dir, &all, &vars);
    let listening = devserve.wait_event("proxy_listening", |_| true);
    let address = listening["address"].as_str().expect("address").to_owned();
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
