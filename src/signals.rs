//! Signals and child reaping: one thread turns every signal devserve handles into an [`Event`].
//!
//! Handlers only enqueue (signal-hook's self-pipe, as gunicorn's arbiter does); this thread reads
//! the queue. SIGCHLD is answered here by reaping every exited child with `waitpid(-1, WNOHANG)`
//! and sending one `Event::Exited` per child, so no zombie stays and the supervisor learns of each
//! exit in order with everything else. devserve is a child subreaper (Linux), so orphaned
//! grandchildren are re-parented to it and reaped here as well.

use std::io;

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::event::{Event, ExitStatus, Request};

/// Every signal devserve installs a handler for: a child resets exactly these before it runs
/// anything of its own (`spawn`).
pub const HANDLED: [i32; 9] = [SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2];

/// Installs the handlers and starts the signal thread.
pub fn spawn(events: Sender<Event>) -> io::Result<()> {
    let mut signals = Signals::new(HANDLED)?;
    #[cfg(target_os = "linux")]
    become_subreaper();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            let delivered = match request_for(signal) {
                Some(request) => events.send(Event::Request(request)).is_ok(),
                None => reap(&events),
            };
            if !delivered {
                return;
            }
        }
    })?;
    Ok(())
}

fn request_for(signal: i32) -> Option<Request> {
    match signal {
        SIGHUP => Some(Request::Reload),
        SIGINT | SIGTERM => Some(Request::Stop),
        SIGQUIT => Some(Request::Kill),
        SIGUSR1 => Some(Request::Status),
        SIGUSR2 => Some(Request::Upgrade),
        SIGTTIN => Some(Request::MoreWorkers),
        SIGTTOU => Some(Request::FewerWorkers),
        _ => None,
    }
}

/// Reaps every child that has exited; false once the supervisor is gone.
fn reap(events: &Sender<Event>) -> bool {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, ExitStatus::Signal(signal)),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return true,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!("waitpid failed: {e}");
                return true;
            }
        };
        if events.send(Event::Exited { pid, status }).is_err() {
            return false;
        }
    }
}

/// Orphaned descendants become devserve's children, so they are reaped and never zombies.
#[cfg(target_os = "linux")]
fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!("PR_SET_CHILD_SUBREAPER failed: {e}");
    }
}
