//! Keys on a terminal: `r` reload, `s` status, `c` clear, `q` stop, `?` help.
//!
//! Contract:
//! - Only when devserve's stdin is a terminal and devserve is its foreground job; stdin that is a
//!   pipe, a file or /dev/null (CI, `| tee`, a service) is never read.
//! - The terminal leaves canonical mode and echo (keys act at once, without Enter) for as long
//!   as devserve reads it; signal keys (Ctrl-C, Ctrl-\) keep working. Its settings are restored
//!   when the [`Keys`] value is dropped, and by a panic hook on a panic. After `kill -9` of
//!   devserve nothing can restore them: `stty sane` does.
//! - A key becomes an [`Event`]: the same requests as the signals (`r` as HUP, `s` as USR1, `q` as
//!   TERM) or [`Event::Key`] for what only the terminal asks (clear, help).
//! - With several services, `r` waits up to a second for a letter: a service's initial reloads
//!   that service ([`Key::ReloadService`]); anything else (or nothing) reloads them all, and the
//!   key that came is then read as itself.

use std::io::Read;
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::Sender;
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

use crate::event::{Event, Key, Request};

/// The settings to put back.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Reading keys; the terminal's settings come back when this is dropped.
#[derive(Debug)]
pub struct Keys {
    _private: (),
}

impl Drop for Keys {
    fn drop(&mut self) {
        restore();
    }
}

/// Starts reading keys if stdin is the terminal devserve runs in the foreground of; `services`:
/// devserve runs several (`r` then an initial).
pub fn spawn(events: Sender<Event>, services: bool) -> Option<Keys> {
    let stdin = std::io::stdin();
    if !is_foreground(&stdin) {
        return None;
    }
    let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
    let mut raw = saved.clone();
    raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO);
    // Wake every half second without a key, to stop reading if devserve went to the background.
    raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 0;
    raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 5;
    if let Ok(mut slot) = SAVED.lock() {
        *slot = Some(saved);
    }
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous_hook(info);
    }));
    termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
    let spawned = std::thread::Builder::new().name("keys".into()).spawn(move || read_keys(&events, services));
    if spawned.is_err() {
        restore();
        return None;
    }
    Some(Keys { _private: () })
}

/// The next key within `wait` (reads wake every half second without one).
fn next_key(stdin: &std::io::Stdin, wait: Duration) -> Option<u8> {
    let until = std::time::Instant::now() + wait;
    let mut byte = [0u8; 1];
    while std::time::Instant::now() < until {
        match stdin.lock().read(&mut byte) {
            Ok(1) => return Some(byte[0]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    None
}

/// Puts the terminal's settings back (idempotent).
fn restore() {
    let saved = SAVED.lock().ok().and_then(|mut slot| slot.take());
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &saved);
    }
}

/// stdin is a terminal whose foreground process group is devserve's.
fn is_foreground(stdin: &std::io::Stdin) -> bool {
    use std::io::IsTerminal;
    stdin.is_terminal()
        && nix::unistd::tcgetpgrp(stdin.as_fd()).is_ok_and(|group| group == nix::unistd::getpgrp())
}

fn read_keys(events: &Sender<Event>, services: bool) {
    let stdin = std::io::stdin();
    let mut byte = [0u8; 1];
    // A key read while waiting after `r`, to be taken as itself.
    let mut pending: Option<u8> = None;
    loop {
        // Reading from the background would stop devserve (SIGTTIN): only in the foreground.
        if !is_foreground(&stdin) {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let read = match pending.take() {
            Some(key) => {
                byte[0] = key;
                Ok(1)
            }
            None => stdin.lock().read(&mut byte),
        };
        let event = match read {
            Ok(0) => continue,
            Ok(_) => match byte[0] {
                b'r' if services => match next_key(&stdin, Duration::from_secs(1)) {
                    Some(key) if key.is_ascii_alphanumeric() && !b"rsqch".contains(&key) => {
                        Event::Key(Key::ReloadService(char::from(key)))
                    }
                    other => {
                        pending = other;
                        Event::Request(Request::Reload)
                    }
                },
                b'r' => Event::Request(Request::Reload),
                b's' => Event::Request(Request::Status),
                b'q' => Event::Request(Request::Stop),
                b'c' => Event::Key(Key::Clear),
                b'?' | b'h' => Event::Key(Key::Help),
                _ => continue,
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if events.send(event).is_err() {
            return;
        }
    }
}
