//! The browser side: devserve's own routes under `/__devserve/`, the script tag added to HTML pages
//! (and the answers left untouched), the event stream in command order and what a browser that
//! connects late is told, and `browser_reload: false`.

use super::*;

/// The page most tests get: 58 bytes with `</head>` and `</body>`.
const PAGE: &str = "<html><head><title>t</title></head><body><p>hi</p></body></html>";

/// An upstream for the browser side. By path: `/page` ([`PAGE`], with a length and an ETag),
/// `/nobody` (no `</body>`), `/bare` (neither tag), `/chunked` (HTML sent in two chunks, the
/// second after [`Upstream::release`]-like `gate`), `/gzip` (a gzip-encoded page, whatever was
/// asked), `/no-transform`, `/json`; anything else answers its path as text. Each response
/// echoes the request's `Accept-Encoding` in `x-saw-accept-encoding`.
fn html_upstream(h: &Harness, gate: watch::Sender<bool>) -> SocketAddr {
    let listener = h.bind();
    let addr = listener.local_addr().expect("addr");
    h.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let gate = gate.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let gate = gate.clone();
                    async move { Ok::<_, Infallible>(html_answer(&request, &gate)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The bytes `/gzip` sends (a real gzip member of "<p>gz</p>").
const GZIPPED: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0xb3, 0x29, 0xb0, 0x4b, 0xaf, 0xb2, 0xd1,
    0x2f, 0xb0, 0x03, 0x00, 0xe2, 0x8d, 0x21, 0xbb, 0x09, 0x00, 0x00, 0x00,
];

fn html_answer(request: &Request<Incoming>, gate: &watch::Sender<bool>) -> Response<TestBody> {
    let saw = request
        .headers()
        .get("accept-encoding")
        .map_or_else(|| "-".to_string(), |v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let builder = Response::builder().header("x-saw-accept-encoding", saw);
    let html = |builder: hyper::http::response::Builder, body: &'static str| {
        builder.header("content-type", "text/html; charset=utf-8").body(boxed(body)).expect("response")
    };
    match request.uri().path() {
        "/page" => html(builder.header("etag", "\"v1\""), PAGE),
        "/nobody" => html(builder, "<html><head><title>t</title></head><p>no body</p>"),
        "/bare" => html(builder, "<p>bare</p>"),
        "/no-transform" => html(builder.header("cache-control", "no-transform"), PAGE),
        "/gzip" => builder
            .header("content-type", "text/html")
            .header("content-encoding", "gzip")
            .body(boxed(GZIPPED))
            .expect("gzip"),
        "/json" => builder
            .header("content-type", "application/json")
            .body(boxed("{\"a\":\"</body>\"}"))
            .expect("json"),
        "/chunked" => {
            let (chunks, body) = mpsc::channel::<Bytes>(2);
            let mut open = gate.subscribe();
            tokio::spawn(async move {
                let _ = chunks.send(Bytes::from_static(b"<html><body><p>one</p></bo")).await;
                let _ = open.wait_for(|open| *open).await;
                let _ = chunks.send(Bytes::from_static(b"dy></html>")).await;
            });
            builder
                .header("content-type", "text/html")
                .body(ChannelBody(body).boxed_unsync())
                .expect("chunked")
        }
        other => builder.body(boxed(format!("path {other}"))).expect("other"),
    }
}

/// `GET target` as a browser navigation (`Accept: text/html`, gzip accepted).
fn navigate(target: &str) -> Request<TestBody> {
    let mut request = with_accept(get(target), "text/html,application/xhtml+xml,*/*;q=0.8");
    request.headers_mut().insert("accept-encoding", "gzip, deflate, br".parse().expect("value"));
    request
}

/// The tag the proxy adds for generation `generation`.
fn tag_of(body: &str) -> Option<&str> {
    let start = body.find("<script src=\"/__devserve/client.js\"")?;
    let end = body[start..].find("</script>")? + start + "</script>".len();
    Some(&body[start..end])
}

#[test]
fn html_pages_get_the_script_where_the_rules_say_and_the_length_fits() {
    let h = Harness::http();
    let up = html_upstream(&h, watch::Sender::new(false));
    h.serve(7, &[up]);
    let addr = h.addr;
    let (page, nobody, bare) = h.block_on(async move {
        tokio::join!(
            send(addr, navigate("/page")),
            send(addr, navigate("/nobody")),
            send(addr, navigate("/bare"))
        )
    });

    let tag = tag_of(&page.body).expect("a script tag").to_owned();
    assert!(tag.contains("data-devserve-generation=\"7\""), "{tag}");
    assert_eq!(page.body, PAGE.replace("</body>", &format!("{tag}</body>")));
    assert_eq!(page.headers["content-length"], page.body.len().to_string());
    assert!(!page.headers.contains_key("etag"), "a changed page has no validator");
    assert_eq!(page.headers["x-saw-accept-encoding"], "identity", "HTML navigations are asked uncompressed");

    assert_eq!(nobody.body, format!("<html><head><title>t</title>{tag}</head><p>no body</p>"));
    assert_eq!(nobody.headers["content-length"], nobody.body.len().to_string());
    assert_eq!(bare.body, format!("<p>bare</p>{tag}"));
    assert_eq!(bare.headers["content-length"], bare.body.len().to_string());
}

#[test]
fn compressed_json_no_transform_head_and_fragments_are_untouched() {
    let h = Harness::http();
    let up = html_upstream(&h, watch::Sender::new(false));
    h.serve(1, &[up]);
    let addr = h.addr;
    h.block_on(async move {
        // The app compresses although identity was asked: the bytes pass as they are.
        let mut client = connect(addr).await;
        client.ready().await.expect("ready");
        let response = client.send_request(navigate("/gzip")).await.expect("response");
        assert_eq!(response.headers()["content-encoding"], "gzip");
        assert_eq!(response.headers()["x-saw-accept-encoding"], "identity");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], GZIPPED, "byte for byte");

        let mut json = navigate("/json");
        json.headers_mut().insert("accept", "application/json".parse().expect("value"));
        let json = send(addr, json).await;
        assert_eq!(json.body, "{\"a\":\"</body>\"}");
        assert_eq!(json.headers["x-saw-accept-encoding"], "gzip, deflate, br", "not a navigation");

        let no_transform = send(addr, navigate("/no-transform")).await;
        assert_eq!(no_transform.body, PAGE);

        let mut fragment = navigate("/page");
        fragment.headers_mut().insert("sec-fetch-dest", "empty".parse().expect("value"));
        let fragment = send(addr, fragment).await;
        assert_eq!(fragment.body, PAGE, "a fetch() of HTML is not a page");
        assert_eq!(fragment.headers["etag"], "\"v1\"");
        assert_eq!(fragment.headers["x-saw-accept-encoding"], "gzip, deflate, br");

        let mut head = navigate("/page");
        *head.method_mut() = hyper::Method::HEAD;
        let head = send(addr, head).await;
        assert_eq!(head.body, "");
        assert_eq!(head.headers["etag"], "\"v1\"");
        assert_eq!(head.headers["x-saw-accept-encoding"], "gzip, deflate, br");
    });
}

#[test]
fn a_chunked_page_streams_with_the_script_before_its_body_end() {
    let h = Harness::http();
    let gate = watch::Sender::new(false);
    let up = html_upstream(&h, gate.clone());
    h.serve(1, &[up]);
    let addr = h.addr;
    let body = h.block_on(async move {
        let mut client = connect(addr).await;
        let response = client.send_request(navigate("/chunked")).await.expect("response");
        assert!(!response.headers().contains_key("content-length"));
        let mut body = response.into_body();
        let mut text = Vec::new();
        // The first chunk comes before the app sends the rest: the page is not held (but for the
        // few bytes that could start a `</body>`).
        while !text.starts_with(b"<html><body><p>one") {
            let frame = body.frame().await.expect("a frame").expect("data");
            text.extend_from_slice(&frame.into_data().expect("data"));
        }
        gate.send_replace(true);
        while let Some(frame) = body.frame().await {
            text.extend_from_slice(&frame.expect("frame").into_data().expect("data"));
        }
        String::from_utf8(text).expect("utf-8")
    });
    let tag = tag_of(&body).expect("a script tag");
    assert_eq!(body, format!("<html><body><p>one</p>{tag}</body></html>"));
}

#[test]
fn devserve_routes_answer_get_only_at_once_even_while_nothing_serves() {
    let h = Harness::new(ProxyConfig { hold_timeout: Duration::from_millis(300), ..ProxyConfig::default() });
    let addr = h.addr;
    let (client, worker, events_post, head, missing, stats) = h.block_on(async move {
        tokio::join!(
            send(addr, get("/__devserve/client.js")),
            send(addr, get("/__devserve/worker.js")),
            send(addr, request("POST", "/__devserve/events", "x")),
            send(addr, request("HEAD", "/__devserve/client.js", Bytes::new())),
            send(addr, get("/__devserve/nope")),
            send(addr, get("/__devserve/stats")),
        )
    });
    assert_eq!(client.status, StatusCode::OK);
    assert!(client.headers["content-type"].to_str().expect("type").starts_with("text/javascript"));
    assert!(client.body.contains("SharedWorker") && client.body.contains("/__devserve/events"));
    assert_eq!(worker.status, StatusCode::OK);
    assert!(worker.body.contains("onconnect"));
    for refused in [&events_post, &head] {
        assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers["allow"], "GET");
    }
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let stats: serde_json::Value = serde_json::from_str(&stats.body).expect("stats JSON");
    assert_eq!((stats["streams"].as_u64(), stats["ready"].is_null()), (Some(0), true));
    assert_eq!(h.stats().total, Counters::default(), "devserve's routes are neither held nor counted");

    // devserve's own page (here the hold timeout's) carries the client, so it reloads once ready.
    let page = h.block_on(send(addr, navigate("/")));
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    let tag = tag_of(&page.body).expect("a script tag");
    assert!(tag.contains("data-devserve-generation=\"0\""), "{tag}");
    assert!(page.body.ends_with(&format!("{tag}</body></html>\n")), "{}", page.body);
}

/// An open event stream, read message by message.
struct Sse {
    body: Incoming,
    buffer: String,
}

impl Sse {
    async fn open(addr: SocketAddr) -> Sse {
        let mut client = connect(addr).await;
        let response = client.send_request(get("/__devserve/events")).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-store");
        // The connection task keeps the stream; the sender may go.
        drop(client);
        Sse { body: response.into_body(), buffer: String::new() }
    }

    /// The next message with an `event:` (comments and `retry:` skipped): its kind and data.
    async fn next(&mut self) -> (String, serde_json::Value) {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    message.lines().find_map(|line| line.strip_prefix(name)).map(|v| v.trim().to_owned())
                };
                if let (Some(kind), Some(data)) = (field("event:"), field("data:")) {
                    assert_eq!(message.lines().filter(|l| l.starts_with("data:")).count(), 1, "{message}");
                    return (kind, serde_json::from_str(&data).expect("JSON data"));
                }
            }
            let frame = self.body.frame().await.expect("stream open").expect("frame");
            self.buffer.push_str(&String::from_utf8_lossy(&frame.into_data().expect("data")));
        }
    }

    async fn expect(&mut self, kind: &str) -> serde_json::Value {
        let (got, data) = self.next().await;
        assert_eq!(got, kind, "{data}");
        data
    }
}

fn build_failed() -> BrowserEvent {
    BrowserEvent::BuildFailed {
        command: "cargo build".into(),
        status: "exited with status 101".into(),
        duration_ms: 1234,
        output: "\x1b[1m\x1b[31merror\x1b[0m: <script>alert(1)</script>\n --> src/main.rs:3:7\n".into(),
        diagnostics: vec![Diagnostic {
            level: "error".into(),
            message: "expected `;`".into(),
            file: "src/main.rs".into(),
            line: 3,
            column: 7,
            rendered: "\x1b[38;5;12m3 |\x1b[0m let x = 1\n".into(),
        }],
    }
}

#[test]
fn events_reach_every_stream_in_order_and_a_late_one_gets_the_standing_failure() {
    let h = Harness::http();
    let old = Upstream::start(&h, "old");
    let new = Upstream::start(&h, "new");
    h.serve(1, &[old.addr]);
    h.send(ProxyCommand::Browser(BrowserEvent::Ready { generation: 1, css_only: vec![], reload: true }));
    let addr = h.addr;
    let mut early = h.block_on(Sse::open(addr));
    let hello = h.block_on(early.expect("hello"));
    assert_eq!(hello["ready"], 1);
    let instance = hello["instance"].as_str().expect("instance").to_owned();

    h.send(ProxyCommand::Browser(BrowserEvent::Building { cause: "src/main.rs changed".into() }));
    h.send(ProxyCommand::Browser(build_failed()));
    assert_eq!(h.block_on(early.expect("building"))["cause"], "src/main.rs changed");
    let failed = h.block_on(early.expect("build-failed"));
    assert_eq!(failed["command"], "cargo build");
    assert_eq!(failed["duration_ms"], 1234);
    // The output is text in runs (the client sets textContent), colours as CSS, locations marked.
    let runs = failed["output"].as_array().expect("runs");
    assert_eq!(runs[0], serde_json::json!({"text": "error", "style": "font-weight:bold;color:#cd3131"}));
    assert_eq!(runs[1]["text"], ": <script>alert(1)</script>\n --> ");
    assert_eq!(runs[2], serde_json::json!({"text": "src/main.rs:3:7", "loc": true}));
    let diagnostic = &failed["diagnostics"][0];
    assert_eq!((diagnostic["file"].as_str(), diagnostic["line"].as_u64()), (Some("src/main.rs"), Some(3)));
    assert_eq!(diagnostic["rendered"][0], serde_json::json!({"text": "3 |", "style": "color:#3b8eea"}));

    // A page opened now sees the failure at once, and the build that runs.
    h.send(ProxyCommand::Browser(BrowserEvent::Building { cause: "again".into() }));
    assert_eq!(h.block_on(early.expect("building"))["cause"], "again");
    let mut late = h.block_on(Sse::open(addr));
    assert_eq!(h.block_on(late.expect("hello"))["instance"], instance.as_str());
    assert_eq!(h.block_on(late.expect("build-failed")), failed);
    assert_eq!(h.block_on(late.expect("building"))["cause"], "again");
    assert_eq!(h.stats().browser_streams, 2);

    // `Ready` goes out after its `Serve` applied: a request made on it reaches the new generation.
    h.send(ProxyCommand::Serve { site: 0, generation: 2, upstreams: vec![new.addr] });
    h.send(ProxyCommand::Browser(BrowserEvent::Ready {
        generation: 2,
        css_only: vec!["a.css".into()],
        reload: true,
    }));
    let ready = h.block_on(early.expect("ready"));
    assert_eq!(ready, serde_json::json!({"generation": 2, "css_only": ["a.css"], "reload": true}));
    assert_eq!(h.block_on(send(addr, get("/"))).body, "new GET / 0");
    assert_eq!(h.block_on(late.expect("ready"))["generation"], 2);

    // A crash stands until the next `Ready`; the failure before it is gone.
    h.send(ProxyCommand::Browser(BrowserEvent::Crashed {
        generation: 3,
        status: "exited with status 1".into(),
    }));
    assert_eq!(h.block_on(early.expect("crashed"))["generation"], 3);
    let mut third = h.block_on(Sse::open(addr));
    assert_eq!(h.block_on(third.expect("hello"))["ready"], 2);
    assert_eq!(h.block_on(third.expect("crashed"))["status"], "exited with status 1");
    h.send(ProxyCommand::Browser(BrowserEvent::Ready { generation: 4, css_only: vec![], reload: true }));
    assert_eq!(h.block_on(third.expect("ready"))["generation"], 4);
    let mut fourth = h.block_on(Sse::open(addr));
    assert_eq!(h.block_on(fourth.expect("hello"))["ready"], 4);
    h.send(ProxyCommand::Browser(BrowserEvent::Building { cause: "x".into() }));
    assert_eq!(h.block_on(fourth.expect("building"))["cause"], "x", "nothing stood before it");

    // A closed stream leaves the count.
    assert_eq!(h.stats().browser_streams, 4);
    drop((early, late));
    wait_until("two streams left", || h.stats().browser_streams == 2);
}

#[test]
fn without_browser_reload_nothing_is_reserved_or_changed() {
    let h = Harness::new(ProxyConfig { browser_reload: false, ..ProxyConfig::default() });
    let up = html_upstream(&h, watch::Sender::new(false));
    h.serve(1, &[up]);
    h.send(ProxyCommand::Browser(build_failed()));
    let addr = h.addr;
    let (page, reserved) = h.block_on(async move {
        tokio::join!(send(addr, navigate("/page")), send(addr, get("/__devserve/events")))
    });
    assert_eq!(page.body, PAGE);
    assert_eq!(page.headers["x-saw-accept-encoding"], "gzip, deflate, br");
    assert_eq!(reserved.body, "path /__devserve/events", "the app's own path");
}
