//! The build step: `sh -c CMD` in its own process group while the serving generation keeps
//! serving. Its output goes straight to the terminal. A newer change cancels it (SIGKILL to the
//! whole group: the compiler processes too) and the supervisor starts it again — the latest save
//! wins. Its exit arrives like every other child's, through the process table.
//!
//! Behind the front door the build's output also goes to the browser overlay: it is read through
//! a pipe, copied to devserve's stderr as it comes and its tail kept. A build command devserve
//! recognises as `cargo build` or `cargo check` (the whole command, nothing chained, no
//! `--message-format` of its own) then runs with `--message-format=json-diagnostic-rendered-ansi`:
//! the terminal still shows each diagnostic as cargo renders it, and the overlay gets each one
//! with its file, line and column. An arbitrary command is never rewritten.
//!
//! What devserve copies to its stderr is the build's own bytes, untouched, except for the
//! `rendered` text of cargo's JSON messages, which devserve prints itself: cargo renders it with
//! ANSI colours whatever the terminal, so when devserve's stderr is not a terminal (a file, a
//! pipe) or `NO_COLOR` is set, devserve prints it without its escape sequences. The kept tail
//! keeps the colours either way (the overlay renders them). Only a message with a primary span
//! (a file, a line) is listed as a diagnostic; the others (`aborting due to …`, `For more
//! information about this error, …`) are in the output only.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::procs::{Owner, Procs};
use crate::proxy::Diagnostic;
use crate::spawn::{Command, SpawnError};

/// How much of a build's output is kept for the front door's error page.
const TAIL: usize = 16 * 1024;

/// A build in progress.
#[derive(Debug)]
pub struct Build {
    pub pid: Pid,
    pub started: Instant,
    /// With `keep_output`: the end of what the build printed (see [`Build::output_tail`]).
    tail: Option<OutputTail>,
}

/// The command to run: a recognised `cargo build`/`cargo check` gets cargo's JSON diagnostics
/// (see the module doc); anything else runs as written.
pub fn with_diagnostics(script: &str) -> Option<String> {
    let words: Vec<&str> = script.split_whitespace().collect();
    let recognised = matches!(words.as_slice(), ["cargo", "build" | "check", ..])
        && !script.contains("--message-format")
        && !script.chars().any(|c| matches!(c, ';' | '&' | '|' | '>' | '<' | '`' | '$' | '\n'));
    recognised.then(|| format!("{script} --message-format=json-diagnostic-rendered-ansi"))
}

/// The build's output, passed through to devserve's stderr as it comes, its last [`TAIL`]
/// bytes kept.
#[derive(Debug)]
struct OutputTail {
    kept: Arc<Mutex<Vec<u8>>>,
    diagnostics: Arc<Mutex<Vec<Diagnostic>>>,
    done: crossbeam_channel::Receiver<()>,
}

/// At most this many diagnostics are kept for the overlay.
const MAX_DIAGNOSTICS: usize = 50;

impl Build {
    /// Starts `script` under `sh -c`, with the extra environment.
    /// With `keep_output`, the output goes through a pipe that devserve copies to its own stderr
    /// while keeping the tail (for the front door's error page); otherwise it goes straight to the
    /// terminal.
    /// `prefix`: put before each line of its output (a service's name, with several services;
    /// the output then always goes through devserve).
    pub fn start(
        script: &str,
        env: &[(String, String)],
        keep_output: bool,
        prefix: &str,
        procs: &mut dyn Procs,
        now: Instant,
    ) -> Result<Build, SpawnError> {
        let keep_output = keep_output || !prefix.is_empty();
        let cargo_json = if keep_output { with_diagnostics(script) } else { None };
        let mut command = Command::shell(cargo_json.as_deref().unwrap_or(script));
        for (key, value) in env {
            command = command.env(key, value);
        }
        let (tail, write_end) = if keep_output {
            let (read_end, write_end) = crate::spawn::cloexec_pipe().map_err(SpawnError::Setup)?;
            command = command.output_to(std::os::fd::AsRawFd::as_raw_fd(&write_end));
            let tail = copy_output(std::fs::File::from(read_end), cargo_json.is_some(), prefix.to_owned());
            (Some(tail), Some(write_end))
        } else {
            (None, None)
        };
        let pid = procs.spawn(command, Owner::Build)?;
        // The child has its copy; ours must close, or the reader would never see end-of-file.
        drop(write_end);
        Ok(Build { pid, started: now, tail })
    }

    /// The end of the build's output, once it has all been read (waits at most 200 ms for the
    /// last of it after the build exited). Empty without `keep_output`.
    pub fn output_tail(&self) -> String {
        let Some(tail) = &self.tail else { return String::new() };
        let _ = tail.done.recv_timeout(std::time::Duration::from_millis(200));
        let kept = tail.kept.lock().map(|k| k.clone()).unwrap_or_default();
        String::from_utf8_lossy(&kept).into_owned()
    }

    /// The compiler's diagnostics (errors first), when the build ran with cargo's JSON messages.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let Some(tail) = &self.tail else { return Vec::new() };
        let mut found = tail.diagnostics.lock().map(|d| d.clone()).unwrap_or_default();
        found.sort_by_key(|d| d.level != "error");
        found
    }

    /// Kills the build's whole process group; its exit still arrives, as a cancelled build's.
    pub fn cancel(&self, procs: &mut dyn Procs) {
        procs.signal(self.pid, Signal::SIGKILL);
        procs.reassign(self.pid, Owner::CancelledBuild);
    }

    pub fn took(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// A thread that copies the build's output to devserve's stderr and keeps its last bytes; with
/// `cargo_json`, cargo's JSON lines are shown as the compiler renders them and collected.
fn copy_output(pipe: std::fs::File, cargo_json: bool, prefix: String) -> OutputTail {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let diagnostics = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let copier = Copier {
        // The build's output, as it would have gone to the terminal.
        show: move |text: &[u8]| {
            if prefix.is_empty() {
                crate::output::sink::passthrough(text);
            } else {
                crate::output::sink::passthrough(&[prefix.as_bytes(), text].concat());
            }
        },
        cargo_json,
        colour: stderr_shows_colour(),
        kept: Arc::clone(&kept),
        found: Arc::clone(&diagnostics),
    };
    let spawned = std::thread::Builder::new().name("build-output".into()).spawn(move || {
        read_lines(pipe, MAX_LINE, |line| copier.line(line), |piece| copier.text(piece));
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot read the build's output: {e}");
    }
    OutputTail { kept, diagnostics, done }
}

/// Whether devserve's stderr shows colours: a terminal, and no `NO_COLOR` (set and not empty),
/// as for devserve's own lines.
fn stderr_shows_colour() -> bool {
    shows_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"))
}

fn shows_colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// What [`copy_output`] does with the build's output: shows it (`show`: devserve's stderr), keeps
/// its tail and, with `cargo_json`, collects cargo's diagnostics.
struct Copier<S> {
    show: S,
    cargo_json: bool,
    /// Whether `show` displays colours; when not, the `rendered` text of cargo's messages (which
    /// devserve prints itself) is shown without its escape sequences.
    colour: bool,
    kept: Arc<Mutex<Vec<u8>>>,
    found: Arc<Mutex<Vec<Diagnostic>>>,
}

impl<S: Fn(&[u8])> Copier<S> {
    /// Output as the build wrote it: shown and kept byte for byte.
    fn text(&self, text: &[u8]) {
        (self.show)(text);
        self.keep(text);
    }

    /// One whole line: a JSON line of cargo's is shown as its `rendered` text (and a diagnostic
    /// with a primary span collected), any other line is [`Copier::text`].
    fn line(&self, line: &[u8]) {
        if !(self.cargo_json && line.first() == Some(&b'{')) {
            self.text(line);
            return;
        }
        let Some(message) = compiler_message(line) else { return };
        if self.colour {
            (self.show)(message.rendered.as_bytes());
        } else {
            (self.show)(strip_escapes(&message.rendered).as_bytes());
        }
        // The tail keeps the colours: the overlay renders them.
        self.keep(message.rendered.as_bytes());
        if let Some(diagnostic) = message.diagnostic
            && let Ok(mut found) = self.found.lock()
            && found.len() < MAX_DIAGNOSTICS
        {
            found.push(diagnostic);
        }
    }

    fn keep(&self, text: &[u8]) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.extend_from_slice(text);
            let excess = kept.len().saturating_sub(TAIL);
            kept.drain(..excess);
        }
    }
}

/// `text` without its terminal escape sequences: CSI (`ESC [ … final`, colours among them), OSC
/// (`ESC ] … BEL` or `ESC ] … ESC \`, hyperlinks), nF (`ESC ( B`) and two-character ones. Every other
/// character stays.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates, up to the final byte.
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // nF (`ESC ( B`): intermediates, then the final byte.
            Some('\x20'..='\x2f') => {
                for c in chars.by_ref() {
                    if !('\x20'..='\x2f').contains(&c) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A line of build output longer than this is not held whole: what came of it so far is passed
/// through as text, and so is the rest of it as it comes (a JSON line that long is not parsed).
/// 1 MiB holds any diagnostic cargo prints.
const MAX_LINE: usize = 1024 * 1024;

/// Reads `pipe` to its end, handing each line (with its newline) to `line`, except that a line
/// longer than `max` goes to `long` in pieces as it arrives: memory stays bounded whatever the
/// build prints.
fn read_lines(
    pipe: impl std::io::Read,
    max: usize,
    mut line: impl FnMut(&[u8]),
    mut long: impl FnMut(&[u8]),
) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(pipe);
    let mut held: Vec<u8> = Vec::new();
    // Inside a line already passed through in pieces.
    let mut passing = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok([]) => break,
            Ok(buffer) => buffer,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let (piece, ends) = match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => (&buffer[..=at], true),
            None => (buffer, false),
        };
        let used = piece.len();
        if passing {
            long(piece);
        } else if held.len() + piece.len() > max {
            long(&held);
            long(piece);
            held = Vec::new();
            passing = true;
        } else {
            held.extend_from_slice(piece);
            if ends {
                line(&held);
                held.clear();
            }
        }
        if ends {
            passing = false;
        }
        reader.consume(used);
    }
    if !held.is_empty() {
        line(&held);
    }
}

/// A `compiler-message` of cargo's JSON output: its rendered text, and its diagnostic when it
/// has a primary span. Other messages (artifacts, build scripts, the final `build-finished`) are
/// not shown.
struct CompilerMessage {
    /// The compiler's rendering (with ANSI colours).
    rendered: String,
    /// For the overlay's list: only a message with a primary span in a file. The ones without
    /// (`aborting due to 2 previous errors`, `For more information about this error, try …`,
    /// `generated 1 warning`) would be a location-less entry; they are in the output only.
    diagnostic: Option<Diagnostic>,
}

fn compiler_message(line: &[u8]) -> Option<CompilerMessage> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if value["reason"] != "compiler-message" {
        return None;
    }
    let message = &value["message"];
    let rendered = message["rendered"].as_str().unwrap_or_default().to_owned();
    let spans = message["spans"].as_array();
    let primary = spans.and_then(|spans| spans.iter().find(|s| s["is_primary"] == true));
    let number = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    let diagnostic = primary
        .map(|span| Diagnostic {
            level: message["level"].as_str().unwrap_or("error").to_owned(),
            message: message["message"].as_str().unwrap_or_default().to_owned(),
            file: span["file_name"].as_str().unwrap_or_default().to_owned(),
            line: number(&span["line_start"]),
            column: number(&span["column_start"]),
            rendered: rendered.clone(),
        })
        .filter(|d| !d.file.is_empty() && d.line > 0);
    Some(CompilerMessage { rendered, diagnostic })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn only_a_plain_cargo_build_or_check_gets_json_diagnostics() {
        assert_eq!(
            with_diagnostics("cargo build --release").as_deref(),
            Some("cargo build --release --message-format=json-diagnostic-rendered-ansi")
        );
        assert!(with_diagnostics("cargo check").is_some());
        assert!(with_diagnostics("cargo build && cp target/debug/app .").is_none(), "chained");
        assert!(with_diagnostics("cargo build --message-format short").is_none());
        assert!(with_diagnostics("make").is_none());
        assert!(with_diagnostics("cargo test").is_none());
    }

    #[test]
    fn lines_are_held_whole_up_to_the_bound_and_longer_ones_pass_through_in_pieces() {
        let input = [b"short\n".as_slice(), &[b'x'; 100], b"\nend"].concat();
        let (mut lines, mut pieces) = (Vec::new(), Vec::new());
        read_lines(&input[..], 50, |l| lines.push(l.to_vec()), |p| pieces.push(p.len()));
        assert_eq!(lines, [b"short\n".to_vec(), b"end".to_vec()]);
        assert_eq!(pieces.iter().sum::<usize>(), 101, "the long line and its newline, in pieces");
        // A long line read through a small buffer is never held: the most held is the bound.
        let held_most = std::cell::Cell::new(0);
        let most = |bytes: &[u8]| held_most.set(held_most.get().max(bytes.len()));
        let long = vec![b'y'; 5 << 20];
        read_lines(&long[..], 1 << 20, most, most);
        assert!(held_most.get() <= 1 << 20, "held {} bytes at once", held_most.get());
    }

    #[test]
    fn a_compiler_message_keeps_its_primary_span_and_rendering() {
        let line = br#"{"reason":"compiler-message","message":{"level":"error","message":"cannot find value `x`","spans":[{"file_name":"src/main.rs","line_start":3,"column_start":7,"is_primary":true}],"rendered":"\u001b[31merror\u001b[0m: cannot find value `x`\n --> src/main.rs:3:7\n"}}"#;
        let message = compiler_message(line).expect("a compiler message").diagnostic.expect("a diagnostic");
        assert_eq!((message.file.as_str(), message.line, message.column), ("src/main.rs", 3, 7));
        assert!(message.rendered.contains("src/main.rs:3:7"));
        assert!(compiler_message(br#"{"reason":"build-finished","success":false}"#).is_none());
    }

    /// What cargo prints for a `cargo build` of `let y = x;` with no `x`: one error with a
    /// primary span, then an `aborting` error and a `failure-note` with none.
    const UNDEFINED_X: &str = concat!(
        r#"{"reason":"compiler-message","package_id":"app 0.1.0","message":{"rendered":"\u001b[0m\u001b[1m\u001b[38;5;9merror[E0425]\u001b[0m\u001b[0m\u001b[1m: cannot find value `x` in this scope\u001b[0m\n\u001b[0m \u001b[0m\u001b[0m\u001b[1m\u001b[38;5;12m--> \u001b[0m\u001b[0msrc/main.rs:2:13\u001b[0m\n","$message_type":"diagnostic","children":[],"code":{"code":"E0425","explanation":null},"level":"error","message":"cannot find value `x` in this scope","spans":[{"file_name":"src/main.rs","byte_start":28,"byte_end":29,"line_start":2,"line_end":2,"column_start":13,"column_end":14,"is_primary":true,"text":[],"label":"not found in this scope","suggested_replacement":null,"suggestion_applicability":null,"expansion":null}]}}"#,
        "\n",
        r#"{"reason":"compiler-message","package_id":"app 0.1.0","message":{"rendered":"\u001b[0m\u001b[1m\u001b[38;5;9merror\u001b[0m\u001b[0m\u001b[1m: aborting due to 1 previous error\u001b[0m\n\n","$message_type":"diagnostic","children":[],"code":null,"level":"error","message":"aborting due to 1 previous error","spans":[]}}"#,
        "\n",
        r#"{"reason":"compiler-message","package_id":"app 0.1.0","message":{"rendered":"\u001b[0m\u001b[1mFor more information about this error, try `rustc --explain E0425`.\u001b[0m\n","$message_type":"diagnostic","children":[],"code":null,"level":"failure-note","message":"For more information about this error, try `rustc --explain E0425`.","spans":[]}}"#,
        "\n",
        r#"{"reason":"build-finished","success":false}"#,
        "\n",
    );

    #[test]
    fn only_a_message_with_a_primary_span_is_listed_and_every_one_is_in_the_output() {
        let (read_end, write_end) = crate::spawn::cloexec_pipe().expect("pipe");
        std::fs::File::from(write_end).write_all(UNDEFINED_X.as_bytes()).expect("write");
        let tail = copy_output(std::fs::File::from(read_end), true, String::new());
        tail.done.recv_timeout(Duration::from_secs(10)).expect("the output read to its end");
        let found = tail.diagnostics.lock().expect("diagnostics").clone();
        let listed: Vec<_> =
            found.iter().map(|d| (d.level.as_str(), d.file.as_str(), d.line, d.column)).collect();
        assert_eq!(listed, [("error", "src/main.rs", 2, 13)], "no location-less entry: {found:?}");
        let kept = String::from_utf8(tail.kept.lock().expect("kept").clone()).expect("utf-8");
        assert!(kept.contains("aborting due to 1 previous error"), "{kept:?}");
        assert!(kept.contains("try `rustc --explain E0425`"), "{kept:?}");
    }

    /// Bytes a test collects.
    type Buffer = Arc<Mutex<Vec<u8>>>;

    /// A [`Copier`] of cargo's JSON whose shown output goes to the returned buffer.
    fn copier(colour: bool) -> (Copier<impl Fn(&[u8])>, Buffer, Buffer) {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let screen = Arc::clone(&shown);
        let show = move |text: &[u8]| screen.lock().expect("shown").extend_from_slice(text);
        let copier =
            Copier { show, cargo_json: true, colour, kept: Arc::clone(&kept), found: Arc::default() };
        (copier, shown, kept)
    }

    fn text(bytes: &Buffer) -> String {
        String::from_utf8(bytes.lock().expect("bytes").clone()).expect("utf-8")
    }

    #[test]
    fn without_colour_the_rendered_text_is_shown_plain_and_the_build_s_own_bytes_as_written() {
        let compiling = "\x1b[1m\x1b[32m   Compiling\x1b[0m app v0.1.0\n";
        let (plain, shown, kept) = copier(false);
        plain.line(compiling.as_bytes());
        for line in UNDEFINED_X.lines() {
            plain.line(format!("{line}\n").as_bytes());
        }
        let shown = text(&shown);
        let rendered = shown.strip_prefix(compiling).expect("the build's own line, as it wrote it");
        assert!(!rendered.contains('\x1b'), "{rendered:?}");
        assert!(
            rendered.contains("error[E0425]: cannot find value `x` in this scope\n --> src/main.rs:2:13\n")
        );
        assert!(rendered.contains("error: aborting due to 1 previous error\n"), "{rendered:?}");
        assert!(text(&kept).contains("\x1b[38;5;9merror[E0425]"), "the tail keeps the colours");

        let (coloured, shown, _) = copier(true);
        coloured.line(UNDEFINED_X.lines().next().expect("a line").as_bytes());
        assert!(text(&shown).contains("\x1b[38;5;9merror[E0425]"), "a terminal gets cargo's colours");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(shows_colour(true, None));
        assert!(shows_colour(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!shows_colour(true, Some("1".into())));
        assert!(!shows_colour(false, None));
    }

    #[test]
    fn escapes_are_stripped_and_nothing_else() {
        let text = "a\x1b[1;38;5;9mb\x1b[0m\x1b]8;;file:///x\x1b\\c\x1b]8;;\x07\td\x1b(Be\r\n";
        assert_eq!(strip_escapes(text), "abc\tde\r\n");
        assert_eq!(strip_escapes("cut\x1b[1"), "cut");
    }
}
