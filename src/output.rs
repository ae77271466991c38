//! What devserve says to the human: short colored lines on stderr, distinct from the app's own
//! output (which passes through unaltered because workers share devserve's stdout and stderr).
//!
//! Every line starts with `[devserve]`; lines about a generation or worker then name it
//! (`gen 4`, `gen 4 w1`). Color is on only when stderr is a terminal and `NO_COLOR` is unset
//! or empty. `-q` keeps warnings and errors only. devserve's own diagnostics (`-v`, `-vv`) go
//! through `tracing`, initialised here too.

use std::io::IsTerminal;
use std::time::Duration;

use owo_colors::OwoColorize;

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

/// The terminal, as devserve writes to it.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    color: bool,
    quiet: bool,
}

impl Output {
    /// Color follows the terminal and `NO_COLOR`; `quiet` drops Info and Good lines.
    pub fn new(quiet: bool) -> Output {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output { color: std::io::stderr().is_terminal() && !no_color, quiet }
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

    fn line(&self, tone: Tone, text: &str) {
        if self.quiet && matches!(tone, Tone::Info | Tone::Good) {
            return;
        }
        if !self.color {
            eprintln!("[devserve] {text}");
            return;
        }
        let prefix = "[devserve]".bold();
        match tone {
            Tone::Info => eprintln!("{} {}", prefix.cyan(), text),
            Tone::Good => eprintln!("{} {}", prefix.green(), text.green()),
            Tone::Warn => eprintln!("{} {}", prefix.yellow(), text.yellow()),
            Tone::Error => eprintln!("{} {}", prefix.red(), text.red().bold()),
        }
    }
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
        .with_writer(std::io::stderr)
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
}
