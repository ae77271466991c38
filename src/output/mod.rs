//! What devserve says: short colored lines on stderr for people, or (`--log-format json`) one
//! JSON object a line for CI and editors. Distinct from the app's own output, which passes
//! through unaltered because workers share devserve's stdout and stderr.
//!
//! Human lines start with `[devserve]`; lines about a generation or worker then name it
//! (`gen 4`, `gen 4 w1`). Color is on only when stderr is a terminal and `NO_COLOR` is unset
//! or empty. `-q` keeps warnings and errors only. The milestones of a reload are [`Note`]s, so
//! the JSON form carries their timings as numbers; other lines are `{"event":"message",…}`.
//! devserve's own diagnostics (`-v`, `-vv`) go through `tracing`, initialised here too.
//!
//! Every line goes through [`sink`], a bounded queue written by its own thread: printing never
//! blocks the supervisor and never panics, whatever happened to stderr. Control characters in
//! human lines are shown escaped (`\n`, `\x1b`), so a file name cannot forge a line or drive
//! the terminal; JSON escapes them by itself.

pub mod sink;

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use owo_colors::OwoColorize;
use serde::Serialize;

/// How devserve's own lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Short colored lines for people
    Human,
    /// One JSON object a line, for CI and editors
    Json,
}

/// The tone of a line, which picks its color.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Progress: a change, a build starting, a generation starting.
    Info,
    /// Something worked: a build, a generation ready.
    Good,
    /// Something failed but devserve carries on (the old generation keeps serving).
    Warn,
    /// devserve cannot carry on.
    Error,
}

/// A milestone of devserve's work, reported with its timings.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Note {
    /// Files changed, a reload was asked for, or the first start.
    ChangeDetected {
        cause: String,
        files: usize,
    },
    BuildStarted {
        cause: String,
        command: String,
    },
    BuildFinished {
        ok: bool,
        status: String,
        duration_ms: u128,
        serving: Option<u64>,
    },
    GenerationStarting {
        generation: u64,
        pids: Vec<i32>,
    },
    GenerationReady {
        generation: u64,
        total_ms: u128,
        /// Only when files changed: a first start or a signal has no debounce wait.
        debounce_ms: Option<u128>,
        build_ms: Option<u128>,
        start_ms: u128,
        /// Set when no worker sent READY=1 and readiness was assumed after `--ready-delay`:
        /// `start_ms` is then that delay, not a measurement.
        assumed_after_ms: Option<u128>,
        cause: String,
    },
    GenerationFailed {
        generation: u64,
        reason: String,
        serving: Option<u64>,
    },
    GenerationStopping {
        generation: u64,
        signal: String,
    },
    GenerationStopped {
        generation: u64,
    },
}

impl Note {
    /// The human line, if the note has one, and its tone.
    fn human(&self) -> Option<(Tone, String)> {
        let ms = |ms: u128| duration(Duration::from_millis(ms as u64));
        let serving_note = |serving: &Option<u64>| match serving {
            Some(id) => format!("gen {id} still serving"),
            None => "nothing is serving; waiting for a change".into(),
        };
        Some(match self {
            Note::ChangeDetected { .. } => return None,
            Note::BuildStarted { cause, command } => (Tone::Info, format!("{cause}: building ({command})")),
            Note::BuildFinished { ok: true, duration_ms, .. } => {
                (Tone::Info, format!("build ok in {}", ms(*duration_ms)))
            }
            Note::BuildFinished { ok: false, status, duration_ms, serving } => (
                Tone::Warn,
                format!("build failed in {} ({status}); {}", ms(*duration_ms), serving_note(serving)),
            ),
            Note::GenerationStarting { generation, pids } => {
                let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
                let label = if pids.len() == 1 { "pid" } else { "pids" };
                (Tone::Info, format!("gen {generation} starting ({label} {})", pids.join(", ")))
            }
            Note::GenerationReady {
                generation,
                total_ms,
                debounce_ms,
                build_ms,
                start_ms,
                assumed_after_ms,
                cause,
            } => {
                let mut phases = Vec::new();
                if let Some(debounce) = debounce_ms {
                    phases.push(format!("debounce {}", ms(*debounce)));
                }
                if let Some(build) = build_ms {
                    phases.push(format!("build {}", ms(*build)));
                }
                if let Some(delay) = assumed_after_ms {
                    // Not a measurement: say what it is.
                    let before =
                        if phases.is_empty() { String::new() } else { format!("; {}", phases.join(", ")) };
                    return Some((
                        Tone::Good,
                        format!(
                            "gen {generation} ready: assumed after {} up (no READY=1){before} · {cause}",
                            ms(*delay)
                        ),
                    ));
                }
                phases.push(format!("start {}", ms(*start_ms)));
                let phases = phases.join(", ");
                (Tone::Good, format!("gen {generation} ready in {} ({phases}) · {cause}", ms(*total_ms)))
            }
            Note::GenerationFailed { generation, reason, serving } => {
                (Tone::Warn, format!("gen {generation} failed: {reason}; {}", serving_note(serving)))
            }
            Note::GenerationStopping { generation, signal } => {
                (Tone::Info, format!("gen {generation} stopping ({signal})"))
            }
            Note::GenerationStopped { generation } => (Tone::Info, format!("gen {generation} stopped")),
        })
    }
}

/// The terminal, as devserve writes to it.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    color: bool,
    quiet: bool,
    json: bool,
}

impl Output {
    /// Color follows the terminal and `NO_COLOR`; `quiet` drops Info and Good lines.
    pub fn new(quiet: bool) -> Output {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output { color: std::io::stderr().is_terminal() && !no_color, quiet, json: false }
    }

    /// The same, writing JSON lines instead.
    pub fn with_json(self, json: bool) -> Output {
        Output { json, ..self }
    }

    /// Reports a milestone.
    pub fn note(&self, note: Note) {
        if self.json {
            if let Ok(line) = serde_json::to_string(&note) {
                sink::emit(line);
            }
        } else if let Some((tone, text)) = note.human() {
            self.line(tone, &text);
        }
    }

    /// Clears the terminal (`--clear`), unless the output is JSON.
    pub fn clear_screen(&self) {
        if !self.json {
            sink::emit("\x1b[2J\x1b[3J\x1b[H".into());
        }
    }

    pub fn info(&self, text: impl AsRef<str>) {
        self.line(Tone::Info, text.as_ref());
    }

    pub fn good(&self, text: impl AsRef<str>) {
        self.line(Tone::Good, text.as_ref());
    }

    pub fn warn(&self, text: impl AsRef<str>) {
        self.line(Tone::Warn, text.as_ref());
    }

    pub fn error(&self, text: impl AsRef<str>) {
        self.line(Tone::Error, text.as_ref());
    }

    /// Several lines that belong together (the status table): one JSON message, or one human
    /// line each.
    pub fn lines(&self, tone: Tone, lines: &[String]) {
        if self.json {
            self.line(tone, &lines.join("\n"));
        } else {
            for line in lines {
                self.line(tone, line);
            }
        }
    }

    fn line(&self, tone: Tone, text: &str) {
        if self.quiet && matches!(tone, Tone::Info | Tone::Good) {
            return;
        }
        if self.json {
            let level = match tone {
                Tone::Info | Tone::Good => "info",
                Tone::Warn => "warn",
                Tone::Error => "error",
            };
            let message = serde_json::json!({ "event": "message", "level": level, "text": text });
            sink::emit(message.to_string());
            return;
        }
        let text = escape_controls(text);
        if !self.color {
            sink::emit(format!("[devserve] {text}"));
            return;
        }
        let prefix = "[devserve]".bold();
        sink::emit(match tone {
            Tone::Info => format!("{} {}", prefix.cyan(), text),
            Tone::Good => format!("{} {}", prefix.green(), text.green()),
            Tone::Warn => format!("{} {}", prefix.yellow(), text.yellow()),
            Tone::Error => format!("{} {}", prefix.red(), text.red().bold()),
        });
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
