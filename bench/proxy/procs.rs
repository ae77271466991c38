//! Every process the bench starts (devserve, nginx, the apps, wrk), as a [`Spawned`]: the shared
//! [`Guard`] (its own process group, a marker, output captured; stopped on drop with SIGTERM,
//! SIGKILL after 5 s, then SIGKILL by pid to anything still marked), with the waits this bench
//! needs.

use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::http_get;
use crate::shared::process::Guard;

/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How many of its last lines an error quotes.
const TAIL: usize = 4;

/// A started process; stopped (with everything it started) when dropped.
pub struct Spawned(Guard);

impl Deref for Spawned {
    type Target = Guard;

    fn deref(&self) -> &Guard {
        &self.0
    }
}

impl DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Guard {
        &mut self.0
    }
}

impl Spawned {
    /// Starts `command` as the leader of a new process group, stdin from /dev/null, stdout and
    /// stderr captured. `name` is for messages.
    pub fn spawn(name: &str, command: Command) -> Result<Spawned, String> {
        let program = command.get_program().to_string_lossy().into_owned();
        let guard = Guard::spawn(name, command, STOP_GRACE, TAIL)
            .map_err(|e| format!("cannot start {name} ({program}): {e}"))?;
        Ok(Spawned(guard))
    }

    /// Waits until `GET /` on `addr` answers 200 (the process must stay alive meanwhile).
    pub fn wait_serving(&mut self, addr: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let error = match http_get(addr, "/") {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(format!("{}: GET http://{addr}/ never answered 200 ({error})", self.name()));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}
