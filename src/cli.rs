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

command_line! {
/// Rebuild and swap a server on every save, without ever refusing a connection.
#[derive(Parser, Debug, Clone)]
#[command(name = "devserve", version, about, long_about = None)]
#[command(
    after_help = "Signals: HUP reload · TERM/INT graceful stop (twice: kill now) · QUIT kill now\n         \
                        USR1 status · TTIN/TTOU one worker more/fewer"
)]
pub struct Cli {
    /// Path to watch, recursively (repeatable)
    #[arg(short = 'w', long = "watch", value_name = "PATH", default_value = ".")]
    @setting(AtOnce)
    pub watch: Vec<PathBuf>,

    /// Only changes to files with these extensions count, e.g. `rs,toml`
    #[arg(short = 'e', long = "exts", value_name = "LIST", value_delimiter = ',')]
    @setting(AtOnce)
    pub exts: Vec<String>,

    /// Ignore paths matching this glob (repeatable), e.g. `*.log` or `assets/**`
    #[arg(short = 'i', long = "ignore", value_name = "GLOB")]
    @setting(AtOnce)
    pub ignore: Vec<String>,

    /// Do not honour .gitignore, .ignore and .git/info/exclude
    #[arg(long = "no-vcs-ignore")]
    @setting(AtOnce, inverted = "vcs-ignore")
    pub no_vcs_ignore: bool,

    /// Poll for changes every DUR (default 500ms) instead of using file-system events: for network
    /// and VM shares and Docker bind mounts, where events do not arrive
    #[arg(long, value_name = "DUR", num_args = 0..=1, default_missing_value = "500ms", value_parser = parse_duration)]
    @setting(AtOnce)
    pub poll: Option<Duration>,

    /// Quiet period that folds a burst of file events into one change
    #[arg(long, value_name = "DUR", default_value = "50ms", value_parser = parse_duration)]
    @setting(AtOnce)
    pub debounce: Duration,

    /// Build command, run with `sh -c` before each new generation
    #[arg(short = 'b', long = "build", value_name = "CMD")]
    @setting(NextGeneration)
    pub build: Option<String>,

    /// Socket to hold and pass to workers (repeatable): `127.0.0.1:8080`, `[::1]:8080`,
    /// `:8080` (all interfaces), `unix:/path/app.sock`; prefix `NAME=` to set its LISTEN_FDNAMES entry
    #[arg(short = 'l', long = "listen", value_name = "ADDR", value_parser = parse_listen)]
    @setting(NextGeneration)
    pub listen: Vec<ListenSpec>,

    /// Front door: accept every connection on ADDR and route it to a ready generation's workers,
    /// each on a port of its own (`PORT`, `{port}` in COMMAND); `tcp:ADDR` for raw TCP
    #[arg(long, value_name = "ADDR", value_parser = parse_proxy, conflicts_with = "listen")]
    @setting(NextStart)
    pub proxy: Option<ProxySpec>,

    /// With --proxy, for an app whose port is fixed in its code: generations cannot overlap, so the
    /// old one stops first and requests are held until the new one is ready
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    @setting(NextGeneration)
    pub app_port: Option<u16>,

    /// With --proxy: a worker is ready when `GET PATH` on its port answers below 500 (default:
    /// when its port accepts a connection, or READY=1)
    #[arg(long, value_name = "PATH", value_parser = parse_ready_path)]
    @setting(AtOnce)
    pub ready_path: Option<String>,

    /// With --proxy: do not add the reload script to HTML pages (no reload after a swap, no overlay)
    #[arg(long)]
    @setting(NextStart, inverted = "browser-reload")
    pub no_browser_reload: bool,

    /// With --proxy: how long a request waits for a ready generation before a 503 that says why
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    @setting(NextStart)
    pub hold_timeout: Duration,

    /// With --proxy: also answer requests for this host name (repeatable; `.example.test` allows
    /// its subdomains too); `all` turns the DNS-rebinding and cross-site checks off
    #[arg(long = "allowed-host", value_name = "NAME", value_parser = parse_allowed_host)]
    @setting(NextStart, key = "allowed-hosts")
    pub allowed_hosts: Vec<String>,

    /// With --proxy: open the front door's address in the default browser once gen 1 is ready
    #[arg(long)]
    @setting(NextStart)
    pub open: bool,

    /// With --proxy: a request the app has not begun to answer within DUR gets a 504 (default:
    /// wait as long as the app takes, e.g. on a breakpoint)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    @setting(NextStart)
    pub upstream_timeout: Option<Duration>,

    /// Worker processes per generation (1 to 1024), or `auto` (also `0`): one per available CPU
    #[arg(short = 'n', long = "workers", value_name = "N", default_value = "1", value_parser = parse_workers)]
    @setting(NextGeneration)
    pub workers: u32,

    /// Leave LISTEN_PID out of the worker environment, for a wrapper that runs the app as its child
    /// (a script that does not `exec`); apps that insist on LISTEN_PID then find no sockets
    #[arg(long = "no-pid", alias = "no-listen-pid")]
    @setting(NextGeneration, inverted = "listen-pid")
    pub no_pid: bool,

    /// A worker that never sends READY=1 counts as ready once it has stayed up this long
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    @setting(AtOnce)
    pub ready_delay: Duration,

    /// A new generation not ready within this time is stopped; the old one keeps serving
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    @setting(AtOnce)
    pub ready_timeout: Duration,

    /// Signal that asks a worker to drain and exit: `TERM`, `SIGTERM` or `15`
    #[arg(long, value_name = "SIG", default_value = "TERM", value_parser = parse_signal)]
    @setting(AtOnce)
    pub stop_signal: Signal,

    /// Time a stopping worker gets before its whole process group is killed
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    @setting(AtOnce)
    pub stop_timeout: Duration,

    /// Kill and restart a ready worker that sends no WATCHDOG=1 for this long (sets WATCHDOG_USEC)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    @setting(NextGeneration)
    pub watchdog: Option<Duration>,

    /// Crashes in a row (a 10s run resets the count) after which a serving generation's
    /// workers are no longer restarted, until the next change or HUP
    #[arg(long, value_name = "N", default_value_t = 10)]
    @setting(AtOnce)
    pub max_restarts: u32,

    /// Swap even when a build leaves the program byte for byte as the serving generation runs it
    #[arg(long)]
    @setting(AtOnce)
    pub always_swap: bool,

    /// Swap one worker at a time: each new worker ready before the next old one stops
    #[arg(long)]
    @setting(AtOnce)
    pub rolling: bool,

    /// Also reload when FILE is touched, even outside the watched paths or ignored (repeatable)
    #[arg(long = "touch-reload", value_name = "FILE")]
    @setting(AtOnce)
    pub touch_reload: Vec<PathBuf>,

    /// Write devserve's pid here (atomically); removed at exit
    #[arg(long, value_name = "PATH")]
    @setting(NextStart)
    pub pidfile: Option<PathBuf>,

    /// Control the devserve named by --pidfile instead of starting one
    #[arg(short = 's', long = "signal", value_name = "ACTION")]
    pub signal: Option<ControlAction>,

    /// Extra environment for workers and the build (repeatable)
    #[arg(short = 'E', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    @setting(NextGeneration)
    pub env: Vec<(String, String)>,

    /// Configuration file [default: ./devserve.toml when it exists]
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Clear the screen before each reload
    #[arg(long)]
    @setting(AtOnce)
    pub clear: bool,

    /// CI smoke test: build, start one generation, wait until ready, run --probe, stop, exit
    #[arg(long)]
    pub once: bool,

    /// With --once: a shell command run once the generation is ready; its exit status decides
    /// (DEVSERVE_ADDR holds the first listen address)
    #[arg(long, value_name = "CMD")]
    @setting(AtOnce)
    pub probe: Option<String>,

    /// With --once: a probe still running after this long is killed and fails the run (exit 5)
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    @setting(AtOnce)
    pub probe_timeout: Duration,

    /// How devserve reports its own events
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Human)]
    @setting(NextStart)
    pub log_format: LogFormat,

    /// Print a shell completion script and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit
    #[arg(long, exclusive = true)]
    pub man: bool,

    /// Fewer devserve messages (-q: warnings and errors only)
    #[arg(short = 'q', long = "quiet", action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// More devserve messages (-v debug, -vv trace)
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,

    /// The server to run, with its arguments
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    @setting(NextGeneration)
    pub command: Vec<OsString>,
}
}

/// clap's message folded into one line, without the usage block that follows it.
pub fn one_line(text: &str) -> String {
    let message: Vec<&str> =
        text.lines().map(str::trim).take_while(|l| !l.is_empty() && !l.starts_with("Usage:")).collect();
    if message.is_empty() {
        "invalid arguments (see --help)".into()
    } else {
        format!("{} (see --help)", message.join(" "))
    }
}

/// For a command line clap refused: a one-line pointer to devserve's own way, when the user
/// reached for a flag of watchexec, cargo-watch, nodemon or air. Only words before `--` count.
pub fn peer_flag_hint(args: &[OsString]) -> Option<String> {
    let words: Vec<&str> = args.iter().skip(1).map_while(|a| a.to_str()).take_while(|a| *a != "--").collect();
    for (index, word) in words.iter().enumerate() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (*word, None),
        };
        let value = inline.or_else(|| words.get(index + 1).copied()).unwrap_or("CMD");
        let hint = match flag {
            "--delay" | "-d" => "devserve calls it --debounce DUR (e.g. --debounce 200ms)".to_owned(),
            "-x" | "--exec" => format!("devserve runs a build step with -b: -b 'cargo {value}'"),
            "-r" | "--restart" => {
                "devserve always replaces the server on a change (the old one drains); drop -r".to_owned()
            }
            "--postpone" => "devserve always starts the server at once; there is no --postpone".to_owned(),
            "-p" => "devserve calls it --poll [DUR] (default 500ms)".to_owned(),
            "--signal" | "-s" if parse_signal(value).is_ok() => format!(
                "to choose the signal that stops workers use --stop-signal {value}; \
                 devserve's --signal controls a running devserve (reload, stop, quit, status)"
            ),
            _ => continue,
        };
        return Some(format!("{word}: {hint}"));
    }
    None
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
        let flag_table: Vec<&str> =
            section(command_line, "# Command line\n").lines().filter(|l| l.starts_with("| `")).collect();
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
        let hint = |args: &[&str]| {
            let args: Vec<OsString> =
                std::iter::once("devserve").chain(args.iter().copied()).map(Into::into).collect();
            peer_flag_hint(&args)
        };
        assert!(hint(&["--delay", "1s"]).is_some_and(|h| h.contains("--debounce")));
        assert!(hint(&["-x", "check"]).is_some_and(|h| h.contains("-b 'cargo check'")));
        assert!(hint(&["-r", "--", "app"]).is_some_and(|h| h.contains("drop -r")));
        assert!(hint(&["--signal", "SIGTERM"]).is_some_and(|h| h.contains("--stop-signal SIGTERM")));
        assert!(hint(&["--signal", "reload"]).is_none(), "devserve's own --signal");
        assert!(hint(&["--", "app", "-r"]).is_none(), "the app's own flags are not devserve's");
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
