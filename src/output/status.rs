//! The status table (USR1, `devserve -s status`) as data, and its wording: the supervisor fills a
//! [`StatusTable`] from its state; [`StatusTable::lines`] is the one place that says it in words
//! (for the terminal and the runtime dir's `status` file), and the JSON event carries the table's
//! fields as they are.

use serde::Serialize;

use super::duration;

/// Everything the status table shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusTable {
    /// devserve's pid.
    pub pid: u32,
    /// Workers per generation.
    pub workers: u32,
    /// The build running, or how the last one went.
    pub build: Option<BuildStatus>,
    /// The generations, serving first, then starting, then draining.
    pub generations: Vec<GenerationStatus>,
    /// The front door, behind `--proxy`.
    pub proxy: Option<ProxyStatus>,
    /// A generation queued until the old one has exited (restart mode): what it is for.
    pub queued: Option<String>,
    /// Lines devserve dropped and failed writes to stderr, when any.
    pub output_lost: Option<(u64, u64)>,
    /// `--accept`: the programs and their connections' processes.
    pub connections: Option<ConnectionsStatus>,
    /// With several services: a row (and its generations) for each; the fields above then say
    /// nothing of them (`workers` 0, no build, no generations).
    pub services: Vec<ServiceStatus>,
}

/// One service of several, in the status table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub workers: u32,
    /// Waiting for the services it depends on.
    pub waiting: bool,
    pub build: Option<BuildStatus>,
    pub generations: Vec<GenerationStatus>,
    pub queued: Option<String>,
}

/// `--accept`'s part of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionsStatus {
    /// The program new connections start.
    pub serving: Option<u64>,
    /// The program the next connection tries.
    pub candidate: Option<u64>,
    /// Live connection processes per program: (generation, count).
    pub live: Vec<(u64, usize)>,
    pub max_connections: u32,
}

/// The build, in the status table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BuildStatus {
    /// Running for `for_ms`, for `cause`.
    Running { for_ms: u128, cause: String },
    /// The last one ended `status` (`ok`) after `took_ms`, `ago_ms` ago.
    Last { status: String, took_ms: u128, ago_ms: u128 },
}

/// What a generation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Serving,
    /// Serving, but the crash-loop limit stopped restarting its workers.
    ServingGaveUp,
    Starting,
    StartingRolling,
    Draining,
}

/// One generation's block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationStatus {
    pub id: u64,
    pub role: Role,
    pub workers: Vec<WorkerStatus>,
}

/// One worker's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub slot: u32,
    pub state: WorkerState,
    pub restarts: u32,
    /// How it last exited, if it did.
    pub last_exit: Option<String>,
}

/// A worker's state, as the table shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkerState {
    Starting {
        pid: i32,
        up_ms: u128,
    },
    /// Ready; `doing` is its `STATUS=` text, if it sent one.
    Ready {
        pid: i32,
        up_ms: u128,
        doing: Option<String>,
    },
    Retiring {
        pid: i32,
    },
    Restarting {
        in_ms: u128,
    },
    Exited,
}

/// The front door's lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyStatus {
    pub address: String,
    /// The generation it routes to (`None`: holding).
    pub serving: Option<u64>,
    pub held_now: usize,
    pub held: u64,
    pub retried: u64,
    pub failed: u64,
    /// Exchanges in flight per generation: (generation, count).
    pub in_flight: Vec<(u64, usize)>,
    /// The oldest exchanges in flight: (age in ms, generation, what).
    pub oldest: Vec<(u128, u64, String)>,
}

/// The build line and each generation with its workers.
fn build_and_generations(
    lines: &mut Vec<String>,
    build: &Option<BuildStatus>,
    generations: &[GenerationStatus],
) {
    match build {
        Some(BuildStatus::Running { for_ms, cause }) => {
            lines.push(format!("  build: running for {} ({cause})", ms(*for_ms)));
        }
        Some(BuildStatus::Last { status, took_ms, ago_ms }) => {
            lines.push(format!("  build: last {status} in {}, {} ago", ms(*took_ms), ms(*ago_ms)));
        }
        None => {}
    }
    for generation in generations {
        let label = match generation.role {
            Role::Serving => "serving",
            Role::ServingGaveUp => "serving, crash loop: not restarting",
            Role::Starting => "starting",
            Role::StartingRolling => "starting (rolling)",
            Role::Draining => "draining",
        };
        lines.push(format!("  gen {} {label}", generation.id));
        for worker in &generation.workers {
            let last = worker.last_exit.as_ref().map(|s| format!(", last {s}")).unwrap_or_default();
            lines.push(format!(
                "    w{} {}, restarts {}{last}",
                worker.slot,
                worker.state.words(),
                worker.restarts
            ));
        }
    }
}

fn ms(ms: u128) -> String {
    duration(std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
}

impl StatusTable {
    /// The table in words, one line each.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = if self.services.is_empty() {
            vec![format!("status: pid {}, {} worker(s) per generation", self.pid, self.workers)]
        } else {
            vec![format!("status: pid {}, {} services", self.pid, self.services.len())]
        };
        for service in &self.services {
            let state = if service.waiting { ", waiting for its dependencies" } else { "" };
            lines.push(format!(
                "  service {}: {} worker(s) per generation{state}",
                service.name, service.workers
            ));
            let mut rows = Vec::new();
            build_and_generations(&mut rows, &service.build, &service.generations);
            lines.extend(rows.into_iter().map(|row| format!("  {row}")));
            if let Some(cause) = &service.queued {
                lines.push(format!("    next generation queued ({cause}): waits for the old one to exit"));
            }
        }
        build_and_generations(&mut lines, &self.build, &self.generations);
        if let Some(proxy) = &self.proxy {
            lines.extend(proxy.lines());
        }
        if let Some(connections) = &self.connections {
            let serving = connections.serving.map_or("nothing yet".to_owned(), |g| format!("gen {g}"));
            let trial = connections.candidate.map(|g| format!(", gen {g} on trial")).unwrap_or_default();
            let live: Vec<String> = connections.live.iter().map(|(g, n)| format!("gen {g} {n}")).collect();
            let total: usize = connections.live.iter().map(|(_, n)| n).sum();
            lines.push(format!(
                "  connections: new ones start {serving}{trial}; {total} of at most {} running{}",
                connections.max_connections,
                if live.is_empty() { String::new() } else { format!(" ({})", live.join(", ")) }
            ));
        }
        if let Some(cause) = &self.queued {
            lines.push(format!("  next generation queued ({cause}): waits for the old one to exit"));
        }
        if let Some((dropped, write_errors)) = self.output_lost {
            lines.push(format!("  output: {dropped} lines dropped, {write_errors} failed writes to stderr"));
        }
        lines
    }
}

impl WorkerState {
    fn words(&self) -> String {
        match self {
            WorkerState::Starting { pid, up_ms } => format!("pid {pid} starting, up {}", ms(*up_ms)),
            WorkerState::Ready { pid, up_ms, doing: Some(doing) } => {
                format!("pid {pid} ready ({doing}), up {}", ms(*up_ms))
            }
            WorkerState::Ready { pid, up_ms, doing: None } => format!("pid {pid} ready, up {}", ms(*up_ms)),
            WorkerState::Retiring { pid } => format!("pid {pid} retiring"),
            WorkerState::Restarting { in_ms } => format!("restarting in {}", ms(*in_ms)),
            WorkerState::Exited => "exited".into(),
        }
    }
}

impl ProxyStatus {
    fn lines(&self) -> Vec<String> {
        let serving = self.serving.map_or("nothing (holding)".to_owned(), |g| format!("gen {g}"));
        let in_flight: Vec<String> =
            self.in_flight.iter().map(|(generation, n)| format!("gen {generation} {n} in flight")).collect();
        let mut lines = vec![format!(
            "  proxy {}: to {serving}; {} held now; total held {}, retried {}, failed {}{}",
            self.address,
            self.held_now,
            self.held,
            self.retried,
            self.failed,
            if in_flight.is_empty() { String::new() } else { format!("; {}", in_flight.join(", ")) }
        )];
        for (age, generation, what) in &self.oldest {
            lines.push(format!("    {} in flight to gen {generation}: {what}", ms(*age)));
        }
        lines
    }
}
