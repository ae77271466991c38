//! Drain and close: `Drain` stops routing to a generation, closes its idle connections and reports
//! `Drained` once only long-lived exchanges (upgraded connections, event streams) are left; `Close`
//! ends those.

use super::*;

#[test]
fn drain_waits_for_the_request_in_flight_and_closes_idle_connections() {
    let h = Harness::http();
    let old = Upstream::start(&h, "old");
    let new = Upstream::start(&h, "new");
    h.serve(1, &[old.addr]);
    let addr = h.addr;
    let slow = h.spawn(send(addr, get("/slow")));
    wait_until("the slow request reached the app", || old.seen.waiting.load(Ordering::SeqCst) == 1);
    // A second connection, left idle in the pool.
    assert_eq!(h.block_on(send(addr, get("/"))).body, "old GET / 0");
    assert_eq!(old.open(), 2);
    assert_eq!(h.proxy().shared.pooled(1, old.addr), 1);

    // Drain alone (before any other generation serves) stops routing and closes the idle one.
    h.send(ProxyCommand::Drain { generation: 1 });
    let draining = [GenerationStats { generation: 1, in_flight: 1, draining: true }];
    wait_until("draining", || h.stats().generations == draining);
    wait_until("the idle connection closed", || old.open() == 1);
    assert_eq!(h.proxy().shared.pooled(1, old.addr), 0);
    assert_eq!(h.stats().serving, None);
    h.no_event(|event| matches!(event, ProxyEvent::Drained { .. }));
    h.serve(2, &[new.addr]);
    assert_eq!(h.block_on(send(addr, get("/"))).body, "new GET / 0");

    old.release();
    assert_eq!(h.join(slow).body, "old GET /slow 0");
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
    wait_until("the used connection closed", || old.open() == 0);
}

#[test]
fn a_drain_waits_for_requests_but_not_for_long_lived_connections() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let addr = h.addr;
    let mut socket = h.block_on(async {
        let response =
            connect(addr).await.send_request(upgrade_from("http://localhost:3000")).await.expect("101");
        TokioIo::new(hyper::upgrade::on(response).await.expect("upgraded"))
    });
    let slow = h.spawn(send(addr, get("/slow")));
    wait_until("the slow request reached the app", || up.seen.waiting.load(Ordering::SeqCst) == 1);
    h.send(ProxyCommand::Drain { generation: 1 });
    wait_until("draining", || h.stats().generations.first().is_some_and(|g| g.draining && g.in_flight == 2));
    h.no_event(|event| matches!(event, ProxyEvent::Drained { .. }));
    up.release();
    assert_eq!(h.join(slow).status, StatusCode::OK);
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
    // The tunnel is still open (the app closes it once signalled).
    h.block_on(async {
        socket.write_all(b"ping").await.expect("write");
        let mut buffer = [0u8; 4];
        socket.read_exact(&mut buffer).await.expect("echo");
        assert_eq!(&buffer, b"ping");
    });
    drop(socket);
    wait_until("forgotten once the tunnel closed", || h.stats().generations.is_empty());
    h.no_event(|event| matches!(event, ProxyEvent::Drained { .. }));
}

#[test]
fn close_ends_upgraded_connections_and_streams() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let (mut socket, mut stream) = h.block_on(async {
        let mut client = connect(h.addr).await;
        let mut upgrade = get("/ws");
        upgrade.headers_mut().insert("connection", "upgrade".parse().expect("value"));
        upgrade.headers_mut().insert("upgrade", "websocket".parse().expect("value"));
        let response = client.send_request(upgrade).await.expect("101");
        let socket = TokioIo::new(hyper::upgrade::on(response).await.expect("upgraded"));
        let mut client = connect(h.addr).await;
        let response = client.send_request(get("/stream")).await.expect("stream");
        let mut stream = response.into_body();
        let first = stream.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data"), "data: first\n\n");
        (socket, stream)
    });
    // Only long-lived exchanges: drained at once, so that the app is signalled and closes them
    // its own way; they stay open (and counted) until then.
    h.send(ProxyCommand::Drain { generation: 1 });
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
    wait_until("draining", || h.stats().generations.first().is_some_and(|g| g.draining && g.in_flight == 2));

    h.send(ProxyCommand::Close { generation: 1 });
    h.event("Closed", |event| *event == ProxyEvent::Closed { generation: 1, connections: 2 });
    h.block_on(async {
        let mut buffer = [0u8; 8];
        let read = socket.read(&mut buffer).await;
        assert!(matches!(read, Ok(0) | Err(_)), "tunnel still open: {read:?}");
        let next = stream.frame().await;
        assert!(!matches!(&next, Some(Ok(frame)) if frame.is_data()), "stream still open");
    });
    wait_until("closed and forgotten", || h.stats().generations.is_empty());
    h.no_event(|event| matches!(event, ProxyEvent::Drained { .. }));
}
