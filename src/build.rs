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

use std::io::Write;
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
    pub fn start(
        script: &str,
        env: &[(String, String)],
        keep_output: bool,
        procs: &mut dyn Procs,
        now: Instant,
    ) -> Result<Build, SpawnError> {
        let cargo_json = if keep_output { with_diagnostics(script) } else { None };
        let mut command = Command::shell(cargo_json.as_deref().unwrap_or(script));
        for (key, value) in env {
            command = command.env(key, value);
        }
        let (tail, write_end) = if keep_output {
            let (read_end, write_end) = crate::spawn::cloexec_pipe().map_err(SpawnError::Setup)?;
            command = command.output_to(std::os::fd::AsRawFd::as_raw_fd(&write_end));
            (Some(copy_output(std::fs::File::from(read_end), cargo_json.is_some())), Some(write_end))
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
fn copy_output(pipe: std::fs::File, cargo_json: bool) -> OutputTail {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let diagnostics = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let (sink, found) = (Arc::clone(&kept), Arc::clone(&diagnostics));
    let spawned = std::thread::Builder::new().name("build-output".into()).spawn(move || {
        let keep = |text: &[u8]| {
            // The build's own output, as it would have gone to the terminal.
            let _ = std::io::stderr().lock().write_all(text);
            if let Ok(mut kept) = sink.lock() {
                kept.extend_from_slice(text);
                let excess = kept.len().saturating_sub(TAIL);
                kept.drain(..excess);
            }
        };
        let line = |line: &[u8]| {
            if cargo_json && line.first() == Some(&b'{') {
                if let Some(message) = compiler_message(line) {
                    keep(message.rendered.as_bytes());
                    if let Ok(mut found) = found.lock()
                        && found.len() < MAX_DIAGNOSTICS
                    {
                        found.push(message);
                    }
                }
            } else {
                keep(line);
            }
        };
        read_lines(pipe, MAX_LINE, line, keep);
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot read the build's output: {e}");
    }
    OutputTail { kept, diagnostics, done }
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

/// A `compiler-message` of cargo's JSON output, with its primary span; other messages (artifacts,
/// build scripts, the final `build-finished`) are not shown.
fn compiler_message(line: &[u8]) -> Option<Diagnostic> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if value["reason"] != "compiler-message" {
        return None;
    }
    let message = &value["message"];
    let spans = message["spans"].as_array();
    let primary = spans.and_then(|spans| spans.iter().find(|s| s["is_primary"] == true));
    let number = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    Some(Diagnostic {
        level: message["level"].as_str().unwrap_or("error").to_owned(),
        message: message["message"].as_str().unwrap_or_default().to_owned(),
        file: primary.and_then(|s| s["file_name"].as_str()).unwrap_or_default().to_owned(),
        line: primary.map_or(0, |s| number(&s["line_start"])),
        column: primary.map_or(0, |s| number(&s["column_start"])),
        rendered: message["rendered"].as_str().unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let message = compiler_message(line).expect("a diagnostic");
        assert_eq!((message.file.as_str(), message.line, message.column), ("src/main.rs", 3, 7));
        assert!(message.rendered.contains("src/main.rs:3:7"));
        assert!(compiler_message(br#"{"reason":"build-finished","success":false}"#).is_none());
    }
}
