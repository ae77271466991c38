//! The responses the proxy makes itself: nothing ready (`503`), the build failed (`502` with the
//! build's output), the upstream dropped the request (`502`), an unreadable request (`400`).
//!
//! Contract: a client that accepts `text/html` gets a small HTML page, any other a `text/plain`
//! body; both say the same. Text from outside (hold reasons, build output, error messages) is
//! always HTML-escaped: it is text, never markup. The build output's ANSI SGR colours become
//! `<span style=…>` in HTML and are stripped in plain text; every other escape sequence and
//! control character (but newline and tab) is dropped. Every page is `Cache-Control: no-store`.
//!
//! For the browser overlay the same output is turned into [`Run`]s: pieces of plain text with the
//! CSS of their colours and a flag for `path:line:col` locations, which the client puts into
//! `<span>`s as text (never as markup).

use std::fmt::Write as _;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::{ResponseBody, full};
use super::guard::{Check, Refusal};

/// At most this much of the build output is shown (its end).
const OUTPUT_TAIL: usize = 32 * 1024;

/// A failed build, as [`super::ProxyCommand::BuildFailed`] described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildFailure {
    /// The build command.
    pub(crate) command: String,
    /// How it ended.
    pub(crate) status: String,
    /// The tail of its output (may contain ANSI colours).
    pub(crate) output: String,
}

/// Whether the client prefers an HTML page (its `Accept` names `text/html`).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|value| value.as_bytes().to_ascii_lowercase().windows(9).any(|w| w == b"text/html"))
}

/// `503`: nothing was ready within the hold timeout.
pub(crate) fn not_ready(reason: &str, html: bool) -> Response<ResponseBody> {
    let mut response =
        simple(StatusCode::SERVICE_UNAVAILABLE, "devserve: the app is not ready", reason, html);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `502`: the upstream failed the request.
pub(crate) fn bad_gateway(reason: &str, html: bool) -> Response<ResponseBody> {
    simple(StatusCode::BAD_GATEWAY, "devserve: the app did not answer", reason, html)
}

/// `400`: the request itself could not be read.
pub(crate) fn bad_request(reason: &str, html: bool) -> Response<ResponseBody> {
    simple(StatusCode::BAD_REQUEST, "devserve: bad request", reason, html)
}

/// `403`: a check of [`super::guard`] refused the request; the page says which, and what would
/// allow it.
pub(crate) fn forbidden(refusal: &Refusal, html: bool) -> Response<ResponseBody> {
    let message = refusal_text(refusal);
    simple(StatusCode::FORBIDDEN, "devserve: refused", &message, html)
}

/// What [`forbidden`] says, in one sentence (the page and devserve's line share it).
pub(crate) fn refusal_text(refusal: &Refusal) -> String {
    let Refusal { check, value, allow } = refusal;
    let why = match check {
        Check::Host => format!(
            "`{value}` is not an allowed host: a page on another site could reach this server under \
             that name through DNS rebinding"
        ),
        Check::Origin => format!(
            "a page on {value} asked to open a WebSocket (or another upgrade); only pages on local \
             sites may"
        ),
        Check::CrossSiteLoad => {
            format!("a page on {value} loaded this file as a script, style or image from another site")
        }
    };
    if allow.is_empty() {
        format!("{why}. To turn the checks off: --allowed-host all")
    } else {
        format!("{why}. To allow it: --allowed-host {allow}")
    }
}

/// `504`: the app did not answer within `--upstream-timeout`.
pub(crate) fn gateway_timeout(reason: &str, html: bool) -> Response<ResponseBody> {
    simple(StatusCode::GATEWAY_TIMEOUT, "devserve: the app did not answer in time", reason, html)
}

/// `502`: the last build failed and nothing serves.
pub(crate) fn build_failed(failure: &BuildFailure, html: bool) -> Response<ResponseBody> {
    let title = "devserve: the build failed";
    let output = tail(&failure.output);
    if html {
        let mut body = String::new();
        let _ = write!(
            body,
            "<p><code>{}</code> failed: {}</p>\n<pre>{}</pre>",
            escape_html(&failure.command),
            escape_html(&failure.status),
            ansi_to_html(output)
        );
        page(StatusCode::BAD_GATEWAY, title, &body)
    } else {
        let text =
            format!("{title}\n\n{} failed: {}\n\n{}\n", failure.command, failure.status, strip_ansi(output));
        plain(StatusCode::BAD_GATEWAY, text)
    }
}

fn simple(status: StatusCode, title: &str, message: &str, html: bool) -> Response<ResponseBody> {
    if html {
        page(status, title, &format!("<p>{}</p>", escape_html(message)))
    } else {
        plain(status, format!("{title}: {message}\n"))
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<ResponseBody> {
    let title = escape_html(title);
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\
         body{{font:15px/1.5 system-ui,sans-serif;margin:2em;color:#222}}\
         pre{{background:#1e1e1e;color:#ddd;padding:1em;overflow:auto;white-space:pre-wrap}}\
         </style></head>\n<body><h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    respond(status, "text/html; charset=utf-8", html)
}

fn plain(status: StatusCode, text: String) -> Response<ResponseBody> {
    respond(status, "text/plain; charset=utf-8", text)
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The last [`OUTPUT_TAIL`] bytes of `output`, cut at a line start when one is near.
pub(crate) fn tail(output: &str) -> &str {
    if output.len() <= OUTPUT_TAIL {
        return output;
    }
    let mut start = output.len() - OUTPUT_TAIL;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    let cut = &output[start..];
    match cut.find('\n') {
        Some(newline) if newline < 1024 => &cut[newline + 1..],
        _ => cut,
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'`.
pub(crate) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut escaped, c);
    }
    escaped
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => out.push(c),
    }
}

/// A piece of terminal output.
enum Piece<'a> {
    /// A printable character (or newline, tab).
    Char(char),
    /// The parameters of an SGR sequence (`ESC [ params m`).
    Sgr(&'a str),
}

/// Splits terminal output into characters and SGR sequences, dropping every other escape
/// sequence (CSI, OSC, two-character) and control character.
fn scan(text: &str, mut on: impl FnMut(Piece<'_>)) {
    let bytes = text.as_bytes();
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        if c != '\x1b' {
            if !c.is_control() || c == '\n' || c == '\t' {
                on(Piece::Char(c));
            }
            continue;
        }
        match chars.peek().map(|(_, next)| *next) {
            Some('[') => {
                chars.next();
                let start = index + 2;
                let mut end = None;
                for (at, c) in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        end = Some((at, c));
                        break;
                    }
                }
                if let Some((at, 'm')) = end
                    && let Some(params) = text.get(start..at)
                {
                    on(Piece::Sgr(params));
                }
            }
            Some(']') => {
                // OSC (hyperlinks, titles): up to BEL or ESC \.
                chars.next();
                while let Some((at, c)) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' && bytes.get(at + 1) == Some(&b'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
}

/// Terminal output as plain text: escape sequences and control characters removed.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    scan(text, |piece| {
        if let Piece::Char(c) = piece {
            out.push(c);
        }
    });
    out
}

/// Terminal output as HTML: escaped, SGR colours and weights as `<span style=…>`.
pub(crate) fn ansi_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut style = Style::default();
    let mut open: Option<String> = None;
    let mut dirty = false;
    scan(text, |piece| match piece {
        Piece::Sgr(params) => {
            style.apply(params);
            dirty = true;
        }
        Piece::Char(c) => {
            if dirty {
                dirty = false;
                let css = style.css();
                if open.as_deref() != Some(css.as_str()) {
                    if open.take().is_some() {
                        out.push_str("</span>");
                    }
                    if !css.is_empty() {
                        let _ = write!(out, "<span style=\"{css}\">");
                        open = Some(css);
                    }
                }
            }
            push_escaped(&mut out, c);
        }
    });
    if open.is_some() {
        out.push_str("</span>");
    }
    out
}

/// A piece of terminal output with one style: plain text (escape sequences and control
/// characters removed), the CSS of its SGR style (empty for none), and whether it is a
/// `path:line[:col]` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    /// The text, as text.
    pub(crate) text: String,
    /// CSS declarations (`color:#cd3131;font-weight:bold`), or empty.
    pub(crate) style: String,
    /// The text is a source location.
    pub(crate) location: bool,
}

/// Terminal output as [`Run`]s: the same colours as [`ansi_to_html`], and source locations
/// (`src/main.rs:3:7`, `app.py:12`) as runs of their own, found in the plain text (so a location
/// split by colour codes is still one).
pub(crate) fn ansi_runs(text: &str) -> Vec<Run> {
    let mut chars: Vec<char> = Vec::with_capacity(text.len());
    let mut styles: Vec<usize> = Vec::with_capacity(text.len());
    let mut table: Vec<String> = vec![String::new()];
    let mut style = Style::default();
    let mut current = 0;
    scan(text, |piece| match piece {
        Piece::Sgr(params) => {
            style.apply(params);
            let css = style.css();
            current = match table.iter().position(|known| *known == css) {
                Some(index) => index,
                None => {
                    table.push(css);
                    table.len() - 1
                }
            };
        }
        Piece::Char(c) => {
            chars.push(c);
            styles.push(current);
        }
    });
    let located = locations(&chars);
    let mut runs: Vec<Run> = Vec::new();
    for (index, c) in chars.iter().enumerate() {
        let (style, location) = (styles[index], located[index]);
        match runs.last_mut() {
            Some(run) if index > 0 && styles[index - 1] == style && located[index - 1] == location => {
                run.text.push(*c);
            }
            _ => runs.push(Run { text: c.to_string(), style: table[style].clone(), location }),
        }
    }
    runs
}

/// Marks the characters that belong to a `path:line[:col]` location: a path (letters, digits and
/// `_-./\~@+`, with a letter and a `.` or `/` in it) followed by `:LINE` and optionally `:COL`.
fn locations(chars: &[char]) -> Vec<bool> {
    let is_path = |c: char| c.is_alphanumeric() || "_-./\\~@+".contains(c);
    let digits_from = |mut at: usize| {
        let start = at;
        while at < chars.len() && chars[at].is_ascii_digit() {
            at += 1;
        }
        (at > start).then_some(at)
    };
    let mut marked = vec![false; chars.len()];
    let mut index = 0;
    while index < chars.len() {
        if chars[index] != ':' {
            index += 1;
            continue;
        }
        let colon = index;
        let Some(line_end) = digits_from(colon + 1) else {
            index += 1;
            continue;
        };
        let mut start = colon;
        while start > 0 && is_path(chars[start - 1]) {
            start -= 1;
        }
        let path = &chars[start..colon];
        let plausible = path.iter().any(|c| c.is_alphabetic())
            && path.iter().any(|c| *c == '.' || *c == '/')
            && path.last().is_none_or(|c| *c != '.');
        if !plausible {
            index = line_end;
            continue;
        }
        let mut end = line_end;
        if end < chars.len()
            && chars[end] == ':'
            && let Some(column_end) = digits_from(end + 1)
        {
            end = column_end;
        }
        marked[start..end].iter_mut().for_each(|m| *m = true);
        index = end;
    }
    marked
}

/// The 16 basic colours (a dark-background palette).
const PALETTE: [&str; 16] = [
    "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5", "#666666",
    "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
];

/// The SGR state that maps to CSS.
#[derive(Default)]
struct Style {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    foreground: Option<String>,
    background: Option<String>,
}

impl Style {
    fn apply(&mut self, params: &str) {
        let codes: Vec<u32> = params.split([';', ':']).map(|code| code.parse().unwrap_or(0)).collect();
        let mut codes = codes.into_iter();
        while let Some(code) = codes.next() {
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.foreground = Some(PALETTE[(code - 30) as usize].to_string()),
                90..=97 => self.foreground = Some(PALETTE[(code - 90 + 8) as usize].to_string()),
                40..=47 => self.background = Some(PALETTE[(code - 40) as usize].to_string()),
                100..=107 => self.background = Some(PALETTE[(code - 100 + 8) as usize].to_string()),
                39 => self.foreground = None,
                49 => self.background = None,
                38 => self.foreground = extended_colour(&mut codes),
                48 => self.background = extended_colour(&mut codes),
                _ => {}
            }
        }
    }

    fn css(&self) -> String {
        let mut css = String::new();
        if self.bold {
            css.push_str("font-weight:bold;");
        }
        if self.dim {
            css.push_str("opacity:0.7;");
        }
        if self.italic {
            css.push_str("font-style:italic;");
        }
        if self.underline {
            css.push_str("text-decoration:underline;");
        }
        if let Some(colour) = &self.foreground {
            let _ = write!(css, "color:{colour};");
        }
        if let Some(colour) = &self.background {
            let _ = write!(css, "background-color:{colour};");
        }
        css.pop();
        css
    }
}

/// `5;n` (256 colours) or `2;r;g;b` (true colour) after a 38 or 48.
fn extended_colour(codes: &mut impl Iterator<Item = u32>) -> Option<String> {
    match codes.next()? {
        5 => {
            let n = codes.next()?;
            Some(match n {
                0..=15 => PALETTE[n as usize].to_string(),
                16..=231 => {
                    const LEVELS: [u32; 6] = [0, 95, 135, 175, 215, 255];
                    let i = (n - 16) as usize;
                    format!("#{:02x}{:02x}{:02x}", LEVELS[i / 36], LEVELS[(i / 6) % 6], LEVELS[i % 6])
                }
                232..=255 => {
                    let grey = 8 + (n - 232) * 10;
                    format!("#{grey:02x}{grey:02x}{grey:02x}")
                }
                _ => return None,
            })
        }
        2 => {
            let (r, g, b) = (codes.next()?, codes.next()?, codes.next()?);
            Some(format!("#{:02x}{:02x}{:02x}", r.min(255), g.min(255), b.min(255)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
    }

    #[test]
    fn sgr_becomes_spans_and_text_stays_text() {
        let html = ansi_to_html("\x1b[1m\x1b[31merror\x1b[0m: <script>&\n\x1b[38;5;196mx\x1b[39m y");
        assert_eq!(
            html,
            "<span style=\"font-weight:bold;color:#cd3131\">error</span>: &lt;script&gt;&amp;\n\
             <span style=\"color:#ff0000\">x</span> y"
        );
    }

    #[test]
    fn other_sequences_and_controls_are_dropped() {
        let text = "a\x1b[2Kb\x1b]8;;http://x\x1b\\link\x1b]8;;\x07\rc\x07\td\x1b[38;2;1;2;3mz";
        assert_eq!(strip_ansi(text), "ablinkc\tdz");
        assert_eq!(ansi_to_html(text), "ablinkc\td<span style=\"color:#010203\">z</span>");
        assert_eq!(strip_ansi("cut\x1b["), "cut");
    }

    #[test]
    fn long_output_keeps_its_end() {
        let output = format!("{}\nlast line é", "x".repeat(OUTPUT_TAIL * 2));
        assert!(tail(&output).ends_with("last line é"));
        assert!(tail(&output).len() <= OUTPUT_TAIL);
    }

    fn run(text: &str, style: &str, location: bool) -> Run {
        Run { text: text.into(), style: style.into(), location }
    }

    #[test]
    fn runs_carry_colours_and_locations_as_text() {
        let runs = ansi_runs(
            "\x1b[1m\x1b[31merror\x1b[0m: <b>\n  \x1b[34m-->\x1b[0m src/ma\x1b[1min.rs:3:7\x1b[0m\nat 12:30, app.py:9 ok",
        );
        assert_eq!(
            runs,
            [
                run("error", "font-weight:bold;color:#cd3131", false),
                run(": <b>\n  ", "", false),
                run("-->", "color:#2472c8", false),
                run(" ", "", false),
                run("src/ma", "", true),
                run("in.rs:3:7", "font-weight:bold", true),
                run("\nat 12:30, ", "", false),
                run("app.py:9", "", true),
                run(" ok", "", false),
            ]
        );
    }

    #[test]
    fn locations_need_a_plausible_path() {
        let found = |text: &str| -> Vec<String> {
            ansi_runs(text).into_iter().filter(|r| r.location).map(|r| r.text).collect()
        };
        assert_eq!(found("tests/a_b.rs:10:2: error"), ["tests/a_b.rs:10:2"]);
        assert_eq!(found("./lib/x.go:4: y"), ["./lib/x.go:4"]);
        assert_eq!(found("time 12:30:01 v1.2 error:3 ..:4 Makefile:3"), Vec::<String>::new());
    }

    #[test]
    fn accept_decides_html() {
        let mut headers = HeaderMap::new();
        assert!(!wants_html(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("TEXT/HTML,application/xhtml+xml;q=0.9"));
        assert!(wants_html(&headers));
    }
}
