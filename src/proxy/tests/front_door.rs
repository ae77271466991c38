//! The front door's safety and blame rules, on real loopback sockets: allowed hosts, cross-site
//! upgrades and loads, malformed heads and garbage, framing from a broken app, who a failure is
//! blamed on, and the upstream and body timeouts.
//!
//! Raw sockets stand in for clients and apps wherever a test must send what hyper's own client or
//! server would refuse to write.

use super::*;

/// Sends `raw` on a fresh connection to the proxy and reads the answer until the connection is
/// closed or `complete` says the bytes read so far are a whole answer.
async fn raw_exchange(addr: SocketAddr, raw: &[u8], complete: impl Fn(&str) -> bool) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to proxy");
    stream.write_all(raw).await.expect("write request");
    read_until(&mut stream, complete).await
}

async fn read_until(stream: &mut tokio::net::TcpStream, complete: impl Fn(&str) -> bool) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if complete(&String::from_utf8_lossy(&seen)) {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A whole response with a `content-length` body (enough for the proxy's own pages).
fn whole(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse::<usize>().ok());
    length.is_some_and(|length| body.len() >= length)
}

fn status_of(text: &str) -> u16 {
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[test]
fn foreign_hosts_get_403_on_every_path_and_local_ones_pass() {
    let h = Harness::new(ProxyConfig { hold_timeout: Duration::from_millis(300), ..ProxyConfig::default() });
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let port = h.addr.port();
    let evil_port = format!("evil.example:{port}");
    h.block_on(async {
        for path in ["/", "/__devserve/events", "/__devserve/client.js", "/__devserve/stats"] {
            for host in ["evil.example", evil_port.as_str()] {
                let reply = send(h.addr, with_host(get(path), host)).await;
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{host} {path}: {}", reply.body);
                assert!(reply.body.contains("--allowed-host evil.example"), "{}", reply.body);
            }
            let absolute = format!("GET http://evil.example{path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
            let answer = raw_exchange(h.addr, absolute.as_bytes(), whole).await;
            assert_eq!(status_of(&answer), 403, "absolute-form {path}: {answer}");
        }
        let reply = send(h.addr, upgrade_from("http://evil.example")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        let localhost_port = format!("localhost:{port}");
        let v4 = format!("127.0.0.1:{port}");
        let v6 = format!("[::1]:{port}");
        for host in [localhost_port.as_str(), "app.localhost", v4.as_str(), v6.as_str(), "app.test"] {
            let reply = send(h.addr, with_host(get("/"), host)).await;
            assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
            let own = send(h.addr, with_host(get("/__devserve/stats"), host)).await;
            assert_eq!(own.status, StatusCode::OK, "{host}: {}", own.body);
        }
    });
    assert_eq!(up.hits(), 5, "only the allowed requests reached the app");
    // One line per refused host, however many requests.
    let refused: Vec<String> = h
        .events
        .try_iter()
        .filter_map(|event| match event {
            ProxyEvent::Refused { value, .. } => Some(value),
            _ => None,
        })
        .collect();
    // The absolute-form target `http://evil.example/…` names the host already reported.
    assert_eq!(refused, ["evil.example", evil_port.as_str(), "http://evil.example"]);
}

#[test]
fn allowed_host_all_lets_every_host_through() {
    let mut config = ProxyConfig::default();
    config.allowed_hosts.any = true;
    let h = Harness::new(config);
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    h.block_on(async {
        let reply = send(h.addr, with_host(get("/"), "evil.example")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(!reply.headers.contains_key("cross-origin-resource-policy"), "no checks, no policy");
        let reply = send(h.addr, upgrade_from("http://evil.example")).await;
        assert_eq!(reply.status, StatusCode::SWITCHING_PROTOCOLS);
    });
}

#[test]
fn upgrades_are_refused_from_public_ip_pages_and_pass_from_local_ones() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    h.block_on(async {
        let reply = send(h.addr, upgrade_from("http://203.0.113.7")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        let reply = send(h.addr, upgrade_from("http://127.0.0.1:5173")).await;
        assert_eq!(reply.status, StatusCode::SWITCHING_PROTOCOLS, "{}", reply.body);
        let reply = send(h.addr, upgrade_from("http://localhost:5173")).await;
        assert_eq!(reply.status, StatusCode::SWITCHING_PROTOCOLS, "{}", reply.body);
    });
}

#[test]
fn cross_site_script_loads_are_refused_and_answers_carry_a_resource_policy() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    h.block_on(async {
        let mut load = get("/app.js");
        load.headers_mut().insert("sec-fetch-site", "cross-site".parse().expect("value"));
        load.headers_mut().insert("sec-fetch-mode", "no-cors".parse().expect("value"));
        let reply = send(h.addr, load).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        let mut same_site = get("/app.js");
        same_site.headers_mut().insert("sec-fetch-site", "same-site".parse().expect("value"));
        same_site.headers_mut().insert("sec-fetch-mode", "no-cors".parse().expect("value"));
        let reply = send(h.addr, same_site).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["cross-origin-resource-policy"], "same-site");
        let own = send(h.addr, get("/__devserve/client.js")).await;
        assert_eq!(own.headers["cross-origin-resource-policy"], "same-site");
    });
}

#[test]
fn malformed_hosts_and_origins_get_400_and_the_next_request_is_served() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let heads: [&[u8]; 7] = [
        b"GET / HTTP/1.1\r\nhost: \r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: caf\xc3\xa9.localhost\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: [::1\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: localhost:99999\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: localhost\r\norigin: http://[::1\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: localhost\r\norigin: http://\xff\xfe\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: localhost\r\norigin: http://a:99999\r\n\r\n",
    ];
    h.block_on(async {
        for head in heads {
            let mut stream = tokio::net::TcpStream::connect(h.addr).await.expect("connect");
            stream.write_all(head).await.expect("write");
            let answer = read_until(&mut stream, whole).await;
            assert_eq!(status_of(&answer), 400, "{}: {answer}", String::from_utf8_lossy(head));
            // The same connection serves the next request.
            stream.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").await.expect("write");
            let next = read_until(&mut stream, whole).await;
            assert_eq!(status_of(&next), 200, "after {}: {next}", String::from_utf8_lossy(head));
        }
    });
}

#[test]
fn missing_or_doubled_host_is_400_but_http_1_0_without_host_is_the_proxy_itself() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    h.block_on(async {
        let none = raw_exchange(h.addr, b"GET / HTTP/1.1\r\n\r\n", whole).await;
        assert_eq!(status_of(&none), 400, "{none}");
        let two =
            raw_exchange(h.addr, b"GET / HTTP/1.1\r\nhost: localhost\r\nhost: localhost\r\n\r\n", whole)
                .await;
        assert_eq!(status_of(&two), 400, "{two}");
        let old = raw_exchange(h.addr, b"GET / HTTP/1.0\r\n\r\n", whole).await;
        assert_eq!(status_of(&old), 200, "{old}");
    });
}

#[test]
fn garbage_from_one_client_changes_nothing_else() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let addr = h.addr;
    let answer = h.block_on(async move {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.write_all(b"NOT HTTP AT ALL\x00\x01\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        answer
    });
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(h.block_on(send(addr, get("/"))).body, "a GET / 0");
    assert_eq!(h.stats().serving, Some(1));
    assert_eq!(up.hits(), 1);
}

#[test]
fn a_clients_malformed_chunked_body_is_its_own_400_not_the_apps_502() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let answer = h.block_on(raw_exchange(
        h.addr,
        b"POST /upload HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        whole,
    ));
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert_eq!(h.stats().total.failed, 0, "not counted as the app's failure");
}

#[test]
fn a_body_that_stops_arriving_gets_408_after_the_body_timeout() {
    let h = Harness::new(ProxyConfig { body_timeout: Duration::from_millis(300), ..ProxyConfig::default() });
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let started = Instant::now();
    let answer = h.block_on(raw_exchange(
        h.addr,
        b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\nonly this",
        whole,
    ));
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(up.hits(), 0, "nothing reached the app");
}

/// A raw upstream that answers every request with `answer` and then closes.
fn fixed(h: &Harness, answer: &'static [u8]) -> SocketAddr {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    h.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[test]
fn a_chunked_answer_with_a_content_length_is_forwarded_whole() {
    let h = Harness::http();
    let app = fixed(
        &h,
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
    );
    h.serve(1, &[app]);
    let reply = h.block_on(send(h.addr, get("/")));
    assert_eq!(reply.body, "0123456789");
    assert!(!reply.headers.contains_key("content-length"), "{:?}", reply.headers);
}

#[test]
fn an_unasked_101_is_a_502() {
    let h = Harness::http();
    let app =
        fixed(&h, b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n");
    h.serve(1, &[app]);
    let reply = h.block_on(send(h.addr, get("/")));
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    assert!(reply.body.contains("did not ask"), "{}", reply.body);
}

#[test]
fn an_app_that_never_answers_gets_504_after_the_upstream_timeout_and_shows_in_the_stats() {
    let h = Harness::new(ProxyConfig {
        upstream_timeout: Some(Duration::from_millis(800)),
        ..ProxyConfig::default()
    });
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let addr = h.addr;
    let slow = h.spawn(send(addr, get("/slow")));
    wait_until("the slow request in the stats", || {
        h.stats().oldest.first().is_some_and(|f| f.generation == 1 && f.what == "GET /slow")
    });
    let reply = h.join(slow);
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.body);
    assert!(reply.body.contains("--upstream-timeout"), "{}", reply.body);
    wait_until("no longer in flight", || h.stats().oldest.is_empty());
    // Without the timeout (the default), the proxy waits as long as the app takes.
    let patient = Harness::http();
    let up = Upstream::start(&patient, "b");
    patient.serve(1, &[up.addr]);
    let addr = patient.addr;
    let slow = patient.spawn(send(addr, get("/slow")));
    wait_until("waiting", || up.seen.waiting.load(Ordering::SeqCst) == 1);
    let since = Instant::now();
    wait_until("a second in flight", || {
        patient.stats().oldest.first().is_some_and(|f| f.age >= Duration::from_secs(1))
    });
    assert!(since.elapsed() < WAIT);
    up.release();
    assert_eq!(patient.join(slow).status, StatusCode::OK);
}
