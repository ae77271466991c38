//! The command line: clap types, and the parsers that turn strings into durations, signals,
//! listen addresses and `KEY=VALUE` pairs (shared with the configuration file, see `config`).
//! A mistake is one clear usage line (exit 2) before devserve binds, spawns or watches anything.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Parser};
use nix::sys::signal::Signal;

use crate::control::ControlAction;
use crate::output::LogFormat;
use crate::sockets::{ListenSpec, ProxySpec, parse_listen, parse_proxy};

/// Declares the command line. A field marked `@setting(APPLY)` is also a configuration-file key
/// — its long flag name, or for a `--no-…` flag the positive boolean given as `inverted` — and
/// a live edit of it applies as [`Apply`] says. So the field is the one declaration of a
/// setting: flag, key, default, doc line and how an edit applies (`tests::docs_agree` checks
/// the README and `devserve.example.toml` against it).
macro_rules! command_line {
    (
        $(#[$meta:meta])*
        pub struct Cli {
            $(
                $(#[$fmeta:meta])*
                $(@setting($apply:ident $(, inverted = $key:literal)? $(, key = $own:literal)?))?
                pub $field:ident : $ty:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        pub struct Cli {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        /// Every setting, in the order of the command line.
        pub const SETTINGS: &[Setting] = &[
            $( $( Setting {
                id: stringify!($field),
                apply: Apply::$apply,
                inverted: command_line!(@key $($key)?),
                file_key: command_line!(@key $($own)?),
            }, )? )*
        ];
    };
    (@key $key:literal) => { Some($key) };
    (@key) => { None };
}

/// How a live edit of a setting takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// At once (the watcher, timeouts, the next reload's rules).
    AtOnce,
    /// Through a new generation: it changes what workers are or get.
    NextGeneration,
    /// Only when devserve starts again (read once at start).
    NextStart,
}

/// `devserve ca ACTION`: the local certificate authority (see `crate::ca`).
#[derive(Debug, clap::Parser)]
#[command(
    name = "devserve ca",
    about = "devserve's local certificate authority, for HTTPS on local names only"
)]
pub struct CaCli {
    #[command(subcommand)]
    pub action: CaAction,
}

/// What `devserve ca` does.
#[derive(Debug, clap::Subcommand)]
pub enum CaAction {
    /// Make the local CA: it can vouch for localhost, *.localhost, loopback and private addresses,
    /// and each --name, nothing else
    Create {
        /// Also allow this DNS name (and its subdomains) or IP range, e.g. dev.test or 192.0.2.0/24
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// Replace an existing CA (trust the new one again)
        #[arg(long)]
        force: bool,
    },
    /// Print the CA certificate's path, making the CA on first use
    Path,
    /// Trust the CA for this user (the NSS database of Chromium and Firefox, with certutil) and
    /// print the commands that trust it system-wide
    Install,
    /// Remove the CA from this user's NSS database
    Uninstall,
}

/// How the front door speaks to the app (`--upstream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, what every app server speaks.
    Http1,
    /// HTTP/2 with prior knowledge, without TLS: gRPC servers (tonic, grpcio).
    H2c,
}

/// How `--accept` gives a process its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AcceptMode {
    /// At fd 3, with `LISTEN_FDS=1` and `LISTEN_FDNAMES=connection` (systemd's `Accept=yes`).
    Fd,
    /// As stdin and stdout (inetd's `nowait`).
    Stdio,
}

/// One setting: a command-line option that the configuration file may also set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The clap argument id (the field's name).
    pub id: &'static str,
    pub apply: Apply,
    /// For a `--no-…` flag: the positive key the file uses (`vcs-ignore = false`).
    pub inverted: Option<&'static str>,
    /// A file key other than the flag's name: a list the flag adds one item to
    /// (`--allowed-host NAME`, `allowed-hosts = [...]`).
    pub file_key: Option<&'static str>,
}

impl Setting {
    /// The configuration-file key: the long flag name (`ready-delay`), the positive form of a
    /// `--no-…` flag, or the field name for the positional `command`.
    pub fn key(&self, command: &clap::Command) -> String {
        if let Some(key) = self.inverted.or(self.file_key) {
            return key.to_owned();
        }
        command
            .get_arguments()
            .find(|arg| arg.get_id() == self.id)
            .and_then(clap::Arg::get_long)
            .map_or_else(|| self.id.replace('_', "-"), str::to_owned)
    }
}

/// The layout of `-h` and `--help`: what devserve does, its usage, the three front doors, the
/// options by topic (`-h` shows the ten most used), then the verbs and where to read more.
const HELP_TEMPLATE: &str =
    "{about-with-newline}\n{usage-heading} {usage}\n\n{before-help}{all-args}{after-help}";

/// A heading of our own in the help, styled as clap styles its own (`Options:`).
fn heading(name: &str) -> String {
    let style = clap::builder::Styles::default().get_header().to_owned();
    format!("{style}{name}:{style:#}")
}

/// After the usage, in `-h` and `--help`: the three ways requests reach the server.
fn front_doors() -> String {
    format!(
        "{} how requests reach COMMAND, the server given after --\n\
         \x20 --proxy ADDR   any HTTP app that binds the port it is given ($PORT, {{port}})\n\
         \x20 --listen ADDR  socket hand-over: the app takes fd 3, systemd-style\n\
         \x20 neither        restart mode: the old server stops, then the new one starts",
        heading("Front doors")
    )
}

/// After the options: the verbs, then where to read more (`--help` adds the signals).
fn verbs(long: bool) -> String {
    let verbs = format!(
        "{}\n\
         \x20 devserve        with no COMMAND: runs the project it recognises here\n\
         \x20 devserve check  validates, and shows what would run, like nginx -t\n\
         \x20 devserve init   writes a devserve.toml for the project in this folder\n\
         \x20 devserve ca     the local CA for HTTPS: create, path, install, uninstall",
        heading("Verbs")
    );
    if long {
        format!(
            "{verbs}\n\n\
             {} HUP reload · TERM/INT graceful stop (twice: kill now) · QUIT kill now\n\
             \x20        USR1 status · USR2 upgrade in place · TTIN/TTOU one worker more/fewer\n\n\
             The book, docs/ in devserve's source (`mdbook serve docs`), has every flag, the config \
             file and the front doors in detail.",
            heading("Signals")
        )
    } else {
        format!("{verbs}\n\nMore: devserve --help (every option, by topic) and the book (docs/)")
    }
}

command_line! {
/// Rebuild and swap a server on every save, without ever refusing a connection.
#[derive(Parser, Debug, Clone)]
#[command(name = "devserve", version, about, long_about = None)]
#[command(
    override_usage = "devserve [OPTIONS] [-- COMMAND...]",
    help_template = HELP_TEMPLATE,
    before_help = front_doors(),
    after_help = verbs(false),
    after_long_help = verbs(true),
    max_term_width = 100
)]
pub struct Cli {
    /// Path to watch, recursively (repeatable)
    ///
    /// A file is watched through its folder and always counts.
    #[arg(short = 'w', long = "watch", value_name = "PATH", default_value = ".", help_heading = "Watching")]
    @setting(AtOnce)
    pub watch: Vec<PathBuf>,

    /// Only files with these extensions count, e.g. `rs,toml`
    ///
    /// A leading `.` is allowed (`.rs`). Without it, files of any extension count.
    #[arg(short = 'e', long = "exts", value_name = "LIST", value_delimiter = ',', help_heading = "Watching")]
    @setting(AtOnce)
    pub exts: Vec<String>,

    /// Ignore paths matching GLOB (repeatable), e.g. `*.log`
    ///
    /// The glob is matched against the path relative to its watch root, e.g. `*.log` or
    /// `assets/**`.
    #[arg(short = 'i', long = "ignore", value_name = "GLOB", help_heading = "Watching")]
    @setting(AtOnce)
    pub ignore: Vec<String>,

    /// Do not honour .gitignore, .ignore and .git/info/exclude
    #[arg(long = "no-vcs-ignore", help_heading = "Watching", hide_short_help = true)]
    @setting(AtOnce, inverted = "vcs-ignore")
    pub no_vcs_ignore: bool,

    /// Poll for changes every DUR (default 500ms) instead of using file-system events: for network
    /// and VM shares and Docker bind mounts, where events do not arrive
    #[arg(long, value_name = "DUR", num_args = 0..=1, default_missing_value = "500ms",
          value_parser = parse_duration,
          help_heading = "Watching", hide_short_help = true)]
    @setting(AtOnce)
    pub poll: Option<Duration>,

    /// Quiet period that folds a burst of file events into one change
    #[arg(long, value_name = "DUR", default_value = "50ms", value_parser = parse_duration,
          help_heading = "Watching", hide_short_help = true)]
    @setting(AtOnce)
    pub debounce: Duration,

    /// Build command, run with `sh -c` before each new generation
    ///
    /// A failed build starts nothing: the serving generation keeps serving (with --proxy, the
    /// browser shows the build's output over the page).
    #[arg(short = 'b', long = "build", value_name = "CMD", help_heading = "Building")]
    @setting(NextGeneration)
    pub build: Option<String>,

    /// Socket to hold and pass to workers (repeatable)
    ///
    /// Socket hand-over: workers inherit it at fd 3 on, with LISTEN_FDS, as systemd passes
    /// sockets. `127.0.0.1:8080`, `[::1]:8080`, `:8080` (all interfaces), `unix:/path/app.sock`;
    /// prefix `NAME=` to set its LISTEN_FDNAMES entry.
    #[arg(short = 'l', long = "listen", value_name = "ADDR", value_parser = parse_listen,
          help_heading = "Front door")]
    @setting(NextGeneration)
    pub listen: Vec<ListenSpec>,

    /// With --listen: devserve accepts each connection and starts COMMAND for it, given the
    /// connection at fd 3 (systemd's Accept=yes), or `=stdio` as stdin and stdout (inetd)
    #[arg(long, value_name = "HOW", value_enum, num_args = 0..=1, require_equals = true,
          default_missing_value = "fd", requires = "listen", conflicts_with_all = ["proxy", "max_requests"],
          help_heading = "Front door", hide_short_help = true)]
    @setting(NextStart)
    pub accept: Option<AcceptMode>,

    /// With --accept: at most N connection processes at once; more connections wait in the
    /// socket's queue, never refused
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..),
          help_heading = "Front door", hide_short_help = true)]
    @setting(NextStart)
    pub max_connections: u32,

    /// Any HTTP app: route ADDR to each worker's own port
    ///
    /// Accept every connection on ADDR and route it to a ready generation's workers, each on a
    /// port of its own (`PORT`, `{port}` in COMMAND); `tcp:ADDR` for raw TCP. Not with --listen.
    // `display_order`: listed before --listen, as the front door for any app.
    #[arg(long, value_name = "ADDR", value_parser = parse_proxy, conflicts_with = "listen",
          help_heading = "Front door",
          display_order = 6)]
    @setting(NextStart)
    pub proxy: Option<ProxySpec>,

    /// With --proxy: the port fixed in the app's code
    ///
    /// For an app that ignores PORT: generations cannot overlap, so the old one stops first and
    /// requests are held until the new one is ready.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..),
          help_heading = "Front door")]
    @setting(NextGeneration)
    pub app_port: Option<u16>,

    /// With --proxy: ready when GET PATH answers below 500
    ///
    /// A worker is ready when `GET PATH` on its port answers below 500 (READY=1 is then not
    /// enough). Without it: when its port accepts a connection, or READY=1.
    #[arg(long, value_name = "PATH", value_parser = parse_ready_path, help_heading = "Front door")]
    @setting(AtOnce)
    pub ready_path: Option<String>,

    /// With --proxy: do not add the reload script to HTML pages (no reload after a swap, no overlay)
    #[arg(long, help_heading = "Front door", hide_short_help = true)]
    @setting(NextStart, inverted = "browser-reload")
    pub no_browser_reload: bool,

    /// With --proxy: how long a request waits for a ready generation before a 503 that says why
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration,
          help_heading = "Front door", hide_short_help = true)]
    @setting(NextStart)
    pub hold_timeout: Duration,

    /// With --proxy: also answer requests for this host name (repeatable; `.example.test` allows
    /// its subdomains too); `all` turns the DNS-rebinding and cross-site checks off
    #[arg(long = "allowed-host", value_name = "NAME", value_parser = parse_allowed_host,
          help_heading = "Front door", hide_short_help = true)]
    @setting(NextStart, key = "allowed-hosts")
    pub allowed_hosts: Vec<String>,

    /// With --proxy: open the front door's address in the default browser once gen 1 is ready
    #[arg(long, help_heading = "Front door", hide_short_help = true)]
    @setting(NextStart)
    pub open: bool,

    /// With --proxy: a worker is replaced after N requests (its replacement ready first), as
    /// gunicorn's max_requests
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Workers", hide_short_help = true)]
    @setting(NextStart)
    pub max_requests: Option<u32>,

    /// With --max-requests: up to J more requests for each worker, chosen at random, so that
    /// workers are not all replaced at once
    #[arg(long, value_name = "J", default_value_t = 0, help_heading = "Workers", hide_short_help = true)]
    @setting(NextStart)
    pub max_requests_jitter: u32,

    /// With --proxy: speak `h2c` (HTTP/2 without TLS) to the app, for gRPC servers, instead of
    /// HTTP/1.1
    #[arg(long, value_name = "PROTOCOL", value_enum, default_value_t = UpstreamProtocol::Http1,
          help_heading = "Front door", hide_short_help = true)]
    @setting(NextStart)
    pub upstream: UpstreamProtocol,

    /// With --proxy: a request the app has not begun to answer within DUR gets a 504 (default:
    /// wait as long as the app takes, e.g. on a breakpoint)
    #[arg(long, value_name = "DUR", value_parser = parse_duration,
          help_heading = "Front door", hide_short_help = true)]
    @setting(NextStart)
    pub upstream_timeout: Option<Duration>,

    /// Worker processes per generation, or `auto`
    ///
    /// 1 to 1024, or `auto` (also `0`): one per CPU devserve may use.
    #[arg(short = 'n', long = "workers", value_name = "N", default_value = "1", value_parser = parse_workers,
          help_heading = "Workers")]
    @setting(NextGeneration)
    pub workers: u32,

    /// With services: builds of different services running at once, or `auto`
    ///
    /// `auto` (the default): 1 on a machine with 4 CPUs or fewer, else 2 (two `cargo build`s wait
    /// on one target folder's lock anyway). A build waiting for its turn says so.
    #[arg(long = "build-jobs", value_name = "N", default_value = "auto", value_parser = parse_build_jobs,
          help_heading = "Workers", hide_short_help = true)]
    @setting(AtOnce)
    pub build_jobs: u32,

    /// Leave LISTEN_PID out of the worker environment, for a wrapper that runs the app as its child
    /// (a script that does not `exec`); apps that insist on LISTEN_PID then find no sockets
    #[arg(long = "no-pid", alias = "no-listen-pid", help_heading = "Workers", hide_short_help = true)]
    @setting(NextGeneration, inverted = "listen-pid")
    pub no_pid: bool,

    /// A worker that never sends READY=1 counts as ready once it has stayed up this long
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration,
          help_heading = "Readiness and stopping", hide_short_help = true)]
    @setting(AtOnce)
    pub ready_delay: Duration,

    /// A new generation not ready within this time is stopped; the old one keeps serving
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration,
          help_heading = "Readiness and stopping", hide_short_help = true)]
    @setting(AtOnce)
    pub ready_timeout: Duration,

    /// Signal that asks a worker to drain and exit: `TERM`, `SIGTERM` or `15`
    #[arg(long, value_name = "SIG", default_value = "TERM", value_parser = parse_signal,
          help_heading = "Readiness and stopping", hide_short_help = true)]
    @setting(AtOnce)
    pub stop_signal: Signal,

    /// Time a stopping worker gets before its whole process group is killed
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration,
          help_heading = "Readiness and stopping", hide_short_help = true)]
    @setting(AtOnce)
    pub stop_timeout: Duration,

    /// Kill and restart a ready worker that sends no WATCHDOG=1 for this long (sets WATCHDOG_USEC)
    #[arg(long, value_name = "DUR", value_parser = parse_duration,
          help_heading = "Workers", hide_short_help = true)]
    @setting(NextGeneration)
    pub watchdog: Option<Duration>,

    /// Crashes in a row (a 10s run resets the count) after which a serving generation's
    /// workers are no longer restarted, until the next change or HUP
    #[arg(long, value_name = "N", default_value_t = 10, help_heading = "Workers", hide_short_help = true)]
    @setting(AtOnce)
    pub max_restarts: u32,

    /// Swap even when a build leaves the program byte for byte as the serving generation runs it
    #[arg(long, help_heading = "Building", hide_short_help = true)]
    @setting(AtOnce)
    pub always_swap: bool,

    /// Swap one worker at a time: each new worker ready before the next old one stops
    #[arg(long, help_heading = "Workers", hide_short_help = true)]
    @setting(AtOnce)
    pub rolling: bool,

    /// Also reload when FILE is touched, even outside the watched paths or ignored (repeatable)
    #[arg(long = "touch-reload", value_name = "FILE", help_heading = "Watching", hide_short_help = true)]
    @setting(AtOnce)
    pub touch_reload: Vec<PathBuf>,

    /// Write devserve's pid here (atomically); removed at exit
    #[arg(long, value_name = "PATH", help_heading = "Control", hide_short_help = true)]
    @setting(NextStart)
    pub pidfile: Option<PathBuf>,

    /// Control the devserve named by --pidfile instead of starting one
    #[arg(short = 's', long = "signal", value_name = "ACTION",
          help_heading = "Control", hide_short_help = true)]
    pub signal: Option<ControlAction>,

    /// Extra environment for workers and the build (repeatable)
    #[arg(short = 'E', long = "env", value_name = "KEY=VALUE", value_parser = parse_env,
          help_heading = "Workers", hide_short_help = true)]
    @setting(NextGeneration)
    pub env: Vec<(String, String)>,

    /// Load a .env-style file into workers' and the build's environment (repeatable; later files
    /// win, devserve's own environment and --env win over them; an edit of it swaps)
    #[arg(long = "env-file", value_name = "PATH", value_hint = clap::ValueHint::FilePath,
          help_heading = "Workers", hide_short_help = true)]
    @setting(NextGeneration)
    pub env_file: Vec<PathBuf>,

    /// Configuration file [default: ./devserve.toml when it exists]
    #[arg(short = 'c', long = "config", value_name = "PATH", value_parser = parse_config_path,
          value_hint = clap::ValueHint::FilePath,
          help_heading = "Control", hide_short_help = true)]
    pub config: Option<PathBuf>,

    /// Clear the screen before each reload
    #[arg(long, help_heading = "Output", hide_short_help = true)]
    @setting(AtOnce)
    pub clear: bool,

    /// CI smoke test: build, start, wait until ready, run --probe, exit
    ///
    /// Starts one generation, and stops it once it is ready and --probe has run. Exit 0 when all
    /// went well; 3, 4 or 5 say what did not (see the book's exit codes).
    #[arg(long, help_heading = "Control")]
    pub once: bool,

    /// With --once: a shell command run once the generation is ready; its exit status decides
    /// (DEVSERVE_ADDR holds the first listen address)
    #[arg(long, value_name = "CMD", help_heading = "Control", hide_short_help = true)]
    @setting(AtOnce)
    pub probe: Option<String>,

    /// With --once: a probe still running after this long is killed and fails the run (exit 5)
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration,
          help_heading = "Control", hide_short_help = true)]
    @setting(AtOnce)
    pub probe_timeout: Duration,

    /// How devserve reports its own events
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Human,
          help_heading = "Output", hide_short_help = true)]
    @setting(NextStart)
    pub log_format: LogFormat,

    /// Print a shell completion script and exit
    #[arg(long, value_name = "SHELL", exclusive = true, help_heading = "Output", hide_short_help = true)]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit
    #[arg(long, exclusive = true, help_heading = "Output", hide_short_help = true)]
    pub man: bool,

    /// Fewer devserve messages (-q: warnings and errors only)
    #[arg(short = 'q', long = "quiet", action = ArgAction::Count, conflicts_with = "verbose",
          help_heading = "Output", hide_short_help = true)]
    pub quiet: u8,

    /// More devserve messages (-v debug, -vv trace)
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count,
          help_heading = "Output", hide_short_help = true)]
    pub verbose: u8,

    /// The server to run, with its arguments
    #[arg(value_name = "COMMAND", trailing_var_arg = true, hide_short_help = true)]
    @setting(NextGeneration)
    pub command: Vec<OsString>,
}
}

/// clap's message folded into one line, without the usage block that follows it: the message,
/// then each `tip:` (`a similar argument exists: '--exts'`), `; ` apart.
pub fn one_line(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut open = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            open = false;
        } else if let Some(tip) = line.strip_prefix("tip:").map(str::trim) {
            // `to pass '--ext' as a value, use '-- --ext'` would start a server named `--ext`.
            if !tip.starts_with("to pass ") {
                parts.push(tip.to_owned());
            }
            open = false;
        } else if open && let Some(last) = parts.last_mut() {
            last.push(' ');
            last.push_str(line);
        } else {
            parts.push(line.to_owned());
            open = true;
        }
    }
    if parts.is_empty() {
        "invalid arguments (see --help)".into()
    } else {
        format!("{} (see --help)", parts.join("; "))
    }
}

/// For a command line clap refused: a one-line pointer to devserve's own way, when the user
/// reached for a flag of watchexec, cargo-watch, nodemon or air, with what to type instead.
/// Only words before `--` are flags; the words after it are the server, which a translated
/// `-x check` keeps.
pub fn peer_flag_hint(args: &[OsString]) -> Option<String> {
    peer_flag_hint_with(args, &cargo_program)
}

/// [`peer_flag_hint`], with `program(bin, profile)` naming the program `cargo build` makes.
fn peer_flag_hint_with(args: &[OsString], program: &dyn Fn(Option<&str>, &str) -> String) -> Option<String> {
    let all: Vec<&str> = args.iter().skip(1).map_while(|a| a.to_str()).collect();
    let dashes = all.iter().position(|a| *a == "--").unwrap_or(all.len());
    let (words, server) = (&all[..dashes], all.get(dashes + 1..).filter(|s| !s.is_empty()));
    for (index, word) in words.iter().enumerate() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (*word, None),
        };
        let given = inline.or_else(|| words.get(index + 1).copied());
        let value = given.unwrap_or("CMD");
        let said = match given {
            Some(value) if inline.is_none() && takes_value(flag) => format!("{flag} {}", shell_word(value)),
            _ => (*word).to_owned(),
        };
        let hint = match flag {
            "--delay" | "-d" => "devserve calls it --debounce DUR (e.g. --debounce 200ms)".to_owned(),
            "-x" | "--exec" if cargo_words(value).is_some() => {
                return Some(cargo_hint(words, server, program));
            }
            "-x" | "--exec" => {
                format!("devserve runs the server given after --: devserve -- {}", server_words(value))
            }
            "-r" | "--restart" => {
                "devserve always replaces the server on a change (the old one drains); drop -r".to_owned()
            }
            "--postpone" => "devserve always starts the server at once; there is no --postpone".to_owned(),
            "-p" => "devserve calls it --poll [DUR] (default 500ms)".to_owned(),
            "--signal" | "-s" if parse_signal(value).is_ok() => format!(
                "to choose the signal that stops workers use --stop-signal {value}; \
                 devserve's --signal controls a running devserve (reload, stop, quit, status)"
            ),
            "-s" | "--shell" if flag == "--shell" || given.is_some_and(|v| !is_control_action(v)) => {
                if cargo_words(value).is_some() && !has_shell_syntax(value) {
                    return Some(cargo_hint_for(&said, &[value], server, program));
                }
                shell_hint(flag, value, server)
            }
            "-c" | "--config" if given.is_some_and(is_air_config) => air_hint(value),
            _ => continue,
        };
        return Some(format!("{said}: {hint}"));
    }
    None
}

/// Whether a peer flag is followed by its value (so the hint repeats both).
fn takes_value(flag: &str) -> bool {
    matches!(flag, "--delay" | "-d" | "-x" | "--exec" | "--signal" | "-s" | "--shell" | "-c" | "--config")
}

fn is_control_action(text: &str) -> bool {
    <ControlAction as clap::ValueEnum>::from_str(text, true).is_ok()
}

/// The cargo command in a cargo-watch `-x` value (`run`, `cargo run`, `check --tests`): its
/// words without `cargo`, when the first is one of cargo's commands.
fn cargo_words(value: &str) -> Option<Vec<&str>> {
    const COMMANDS: &[&str] = &[
        "run", "r", "build", "b", "check", "c", "test", "t", "clippy", "bench", "doc", "d", "fmt", "fix",
        "nextest",
    ];
    let mut words: Vec<&str> = value.split_whitespace().collect();
    if words.first() == Some(&"cargo") {
        words.remove(0);
    }
    words.first().is_some_and(|w| COMMANDS.contains(w)).then_some(words)
}

/// cargo-watch's `-x` flags (all of them, in order: `-x check -x run`) as one build step, and
/// the program to run after `--`.
fn cargo_hint(
    words: &[&str],
    server: Option<&[&str]>,
    program: &dyn Fn(Option<&str>, &str) -> String,
) -> String {
    let mut said = Vec::new();
    let mut values = Vec::new();
    for (index, word) in words.iter().enumerate() {
        let (flag, value) = match word.split_once('=') {
            Some((flag, value)) if flag == "--exec" => (flag, Some(value)),
            _ => (*word, words.get(index + 1).copied()),
        };
        if (flag == "-x" || flag == "--exec")
            && let Some(value) = value.filter(|v| cargo_words(v).is_some())
        {
            said.push(format!("{flag} {}", shell_word(value)));
            values.push(value);
        }
    }
    cargo_hint_for(&said.join(" "), &values, server, program)
}

/// `cargo VALUE` for each value: `run` becomes `cargo build` (with the same options) and the
/// program it builds; any other command is a build step as it is.
fn cargo_hint_for(
    said: &str,
    values: &[&str],
    server: Option<&[&str]>,
    program: &dyn Fn(Option<&str>, &str) -> String,
) -> String {
    let mut steps = Vec::new();
    let mut run: Option<String> = None;
    let mut built: Option<String> = None;
    for value in values {
        let Some(words) = cargo_words(value) else { continue };
        let options = words.iter().skip(1).take_while(|w| **w != "--").copied().collect::<Vec<_>>();
        let bin = options.iter().enumerate().find_map(|(i, w)| match *w {
            "--bin" => options.get(i + 1).copied(),
            _ => w.strip_prefix("--bin="),
        });
        let profile =
            if options.iter().any(|w| matches!(*w, "--release" | "-r")) { "release" } else { "debug" };
        let path = || program(bin, profile);
        if matches!(words[0], "run" | "r") {
            steps.push(
                ["cargo build"].into_iter().chain(options.iter().copied()).collect::<Vec<_>>().join(" "),
            );
            let app_args = words.iter().skip_while(|w| **w != "--").skip(1).map(|w| shell_word(w));
            run = Some(
                [path()].into_iter().chain(app_args.map(|w| w.into_owned())).collect::<Vec<_>>().join(" "),
            );
        } else {
            if matches!(words[0], "build" | "b") {
                built = Some(path());
            }
            steps.push(format!("cargo {}", words.join(" ")));
        }
    }
    let build = format!("-b {}", single_quoted(&steps.join(" && ")));
    match (run, server) {
        (Some(program), _) => format!(
            "{said}: cargo run is the server and never finishes, so build with -b and run the program \
             after --: devserve {build} -- {program} (plain devserve runs a cargo project with no arguments)"
        ),
        (None, server) => {
            let server =
                server.map(|words| words.iter().map(|w| shell_word(w)).collect::<Vec<_>>().join(" "));
            let server = server.or(built).unwrap_or_else(|| "COMMAND".to_owned());
            format!(
                "{said}: devserve runs the build step given with -b, and the server after --: \
                 devserve {build} -- {server}"
            )
        }
    }
}

/// cargo-watch's `-s CMD` (a shell command): a build step when it looks like one, else the
/// server.
fn shell_hint(flag: &str, value: &str, server: Option<&[&str]>) -> String {
    const BUILDS: &[&str] = &[
        "build", "check", "make", "cmake", "ninja", "tsc", "clippy", "test", "compile", "gcc", "cc", "javac",
        "lint",
    ];
    let looks_like_a_build =
        value.split(|c: char| c.is_whitespace() || "&|;:".contains(c)).any(|w| BUILDS.contains(&w));
    let own = if flag == "-s" { "devserve's -s is --signal; " } else { "" };
    if looks_like_a_build {
        let server = server.map_or_else(
            || "COMMAND".to_owned(),
            |words| words.iter().map(|w| shell_word(w)).collect::<Vec<_>>().join(" "),
        );
        format!("{own}a build command is the build step: devserve -b {} -- {server}", single_quoted(value))
    } else {
        format!("{own}devserve runs the server given after --: devserve -- {}", server_words(value))
    }
}

/// A command given as one string, as words after `--`: as they are when the shell would only
/// split them at spaces, else through `sh -c`.
fn server_words(value: &str) -> String {
    if has_shell_syntax(value) {
        format!("sh -c {}", single_quoted(value))
    } else {
        value.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// A character the shell takes as itself.
fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c)
}

/// Whether the shell would do more with `text` than split it at spaces.
fn has_shell_syntax(text: &str) -> bool {
    !text.chars().all(|c| c.is_whitespace() || plain_char(c))
}

/// `text` as one shell word: as it is when that is safe (`{port}` included: a brace pair without
/// a comma or `..` is not expanded), else in single quotes.
pub(crate) fn shell_word(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.is_empty() && text.chars().all(|c| plain_char(c) || c == '{' || c == '}') {
        text.into()
    } else {
        single_quoted(text).into()
    }
}

/// `text` in single quotes, a quote in it written `'\''`.
fn single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// air's configuration file: `.air.toml`, `air.toml` or `NAME.air.toml`.
fn is_air_config(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| name == "air.toml" || name.ends_with(".air.toml"))
}

/// Parses `-c`: any path but air's configuration file, which a user of air may reach for (its
/// `-c` too); [`peer_flag_hint`] then says what devserve takes instead.
pub fn parse_config_path(text: &str) -> Result<PathBuf, String> {
    if is_air_config(text) {
        return Err(format!("`{text}` is air's configuration, not devserve's; devserve reads devserve.toml"));
    }
    Ok(PathBuf::from(text))
}

/// air's `-c FILE`: its build command and program (air's defaults where the file says none) as
/// devserve's `-b` and COMMAND.
fn air_hint(path: &str) -> String {
    let build = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| table.get("build").and_then(toml::Value::as_table).cloned())
        .unwrap_or_default();
    let text = |key: &str| build.get(key).and_then(toml::Value::as_str).filter(|s| !s.trim().is_empty());
    let cmd = text("cmd").unwrap_or("go build -o ./tmp/main .");
    let mut program = text("full_bin").or(text("bin")).map_or_else(|| "./tmp/main".to_owned(), server_words);
    // full_bin may set variables first (`APP_ENV=dev ./tmp/main`): env(1) does that after --.
    if program.split_whitespace().next().is_some_and(|w| w.contains('=')) {
        program.insert_str(0, "env ");
    }
    if let Some(args) = build.get("args_bin").and_then(toml::Value::as_array) {
        for arg in args.iter().filter_map(toml::Value::as_str) {
            program.push(' ');
            program.push_str(&shell_word(arg));
        }
    }
    format!(
        "that is air's configuration; devserve reads devserve.toml (devserve init writes one), \
         or takes the same on its command line: devserve -b {} -- {program}",
        single_quoted(cmd)
    )
}

/// The program `cargo build` makes in this folder (`target/debug/NAME`): the package's binary,
/// named by `--bin` or found by `cargo metadata --no-deps` when there is a Cargo.toml here and
/// cargo answers within a second; else the literal `NAME`.
fn cargo_program(bin: Option<&str>, profile: &str) -> String {
    let metadata = Path::new("Cargo.toml").is_file().then(cargo_metadata_quickly).flatten();
    let target = metadata
        .as_ref()
        .map(|m| {
            let target = m.target_directory.as_std_path();
            let here = std::env::current_dir().ok().and_then(|d| d.canonicalize().ok());
            here.and_then(|here| target.strip_prefix(here).ok().map(Path::to_path_buf))
                .unwrap_or_else(|| target.to_path_buf())
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    let name = bin.map(str::to_owned).or_else(|| {
        let metadata = metadata.as_ref()?;
        let here = std::env::current_dir().ok()?.join("Cargo.toml");
        let package = metadata
            .packages
            .iter()
            .find(|p| p.manifest_path.as_std_path() == here)
            .or_else(|| metadata.root_package())?;
        let bins: Vec<&str> =
            package.targets.iter().filter(|t| t.is_bin()).map(|t| t.name.as_str()).collect();
        // As zero-config picks it (`detect`): default-run, the only binary, the package's namesake.
        match (bins.as_slice(), &package.default_run) {
            (_, Some(default)) => Some(default.clone()),
            ([only], None) => Some((*only).to_owned()),
            _ => bins.contains(&package.name.as_str()).then(|| package.name.to_string()),
        }
    });
    let path = target.join(profile).join(name.as_deref().unwrap_or("NAME"));
    shell_word(&path.to_string_lossy()).into_owned()
}

/// `cargo metadata --no-deps --offline`, given a second: on the way to a usage error, a slow
/// cargo (a toolchain to install, a locked build directory) is not worth waiting for.
fn cargo_metadata_quickly() -> Option<cargo_metadata::Metadata> {
    use std::io::Read;
    use std::process::Stdio;
    let mut command = cargo_metadata::MetadataCommand::new();
    command.no_deps().other_options(vec!["--offline".to_owned()]);
    let mut command = command.cargo_command();
    command.env("RUSTUP_AUTO_INSTALL", "0").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = sender.send(stdout.read_to_string(&mut text).map(|_| text));
    });
    let answer = receiver.recv_timeout(Duration::from_secs(1));
    if answer.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().ok()?;
    let text = answer.ok()?.ok()?;
    status.success().then(|| cargo_metadata::MetadataCommand::parse(text).ok()).flatten()
}

impl Cli {
    /// True for the invocations that print something and exit without running a server.
    pub fn completions_or_man(&self) -> bool {
        self.completions.is_some() || self.man
    }
}

/// Parses `KEY=VALUE` for `--env`.
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) => {
            check_env(key, value)?;
            Ok((key.to_owned(), value.to_owned()))
        }
        None => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// The rules for an extra environment entry, from `--env` or the config file's `[env]`: a
/// non-empty name without `=` or NUL, a value without NUL, and none of the names devserve sets
/// itself (the activation variables and `DEVSERVE_ADDR`).
pub fn check_env(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(format!("`{}` is not a variable name (empty, or has `=` or NUL)", key.escape_debug()));
    }
    if value.contains('\0') {
        return Err(format!("the value of {key} contains a NUL byte"));
    }
    if crate::spawn::ACTIVATION_VARS.contains(&key) || key == "DEVSERVE_ADDR" {
        return Err(format!("{key} is set by devserve itself and cannot be overridden"));
    }
    Ok(())
}

/// Parses `--allowed-host`: `all`, a host name (`dev.test`), or a suffix with a leading dot
/// (`.example.test`); letters, digits, `-`, `_` and `.`, lowercased. No port: any port is allowed.
pub fn parse_allowed_host(text: &str) -> Result<String, String> {
    let name = text.trim().to_ascii_lowercase();
    let body = name.strip_prefix('.').unwrap_or(&name);
    let valid = !body.is_empty()
        && body.len() <= 253
        && !body.starts_with('.')
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "`{}` is not a host name; use e.g. dev.test, .example.test (and its subdomains) or all",
            text.escape_debug()
        ))
    }
}

/// Parses `--ready-path`: an absolute path, printable, no spaces (`/health`, `/ready?deep=1`).
pub fn parse_ready_path(text: &str) -> Result<String, String> {
    let ok = text.starts_with('/') && text.chars().all(|c| c.is_ascii_graphic());
    if ok && text.parse::<hyper::Uri>().is_ok() {
        Ok(text.to_owned())
    } else {
        Err(format!("`{}` is not a request path; use e.g. /health", text.escape_debug()))
    }
}

/// Parses `-n`: 1 to 1024, or `auto` / `0` for one worker per CPU this process may use (its
/// affinity mask and cgroup CPU quota, as nginx's `worker_processes auto`).
/// `--build-jobs`: 1 to 64, or `auto` (1 with 4 CPUs or fewer, else 2).
pub fn parse_build_jobs(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if text == "auto" {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        return Ok(if cpus <= 4 { 1 } else { 2 });
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` is not a number of builds; use 1 to 64, or auto")),
    }
}

pub fn parse_workers(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if text == "auto" || text == "0" {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        return Ok(u32::try_from(cpus).unwrap_or(1024).clamp(1, 1024));
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} is not in 1..=1024 (or auto)")),
        Err(_) => Err(format!("`{text}` is not a worker count; use 1 to 1024, or auto")),
    }
}

/// The longest duration any setting takes: a day is "never" for a dev loop, and keeps every
/// deadline devserve computes far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `250ms`, `2s`, `1m`, `1m30s` (humantime syntax; a unit is required), at most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|_| format!("`{text}` is not a duration; use e.g. 250ms, 2s or 1m"))?;
    if duration > MAX_DURATION {
        return Err(format!("`{text}` is too long; the maximum is 24h"));
    }
    Ok(duration)
}

/// Parses `TERM`, `SIGTERM`, `term` or `15`: a signal that ends a process. STOP, CONT, TSTP,
/// TTIN and TTOU only pause or resume one, so a worker would never drain: refused.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let bad = || format!("`{text}` is not a signal; use e.g. TERM, SIGTERM or 15");
    let trimmed = text.trim();
    let signal = if let Ok(number) = trimmed.parse::<i32>() {
        Signal::try_from(number).map_err(|_| bad())?
    } else {
        let upper = trimmed.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        full.parse::<Signal>().map_err(|_| bad())?
    };
    use Signal::{SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU};
    if matches!(signal, SIGSTOP | SIGCONT | SIGTSTP | SIGTTIN | SIGTTOU) {
        return Err(format!(
            "`{text}` pauses or resumes a process instead of stopping it; use e.g. TERM or INT"
        ));
    }
    Ok(signal)
}

/// A file that may not exist yet, in a directory that must: absolute, symlinks of the
/// directory resolved (so it matches the paths the watcher reports).
pub fn absolute_file(path: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok(parent.canonicalize()?.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The declaration (the `@setting` fields) and the documents agree: every setting has its
    /// row in the book's flag table (docs/src/command-line.md) with its default, its key in the
    /// book's TOML block (docs/src/configuration.md) and in `devserve.example.toml`; and those
    /// documents name no key or flag that does not exist.
    #[test]
    fn docs_agree() {
        use clap::CommandFactory;
        let command_line = include_str!("../docs/src/command-line.md");
        let configuration = include_str!("../docs/src/configuration.md");
        let example = include_str!("../devserve.example.toml");
        // A chapter's section: from its title (the chapter's `# ` heading) to the next `## `.
        let section = |chapter: &'static str, title: &str| -> &'static str {
            let start = chapter.find(title).unwrap_or_else(|| panic!("the book has {title:?}"));
            let rest = &chapter[start + title.len()..];
            &rest[..rest.find("\n## ").unwrap_or(rest.len())]
        };
        // The flag table: the rows of the tables headed `| Flag | Default | Meaning |` (one per
        // topic of --help), not those of the other tables (the flags of other tools).
        let mut in_flag_table = false;
        let flag_table: Vec<&str> = section(command_line, "# Command line\n")
            .lines()
            .filter(|l| {
                in_flag_table = l.starts_with('|') && (in_flag_table || *l == "| Flag | Default | Meaning |");
                in_flag_table && l.starts_with("| `")
            })
            .collect();
        let config_section = section(configuration, "# Configuration file\n");
        let toml_start = config_section.find("```toml").expect("a TOML block") + 7;
        let toml_block = &config_section[toml_start..];
        let toml_block = &toml_block[..toml_block.find("```").expect("closed")];
        let keys_in = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| l.trim_start_matches("# ").trim())
                .take_while(|l| !l.starts_with("[env]"))
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_owned()))
                .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .collect()
        };
        let command = Cli::command();
        let declared: Vec<String> = SETTINGS.iter().map(|s| s.key(&command)).collect();
        for setting in SETTINGS {
            let key = setting.key(&command);
            let table_key = if key == "env" { "[env]".to_owned() } else { format!("{key} = ") };
            assert!(toml_block.contains(&table_key), "docs/src/configuration.md's TOML block lacks `{key}`");
            assert!(example.contains(&table_key), "devserve.example.toml lacks `{key}`");
            let arg = command.get_arguments().find(|a| a.get_id() == setting.id).expect("declared arg");
            let Some(long) = arg.get_long() else { continue };
            let row = flag_table
                .iter()
                .find(|row| row.split('|').nth(1).is_some_and(|cell| cell.contains(&format!("--{long}"))))
                .unwrap_or_else(|| panic!("docs/src/command-line.md has no row for --{long}"));
            for default in arg.get_default_values() {
                let default = default.to_string_lossy();
                assert!(
                    row.contains(&format!("`{default}`")),
                    "docs/src/command-line.md's row for --{long} says its default {default}"
                );
            }
        }
        for key in keys_in(toml_block).into_iter().chain(keys_in(example)) {
            assert!(key == "command" || declared.contains(&key), "documented key `{key}` is not a setting");
        }
        let longs: Vec<&str> = command.get_arguments().filter_map(|a| a.get_long()).collect();
        for row in &flag_table {
            let cell = row.split('|').nth(1).unwrap_or_default();
            for word in cell.split(['`', ' ', ',', '<']).filter(|w| w.starts_with("--")) {
                let flag = word.trim_start_matches("--");
                let known = longs.contains(&flag) || ["help", "version", "no-listen-pid"].contains(&flag);
                assert!(known, "docs/src/command-line.md documents --{flag}, which does not exist");
            }
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("18446744073709551615s").is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGINT"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("hup"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("15"), Ok(Signal::SIGTERM));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
        assert!(parse_signal("STOP").is_err());
        assert!(parse_signal("SIGCONT").is_err());
        assert!(parse_signal("19").is_err());
    }

    #[test]
    fn peer_flags_get_a_hint() {
        // The program cargo builds, as `cargo_program` would name it in a package `app`.
        let program = |bin: Option<&str>, profile: &str| format!("target/{profile}/{}", bin.unwrap_or("app"));
        let hint = |args: &[&str]| {
            let args: Vec<OsString> =
                std::iter::once("devserve").chain(args.iter().copied()).map(Into::into).collect();
            peer_flag_hint_with(&args, &program)
        };
        let check =
            |args: &[&str], expected: &str| assert_eq!(hint(args).as_deref(), Some(expected), "{args:?}");
        let plain = "(plain devserve runs a cargo project with no arguments)";
        let run = "cargo run is the server and never finishes, so build with -b and run the program after --";
        let step = "devserve runs the build step given with -b, and the server after --";
        let server = "devserve runs the server given after --";
        let built = "devserve -b 'cargo build' -- target/debug/app";
        check(&["--delay", "1s"], "--delay 1s: devserve calls it --debounce DUR (e.g. --debounce 200ms)");
        check(&["-x", "run"], &format!("-x run: {run}: {built} {plain}"));
        check(&["-x", "cargo run"], &format!("-x 'cargo run': {run}: {built} {plain}"));
        check(&["--exec=run"], &format!("--exec run: {run}: {built} {plain}"));
        check(
            &["-x", "run --release --bin api -- --port 3000"],
            &format!(
                "-x 'run --release --bin api -- --port 3000': {run}: \
                 devserve -b 'cargo build --release --bin api' -- target/release/api --port 3000 {plain}"
            ),
        );
        check(
            &["-x", "check", "-x", "run"],
            &format!(
                "-x check -x run: {run}: devserve -b 'cargo check && cargo build' -- target/debug/app {plain}"
            ),
        );
        check(&["-x", "check"], &format!("-x check: {step}: devserve -b 'cargo check' -- COMMAND"));
        check(
            &["-x", "check", "--", "./srv", "-p", "1"],
            &format!("-x check: {step}: devserve -b 'cargo check' -- ./srv -p 1"),
        );
        check(&["-x", "build"], &format!("-x build: {step}: {built}"));
        check(
            &["--exec", "python3 app.py"],
            &format!("--exec 'python3 app.py': {server}: devserve -- python3 app.py"),
        );
        check(
            &["--exec", "node app.js | tee log"],
            &format!("--exec 'node app.js | tee log': {server}: devserve -- sh -c 'node app.js | tee log'"),
        );
        check(&["-s", "cargo build"], &format!("-s 'cargo build': {step}: {built}"));
        check(
            &["-s", "make assets", "--", "./app"],
            "-s 'make assets': devserve's -s is --signal; a build command is the build step: \
             devserve -b 'make assets' -- ./app",
        );
        check(
            &["--shell", "echo it's on"],
            &format!(r"--shell 'echo it'\''s on': {server}: devserve -- sh -c 'echo it'\''s on'"),
        );
        check(
            &["-r", "--", "app"],
            "-r: devserve always replaces the server on a change (the old one drains); drop -r",
        );
        check(
            &["--postpone"],
            "--postpone: devserve always starts the server at once; there is no --postpone",
        );
        check(&["-p"], "-p: devserve calls it --poll [DUR] (default 500ms)");
        check(
            &["--signal", "SIGTERM"],
            "--signal SIGTERM: to choose the signal that stops workers use --stop-signal SIGTERM; \
             devserve's --signal controls a running devserve (reload, stop, quit, status)",
        );
        assert!(
            hint(&["-c", "nothere/.air.toml"])
                .is_some_and(|h| h.ends_with("-b 'go build -o ./tmp/main .' -- ./tmp/main"))
        );
        let dir = std::env::temp_dir().join(format!("devserve-air-hint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join(".air.toml");
        std::fs::write(
            &file,
            "[build]\nfull_bin = \"APP_ENV=dev ./tmp/main\"\nargs_bin = [\"-p\", \"8 0\"]\n",
        )
        .expect("write");
        let said = hint(&["-c", file.to_str().expect("utf-8")]);
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(said.is_some_and(|h| {
            h.ends_with("-b 'go build -o ./tmp/main .' -- env APP_ENV=dev ./tmp/main -p '8 0'")
        }));
        assert!(hint(&["-c", "my.toml"]).is_none(), "devserve's own -c");
        assert!(hint(&["-c", "repair.toml"]).is_none(), "only air's file names");
        assert!(hint(&["--signal", "reload"]).is_none(), "devserve's own --signal");
        assert!(hint(&["-s", "status"]).is_none(), "devserve's own -s");
        assert!(hint(&["--", "app", "-r"]).is_none(), "the app's own flags are not devserve's");
    }

    #[test]
    fn air_config_is_refused_by_name() {
        assert!(parse_config_path(".air.toml").is_err());
        assert!(parse_config_path("conf/air.toml").is_err());
        assert!(parse_config_path("dev.air.toml").is_err());
        assert_eq!(parse_config_path("devserve.toml"), Ok(PathBuf::from("devserve.toml")));
        assert!(parse_config_path("repair.toml").is_ok());
    }

    #[test]
    fn clap_errors_keep_their_tips_on_one_line() {
        let text = "error: unexpected argument '--ext' found\n\n\
                    \x20 tip: a similar argument exists: '--exts'\n\
                    \x20 tip: to pass '--ext' as a value, use '-- --ext'\n\n\
                    Usage: devserve --exts <LIST>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(text),
            "error: unexpected argument '--ext' found; a similar argument exists: '--exts' (see --help)"
        );
        let text = "error: the following required arguments were not provided:\n  <COMMAND>...\n\nUsage: x\n";
        assert_eq!(
            one_line(text),
            "error: the following required arguments were not provided: <COMMAND>... (see --help)"
        );
        assert_eq!(one_line(""), "invalid arguments (see --help)");
    }

    #[test]
    fn allowed_hosts() {
        assert_eq!(parse_allowed_host("Dev.Test"), Ok("dev.test".into()));
        assert_eq!(parse_allowed_host(".example.test"), Ok(".example.test".into()));
        assert_eq!(parse_allowed_host("all"), Ok("all".into()));
        for bad in ["", ".", "..a", "a b", "dev.test:8080", "http://dev.test", "[::1]"] {
            assert!(parse_allowed_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ready_paths() {
        assert_eq!(parse_ready_path("/health"), Ok("/health".into()));
        assert!(parse_ready_path("/ready?deep=1").is_ok());
        assert!(parse_ready_path("health").is_err());
        assert!(parse_ready_path("/a b").is_err());
        assert!(parse_ready_path("/a\nb").is_err());
    }

    #[test]
    fn worker_counts() {
        assert_eq!(parse_workers("4"), Ok(4));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        assert_eq!(parse_workers("auto"), Ok(cpus));
        assert_eq!(parse_workers("0"), Ok(cpus));
        assert!(parse_workers("1025").is_err());
        assert!(parse_workers("many").is_err());
    }

    #[test]
    fn env_entries() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("noequals").is_err());
        assert!(parse_env("NOTIFY_SOCKET=/x").is_err());
        assert!(parse_env("DEVSERVE_GENERATION=3").is_err());
        assert!(parse_env("LISTEN_FDS=1").is_err());
        assert!(check_env("A=B", "x").is_err());
        assert!(check_env("A", "x\0").is_err());
    }
}
