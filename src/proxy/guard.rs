//! Who may use the front door: the checks that keep a hostile web page from reading the app.
//!
//! Owns the decision, per request, of whether it is answered at all. Three attacks a page on any
//! site can make against a dev server on loopback, and the check for each:
//! - **DNS rebinding** (Vite's CVE-2025-24010, webpack-dev-server's CVE-2025-30359 class): the
//!   page makes its own name resolve to 127.0.0.1 and reads the server as same-origin. Only the
//!   `Host` header tells: a request is answered only when its host (the `Host` header, or the
//!   authority of an absolute-form target) is `localhost`, a `*.localhost` name, an IP literal,
//!   the host of the `--proxy` address, or a name the user allowed ([`AllowedHosts`]).
//! - **Cross-site WebSockets** (WebSockets are not subject to CORS): an `Upgrade` whose `Origin`
//!   names a site that is not local is refused. Local means `localhost`, `*.localhost`, a loopback
//!   IP, the proxy's host or an allowed name — not every IP literal: a page served from a bare
//!   public IP is what webpack-dev-server's CVE-2025-30360 let through.
//! - **Cross-site script includes** (CVE-2025-30359): a `<script src>` from another site reads the
//!   source through the page's globals. A request with `Sec-Fetch-Site: cross-site` and
//!   `Sec-Fetch-Mode: no-cors` is refused, and [`add_resource_policy`] marks every answer
//!   `Cross-Origin-Resource-Policy: same-site` unless the app chose its own, for browsers that do
//!   not send `Sec-Fetch-*`. Ports do not make a site: `localhost:5173` and `localhost:8080` are
//!   the same site.
//!
//! A `Host` or `Origin` that cannot be parsed is a `400`; so are HTTP/1.1 requests without `Host`
//! or with two (RFC 9112 §3.2). An HTTP/1.0 request without `Host` is taken as addressed to the
//! proxy itself. `--allowed-host all` ([`AllowedHosts::any`]) turns every check here off.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Uri, Version};

/// The names the front door answers for, beyond the ones always allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedHosts {
    /// `--allowed-host all`: every check of this module is off.
    pub any: bool,
    /// Exact names (lowercase), and suffixes written with a leading dot (`.example.test` allows
    /// `example.test` and every name under it).
    pub names: Vec<String>,
    /// The host part of the `--proxy` address (lowercase, no brackets).
    pub proxy_host: String,
}

/// What the checks decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answer it.
    Pass,
    /// `400`: the request itself is malformed.
    BadRequest(String),
    /// `403`: a check refused it.
    Refused(Refusal),
}

/// Why a request was refused, with what to type to allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Which check refused it.
    pub(crate) check: Check,
    /// The value refused, as sent (a host, an origin, the site of a load).
    pub(crate) value: String,
    /// The name to pass to `--allowed-host` (empty when no name would help).
    pub(crate) allow: String,
}

/// The three checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Check {
    /// The `Host` is not an allowed host.
    Host,
    /// An upgrade came from a page on another site.
    Origin,
    /// A cross-site page loaded the app's file as a script, image or style.
    CrossSiteLoad,
}

impl Check {
    /// The word in devserve's line and in the JSON event.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Check::Host => "host",
            Check::Origin => "origin",
            Check::CrossSiteLoad => "cross-site-load",
        }
    }
}

/// A host as a request names it: a lowercase name without its port, or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

impl AllowedHosts {
    /// The rules for a proxy on `proxy_host` with the `--allowed-host` values given (`all` turns
    /// the checks off).
    pub fn new(proxy_host: &str, given: &[String]) -> AllowedHosts {
        let any = given.iter().any(|name| name.eq_ignore_ascii_case("all"));
        let names = given.iter().filter(|n| !n.eq_ignore_ascii_case("all")).map(|n| normalise(n)).collect();
        let proxy_host = normalise(proxy_host.trim_start_matches('[').trim_end_matches(']'));
        AllowedHosts { any, names, proxy_host }
    }

    /// Whether a request for `host` may be answered.
    fn host_allowed(&self, host: &Host) -> bool {
        match host {
            Host::Ip(_) => true,
            Host::Name(name) => is_localhost(name) || self.named(name),
        }
    }

    /// Whether a page on `host` counts as a local site (an upgrade's `Origin`).
    fn site_allowed(&self, host: &Host) -> bool {
        match host {
            Host::Ip(ip) => ip.to_canonical().is_loopback() || ip.to_string() == self.proxy_host,
            Host::Name(name) => is_localhost(name) || self.named(name),
        }
    }

    /// The proxy's own host or a name the user allowed.
    fn named(&self, name: &str) -> bool {
        name == self.proxy_host
            || self.names.iter().any(|allowed| match allowed.strip_prefix('.') {
                Some(suffix) => name == suffix || name.ends_with(allowed.as_str()),
                None => name == allowed,
            })
    }

    /// Checks one request's head. `upgrade`: it asks to switch protocols.
    pub(crate) fn check(&self, version: Version, uri: &Uri, headers: &HeaderMap, upgrade: bool) -> Verdict {
        let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
        if hosts.len() > 1 {
            return Verdict::BadRequest("the request has more than one Host header".into());
        }
        let named = match (uri.authority(), hosts.first()) {
            // An absolute-form target names the host; a Host header beside it is ignored.
            (Some(authority), _) => Some(authority.as_str().to_owned()),
            (None, Some(value)) => match value.to_str() {
                Ok(text) => Some(text.to_owned()),
                Err(_) => return Verdict::BadRequest("the Host header is not ASCII text".into()),
            },
            (None, None) if version == Version::HTTP_10 || version == Version::HTTP_09 => None,
            (None, None) => return Verdict::BadRequest("an HTTP/1.1 request needs a Host header".into()),
        };
        let host = match named.as_deref().map(parse_authority) {
            None => None,
            Some(Ok(host)) => Some(host),
            Some(Err(why)) => return Verdict::BadRequest(format!("the Host header {why}")),
        };
        // An Origin that cannot be parsed is a 400 on every request (it reaches the app too).
        let origin = match headers.get(header::ORIGIN).map(|value| parse_origin(value.as_bytes())) {
            None => None,
            Some(Ok(origin)) => Some(origin),
            Some(Err(why)) => return Verdict::BadRequest(format!("the Origin header {why}")),
        };
        if self.any {
            return Verdict::Pass;
        }
        if let (Some(host), Some(text)) = (&host, &named)
            && !self.host_allowed(host)
        {
            return refuse(Check::Host, text, host);
        }
        if upgrade
            && let Some((text, site)) = &origin
            && !site.as_ref().is_some_and(|site| self.site_allowed(site))
        {
            return match site {
                Some(site) => refuse(Check::Origin, text, site),
                None => Verdict::Refused(Refusal {
                    check: Check::Origin,
                    value: text.clone(),
                    allow: String::new(),
                }),
            };
        }
        let fetch = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        if fetch("sec-fetch-site").is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
            && fetch("sec-fetch-mode").is_some_and(|v| v.eq_ignore_ascii_case("no-cors"))
        {
            let site = origin.as_ref().map_or("another site".to_owned(), |(text, _)| text.clone());
            return Verdict::Refused(Refusal {
                check: Check::CrossSiteLoad,
                value: site,
                allow: String::new(),
            });
        }
        Verdict::Pass
    }
}

/// A refusal of `value` (whose host is `host`), naming the flag that would allow it.
fn refuse(check: Check, value: &str, host: &Host) -> Verdict {
    let allow = match host {
        Host::Name(name) => name.clone(),
        Host::Ip(ip) => ip.to_string(),
    };
    Verdict::Refused(Refusal { check, value: value.to_owned(), allow })
}

/// Marks a response `Cross-Origin-Resource-Policy: same-site` unless the app set a policy of its
/// own: a browser that sends no `Sec-Fetch-*` still will not hand the body to another site's page.
pub(crate) fn add_resource_policy(headers: &mut HeaderMap) {
    const CORP: &str = "cross-origin-resource-policy";
    if !headers.contains_key(CORP) {
        headers.insert(CORP, HeaderValue::from_static("same-site"));
    }
}

/// `localhost`, `*.localhost` (RFC 6761: they resolve to loopback, never to another machine).
fn is_localhost(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

/// Lowercase, without one trailing dot (`localhost.` is `localhost`).
fn normalise(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    match name.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => name,
    }
}

/// Parses `host[:port]` as a `Host` header or an authority has it: a name, an IPv4 literal, or
/// an IPv6 literal in brackets; the port, if any, a number up to 65535.
fn parse_authority(text: &str) -> Result<Host, String> {
    let bad = |why: &str| Err(format!("`{}` {why}", text.escape_debug()));
    if text.is_empty() {
        return bad("is empty");
    }
    if text.contains('@') {
        return bad("has user information");
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else { return bad("has an unclosed `[`") };
        let Ok(ip) = inside.parse::<Ipv6Addr>() else { return bad("is not an IPv6 address in brackets") };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return bad("has text after `]`"),
            },
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (name, port) = match text.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        if name.contains(':') {
            return bad("is an IPv6 address without brackets");
        }
        let Some(host) = parse_name(name) else { return bad("is not a host name") };
        (host, port)
    };
    if let Some(port) = port
        && !port.is_empty()
        && (!port.bytes().all(|b| b.is_ascii_digit())
            || port.len() > 5
            || port.parse::<u32>().map_or(true, |p| p > 65535))
    {
        return bad("has an invalid port");
    }
    Ok(host)
}

/// A host name or IPv4 literal: letters, digits, `-`, `_` and `.`, not empty.
fn parse_name(name: &str) -> Option<Host> {
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(ip)));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    valid.then(|| Host::Name(normalise(name)))
}

/// Parses an `Origin` header: `scheme://host[:port]`, or `null` (an opaque origin: a sandboxed
/// frame, a `file:` page), which has no site. Returns the text and the site's host.
fn parse_origin(bytes: &[u8]) -> Result<(String, Option<Host>), String> {
    let Ok(text) = std::str::from_utf8(bytes) else { return Err("is not ASCII text".into()) };
    let text = text.trim();
    if text == "null" {
        return Ok((text.to_owned(), None));
    }
    let bad = || format!("`{}` is not an origin (scheme://host[:port])", text.escape_debug());
    let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
    let scheme_ok = !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.contains('/') {
        return Err(bad());
    }
    let host = parse_authority(rest).map_err(|_| bad())?;
    Ok((text.to_owned(), Some(host)))
}

#[cfg(test)]
mod unit {
    use super::*;

    fn rules(given: &[&str]) -> AllowedHosts {
        let given: Vec<String> = given.iter().map(|s| (*s).to_owned()).collect();
        AllowedHosts::new("127.0.0.1", &given)
    }

    fn head(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(value).expect("value"),
            );
        }
        headers
    }

    fn host(rules: &AllowedHosts, value: &str) -> Verdict {
        rules.check(Version::HTTP_11, &Uri::from_static("/"), &head(&[("host", value.as_bytes())]), false)
    }

    fn refused(verdict: &Verdict, check: Check) -> bool {
        matches!(verdict, Verdict::Refused(r) if r.check == check)
    }

    #[test]
    fn local_names_ip_literals_and_allowed_names_pass() {
        let rules = rules(&["dev.test", ".example.test"]);
        for value in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "app.localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
            "192.168.1.20:9000",
            "203.0.113.7",
            "dev.test:8080",
            "example.test",
            "api.example.test:1",
        ] {
            assert_eq!(host(&rules, value), Verdict::Pass, "{value}");
        }
    }

    #[test]
    fn other_names_are_refused_with_the_flag_that_allows_them() {
        let rules = rules(&["dev.test"]);
        for value in
            ["evil.example", "evil.example:8080", "localhost.evil.example", "notdev.test", "dev.test.evil"]
        {
            assert!(refused(&host(&rules, value), Check::Host), "{value}");
        }
        let Verdict::Refused(refusal) = host(&rules, "Evil.Example:8080") else { panic!("refused") };
        assert_eq!((refusal.value.as_str(), refusal.allow.as_str()), ("Evil.Example:8080", "evil.example"));
        let absolute = Uri::from_static("http://evil.example/");
        let verdict = rules.check(Version::HTTP_11, &absolute, &head(&[("host", b"localhost")]), false);
        assert!(refused(&verdict, Check::Host), "the absolute-form target's host counts");
        assert_eq!(
            AllowedHosts::new("devbox.lan", &[]).check(
                Version::HTTP_11,
                &Uri::from_static("/"),
                &head(&[("host", b"devbox.lan:8080")]),
                false
            ),
            Verdict::Pass,
            "the proxy's own host"
        );
    }

    #[test]
    fn all_turns_the_checks_off_but_not_the_parsing() {
        let rules = rules(&["all"]);
        assert_eq!(host(&rules, "evil.example"), Verdict::Pass);
        assert!(matches!(host(&rules, "[::1"), Verdict::BadRequest(_)));
    }

    #[test]
    fn malformed_or_missing_hosts_are_bad_requests() {
        let rules = rules(&[]);
        for value in ["", "[::1", "localhost:99999", "localhost:8x", "a b", "::1", "[::1]x", "user@localhost"]
        {
            assert!(matches!(host(&rules, value), Verdict::BadRequest(_)), "{value:?}");
        }
        let high = head(&[("host", b"caf\xc3\xa9.localhost")]);
        assert!(matches!(
            rules.check(Version::HTTP_11, &Uri::from_static("/"), &high, false),
            Verdict::BadRequest(_)
        ));
        let none = HeaderMap::new();
        let root = Uri::from_static("/");
        assert!(matches!(rules.check(Version::HTTP_11, &root, &none, false), Verdict::BadRequest(_)));
        assert_eq!(
            rules.check(Version::HTTP_10, &root, &none, false),
            Verdict::Pass,
            "HTTP/1.0: the proxy itself"
        );
        let two = head(&[("host", b"localhost"), ("host", b"localhost")]);
        assert!(matches!(rules.check(Version::HTTP_11, &root, &two, false), Verdict::BadRequest(_)));
    }

    fn upgrade(rules: &AllowedHosts, origin: &[u8]) -> Verdict {
        let headers = head(&[("host", b"127.0.0.1:8080"), ("origin", origin)]);
        rules.check(Version::HTTP_11, &Uri::from_static("/ws"), &headers, true)
    }

    #[test]
    fn upgrades_from_pages_on_other_sites_are_refused() {
        let rules = rules(&["dev.test"]);
        for origin in [
            "http://localhost:5173",
            "http://app.localhost",
            "http://127.0.0.1:5173",
            "http://127.8.9.1",
            "http://[::1]:3000",
            "https://dev.test",
        ] {
            assert_eq!(upgrade(&rules, origin.as_bytes()), Verdict::Pass, "{origin}");
        }
        for origin in ["http://evil.example", "http://203.0.113.7", "http://192.168.1.9:8080", "null"] {
            assert!(refused(&upgrade(&rules, origin.as_bytes()), Check::Origin), "{origin}");
        }
        for origin in [&b""[..], b"localhost", b"http://", b"http://[::1", b"http://a:99999", b"http://\xff"]
        {
            assert!(matches!(upgrade(&rules, origin), Verdict::BadRequest(_)), "{origin:?}");
        }
        let plain = head(&[("host", b"localhost"), ("origin", b"http://evil.example")]);
        assert_eq!(
            rules.check(Version::HTTP_11, &Uri::from_static("/"), &plain, false),
            Verdict::Pass,
            "only upgrades are checked by Origin (CORS guards the rest)"
        );
    }

    #[test]
    fn cross_site_no_cors_loads_are_refused() {
        let rules = rules(&[]);
        let load = |site: &[u8], mode: &[u8]| {
            let headers =
                head(&[("host", b"localhost:8080"), ("sec-fetch-site", site), ("sec-fetch-mode", mode)]);
            rules.check(Version::HTTP_11, &Uri::from_static("/app.js"), &headers, false)
        };
        assert!(refused(&load(b"cross-site", b"no-cors"), Check::CrossSiteLoad));
        assert_eq!(load(b"same-site", b"no-cors"), Verdict::Pass, "localhost:5173 → localhost:8080");
        assert_eq!(load(b"cross-site", b"navigate"), Verdict::Pass, "a link to the app");
        assert_eq!(load(b"cross-site", b"cors"), Verdict::Pass, "CORS decides");
    }

    #[test]
    fn the_resource_policy_is_added_unless_the_app_set_one() {
        let mut headers = HeaderMap::new();
        add_resource_policy(&mut headers);
        assert_eq!(headers["cross-origin-resource-policy"], "same-site");
        let mut own = head(&[("cross-origin-resource-policy", b"cross-origin")]);
        add_resource_policy(&mut own);
        assert_eq!(own["cross-origin-resource-policy"], "cross-origin");
    }
}
