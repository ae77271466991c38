//! The configuration: `devserve.toml` (or `--config PATH`) merged under the command line, and
//! validated into the [`Config`] devserve runs with.
//!
//! Contract:
//! - The file may hold every command-line option, under the flag's long name (`ready-delay`,
//!   `touch-reload`, …), plus `command` (an array), `env` (a table) and the booleans
//!   `vcs-ignore` / `listen-pid` (the positive forms of `--no-vcs-ignore` / `--no-pid`).
//!   Unknown keys are errors. Relative paths are relative to the directory devserve runs in.
//! - A flag given on the command line wins over the file; lists given on the command line
//!   replace the file's list; `env` entries merge, the command line winning per key.
//! - Validation collects every problem, each one line; problems in the file carry
//!   `file:line:col`. `devserve check` prints them all; a start stops at them; a live reload of
//!   the file keeps the running config and prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use nix::sys::signal::Signal;
use serde::Deserialize;
use toml::Spanned;

use crate::cli::{self, Cli};
use crate::output::LogFormat;
use crate::sockets::{ListenSpec, parse_listen};
use crate::spawn::Command;
use crate::watch::WatchConfig;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "devserve.toml";
/// A configuration file larger than this is refused (it is not a devserve.toml).
const MAX_FILE: u64 = 1024 * 1024;

/// Where in the configuration file a problem is: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// One thing wrong with the configuration, located in the file when the file said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Option<Location>,
    pub message: String,
}

impl Problem {
    fn plain(message: impl Into<String>) -> Problem {
        Problem { location: None, message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The validated settings devserve runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub watch: WatchConfig,
    pub build: Option<String>,
    pub listen: Vec<ListenSpec>,
    pub command: Vec<OsString>,
    /// Extra environment for workers and the build.
    pub env: Vec<(String, String)>,
    pub workers: u32,
    pub listen_pid: bool,
    pub ready_delay: Duration,
    pub ready_timeout: Duration,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub max_restarts: u32,
    pub rolling: bool,
    pub pidfile: Option<PathBuf>,
    pub clear: bool,
    pub once: bool,
    pub probe: Option<String>,
    pub probe_timeout: Duration,
    pub log_format: LogFormat,
    pub quiet: bool,
    /// The configuration file in use, watched for live reloads.
    pub file: Option<PathBuf>,
    /// Where the file's `listen` key is, for errors found when binding.
    pub listen_location: Option<Location>,
}

impl Config {
    /// Whether going from `self` to `new` needs a new generation (what workers are, or get).
    pub fn needs_new_generation(&self, new: &Config) -> bool {
        self.build != new.build
            || self.command != new.command
            || self.env != new.env
            || self.workers != new.workers
            || self.listen_pid != new.listen_pid
            || self.listen != new.listen
    }
}

/// Everything needed to (re)build the [`Config`]: the command line as parsed, which of its
/// options were given explicitly, and the file to read.
#[derive(Debug, Clone)]
pub struct Loader {
    cli: Cli,
    explicit: BTreeSet<String>,
    file: Option<PathBuf>,
}

impl Loader {
    pub fn new(cli: Cli, matches: &ArgMatches) -> Loader {
        let explicit = matches
            .ids()
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.as_str().to_owned())
            .collect();
        // A dangling or looping symlink named devserve.toml is read (and reported), not skipped.
        let file = cli.config.clone().or_else(|| {
            let default = PathBuf::from(DEFAULT_FILE);
            std::fs::symlink_metadata(&default).is_ok().then_some(default)
        });
        Loader { cli, explicit, file }
    }

    /// Reads the file (if any), merges and validates. `Err` lists every problem, those in the
    /// file in line order, then the others.
    pub fn load(&self) -> Result<Config, Vec<Problem>> {
        let file = match &self.file {
            Some(path) => Some(FileSettings::read(path).map_err(|p| vec![p])?),
            None => None,
        };
        let mut problems = Vec::new();
        let config = self.merge(file.as_ref(), &mut problems);
        problems.sort_by(|a, b| match (&a.location, &b.location) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        if problems.is_empty() { Ok(config) } else { Err(problems) }
    }

    fn given(&self, id: &str) -> bool {
        self.explicit.contains(id)
    }

    /// The command line over the file; every parse or check failure goes into `problems`.
    fn merge(&self, file: Option<&FileSettings>, problems: &mut Vec<Problem>) -> Config {
        let cli = &self.cli;
        let empty = FileSettings::default();
        let f = file.unwrap_or(&empty);
        let at = |span: &Range<usize>, message: String| f.locate(span, message);

        macro_rules! pick {
            ($id:literal, $cli:expr, $file:expr, $parse:expr) => {
                match (&$file, self.given($id)) {
                    (Some(value), false) => match $parse(value.get_ref()) {
                        Ok(parsed) => parsed,
                        Err(e) => {
                            problems.push(at(&value.span(), format!("{}: {e}", $id.replace('_', "-"))));
                            $cli
                        }
                    },
                    _ => $cli,
                }
            };
        }

        let watch: Vec<PathBuf> = pick!("watch", cli.watch.clone(), f.watch, same);
        let mut roots: Vec<PathBuf> = Vec::new();
        for path in &watch {
            match path.canonicalize() {
                // The same folder named twice is watched once.
                Ok(root) if roots.contains(&root) => {}
                Ok(root) => roots.push(root),
                Err(e) => {
                    let message = if e.raw_os_error() == Some(libc::ELOOP) {
                        format!("watch path is a symlink loop: {}", path.display())
                    } else {
                        format!("watch path does not exist: {}", path.display())
                    };
                    problems.push(self.blame("watch", &f.watch, message, f));
                }
            }
        }
        let ignore: Vec<String> = pick!("ignore", cli.ignore.clone(), f.ignore, same);
        for glob in &ignore {
            if let Err(e) = globset::Glob::new(glob) {
                problems.push(self.blame(
                    "ignore",
                    &f.ignore,
                    format!("invalid ignore glob `{glob}`: {}", e.kind()),
                    f,
                ));
            }
        }
        let touch_paths: Vec<PathBuf> = pick!("touch_reload", cli.touch_reload.clone(), f.touch_reload, same);
        let mut touch = Vec::new();
        for path in &touch_paths {
            match cli::absolute_file(path) {
                Ok(file) => touch.push(file),
                Err(e) => problems.push(self.blame("touch_reload", &f.touch_reload, e, f)),
            }
        }
        let listen_texts: Option<Vec<String>> = f.listen.as_ref().map(|l| l.get_ref().clone());
        let listen = match (&f.listen, self.given("listen")) {
            (Some(spanned), false) => listen_texts
                .unwrap_or_default()
                .iter()
                .filter_map(|text| match parse_listen(text) {
                    Ok(spec) => Some(spec),
                    Err(e) => {
                        problems.push(at(&spanned.span(), format!("listen: {e}")));
                        None
                    }
                })
                .collect(),
            _ => cli.listen.clone(),
        };
        let command: Vec<OsString> = match (&f.command, self.given("command")) {
            (Some(spanned), false) => {
                if spanned.get_ref().is_empty() {
                    problems.push(at(&spanned.span(), "command: needs at least the program".into()));
                }
                spanned.get_ref().iter().map(OsString::from).collect()
            }
            _ => cli.command.clone(),
        };
        if command.is_empty() && cli.signal.is_none() && !cli.completions_or_man() {
            problems.push(Problem::plain(
                "missing COMMAND: give it after `--` or as `command = [...]` in the config file",
            ));
        }
        let build: Option<String> =
            pick!("build", cli.build.clone(), f.build, |v: &String| Ok::<_, String>(Some(v.clone())));
        if build.as_deref().is_some_and(|b| b.trim().is_empty()) {
            problems.push(self.blame("build", &f.build, "build: needs a command".into(), f));
        }
        if let Some(table) = &f.env {
            for (key, value) in table.get_ref() {
                if let Err(e) = cli::check_env(key, value) {
                    problems.push(at(&table.span(), format!("env: {e}")));
                }
            }
        }
        let env = merge_env(f.env.as_ref().map(Spanned::get_ref), &cli.env);
        let probe: Option<String> =
            pick!("probe", cli.probe.clone(), f.probe, |v: &String| Ok::<_, String>(Some(v.clone())));
        if probe.as_deref().is_some_and(|p| p.trim().is_empty()) {
            problems.push(self.blame("probe", &f.probe, "probe: needs a command".into(), f));
        }

        let config = Config {
            watch: WatchConfig {
                roots,
                touch,
                exts: pick!("exts", cli.exts.clone(), f.exts, same),
                ignore,
                vcs_ignore: pick!("no_vcs_ignore", !cli.no_vcs_ignore, f.vcs_ignore, same),
                debounce: pick!("debounce", cli.debounce, f.debounce, |v: &String| cli::parse_duration(v)),
                config_file: self.file.as_ref().and_then(|p| cli::absolute_file(p).ok()),
            },
            build,
            listen,
            command,
            env,
            workers: pick!("workers", cli.workers, f.workers, |v: &u32| if (1..=1024).contains(v) {
                Ok(*v)
            } else {
                Err(format!("{v} is not in 1..=1024"))
            }),
            listen_pid: pick!("no_pid", !cli.no_pid, f.listen_pid, same),
            ready_delay: pick!("ready_delay", cli.ready_delay, f.ready_delay, |v: &String| {
                cli::parse_duration(v)
            }),
            ready_timeout: pick!("ready_timeout", cli.ready_timeout, f.ready_timeout, |v: &String| {
                cli::parse_duration(v)
            }),
            stop_signal: pick!(
                "stop_signal",
                cli.stop_signal,
                f.stop_signal,
                |v: &String| cli::parse_signal(v)
            ),
            stop_timeout: pick!("stop_timeout", cli.stop_timeout, f.stop_timeout, |v: &String| {
                cli::parse_duration(v)
            }),
            max_restarts: pick!("max_restarts", cli.max_restarts, f.max_restarts, same),
            rolling: pick!("rolling", cli.rolling, f.rolling, same),
            pidfile: pick!("pidfile", cli.pidfile.clone(), f.pidfile, |v: &PathBuf| Ok::<_, String>(Some(
                v.clone()
            ))),
            clear: pick!("clear", cli.clear, f.clear, same),
            once: cli.once,
            probe,
            probe_timeout: pick!("probe_timeout", cli.probe_timeout, f.probe_timeout, |v: &String| {
                cli::parse_duration(v)
            }),
            log_format: pick!("log_format", cli.log_format, f.log_format, |v: &String| {
                <LogFormat as clap::ValueEnum>::from_str(v, true)
                    .map_err(|_| format!("`{v}` is not human or json"))
            }),
            quiet: cli.quiet > 0,
            file: self.file.clone(),
            listen_location: match (&f.listen, self.given("listen")) {
                (Some(spanned), false) => f.locate(&spanned.span(), String::new()).location,
                _ => None,
            },
        };
        check_command(&config, &f.command, f, problems);
        config
    }

    /// A problem about `key`: located in the file when the file set it, else plain.
    fn blame<T>(&self, id: &str, value: &Option<Spanned<T>>, message: String, f: &FileSettings) -> Problem {
        match value {
            Some(spanned) if !self.given(id) => f.locate(&spanned.span(), message),
            _ => Problem::plain(message),
        }
    }
}

/// A file value taken as it is.
fn same<T: Clone>(value: &T) -> Result<T, String> {
    Ok(value.clone())
}

/// Without a build step the command must exist now; with one, the build may create it. An
/// empty program name is wrong either way.
fn check_command(
    config: &Config,
    spanned: &Option<Spanned<Vec<String>>>,
    f: &FileSettings,
    problems: &mut Vec<Problem>,
) {
    let Some(program) = config.command.first() else { return };
    if config.build.is_some() && !program.is_empty() {
        return;
    }
    if let Err(e) = Command::new(program).resolve() {
        problems.push(match spanned {
            Some(s) => f.locate(&s.span(), e.to_string()),
            None => Problem::plain(e.to_string()),
        });
    }
}

/// The file's env table under the command line's `--env KEY=VALUE`, sorted by key.
fn merge_env(file: Option<&BTreeMap<String, String>>, cli: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = file.cloned().unwrap_or_default();
    env.extend(cli.iter().cloned());
    env.into_iter().collect()
}

/// `devserve.toml` as written: every field optional, spans kept for error messages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    command: Option<Spanned<Vec<String>>>,
    watch: Option<Spanned<Vec<PathBuf>>>,
    exts: Option<Spanned<Vec<String>>>,
    ignore: Option<Spanned<Vec<String>>>,
    vcs_ignore: Option<Spanned<bool>>,
    debounce: Option<Spanned<String>>,
    build: Option<Spanned<String>>,
    listen: Option<Spanned<Vec<String>>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    workers: Option<Spanned<u32>>,
    listen_pid: Option<Spanned<bool>>,
    ready_delay: Option<Spanned<String>>,
    ready_timeout: Option<Spanned<String>>,
    stop_signal: Option<Spanned<String>>,
    stop_timeout: Option<Spanned<String>>,
    max_restarts: Option<Spanned<u32>>,
    rolling: Option<Spanned<bool>>,
    touch_reload: Option<Spanned<Vec<PathBuf>>>,
    pidfile: Option<Spanned<PathBuf>>,
    clear: Option<Spanned<bool>>,
    probe: Option<Spanned<String>>,
    probe_timeout: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    text: String,
}

impl FileSettings {
    fn read(path: &Path) -> Result<FileSettings, Problem> {
        let text = read_config_text(path).map_err(|e| Problem::plain(format!("{}: {e}", path.display())))?;
        let mut settings: FileSettings = toml::from_str(&text).map_err(|e| {
            let message = e.message().trim().to_owned();
            match e.span() {
                Some(span) => locate(path, &text, &span, message),
                None => Problem::plain(format!("{}: {message}", path.display())),
            }
        })?;
        settings.path = path.to_path_buf();
        settings.text = text;
        Ok(settings)
    }

    fn locate(&self, span: &Range<usize>, message: String) -> Problem {
        locate(&self.path, &self.text, span, message)
    }
}

/// The file's text: a regular file (symlinks followed, but a dangling or looping one is an
/// error), at most [`MAX_FILE`] bytes. A FIFO or a device is refused before it is opened, so a
/// FIFO cannot hang devserve.
fn read_config_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symlink loop".to_owned(),
            Some(libc::ENOENT) if link => "is a symlink to nothing (dangling)".to_owned(),
            _ => format!("cannot read: {e}"),
        }
    })?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("is too large ({} bytes; at most {MAX_FILE})", meta.len()));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(|e| format!("cannot read: {e}"))?;
    Ok(text)
}

/// A problem at a byte span of the file: 1-based line and column.
fn locate(path: &Path, text: &str, span: &Range<usize>, message: String) -> Problem {
    let before = text.get(..span.start.min(text.len())).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Problem { location: Some(Location { file: path.to_path_buf(), line, col }), message }
}

/// What `devserve check` prints: the settings devserve would run with.
pub fn describe(config: &Config) -> String {
    let mut text = String::new();
    let file = config.file.as_ref().map_or("none".into(), |p| p.display().to_string());
    let _ = writeln!(text, "config file: {file}");
    let roots: Vec<String> = config.watch.roots.iter().map(|p| p.display().to_string()).collect();
    let _ = writeln!(text, "watch: {}", roots.join(", "));
    if !config.watch.exts.is_empty() {
        let _ = writeln!(text, "extensions: {}", config.watch.exts.join(", "));
    }
    if !config.watch.ignore.is_empty() {
        let _ = writeln!(text, "ignore: {}", config.watch.ignore.join(", "));
    }
    let _ = writeln!(text, "build: {}", config.build.as_deref().unwrap_or("none"));
    let listen: Vec<String> = config.listen.iter().map(|l| l.addr.to_string()).collect();
    let _ = writeln!(
        text,
        "listen: {}",
        if listen.is_empty() { "none (restart mode)".into() } else { listen.join(", ") }
    );
    let command: Vec<String> = config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let _ = writeln!(text, "command: {}", command.join(" "));
    for (key, value) in &config.env {
        let _ = writeln!(text, "env: {key}={value}");
    }
    let _ = writeln!(
        text,
        "workers: {}{} · ready-delay {} · ready-timeout {} · stop {} after {}",
        config.workers,
        if config.rolling { " (rolling)" } else { "" },
        humantime::format_duration(config.ready_delay),
        humantime::format_duration(config.ready_timeout),
        config.stop_signal.as_str(),
        humantime::format_duration(config.stop_timeout)
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn load(args: &[&str], file_text: &str) -> Result<Config, Vec<String>> {
        load_problems(args, file_text).map_err(|problems| problems.iter().map(ToString::to_string).collect())
    }

    fn load_problems(args: &[&str], file_text: &str) -> Result<Config, Vec<Problem>> {
        let dir =
            std::env::temp_dir().join(format!("devserve-config-test-{}-{}", std::process::id(), args.len()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("t{}.toml", file_text.len()));
        std::fs::write(&path, file_text).expect("write config");
        let mut argv = vec!["devserve", "--config", path.to_str().expect("utf-8")];
        argv.extend_from_slice(args);
        let matches = Cli::command().try_get_matches_from(argv).expect("parse");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        Loader::new(cli, &matches).load()
    }

    #[test]
    fn the_file_fills_in_and_the_command_line_wins() {
        let text =
            "command = [\"true\"]\nworkers = 3\nready-delay = \"2s\"\n[env]\nA = \"file\"\nB = \"file\"\n";
        let config = load(&["-n", "2", "--env", "B=cli"], text).expect("valid");
        assert_eq!(config.workers, 2, "the flag wins");
        assert_eq!(config.ready_delay, Duration::from_secs(2), "the file fills in");
        assert_eq!(config.command, vec![OsString::from("true")]);
        assert_eq!(config.env, vec![("A".into(), "file".into()), ("B".into(), "cli".into())]);
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let problems = load(&[], "command = [\"true\"]\nready-delay = \"soon\"\n").expect_err("bad duration");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].ends_with(":2:15: ready-delay: `soon` is not a duration; use e.g. 250ms, 2s or 1m"),
            "{problems:?}"
        );
        let problems = load(&[], "command = [\"true\"]\nwrkers = 2\n").expect_err("unknown key");
        assert!(problems[0].contains(":2:1: unknown field `wrkers`"), "{problems:?}");
        let problems = load(&[], "command = [\"true\"\n").expect_err("syntax");
        assert!(problems[0].contains(".toml:1:"), "{problems:?}");
    }

    #[test]
    fn problems_come_in_line_order_and_env_keys_are_checked() {
        let text = "command = [\"true\"]\nstop-timeout = \"x\"\n[env]\nNOTIFY_SOCKET = \"/x\"\n";
        let problems = load_problems(&["--stop-signal", "TERM"], text).expect_err("two problems");
        assert_eq!(problems.len(), 2, "{problems:?}");
        let lines: Vec<usize> = problems.iter().filter_map(|p| p.location.as_ref().map(|l| l.line)).collect();
        assert_eq!(lines, vec![2, 3], "{problems:?}");
        assert!(problems[1].message.contains("NOTIFY_SOCKET is set by devserve"), "{problems:?}");
        let problems = load(&[], "command = [\"true\"]\n[env]\n\"A=B\" = \"x\"\n").expect_err("bad key");
        assert!(problems[0].contains("is not a variable name"), "{problems:?}");
    }

    #[test]
    fn huge_durations_are_refused_with_the_maximum() {
        let problems =
            load(&[], "command = [\"true\"]\ndebounce = \"9000000000000000000s\"\n").expect_err("too long");
        assert!(problems[0].contains("the maximum is 24h"), "{problems:?}");
    }

    #[test]
    fn every_problem_is_listed() {
        let text =
            "command = [\"devserve-no-such-program\"]\nlisten = [\"nowhere\"]\nstop-signal = \"NOPE\"\n";
        let problems = load(&[], text).expect_err("three problems");
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
