//! `--accept`: devserve accepts each connection on the held sockets itself, as systemd's
//! `Accept=yes` and inetd do, and hands it over as an [`Event::Connection`]; the supervisor starts
//! the command for it.
//!
//! Contract:
//! - Two threads per held socket, each waiting for a token before it accepts: the tokens are
//!   `--max-connections`, and the supervisor gives one back ([`Acceptor::release`]) when a
//!   connection's process is reaped. Without a token a thread does not accept, so connections
//!   beyond the limit wait in the socket's queue (the kernel's backlog) — never refused.
//! - The held sockets are put in non-blocking mode (shared by every copy of the socket: under
//!   `--accept` no worker is given one), so a connection taken by another accepter (the other
//!   devserve during an upgrade) never blocks a thread.
//! - Dropping the [`Acceptor`] stops every thread: they wait on a pipe whose write end it holds.
//!   A connection already accepted is delivered; none is accepted after.
//! - While the supervisor allows it ([`FastStart`]: the serving program, no trial pending), a
//!   thread starts the connection's process itself and reports [`Event::Started`]: one hop fewer
//!   between a connection and its process. Otherwise the connection goes to the supervisor
//!   ([`Event::Connection`]), which also owns every process once told.
//! - [`transfer`] says what a connection's process did with it, from the kernel's counters: the
//!   rollback of a new program (see the supervisor's `per_connection`) rests on it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::event::{Connection, Event};
use crate::generation::Program;
use crate::sockets::NamedSocket;

/// What the acceptor may start by itself: the serving program, while no new one awaits its trial
/// (the supervisor sets and clears it), with the run's marker for the children's environment.
#[derive(Clone)]
pub struct FastStart {
    pub program: std::sync::Arc<Program>,
    pub stdio: bool,
    pub marker: String,
}

/// The acceptor's [`FastStart`], shared with the supervisor.
pub type FastSlot = std::sync::Arc<std::sync::Mutex<Option<FastStart>>>;

/// Threads accepting on each socket: a thread that starts a process waits until it has exec'd
/// (`CLONE_VFORK`), so a second one accepts meanwhile.
const THREADS_PER_SOCKET: usize = 2;

/// The connections' threads; dropping it stops them.
pub struct Acceptor {
    tokens: Sender<()>,
    /// The write end of the stop pipe: its end-of-file wakes every thread.
    stop: Option<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
}

impl Acceptor {
    /// Starts one thread per socket, with `max` connections at once between them.
    pub fn start(
        sockets: &[NamedSocket],
        max: u32,
        fast: &FastSlot,
        events: &Sender<Event>,
    ) -> io::Result<Acceptor> {
        let (tokens, taken) = crossbeam_channel::unbounded();
        for _ in 0..max {
            let _ = tokens.send(());
        }
        let (stop_read, stop_write) = crate::spawn::cloexec_pipe()?;
        let mut threads = Vec::new();
        for socket in sockets {
            for _ in 0..THREADS_PER_SOCKET {
                let listener = socket.try_clone_listener()?;
                listener.set_nonblocking(true)?;
                let stop = stop_read.try_clone()?;
                let (taken, events, fast) = (taken.clone(), events.clone(), fast.clone());
                let name = socket.name.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("accept {name}"))
                    .spawn(move || accept_loop(&listener, &stop, &taken, &fast, &events))?;
                threads.push(thread);
            }
        }
        Ok(Acceptor { tokens, stop: Some(stop_write), threads })
    }

    /// A connection's process was reaped: one more may be accepted.
    pub fn release(&self) {
        let _ = self.tokens.send(());
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        // End-of-file on the pipe: every thread returns from poll, or from waiting on a token
        // (its wait is bounded by the same pipe, see `accept_loop`).
        self.stop = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Takes a token, waits for a connection (or the stop pipe), accepts it and sends it on.
fn accept_loop(
    listener: &socket2::Socket,
    stop: &OwnedFd,
    tokens: &Receiver<()>,
    fast: &FastSlot,
    events: &Sender<Event>,
) {
    loop {
        // A token, waiting on the pipe meanwhile: a limit reached must not keep the thread from
        // stopping.
        loop {
            if tokens.try_recv().is_ok() {
                break;
            }
            if stopped(stop, 50) {
                return;
            }
        }
        loop {
            let mut fds = [
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("accept: poll failed: {e}");
                    return;
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    // The connection is the process's to use as it likes: blocking, as accepted.
                    let _ = stream.set_nonblocking(false);
                    let stream: OwnedFd = stream.into();
                    let peer = peer.as_socket();
                    let event = match start_here(fast, &stream, peer) {
                        Some(started) => started,
                        None => Event::Connection(Connection { stream, peer }),
                    };
                    if events.send(event).is_err() {
                        return;
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                }
                // ECONNABORTED and the like: that connection is gone, the next one is not.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!("accept: {e}");
                    if stopped(stop, 100) {
                        return;
                    }
                }
            }
        }
    }
}

/// Starts the serving program's process for `stream` on this thread, when the supervisor allows
/// it; `None` sends the connection to the supervisor instead (a trial pending, or a failed start,
/// which the supervisor then reports).
fn start_here(fast: &FastSlot, stream: &OwnedFd, peer: Option<std::net::SocketAddr>) -> Option<Event> {
    let allowed = fast.lock().ok()?.clone()?;
    let command = allowed.program.command(stream.as_raw_fd(), peer, allowed.stdio);
    let (pid, report) = command.env(crate::sentinel::MARKER_VAR, &allowed.marker).spawn_unconfirmed().ok()?;
    Some(Event::Started { pid, program: allowed.program.id, peer, report })
}

/// Whether the stop pipe is at end-of-file, waiting up to `ms` for it.
fn stopped(stop: &OwnedFd, ms: u16) -> bool {
    let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// What a connection's process did with its connection, by the kernel's TCP counters: whether it
/// wrote anything (sent or queued to send) and whether it read anything (received bytes no
/// longer waiting to be read). `None` where the kernel does not say (a Unix socket, not Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub wrote: bool,
    pub read: bool,
}

/// See [`Transfer`].
#[cfg(target_os = "linux")]
pub fn transfer(stream: &OwnedFd) -> Option<Transfer> {
    let fd = stream.as_raw_fd();
    // SAFETY: getsockopt and ioctl are called with a live fd (borrowed from `stream`) and
    // pointers to locals of exactly the size passed; the kernel writes at most that much.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let got = libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len);
        // Kernels before 4.1 have no byte counters: the structure is shorter.
        let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8;
        if got != 0 || (len as usize) < needed {
            return None;
        }
        let mut unsent: libc::c_int = 0;
        let mut unread: libc::c_int = 0;
        if libc::ioctl(fd, libc::TIOCOUTQ, &mut unsent) != 0
            || libc::ioctl(fd, libc::FIONREAD, &mut unread) != 0
        {
            return None;
        }
        let unread = u64::try_from(unread).unwrap_or(0);
        Some(Transfer {
            wrote: info.tcpi_bytes_acked > 0 || unsent > 0,
            read: info.tcpi_bytes_received > unread,
        })
    }
}

/// See [`Transfer`].
#[cfg(not(target_os = "linux"))]
pub fn transfer(_stream: &OwnedFd) -> Option<Transfer> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[cfg(target_os = "linux")]
    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_counters_tell_what_a_process_did_with_its_connection() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let fd: OwnedFd = server.try_clone().expect("clone").into();
        assert_eq!(transfer(&fd), Some(Transfer { wrote: false, read: false }));
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
        wait_for("the request to arrive", || {
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD on a live socket writes one c_int.
            unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
            n > 0
        });
        assert_eq!(transfer(&fd), Some(Transfer { wrote: false, read: false }), "arrived, not read");
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).expect("read");
        assert_eq!(transfer(&fd), Some(Transfer { wrote: false, read: true }));
        server.write_all(b"HTTP/1.0 200 OK\r\n\r\n").expect("answer");
        assert!(transfer(&fd).is_some_and(|t| t.wrote));
    }

    #[test]
    fn connections_beyond_the_limit_wait_and_dropping_the_acceptor_stops_it() {
        let socket = crate::sockets::bind_all(&[crate::sockets::parse_listen("127.0.0.1:0").expect("spec")])
            .expect("bind")
            .remove(0);
        let (tx, rx) = crossbeam_channel::unbounded();
        let fast = FastSlot::default();
        let acceptor = Acceptor::start(std::slice::from_ref(&socket), 1, &fast, &tx).expect("start");
        let _a = std::net::TcpStream::connect(&socket.bound).expect("connect a");
        let _b = std::net::TcpStream::connect(&socket.bound).expect("connect b");
        let first = rx.recv_timeout(Duration::from_secs(10)).expect("the first connection");
        assert!(matches!(first, Event::Connection(Connection { peer: Some(_), .. })));
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "a second one beyond the limit");
        acceptor.release();
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok(), "the second one, once released");
        drop(acceptor);
        let _c = std::net::TcpStream::connect(&socket.bound).expect("connect c");
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "nothing accepted once stopped");
    }
}
