//! A service's part of the supervisor's state: everything about building, starting, serving and
//! retiring its generations. The supervisor owns one per service (`[services.NAME]`; the top level
//! alone is one service named after its command), each with its own settings, watch, build and
//! swap; nothing here is about the front door, `--once` or devserve as a whole.

use std::time::{Duration, Instant};

use super::loops::LoopGuard;
use super::{BuildRun, Draining, Next};
use crate::config::Config;
use crate::event::ExitStatus;
use crate::generation::{Generation, Launch, Relaunch};
use crate::output::Output;
use crate::sockets::NamedSocket;

/// What a service is, as declared: fixed for the run (a config edit may change `config`).
pub(super) struct Declared {
    /// `api` for `[services.api]`; the command's name for the top level's one app.
    pub(super) name: String,
    /// Its settings.
    pub(super) config: Config,
    /// Requests reach it through the front door (it has a route, or it is the one app).
    pub(super) routed: bool,
    /// Its swaps reload the browsers' pages.
    pub(super) reload_browser: bool,
    /// The services (by index) it starts after.
    pub(super) depends_on: Vec<usize>,
    /// Changes restart it (false: `watch = []`).
    pub(super) watches: bool,
}

/// One service's builds and generations.
pub(super) struct Service {
    /// Its name.
    pub(super) name: String,
    /// Its settings (the top level's for the one app).
    pub(super) config: Config,
    /// Its lines: prefixed with its name when there are several services.
    pub(super) out: Output,
    /// Requests reach it through the front door.
    pub(super) routed: bool,
    /// Its swaps reload the browsers' pages.
    pub(super) reload_browser: bool,
    /// The services (by index) whose first generation must be ready before it starts.
    pub(super) depends_on: Vec<usize>,
    /// Its first start waits for `depends_on` (the trigger kept until then).
    pub(super) waiting: Option<super::trigger::Trigger>,
    /// Its build waits for another service's to end (`--build-jobs`).
    pub(super) build_queued: Option<super::trigger::Trigger>,
    /// Shutting down: it was told to stop (after the services that depend on it were gone).
    pub(super) stopping: bool,
    /// Which files are its changes (with several services; `None`: none are).
    pub(super) filter: Option<crate::watch::Filter>,
    /// Changes restart it (false: `watch = []`).
    pub(super) watches: bool,
    /// The sockets new generations get; older generations keep theirs through their launch.
    pub(super) sockets: Vec<NamedSocket>,
    /// How its workers are started.
    pub(super) launch: Launch,
    /// The build in progress, and the change it is for.
    pub(super) build: Option<BuildRun>,
    /// What happens about the next generation.
    pub(super) next: Next,
    /// The generation answering requests.
    pub(super) serving: Option<Generation>,
    /// Generations told to stop, until their processes are reaped.
    pub(super) draining: Vec<Draining>,
    /// How the last finished build went, for the status table.
    pub(super) last_build: Option<(ExitStatus, Duration, Instant)>,
    /// The port the app was found listening on instead of its `PORT` (as if `--app-port`).
    pub(super) app_port_found: Option<u16>,
    /// Workers per generation (TTIN/TTOU change it).
    pub(super) workers: u32,
    /// Learnt from the first READY=1: from then on the ready delay no longer applies.
    pub(super) app_speaks_notify: bool,
    /// A generation has started successfully at least once.
    pub(super) started_once: bool,
    /// Self-triggered reload loops.
    pub(super) loops: LoopGuard,
    /// `--app-port`'s relaunch.
    pub(super) relaunch: AppPortRelaunch,
}

/// With `--app-port` the old generation stops before the new one starts (they share a port): what
/// it takes to start the old command again if the new one fails.
#[derive(Default)]
pub(super) struct AppPortRelaunch {
    /// The generation stopped for the one starting.
    pub(super) previous: Option<Relaunch>,
    /// The same, waiting for the failed generation to be gone.
    pub(super) queued: Option<Relaunch>,
}

impl Service {
    /// Nothing built or started yet.
    pub(super) fn new(declared: Declared, out: Output, launch: Launch, sockets: Vec<NamedSocket>) -> Service {
        let workers = declared.config.workers;
        Service {
            name: declared.name,
            config: declared.config,
            out,
            routed: declared.routed,
            reload_browser: declared.reload_browser,
            depends_on: declared.depends_on,
            waiting: None,
            build_queued: None,
            stopping: false,
            filter: None,
            watches: declared.watches,
            sockets,
            launch,
            build: None,
            next: Next::Idle,
            serving: None,
            draining: Vec::new(),
            last_build: None,
            app_port_found: None,
            workers,
            app_speaks_notify: false,
            started_once: false,
            loops: LoopGuard::default(),
            relaunch: AppPortRelaunch::default(),
        }
    }
}

/// The services `config` declares, in starting order: its `[services.NAME]` tables, or the top
/// level's one app, named after its command.
pub(super) fn declared(config: &Config) -> Vec<Declared> {
    if config.services.is_empty() {
        let name = config
            .command
            .first()
            .and_then(|program| std::path::Path::new(program).file_name())
            .map_or_else(|| "app".to_owned(), |name| name.to_string_lossy().into_owned());
        return vec![Declared {
            name,
            config: config.clone(),
            routed: config.proxy.is_some(),
            reload_browser: !config.no_browser_reload,
            depends_on: Vec::new(),
            watches: true,
        }];
    }
    let index = |name: &String| config.services.iter().position(|s| &s.name == name);
    config
        .services
        .iter()
        .map(|service| Declared {
            name: service.name.clone(),
            config: service.config.clone(),
            routed: service.route.is_some(),
            reload_browser: service.reload_browser,
            depends_on: service.depends_on.iter().filter_map(index).collect(),
            watches: service.watches,
        })
        .collect()
}
