//! Retries: a refused connection is retried whatever the request; a request the app read and
//! dropped only when it is idempotent and its body was kept (small, with a length); a request
//! dropped on an idle pooled connection (the keep-alive race) goes again on a fresh one; a retry
//! keeps away from the upstream that failed only for `avoid_for`.

use super::*;

/// An address where nothing listens (connections are refused).
fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A raw upstream that reads a request up to the marker `PAYLOAD-END`, then resets the
/// connection without answering. Returns its address and how many connections it accepted.
fn resetter(h: &Harness) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    h.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut chunk).await
                    && n > 0
                {
                    seen.extend_from_slice(&chunk[..n]);
                    if seen.windows(11).any(|w| w == b"PAYLOAD-END") {
                        break;
                    }
                }
                socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).expect("linger");
                drop(stream);
            });
        }
    });
    (addr, accepted)
}

/// What [`dropper`] counted: connections accepted, requests reset unanswered.
#[derive(Default)]
struct Drops {
    accepted: AtomicUsize,
    dropped: AtomicUsize,
}

/// A raw HTTP/1.1 upstream that answers every request `ok` and keeps the connection open, except
/// that it resets the connection after reading request `r` of connection `c` (both from 0) when
/// `drop(c, r)`.
fn dropper(
    h: &Harness,
    drop: impl Fn(usize, usize) -> bool + Send + Sync + 'static,
) -> (SocketAddr, Arc<Drops>) {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    let drops = Arc::new(Drops::default());
    let counts = Arc::clone(&drops);
    let drop = Arc::new(drop);
    h.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let connection = counts.accepted.fetch_add(1, Ordering::SeqCst);
            let (counts, drop) = (Arc::clone(&counts), Arc::clone(&drop));
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                for request in 0.. {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    head.clear();
                    if drop(connection, request) {
                        counts.dropped.fetch_add(1, Ordering::SeqCst);
                        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).expect("linger");
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, drops)
}

#[test]
fn refused_connections_are_retried_for_get_and_post() {
    let h = Harness::http();
    let up = Upstream::start(&h, "good");
    let dead = dead_addr();
    // The cursor starts at the first upstream: the dead one is tried first.
    h.serve(1, &[dead, up.addr]);
    let reply = h.block_on(send(h.addr, get("/")));
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "good GET / 0"));
    h.serve(1, &[dead, up.addr]);
    let reply = h.block_on(send(h.addr, request("POST", "/form", "form=1")));
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "good POST /form 6"));
    assert_eq!(up.last_body(), "form=1");
    assert_eq!(h.stats().total.retried, 2);
}

#[test]
fn a_post_the_upstream_read_and_reset_is_not_retried() {
    let h = Harness::http();
    let up = Upstream::start(&h, "good");
    let (reset, accepted) = resetter(&h);
    h.serve(1, &[reset, up.addr]);
    let reply = h.block_on(send(h.addr, request("POST", "/pay", "amount=1 PAYLOAD-END")));
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("POST is not idempotent"), "{}", reply.body);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(up.hits(), 0);
    assert_eq!(h.stats().total, Counters { held: 0, retried: 0, failed: 1 });
}

#[test]
fn a_request_dropped_on_an_idle_pooled_connection_goes_again_on_a_fresh_one() {
    // The app closing an idle keep-alive connection just as a request goes out: the request is
    // resent at once on a new connection to the same (sole) upstream. Avoiding it would hold
    // the request for `avoid_for`, longer here than the test waits.
    let h = Harness::new(ProxyConfig { avoid_for: Duration::from_secs(3600), ..ProxyConfig::default() });
    let (addr, drops) = dropper(&h, |connection, request| connection == 0 && request == 1);
    h.serve(1, &[addr]);
    let first = h.block_on(send(h.addr, get("/")));
    assert_eq!((first.status, first.body.as_str()), (StatusCode::OK, "ok"));
    let shared = Arc::clone(&h.proxy().shared);
    wait_until("the first connection pooled", || shared.pooled(1, addr) == 1);
    let second = h.block_on(send(h.addr, get("/")));
    assert_eq!((second.status, second.body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(drops.dropped.load(Ordering::SeqCst), 1, "the pooled connection was the one dropped");
    assert_eq!(drops.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(h.stats().total, Counters { held: 0, retried: 1, failed: 0 });
}

#[test]
fn a_sole_upstream_that_dropped_a_request_gets_it_again_once_the_avoidance_lapses() {
    let h = Harness::new(ProxyConfig { avoid_for: Duration::from_millis(200), ..ProxyConfig::default() });
    let (addr, drops) = dropper(&h, |connection, _| connection == 0);
    h.serve(1, &[addr]);
    let started = Instant::now();
    let reply = h.block_on(send(h.addr, get("/")));
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "ok"));
    assert!(started.elapsed() >= Duration::from_millis(200), "the retry kept away for avoid_for");
    assert_eq!(drops.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(drops.accepted.load(Ordering::SeqCst), 2);
    let total = h.stats().total;
    assert_eq!((total.retried, total.failed), (1, 0));
}

#[test]
fn small_bodies_are_kept_and_resent_large_ones_are_not() {
    let h = Harness::new(ProxyConfig { retry_body_limit: 16 * 1024, ..ProxyConfig::default() });
    let up = Upstream::start(&h, "good");
    let (reset, accepted) = resetter(&h);

    let small = format!("{}PAYLOAD-END", "s".repeat(10 * 1024));
    h.serve(1, &[reset, up.addr]);
    let reply = h.block_on(send(h.addr, request("PUT", "/doc", small.clone())));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, format!("good PUT /doc {}", small.len()));
    assert_eq!(up.last_body(), small.as_bytes());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let large = format!("{}PAYLOAD-END", "l".repeat(20 * 1024));
    h.serve(1, &[reset, up.addr]);
    let reply = h.block_on(send(h.addr, request("PUT", "/doc", large)));
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("streamed"), "{}", reply.body);
    assert_eq!(up.hits(), 1);
    assert_eq!(h.stats().total.retried, 1);
}
