//! The proxy's own pages and the headers it rewrites: the hold timeout's `503` and the failed
//! build's `502`, as HTML or plain text, outside text escaped; forwarding headers set and
//! hop-by-hop ones removed, both ways.

use super::*;

#[test]
fn hold_timeout_answers_503_with_the_reason() {
    let h = Harness::new(ProxyConfig { hold_timeout: Duration::from_millis(200), ..ProxyConfig::default() });
    h.send(ProxyCommand::Hold { site: 0, reason: "building <app> & co".into() });
    let addr = h.addr;
    let (html, plain) = h.block_on(async move {
        tokio::join!(send(addr, with_accept(get("/"), "text/html,*/*")), send(addr, get("/")))
    });
    assert_eq!(html.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(html.headers["content-type"].to_str().expect("type").starts_with("text/html"));
    assert!(html.body.contains("building &lt;app&gt; &amp; co"), "{}", html.body);
    assert_eq!(plain.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(plain.headers["content-type"].to_str().expect("type").starts_with("text/plain"));
    assert!(plain.body.contains("building <app> & co"), "{}", plain.body);
    assert_eq!(h.stats().total, Counters { held: 2, retried: 0, failed: 2 });
}

#[test]
fn build_failure_page_then_hold_then_serve() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.send(ProxyCommand::BuildFailed {
        site: 0,
        command: "cargo build".into(),
        status: "exit status: 101".into(),
        output: "\x1b[1m\x1b[31merror\x1b[0m: expected `<oops>` & more\n".into(),
    });
    let addr = h.addr;
    // Not held: the failure is answered at once (the hold timeout is 30 s).
    let (html, plain) = h.block_on(async move {
        tokio::join!(send(addr, with_accept(get("/"), "text/html")), send(addr, get("/")))
    });
    assert_eq!(html.status, StatusCode::BAD_GATEWAY);
    assert!(html.body.contains("<code>cargo build</code> failed: exit status: 101"), "{}", html.body);
    assert!(
        html.body.contains(
            "<span style=\"font-weight:bold;color:#cd3131\">error</span>: expected `&lt;oops&gt;` &amp; more"
        ),
        "{}",
        html.body
    );
    assert_eq!(plain.status, StatusCode::BAD_GATEWAY);
    assert!(plain.body.contains("error: expected `<oops>` & more"), "{}", plain.body);
    assert!(!plain.body.contains('\x1b'));

    // A rebuild started: requests wait for it again.
    h.send(ProxyCommand::Hold { site: 0, reason: "building".into() });
    let pending = h.spawn(send(addr, get("/")));
    wait_until("held", || h.stats().held_now == 1);
    h.serve(2, &[up.addr]);
    assert_eq!(h.join(pending).status, StatusCode::OK);
}

#[test]
fn forwarding_headers_are_set_and_hop_by_hop_ones_removed() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let mut asking = get("/headers");
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("upgrade", "h2c"),
        ("x-app", "kept"),
    ] {
        asking.headers_mut().append(name, value.parse().expect("value"));
    }
    let reply = h.block_on(send(h.addr, asking));
    let lines: Vec<&str> = reply.body.lines().collect();
    for expected in [
        "host: app.test",
        "x-app: kept",
        "x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: app.test",
        "forwarded: for=127.0.0.1;host=\"app.test\";proto=http",
    ] {
        assert!(lines.contains(&expected), "{expected:?} missing from {lines:?}");
    }
    for gone in ["x-secret", "keep-alive", "proxy-connection", "te", "upgrade", "connection"] {
        assert!(
            !lines.iter().any(|line| line.starts_with(&format!("{gone}:"))),
            "{gone} forwarded: {lines:?}"
        );
    }
    assert_eq!(reply.headers["x-kept"], "yes");
    assert!(!reply.headers.contains_key("x-up") && !reply.headers.contains_key("keep-alive"));
}
