//! Raw TCP mode: a connection is held while nothing serves, routed once, copied both ways and
//! closed on `Close`, or closed when held too long.

use super::*;

/// A raw TCP echo upstream.
fn tcp_echo(h: &Harness) -> SocketAddr {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    h.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

#[test]
fn tcp_mode_holds_then_copies_and_closes_on_command() {
    let h = Harness::new(ProxyConfig { mode: ProxyMode::Tcp, ..ProxyConfig::default() });
    let echo = tcp_echo(&h);
    let addr = h.addr;
    let mut client = h.block_on(async move {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.write_all(b"hello").await.expect("write");
        client
    });
    wait_until("held", || h.stats().held_now == 1);
    h.serve(1, &[echo]);
    let echoed = h.block_on(async {
        let mut buffer = [0u8; 5];
        client.read_exact(&mut buffer).await.expect("echo");
        buffer
    });
    assert_eq!(&echoed, b"hello");

    // A raw connection is long-lived: the generation is drained at once (the app closes it).
    h.send(ProxyCommand::Drain { generation: 1 });
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
    wait_until("draining", || h.stats().generations.first().is_some_and(|g| g.draining && g.in_flight == 1));
    h.send(ProxyCommand::Close { generation: 1 });
    h.event("Closed", |event| *event == ProxyEvent::Closed { generation: 1, connections: 1 });
    let read = h.block_on(async move { client.read(&mut [0u8; 8]).await });
    assert!(matches!(read, Ok(0) | Err(_)), "still open: {read:?}");
    wait_until("closed and forgotten", || h.stats().generations.is_empty());
}

#[test]
fn tcp_mode_closes_a_connection_held_too_long() {
    let h = Harness::new(ProxyConfig {
        mode: ProxyMode::Tcp,
        hold_timeout: Duration::from_millis(100),
        ..ProxyConfig::default()
    });
    let addr = h.addr;
    let read = h.block_on(async move {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.read(&mut [0u8; 8]).await
    });
    assert!(matches!(read, Ok(0) | Err(_)), "not closed: {read:?}");
    assert_eq!(h.stats().total, Counters { held: 1, retried: 0, failed: 1 });
}
