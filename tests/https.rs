//! HTTPS: devserve's local CA (`devserve ca …`) against a temporary `HOME`, and the front door
//! over TLS.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// devserve with `HOME` (and no `XDG_DATA_HOME`) in `home`.
fn devserve_in(home: &Path, args: &[&str]) -> Finished {
    let mut command = Command::new(devserve_bin());
    command.args(args).current_dir(home).env("HOME", home).env_remove("XDG_DATA_HOME");
    run_to_completion(&mut command)
}

/// `certutil -L` of the NSS database in `home`: the nicknames listed.
fn nss_list(home: &Path) -> String {
    let db = format!("sql:{}", home.join(".pki/nssdb").display());
    let listed = try_run(Command::new("certutil").args(["-L", "-d", &db]))
        .expect("certutil (Debian: libnss3-tools, which .ci/run installs) must be installed");
    listed.stdout
}

#[test]
fn ca_path_makes_a_private_ca_on_first_use_and_prints_its_path() {
    use std::os::unix::fs::PermissionsExt;
    let home = temp_dir("ca-path");
    let done = devserve_in(home.path(), &["ca", "path"]);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let path = done.stdout.trim();
    assert_eq!(Path::new(path), home.path().join(".local/share/devserve/ca.pem"));
    assert!(std::fs::read_to_string(path).expect("ca.pem").starts_with("-----BEGIN CERTIFICATE-----"));
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&home.path().join(".local/share/devserve")), 0o700);
    assert_eq!(mode(&home.path().join(".local/share/devserve/ca-key.pem")), 0o600);
    // The same CA the next time.
    let again = devserve_in(home.path(), &["ca", "path"]);
    assert_eq!(again.stdout, done.stdout);
    let created = devserve_in(home.path(), &["ca", "create"]);
    assert_eq!(created.code(), 2, "an existing CA is kept: {}", created.stderr);
    assert!(created.stderr.contains("--force"), "{}", created.stderr);
}

#[test]
fn ca_install_trusts_it_in_the_users_nss_database_and_uninstall_removes_it() {
    let home = temp_dir("ca-install");
    let created = devserve_in(home.path(), &["ca", "create", "--name", "dev.test"]);
    assert_eq!(created.code(), 0, "{}", created.stderr);
    assert!(created.stderr.contains("dev.test"), "{}", created.stderr);
    let installed = devserve_in(home.path(), &["ca", "install"]);
    assert_eq!(installed.code(), 0, "{}", installed.stderr);
    assert!(
        installed.stderr.contains("update-ca-certificates"),
        "prints the system commands: {}",
        installed.stderr
    );
    assert!(nss_list(home.path()).contains("devserve local CA"), "{}", nss_list(home.path()));
    let removed = devserve_in(home.path(), &["ca", "uninstall"]);
    assert_eq!(removed.code(), 0, "{}", removed.stderr);
    assert!(!nss_list(home.path()).contains("devserve local CA"));
    let again = devserve_in(home.path(), &["ca", "uninstall"]);
    assert!(again.stderr.contains("nothing to remove"), "{}", again.stderr);
}

#[test]
fn ca_bad_input_is_one_line_and_exit_2() {
    let home = temp_dir("ca-bad");
    for args in [&["ca"][..], &["ca", "frobnicate"], &["ca", "create", "--name", "bad name"]] {
        let done = devserve_in(home.path(), args);
        assert_ne!(done.code(), 0, "{args:?}");
        assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
        assert_eq!(
            done.stderr.lines().filter(|l| l.contains("error")).count(),
            1,
            "{args:?}: {}",
            done.stderr
        );
    }
}

/// devserve behind `--proxy proxy` with HOME in `home` and the Rust fixture on its own port;
/// returns it and the front door's port once gen 1 is ready.
fn serve(home: &Path, dir: &Path, proxy: &str, more: &[&str]) -> (Devserve, String) {
    let fixture = rust_fixture();
    let mut args = vec!["--proxy", proxy, "--log-format", "json", "-w", "src"];
    args.extend(more);
    args.push("--");
    args.push(fixture.to_str().expect("utf-8"));
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    let mut command = devserve_command(dir, &args, &[("FIXTURE_BIND_PORT_ENV", "1")]);
    // NODE_EXTRA_CA_CERTS of the machine's own would be kept (the user's wins): none here.
    command.env("HOME", home).env_remove("XDG_DATA_HOME").env_remove("NODE_EXTRA_CA_CERTS");
    let devserve = Devserve::spawn(command);
    let address = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    (devserve, address.rsplit(':').next().expect("port").to_owned())
}

/// `curl ARGS URL`: the body and the HTTP version it spoke (`2`, `1.1`), or curl's failure.
fn curl(args: &[&str], url: &str) -> Result<(String, String), String> {
    let done = try_run(
        Command::new("curl").args(["-sS", "--max-time", "20", "-w", "\n%{http_version}"]).args(args).arg(url),
    )
    .map_err(|e| format!("cannot run curl: {e}"))?;
    if done.status.success() {
        let (body, version) = done.stdout.rsplit_once('\n').unwrap_or(("", ""));
        Ok((body.to_owned(), version.to_owned()))
    } else {
        Err(format!("curl {args:?} {url}: {} {}", done.status, done.stderr.trim()))
    }
}

#[test]
fn the_https_front_door_speaks_http2_and_http11_with_a_certificate_from_the_local_ca() {
    let home = temp_dir("https-front");
    let dir = temp_dir("https-front-app");
    let (devserve, port) = serve(
        home.path(),
        dir.path(),
        "https://127.0.0.1:0",
        &["--allowed-host", "app.localhost", "--allowed-host", "example.com"],
    );
    let ca = home.path().join(".local/share/devserve/ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let certificate = devserve.wait_event("proxy_certificate", |_| true);
    assert_eq!(certificate["trusted"], false, "{certificate}");
    let names: Vec<&str> =
        certificate["names"].as_array().expect("names").iter().filter_map(|n| n.as_str()).collect();
    assert!(names.contains(&"app.localhost"), "an allowed host the CA may vouch for: {names:?}");
    assert!(
        !names.contains(&"example.com"),
        "one it may not is left out, not the whole certificate: {names:?}"
    );
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{port}/");
        let (body, version) = curl(&["--cacert", ca], &url).expect("h2");
        assert_eq!(version, "2", "{url}: {body}");
        assert_eq!(field(&body, "gen"), "1");
        let (_, version) = curl(&["--cacert", ca, "--http1.1"], &url).expect("http/1.1");
        assert_eq!(version, "1.1");
    }
    // An allowed host under `localhost` is in the certificate by name (OpenSSL and Chromium do not
    // take a wildcard over a single label, `*.localhost`).
    let (_, version) = curl(
        &["--cacert", ca, "--resolve", &format!("app.localhost:{port}:127.0.0.1")],
        &format!("https://app.localhost:{port}/"),
    )
    .expect("app.localhost");
    assert_eq!(version, "2");
    // A name the certificate does not have: the client refuses it; devserve serves on.
    let resolve = format!("example.com:{port}:127.0.0.1");
    assert!(curl(&["--cacert", ca, "--resolve", &resolve], &format!("https://example.com:{port}/")).is_err());
    // Without the CA, curl refuses the certificate; devserve serves on.
    assert!(curl(&[], &format!("https://localhost:{port}/")).is_err());
    // Plain HTTP on the TLS port: closed, one line however often.
    for _ in 0..3 {
        assert!(curl(&[], &format!("http://127.0.0.1:{port}/")).is_err());
    }
    assert!(wait_until(WAIT, || devserve
        .count_events("proxy_problem", |e| e["text"].as_str().is_some_and(|t| t.contains("plain HTTP")))
        == 1));
    // Garbage after a good handshake: that connection ends, the front door serves on.
    let garbage = format!(
        "import socket, ssl\nctx = ssl.create_default_context(cafile='{ca}')\n\
         s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port})), server_hostname='localhost')\n\
         s.sendall(b'\\x00\\x01\\x02 not http at all\\r\\n\\r\\n')\nprint(s.recv(64))\n"
    );
    let sent = run_to_completion(Command::new("python3").args(["-c", &garbage]));
    assert_eq!(sent.code(), 0, "{}", sent.stderr);
    assert!(sent.stdout.contains("400") || sent.stdout.trim() == "b''", "{}", sent.stdout);
    assert!(curl(&["--cacert", ca], &format!("https://localhost:{port}/")).is_ok(), "{}", devserve.output());
}

#[test]
fn the_plain_front_door_accepts_http2_with_prior_knowledge() {
    let home = temp_dir("h2c-front");
    let dir = temp_dir("h2c-front-app");
    let (_devserve, port) = serve(home.path(), dir.path(), "127.0.0.1:0", &[]);
    let (body, version) =
        curl(&["--http2-prior-knowledge"], &format!("http://127.0.0.1:{port}/")).expect("h2c");
    assert_eq!(version, "2", "{body}");
    let (_, version) = curl(&[], &format!("http://127.0.0.1:{port}/")).expect("http/1.1");
    assert_eq!(version, "1.1");
    // A client speaking TLS to the plain port fails alone; the next plain request is answered.
    assert!(curl(&["-k"], &format!("https://127.0.0.1:{port}/")).is_err());
    assert!(curl(&[], &format!("http://127.0.0.1:{port}/")).is_ok());
}

#[test]
fn saves_swap_over_https_without_a_failed_request() {
    let home = temp_dir("https-swaps");
    let dir = temp_dir("https-swaps-app");
    let (devserve, port) = serve(home.path(), dir.path(), "https://127.0.0.1:0", &[]);
    let ca = home.path().join(".local/share/devserve/ca.pem").to_str().expect("utf-8").to_owned();
    let url = format!("https://localhost:{port}/");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, answered, ca, url) = (stop.clone(), answered.clone(), ca.clone(), url.clone());
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match curl(&["--cacert", &ca], &url) {
                        Ok(_) => {
                            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => failed.push(e),
                    }
                }
                failed
            })
        })
        .collect();
    // The load runs across each swap: a few answers after each, however slow the machine.
    let more = |n: usize| {
        let target = answered.load(std::sync::atomic::Ordering::Relaxed) + n;
        assert!(
            wait_until(WAIT, || answered.load(std::sync::atomic::Ordering::Relaxed) >= target),
            "the load stalled"
        );
    };
    more(3);
    for generation in 2..=4u64 {
        write(&dir.path().join("src/code.rs"), &format!("// {generation}"));
        devserve.wait_event("generation_ready", |e| e["generation"] == generation);
        assert!(wait_until(WAIT, || curl(&["--cacert", &ca], &url)
            .is_ok_and(|(b, _)| field(&b, "gen") == generation.to_string())));
        more(3);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failed = Vec::new();
    for client in clients {
        failed.extend(client.join().expect("client"));
    }
    assert!(failed.is_empty(), "{} failed: {failed:?}\n{}", failed.len(), devserve.output());
}

#[test]
fn workers_behind_https_are_told_where_the_ca_is() {
    let home = temp_dir("https-env");
    let dir = temp_dir("https-env-app");
    let (_devserve, port) = serve(home.path(), dir.path(), "https://127.0.0.1:0", &[]);
    let ca = home.path().join(".local/share/devserve/ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let (env, _) = curl(&["--cacert", ca], &format!("https://localhost:{port}/env")).expect("GET /env");
    assert!(env.contains(&format!("DEVSERVE_CA={ca}\n")), "{env}");
    assert!(env.contains(&format!("NODE_EXTRA_CA_CERTS={ca}\n")), "{env}");
    // One the user set is theirs.
    let dir = temp_dir("https-env-own");
    let (_devserve, port) =
        serve(home.path(), dir.path(), "https://127.0.0.1:0", &["-E", "NODE_EXTRA_CA_CERTS=/own.pem"]);
    let (env, _) = curl(&["--cacert", ca], &format!("https://localhost:{port}/env")).expect("GET /env");
    assert!(env.contains("NODE_EXTRA_CA_CERTS=/own.pem\n"), "{env}");
}

/// Opens an HTTP/2 connection with prior knowledge and sends `streams` requests, resetting each
/// at once (the rapid-reset attack, CVE-2023-44487); returns how many it could send.
async fn rapid_reset(port: &str, streams: usize) -> usize {
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let mut sent = 0;
    for _ in 0..streams {
        let Ok(ready) = client.ready().await else { break };
        client = ready;
        let request =
            ::http::Request::get(format!("http://127.0.0.1:{port}/slow?ms=2000")).body(()).expect("request");
        match client.send_request(request, true) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(_) => break,
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), driver).await;
    sent
}

#[test]
fn http2_floods_and_garbage_never_reach_the_app_and_the_front_door_serves_on() {
    let home = temp_dir("h2-flood");
    let dir = temp_dir("h2-flood-app");
    let (devserve, port) = serve(home.path(), dir.path(), "127.0.0.1:0", &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut sent = 0;
    for _ in 0..3 {
        sent += runtime.block_on(rapid_reset(&port, 5_000));
    }
    // Each reset stream's exchange is dropped with it: few ever reach the app.
    let started = devserve.count("slow request started");
    eprintln!("{sent} streams opened and reset; {started} reached the app");
    assert!(started * 10 < sent, "{started} of {sent} reset streams reached the app");
    // Garbage after the HTTP/2 preface (a SETTINGS frame of a wrong size): devserve sends the
    // client away, and says so once per kind however often it happens.
    for _ in 0..3 {
        let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
        std::io::Write::write_all(
            &mut stream,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x05\x04\x00\x00\x00\x00\x00garbage",
        )
        .expect("send");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    }
    // A CONTINUATION flood (CVE-2024-27316's kind): one header block that never ends.
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        bytes.extend([kind, flags]);
        bytes.extend(stream.to_be_bytes());
        bytes.extend(payload);
        bytes
    };
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend(frame(4, 0, 0, b""));
    // HEADERS with END_STREAM and without END_HEADERS: `:method GET`, `:scheme http`, `:path /`.
    opening.extend(frame(1, 0x1, 1, &[0x82, 0x86, 0x84]));
    std::io::Write::write_all(&mut stream, &opening).expect("send");
    let continuation = frame(9, 0, 1, b"");
    let mut sent = 0;
    while sent < 100_000 && std::io::Write::write_all(&mut stream, &continuation).is_ok() {
        sent += 1;
    }
    assert!(sent < 100_000, "the endless header block was cut off ({sent} CONTINUATION frames sent)");
    // One line per kind, however often: the floods were cut off with ENHANCE_YOUR_CALM (h2's
    // bound on resets), the garbage with PROTOCOL_ERROR.
    for kind in ["ENHANCE_YOUR_CALM", "PROTOCOL_ERROR"] {
        let said = |e: &serde_json::Value| e["text"].as_str().is_some_and(|t| t.contains(kind));
        assert!(
            wait_until(WAIT, || devserve.count_events("proxy_problem", said) == 1),
            "{kind}:\n{}",
            devserve.output()
        );
    }
    let (body, version) =
        curl(&["--http2-prior-knowledge"], &format!("http://127.0.0.1:{port}/")).expect("served on");
    assert_eq!((version.as_str(), field(&body, "gen").as_str()), ("2", "1"));
}

#[test]
fn grpc_through_upstream_h2c_is_routed_per_call_across_ten_swaps_without_a_failed_call() {
    let dir = temp_dir("grpc");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    let server = app("grpc_app.py");
    let args = [
        "--proxy",
        "127.0.0.1:0",
        "--upstream",
        "h2c",
        "--log-format",
        "json",
        "-w",
        "src",
        "--",
        "python3",
        server.to_str().expect("utf-8"),
    ];
    let devserve = Devserve::start(dir.path(), &args, &[]);
    let address = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    let stop = dir.path().join("stop");
    let mut client = Command::new("python3");
    client.arg(app("grpc_client.py")).arg(&address).arg(&stop);
    let client = Process::spawn(client);
    client.wait_for("seen gen=1");
    for generation in 2..=11u64 {
        write(&dir.path().join("src/code.py"), &format!("# {generation}"));
        devserve.wait_event("generation_ready", |e| e["generation"] == generation);
        // New calls reach the new generation (the channel stays open across the swap).
        client.wait_for(&format!("seen gen={generation}"));
    }
    write(&stop, "");
    let summary = wait_result(&client);
    assert_eq!(summary["failures"], 0, "{summary}\n{}", devserve.output());
    assert!(summary["calls"].as_u64().is_some_and(|n| n > 20), "{summary}");
}

/// The JSON line the gRPC client prints last.
fn wait_result(client: &Process) -> serde_json::Value {
    assert!(
        wait_until(WAIT, || client.capture().lines().iter().any(|l| l.text.starts_with('{'))),
        "{}",
        client.output()
    );
    let line = client.capture().lines().into_iter().find(|l| l.text.starts_with('{')).expect("summary");
    serde_json::from_str(&line.text).expect("JSON")
}

/// Services behind `https://`: each routed service's `NAME.localhost` is in the certificate, so
/// `https://api.localhost:PORT/` verifies against the local CA and reaches api.
#[test]
fn each_routed_service_is_a_name_of_the_certificate() {
    let home = temp_dir("https-services");
    let dir = temp_dir("https-services-app");
    std::fs::create_dir_all(dir.path().join("api")).expect("api");
    let config = format!(
        "proxy = \"https://127.0.0.1:0\"\nlog-format = \"json\"\n\n\
         [services.api]\nwatch = [\"api\"]\ncommand = [\"{}\"]\nroute = \"/api\"\n\
         [services.api.env]\nFIXTURE_BIND_PORT_ENV = \"1\"\nFIXTURE_VERSION = \"api-1\"\n",
        rust_fixture().display()
    );
    write(&dir.path().join("devserve.toml"), &config);
    let mut command = devserve_command(dir.path(), &[], &[]);
    command.env("HOME", home.path()).env_remove("XDG_DATA_HOME").env_remove("NODE_EXTRA_CA_CERTS");
    let mut devserve = Devserve::spawn(command);
    let port = devserve.proxy_addr().rsplit(':').next().expect("port").to_owned();
    let certificate = devserve.wait_event("proxy_certificate", |_| true);
    assert!(
        certificate["names"].as_array().expect("names").iter().any(|n| n == "api.localhost"),
        "{certificate}"
    );
    // One service: its lines carry no name.
    devserve.wait_event("generation_ready", |_| true);
    let ca = home.path().join(".local/share/devserve/ca.pem");
    // curl resolves *.localhost to loopback itself.
    let (body, _) =
        curl(&["--cacert", ca.to_str().expect("utf-8")], &format!("https://api.localhost:{port}/"))
            .expect("api.localhost over TLS");
    assert_eq!(field(&body, "version"), "api-1", "{body}");
    stop_gracefully(&mut devserve);
}
