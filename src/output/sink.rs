//! The bounded writer behind every line devserve prints on stderr.
//!
//! Contract: [`emit`] never blocks and never panics. Lines go into a bounded queue that one
//! thread (`output`) writes to stderr. When the queue is full — the reader stalled: a pipe nobody
//! reads, a paused `less` — the line is dropped and counted, and the writer says
//! `N lines dropped` before the next line it manages to write. A failed write (a closed pipe,
//! `/dev/full`, a terminal that went away) is counted and otherwise ignored. So the supervisor's
//! loop stays responsive to signals and exits whatever happens to stderr; the app's own output is
//! not involved (workers write to the inherited fds themselves).
//!
//! [`flush`] waits, with a time limit, for the queue to be written: devserve calls it just
//! before exiting so that its last lines are not lost when stderr is healthy.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Lines that may wait for a slow reader before devserve starts dropping them.
const QUEUE_LINES: usize = 1024;

enum Item {
    Line(String),
    /// Acknowledge once everything queued before it is written.
    Flush(Sender<()>),
}

struct Sink {
    queue: Sender<Item>,
    dropped: AtomicU64,
    write_errors: AtomicU64,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let (queue, lines) = crossbeam_channel::bounded(QUEUE_LINES);
        // Without the thread `emit` finds the queue full (nobody drains it) and drops: nothing blocks.
        let _ = std::thread::Builder::new().name("output".into()).spawn(move || write_lines(&lines));
        Sink { queue, dropped: AtomicU64::new(0), write_errors: AtomicU64::new(0) }
    })
}

/// Queues one line (without its newline) for stderr; drops it if the queue is full.
pub fn emit(line: String) {
    let sink = sink();
    match sink.queue.try_send(Item::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            sink.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Set while stderr's last bytes are output passed through (a build's) that did not end its line:
/// devserve's next line then starts on a line of its own. Read and written under stderr's lock.
static MID_LINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes another program's output (a build's) to stderr as it is, remembering whether it ended
/// its line, so that a line of devserve's never lands inside one of its lines.
pub fn passthrough(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(bytes).and_then(|()| stderr.flush());
    MID_LINE.store(!bytes.ends_with(b"\n"), Ordering::Relaxed);
}

/// Copies what a service's processes write into `pipe` to stderr, each line after `prefix`
/// (foreman's `web | …`), on a thread of its own until every writer has closed the pipe. A line
/// longer than 64 KiB is cut in pieces, each after the prefix.
pub fn copy_prefixed(pipe: std::fs::File, prefix: String) -> std::io::Result<()> {
    use std::io::{BufRead, Read};
    const MAX_LINE: u64 = 64 * 1024;
    std::thread::Builder::new().name("service-output".into()).spawn(move || {
        let mut reader = std::io::BufReader::new(pipe);
        let mut line = prefix.clone().into_bytes();
        loop {
            line.truncate(prefix.len());
            match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            passthrough(&line);
        }
    })?;
    Ok(())
}

/// Waits up to `limit` for every queued line to be written.
pub fn flush(limit: Duration) {
    let (done_tx, done) = crossbeam_channel::bounded(1);
    if sink().queue.send_timeout(Item::Flush(done_tx), limit).is_ok() {
        let _ = done.recv_timeout(limit);
    }
}

/// Lines dropped because stderr was not read fast enough, and writes that failed, so far.
pub fn losses() -> (u64, u64) {
    let sink = sink();
    (sink.dropped.load(Ordering::Relaxed), sink.write_errors.load(Ordering::Relaxed))
}

fn write_lines(lines: &Receiver<Item>) {
    let mut reported_drops = 0;
    for item in lines {
        let line = match item {
            Item::Line(line) => line,
            Item::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let sink = sink();
        let dropped = sink.dropped.load(Ordering::Relaxed);
        if dropped > reported_drops {
            let notice =
                format!("[devserve] {} lines dropped (stderr was not read)\n", dropped - reported_drops);
            reported_drops = dropped;
            write_or_count(sink, notice.as_bytes());
        }
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        write_or_count(sink, &bytes);
    }
}

fn write_or_count(sink: &Sink, bytes: &[u8]) {
    let mut stderr = std::io::stderr().lock();
    // Passed-through output left a line open: end it first (see `passthrough`).
    if MID_LINE.swap(false, Ordering::Relaxed) {
        let _ = stderr.write_all(b"\n");
    }
    if stderr.write_all(bytes).and_then(|()| stderr.flush()).is_err() {
        sink.write_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A `tracing` writer: collects one formatted event and queues it as lines when dropped.
#[derive(Default)]
pub struct TracingLine(Vec<u8>);

impl Write for TracingLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TracingLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        for line in text.lines().filter(|l| !l.is_empty()) {
            emit(line.to_owned());
        }
    }
}
