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
//! CSS of their colours and a flag for source locations (`path:line:col`, Node's stack frames,
//! Python's `File "app.py", line 5`: see [`locations`]), which the client puts into `<span>`s as
//! text (never as markup).

use std::fmt::Write as _;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::guard::{Check, Refusal};
use super::response::{ResponseBody, full};

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

/// `404`: no service's route takes the path (services behind one front door, none at `/`).
pub(crate) fn no_route(path: &str, routes: &[String], html: bool) -> Response<ResponseBody> {
    let reason = format!("no service is routed at {path}; the routes are: {}", routes.join(", "));
    simple(StatusCode::NOT_FOUND, "devserve: no service here", &reason, html)
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
/// (`src/main.rs:3:7`, `app.py:12`, `"app.py", line 12`: see [`locations`]) as runs of their own,
/// found in the plain text (so a location split by colour codes is still one).
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

/// Marks the characters that belong to a source location, in the forms compilers and runtimes
/// print:
/// - `path:LINE` or `path:LINE:COL`: rustc's ` --> src/main.rs:3:7`, Go's `./main.go:12:5:` and
///   `main.go:12:`, Node's `at f (/app/x.js:12:5)` and `at /app/x.js:12:5`. The path is letters,
///   digits and `_-./\~@+`, with a letter and a `.` or `/` in it, not ending with `.`; the
///   location is not followed by `/`, a letter or a digit (`example.com:8080/api` is an address).
///   A path right after a `:` is part of something else (`http://host:8080/`, `node:internal/…`,
///   IPv6's `fe80::1:2:3`) and is not marked, but for a `file:` URL (`file:///app/x.mjs:3:7`) and
///   a Windows drive (`C:\src\x.rs:3:4`), which are marked whole.
/// - Python's `File "app.py", line 5`: marked from the opening quote to the line number
///   (`"app.py", line 5`), the quoted path any text but a `<…>` name (`"<stdin>"`).
fn locations(chars: &[char]) -> Vec<bool> {
    let is_path = |c: char| c.is_alphanumeric() || "_-./\\~@+".contains(c);
    let mut marked = vec![false; chars.len()];
    let mut index = 0;
    while index < chars.len() {
        if chars[index] != ':' {
            index += 1;
            continue;
        }
        let colon = index;
        let Some(line_end) = digits_from(chars, colon + 1) else {
            index += 1;
            continue;
        };
        let mut start = colon;
        while start > 0 && is_path(chars[start - 1]) {
            start -= 1;
        }
        if start > 0 && chars[start - 1] == ':' {
            // A scheme or a drive letter before the path, or another piece of an address.
            let mut word = start - 1;
            while word > 0 && chars[word - 1].is_ascii_alphabetic() {
                word -= 1;
            }
            let scheme: String = chars[word..start - 1].iter().collect();
            let alone = word == 0 || !is_path(chars[word - 1]);
            let drive = scheme.len() == 1 && matches!(chars[start], '\\' | '/');
            let file = scheme.eq_ignore_ascii_case("file") && chars[start..].starts_with(&['/', '/']);
            if alone && (drive || file) {
                start = word;
            } else {
                index = line_end;
                continue;
            }
        }
        let mut end = line_end;
        if end < chars.len()
            && chars[end] == ':'
            && let Some(column_end) = digits_from(chars, end + 1)
        {
            end = column_end;
        }
        let address = chars.get(end).is_some_and(|c| *c == '/' || c.is_alphanumeric());
        if !plausible_path(&chars[start..colon]) || address {
            index = end;
            continue;
        }
        marked[start..end].iter_mut().for_each(|m| *m = true);
        index = end;
    }
    python_locations(chars, &mut marked);
    marked
}

/// Python's traceback lines, `File "PATH", line N`: marks `"PATH", line N`.
fn python_locations(chars: &[char], marked: &mut [bool]) {
    const FILE: [char; 6] = ['F', 'i', 'l', 'e', ' ', '"'];
    const LINE: [char; 8] = ['"', ',', ' ', 'l', 'i', 'n', 'e', ' '];
    let mut index = 0;
    while index < chars.len() {
        let here = &chars[index..];
        if !here.starts_with(&FILE) || (index > 0 && chars[index - 1].is_alphanumeric()) {
            index += 1;
            continue;
        }
        let quote = index + FILE.len() - 1;
        let Some(length) = chars[quote + 1..].iter().position(|c| *c == '"' || *c == '\n') else {
            return;
        };
        let close = quote + 1 + length;
        let path = &chars[quote + 1..close];
        let line_end =
            if chars[close..].starts_with(&LINE) { digits_from(chars, close + LINE.len()) } else { None };
        match line_end {
            Some(end) if plausible_path(path) && path.first() != Some(&'<') => {
                marked[quote..end].iter_mut().for_each(|m| *m = true);
                index = end;
            }
            _ => index = close,
        }
    }
}

/// The end of the digits that start at `at`, if there is at least one.
fn digits_from(chars: &[char], mut at: usize) -> Option<usize> {
    let start = at;
    while at < chars.len() && chars[at].is_ascii_digit() {
        at += 1;
    }
    (at > start).then_some(at)
}

/// A path that could be a file's: a letter and a `.` or `/` in it, and not ending with `.`
/// (`v1.2`, `Makefile` and `..` are not taken for one).
fn plausible_path(path: &[char]) -> bool {
    path.iter().any(|c| c.is_alphabetic())
        && path.iter().any(|c| matches!(*c, '.' | '/'))
        && path.last().is_none_or(|c| *c != '.')
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

    /// The texts marked as locations in `text` (a location split by colours joined again).
    fn found(text: &str) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let mut after_location = false;
        for run in ansi_runs(text) {
            match found.last_mut() {
                Some(last) if run.location && after_location => last.push_str(&run.text),
                _ if run.location => found.push(run.text),
                _ => {}
            }
            after_location = run.location;
        }
        found
    }

    #[test]
    fn locations_need_a_plausible_path() {
        assert_eq!(found("tests/a_b.rs:10:2: error"), ["tests/a_b.rs:10:2"]);
        assert_eq!(found("./lib/x.go:4: y"), ["./lib/x.go:4"]);
        assert_eq!(found("time 12:30:01 v1.2 error:3 ..:4 Makefile:3"), Vec::<String>::new());
    }

    #[test]
    fn python_traceback_locations_are_marked_from_the_quote_to_the_line() {
        let traceback = "Traceback (most recent call last):\n  File \"/srv/my app/app.py\", line 12, in \
                         <module>\n    main()\n  File \"app.py\", line 5, in main\nNameError: name 'x'";
        assert_eq!(found(traceback), ["\"/srv/my app/app.py\", line 12", "\"app.py\", line 5"]);
        assert_eq!(found("  File \"C:\\app\\views.py\", line 7"), ["\"C:\\app\\views.py\", line 7"]);
        // A coloured traceback (Python 3.13's) is still one location.
        assert_eq!(found("File \x1b[35m\"app.py\"\x1b[0m, line \x1b[35m5\x1b[0m"), ["\"app.py\", line 5"]);
    }

    #[test]
    fn python_non_locations_are_not_marked() {
        assert_eq!(found("  File \"<stdin>\", line 1, in <module>"), Vec::<String>::new());
        assert_eq!(found("File \"<frozen importlib._bootstrap>\", line 1360"), Vec::<String>::new());
        assert_eq!(found("File \"app.py\", in main"), Vec::<String>::new(), "no line");
        assert_eq!(found("ProfileFile \"app.py\", line 5"), Vec::<String>::new(), "not the word File");
        assert_eq!(found("File \"app.py\nline 5"), Vec::<String>::new(), "a quote left open");
        assert_eq!(found("File \"v1\", line 5"), Vec::<String>::new(), "not a path");
    }

    #[test]
    fn node_stack_locations_are_marked() {
        let stack = "TypeError: x is not a function\n    at handler (/srv/app/routes.js:12:5)\n    at \
                     /srv/app/server.js:40:3\n    at Object.<anonymous> (C:\\app\\main.js:1:9)\n    at \
                     async file:///srv/app/esm.mjs:3:7";
        assert_eq!(
            found(stack),
            [
                "/srv/app/routes.js:12:5",
                "/srv/app/server.js:40:3",
                "C:\\app\\main.js:1:9",
                "file:///srv/app/esm.mjs:3:7"
            ]
        );
    }

    #[test]
    fn node_internals_are_not_marked() {
        assert_eq!(
            found("    at Module._compile (node:internal/modules/cjs/loader:1105:14)"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn go_locations_are_marked_with_or_without_a_column() {
        let output = "# example.com/app\n./main.go:12:5: undefined: x\nmain.go:12: missing return\n\
                      \t/home/me/app/handler.go:33 +0x1d\n--- FAIL: TestX (0.00s)\n    x_test.go:9: want 2";
        assert_eq!(
            found(output),
            ["./main.go:12:5", "main.go:12", "/home/me/app/handler.go:33", "x_test.go:9"]
        );
    }

    #[test]
    fn times_urls_and_ipv6_addresses_are_not_locations() {
        for text in [
            "at 12:30:45 the build failed",
            "2024-05-01T12:30:45.123Z build.log",
            "listening on http://host:8080/",
            "GET http://localhost:3000/api/x.json:12 failed",
            "see https://example.com:8443/docs and ws://127.0.0.1:9000",
            "proxying to example.com:8080/api",
            "bound to [::1]:8080 and [fe80::1%eth0]:443",
            "fe80::1:2:3 2001:db8::8a2e:370:7334 ::ffff:192.0.2.1:80",
            "2001:db8:1:2",
        ] {
            assert_eq!(found(text), Vec::<String>::new(), "{text:?}");
        }
    }

    #[test]
    fn accept_decides_html() {
        let mut headers = HeaderMap::new();
        assert!(!wants_html(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("TEXT/HTML,application/xhtml+xml;q=0.9"));
        assert!(wants_html(&headers));
    }
}
