//! Upgrades and streamed bodies: a `101` joins both sides' sockets and copies both ways, and a
//! large upload reaches the app as it arrives, not buffered.

use super::*;

#[test]
fn upgrade_echoes_both_ways() {
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let echoed = h.block_on(async {
        let mut client = connect(h.addr).await;
        let mut upgrade = get("/ws");
        upgrade.headers_mut().insert("connection", "Upgrade".parse().expect("value"));
        upgrade.headers_mut().insert("upgrade", "websocket".parse().expect("value"));
        let response = client.send_request(upgrade).await.expect("response");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()["upgrade"], "websocket");
        let mut socket = TokioIo::new(hyper::upgrade::on(response).await.expect("upgraded"));
        let mut echoed = Vec::new();
        for word in [&b"ping"[..], b"pong"] {
            socket.write_all(word).await.expect("write");
            let mut buffer = [0u8; 4];
            socket.read_exact(&mut buffer).await.expect("read");
            echoed.extend_from_slice(&buffer);
        }
        echoed
    });
    assert_eq!(echoed, b"pingpong");
    // The client closed the tunnel: the generation drains.
    h.send(ProxyCommand::Drain { generation: 1 });
    h.event("Drained", |event| *event == ProxyEvent::Drained { generation: 1 });
}

#[test]
fn a_5mb_upload_streams_through() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 5 * 1024 * 1024;
    let h = Harness::http();
    let up = Upstream::start(&h, "a");
    h.serve(1, &[up.addr]);
    let (chunks, body) = mpsc::channel::<Bytes>(4);
    let upload = Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "app.test")
        .body(ChannelBody(body).boxed_unsync())
        .expect("request");
    let addr = h.addr;
    let pending = h.spawn(send(addr, upload));
    let pattern: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let pattern = Bytes::from(pattern);
    let seen = Arc::clone(&up.seen);
    h.block_on(async {
        for _ in 0..(1024 * 1024 / CHUNK) {
            chunks.send(pattern.clone()).await.expect("send chunk");
        }
        // The upstream gets the first megabyte while the client has not sent the rest: the proxy
        // forwards as it reads.
        while seen.received.load(Ordering::SeqCst) < 1024 * 1024 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in (1024 * 1024 / CHUNK)..(TOTAL / CHUNK) {
            chunks.send(pattern.clone()).await.expect("send chunk");
        }
    });
    drop(chunks);
    let reply = h.join(pending);
    assert_eq!(reply.body, format!("a POST /upload {TOTAL}"));
    let body = up.last_body();
    assert_eq!(body.len(), TOTAL);
    assert!(body.chunks(CHUNK).all(|chunk| chunk == pattern));
}
