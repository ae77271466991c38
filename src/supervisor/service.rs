//! The app's part of the supervisor's state: everything about building, starting, serving and
//! retiring its generations. Today devserve runs one app; this is the one type the services work
//! makes N of (each with its own watch, build and swap), so nothing here is about the front door,
//! `--once` or devserve as a whole.

use std::time::{Duration, Instant};

use super::loops::LoopGuard;
use super::{BuildRun, Draining, Next};
use crate::event::ExitStatus;
use crate::generation::{Generation, Launch, Relaunch};
use crate::sockets::NamedSocket;

/// The app's builds and generations.
pub(super) struct Service {
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
    /// The number the next generation gets.
    pub(super) next_id: u64,
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
    pub(super) fn new(launch: Launch, sockets: Vec<NamedSocket>, workers: u32) -> Service {
        Service {
            sockets,
            launch,
            build: None,
            next: Next::Idle,
            serving: None,
            draining: Vec::new(),
            last_build: None,
            next_id: 1,
            workers,
            app_speaks_notify: false,
            started_once: false,
            loops: LoopGuard::default(),
            relaunch: AppPortRelaunch::default(),
        }
    }
}
