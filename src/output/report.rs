//! Every line devserve prints, as a typed event: [`Report`]. The JSON form is the variant's name
//! in snake case under `event`, with the fields as they are; the human form is one or more short
//! lines with a [`Tone`] that picks the colour.

use std::time::Duration;

use serde::Serialize;

use super::duration;

/// The tone of a line, which picks its color.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Progress: a change, a build starting, a generation starting.
    Info,
    /// Something worked: a build, a generation ready.
    Good,
    /// Something failed but devserve carries on (the old generation keeps serving).
    Warn,
    /// devserve cannot carry on, or a thing the user must act on.
    Error,
}

/// Why a worker was started outside a generation's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStart {
    /// A rolling swap's next step.
    Rolling,
    /// After a crash, once its backoff passed.
    Restart,
    /// One more worker (TTIN, or capacity restored after a rolled-back rolling swap).
    Added,
    /// The replacement of a worker sent its `--max-requests`.
    Recycle,
}

/// Something devserve tells its user. See docs/src/json-events.md for the fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    Listening {
        address: String,
        fd: usize,
        name: String,
    },
    /// The front door listens (`--proxy`).
    /// `--proxy https://`: the certificate's names, the CA that signed it, and whether this user's
    /// browsers (their NSS database) trust that CA.
    #[cfg_attr(not(feature = "https"), allow(dead_code))]
    ProxyCertificate {
        ca: String,
        names: Vec<String>,
        trusted: bool,
    },
    ProxyListening {
        address: String,
        raw_tcp: bool,
        /// `https://`: TLS, HTTP/2 and HTTP/1.1.
        tls: bool,
    },
    /// New requests now go to `generation`'s workers; `held`, `retried` and `failed` count the
    /// requests of the period before (the swap).
    ProxyRouting {
        address: String,
        generation: u64,
        upstreams: Vec<String>,
        held: u64,
        retried: u64,
        failed: u64,
    },
    /// Long-lived connections (WebSocket, SSE) still open to a generation at its stop timeout were
    /// closed.
    ProxyClosed {
        generation: u64,
        connections: usize,
    },
    ProxyProblem {
        text: String,
    },
    /// The front door refused requests (`403`): `check` is `host`, `origin` or
    /// `cross-site-load`, `value` what was refused, `text` the page's sentence with the flag that
    /// allows it. Once per check and value per minute.
    ProxyRefused {
        check: String,
        value: String,
        text: String,
    },
    /// `--allowed-host all`: the front door's DNS-rebinding and cross-site checks are off.
    AllowedHostsOff,
    /// Zero-config: what the folder was found to be, the run as an explicit command line, where
    /// each setting came from (`key: source`), and detection's notes.
    Detected {
        kind: String,
        command_line: String,
        from: Vec<String>,
        notes: Vec<String>,
    },
    /// The app reloads itself too: what to drop or add.
    SelfReloading {
        hint: String,
    },
    /// `devserve init` wrote the configuration file.
    ConfigWritten {
        file: String,
        kind: String,
    },
    /// Where to point a browser: the front door's URL, on a line of its own.
    FrontUrl {
        url: String,
    },
    /// `--open`: the browser was asked to open `url`.
    BrowserOpened {
        url: String,
    },
    /// `--open` could not open a browser.
    BrowserNotOpened {
        reason: String,
    },
    /// A worker listens where it was not told to: behind the front door on `found` instead of
    /// `given` (its `PORT`; `found` empty: on nothing yet), or under `--listen` (`given` null) on
    /// ports of its own instead of the held sockets.
    OwnPort {
        generation: u64,
        worker: Option<u32>,
        pid: i32,
        given: Option<u16>,
        found: Vec<u16>,
    },
    /// The app's port was found: the front door proxies to it, as `--app-port PORT` would.
    AppPortFound {
        generation: u64,
        port: u16,
    },
    /// Under `--listen`: connections wait in the held socket at `address` and nothing accepts.
    NotAccepting {
        generation: u64,
        worker: Option<u32>,
        address: String,
        queued: u64,
    },
    /// `--max-requests`: a worker was sent its requests; its replacement is ready and routed, and
    /// it drains and stops.
    WorkerRecycled {
        generation: u64,
        worker: u32,
        pid: i32,
        requests: u64,
    },
    /// A worker's picked port was taken before it bound it: started again on another port.
    PortTaken {
        generation: u64,
        worker: u32,
        port: u16,
        pid: i32,
    },
    RestartMode,
    /// A service's build waits for the builds of others (`--build-jobs`) to end.
    BuildQueued {
        behind: Vec<String>,
        jobs: u32,
    },
    /// A service waits for the services it depends on to serve before its first start.
    ServiceWaiting {
        after: Vec<String>,
    },
    Watching {
        roots: Vec<String>,
        folders: usize,
    },
    WatchProblem {
        text: String,
    },
    PidfileReplaced {
        path: String,
        pid: i32,
        reused: bool,
    },
    /// The same paths changed right after each of the last `starts` starts: a loop the app makes
    /// by writing into the watched tree. They no longer reload until a change that does not
    /// follow a start; `fix` and `key` say how to ignore them for good.
    /// The same paths changed right after each of the last `starts` starts: a reload loop; the
    /// fix is to ignore `globs` (relative to their watch root).
    LoopMuted {
        paths: Vec<String>,
        starts: u32,
        globs: Vec<String>,
    },
    /// Files changed, a reload was asked for, or the first start.
    ChangeDetected {
        cause: String,
        files: usize,
    },
    BuildStarted {
        cause: String,
        command: String,
    },
    /// A newer change cancelled the build in progress; it starts again.
    BuildRestarted {
        cause: String,
    },
    BuildFinished {
        ok: bool,
        status: String,
        duration_ms: u128,
        serving: Option<u64>,
    },
    /// The build left the program byte for byte as `serving` runs it: no swap.
    AppUnchanged {
        build_ms: u128,
        serving: u64,
    },
    BuildNotStarted {
        error: String,
    },
    GenerationStarting {
        generation: u64,
        pids: Vec<i32>,
    },
    GenerationSuperseded {
        generation: u64,
        by_build: bool,
    },
    GenerationReady {
        generation: u64,
        total_ms: u128,
        /// Only when files changed: a first start or a signal has no debounce wait.
        debounce_ms: Option<u128>,
        build_ms: Option<u128>,
        start_ms: u128,
        /// Set when no worker sent READY=1 and readiness was assumed after `--ready-delay`:
        /// `start_ms` is then that delay, not a measurement.
        assumed_after_ms: Option<u128>,
        cause: String,
    },
    /// `devserve ca create`: the local CA is at `path`, allowed `names` besides the local ones.
    #[cfg_attr(not(feature = "https"), allow(dead_code))]
    CaCreated {
        path: String,
        names: Vec<String>,
    },
    /// `devserve ca install`: trusted in the NSS database `nss` (`None`: it could not be), and the
    /// commands that trust it system-wide.
    #[cfg_attr(not(feature = "https"), allow(dead_code))]
    CaInstalled {
        path: String,
        nss: Option<String>,
        system: Vec<String>,
    },
    /// `devserve ca uninstall`: removed from the NSS database (`removed` false: it was not there).
    #[cfg_attr(not(feature = "https"), allow(dead_code))]
    CaUninstalled {
        nss: String,
        removed: bool,
    },
    /// An upgrade: the devserve binary at `path` was started as `pid` on the held sockets.
    UpgradeStarting {
        pid: i32,
        path: String,
    },
    /// An upgrade was asked of a devserve started by one: the first devserve (`pid`) makes it.
    UpgradeForwarded {
        pid: i32,
    },
    /// An upgrade was asked while `pid` is still starting for the previous one.
    UpgradeBusy {
        pid: i32,
    },
    /// The new devserve (`pid`, `None`: not started) failed; the one serving goes on.
    UpgradeFailed {
        pid: Option<i32>,
        reason: String,
    },
    /// The new devserve `pid` serves; `replaced` (this one, or an earlier new one) retires.
    UpgradeDone {
        pid: i32,
        replaced: i32,
    },
    /// This devserve was started for an upgrade, and a newer one serves now: it drains and exits.
    UpgradeRetiring,
    /// A devserve that retired for a newer one has exited.
    UpgradeRetired {
        pid: i32,
        status: String,
    },
    /// The devserve that served (started for an upgrade) stopped: so does the first one.
    UpgradeServingStopped {
        pid: i32,
        status: String,
    },
    /// `--accept`: each connection starts its own process; at most `max_connections` at once.
    AcceptConnections {
        max_connections: u32,
        stdio: bool,
    },
    /// `--accept`: a build's program is ready. The first one serves every connection at once; a
    /// later one is tried on the next connection while `serving` takes the others.
    ProgramReady {
        generation: u64,
        serving: Option<u64>,
        total_ms: u128,
        cause: String,
    },
    /// `--accept`: the program tried on a connection passed (`how`) and serves every new one;
    /// `replaced`'s connections in flight finish on it.
    ProgramServing {
        generation: u64,
        replaced: Option<u64>,
        how: String,
    },
    /// `--accept`: the program tried on a connection failed before writing anything; `serving`
    /// is back. `rerun`: that connection was given to `serving` (the new one had read none of it).
    ProgramRolledBack {
        generation: u64,
        reason: String,
        serving: u64,
        rerun: bool,
    },
    /// `--accept`: a connection's process ended with a failure.
    ConnectionFailed {
        generation: u64,
        pid: i32,
        peer: Option<String>,
        status: String,
    },
    GenerationFailed {
        generation: u64,
        reason: String,
        serving: Option<u64>,
    },
    /// A generation is told to stop: after a swap, or first in restart mode.
    GenerationStopping {
        generation: u64,
        signal: String,
        restart_mode: bool,
    },
    /// A stopping generation outlived `--stop-timeout`: its process groups get SIGKILL.
    GenerationKilled {
        generation: u64,
        pids: Vec<i32>,
        after_ms: u128,
    },
    GenerationStopped {
        generation: u64,
    },
    WorkerStarted {
        generation: u64,
        worker: u32,
        pid: i32,
        why: WorkerStart,
    },
    WorkerNotStarted {
        generation: u64,
        worker: u32,
        error: String,
        retry_in_ms: Option<u128>,
    },
    WorkerStopping {
        generation: u64,
        worker: u32,
        pid: i32,
        rolling: bool,
    },
    WorkerStopped {
        generation: u64,
        worker: u32,
        pid: i32,
    },
    /// A serving worker ended on its own. `restart_in_ms` is `None` when it is not restarted:
    /// `crash_loop` says whether this exit hit `--max-restarts`.
    WorkerExited {
        generation: u64,
        worker: u32,
        pid: i32,
        status: String,
        crashes_in_a_row: u32,
        restart_in_ms: Option<u128>,
        crash_loop: bool,
    },
    /// A ready worker sent no `WATCHDOG=1` within `--watchdog`: killed, then restarted like a crash.
    WatchdogMissed {
        generation: u64,
        worker: u32,
        pid: i32,
        after_ms: u128,
    },
    /// A worker told to stop alone outlived `--stop-timeout`.
    WorkerKilled {
        generation: u64,
        pid: i32,
        after_ms: u128,
    },
    WorkersChanged {
        workers: u32,
        at_minimum: bool,
    },
    ConfigRejected {
        file: String,
        problems: Vec<String>,
    },
    ConfigUnchanged {
        file: String,
    },
    /// `changed` lists the settings the edit changed; `next_start` those of them that wait for
    /// devserve's next start.
    ConfigApplied {
        file: String,
        changed: Vec<String>,
        next_start: Vec<String>,
    },
    SocketRearmed {
        address: String,
        generation: Option<u64>,
    },
    SocketRearmFailed {
        address: String,
        error: String,
    },
    SentinelRestarted {
        old_pid: i32,
        status: String,
        new_pid: Option<i32>,
        error: Option<String>,
    },
    /// The status table (USR1): see [`super::status::StatusTable`].
    Status {
        table: super::status::StatusTable,
    },
    StatusNotWritten {
        file: String,
        error: String,
    },
    ProbeStarted {
        command: String,
    },
    ProbeNotStarted {
        error: String,
    },
    ProbeFinished {
        ok: bool,
        status: String,
    },
    ProbeTimedOut {
        after_ms: u128,
    },
    OnceInterrupted,
    /// The keys devserve reads on its terminal.
    /// The keys a terminal gives; `services`: with several, their names (`r` then an initial).
    Keys {
        services: Vec<String>,
    },
    /// `r` then a letter no service's name starts with.
    NoServiceKey {
        key: char,
    },
    Stopping {
        signal: String,
        timeout_ms: u128,
    },
    StoppingNow,
    Stopped,
    /// devserve cannot go on, or the command line is wrong: one line, then it exits.
    Error {
        text: String,
    },
    /// A line that helps with the error before it (what zero-config looked for).
    Hint {
        text: String,
    },
}

impl Report {
    /// The human lines, if any, and their tone.
    pub fn human(&self) -> Option<(Tone, Vec<String>)> {
        self.front_lines()
            .or_else(|| self.app_port_lines())
            .or_else(|| self.setup_lines())
            .or_else(|| self.build_lines())
            .or_else(|| self.generation_lines())
            .or_else(|| self.worker_lines())
            .or_else(|| self.control_lines())
            .unwrap_or(None)
    }

    /// The front doors: sockets and the proxy. `None`: not of this family.
    fn front_lines(&self) -> Option<Human> {
        let human = match self {
            Report::Listening { address, fd, name } => {
                one(Tone::Info, format!("listening on {address} (fd {fd}, {name})"))
            }
            Report::ProxyCertificate { ca, names, trusted } => {
                let trust = if *trusted {
                    String::new()
                } else {
                    "; browsers do not trust it yet: `devserve ca install` (or curl --cacert CA)".to_owned()
                };
                one(
                    Tone::Info,
                    format!("https: a certificate for {} from the local CA {ca}{trust}", names.join(", ")),
                )
            }
            Report::ProxyListening { address, raw_tcp, tls } => {
                let kind = if *raw_tcp {
                    "raw TCP"
                } else if *tls {
                    "HTTPS: HTTP/2 and HTTP/1.1"
                } else {
                    "HTTP"
                };
                one(Tone::Info, format!("proxy on {address} ({kind}; each worker gets a port of its own)"))
            }
            Report::ProxyRouting { address, generation, upstreams, held, retried, failed } => {
                let mut text = format!("proxy on {address} → gen {generation} ({})", upstreams.join(", "));
                if held + retried + failed > 0 {
                    text.push_str(&format!(" · held {held}, retried {retried}, failed {failed}"));
                }
                one(Tone::Info, text)
            }
            Report::ProxyClosed { generation, connections } => one(
                Tone::Warn,
                format!(
                    "proxy: closed {connections} long-lived connection(s) to gen {generation} at its stop timeout"
                ),
            ),
            Report::ProxyProblem { text } => one(Tone::Warn, format!("proxy: {text}")),
            Report::ProxyRefused { text, .. } => one(Tone::Warn, format!("proxy: refused: {text}")),
            Report::FrontUrl { url } => one(Tone::Good, format!("→ {url}")),
            Report::AllowedHostsOff => one(
                Tone::Warn,
                "proxy: --allowed-host all: any web site can read the app through DNS rebinding, \
                 open its WebSockets and include its scripts"
                    .to_owned(),
            ),
            Report::PortTaken { generation, worker, port, pid } => one(
                Tone::Info,
                format!(
                    "gen {generation} w{worker}: port {port} was taken by another program; started again (pid {pid})"
                ),
            ),
            Report::BuildQueued { behind, jobs } => one(
                Tone::Info,
                format!("build waits for {}'s to end ({jobs} at a time: --build-jobs)", behind.join(", ")),
            ),
            Report::ServiceWaiting { after } => {
                one(Tone::Info, format!("waiting for {} to be ready first (depends-on)", after.join(", ")))
            }
            Report::RestartMode => one(
                Tone::Info,
                "no --listen: restart mode (the app binds its own port; old and new cannot overlap)".into(),
            ),
            Report::SocketRearmed { address, generation } => {
                let by = generation.map(|id| format!(" by gen {id}")).unwrap_or_default();
                one(
                    Tone::Warn,
                    format!(
                        "{address} was shut down{by} (a worker called shutdown() on its fd); listening again"
                    ),
                )
            }
            Report::SocketRearmFailed { address, error } => {
                one(Tone::Warn, format!("{address}: cannot check or re-arm the socket: {error}"))
            }
            _ => return None,
        };
        Some(human)
    }

    /// What the app listens on instead of what it was given, and the browser opener. `None`: not
    /// of this family.
    fn app_port_lines(&self) -> Option<Human> {
        let human = match self {
            Report::OwnPort { generation, worker, pid, given, found } => {
                let who = match worker {
                    Some(worker) => format!("gen {generation} w{worker} (pid {pid})"),
                    None => format!("gen {generation} (pid {pid})"),
                };
                let ports = found.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                let text = match (given, found.is_empty()) {
                    (Some(given), true) => format!(
                        "{who} listens on no port yet; it was given port {given} (PORT and {{port}}): \
                         does the app read them?"
                    ),
                    (Some(given), false) => format!(
                        "{who} listens on port {ports}, not on port {given} it was given: the app does not \
                         read PORT or {{port}}"
                    ),
                    (None, _) => format!(
                        "{who} listens on port {ports} of its own, not on the socket devserve holds (fd 3): \
                         requests to the held address wait unanswered. Run it with --proxy ADDR and have it \
                         bind $PORT, or take fd 3 (LISTEN_FDS)"
                    ),
                };
                one(Tone::Warn, text)
            }
            Report::AppPortFound { port, .. } => one(
                Tone::Info,
                format!(
                    "proxying to port {port} as --app-port {port} does: a swap stops the old generation \
                     before the new one starts, and requests wait across the gap (give --app-port {port} \
                     to say so from the start)"
                ),
            ),
            Report::NotAccepting { generation, address, queued, .. } => one(
                Tone::Warn,
                format!(
                    "gen {generation}: {queued} connection(s) wait on {address} and no worker accepts them: \
                     the app does not take the socket devserve holds (fd 3, LISTEN_FDS). Run it with \
                     --proxy ADDR and have it bind $PORT, or take fd 3"
                ),
            ),
            Report::BrowserOpened { url } => one(Tone::Info, format!("opening {url} in the browser")),
            Report::BrowserNotOpened { reason } => one(Tone::Warn, format!("--open: {reason}")),
            _ => return None,
        };
        Some(human)
    }

    /// Start-up and configuration: zero-config, the watcher, the config file, changes. `None`: not of this family.
    fn setup_lines(&self) -> Option<Human> {
        let human = match self {
            Report::Detected { kind, command_line, from, notes } => {
                let mut lines = vec![format!("found {kind}: {command_line}")];
                if !from.is_empty() {
                    lines.push(format!("  from {}", from.join("; ")));
                }
                lines.extend(notes.iter().map(|note| format!("  {note}")));
                Some((Tone::Info, lines))
            }
            Report::SelfReloading { hint } => one(Tone::Warn, format!("two reloaders: {hint}")),
            Report::CaCreated { path, names } => {
                let extra =
                    if names.is_empty() { String::new() } else { format!(" and {}", names.join(", ")) };
                one(
                    Tone::Good,
                    format!(
                        "local CA made: {path}; it can vouch for localhost, *.localhost, loopback and private \
                         addresses{extra}, nothing else. `devserve ca install` trusts it"
                    ),
                )
            }
            Report::CaInstalled { path, nss, system } => {
                let mut lines = vec![match nss {
                    Some(db) => {
                        format!("trusted {path} for this user in {db} (Chromium, Firefox; restart them)")
                    }
                    None => format!("could not trust {path} for this user (see below)"),
                }];
                lines.push("system-wide (needs root; devserve does not run it):".to_owned());
                lines.extend(system.iter().map(|command| format!("  {command}")));
                Some((Tone::Info, lines))
            }
            Report::CaUninstalled { nss, removed: true } => {
                one(Tone::Info, format!("removed devserve's local CA from {nss}"))
            }
            Report::CaUninstalled { nss, removed: false } => {
                one(Tone::Info, format!("devserve's local CA was not trusted in {nss}: nothing to remove"))
            }
            Report::ConfigWritten { file, kind } => one(
                Tone::Good,
                format!("wrote {file} for {kind}; `devserve check` shows what would run, `devserve` runs it"),
            ),
            Report::Watching { roots, .. } if roots.is_empty() => {
                one(Tone::Info, "watching nothing: no service restarts on changes (watch = [])".into())
            }
            Report::Watching { roots, folders } => {
                let noun = if *folders == 1 { "folder" } else { "folders" };
                one(Tone::Info, format!("watching {} ({folders} {noun})", roots.join(", ")))
            }
            Report::WatchProblem { text } => one(Tone::Warn, text.clone()),
            Report::PidfileReplaced { path, pid, reused } => {
                let why = if *reused { "is now another program" } else { "is gone" };
                one(Tone::Warn, format!("replacing stale pidfile {path} (pid {pid} {why})"))
            }
            Report::LoopMuted { paths, starts, globs } => {
                let fix = globs.iter().map(|g| format!("--ignore '{g}'")).collect::<Vec<_>>().join(" ");
                let key = globs.iter().map(|g| format!("\"{g}\"")).collect::<Vec<_>>().join(", ");
                one(
                    Tone::Warn,
                    format!(
                        "{} changed right after each of the last {starts} starts: a reload loop; ignoring it \
                         until another change. Fix: {fix} (or ignore = [{key}] in devserve.toml)",
                        paths.join(", ")
                    ),
                )
            }
            Report::ChangeDetected { .. } => None,
            Report::ConfigRejected { file, problems } => {
                let mut lines = problems.clone();
                lines.push(format!("{file}: not applied; the running config stays"));
                Some((Tone::Error, lines))
            }
            Report::ConfigUnchanged { file } => one(Tone::Info, format!("{file}: no change")),
            Report::ConfigApplied { file, changed, next_start } => {
                let mut text = format!("{file}: applied ({})", changed.join(", "));
                if !next_start.is_empty() {
                    text.push_str(&format!("; from the next start: {}", next_start.join(", ")));
                }
                one(Tone::Info, text)
            }
            _ => return None,
        };
        Some(human)
    }

    /// Builds. `None`: not of this family.
    fn build_lines(&self) -> Option<Human> {
        let human = match self {
            Report::BuildStarted { cause, command } => {
                one(Tone::Info, format!("{cause}: building ({command})"))
            }
            Report::BuildRestarted { cause } => one(Tone::Info, format!("{cause}: restarting the build")),
            Report::BuildFinished { ok: true, duration_ms, .. } => {
                one(Tone::Info, format!("build ok in {}", ms(*duration_ms)))
            }
            Report::BuildFinished { ok: false, status, duration_ms, serving } => one(
                Tone::Warn,
                format!("build failed in {} ({status}); {}", ms(*duration_ms), serving_note(serving)),
            ),
            Report::AppUnchanged { build_ms, serving } => one(
                Tone::Good,
                format!("build {}: app unchanged; gen {serving} keeps serving", ms(*build_ms)),
            ),
            Report::BuildNotStarted { error } => one(Tone::Error, format!("cannot run the build: {error}")),
            _ => return None,
        };
        Some(human)
    }

    /// Generations: starting, ready, failed, stopping. `None`: not of this family.
    fn generation_lines(&self) -> Option<Human> {
        let human = match self {
            Report::GenerationStarting { generation, pids } => {
                let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
                let label = if pids.len() == 1 { "pid" } else { "pids" };
                one(Tone::Info, format!("gen {generation} starting ({label} {})", pids.join(", ")))
            }
            Report::GenerationSuperseded { generation, by_build } => {
                let newer = if *by_build { "build" } else { "change" };
                one(Tone::Info, format!("gen {generation} superseded by a newer {newer}; stopping it"))
            }
            Report::UpgradeStarting { pid, path } => one(
                Tone::Info,
                format!(
                    "upgrade: started {path} (pid {pid}) on the same sockets; this devserve serves until it does"
                ),
            ),
            Report::UpgradeForwarded { pid } => one(
                Tone::Info,
                format!("upgrade: asked the first devserve (pid {pid}), which starts the new one"),
            ),
            Report::UpgradeBusy { pid } => one(
                Tone::Warn,
                format!("upgrade: already upgrading (pid {pid} is starting); ask again once it serves"),
            ),
            Report::UpgradeFailed { pid: Some(pid), reason } => one(
                Tone::Warn,
                format!("upgrade failed: the new devserve (pid {pid}): {reason}; the old one keeps serving"),
            ),
            Report::UpgradeFailed { pid: None, reason } => {
                one(Tone::Warn, format!("upgrade failed: {reason}; this devserve keeps serving"))
            }
            Report::UpgradeDone { pid, replaced } => one(
                Tone::Good,
                format!("upgrade: the new devserve (pid {pid}) serves; pid {replaced} drains and retires"),
            ),
            Report::UpgradeRetiring => one(
                Tone::Info,
                "a newer devserve serves: this one stops accepting, drains and exits".to_owned(),
            ),
            Report::UpgradeRetired { pid, status } => {
                one(Tone::Info, format!("upgrade: the previous devserve (pid {pid}) {status}"))
            }
            Report::UpgradeServingStopped { pid, status } => {
                one(Tone::Info, format!("the devserve that served (pid {pid}) {status}: stopping"))
            }
            Report::AcceptConnections { max_connections, stdio } => one(
                Tone::Info,
                format!(
                    "each connection starts COMMAND with it {} (at most {max_connections} at once; more wait in \
                     the queue)",
                    if *stdio { "as stdin and stdout" } else { "at fd 3" }
                ),
            ),
            Report::ProgramReady { generation, serving: None, total_ms, cause } => one(
                Tone::Good,
                format!("gen {generation} ready in {}: each connection starts it · {cause}", ms(*total_ms)),
            ),
            Report::ProgramReady { generation, serving: Some(serving), total_ms, cause } => one(
                Tone::Good,
                format!(
                    "gen {generation} ready in {}: the next connection tries it, gen {serving} takes the \
                     others until it passes · {cause}",
                    ms(*total_ms)
                ),
            ),
            Report::ProgramServing { generation, replaced, how } => {
                let after =
                    replaced.map(|old| format!("; gen {old}'s connections finish on it")).unwrap_or_default();
                one(
                    Tone::Good,
                    format!("gen {generation} serves new connections: its first one {how}{after}"),
                )
            }
            Report::ProgramRolledBack { generation, reason, serving, rerun } => {
                let connection = if *rerun {
                    "got that connection: none of it had been read"
                } else {
                    "but that connection was closed: it had been read from"
                };
                one(
                    Tone::Warn,
                    format!(
                        "gen {generation} rolled back: {reason}; gen {serving} serves again and {connection}"
                    ),
                )
            }
            Report::ConnectionFailed { generation, pid, peer, status } => {
                let from = peer.as_ref().map(|p| format!(" from {p}")).unwrap_or_default();
                one(Tone::Warn, format!("gen {generation} connection{from} (pid {pid}) {status}"))
            }
            Report::GenerationReady {
                generation,
                total_ms,
                debounce_ms,
                build_ms,
                start_ms,
                assumed_after_ms,
                cause,
            } => {
                let mut phases = Vec::new();
                if let Some(debounce) = debounce_ms {
                    phases.push(format!("debounce {}", ms(*debounce)));
                }
                if let Some(build) = build_ms {
                    phases.push(format!("build {}", ms(*build)));
                }
                if let Some(delay) = assumed_after_ms {
                    // Not a measurement: say what it is.
                    let before =
                        if phases.is_empty() { String::new() } else { format!("; {}", phases.join(", ")) };
                    return Some(one(
                        Tone::Good,
                        format!(
                            "gen {generation} ready: assumed after {} up (no READY=1){before} · {cause}",
                            ms(*delay)
                        ),
                    ));
                }
                phases.push(format!("start {}", ms(*start_ms)));
                let phases = phases.join(", ");
                one(Tone::Good, format!("gen {generation} ready in {} ({phases}) · {cause}", ms(*total_ms)))
            }
            Report::GenerationFailed { generation, reason, serving } => {
                one(Tone::Warn, format!("gen {generation} failed: {reason}; {}", serving_note(serving)))
            }
            Report::GenerationStopping { generation, restart_mode: true, .. } => {
                one(Tone::Info, format!("gen {generation} stopping (restart mode: the new one starts after)"))
            }
            Report::GenerationStopping { generation, signal, .. } => {
                one(Tone::Info, format!("gen {generation} stopping ({signal})"))
            }
            Report::GenerationKilled { generation, pids, after_ms } => {
                let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
                let which = match pids.len() {
                    0 => "no process".to_owned(),
                    1 => format!("pid {}", pids.join("")),
                    _ => format!("pids {}", pids.join(", ")),
                };
                one(
                    Tone::Warn,
                    format!("gen {generation} still running after {}; killing {which}", ms(*after_ms)),
                )
            }
            Report::GenerationStopped { generation } => one(Tone::Info, format!("gen {generation} stopped")),
            _ => return None,
        };
        Some(human)
    }

    /// Workers: starts, exits, restarts, the watchdog, scaling. `None`: not of this family.
    fn worker_lines(&self) -> Option<Human> {
        let human = match self {
            Report::WorkerStarted { generation, worker, pid, why } => {
                let verb = match why {
                    WorkerStart::Rolling => format!("starting (pid {pid})"),
                    WorkerStart::Restart => format!("restarted (pid {pid})"),
                    WorkerStart::Added => format!("started (pid {pid})"),
                    WorkerStart::Recycle => {
                        format!("started (pid {pid}) to replace a worker at --max-requests")
                    }
                };
                one(Tone::Info, format!("gen {generation} w{worker} {verb}"))
            }
            Report::WorkerRecycled { generation, worker, pid, requests } => one(
                Tone::Info,
                format!(
                    "gen {generation} w{worker} (pid {pid}) recycled after {requests} requests: its replacement \
                     serves, it drains and stops"
                ),
            ),
            Report::WorkerNotStarted { generation, worker, error, retry_in_ms } => match retry_in_ms {
                Some(retry) => one(
                    Tone::Warn,
                    format!(
                        "gen {generation} w{worker} could not restart: {error}; next try in {}",
                        ms(*retry)
                    ),
                ),
                None => one(Tone::Warn, format!("gen {generation} w{worker} could not start: {error}")),
            },
            Report::WorkerStopping { generation, worker, pid, rolling } => {
                let rolling = if *rolling { " (rolling)" } else { "" };
                one(Tone::Info, format!("gen {generation} w{worker} (pid {pid}) stopping{rolling}"))
            }
            Report::WorkerStopped { generation, worker, pid } => {
                one(Tone::Info, format!("gen {generation} w{worker} (pid {pid}) stopped"))
            }
            Report::WorkerExited {
                generation,
                worker,
                pid,
                status,
                crashes_in_a_row,
                restart_in_ms,
                crash_loop,
            } => {
                let head = format!("gen {generation} w{worker} (pid {pid}) {status}");
                match (restart_in_ms, crash_loop) {
                    (Some(delay), _) => one(Tone::Warn, format!("{head}; restarting in {}", ms(*delay))),
                    (None, true) => one(
                        Tone::Error,
                        format!(
                            "{head}: {crashes_in_a_row} crashes in a row; no more restarts until the next \
                             change or HUP"
                        ),
                    ),
                    (None, false) => one(Tone::Warn, format!("{head}; not restarted (crash loop)")),
                }
            }
            Report::WatchdogMissed { generation, worker, pid, after_ms } => one(
                Tone::Warn,
                format!(
                    "gen {generation} w{worker} (pid {pid}) missed its watchdog (no WATCHDOG=1 for {}); killed",
                    ms(*after_ms)
                ),
            ),
            Report::WorkerKilled { generation, pid, after_ms } => one(
                Tone::Warn,
                format!("gen {generation} pid {pid} still running after {}; killed", ms(*after_ms)),
            ),
            Report::WorkersChanged { workers, at_minimum: true } => {
                one(Tone::Info, format!("workers: already {workers}, the minimum"))
            }
            Report::WorkersChanged { workers, .. } => one(Tone::Info, format!("workers: {workers}")),
            _ => return None,
        };
        Some(human)
    }

    /// devserve itself: the sentinel, status, `--once`, keys, stopping, errors. `None`: not of this family.
    fn control_lines(&self) -> Option<Human> {
        let human = match self {
            Report::SentinelRestarted { old_pid, status, new_pid: Some(new), .. } => {
                one(Tone::Warn, format!("sentinel (pid {old_pid}) {status}; restarted (pid {new})"))
            }
            Report::SentinelRestarted { old_pid, status, error, .. } => one(
                Tone::Error,
                format!(
                    "sentinel (pid {old_pid}) {status} and cannot be restarted: {}; a SIGKILL of devserve may \
                     now leave processes behind",
                    error.as_deref().unwrap_or("unknown error")
                ),
            ),
            Report::Status { table } => Some((Tone::Info, table.lines())),
            Report::StatusNotWritten { file, error } => {
                one(Tone::Warn, format!("cannot write the status file {file}: {error}"))
            }
            Report::ProbeStarted { command } => one(Tone::Info, format!("probe: {command}")),
            Report::ProbeNotStarted { error } => one(Tone::Error, format!("cannot run the probe: {error}")),
            Report::ProbeFinished { ok: true, .. } => one(Tone::Good, "probe ok".into()),
            Report::ProbeFinished { ok: false, status } => {
                one(Tone::Error, format!("probe failed ({status})"))
            }
            Report::ProbeTimedOut { after_ms } => {
                one(Tone::Error, format!("probe did not finish within {}; killed", ms(*after_ms)))
            }
            Report::Keys { services } if services.is_empty() => {
                one(Tone::Info, "keys: r reload · s status · c clear · q stop · ? help".into())
            }
            Report::Keys { services } => {
                let each: Vec<String> = services
                    .iter()
                    .map(|name| format!("r{} {name}", name.chars().next().unwrap_or('?')))
                    .collect();
                one(
                    Tone::Info,
                    format!(
                        "keys: r reload all · {} · s status · c clear · q stop · ? help",
                        each.join(" · ")
                    ),
                )
            }
            Report::NoServiceKey { key } => {
                one(Tone::Warn, format!("r{key}: no service's name starts with `{key}`; nothing reloaded"))
            }
            Report::OnceInterrupted => one(Tone::Warn, "--once: stopped before a verdict".into()),
            Report::Stopping { signal, timeout_ms } => one(
                Tone::Info,
                format!(
                    "stopping ({signal} to workers, SIGKILL after {}; again to kill now)",
                    ms(*timeout_ms)
                ),
            ),
            Report::StoppingNow => one(Tone::Info, "stopping now (SIGKILL)".into()),
            Report::Stopped => one(Tone::Info, "stopped".into()),
            Report::Error { text } => one(Tone::Error, format!("error: {text}")),
            Report::Hint { text } => one(Tone::Info, format!("  {text}")),
            _ => return None,
        };
        Some(human)
    }
}

/// What [`Report::human`] gives: the lines and their tone, or nothing to print.
type Human = Option<(Tone, Vec<String>)>;

/// One line in `tone`.
fn one(tone: Tone, text: String) -> Human {
    Some((tone, vec![text]))
}

/// Milliseconds as devserve writes a duration.
fn ms(ms: u128) -> String {
    duration(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// What still serves after a failure.
fn serving_note(serving: &Option<u64>) -> String {
    match serving {
        Some(id) => format!("gen {id} still serving"),
        None => "nothing is serving; waiting for a change".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_event_and_keeps_the_fields() {
        let report = Report::WorkerStarted { generation: 3, worker: 1, pid: 42, why: WorkerStart::Restart };
        let json = serde_json::to_string(&report).expect("json");
        assert_eq!(json, r#"{"event":"worker_started","generation":3,"worker":1,"pid":42,"why":"restart"}"#);
        assert_eq!(serde_json::to_string(&Report::Stopped).expect("json"), r#"{"event":"stopped"}"#);
    }

    #[test]
    fn a_config_edit_says_what_waits_for_the_next_start() {
        let report = Report::ConfigApplied {
            file: "devserve.toml".into(),
            changed: vec!["workers".into(), "pidfile".into()],
            next_start: vec!["pidfile".into()],
        };
        let (_, lines) = report.human().expect("a line");
        assert_eq!(lines, vec!["devserve.toml: applied (workers, pidfile); from the next start: pidfile"]);
    }
}
