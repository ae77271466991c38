//! `devserve -s upgrade` (SIGUSR2): what passes between the devserve that runs and the devserve it
//! starts from the binary now at its path — the held sockets and a control channel. The policy
//! (who starts whom, who serves, who exits) is the supervisor's (`supervisor::upgrades`).
//!
//! Contract:
//! - The new devserve gets, besides its arguments and environment as they were at the first
//!   start, fd 3: its end of a Unix stream socket pair (the control channel), and fds 4, 5, …: the
//!   held sockets, described line by line in `DEVSERVE_UPGRADE_FDS` (`listen NAME ADDR` or
//!   `proxy ADDR`, ADDR as `--listen` writes it); `DEVSERVE_UPGRADE` holds the pid of the devserve
//!   that started it. Workers never see either variable (`spawn`'s activation variables).
//! - On the channel, lines: the new devserve writes `ready` once its first generation serves, or
//!   `failed REASON` before it exits; the devserve that started it writes `retire` to a devserve it
//!   started earlier when a newer one serves. End-of-file means the other side is gone.
//! - [`inherited`] takes the sockets over (close-on-exec again) and is read once, at start.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::unistd::Pid;

use crate::sockets::{self, NamedSocket};
use crate::spawn::Command;

/// The pid of the devserve that started this one for an upgrade.
pub const UPGRADE_VAR: &str = "DEVSERVE_UPGRADE";
/// What fds 4, 5, … are (see the module doc).
pub const UPGRADE_FDS_VAR: &str = "DEVSERVE_UPGRADE_FDS";

/// What a devserve started for an upgrade was handed.
pub struct Inherited {
    /// The devserve that started it (the first one of the run).
    pub anchor: Pid,
    pub control: UnixStream,
    pub listen: Vec<NamedSocket>,
    pub proxy: Option<NamedSocket>,
}

/// The control channel: (this devserve's end, the new one's end). Both close-on-exec; `spawn`
/// places the new one's end at fd 3.
pub fn control_pair() -> io::Result<(UnixStream, UnixStream)> {
    UnixStream::pair()
}

/// The command that starts the new devserve: `exe` with `args`, the control channel's end and the
/// held sockets (`listen`, then the front door's).
pub fn successor_command(
    exe: &Path,
    args: &[OsString],
    control: &UnixStream,
    listen: &[NamedSocket],
    proxy: Option<&NamedSocket>,
) -> Command {
    let mut fds = vec![control.as_raw_fd()];
    let mut lines = Vec::new();
    for socket in listen {
        fds.push(socket.raw_fd());
        lines.push(format!("listen {} {}", socket.name, socket.requested));
    }
    if let Some(socket) = proxy {
        fds.push(socket.raw_fd());
        lines.push(format!("proxy {}", socket.requested));
    }
    Command::new(exe.as_os_str())
        .args(args.iter().cloned())
        .env(UPGRADE_VAR, std::process::id().to_string())
        .env(UPGRADE_FDS_VAR, lines.join("\n"))
        .sockets(fds, false)
}

/// Takes over what the devserve that started this one handed it; `None` when it was not started
/// for an upgrade. Malformed lines are skipped (their fds stay closed-on-exec and unused).
pub fn inherited() -> Option<Inherited> {
    let anchor = std::env::var(UPGRADE_VAR).ok()?.parse::<i32>().ok()?;
    let control = take_fd(3)?;
    let mut listen = Vec::new();
    let mut proxy = None;
    let lines = std::env::var(UPGRADE_FDS_VAR).unwrap_or_default();
    for (fd, line) in (4..).zip(lines.lines()) {
        let Some(owned) = take_fd(fd) else { continue };
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("listen"), Some(name), Some(addr)) => {
                if let Ok(spec) = sockets::parse_listen(addr) {
                    listen.push(sockets::adopt(owned, spec.addr, name.to_owned()));
                }
            }
            (Some("proxy"), Some(addr), None) => {
                if let Ok(spec) = sockets::parse_listen(addr) {
                    proxy = Some(sockets::adopt(owned, spec.addr, "proxy".to_owned()));
                }
            }
            _ => {}
        }
    }
    Some(Inherited { anchor: Pid::from_raw(anchor), control: UnixStream::from(control), listen, proxy })
}

/// `fd`, if open, as an owned descriptor marked close-on-exec.
fn take_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: fcntl on any fd number is safe; it only tells whether it is open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: the fd is open (F_GETFD succeeded) and was handed to this process by the devserve
    // that started it, for this purpose; nothing else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on the fd just taken.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    Some(owned)
}

/// Writes one line on the channel; a gone peer is not an error here (its exit says more).
pub fn send(control: &UnixStream, line: &str) {
    let mut stream = control;
    let _ = stream.write_all(format!("{line}\n").as_bytes());
}

/// Reads the channel on a thread of its own: `on_line` gets each line, then `None` at its end.
pub fn read_lines(
    control: &UnixStream,
    mut on_line: impl FnMut(Option<String>) + Send + 'static,
) -> io::Result<()> {
    let reader = control.try_clone()?;
    std::thread::Builder::new().name("upgrade".into()).spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(line) => on_line(Some(line)),
                Err(_) => break,
            }
        }
        on_line(None);
    })?;
    Ok(())
}
