//! Adding the browser client's `<script>` tag to HTML responses.
//!
//! Contract:
//! - **Which requests.** A request is a candidate ([`candidate`]) when browser reload is on, it
//!   is not `HEAD`, its `Accept` names `text/html`, and its `Sec-Fetch-Dest` (when the browser
//!   sends one) is a document or a frame: a `fetch()` of an HTML fragment (htmx, Turbo) is left
//!   alone. A candidate is sent upstream with `Accept-Encoding: identity`, so that the HTML comes
//!   back uncompressed and can be changed: devserve never decompresses.
//! - **Which responses** ([`Plan::for_response`]): `text/html`, with a body (not 1xx, 204, 206
//!   or 304), no `Content-Encoding` other than `identity` (an app that compresses anyway gets its
//!   page through untouched, without the script), no `Cache-Control: no-transform`. Everything
//!   else passes byte for byte.
//! - **Where.** With a `Content-Length` up to [`WHOLE_LIMIT`] the body is read whole and the tag
//!   goes before the last `</body>`, else before the first `</head>`, else at the end. Any other
//!   body (chunked, or larger) is never held: it is forwarded as it comes and the tag goes before
//!   the first `</body>` seen (case-insensitive, also across chunk boundaries), else at the end,
//!   so a page streamed by the app is not delayed.
//! - **Headers.** `Content-Length` grows by the tag's length (it stays absent for a chunked
//!   body). `ETag` and `Last-Modified` are dropped: the page now names the generation that
//!   served it, so the browser must not revalidate a copy labelled with an older one.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::response::{BoxError, ResponseBody};

/// A fixed-length HTML body up to this size is read whole (so the tag lands exactly where the
/// rules say); a larger one is streamed.
pub(crate) const WHOLE_LIMIT: u64 = 4 * 1024 * 1024;

/// The closing tag the script goes before, in lower case.
const BODY_END: &[u8] = b"</body";
const HEAD_END: &[u8] = b"</head";

/// What the page is told about the response it came in: which proxy run and which generation
/// served it, and whether a reload must use GET (the page answered another method).
#[derive(Debug, Clone)]
pub(crate) struct Page {
    /// The proxy run ([`super::browser::Hub::instance`]).
    pub(crate) instance: String,
    /// The generation that served the page; 0 for devserve's own pages.
    pub(crate) generation: u64,
    /// The request's method when it was not GET.
    pub(crate) method: Option<Method>,
}

impl Page {
    /// The `<script>` tag, using the page's own origin (a path, never a host or port).
    pub(crate) fn tag(&self) -> Bytes {
        let method = match &self.method {
            Some(method) => {
                format!(" data-devserve-method=\"{}\"", super::pages::escape_html(method.as_str()))
            }
            None => String::new(),
        };
        Bytes::from(format!(
            "<script src=\"/__devserve/client.js\" defer data-devserve-instance=\"{}\" \
             data-devserve-generation=\"{}\"{method}></script>",
            super::pages::escape_html(&self.instance),
            self.generation
        ))
    }
}

/// Whether a request may get the script in its answer (see the module docs).
pub(crate) fn candidate(method: &Method, headers: &HeaderMap) -> bool {
    if *method == Method::HEAD || !super::pages::wants_html(headers) {
        return false;
    }
    match headers.get("sec-fetch-dest").and_then(|v| v.to_str().ok()) {
        Some(dest) => matches!(dest.trim().to_ascii_lowercase().as_str(), "document" | "iframe" | "frame"),
        None => true,
    }
}

/// Asks the upstream for an uncompressed answer.
pub(crate) fn ask_identity(headers: &mut HeaderMap) {
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
}

/// How a response is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Read whole, then insert (the body has this many bytes).
    Whole(u64),
    /// Insert while streaming; the body's length if known.
    Stream(Option<u64>),
}

impl Plan {
    /// The plan for a response to a candidate request, or `None` to leave it untouched.
    pub(crate) fn for_response(status: StatusCode, headers: &HeaderMap) -> Option<Plan> {
        let bodiless = status.is_informational()
            || matches!(
                status,
                StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            );
        if bodiless || !is_html(headers) || headers.contains_key(header::CONTENT_RANGE) {
            return None;
        }
        let encoded = headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(str::trim)
            .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"));
        let no_transform = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"));
        if encoded || no_transform {
            return None;
        }
        let length = match headers.get(header::CONTENT_LENGTH) {
            None => None,
            Some(value) => Some(value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok())?),
        };
        Some(match length {
            Some(length) if length <= WHOLE_LIMIT => Plan::Whole(length),
            length => Plan::Stream(length),
        })
    }
}

/// `Content-Type: text/html` (any parameters).
fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|value| value.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/html"))
}

/// Applies `plan` to `response`: fixes the headers and wraps the body.
pub(crate) fn apply(response: Response<ResponseBody>, plan: Plan, tag: Bytes) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    let extra = tag.len() as u64;
    parts.headers.remove(header::ETAG);
    parts.headers.remove(header::LAST_MODIFIED);
    let length = match plan {
        Plan::Whole(length) => Some(length),
        Plan::Stream(length) => length,
    };
    if let Some(length) = length {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length + extra));
    }
    let mode = match plan {
        Plan::Whole(_) => Mode::Whole(Vec::new()),
        Plan::Stream(_) => Mode::Stream { carry: Vec::new(), inserted: false },
    };
    let injector =
        Injector { inner: body, tag, mode, out: VecDeque::new(), length: length.map(|n| n + extra) };
    Response::from_parts(parts, injector.boxed_unsync())
}

/// Adds the tag to one of devserve's own HTML pages (a complete body), if it is HTML.
pub(crate) fn own_page(response: Response<ResponseBody>, page: &Page) -> Response<ResponseBody> {
    if !is_html(response.headers()) {
        return response;
    }
    let Some(length) = response.body().size_hint().exact() else { return response };
    apply(response, Plan::Whole(length), page.tag())
}

enum Mode {
    /// Collecting the whole body.
    Whole(Vec<u8>),
    /// Forwarding; `carry` holds the last bytes that could start a `</body` split across chunks.
    Stream { carry: Vec<u8>, inserted: bool },
    /// The body ended (everything left is in `out`).
    Done,
}

/// A response body with the tag inserted.
struct Injector {
    inner: ResponseBody,
    tag: Bytes,
    mode: Mode,
    /// Frames ready to go out, in order.
    out: VecDeque<Frame<Bytes>>,
    /// The new length, when known.
    length: Option<u64>,
}

impl Injector {
    fn take_data(&mut self, chunk: Bytes) {
        match &mut self.mode {
            Mode::Whole(buffer) => buffer.extend_from_slice(&chunk),
            Mode::Stream { inserted: true, .. } => self.out.push_back(Frame::data(chunk)),
            Mode::Stream { carry, inserted } => {
                let mut data = std::mem::take(carry);
                data.extend_from_slice(&chunk);
                if let Some(at) = find(&data, BODY_END) {
                    *inserted = true;
                    let data = Bytes::from(data);
                    self.out.push_back(Frame::data(data.slice(..at)));
                    self.out.push_back(Frame::data(self.tag.clone()));
                    self.out.push_back(Frame::data(data.slice(at..)));
                } else {
                    let keep = data.len().min(BODY_END.len() - 1);
                    *carry = data.split_off(data.len() - keep);
                    if !data.is_empty() {
                        self.out.push_back(Frame::data(Bytes::from(data)));
                    }
                }
            }
            Mode::Done => {}
        }
    }

    /// The body ended (before `trailers`, if any): flush with the tag.
    fn finish(&mut self) {
        match std::mem::replace(&mut self.mode, Mode::Done) {
            Mode::Whole(buffer) => {
                let at = rfind(&buffer, BODY_END).or_else(|| find(&buffer, HEAD_END)).unwrap_or(buffer.len());
                let mut page = Vec::with_capacity(buffer.len() + self.tag.len());
                page.extend_from_slice(&buffer[..at]);
                page.extend_from_slice(&self.tag);
                page.extend_from_slice(&buffer[at..]);
                self.out.push_back(Frame::data(Bytes::from(page)));
            }
            Mode::Stream { carry, inserted } => {
                if !carry.is_empty() {
                    self.out.push_back(Frame::data(Bytes::from(carry)));
                }
                if !inserted {
                    self.out.push_back(Frame::data(self.tag.clone()));
                }
            }
            Mode::Done => {}
        }
    }
}

impl Body for Injector {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if matches!(this.mode, Mode::Done) {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => this.finish(),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(chunk) => this.take_data(chunk),
                    Err(trailers) => {
                        this.finish();
                        this.out.push_back(trailers);
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.mode, Mode::Done) && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) if !matches!(self.mode, Mode::Done) => SizeHint::with_exact(length),
            _ => SizeHint::default(),
        }
    }
}

/// The first position of `needle` (lower case ASCII) in `haystack`, ignoring ASCII case.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window.eq_ignore_ascii_case(needle))
}

/// The last position of `needle` in `haystack`, ignoring ASCII case.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::proxy::response::full;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_html_documents_with_a_body_and_no_encoding_are_changed() {
        let html = [("content-type", "text/html; charset=utf-8"), ("content-length", "10")];
        assert_eq!(Plan::for_response(StatusCode::OK, &headers(&html)), Some(Plan::Whole(10)));
        assert_eq!(Plan::for_response(StatusCode::NOT_FOUND, &headers(&html)), Some(Plan::Whole(10)));
        assert_eq!(
            Plan::for_response(StatusCode::OK, &headers(&[("content-type", "TEXT/HTML")])),
            Some(Plan::Stream(None))
        );
        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED, StatusCode::PARTIAL_CONTENT] {
            assert_eq!(Plan::for_response(status, &headers(&html)), None);
        }
        for extra in [
            ("content-encoding", "gzip"),
            ("cache-control", "max-age=0, No-Transform"),
            ("content-range", "bytes 0-9/20"),
        ] {
            let mut map = headers(&html);
            map.append(extra.0, HeaderValue::from_static(extra.1));
            assert_eq!(Plan::for_response(StatusCode::OK, &map), None, "{extra:?}");
        }
        let mut identity = headers(&html);
        identity.append("content-encoding", HeaderValue::from_static("identity"));
        assert_eq!(Plan::for_response(StatusCode::OK, &identity), Some(Plan::Whole(10)));
        for other in ["application/json", "text/plain", "text/html-sandboxed", "application/xhtml+xml"] {
            let map = headers(&[("content-type", other)]);
            assert_eq!(Plan::for_response(StatusCode::OK, &map), None, "{other}");
        }
        let big = headers(&[("content-type", "text/html"), ("content-length", "99999999")]);
        assert_eq!(Plan::for_response(StatusCode::OK, &big), Some(Plan::Stream(Some(99_999_999))));
    }

    #[test]
    fn candidates_are_html_navigations() {
        let get = Method::GET;
        assert!(candidate(&get, &headers(&[("accept", "text/html,*/*")])));
        assert!(candidate(
            &Method::POST,
            &headers(&[("accept", "text/html"), ("sec-fetch-dest", "document")])
        ));
        assert!(candidate(&get, &headers(&[("accept", "text/html"), ("sec-fetch-dest", "iframe")])));
        assert!(!candidate(&get, &headers(&[("accept", "text/html"), ("sec-fetch-dest", "empty")])));
        assert!(!candidate(&Method::HEAD, &headers(&[("accept", "text/html")])));
        assert!(!candidate(&get, &headers(&[("accept", "application/json")])));
        assert!(!candidate(&get, &HeaderMap::new()));
    }

    fn run(body: ResponseBody) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async { body.collect().await.expect("body").to_bytes().to_vec() })
    }

    fn injected(page: &str, plan: Plan) -> String {
        let response = Response::new(full(page.to_owned()));
        let response = apply(response, plan, Bytes::from_static(b"<S>"));
        String::from_utf8(run(response.into_body())).expect("utf-8")
    }

    #[test]
    fn whole_bodies_follow_the_placement_rules() {
        let whole = |page: &str| injected(page, Plan::Whole(page.len() as u64));
        assert_eq!(whole("<p>x</p></BODY></html>"), "<p>x</p><S></BODY></html>");
        assert_eq!(whole("a</body>b</body>c"), "a</body>b<S></body>c");
        assert_eq!(whole("<head></head><p>"), "<head><S></head><p>");
        assert_eq!(whole("<p>no tags"), "<p>no tags<S>");
        assert_eq!(whole(""), "<S>");
    }

    #[test]
    fn streamed_bodies_insert_before_the_first_body_end_across_chunks() {
        let chunks = ["<html><p>one</p></bo", "dy></html>"];
        let response = Response::new(chunked(&chunks).boxed_unsync());
        let response = apply(response, Plan::Stream(None), Bytes::from_static(b"<S>"));
        let out = String::from_utf8(run(response.into_body())).expect("utf-8");
        assert_eq!(out, "<html><p>one</p><S></body></html>");
        assert_eq!(injected("<head></head><p>", Plan::Stream(None)), "<head></head><p><S>");
        assert_eq!(injected("ab", Plan::Stream(None)), "ab<S>");
    }

    /// A body of several data frames.
    fn chunked(chunks: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> + Send + 'static {
        struct Chunks(VecDeque<&'static str>);
        impl Body for Chunks {
            type Data = Bytes;
            type Error = BoxError;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                Poll::Ready(
                    self.0.pop_front().map(|chunk| Ok(Frame::data(Bytes::from_static(chunk.as_bytes())))),
                )
            }
        }
        Chunks(chunks.iter().copied().collect())
    }

    #[test]
    fn headers_are_fixed() {
        let response = Response::builder()
            .header("content-type", "text/html")
            .header("content-length", "3")
            .header("etag", "\"abc\"")
            .header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")
            .body(full("<p>"))
            .expect("response");
        let response = apply(response, Plan::Whole(3), Bytes::from_static(b"<S>"));
        assert_eq!(response.headers()["content-length"], "6");
        assert!(
            !response.headers().contains_key("etag") && !response.headers().contains_key("last-modified")
        );
        let tag = Page { instance: "i\"d".into(), generation: 3, method: Some(Method::POST) }.tag();
        assert_eq!(
            tag,
            "<script src=\"/__devserve/client.js\" defer data-devserve-instance=\"i&quot;d\" \
             data-devserve-generation=\"3\" data-devserve-method=\"POST\"></script>"
        );
    }
}
