//! Readiness: the systemd `sd_notify` protocol, one NOTIFY_SOCKET per generation.
//!
//! Each generation gets its own `AF_UNIX`/`SOCK_DGRAM` socket, a path in devserve's private
//! runtime directory (plain paths rather than the abstract namespace, so that the simplest
//! `sendto(b"READY=1", path)` works). A reader thread turns each datagram into an
//! [`Event::Notify`]. The sender is identified as systemd does, by the credentials the kernel
//! attaches (SO_PASSCRED / SCM_CREDENTIALS) rather than by anything in the payload; its process
//! group is looked up at once so that a message from a worker's child (`sh -c`, `cargo run`)
//! counts for that worker. Dropping the [`NotifySocket`] shuts the socket down, waits for the
//! reader thread to end (so both of its descriptors are closed when the drop returns: a stopped
//! generation leaves no descriptor behind, not even for a moment), and removes the file.

use std::io;
use std::net::Shutdown;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Sender;
use nix::unistd::Pid;

use crate::event::{Event, Notification};

/// The largest datagram read; systemd's own limit for a notification is similar.
const MAX_DATAGRAM: usize = 4096;

/// How long the reader waits in one `recvmsg` before checking whether it was told to end: the
/// bound on [`NotifySocket`]'s drop should a shutdown fail to wake it.
const READ_SLICE: std::time::Duration = std::time::Duration::from_millis(500);

/// A generation's notify socket and its reader thread.
#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
    closing: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    /// Binds `DIR/notify-GEN.sock` and starts its reader.
    pub fn open(dir: &Path, generation: u64, events: Sender<Event>) -> io::Result<NotifySocket> {
        let path = dir.join(format!("notify-{generation}.sock"));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        #[cfg(target_os = "linux")]
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)?;
        let reader = socket.try_clone()?;
        reader.set_read_timeout(Some(READ_SLICE))?;
        let closing = Arc::new(AtomicBool::new(false));
        let told = Arc::clone(&closing);
        let reader = std::thread::Builder::new()
            .name(format!("notify-{generation}"))
            .spawn(move || read_datagrams(&reader, generation, &events, &told))?;
        Ok(NotifySocket { path, socket, closing, reader: Some(reader) })
    }

    /// The value of NOTIFY_SOCKET for this generation's workers.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.socket.shutdown(Shutdown::Both);
        // The reader never blocks for long (the events channel is unbounded, each receive is
        // bounded by READ_SLICE), so this wait is short.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_datagrams(socket: &UnixDatagram, generation: u64, events: &Sender<Event>, closing: &AtomicBool) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    while !closing.load(Ordering::Acquire) {
        let (len, sender) = match receive(socket, &mut buffer) {
            Ok((0, None)) => return, // shut down
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        let text = String::from_utf8_lossy(&buffer[..len]);
        let sender_group = sender.and_then(|pid| nix::unistd::getpgid(Some(pid)).ok());
        let notification = parse(generation, sender, sender_group, &text);
        if events.send(Event::Notify(notification)).is_err() {
            return;
        }
    }
}

#[cfg(target_os = "linux")]
fn receive(socket: &UnixDatagram, buffer: &mut [u8]) -> io::Result<(usize, Option<Pid>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    let mut cmsg = nix::cmsg_space!(libc::ucred);
    let mut iov = [IoSliceMut::new(buffer)];
    let message = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let sender = message.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::ScmCredentials(creds) => Some(Pid::from_raw(creds.pid())),
        _ => None,
    });
    Ok((message.bytes, sender))
}

#[cfg(not(target_os = "linux"))]
fn receive(socket: &UnixDatagram, buffer: &mut [u8]) -> io::Result<(usize, Option<Pid>)> {
    Ok((socket.recv(buffer)?, None))
}

/// How long a worker behind the front door may take to open its port; the supervisor's ready
/// timeout (at most 24h) decides earlier, this only bounds the prober thread.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// A worker that has not opened its port after this long is looked at: which ports its processes
/// listen on instead ([`Event::OwnPort`]).
const OWN_PORT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A worker that listens on no port at all after this long gets one line saying so.
const NO_PORT_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Behind the front door: polls `127.0.0.1:port` (every 5 ms, backing off to 50 ms) until it
/// accepts a connection and, with `ready_path`, a `GET` there answers below 500; then sends
/// [`Event::UpstreamReady`]. Ends when the worker is gone or the supervisor stopped listening.
///
/// A worker still not accepting after [`OWN_PORT_AFTER`] that listens on other ports (the app's
/// port is written in its code) is reported once as [`Event::OwnPort`]; with exactly one such
/// port the probe ends there (the supervisor proxies to that port instead). One that listens on
/// nothing after [`NO_PORT_AFTER`] is reported once too, and the probe goes on.
pub fn probe_upstream(
    generation: u64,
    pid: Pid,
    port: u16,
    ready_path: Option<String>,
    events: Sender<Event>,
) {
    let spawned = std::thread::Builder::new().name(format!("probe-{port}")).spawn(move || {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let (mut told_own, mut told_none) = (false, false);
        while started.elapsed() < PROBE_LIMIT {
            // Gone (or a zombie about to be reaped): nothing to wait for.
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(cfg!(not(target_os = "linux")), |stat| {
                    !stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z'))
                });
            if !alive {
                return;
            }
            let accepting =
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).is_ok();
            if accepting && ready_path.as_deref().is_none_or(|path| http_ok(addr, path)) {
                let _ = events.send(Event::UpstreamReady { generation, pid });
                return;
            }
            if !accepting && !told_own && started.elapsed() >= OWN_PORT_AFTER {
                let found = crate::ports::listening(pid.as_raw(), &[]);
                if !found.is_empty() && !found.contains(&port) {
                    told_own = true;
                    let single = found.len() == 1;
                    let _ = events.send(Event::OwnPort { generation, pid, given: Some(port), found });
                    if single {
                        return;
                    }
                } else if found.is_empty() && !told_none && started.elapsed() >= NO_PORT_AFTER {
                    told_none = true;
                    let _ = events.send(Event::OwnPort { generation, pid, given: Some(port), found });
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the readiness probe for port {port}: {e}");
    }
}

/// How long a worker given the held sockets is watched for not taking them.
const HANDOVER_WATCH: std::time::Duration = std::time::Duration::from_secs(30);

/// How long connections must wait in a held socket's queue, with nothing accepting, before it is
/// said.
const QUEUE_STALLED: std::time::Duration = std::time::Duration::from_secs(2);

/// Under `--listen`: watches a worker for [`HANDOVER_WATCH`] after its first second. A worker
/// that listens on a TCP port of its own (not one of the `held` sockets, given as (address,
/// inode)) is reported as [`Event::OwnPort`]; a held socket whose accept queue stays non-empty
/// for [`QUEUE_STALLED`] (nothing accepts) as [`Event::NotAccepting`]. Each at most once; ends
/// when the worker is gone.
pub fn watch_handover(generation: u64, pid: Pid, held: Vec<(String, u64)>, events: Sender<Event>) {
    let spawned = std::thread::Builder::new().name(format!("handover-{pid}")).spawn(move || {
        let started = std::time::Instant::now();
        let inodes: Vec<u64> = held.iter().map(|(_, inode)| *inode).collect();
        let mut stalled_since: Option<std::time::Instant> = None;
        let mut told_own = false;
        std::thread::sleep(OWN_PORT_AFTER);
        for round in 0u32.. {
            if started.elapsed() >= HANDOVER_WATCH + OWN_PORT_AFTER
                || !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                return;
            }
            // The process table scan once a second; the queue (one file) every round.
            if !told_own && round % 4 == 0 {
                let found = crate::ports::listening(pid.as_raw(), &inodes);
                if !found.is_empty() {
                    told_own = true;
                    let _ = events.send(Event::OwnPort { generation, pid, given: None, found });
                }
            }
            let waiting = held
                .iter()
                .filter_map(|(address, inode)| {
                    Some((address, crate::ports::accept_queue(pid.as_raw(), *inode)?))
                })
                .find(|(_, queued)| *queued > 0);
            match (waiting, stalled_since) {
                (Some((address, queued)), Some(since)) if since.elapsed() >= QUEUE_STALLED => {
                    let address = address.clone();
                    let _ = events.send(Event::NotAccepting { generation, pid, address, queued });
                    return;
                }
                (Some(_), None) => stalled_since = Some(std::time::Instant::now()),
                (Some(_), Some(_)) => {}
                (None, _) => stalled_since = None,
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch gen {generation}'s worker {pid}: {e}");
    }
}

/// `GET path` on `addr` answers with a status below 500, within two seconds (hyper's client over
/// one connection; no HTTP is parsed here).
fn http_ok(addr: std::net::SocketAddr, path: &str) -> bool {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() else {
        return false;
    };
    runtime.block_on(async move {
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
            tokio::spawn(connection);
            let request = hyper::Request::get(path)
                .header(hyper::header::HOST, addr.to_string())
                .body(Empty::<Bytes>::new())
                .ok()?;
            let response = sender.send_request(request).await.ok()?;
            Some(response.status().as_u16() < 500)
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), exchange)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    })
}

/// Parses newline-separated `KEY=VALUE` assignments; unknown keys are ignored, as systemd does.
fn parse(generation: u64, sender: Option<Pid>, sender_group: Option<Pid>, text: &str) -> Notification {
    let mut notification = Notification {
        generation,
        sender,
        sender_group,
        ready: false,
        watchdog: false,
        reloading: false,
        stopping: false,
        extend_timeout: None,
        status: None,
    };
    for line in text.lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => notification.ready = true,
            Some(("WATCHDOG", "1")) => notification.watchdog = true,
            Some(("RELOADING", "1")) => notification.reloading = true,
            Some(("STOPPING", "1")) => notification.stopping = true,
            Some(("EXTEND_TIMEOUT_USEC", usec)) => {
                notification.extend_timeout =
                    usec.trim().parse::<u64>().ok().map(std::time::Duration::from_micros)
            }
            Some(("STATUS", status)) => notification.status = Some(status.to_owned()),
            _ => {}
        }
    }
    notification
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn payload_lines() {
        let n = parse(3, None, None, "STATUS=warming up\nREADY=1\nMAINPID=7\n");
        assert!(n.ready);
        assert_eq!(n.status.as_deref(), Some("warming up"));
        assert!(!parse(3, None, None, "READY=0").ready);
        let n = parse(3, None, None, "WATCHDOG=1\nRELOADING=1\nSTOPPING=1\nEXTEND_TIMEOUT_USEC=2500000");
        assert!(n.watchdog && n.reloading && n.stopping);
        assert_eq!(n.extend_timeout, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn datagrams_are_attributed_and_drop_ends_the_reader_before_returning() {
        let dir = std::env::temp_dir().join(format!("devserve-readiness-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (tx, rx) = crossbeam_channel::unbounded();
        let socket = NotifySocket::open(&dir, 7, tx).expect("bind");
        UnixDatagram::unbound().and_then(|s| s.send_to(b"READY=1", socket.path())).expect("send");
        let Ok(Event::Notify(n)) = rx.recv_timeout(Duration::from_secs(10)) else {
            panic!("no notification")
        };
        assert!(n.ready);
        assert_eq!(n.generation, 7);
        #[cfg(target_os = "linux")]
        assert_eq!(n.sender, Some(nix::unistd::getpid()));
        let path = socket.path().to_path_buf();
        drop(socket);
        assert!(!path.exists());
        // The reader thread drops its sender (and its descriptor) when it ends, which
        // disconnects the channel: already done when the drop returns, not some time later.
        assert_eq!(rx.try_recv().err(), Some(crossbeam_channel::TryRecvError::Disconnected));
        std::fs::remove_dir(&dir).expect("clean up");
    }
}
