//! Routing and holding: requests go to the serving generation's upstreams (the least busy first,
//! ties round robin) on pooled connections, one opened ahead for an app that closes after each
//! answer; they wait while nothing serves, until a `Serve`, and are answered at once after `Down`;
//! an app that serves one connection at a time is not left stuck on an idle pooled one.

use super::*;

#[test]
fn routes_to_the_upstream_and_reuses_its_connection() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let replies = h.block_on(async {
        let mut client = connect(h.addr).await;
        let mut replies = Vec::new();
        for _ in 0..3 {
            replies.push(exchange(&mut client, get("/hello?x=1")).await);
        }
        replies
    });
    for reply in replies {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "a GET /hello?x=1 0");
        assert_eq!(reply.headers["x-upstream"], "a");
    }
    assert_eq!(up.seen.accepted.load(Ordering::SeqCst), 1, "one pooled upstream connection");
    assert_eq!(h.stats().serving, Some(1));
}

#[test]
fn an_upstream_that_closes_after_each_answer_gets_its_next_connection_ahead() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let reply = h.block_on(send(h.addr, get("/close")));
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "a closes");
    // The proxy opens the next connection without a request waiting for it...
    wait_until("an upstream connection opened ahead and pooled", || h.proxy().shared.pooled(1, up.addr) == 1);
    // The kernel completes the connection before the upstream's accept loop counts it.
    wait_until("the upstream accepted one connection per answer so far, plus the one ahead", || {
        up.seen.accepted.load(Ordering::SeqCst) == 2
    });
    assert_eq!(up.hits(), 1, "no request was sent on it");
    // ...and the next request uses it instead of connecting again.
    let reply = h.block_on(send(h.addr, get("/hello")));
    assert_eq!(reply.body, "a GET /hello 0");
    assert_eq!(up.seen.accepted.load(Ordering::SeqCst), 2, "the connection opened ahead was used");
}

#[test]
fn two_upstreams_share_the_load() {
    let h = Harness::http();
    let a = Upstream::start(&h, "a");
    let b = Upstream::start(&h, "b");
    h.serve(1, &[a.addr, b.addr]);
    h.block_on(async {
        let mut client = connect(h.addr).await;
        for _ in 0..10 {
            assert_eq!(exchange(&mut client, get("/")).await.status, StatusCode::OK);
        }
    });
    assert_eq!((a.hits(), b.hits()), (5, 5));

    // With a request outstanding on `a`, new ones go to `b`.
    let addr = h.addr;
    let slow = h.spawn(send(addr, get("/slow")));
    wait_until("the slow request reached a", || a.seen.waiting.load(Ordering::SeqCst) == 1);
    for _ in 0..4 {
        assert_eq!(h.block_on(send(addr, get("/"))).body, "b GET / 0");
    }
    a.release();
    assert_eq!(h.join(slow).body, "a GET /slow 0");
}

#[test]
fn holds_until_serve_then_answers() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    let addr = h.addr;
    let pending = h.spawn(send(addr, get("/")));
    wait_until("held", || h.stats().held_now == 1);
    let counters = h.serve(1, &[up.addr]);
    assert_eq!(counters, Counters { held: 1, retried: 0, failed: 0 });
    let reply = h.join(pending);
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "a GET / 0"));
    assert_eq!(h.stats().held_now, 0);
}

#[test]
fn down_answers_503_with_the_reason_at_once_until_the_next_hold() {
    let h = Harness::new(ProxyConfig { hold_timeout: Duration::from_secs(30), ..ProxyConfig::default() });
    h.send(ProxyCommand::Down { site: 0, reason: "gen 1 failed: exited with status 1".into() });
    let started = Instant::now();
    let reply = h.block_on(send(h.addr, get("/")));
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("gen 1 failed"), "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    // A new start: requests wait again, and are served once a generation is.
    h.send(ProxyCommand::Hold { site: 0, reason: "gen 2 starting".into() });
    let up = Upstream::start(&h, "a");
    let addr = h.addr;
    let held = h.spawn(send(addr, get("/")));
    wait_until("held", || h.stats().held_now == 1);
    h.serve(2, &[up.addr]);
    assert_eq!(h.join(held).status, StatusCode::OK);
}

/// A raw upstream that serves one connection at a time, as a plain accept loop does: it answers
/// each request on a connection (keep-alive; `/slow` after 300 ms) until the client closes it,
/// and only then accepts the next connection. Returns its address and how many requests it read.
fn one_at_a_time(h: &Harness) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&requests);
    h.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { break };
                let slow = head.starts_with(b"GET /slow");
                head.drain(..end + 4);
                seen.fetch_add(1, Ordering::SeqCst);
                if slow {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                    break;
                }
            }
        }
    });
    (addr, requests)
}

#[test]
fn an_app_that_serves_one_connection_at_a_time_is_not_blocked_by_an_idle_pooled_one() {
    let h = Harness::http();
    let (app, requests) = one_at_a_time(&h);
    h.serve(1, &[app]);
    let addr = h.addr;
    // A slow request holds the app's one connection; a second one meanwhile goes on a new
    // connection, which the app accepts only once the first is closed. When the slow answer ends,
    // the first connection is idle in the pool, and the app sits reading it.
    let slow = h.spawn(send(addr, get("/slow")));
    wait_until("the slow request reached the app", || requests.load(Ordering::SeqCst) == 1);
    let second =
        h.spawn(async move { tokio::time::timeout(Duration::from_secs(5), send(addr, get("/"))).await });
    assert_eq!(h.join(slow).status, StatusCode::OK);
    let second = h.join(second).expect("the second request was answered: the idle connection was closed");
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
}

#[test]
fn max_requests_is_told_once_per_upstream_when_reached() {
    let h = Harness::new(ProxyConfig { max_requests: Some((3, 0)), ..ProxyConfig::default() });
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    h.block_on(async {
        for _ in 0..2 {
            assert_eq!(send(h.addr, get("/")).await.status, StatusCode::OK);
        }
    });
    h.no_event(|event| matches!(event, ProxyEvent::Recycle { .. }));
    h.block_on(async {
        for _ in 0..3 {
            assert_eq!(send(h.addr, get("/")).await.status, StatusCode::OK, "it keeps serving until removed");
        }
    });
    h.event("Recycle", |event| {
        *event == ProxyEvent::Recycle { generation: 1, upstream: up.addr, requests: 3 }
    });
    h.no_event(|event| matches!(event, ProxyEvent::Recycle { .. }));
}
