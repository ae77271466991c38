//! A run of a command line of its own, for the sections whose tools need flags that
//! `tools.rs`'s fixed command lines do not have (`--poll`, `--proxy`, `-l 127.0.0.1:0`,
//! `--ignore`): the same shared process [`Guard`] (process group, marker, death signal, capture
//! and clean-up) as [`crate::tools::Running`], with the command line given by the section.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{Fixture, descendants};
use crate::shared::process::Guard;
use crate::tools::{Ctx, STOP_GRACE, TAIL, finish, is_app, watchexec_flags};

/// devserve with `--log-format json`, then `args`, then `--` and the fixture: in `dir`, with the
/// fixture's environment (workers inherit it), no colour, no inherited socket variables.
pub fn devserve(ctx: &Ctx, dir: &Path, args: &[&str], fixture: &Fixture) -> Command {
    let mut command = Command::new(&ctx.bins.devserve);
    command.args(["--log-format", "json"]).args(args).arg("--").args(fixture.argv());
    finish(&mut command, dir, fixture);
    command
}

/// `watchexec -r --debounce 50ms -n -w DIR`, then `args`, then `--` and the fixture.
pub fn watchexec(ctx: &Ctx, dir: &Path, args: &[&str], fixture: &Fixture) -> Result<Command, String> {
    let mut command = Command::new(ctx.bins.watchexec.clone()?);
    let mut all = watchexec_flags(dir);
    all.extend(args.iter().map(Into::into));
    all.push("--".into());
    command.args(all).args(fixture.argv());
    finish(&mut command, dir, fixture);
    Ok(command)
}

/// The release-built fixture app.
pub fn fixture(ctx: &Ctx) -> Fixture {
    Fixture::at(&ctx.bins.fixture)
}

/// A running tool: the shared [`Guard`] (leader of its own process group, output captured).
/// Dropping it stops the tool and everything it started.
pub struct Launch(Guard);

impl Deref for Launch {
    type Target = Guard;

    fn deref(&self) -> &Guard {
        &self.0
    }
}

impl DerefMut for Launch {
    fn deref_mut(&mut self) -> &mut Guard {
        &mut self.0
    }
}

impl Launch {
    pub fn spawn(label: &str, command: Command) -> Result<Launch, String> {
        let guard = Guard::spawn(label, command, STOP_GRACE, TAIL)
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        Ok(Launch(guard))
    }

    /// The port of the address in devserve's first `kind` event (`listening`, `proxy_listening`).
    pub fn port_of(&mut self, kind: &str, timeout: Duration) -> Result<u16, String> {
        let event = self.wait_event(0, timeout, kind, |_| true)?.item;
        let address = event["address"].as_str().unwrap_or_default();
        let port = address.rsplit_once(':').and_then(|(_, port)| port.parse().ok());
        port.ok_or_else(|| format!("no port in {event}"))
    }

    /// The tool's own processes: it and its descendants, minus the fixture apps.
    pub fn own_pids(&self, fixture: &Path) -> Vec<i32> {
        descendants(self.pid()).into_iter().filter(|&pid| !is_app(pid, fixture)).collect()
    }

    /// The fixture apps running under the tool.
    pub fn apps(&self, fixture: &Path) -> Vec<i32> {
        descendants(self.pid()).into_iter().filter(|&pid| is_app(pid, fixture)).collect()
    }
}
