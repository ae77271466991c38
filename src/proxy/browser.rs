//! devserve's own routes under `/__devserve/` and what the browsers are told.
//!
//! Contract:
//! - **Routes** (only with [`super::ProxyConfig::browser_reload`]; answered by the proxy itself,
//!   at once, whatever serves): `GET /__devserve/events` is the event stream, `client.js` the
//!   script added to pages, `worker.js` the shared worker that holds one stream for all the tabs
//!   of a browser, `stats` a JSON snapshot (`{"instance","ready","streams","opened"}`). Any other
//!   path under the prefix is `404`; any other method `405` (`Allow: GET`).
//! - **The stream** is `text/event-stream`, `Cache-Control: no-store`, never buffered: each
//!   message is written as it is published. It opens with `retry: 1000` and a `hello`
//!   (`{"instance": this proxy run, "ready": the last generation announced ready or null}`), then
//!   the kept failure (the last `build-failed` or `crashed`, until a `ready`) and a `building`
//!   in progress, and then every [`BrowserEvent`] as it comes. A comment line every
//!   [`HEARTBEAT`] keeps idle connections open and finds the ones the browser dropped.
//! - **Payloads** are JSON in one `data:` line. Build output and rendered diagnostics are sent as
//!   [`super::pages::Run`]s (`{"text", "style"?, "loc"?}`): text with the CSS of its colours,
//!   which the client puts into elements as text, never as HTML.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::api::{BrowserEvent, Diagnostic};
use super::pages::{Run, ansi_runs, strip_ansi, tail};
use super::response::{BoxError, ResponseBody, full};

/// The reserved path prefix.
pub(crate) const PREFIX: &str = "/__devserve/";

/// How often an idle event stream gets a comment line.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(15);

/// The browser client (added to every HTML page), with the reconnecting stream it shares with
/// the worker.
const CLIENT_JS: &str = concat!(include_str!("client.js"), include_str!("stream.js"));

/// The shared worker (one event stream per browser), with the same stream.
const WORKER_JS: &str = concat!(include_str!("worker.js"), include_str!("stream.js"));

/// The browsers' side of the proxy: the open event streams and what a late one must be told.
pub(crate) struct Hub {
    instance: String,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// The open streams, by id.
    streams: Vec<(u64, mpsc::UnboundedSender<Bytes>)>,
    next_id: u64,
    /// Streams opened since the start.
    opened: u64,
    /// The last generation announced ready.
    ready: Option<u64>,
    /// The last `build-failed` or `crashed` message, until the next `ready`.
    failure: Option<Bytes>,
    /// The `building` message while a build runs.
    building: Option<Bytes>,
}

impl Hub {
    /// A hub with a fresh instance id (unique to this proxy run).
    pub(crate) fn new() -> Hub {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let instance = format!("{:x}-{:x}-{run}", std::process::id(), nanos & 0xffff_ffff_ffff);
        Hub { instance, state: Mutex::new(HubState::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This proxy run's id: a page served by another run (devserve restarted) is out of date.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// The generation of the last `Ready` that reloaded pages (0: none yet). A page routed
    /// after it is at least that new, whichever service served it.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().ready.unwrap_or(0)
    }

    /// Event streams open now.
    pub(crate) fn streams(&self) -> usize {
        self.lock().streams.len()
    }

    /// Sends `event` to every open stream and keeps what a later one must see.
    pub(crate) fn publish(&self, event: BrowserEvent) {
        let mut state = self.lock();
        let message = match event {
            BrowserEvent::Building { cause } => {
                let message = encode("building", &json!({ "cause": cause }));
                state.building = Some(message.clone());
                message
            }
            BrowserEvent::Ready { generation, css_only, reload } => {
                if reload {
                    state.ready = Some(generation);
                }
                state.failure = None;
                state.building = None;
                encode("ready", &json!({ "generation": generation, "css_only": css_only, "reload": reload }))
            }
            BrowserEvent::BuildFailed { command, status, duration_ms, output, diagnostics } => {
                let data = json!({
                    "command": command,
                    "status": status,
                    "duration_ms": u64::try_from(duration_ms).unwrap_or(u64::MAX),
                    "output": runs_json(&ansi_runs(tail(&output))),
                    "diagnostics": diagnostics.iter().map(diagnostic_json).collect::<Vec<_>>(),
                });
                let message = encode("build-failed", &data);
                state.failure = Some(message.clone());
                state.building = None;
                message
            }
            BrowserEvent::Crashed { generation, status } => {
                let message = encode("crashed", &json!({ "generation": generation, "status": status }));
                state.failure = Some(message.clone());
                state.building = None;
                message
            }
        };
        state.streams.retain(|(_, stream)| stream.send(message.clone()).is_ok());
    }

    /// Opens a stream: its first bytes (the hello and the kept state) and its receiver.
    fn subscribe(self: &Arc<Self>) -> EventStream {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.opened += 1;
        state.streams.push((id, sender));
        let hello = json!({ "instance": self.instance, "ready": state.ready });
        let mut first = VecDeque::from([Bytes::from_static(b"retry: 1000\n\n"), encode("hello", &hello)]);
        // The kept messages are shared, not copied: a large build failure costs its size once,
        // however many streams open (and however slowly they read).
        first.extend([&state.failure, &state.building].into_iter().flatten().cloned());
        drop(state);
        let start = tokio::time::Instant::now() + HEARTBEAT;
        let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        EventStream { hub: Arc::clone(self), id, first, receiver, heartbeat }
    }

    fn unsubscribe(&self, id: u64) {
        self.lock().streams.retain(|(stream, _)| *stream != id);
    }

    fn stats_json(&self) -> String {
        let state = self.lock();
        json!({
            "instance": self.instance,
            "ready": state.ready,
            "streams": state.streams.len(),
            "opened": state.opened,
        })
        .to_string()
    }
}

/// One SSE message.
fn encode(kind: &str, data: &Value) -> Bytes {
    // serde_json escapes every control character, so the JSON is one line.
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

fn runs_json(runs: &[Run]) -> Value {
    Value::Array(
        runs.iter()
            .map(|run| {
                let mut object = serde_json::Map::new();
                object.insert("text".into(), Value::String(run.text.clone()));
                if !run.style.is_empty() {
                    object.insert("style".into(), Value::String(run.style.clone()));
                }
                if run.location {
                    object.insert("loc".into(), Value::Bool(true));
                }
                Value::Object(object)
            })
            .collect(),
    )
}

fn diagnostic_json(diagnostic: &Diagnostic) -> Value {
    json!({
        "level": strip_ansi(&diagnostic.level),
        "message": strip_ansi(tail(&diagnostic.message)),
        "file": strip_ansi(&diagnostic.file),
        "line": diagnostic.line,
        "column": diagnostic.column,
        "rendered": runs_json(&ansi_runs(tail(&diagnostic.rendered))),
    })
}

/// Answers a request under [`PREFIX`].
pub(crate) fn answer(hub: &Arc<Hub>, method: &Method, path: &str) -> Response<ResponseBody> {
    if *method != Method::GET {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("devserve: {PREFIX} answers GET only, not {method}\n"),
        );
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match path.strip_prefix(PREFIX).unwrap_or_default() {
        "events" => {
            let mut response = Response::new(hub.subscribe().boxed_unsync());
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response
        }
        "client.js" => script(CLIENT_JS),
        "worker.js" => script(WORKER_JS),
        "stats" => {
            let mut response = Response::new(full(hub.stats_json()));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        _ => plain(StatusCode::NOT_FOUND, format!("devserve: no such path: {path}\n")),
    }
}

fn script(source: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(full(source));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

fn plain(status: StatusCode, text: String) -> Response<ResponseBody> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The body of one event stream: the first bytes, then each published message, and a comment
/// line every [`HEARTBEAT`]. Never ends on its own; leaves the hub when dropped (the client went
/// away or the proxy stopped).
struct EventStream {
    hub: Arc<Hub>,
    id: u64,
    /// The hello and the kept messages, sent before anything new.
    first: VecDeque<Bytes>,
    receiver: mpsc::UnboundedReceiver<Bytes>,
    heartbeat: tokio::time::Interval,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match this.receiver.poll_recv(cx) {
            Poll::Ready(Some(message)) => return Poll::Ready(Some(Ok(Frame::data(message)))),
            // The hub dropped the sender: it cannot, but ending the stream is the answer.
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if this.heartbeat.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": heartbeat\n\n")))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    /// A standing build failure is sent to every new stream as the one copy the hub keeps.
    #[test]
    fn the_standing_failure_is_shared_by_every_stream_not_copied() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let _context = runtime.enter();
        let hub = Arc::new(Hub::new());
        hub.publish(BrowserEvent::BuildFailed {
            command: "cargo build".into(),
            status: "exit status: 101".into(),
            duration_ms: 1,
            output: "error\n".into(),
            diagnostics: vec![Diagnostic {
                level: "error".into(),
                message: "m".repeat(10 << 20),
                file: String::new(),
                line: 0,
                column: 0,
                rendered: "error: m\n".into(),
            }],
        });
        let kept = hub.lock().failure.clone().expect("a standing failure");
        assert!(kept.len() < 256 * 1024, "a diagnostic's message is cut to its tail: {} bytes", kept.len());
        let streams: Vec<EventStream> = (0..80).map(|_| hub.subscribe()).collect();
        for stream in &streams {
            let shared =
                stream.first.iter().any(|frame| frame.as_ptr() == kept.as_ptr() && frame.len() == kept.len());
            assert!(shared, "a stream got its own copy of the failure");
        }
    }
}
