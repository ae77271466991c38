//! The output of a child process, line by line, each line stamped with its arrival time, and the
//! JSON events among those lines (`--log-format json`: one object a line on stderr, with its kind
//! under `"event"`).

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::Value;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, without its newline.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub stream: Stream,
    pub text: String,
}

/// A line's index in the capture, when it arrived, and what it says (text or event).
#[derive(Debug, Clone)]
pub struct Found<T> {
    pub index: usize,
    pub at: Instant,
    pub item: T,
}

#[derive(Default)]
struct Lines {
    lines: Vec<Line>,
    /// Every line followed by `\n`, in arrival order (stdout and stderr merged).
    text: String,
    /// Streams still being read (not at their end yet).
    open: usize,
}

/// Lines captured from stdout and stderr, in the order they arrived. Cloning shares the capture.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Lines>>);

impl Capture {
    /// Captures the child's piped stdout and stderr (whichever are piped) from now on.
    pub fn attach(child: &mut std::process::Child) -> Capture {
        let capture = Capture::default();
        if let Some(stdout) = child.stdout.take() {
            capture.follow(stdout, Stream::Stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            capture.follow(stderr, Stream::Stderr);
        }
        capture
    }

    /// Reads `stream` line by line on a thread of its own until it ends.
    pub fn follow(&self, stream: impl Read + Send + 'static, which: Stream) {
        let capture = self.clone();
        let echo = std::env::var_os("DEVSERVE_TEST_ECHO").is_some();
        self.lock().open += 1;
        std::thread::spawn(move || {
            // Lossy: a test about escaping must see what was printed, even if it is not UTF-8.
            let mut reader = BufReader::new(stream);
            let mut bytes = Vec::new();
            while reader.read_until(b'\n', &mut bytes).is_ok_and(|n| n > 0) {
                // As `BufRead::lines`: without the `\n` or `\r\n`.
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                }
                let text = String::from_utf8_lossy(&bytes).into_owned();
                bytes.clear();
                if echo {
                    eprintln!("  | {text}");
                }
                let mut lines = capture.lock();
                lines.text.push_str(&text);
                lines.text.push('\n');
                lines.lines.push(Line { at: Instant::now(), stream: which, text });
            }
            capture.lock().open -= 1;
        });
    }

    /// Whether every followed stream has ended: all that was written is captured.
    pub fn closed(&self) -> bool {
        self.lock().open == 0
    }

    fn lock(&self) -> MutexGuard<'_, Lines> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything so far, one line after another.
    pub fn text(&self) -> String {
        self.lock().text.clone()
    }

    /// How many lines so far: a mark to search from later.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn lines(&self) -> Vec<Line> {
        self.lock().lines.clone()
    }

    /// How many times `needle` appears in the text so far.
    pub fn count(&self, needle: &str) -> usize {
        self.lock().text.matches(needle).count()
    }

    /// The first line from index `from` on for which `matches` holds.
    pub fn find(&self, from: usize, matches: impl Fn(&str) -> bool) -> Option<Found<String>> {
        let lines = self.lock();
        let mut found = lines.lines.iter().enumerate().skip(from).filter(|(_, line)| matches(&line.text));
        found.next().map(|(index, line)| Found { index, at: line.at, item: line.text.clone() })
    }

    /// Arrival times of the lines from index `from` on for which `matches` holds.
    pub fn times(&self, from: usize, matches: impl Fn(&str) -> bool) -> Vec<Instant> {
        let lines = self.lock();
        lines.lines.iter().skip(from).filter(|line| matches(&line.text)).map(|line| line.at).collect()
    }

    /// The JSON events so far (lines that parse as an object with an `"event"`), in order.
    pub fn events(&self) -> Vec<Value> {
        self.lock().lines.iter().filter_map(|line| parse_event(&line.text)).collect()
    }

    /// The first event of `kind` from line `from` on for which `matches` holds.
    pub fn find_event(
        &self,
        from: usize,
        kind: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<Found<Value>> {
        let lines = self.lock();
        lines.lines.iter().enumerate().skip(from).find_map(|(index, line)| {
            let event = parse_event(&line.text)?;
            (event_kind(&event) == kind && matches(&event)).then_some(Found {
                index,
                at: line.at,
                item: event,
            })
        })
    }

    /// The last `n` lines, joined with ` / `: context for an error message.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lock();
        let start = lines.lines.len().saturating_sub(n);
        lines.lines[start..].iter().map(|line| line.text.as_str()).collect::<Vec<_>>().join(" / ")
    }
}

/// A line of `--log-format json` output as a JSON object, or `None` for any other line (the
/// app's own output, a human line).
pub fn parse_event(line: &str) -> Option<Value> {
    if !line.starts_with('{') {
        return None;
    }
    let value: Value = serde_json::from_str(line).ok()?;
    value.get("event")?.is_string().then_some(value)
}

/// The kind of an event: its `"event"` field (`generation_ready`, …).
pub fn event_kind(event: &Value) -> &str {
    event["event"].as_str().unwrap_or_default()
}

/// Every JSON event in `text` (a captured stderr), in order.
pub fn events_in(text: &str) -> Vec<Value> {
    text.lines().filter_map(parse_event).collect()
}
