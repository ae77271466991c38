//! The supervisor: one loop, one owner of all state, like gunicorn's arbiter.
//!
//! [`run`] sets the stage (signal thread, pidfile, held sockets, runtime directory, sentinel,
//! watcher) and then loops: wait for the next [`Event`] or the next deadline, react with a short
//! named verb, repeat until everything it started is reaped. The verbs live by concern:
//! `builds.rs` (changes, triggers, builds), `generations.rs` (start, promote, roll back, restart,
//! retire, kill), `children.rs` (route each reaped child, readiness), `once.rs` (`--once`'s probe
//! and verdict), `front.rs` (the front door: routing, draining, found ports), `requests.rs`
//! (signals, the config file, status, shutdown), `per_connection.rs` (`--accept`) and
//! `upgrades.rs` (`-s upgrade`).
//!
//! The state, as types, in named parts: `services` (one [`service::Service`] per service, in
//! starting order; the top level's one app is one service), `front` (the front door:
//! [`front::Front`]), `once` (`--once`: [`once::OnceRun`]), `connections` (`--accept`'s programs
//! and connection processes: [`per_connection::PerConnection`]) and `upgrades` (devserve's own
//! upgrades: [`upgrades::Upgrades`]); the rest of `Supervisor` is global (config, output, process
//! table, watcher, shutdown). Every verb about a service takes its index `s`; generation numbers
//! are shared by the services, so an event naming a generation finds its service
//! (`service_of`); `stack.rs` holds what is about the services together (start and stop order).
//! Each service's:
//! - `build`: the build in progress ([`BuildRun`]) and the change it is for; a newer change
//!   cancels it and builds again. It may run while `next` starts from an earlier change.
//! - `next`: what happens about the next generation ([`Next`]): nothing, all workers starting
//!   at once, a rolling swap (one worker at a time), or — restart mode — queued until the old
//!   generation is gone. Only `next` is ever promoted or rolled back.
//! - `serving`: the generation answering requests; its crashed workers restart with backoff.
//! - `draining`: generations told to stop ([`Draining`]); their groups are killed at the deadline.
//! - `relaunch`: with `--app-port`, the old command to start again if the new one fails.
//!
//! And `shutdown`: how devserve is stopping, once it is.
//!
//! Policy is separated from effects: every process is started, signalled and routed through a
//! [`Procs`] table, every line goes to an [`Output`], and time comes in as `now`. The unit tests
//! (`tests.rs`) drive the real policy with a [`FakeProcs`](crate::procs::FakeProcs) and
//! synthetic events, without any process.

mod builds;
mod children;
mod front;
mod generations;
mod loops;
mod once;
mod per_connection;
mod requests;
mod service;
mod stack;
#[cfg(test)]
mod stress;
#[cfg(test)]
mod tests;
mod trigger;
mod upgrades;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::build::Build;
use crate::config::{Config, Loader};
use crate::control::{ControlError, Pidfile};
use crate::event::Event;
use crate::event::FrontEvent;
use crate::generation::{Generation, Launch, Upstream, deadline};
use crate::output::{LogFormat, Output, Report};
use crate::procs::{OsProcs, Procs};
use crate::proxy::{AllowedHosts, ProxyConfig, ProxyEvent, ProxyHandle, ProxyMode};
use crate::runtime::{RuntimeDir, RuntimeError};
use crate::sentinel::Sentinel;
use crate::signals;
use crate::sockets::{self, BindError, ListenAddr, NamedSocket, ProxySpec};
use crate::spawn::SpawnError;
use crate::watch::{self, WatchError, WatchHandle};
use trigger::Trigger;

/// How a run ended, for the exit status (distinct codes matter for `--once` in CI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by a signal, or `--once` succeeded.
    Success,
    /// `--once`: the build failed.
    BuildFailed,
    /// `--once`: the generation crashed or was not ready in time.
    NotReady,
    /// `--once`: the probe command failed.
    ProbeFailed,
    /// `--once`: stopped by a signal before a verdict.
    Interrupted,
}

impl Outcome {
    /// 0, 3, 4, 5 (1 is a runtime error, 2 a usage error, and an interrupted `--once`).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Interrupted => 1,
            Outcome::BuildFailed => 3,
            Outcome::NotReady => 4,
            Outcome::ProbeFailed => 5,
        }
    }
}

/// Why devserve could not start, or had to stop at once. Displayed as one line.
#[derive(Debug)]
pub enum StartError {
    Signals(io::Error),
    Pidfile(ControlError),
    Listen(BindError),
    RuntimeDir(RuntimeError),
    Sentinel(io::Error),
    Watch(WatchError),
    /// The front door could not start.
    Proxy(io::Error),
    /// The watcher's first walk failed.
    Walk(String),
    /// The command cannot be run at all (not found, not executable) at the first start.
    Command(SpawnError),
    /// `--accept` could not start accepting.
    Accept(io::Error),
    /// Started for an upgrade, the first start failed: the devserve that started it serves on.
    Upgrade(String),
    /// `--proxy https://`: no certificate (the local CA could not be made or read).
    Tls(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            StartError::Pidfile(e) => e.fmt(f),
            StartError::Listen(e) => e.fmt(f),
            StartError::RuntimeDir(e) => e.fmt(f),
            StartError::Sentinel(e) => write!(f, "cannot start the sentinel: {e}"),
            StartError::Watch(e) => e.fmt(f),
            StartError::Proxy(e) => write!(f, "cannot start the proxy: {e}"),
            StartError::Walk(text) => f.write_str(text),
            StartError::Command(e) => e.fmt(f),
            StartError::Accept(e) => write!(f, "cannot accept connections: {e}"),
            StartError::Tls(text) => write!(f, "cannot serve HTTPS: {text}"),
            StartError::Upgrade(reason) => {
                write!(f, "upgrade: {reason}; the devserve that started this one goes on serving")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// Starts everything and supervises until stopped.
///
/// Whatever fails during set-up leaves nothing behind: the pidfile, the Unix socket files and
/// the runtime directory are each removed when their owner is dropped.
pub fn run(loader: Loader, config: Config) -> Result<Outcome, StartError> {
    let out = Output::new(config.quiet).with_json(config.log_format == LogFormat::Json);
    let (events_tx, events) = crossbeam_channel::unbounded();
    // First, so that no child can exit before SIGCHLD is handled.
    signals::spawn(events_tx.clone()).map_err(StartError::Signals)?;
    // The front door and the watcher need descriptors; workers get the original limit back.
    if let Some((before, after)) = crate::spawn::raise_fd_limit() {
        tracing::debug!("open files limit raised from {before} to {after}");
    }
    // Started for an upgrade: the sockets are handed over, and the first devserve keeps the
    // pidfile (see `upgrades`).
    let mut inherited = crate::upgrade::inherited();
    let pidfile = config
        .pidfile
        .as_deref()
        .filter(|_| inherited.is_none())
        .map(|p| Pidfile::create(p, &out))
        .transpose()
        .map_err(StartError::Pidfile)?;
    let declared = service::declared(&config);
    // Each service's held sockets (an upgrade hands over the one app's).
    let sockets: Vec<Vec<NamedSocket>> = match &inherited {
        Some(handed) => vec![sockets::rebind(&config.listen, &handed.listen).map_err(StartError::Listen)?],
        None => declared
            .iter()
            .map(|d| sockets::bind_all(&d.config.listen))
            .collect::<Result<_, _>>()
            .map_err(StartError::Listen)?,
    };
    if config.accept.is_none() {
        // Workers get a blocking socket, even after an `--accept` devserve made it non-blocking.
        for socket in sockets.iter().flatten() {
            let _ = socket.try_clone_listener().and_then(|s| s.set_nonblocking(false));
        }
    }
    let runtime_dir = RuntimeDir::create().map_err(StartError::RuntimeDir)?;
    let mut cleanup: Vec<PathBuf> =
        sockets.iter().flatten().filter_map(|s| s.unix_path().map(Into::into)).collect();
    cleanup.push(runtime_dir.path().to_path_buf());
    cleanup.extend(pidfile.as_ref().map(|p| p.path().to_path_buf()));
    let marker = crate::sentinel::new_marker();
    let sentinel = Sentinel::spawn(&cleanup, &marker).map_err(StartError::Sentinel)?;
    for service in &sockets {
        announce_listening(&out, service);
    }
    if let Some(mode) = config.accept {
        let stdio = mode == crate::cli::AcceptMode::Stdio;
        out.report(Report::AcceptConnections { max_connections: config.max_connections, stdio });
    }
    if sockets.iter().all(Vec::is_empty) && config.proxy.is_none() && config.services.is_empty() {
        out.report(Report::RestartMode);
    }
    // devserve's own files are never changes, wherever they are: also the files its stdout and
    // stderr go to (`devserve … > devserve.log 2>&1` inside the watched tree).
    let mut own = cleanup.clone();
    own.extend(output_files());
    let own_files = own_files(&own);
    // `--once` reacts to nothing on disk.
    let watcher = if config.once {
        None
    } else {
        Some(
            watch::spawn(
                watch_rules(&config, declared.iter().map(|d| (&d.config, d.watches))),
                own_files.clone(),
                events_tx.clone(),
            )
            .map_err(StartError::Watch)?,
        )
    };

    let front = match &config.proxy {
        Some(spec) => {
            let handed = inherited.as_mut().and_then(|h| h.proxy.take());
            Some(start_front(spec, handed, &config, &out, &events_tx)?)
        }
        None => None,
    };
    // Keys on a terminal; its settings come back when `keys` is dropped (or on a panic).
    let keys = if config.once { None } else { crate::keys::spawn(events_tx.clone(), declared.len() > 1) };

    let procs = OsProcs::new(sentinel, marker, runtime_dir.path(), events_tx.clone());
    let several = declared.len() > 1;
    let mut supervisor = Supervisor::with_services(Some(loader), config, out, procs, sockets, events_tx);
    if keys.is_some() {
        supervisor.out.report(supervisor.keys_report());
    }
    if several {
        supervisor.watch_each(&own_files).map_err(StartError::Watch)?;
    }
    if let Some((handle, socket)) = front {
        supervisor.front.address = Some(socket.bound.clone());
        supervisor.front.door = Some(Box::new(handle));
        supervisor.front.socket = Some(socket);
        for s in 0..supervisor.services.len() {
            supervisor.hold(s, "starting: the first generation is not ready yet".into());
        }
    }
    supervisor.upgrades.exe = std::env::current_exe().ok();
    supervisor.upgrades.args = std::env::args_os().skip(1).collect();
    supervisor.upgrades.pidfile = pidfile;
    if let Some(handed) = inherited {
        listen_to_anchor(&handed.control, &supervisor.events);
        supervisor.upgrades.anchor = Some((handed.anchor, handed.control));
    }
    // The names `devserve -s reload NAME` checks (one app: none).
    if several {
        let names: Vec<&str> = supervisor.services.iter().map(|s| s.name.as_str()).collect();
        let file = runtime_dir.path().join(crate::control::SERVICES_FILE);
        if let Err(e) = std::fs::write(&file, format!("{}\n", names.join("\n"))) {
            tracing::warn!("cannot write {}: {e}", file.display());
        }
    }
    supervisor.runtime_dir = Some(runtime_dir);
    supervisor.own_files = own_files;
    supervisor.watcher = watcher;
    supervisor.start_all(Trigger::start(Instant::now()));
    let result = supervisor.run(&events);
    supervisor.clean_up();
    drop(keys);
    result
}

/// Binds the front door's address and starts the proxy thread on it; the proxy's events come
/// back as [`Event::Front`].
fn start_front(
    spec: &ProxySpec,
    handed: Option<NamedSocket>,
    config: &Config,
    out: &Output,
    events: &Sender<Event>,
) -> Result<(ProxyHandle, NamedSocket), StartError> {
    // An upgrade hands the front door's socket over when the address is still the one asked for.
    let socket = match handed.filter(|h| spec.auto || h.requested == spec.addr) {
        Some(socket) => socket,
        None => sockets::bind_proxy(spec).map_err(StartError::Listen)?,
    };
    let listener = socket.std_listener().map_err(StartError::Proxy)?;
    let mode = if spec.raw_tcp { ProxyMode::Tcp } else { ProxyMode::Http };
    let proxy_host = match &spec.addr {
        ListenAddr::Tcp(addr) => addr.ip().to_string(),
        ListenAddr::AnyInterface(_) | ListenAddr::Unix(_) => String::new(),
    };
    let tls = if spec.tls { Some(https(&proxy_host, config, out)?) } else { None };
    let proxy_config = ProxyConfig {
        tls,
        upstream_h2c: config.upstream == crate::cli::UpstreamProtocol::H2c,
        hold_timeout: config.hold_timeout,
        mode,
        browser_reload: !config.no_browser_reload && !spec.raw_tcp,
        allowed_hosts: AllowedHosts::new(&proxy_host, &config.allowed_hosts),
        upstream_timeout: config.upstream_timeout,
        max_requests: config.max_requests.map(|n| (n, config.max_requests_jitter)),
        sites: sites(config),
        ..ProxyConfig::default()
    };
    let events = events.clone();
    let sink = Box::new(move |event: ProxyEvent| {
        let event = match event {
            ProxyEvent::Drained { generation } => FrontEvent::Drained { generation },
            ProxyEvent::Closed { generation, connections } => FrontEvent::Closed { generation, connections },
            ProxyEvent::Counters { site, counters: c } => {
                FrontEvent::Counters { site, held: c.held, retried: c.retried, failed: c.failed }
            }
            ProxyEvent::Problem(text) => FrontEvent::Problem(text),
            ProxyEvent::Refused { check, value, text } => FrontEvent::Refused { check, value, text },
            ProxyEvent::Recycle { generation, upstream, requests } => {
                FrontEvent::Recycle { generation, upstream, requests }
            }
        };
        let _ = events.send(Event::Front(event));
    });
    let checks_off = proxy_config.allowed_hosts.any;
    let handle = ProxyHandle::start(listener, proxy_config, sink).map_err(StartError::Proxy)?;
    out.report(Report::ProxyListening {
        address: socket.bound.clone(),
        raw_tcp: spec.raw_tcp,
        tls: spec.tls,
    });
    if checks_off && !spec.raw_tcp {
        out.report(Report::AllowedHostsOff);
    }
    if !spec.raw_tcp
        && let Some(url) = front::front_url(&socket.bound, spec.tls)
    {
        out.report(Report::FrontUrl { url });
    }
    Ok((handle, socket))
}

/// With several services: a pipe for a service's workers' output, read by a thread that puts the
/// service's name before each line. `None` (the output then goes straight to the terminal) if it
/// cannot be made.
fn service_output(out: &Output) -> Option<std::sync::Arc<std::os::fd::OwnedFd>> {
    let made = crate::spawn::cloexec_pipe().and_then(|(read, write)| {
        crate::output::sink::copy_prefixed(std::fs::File::from(read), out.service_prefix())?;
        Ok(write)
    });
    match made {
        Ok(write) => Some(std::sync::Arc::new(write)),
        Err(e) => {
            tracing::warn!("cannot prefix a service's output: {e}");
            None
        }
    }
}

/// The services behind the front door, by index, for the proxy: none for the one app (every
/// request is its).
fn sites(config: &Config) -> Vec<crate::proxy::SiteConfig> {
    config
        .services
        .iter()
        .map(|service| crate::proxy::SiteConfig {
            name: service.name.clone(),
            route: service.route.clone(),
            strip_prefix: service.strip_prefix,
            browser_reload: service.reload_browser,
        })
        .collect()
}

/// The watcher's rules: the one app's own, or with several services what any watching service
/// could want (every root, every extension, only the ignores they all share); each service then
/// keeps the changes its own rules take ([`service::Service::filter`]). One watcher, one walk.
fn watch_rules<'a>(top: &Config, services: impl Iterator<Item = (&'a Config, bool)>) -> watch::WatchConfig {
    let watching: Vec<&Config> = services.filter(|(_, watches)| *watches).map(|(config, _)| config).collect();
    if top.services.is_empty() {
        return top.watch.clone();
    }
    let mut rules =
        watch::WatchConfig { roots: Vec::new(), touch: Vec::new(), exts: Vec::new(), ..top.watch.clone() };
    let any_ext = watching.iter().any(|c| c.watch.exts.is_empty());
    rules.ignore = top
        .watch
        .ignore
        .iter()
        .filter(|g| watching.iter().all(|c| c.watch.ignore.contains(g)))
        .cloned()
        .collect();
    rules.vcs_ignore = watching.iter().all(|c| c.watch.vcs_ignore);
    rules.eager = !watching.is_empty() && watching.iter().all(|c| c.watch.eager);
    for config in &watching {
        for root in &config.watch.roots {
            if !rules.roots.contains(root) {
                rules.roots.push(root.clone());
            }
        }
        rules.touch.extend(
            config.watch.touch.iter().filter(|t| !rules.touch.contains(t)).cloned().collect::<Vec<_>>(),
        );
        if !any_ext {
            rules.exts.extend(
                config.watch.exts.iter().filter(|e| !rules.exts.contains(e)).cloned().collect::<Vec<_>>(),
            );
        }
    }
    rules
}

/// Built without the `https` feature: `--proxy https://` cannot be served.
#[cfg(not(feature = "https"))]
fn https(_proxy_host: &str, _config: &Config, _out: &Output) -> Result<crate::proxy::TlsConfig, StartError> {
    Err(StartError::Tls("this devserve was built without HTTPS (cargo's `https` feature)".into()))
}

/// `--proxy https://`: the local CA (made on first use) signs, in memory, a certificate for
/// `localhost`, 127.0.0.1, ::1, the front door's address and the allowed hosts it
/// may vouch for; rustls on ring, chosen here, for the whole process (no crate may pick another).
#[cfg(feature = "https")]
fn https(proxy_host: &str, config: &Config, out: &Output) -> Result<crate::proxy::TlsConfig, StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fail = |e: crate::ca::CaError| StartError::Tls(e.to_string());
    let dir = crate::ca::data_dir().map_err(fail)?;
    let ca = crate::ca::LocalCa::load_or_create(&dir).map_err(fail)?;
    let (mut dns, ips) = crate::ca::run_names(proxy_host, &config.allowed_hosts);
    // Each routed service is also `NAME.localhost` (no `*.localhost`: webpki refuses a
    // single-label wildcard, see `ca::run_names`).
    dns.extend(config.services.iter().filter(|s| s.route.is_some()).map(|s| format!("{}.localhost", s.name)));
    let (server, names) = crate::ca::server_config(&ca, &dns, &ips).map_err(fail)?;
    out.report(Report::ProxyCertificate {
        ca: ca.cert_path.display().to_string(),
        names,
        trusted: crate::ca::nss_trusts(),
    });
    Ok(crate::proxy::TlsConfig(server))
}

/// Started for an upgrade: the first devserve's `retire` is a request; the channel's end means it
/// is gone, and so must this devserve be (what its sentinel would do).
fn listen_to_anchor(control: &std::os::unix::net::UnixStream, events: &Sender<Event>) {
    let events = events.clone();
    let listening = crate::upgrade::read_lines(control, move |line| {
        let request = match line.as_deref() {
            Some("retire") => crate::event::Request::Retire,
            Some(_) => return,
            None => crate::event::Request::Kill,
        };
        let _ = events.send(Event::Request(request));
    });
    if let Err(e) = listening {
        tracing::warn!("upgrade: cannot read the first devserve's channel: {e}");
    }
}

/// The regular files devserve's stdout and stderr are redirected to, if any.
fn output_files() -> Vec<PathBuf> {
    [1, 2]
        .into_iter()
        .filter_map(|fd| {
            let link = PathBuf::from(format!("/proc/self/fd/{fd}"));
            let is_file = std::fs::metadata(&link).is_ok_and(|m| m.is_file());
            is_file.then(|| std::fs::read_link(&link).ok()).flatten()
        })
        .collect()
}

/// Canonical forms of devserve's own paths (runtime directory, pidfile, socket files).
fn own_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().filter_map(|p| crate::cli::absolute_file(p).ok()).collect()
}

/// `watching src, Cargo.toml (12 folders)`, once the watcher's walk is done.
fn announce_watcher(out: &Output, rules: &watch::WatchConfig, folders: usize) {
    let cwd = std::env::current_dir().unwrap_or_default();
    let roots = rules.roots.iter().map(|r| trigger::relative_display(r, &cwd)).collect();
    out.report(Report::Watching { roots, folders });
}

/// `listening on 127.0.0.1:8080 (fd 3, listen0)`, one line a socket.
fn announce_listening(out: &Output, sockets: &[NamedSocket]) {
    for (index, socket) in sockets.iter().enumerate() {
        out.report(Report::Listening {
            address: socket.bound.clone(),
            fd: 3 + index,
            name: socket.name.clone(),
        });
    }
}

/// How every process of a service's generation is started, from its config and held sockets;
/// `routed`: requests reach it through the front door, so each worker gets a port.
fn launch_for(config: &Config, sockets: &[NamedSocket], routed: bool) -> Launch {
    let mut env = config.env.clone();
    env.extend(ca_variables(config));
    Launch {
        command: config.command.clone(),
        env,
        sockets: sockets.to_vec(),
        listen_pid: config.listen_pid,
        watchdog: config.watchdog,
        upstream: match (routed, config.app_port) {
            (false, _) => Upstream::None,
            (true, None) => Upstream::PerWorker,
            (true, Some(port)) => Upstream::Fixed(port),
        },
        ready_path: config.ready_path.clone(),
        output: None,
    }
}

/// Behind `--proxy https://`: the local CA's certificate for workers to trust, so that an app that
/// calls itself or a sibling over `https://localhost` can: `DEVSERVE_CA` always, and Node's
/// `NODE_EXTRA_CA_CERTS` unless devserve's environment or `-E` sets it already.
fn ca_variables(config: &Config) -> Vec<(String, String)> {
    #[cfg(feature = "https")]
    if config.proxy.as_ref().is_some_and(|p| p.tls)
        && let Ok(dir) = crate::ca::data_dir()
    {
        let path = dir.join("ca.pem").display().to_string();
        let mut vars = vec![("DEVSERVE_CA".to_owned(), path.clone())];
        let node = "NODE_EXTRA_CA_CERTS";
        if std::env::var_os(node).is_none() && !config.env.iter().any(|(key, _)| key == node) {
            vars.push((node.to_owned(), path));
        }
        return vars;
    }
    let _ = config;
    Vec::new()
}

/// How devserve is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    /// Stop signal to every generation, SIGKILL at the stop timeout.
    Graceful,
    /// SIGKILL to everything now.
    Immediate,
}

/// The build in progress and the change it is for.
#[derive(Debug)]
struct BuildRun {
    build: Build,
    trigger: Trigger,
}

/// What happens about the next generation.
#[derive(Debug, Default)]
enum Next {
    /// Nothing is starting.
    #[default]
    Idle,
    /// Every worker started at once; promoted when all are ready.
    Starting(Generation),
    /// A rolling swap: new workers start one at a time, each ready one retiring an old one.
    Rolling(Generation),
    /// Restart mode (no `--listen`): old and new would bind the same port, so the new
    /// generation waits until the old one is gone.
    Queued { trigger: Trigger, build_took: Option<Duration> },
}

impl Next {
    fn generation(&self) -> Option<&Generation> {
        match self {
            Next::Starting(g) | Next::Rolling(g) => Some(g),
            Next::Idle | Next::Queued { .. } => None,
        }
    }

    fn generation_mut(&mut self) -> Option<&mut Generation> {
        match self {
            Next::Starting(g) | Next::Rolling(g) => Some(g),
            Next::Idle | Next::Queued { .. } => None,
        }
    }

    /// Takes the starting generation out, leaving nothing starting.
    fn take_generation(&mut self) -> Option<Generation> {
        match std::mem::take(self) {
            Next::Starting(g) | Next::Rolling(g) => Some(g),
            queued @ Next::Queued { .. } => {
                *self = queued;
                None
            }
            Next::Idle => None,
        }
    }
}

/// A generation told to stop, and when it gets SIGKILL. Behind the front door it is first
/// drained (`signalled` false): the stop signal waits for the proxy, until `deadline`.
#[derive(Debug)]
struct Draining {
    generation: Generation,
    deadline: Instant,
    signalled: bool,
    killed: bool,
}

impl Draining {
    /// Its stop signal now, SIGKILL at the stop timeout from now; returns the "stopping" line.
    fn signal(
        &mut self,
        signal: nix::sys::signal::Signal,
        timeout: Duration,
        restart_mode: bool,
        procs: &mut dyn Procs,
        now: Instant,
    ) -> Report {
        self.generation.stop(signal, procs);
        self.signalled = true;
        self.deadline = deadline(now, timeout);
        let signal = signal.as_str().to_owned();
        Report::GenerationStopping { generation: self.generation.id, signal, restart_mode }
    }
}

/// Why the loop must wake up at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    ReadyTimeout,
    ReadyDelay,
    Restart,
    RetireeKill,
    DrainKill,
    ProbeTimeout,
    Watchdog,
    /// Changes the loop guard kept are due.
    KeptChanges,
    /// `--accept`: a trial connection's process has stayed up for the ready delay.
    TrialPassed,
    /// A new devserve (an upgrade) has not served in time.
    UpgradeTimeout,
}

struct Supervisor<P: Procs> {
    /// Re-reads the config file; `None` when there is nothing to re-read (tests).
    loader: Option<Loader>,
    config: Config,
    out: Output,
    procs: P,
    runtime_dir: Option<RuntimeDir>,
    /// Paths devserve itself writes (never changes).
    own_files: Vec<PathBuf>,
    events: Sender<Event>,
    watcher: Option<WatchHandle>,
    /// The watcher's first walk is done.
    watching: bool,
    shutdown: Option<Shutdown>,
    fatal: Option<StartError>,
    /// The services, in starting order (a service after those it depends on): their builds,
    /// generations and swaps (see [`service::Service`]). One for the top level's one app.
    services: Vec<service::Service>,
    /// The number the next generation gets, whichever service it is of: a generation's number
    /// names it, and its service, everywhere (events, the process table, the proxy).
    next_generation: u64,
    /// The front door (`--proxy`): see [`front::Front`].
    front: front::Front,
    /// `--once`'s probe and verdict: see [`once::OnceRun`].
    once: once::OnceRun,
    /// `--accept`'s programs and connections: see [`per_connection::PerConnection`].
    connections: per_connection::PerConnection,
    /// Upgrades of devserve itself: see [`upgrades::Upgrades`].
    upgrades: upgrades::Upgrades,
}

impl<P: Procs> Supervisor<P> {
    #[cfg(test)]
    fn new(
        loader: Option<Loader>,
        config: Config,
        out: Output,
        procs: P,
        sockets: Vec<NamedSocket>,
        events: Sender<Event>,
    ) -> Supervisor<P> {
        Supervisor::with_services(loader, config, out, procs, vec![sockets], events)
    }

    /// The supervisor of every service of `config` (one for the top level's one app), each with
    /// its held sockets (`sockets`, in the services' order).
    fn with_services(
        loader: Option<Loader>,
        config: Config,
        out: Output,
        procs: P,
        sockets: Vec<Vec<NamedSocket>>,
        events: Sender<Event>,
    ) -> Supervisor<P> {
        let declared = service::declared(&config);
        let several = declared.len() > 1;
        let width = declared.iter().map(|d| d.name.len()).max().unwrap_or(0);
        let services = declared
            .into_iter()
            .zip(sockets.into_iter().chain(std::iter::repeat_with(Vec::new)))
            .enumerate()
            .map(|(index, (declared, sockets))| {
                let out = if several { out.for_service(&declared.name, width, index) } else { out.clone() };
                let mut launch = launch_for(&declared.config, &sockets, declared.routed);
                if several {
                    launch.output = service_output(&out);
                }
                service::Service::new(declared, out, launch, sockets)
            })
            .collect();
        Supervisor {
            loader,
            config,
            out,
            procs,
            runtime_dir: None,
            own_files: Vec::new(),
            events,
            watcher: None,
            watching: false,
            shutdown: None,
            fatal: None,
            services,
            next_generation: 1,
            front: front::Front::default(),
            once: once::OnceRun::default(),
            connections: per_connection::PerConnection::default(),
            upgrades: upgrades::Upgrades::default(),
        }
    }

    fn run(&mut self, events: &Receiver<Event>) -> Result<Outcome, StartError> {
        while !self.finished() {
            // The channel cannot disconnect: `self.events` is a sender. So an error is a timeout.
            let received = match self.next_wakeup() {
                Some(at) => events.recv_deadline(at).ok(),
                None => events.recv().ok(),
            };
            if let Some(event) = received {
                self.handle(event, Instant::now());
            }
            self.tick(Instant::now());
        }
        match self.fatal.take() {
            Some(error) => Err(error),
            None => {
                self.out.report(Report::Stopped);
                Ok(self.once.outcome)
            }
        }
    }

    fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::Change(mut change) => {
                // An `env-file` edited: the configuration is read again, and a service whose
                // environment it changes swaps.
                let env_files: Vec<&PathBuf> = self
                    .services
                    .iter()
                    .flat_map(|s| &s.config.env_files)
                    .chain(&self.config.env_files)
                    .collect();
                if change.paths.iter().any(|p| env_files.contains(&p)) {
                    let edited: Vec<PathBuf> = env_files.into_iter().cloned().collect();
                    change.paths.retain(|p| !edited.contains(p));
                    self.reload_config(now);
                }
                for s in 0..self.services.len() {
                    let paths = self.changes_of(s, &change.paths);
                    if !paths.is_empty() {
                        self.on_change(s, paths, change.since);
                    }
                }
            }
            Event::ConfigChanged => {
                self.reload_config(now);
            }
            Event::WatchProblem(text) => self.out.report(Report::WatchProblem { text }),
            Event::Watching { folders } => {
                self.watching = true;
                let rules = watch_rules(&self.config, self.services.iter().map(|s| (&s.config, s.watches)));
                announce_watcher(&self.out, &rules, folders);
            }
            Event::WatchFailed(text) if !self.watching && !self.services.iter().any(|s| s.started_once) => {
                // At start, a watcher that cannot watch is an error (exit 1), as it always was.
                self.fatal = Some(StartError::Walk(text));
                self.begin_shutdown(Shutdown::Immediate, now);
            }
            Event::WatchFailed(text) => self.out.report(Report::WatchProblem { text }),
            Event::Key(crate::event::Key::Clear) => self.out.clear_screen(),
            Event::Key(crate::event::Key::Help) => self.out.report(self.keys_report()),
            Event::Key(crate::event::Key::ReloadService(key)) => {
                match self.services.iter().position(|s| s.name.starts_with(key)) {
                    Some(s) => self.trigger(s, Trigger::reload("key r", now)),
                    None => self.out.report(Report::NoServiceKey { key }),
                }
            }
            Event::Request(request) => self.on_request(request, now),
            Event::Exited { pid, status } => self.on_exit(pid, status, now),
            Event::Notify(note) => {
                if let Some(s) = self.service_of(note.generation) {
                    self.on_notify(s, &note, now);
                }
            }
            Event::UpstreamReady { generation, pid } => {
                if let Some(s) = self.service_of(generation) {
                    self.on_upstream_ready(s, generation, pid, now);
                }
            }
            Event::OwnPort { generation, pid, given, found } => {
                if let Some(s) = self.service_of(generation) {
                    self.on_own_port(s, generation, pid, given, found);
                }
            }
            Event::NotAccepting { generation, pid, address, queued } => {
                if let Some(s) = self.service_of(generation) {
                    let worker = self.slot_of(s, generation, pid);
                    self.services[s].out.report(Report::NotAccepting { generation, worker, address, queued });
                }
            }
            Event::Front(event) => self.on_front(event, now),
            Event::Connection(connection) => self.on_connection(connection, now),
            Event::Started { pid, program, peer, report } => {
                self.connection_started(pid, program, peer, report, now)
            }
            Event::Successor { pid, news } => self.on_successor(pid, news, now),
        }
    }

    /// The service generation `id` belongs to (starting, serving or draining).
    fn service_of(&self, id: u64) -> Option<usize> {
        self.services.iter().position(|service| {
            service.next.generation().is_some_and(|g| g.id == id)
                || service.serving.as_ref().is_some_and(|g| g.id == id)
                || service.draining.iter().any(|d| d.generation.id == id)
        })
    }

    /// The paths of a change that are service `s`'s: all of them for the one app (the watcher
    /// filtered them already), those its own watch rules take when there are several.
    fn changes_of(&self, s: usize, paths: &[PathBuf]) -> Vec<PathBuf> {
        let service = &self.services[s];
        match &service.filter {
            None if self.services.len() == 1 && service.watches => paths.to_vec(),
            None => Vec::new(),
            Some(filter) => paths
                .iter()
                .filter(|path| {
                    filter.counts_entry(path, path.is_dir()) || service.config.watch.touch.contains(path)
                })
                .cloned()
                .collect(),
        }
    }

    /// Time-driven transitions; safe to call at any moment.
    fn tick(&mut self, now: Instant) {
        for s in 0..self.services.len() {
            self.check_watchdogs(s, now);
            self.check_next(s, now);
        }
        self.check_trial(now);
        self.check_upgrade(now);
        self.check_probe(now);
        for s in 0..self.services.len() {
            self.restart_workers(s, now);
            self.kill_overdue(s, now);
        }
        self.kill_overdue_connections(now);
        for s in 0..self.services.len() {
            self.release_stopped(s);
            self.start_queued(s, now);
            self.reload_kept(s, now);
        }
        self.start_queued_builds(now);
        self.start_waiting();
        self.stop_in_order(now);
    }

    fn finished(&self) -> bool {
        self.shutdown.is_some()
            && self.procs.live() == 0
            && self.services.iter().all(|service| {
                service.serving.is_none() && matches!(service.next, Next::Idle) && service.draining.is_empty()
            })
    }

    /// Every moment the loop must wake up for, and why: the one list of deadlines.
    fn deadlines(&self) -> Vec<(Instant, Deadline)> {
        let mut times = Vec::new();
        for (s, service) in self.services.iter().enumerate() {
            let config = &service.config;
            if let Some(watchdog) = config.watchdog {
                let generations = service.next.generation().into_iter().chain(&service.serving);
                times.extend(
                    generations.filter_map(|g| g.next_watchdog(watchdog)).map(|t| (t, Deadline::Watchdog)),
                );
            }
            if let Some(next) = service.next.generation() {
                times.push((next.ready_deadline(config.ready_timeout), Deadline::ReadyTimeout));
                // Behind the front door readiness is observed, never assumed after a delay.
                if !service.app_speaks_notify && !self.fronted(s) {
                    times
                        .extend(next.next_ready_delay(config.ready_delay).map(|t| (t, Deadline::ReadyDelay)));
                }
            }
            if let Some(serving) = &service.serving {
                times.extend(serving.next_restart().map(|t| (t, Deadline::Restart)));
                times.extend(serving.next_retiree_deadline().map(|t| (t, Deadline::RetireeKill)));
                if !self.fronted(s) {
                    times.extend(
                        serving.next_ready_delay(config.ready_delay).map(|t| (t, Deadline::ReadyDelay)),
                    );
                }
            }
            times.extend(
                service.draining.iter().filter(|d| !d.killed).map(|d| (d.deadline, Deadline::DrainKill)),
            );
            times.extend(service.loops.due().map(|t| (t, Deadline::KeptChanges)));
        }
        times.extend(
            self.connections.trial_deadline(self.config.ready_delay).map(|t| (t, Deadline::TrialPassed)),
        );
        times.extend(self.connections.kill_at.map(|t| (t, Deadline::DrainKill)));
        times.extend(self.upgrades.deadline().map(|t| (t, Deadline::UpgradeTimeout)));
        if let Some(probe) = self.once.probe
            && !self.once.decided
        {
            times.push((deadline(probe.started, self.config.probe_timeout), Deadline::ProbeTimeout));
        }
        times
    }

    /// The earliest deadline.
    fn next_wakeup(&self) -> Option<Instant> {
        self.deadlines().into_iter().map(|(at, _)| at).min()
    }

    /// Removes what devserve created; the sentinel has nothing left to do.
    fn clean_up(&mut self) {
        self.watcher = None;
        self.connections = per_connection::PerConnection::default();
        // The proxy thread ends (its connections are dropped) before the socket closes.
        self.front.door = None;
        self.front.socket = None;
        for service in &mut self.services {
            service.serving = None;
            service.next = Next::Idle;
            service.draining.clear();
            // Dropping the held sockets (the generations held copies) removes their files.
            service.launch.sockets.clear();
            service.sockets.clear();
        }
        if let Some(dir) = self.runtime_dir.as_mut() {
            dir.remove();
        }
        self.procs.disarm();
    }
}
