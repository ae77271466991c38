//! What devserve says: short colored lines on stderr for people, or (`--log-format json`) one
//! JSON object a line for CI and editors. Distinct from the app's own output, which passes
//! through unaltered because workers share devserve's stdout and stderr.
//!
//! Human lines start with `[devserve]`; lines about a generation or worker then name it
//! (`gen 4`, `gen 4 w1`). Color is on only when stderr is a terminal and `NO_COLOR` is unset
//! or empty. `-q` keeps warnings and errors only. Every line is a typed [`Report`], so the JSON
//! form carries each event's fields (timings as numbers, pids, generations) and nothing needs
//! to scrape the human wording. devserve's own diagnostics (`-v`, `-vv`) go through `tracing`, initialised here too.
//!
//! Every line goes through [`sink`], a bounded queue written by its own thread: printing never
//! blocks the supervisor and never panics, whatever happened to stderr. Control characters in
//! human lines are shown escaped (`\n`, `\x1b`), so a file name cannot forge a line or drive
//! the terminal; JSON escapes them by itself.

pub mod check;
mod report;
pub mod sink;
pub mod status;

pub use report::{Report, Tone, WorkerStart};

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use owo_colors::OwoColorize;

/// How devserve's own lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Short colored lines for people
    Human,
    /// One JSON object a line, for CI and editors
    Json,
}

/// The terminal, as devserve writes to it.
#[derive(Debug, Clone)]
pub struct Output {
    color: bool,
    quiet: bool,
    json: bool,
    /// Tests: the rendered lines are kept here instead of being written.
    capture: Option<Arc<Mutex<Vec<String>>>>,
    /// With several services: the service these lines are about, and its colour.
    service: Option<ServiceTag>,
}

/// A service's name as its lines carry it: padded to the longest name, in a colour of its own.
#[derive(Debug, Clone)]
struct ServiceTag {
    name: String,
    width: usize,
    colour: usize,
}

/// The services' colours, in turn (foreman's and overmind's, without red: red is for errors).
const SERVICE_COLOURS: [owo_colors::AnsiColors; 5] = [
    owo_colors::AnsiColors::Cyan,
    owo_colors::AnsiColors::Yellow,
    owo_colors::AnsiColors::Green,
    owo_colors::AnsiColors::Magenta,
    owo_colors::AnsiColors::Blue,
];

impl Output {
    /// Color follows the terminal and `NO_COLOR`; `quiet` drops Info and Good lines.
    pub fn new(quiet: bool) -> Output {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output {
            color: std::io::stderr().is_terminal() && !no_color,
            quiet,
            json: false,
            capture: None,
            service: None,
        }
    }

    /// The same, writing JSON lines instead.
    pub fn with_json(self, json: bool) -> Output {
        Output { json, ..self }
    }

    /// An output that keeps its (uncoloured) lines for a test to read.
    #[cfg(test)]
    pub fn captured(json: bool) -> (Output, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (Output { color: false, quiet: false, json, capture: Some(Arc::clone(&lines)), service: None }, lines)
    }

    /// The same output, for the lines of service `name` (the `index`th): prefixed with the name,
    /// padded to `width` and in the service's colour; in JSON, a `"service"` field.
    pub fn for_service(&self, name: &str, width: usize, index: usize) -> Output {
        let tag = ServiceTag { name: name.to_owned(), width, colour: index % SERVICE_COLOURS.len() };
        Output { service: Some(tag), ..self.clone() }
    }

    /// `api | ` (coloured on a terminal) for a service's lines; empty otherwise.
    pub fn service_prefix(&self) -> String {
        let Some(tag) = &self.service else { return String::new() };
        let padded = format!("{:width$} |", tag.name, width = tag.width);
        if self.color {
            format!("{} ", padded.color(SERVICE_COLOURS[tag.colour]))
        } else {
            format!("{padded} ")
        }
    }

    /// Says what happened: JSON, or the human lines.
    pub fn report(&self, report: Report) {
        if self.json {
            let Ok(mut line) = serde_json::to_string(&report) else { return };
            // `"event"` stays the first field; the service is the last.
            if let Some(tag) = &self.service
                && line.ends_with('}')
                && let Ok(name) = serde_json::to_string(&tag.name)
            {
                line.pop();
                line.push_str(&format!(",\"service\":{name}}}"));
            }
            self.emit(line);
            return;
        }
        let Some((tone, lines)) = report.human() else { return };
        if self.quiet && matches!(tone, Tone::Info | Tone::Good) {
            return;
        }
        for line in lines {
            self.emit(self.render(tone, &line));
        }
    }

    /// Clears the terminal (`--clear`), unless the output is JSON.
    pub fn clear_screen(&self) {
        if !self.json {
            self.emit("\x1b[2J\x1b[3J\x1b[H".into());
        }
    }

    fn emit(&self, line: String) {
        match &self.capture {
            Some(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
            None => sink::emit(line),
        }
    }

    fn render(&self, tone: Tone, text: &str) -> String {
        let text = escape_controls(text);
        let service = self.service_prefix();
        if !self.color {
            return format!("{service}[devserve] {text}");
        }
        let prefix = "[devserve]".bold();
        match tone {
            Tone::Info => format!("{service}{} {}", prefix.cyan(), text),
            Tone::Good => format!("{service}{} {}", prefix.green(), text.green()),
            Tone::Warn => format!("{service}{} {}", prefix.yellow(), text.yellow()),
            Tone::Error => format!("{service}{} {}", prefix.red(), text.red().bold()),
        }
    }
}

/// Control characters shown as escapes (`\n`, `\x1b`, `\u{9b}`); tabs and everything printable
/// stay as they are.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => escaped.push(c),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x80 => escaped.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// Writes to stdout for output the user asked for (`check`, `--signal status`, completions);
/// a closed or full stdout is not worth a panic.
pub fn stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// `212ms`, `1.52s`, `2m05s`: short and always with a unit.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Sets up `tracing` for devserve's own diagnostics: warnings by default, `-v` debug,
/// `-vv` trace, `-q` errors only. `RUST_LOG` overrides.
pub fn init_tracing(verbose: u8, quiet: u8) {
    let level = match (quiet, verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("devserve={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink::TracingLine::default)
        .with_ansi(Output::new(false).color)
        .without_time()
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(Duration::from_millis(212)), "212ms");
        assert_eq!(duration(Duration::from_millis(1520)), "1.52s");
        assert_eq!(duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("src/main.rs changed"), "src/main.rs changed");
        assert_eq!(escape_controls("a\n[devserve] gen 99 ready"), "a\\n[devserve] gen 99 ready");
        assert_eq!(escape_controls("\x1b[31mred\tx\u{9b}"), "\\x1b[31mred\tx\\u{9b}");
    }
}
