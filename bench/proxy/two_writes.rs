//! Part 3, two writes: an upstream that writes each response in two `write(2)` calls with Nagle on
//! (`tests/apps/two_writes.py`, and Django's `runserver`, which does the same), reached by one client
//! sending `GET /` after `GET /` on one kept-alive connection. The second write waits for the ACK of
//! the first, and a peer that delays its ACK (Linux: about 40 ms) stalls every response: a proxy in
//! front of such an app must acknowledge at once. Five routes per app: direct on one kept-alive
//! connection (the client, like most, delays its ACKs, so it pays the stall too), the same with a
//! client that acknowledges at once (`TCP_QUICKACK`: what the app costs without the stall), direct
//! with a fresh connection per request (a new connection acknowledges at once: the issue's
//! baseline), through `devserve --proxy`, and through nginx's `proxy_pass` with a keepalive
//! upstream pool.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::client::{Connections, sequential};
use crate::common::{TempDir, free_port};
use crate::config::Config;
use crate::servers::{self, Server};
use crate::setup::Tools;
use crate::shared::report::percentile;

/// Unrecorded requests at the start of every round and route (past Linux's quick-ACK start of a
/// connection, at most 16 segments, and past the upstream connections a proxy opens).
pub const WARM_UP: usize = 30;

/// The test app: `two-writes pid=N` in a head write and a body write, Nagle on.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/two_writes.py");

/// A minimal Django project: one view, no database, no middleware, no request log.
const DJANGO_SETTINGS: &str = r#"# Written by devserve's proxy bench.
SECRET_KEY = "devserve-bench-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
# No line per request (as uvicorn's --no-access-log in the swaps part).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.server": {"level": "ERROR"}},
}
"#;

const DJANGO_URLS: &str = r#"# Written by devserve's proxy bench.
from django.http import HttpResponse
from django.urls import path

BODY = b"django two writes\n"


def index(request):
    response = HttpResponse(BODY, content_type="text/plain")
    response["Content-Length"] = str(len(BODY))
    return response


urlpatterns = [path("", index)]
"#;

const DJANGO_MANAGE: &str = r#"# Written by devserve's proxy bench.
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"#;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum App {
    TwoWrites,
    Django,
}

impl App {
    pub const ALL: [App; 2] = [App::TwoWrites, App::Django];

    pub fn label(self) -> &'static str {
        match self {
            App::TwoWrites => "two_writes.py",
            App::Django => "Django runserver",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            App::TwoWrites => "two-writes",
            App::Django => "django",
        }
    }

    /// The app's command line after `python3`, binding `port` (`{port}` behind devserve).
    fn args(self, port: &str) -> Vec<String> {
        match self {
            // Behind devserve it binds `PORT` from its environment.
            App::TwoWrites if port == "{port}" => vec![SCRIPT.into()],
            App::TwoWrites => vec![SCRIPT.into(), "--port".into(), port.into()],
            App::Django => {
                let addr = format!("127.0.0.1:{port}");
                ["manage.py", "runserver", &addr, "--noreload"].map(String::from).to_vec()
            }
        }
    }

    /// Writes the app's files into `dir` (Django's project; the script needs none).
    fn prepare(self, dir: &Path) -> Result<(), String> {
        if self == App::TwoWrites {
            return Ok(());
        }
        for (name, text) in
            [("settings.py", DJANGO_SETTINGS), ("urls.py", DJANGO_URLS), ("manage.py", DJANGO_MANAGE)]
        {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Environment of every app: no `__pycache__` written into the watched folder.
const APP_ENV: [(&str, &str); 1] = [("PYTHONDONTWRITEBYTECODE", "1")];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    DirectKept,
    DirectQuickAck,
    DirectFresh,
    Devserve,
    Nginx,
}

impl Route {
    pub const ALL: [Route; 5] =
        [Route::DirectKept, Route::DirectQuickAck, Route::DirectFresh, Route::Devserve, Route::Nginx];

    pub fn label(self) -> &'static str {
        match self {
            Route::DirectKept => "direct, one kept-alive connection",
            Route::DirectQuickAck => "direct, kept alive, client acks at once (TCP_QUICKACK)",
            Route::DirectFresh => "direct, a fresh connection per request",
            Route::Devserve => "devserve --proxy",
            Route::Nginx => "nginx proxy_pass",
        }
    }

    fn connections(self) -> Connections {
        match self {
            Route::DirectQuickAck => Connections::QuickAck,
            Route::DirectFresh => Connections::Fresh,
            Route::DirectKept | Route::Devserve | Route::Nginx => Connections::KeptAlive,
        }
    }
}

/// One route's figures, over every round's measured requests together.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Measured requests (ok and failed).
    pub requests: u64,
    pub errors: u64,
    /// Connections the client opened, the warm-ups' included.
    pub connections: u64,
}

/// What one app's run measured: `cells[route]`, `Err(why)` when that route could not run.
pub struct AppRun {
    pub cells: Vec<Result<Figures, String>>,
}

impl AppRun {
    pub fn get(&self, route: Route) -> Option<Figures> {
        self.cells[route as usize].as_ref().ok().copied()
    }
}

/// Both apps, one after the other; an app that cannot be had is `Err("skipped: …")`.
pub fn run(config: &Config, tools: &Tools) -> Vec<(App, Result<AppRun, String>)> {
    App::ALL
        .iter()
        .map(|&app| {
            let python = match app {
                App::TwoWrites => &tools.python,
                App::Django => &tools.django,
            };
            let outcome = match python {
                Err(why) => {
                    eprintln!("[bench] two-writes: {} skipped: {why}", app.label());
                    Err(format!("skipped: {why}"))
                }
                Ok(python) => {
                    eprintln!(
                        "[bench] two-writes: {} direct, behind devserve --proxy and behind nginx",
                        app.label()
                    );
                    let outcome = run_app(app, config, tools, python);
                    if let Err(why) = &outcome {
                        eprintln!("[bench]   failed: {why}");
                    }
                    outcome
                }
            };
            (app, outcome)
        })
        .collect()
}

/// Everything one route measured over the rounds.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    connections: u64,
    failure: Option<String>,
}

fn run_app(app: App, config: &Config, tools: &Tools, python: &Path) -> Result<AppRun, String> {
    let dir = TempDir::new(&format!("bench-proxy-{}", app.slug()));
    let nginx_dir = TempDir::new(&format!("bench-proxy-nginx-{}", app.slug()));
    app.prepare(&dir)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().map_err(|e| format!("{e}"))?;
    let mut command = Command::new(python);
    command.args(app.args(&addr.port().to_string())).current_dir(dir.path()).envs(APP_ENV);
    let direct = servers::direct_command(&format!("{} (direct)", app.label()), command, addr)?;
    let mut argv: Vec<String> = vec![python.display().to_string()];
    argv.extend(app.args("{port}"));
    let devserve = servers::devserve_app(&tools.devserve, &dir, &argv, &APP_ENV);
    let nginx = match &tools.nginx {
        Ok(path) => servers::nginx(path, &nginx_dir, direct.addr),
        Err(why) => Err(why.clone()),
    };
    for (what, started) in [("devserve", &devserve), ("nginx", &nginx)] {
        if let Err(why) = started {
            eprintln!("[bench]   {what} skipped: {why}");
        }
    }
    let mut servers: Vec<Result<Server, String>> = vec![Ok(direct), devserve, nginx];
    let server_of = |route: Route| match route {
        Route::DirectKept | Route::DirectQuickAck | Route::DirectFresh => 0,
        Route::Devserve => 1,
        Route::Nginx => 2,
    };
    let mut tallies: Vec<Tally> = Route::ALL.iter().map(|_| Tally::default()).collect();
    for round in 1..=config.rounds {
        for route in Route::ALL {
            let tally = &mut tallies[route as usize];
            let Ok(server) = &mut servers[server_of(route)] else { continue };
            if tally.failure.is_some() {
                continue;
            }
            let measured = sequential(server.addr, WARM_UP, config.requests, route.connections())
                .and_then(|sequence| server.process.check_alive().map(|()| sequence));
            match measured {
                Ok(mut sequence) => {
                    sequence.latencies_us.sort_unstable();
                    let at = |p| percentile(&sequence.latencies_us, p).unwrap_or(0);
                    eprintln!(
                        "[bench]   round {round}/{} · {:<54} p50 {:>6} µs  p90 {:>6} µs  p99 {:>6} µs  errors {}  connections {}",
                        config.rounds,
                        route.label(),
                        at(50.0),
                        at(90.0),
                        at(99.0),
                        sequence.errors,
                        sequence.connections
                    );
                    if let Some(why) = &sequence.last_error {
                        eprintln!("[bench]     a failed request: {why}");
                    }
                    tally.latencies_us.extend(sequence.latencies_us);
                    tally.errors += sequence.errors;
                    tally.connections += sequence.connections;
                }
                Err(why) => {
                    eprintln!("[bench]   {}: failed: {why}", route.label());
                    tally.failure = Some(why);
                }
            }
        }
    }
    let cells = Route::ALL
        .iter()
        .map(|&route| {
            if let Err(why) = &servers[server_of(route)] {
                return Err(format!("skipped: {why}"));
            }
            let tally = &mut tallies[route as usize];
            if let Some(why) = &tally.failure {
                return Err(format!("failed: {why}"));
            }
            summarize(tally).ok_or_else(|| "no request completed".to_owned())
        })
        .collect();
    for server in servers.iter_mut().rev().flatten() {
        server.process.stop();
    }
    Ok(AppRun { cells })
}

fn summarize(tally: &mut Tally) -> Option<Figures> {
    tally.latencies_us.sort_unstable();
    let at = |p: f64| percentile(&tally.latencies_us, p).map(f64::from);
    Some(Figures {
        p50_us: at(50.0)?,
        p90_us: at(90.0)?,
        p99_us: at(99.0)?,
        max_us: at(100.0)?,
        requests: tally.latencies_us.len() as u64 + tally.errors,
        errors: tally.errors,
        connections: tally.connections,
    })
}

/// The Django version `python` imports, for the report.
pub fn django_version(python: &Result<PathBuf, String>) -> String {
    crate::setup::version_line(python, &["-c", "import django; print('Django', django.get_version())"])
}
