//! Header rewriting between client and upstream.
//!
//! Owns the two rules of RFC 9110 §7.6.1 and RFC 7239 a gateway follows:
//! - **Hop-by-hop headers are not forwarded**, either way: `Connection` and every header it names,
//!   `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade`. For an
//!   upgrade (WebSocket) request and its `101` answer, `Upgrade` is kept and `Connection: upgrade`
//!   sent. `Connection` cannot name `Host` or `Content-Length` away (hyper frames the body itself).
//! - **Forwarding headers say who asked**: the client's address is appended to `X-Forwarded-For`
//!   and an element `for=…;host=…;proto=http` to `Forwarded`. `X-Forwarded-Proto` and
//!   `X-Forwarded-Host` describe the original request, so one already set by a proxy in front of
//!   devserve (a TLS tunnel) is kept; otherwise they are set to `http` and the `Host` header.
//!
//! The upstream receives the client's `Host` unchanged and an origin-form target (`/path?query`).

use std::net::{IpAddr, SocketAddr};

use hyper::Uri;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The tokens of every `Connection` header, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Whether the request asks to switch protocols (`Connection: upgrade` and an `Upgrade` header).
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

/// Removes the hop-by-hop headers; for an upgrade keeps `Upgrade` and sets `Connection: upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        let protected =
            name == header::HOST || name == header::CONTENT_LENGTH || (upgrade && name == header::UPGRADE);
        if !protected {
            headers.remove(&name);
        }
    }
    for name in [
        header::CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// `strip-prefix`: the app sees the path without its service's route (`/api/users` as
/// `/users`, `/api` as `/`), and the prefix in `X-Forwarded-Prefix`, as Traefik and Spring do.
pub(crate) fn strip_prefix(parts: &mut Parts, prefix: &str) {
    let path = parts.uri.path();
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    let rest = if rest.is_empty() { "/" } else { rest };
    let target = match parts.uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    if let Ok(uri) = target.parse() {
        parts.uri = uri;
    }
    if let Ok(value) = hyper::header::HeaderValue::from_str(prefix) {
        parts.headers.insert("x-forwarded-prefix", value);
    }
}

/// Rewrites a client request's head for the upstream: origin-form target (an HTTP/2 request's
/// `:authority` becomes its `Host`), HTTP/1.1, no hop-by-hop headers, forwarding headers for
/// `peer` (`tls`: it came over TLS).
pub(crate) fn prepare_request(parts: &mut Parts, peer: SocketAddr, upgrade: bool, tls: bool) {
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
    if parts.uri.authority().is_some() {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(origin) = Uri::try_from(target) {
            parts.uri = origin;
        }
    }
    parts.version = hyper::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    add_forwarded(&mut parts.headers, peer.ip(), if tls { "https" } else { "http" });
}

/// Rewrites an upstream response's head for the client. A response that came with a
/// `Transfer-Encoding` was framed by it (RFC 9112 §6.3): a `Content-Length` beside it says
/// nothing about the body devserve forwards, and goes.
pub(crate) fn prepare_response(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(headers, upgrade);
}

/// Whether a response is an event stream (`text/event-stream`): open for as long as the app
/// keeps it, like an upgraded connection.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// Appends `client` to `X-Forwarded-For` and `Forwarded` (with `proto`, `http` or `https`); sets
/// `X-Forwarded-Proto` and `X-Forwarded-Host` unless a proxy in front already did.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &'static str) {
    let client = client.to_canonical();
    let host = headers.get(header::HOST).cloned();

    let mut xff = join(headers, &X_FORWARDED_FOR);
    if !xff.is_empty() {
        xff.extend_from_slice(b", ");
    }
    xff.extend_from_slice(client.to_string().as_bytes());
    set(headers, X_FORWARDED_FOR, &xff);

    let mut forwarded = join(headers, &header::FORWARDED);
    if !forwarded.is_empty() {
        forwarded.extend_from_slice(b", ");
    }
    match client {
        IpAddr::V4(ip) => forwarded.extend_from_slice(format!("for={ip}").as_bytes()),
        IpAddr::V6(ip) => forwarded.extend_from_slice(format!("for=\"[{ip}]\"").as_bytes()),
    }
    if let Some(host) = &host {
        forwarded.extend_from_slice(b";host=\"");
        for byte in host.as_bytes() {
            if matches!(byte, b'"' | b'\\') {
                forwarded.push(b'\\');
            }
            forwarded.push(*byte);
        }
        forwarded.push(b'"');
    }
    forwarded.extend_from_slice(b";proto=");
    forwarded.extend_from_slice(proto.as_bytes());
    set(headers, header::FORWARDED, &forwarded);

    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(host) = host
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// Every value of `name`, joined with `", "` (a list header split over several lines is one list).
fn join(headers: &HeaderMap, name: &HeaderName) -> Vec<u8> {
    let mut joined = Vec::new();
    for value in headers.get_all(name) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    joined
}

/// Replaces `name` with `value` (left as it was if `value` is not a valid header value, which
/// cannot happen for bytes taken from valid values plus ASCII).
fn set(headers: &mut HeaderMap, name: HeaderName, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_and_named_headers_go() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "close"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
            ("host", "example.test"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-kept"]);
    }

    #[test]
    fn upgrade_keeps_upgrade() {
        let mut headers = map(&[("connection", "Upgrade, keep-alive"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers.get("upgrade").expect("upgrade"), "websocket");
        assert_eq!(headers.get("connection").expect("connection"), "upgrade");
        assert!(!is_upgrade_request(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade_request(&map(&[("connection", "upgrade")])));
    }

    #[test]
    fn connection_cannot_remove_host_or_length() {
        let mut headers =
            map(&[("connection", "host, content-length"), ("host", "a"), ("content-length", "3")]);
        strip_hop_by_hop(&mut headers, false);
        assert!(headers.contains_key("host") && headers.contains_key("content-length"));
    }

    #[test]
    fn forwarded_appends_and_keeps_outer_proxy_values() {
        let mut headers = map(&[
            ("host", "app.test:8080"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.2"),
            ("forwarded", "for=203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded(&mut headers, "::1".parse().expect("ip"), "http");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 198.51.100.2, ::1");
        assert_eq!(headers["forwarded"], "for=203.0.113.9, for=\"[::1]\";host=\"app.test:8080\";proto=http");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "app.test:8080");
    }

    #[test]
    fn a_request_over_tls_is_forwarded_as_https() {
        let mut headers = map(&[("host", "localhost:8443")]);
        add_forwarded(&mut headers, "127.0.0.1".parse().expect("ip"), "https");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert!(headers["forwarded"].to_str().expect("ascii").ends_with(";proto=https"));
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4() {
        let mut headers = HeaderMap::new();
        add_forwarded(&mut headers, "::ffff:192.0.2.7".parse().expect("ip"), "http");
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(headers["forwarded"], "for=192.0.2.7;proto=http");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(!headers.contains_key("x-forwarded-host"));
    }
}
