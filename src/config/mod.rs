//! The configuration: `devserve.toml` (or `--config PATH`) merged under the command line, and
//! validated into the [`Config`] devserve runs with.
//!
//! Contract:
//! - The file may hold every setting of the command line ([`cli::SETTINGS`]: the fields marked
//!   `@setting`), under the flag's long name (`ready-delay`, `touch-reload`, …), plus `command`
//!   (an array) and `env` (a table); `--no-vcs-ignore` / `--no-pid` are the positive booleans
//!   `vcs-ignore` / `listen-pid`. Unknown keys are errors. Relative paths are relative to the
//!   directory devserve runs in.
//! - The file is merged by turning its keys into the words of the command line and parsing the
//!   whole with clap: one parser per setting, the same errors, nothing declared twice. A flag
//!   given on the command line wins over the file; lists given on the command line replace the
//!   file's list; `env` entries merge, the command line winning per key.
//! - Validation collects every problem, each one line; problems in the file carry
//!   `file:line:col` ([`Location`]), in line order. `devserve check` prints them all; a start
//!   stops at them; a live reload of the file keeps the running config and prints them.
//! - The config file must be a regular file of at most 1 MiB; a dangling or looping symlink is
//!   an error, a FIFO or device is refused before it is opened.
//! - **Zero-config.** With no COMMAND on the command line and no `command` in the file, the
//!   folder is looked at ([`crate::detect`], once per run): a project it recognises gives the
//!   settings a file would hold, merged *under* the file and the command line (each of those
//!   still wins per key; a detected `proxy` gives way to a `listen` given anywhere). What was
//!   used, and where each value came from, is kept in [`Config::detected`]. A folder with nothing
//!   to run adds one line to the "missing COMMAND" problem: what was looked for, or why the
//!   project found is not run.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde::Deserialize;
use toml::Spanned;

mod env_file;
mod services;

pub use crate::cli::Apply;
use crate::cli::{self, Cli, SETTINGS};
use crate::output::check::{CheckDescription, FrontDoor};
use crate::spawn::Command;
use crate::watch::WatchConfig;
pub use services::ServiceConfig;

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
    /// Not a problem of its own: a line that helps with the one before (what zero-config looked
    /// for). Printed as a hint, not as an error.
    pub hint: bool,
}

impl Problem {
    fn plain(message: impl Into<String>) -> Problem {
        Problem { location: None, message: message.into(), hint: false }
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

/// The validated settings devserve runs with: the merged command line ([`Cli`], reached
/// through `Deref`: `config.workers`, `config.debounce`, …) plus what is derived from it.
#[derive(Debug, Clone)]
pub struct Config {
    cli: Cli,
    /// Each setting's raw values after the merge, by clap id: what a live edit is compared on.
    raw: BTreeMap<&'static str, Vec<OsString>>,
    /// The watch rules, roots made canonical (this field shadows the command line's list).
    pub watch: WatchConfig,
    /// Extra environment for workers and the build, one entry per name, sorted: the `env-file`
    /// files' variables (not those devserve's own environment has), then `env` over them.
    pub env: Vec<(String, String)>,
    /// The `env-file` files, absolute: an edit of one re-reads the configuration.
    pub env_files: Vec<PathBuf>,
    pub listen_pid: bool,
    pub quiet: bool,
    /// The configuration file in use, watched for live reloads.
    pub file: Option<PathBuf>,
    /// Where the file's `listen` key is, for errors found when binding.
    pub listen_location: Option<Location>,
    /// Zero-config: what the folder was found to be and the settings taken from it.
    pub detected: Option<Detected>,
    /// The `[services.NAME]` tables, in the order they start (`depends-on` first); empty when
    /// the file has none, and the top level is then the one app.
    pub services: Vec<ServiceConfig>,
}

/// Which part of the file a merge is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The top level; `with_services`: the file also has `[services.NAME]` tables, so the top
    /// level needs no command of its own and nothing is detected.
    Top { with_services: bool },
    /// One service's table over the top level.
    Service,
}

/// What zero-config adds to a merge.
#[derive(Default)]
struct ZeroConfig {
    /// The settings taken, as command-line words.
    words: Vec<OsString>,
    /// The command taken (empty: none).
    command: Vec<OsString>,
    /// What was taken, for the user.
    detected: Option<Detected>,
    /// Nothing to run: the hint that goes with "missing COMMAND".
    problem: Option<String>,
}

/// The settings a zero-config run took from the folder ([`crate::detect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// "a Cargo package (myapp)".
    pub kind: String,
    /// Each setting used: its key, its value as the file would write it, and where it came from.
    pub used: Vec<(String, String, String)>,
    /// The same run as an explicit command line.
    pub command_line: String,
    /// What detection said beside the settings.
    pub notes: Vec<String>,
}

impl Deref for Config {
    type Target = Cli;

    fn deref(&self) -> &Cli {
        &self.cli
    }
}

impl Config {
    /// The settings that differ between `self` and `new` (by their config key), and how each
    /// applies. Empty for an edit that changes nothing (a comment, a reordering).
    pub fn changes(&self, new: &Config) -> Vec<(String, Apply)> {
        let command = Cli::command();
        let mut changes: Vec<(String, Apply)> = SETTINGS
            .iter()
            .filter(|setting| self.raw.get(setting.id) != new.raw.get(setting.id))
            .map(|setting| (setting.key(&command), setting.apply))
            .collect();
        // The same `env-file` paths with other contents.
        if self.env != new.env && !changes.iter().any(|(key, _)| key == "env" || key == "env-file") {
            changes.push(("env-file".to_owned(), Apply::NextGeneration));
        }
        changes
    }
}

/// Everything needed to (re)build the [`Config`]: the command line's words, which options they
/// gave explicitly, and the file to read.
#[derive(Debug, Clone)]
pub struct Loader {
    /// The command line, program name first (`check` already taken out).
    args: Vec<OsString>,
    explicit: BTreeSet<String>,
    file: Option<PathBuf>,
    /// What the folder was found to be, looked at once (see the module's zero-config rule).
    detection: std::cell::OnceCell<crate::detect::Detection>,
}

impl Loader {
    pub fn new(args: Vec<OsString>, cli: &Cli, matches: &ArgMatches) -> Loader {
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
        Loader { args, explicit, file, detection: std::cell::OnceCell::new() }
    }

    /// The folder devserve runs in, as detection sees it (looked at once).
    fn detection(&self) -> &crate::detect::Detection {
        self.detection.get_or_init(|| {
            let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            crate::detect::detect(&here)
        })
    }

    /// Reads the file (if any), merges and validates. `Err` lists every problem, those in the
    /// file in line order, then the others.
    pub fn load(&self) -> Result<Config, Vec<Problem>> {
        let file = match &self.file {
            Some(path) => Some(FileTable::read(path).map_err(|p| vec![p])?),
            None => self.detected_services().transpose().map_err(|p| vec![p])?,
        };
        let mut problems = Vec::new();
        let mut config = self.merge(file.as_ref(), &mut problems);
        if self.file.is_none()
            && let (Some(config), Some(_)) = (config.as_mut(), file.as_ref())
            && let crate::detect::Detection::Found(project) = self.detection()
        {
            config.detected = Some(Detected {
                kind: project.kind.clone(),
                used: Vec::new(),
                command_line: "devserve, with the services below (`devserve init` writes them down)".into(),
                notes: project.notes.clone(),
            });
        }
        problems.sort_by(|a, b| match (&a.location, &b.location) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems),
        }
    }

    /// With no file and no command: services zero-config found (a Procfile with several
    /// processes), as the file `devserve init` would write, read as if it were that file.
    fn detected_services(&self) -> Option<Result<FileTable, Problem>> {
        if self.given("command") || std::env::var_os("DEVSERVE_GENERATION").is_some() {
            return None;
        }
        let crate::detect::Detection::Found(project) = self.detection() else { return None };
        if project.services.is_empty() {
            return None;
        }
        Some(FileTable::parse(Path::new("Procfile (as devserve.toml)"), render_detected(project)))
    }

    fn given(&self, id: &str) -> bool {
        self.explicit.contains(id)
    }

    /// The file's top-level keys merged under the command line, then its services (if any),
    /// each the top level's keys with its own over them ([`services`]).
    fn merge(&self, file: Option<&FileTable>, problems: &mut Vec<Problem>) -> Option<Config> {
        let with_services = file.is_some_and(|f| !f.services.is_empty());
        let entries: Vec<(&String, &Spanned<toml::Value>)> =
            file.map(|f| f.entries.iter().collect()).unwrap_or_default();
        let mut config = self.merge_entries(file, &entries, Part::Top { with_services }, problems)?;
        if let Some(file) = file.filter(|_| with_services) {
            config.services = services::merge(self, file, &config, problems);
        }
        Some(config)
    }

    /// `entries` (the file's keys for this part) as command-line words, then the command line
    /// itself, parsed as one.
    fn merge_entries(
        &self,
        file: Option<&FileTable>,
        entries: &[(&String, &Spanned<toml::Value>)],
        part: Part,
        problems: &mut Vec<Problem>,
    ) -> Option<Config> {
        let command = Cli::command();
        let mut words: Vec<OsString> = self.args.iter().take(1).cloned().collect();
        let mut file_command: Vec<OsString> = Vec::new();
        // Which settings the file gave, and where: the place to blame for a later problem.
        let mut from_file: BTreeMap<&'static str, Location> = BTreeMap::new();
        for &(key, value) in entries {
            let Some(file) = file else { continue };
            let at = |message: String| file.locate(&value.span(), message);
            if services::SERVICE_KEYS.contains(&key.as_str()) {
                if part != Part::Service {
                    problems.push(file.locate_key(
                        &value.span(),
                        format!("`{key}` belongs in a service's table, `[services.NAME]`"),
                    ));
                }
                continue;
            }
            if key == "command" {
                match strings(value.get_ref()) {
                    Some(program) if program.is_empty() => {
                        problems.push(at("command: needs at least the program".into()))
                    }
                    Some(program) if !self.given("command") => {
                        file_command = program.into_iter().map(OsString::from).collect();
                        from_file.insert("command", file.location(&value.span()));
                    }
                    Some(_) => {}
                    None => problems.push(at("command: expected an array of strings".into())),
                }
                continue;
            }
            if key == "env" {
                match value.get_ref().as_table() {
                    Some(table) => {
                        for (name, entry) in table {
                            match entry.as_str() {
                                Some(text) => match cli::check_env(name, text) {
                                    Ok(()) => words.extend(["--env".into(), format!("{name}={text}").into()]),
                                    Err(e) => problems.push(at(format!("env: {e}"))),
                                },
                                None => {
                                    problems.push(at(format!("env: the value of {name} must be a string")))
                                }
                            }
                        }
                        from_file.insert("env", file.location(&value.span()));
                    }
                    None => problems.push(at("env: expected a table of strings".into())),
                }
                continue;
            }
            let Some(setting) = SETTINGS.iter().find(|s| s.key(&command) == *key) else {
                problems.push(file.locate_key(&value.span(), format!("unknown field `{key}`")));
                continue;
            };
            if self.given(setting.id) {
                continue;
            }
            let Some(arg) = command.get_arguments().find(|a| a.get_id() == setting.id) else { continue };
            match file_words(arg, setting, value.get_ref()) {
                Ok(setting_words) => {
                    words.extend(setting_words);
                    from_file.insert(setting.id, file.location(&value.span()));
                }
                Err(e) => problems.push(at(format!("{key}: {e}"))),
            }
        }
        // Zero-config: the folder's settings, under the file's and the command line's.
        let zero = match part {
            Part::Top { with_services: false } => self.zero_config(&command, file, problems),
            _ => ZeroConfig::default(),
        };
        words.extend(zero.words);
        if !zero.command.is_empty() {
            file_command = zero.command;
        }
        let (detected, detection_problem) = (zero.detected, zero.problem);
        // Keys with a problem contributed no words: the rest is still checked, so that every
        // problem is listed at once.
        words.extend(self.args.iter().skip(1).cloned());
        if !file_command.is_empty() {
            words.push("--".into());
            words.extend(file_command);
        }
        let matches = match command.try_get_matches_from(&words) {
            Ok(matches) => matches,
            Err(e) => {
                problems.push(Problem::plain(cli::one_line(&e.to_string())));
                return None;
            }
        };
        let cli = match Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => {
                problems.push(Problem::plain(cli::one_line(&e.to_string())));
                return None;
            }
        };
        let raw = SETTINGS
            .iter()
            .map(|s| {
                (s.id, matches.get_raw(s.id).map(|v| v.map(OsStr::to_owned).collect()).unwrap_or_default())
            })
            .collect();
        let mut config = self.validate(cli, raw, &from_file, part, problems);
        if config.command.is_empty()
            && let Some(line) = detection_problem
        {
            problems.push(Problem { location: None, message: line, hint: true });
        }
        config.detected = detected;
        Some(config)
    }

    /// Zero-config's part of the merge: with no command given anywhere, the folder's settings
    /// that neither the file nor the command line sets, as command-line words.
    fn zero_config(
        &self,
        command: &clap::Command,
        file: Option<&FileTable>,
        problems: &mut Vec<Problem>,
    ) -> ZeroConfig {
        let in_file = |key: &str| file.is_some_and(|f| f.entries.contains_key(key));
        let mut zero = ZeroConfig::default();
        if self.given("command") || in_file("command") {
            return zero;
        }
        // devserve's own project run by devserve alone would start devserve alone again, and so
        // on: inside a worker, nothing is detected.
        if std::env::var_os("DEVSERVE_GENERATION").is_some() {
            zero.problem = Some(
                "this devserve runs as another devserve's worker (DEVSERVE_GENERATION is set): \
                                 give the command, nothing is detected here"
                    .into(),
            );
            return zero;
        }
        let project = match self.detection() {
            crate::detect::Detection::Found(project) => project,
            crate::detect::Detection::Nothing { looked_for } => {
                zero.problem = Some(looked_for.clone());
                return zero;
            }
            crate::detect::Detection::Declined { kind, why } => {
                zero.problem = Some(format!("found {kind}, not run: {why}"));
                return zero;
            }
            crate::detect::Detection::Ambiguous { kind, message } => {
                zero.problem = Some(format!("found {kind}: {message}"));
                return zero;
            }
        };
        let mut used = Vec::new();
        let mut taken_values = Vec::new();
        for found in &project.settings {
            let Some(setting) = SETTINGS.iter().find(|s| s.key(command) == found.key) else { continue };
            let taken = self.given(setting.id)
                || in_file(found.key)
                || (found.key == "proxy" && (self.given("listen") || in_file("listen")));
            if taken {
                continue;
            }
            if found.key == "command" {
                zero.command =
                    strings(&found.value).unwrap_or_default().into_iter().map(OsString::from).collect();
            } else {
                let Some(arg) = command.get_arguments().find(|a| a.get_id() == setting.id) else { continue };
                match file_words(arg, setting, &found.value) {
                    Ok(setting_words) => zero.words.extend(setting_words),
                    Err(e) => {
                        problems.push(Problem::plain(format!("{}: {e} (detected)", found.key)));
                        continue;
                    }
                }
            }
            used.push((found.key.to_owned(), found.value.to_string(), found.from.clone()));
            taken_values.push((found.key, &found.value));
        }
        zero.detected = Some(Detected {
            kind: project.kind.clone(),
            used,
            command_line: explicit_command_line(&taken_values),
            notes: project.notes.clone(),
        });
        zero
    }

    /// What the parsers cannot check: paths that must exist, globs, the command.
    fn validate(
        &self,
        cli: Cli,
        raw: BTreeMap<&'static str, Vec<OsString>>,
        from_file: &BTreeMap<&'static str, Location>,
        part: Part,
        problems: &mut Vec<Problem>,
    ) -> Config {
        let blame = |id: &str, message: String| Problem {
            location: from_file.get(id).cloned(),
            message,
            hint: false,
        };
        let mut roots: Vec<PathBuf> = Vec::new();
        for path in &cli.watch {
            match path.canonicalize() {
                // The same folder named twice is watched once.
                Ok(root) if roots.contains(&root) => {}
                Ok(root) => roots.push(root),
                Err(e) => problems.push(blame(
                    "watch",
                    if e.raw_os_error() == Some(libc::ELOOP) {
                        format!("watch path is a symlink loop: {}", path.display())
                    } else {
                        format!("watch path does not exist: {}", path.display())
                    },
                )),
            }
        }
        for glob in &cli.ignore {
            if let Err(e) = globset::Glob::new(glob) {
                problems.push(blame("ignore", format!("invalid ignore glob `{glob}`: {}", e.kind())));
            }
        }
        let mut touch = Vec::new();
        for path in &cli.touch_reload {
            match cli::absolute_file(path) {
                Ok(file) => touch.push(file),
                Err(_) => problems.push(blame(
                    "touch_reload",
                    format!("--touch-reload: the folder of {} does not exist", path.display()),
                )),
            }
        }
        // A service may be a watch task (a build, no command): `services` checks its own.
        let needs_command = part == Part::Top { with_services: false };
        if needs_command && cli.command.is_empty() && cli.signal.is_none() && !cli.completions_or_man() {
            problems.push(Problem::plain(
                "missing COMMAND: give it after `--` or as `command = [...]` in the config file",
            ));
        }
        front_door_problems(&cli, &blame, problems);
        if cli.build.as_deref().is_some_and(|b| b.trim().is_empty()) {
            problems.push(blame("build", "build: needs a command".into()));
        }
        if cli.probe.as_deref().is_some_and(|p| p.trim().is_empty()) {
            problems.push(blame("probe", "probe: needs a command".into()));
        }
        // Without a build step the command must exist now; with one, the build may create it.
        // An empty program name is wrong either way.
        if let Some(program) = cli.command.first()
            && (cli.build.is_none() || program.is_empty())
            && let Err(e) = Command::new(program).resolve()
        {
            problems.push(blame("command", e.to_string()));
        }
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut env_files = Vec::new();
        for path in &cli.env_file {
            match env_file::read(path) {
                Ok(vars) => {
                    // Variables devserve already has win: a shell's `FOO=x devserve` overrides.
                    env.extend(vars.into_iter().filter(|(key, _)| std::env::var_os(key).is_none()));
                }
                Err(e) => problems.push(blame("env_file", format!("env-file: {e}"))),
            }
            if let Ok(file) = cli::absolute_file(path) {
                touch.push(file.clone());
                env_files.push(file);
            }
        }
        env.extend(cli.env.iter().cloned());
        Config {
            watch: WatchConfig {
                roots,
                touch,
                exts: cli.exts.clone(),
                ignore: cli.ignore.clone(),
                vcs_ignore: !cli.no_vcs_ignore,
                debounce: cli.debounce,
                config_file: self.file.as_ref().and_then(|p| cli::absolute_file(p).ok()),
                eager: cli.proxy.is_some() && cli.build.is_none(),
                poll: cli.poll,
            },
            env: env.into_iter().collect(),
            env_files,
            listen_pid: !cli.no_pid,
            quiet: cli.quiet > 0,
            file: self.file.clone(),
            listen_location: from_file.get("listen").cloned(),
            detected: None,
            services: Vec::new(),
            raw,
            cli,
        }
    }
}

/// `devserve init`'s file: what detection found, each key under a comment saying where its value
/// came from, and the notes; a file [`Loader::load`] reads back as the same settings.
pub fn render_detected(project: &crate::detect::Project) -> String {
    let mut text = format!(
        "# devserve.toml for {}, written by `devserve init`.\n\
         # Every key is a devserve flag's long name (see docs/src/configuration.md); a flag given on\n\
         # the command line wins. `devserve check` shows what would run.\n",
        project.kind
    );
    for note in &project.notes {
        let _ = writeln!(text, "# Note: {note}");
    }
    for found in &project.settings {
        let _ = write!(text, "\n# {}\n{} = {}\n", found.from, found.key, found.value);
    }
    for (name, settings) in &project.services {
        let _ = write!(text, "\n[services.{name}]\n");
        for found in settings {
            let _ = write!(text, "# {}\n{} = {}\n", found.from, found.key, found.value);
        }
    }
    text
}

/// The settings a zero-config run took, as the command line that says the same:
/// `devserve --proxy 127.0.0.1:8080 -w src -b 'cargo build' -- target/debug/app`.
fn explicit_command_line(used: &[(&str, &toml::Value)]) -> String {
    let mut words = vec!["devserve".to_owned()];
    let mut program = Vec::new();
    for (key, value) in used {
        let values: Vec<String> = match value {
            toml::Value::Array(items) => items.iter().filter_map(scalar).collect(),
            other => scalar(other).into_iter().collect(),
        };
        if *key == "command" {
            program = values;
            continue;
        }
        for value in values {
            words.push(format!("--{key}"));
            words.push(cli::shell_word(&value).into_owned());
        }
    }
    words.push("--".to_owned());
    words.extend(program.iter().map(|w| cli::shell_word(w).into_owned()));
    words.join(" ")
}

/// The front door's flags that need `--proxy`, or that do not go together.
fn front_door_problems(cli: &Cli, blame: &dyn Fn(&str, String) -> Problem, problems: &mut Vec<Problem>) {
    if cli.proxy.is_none() {
        for (id, flag, given) in [
            ("app_port", "--app-port", cli.app_port.is_some()),
            ("ready_path", "--ready-path", cli.ready_path.is_some()),
            ("allowed_hosts", "--allowed-host", !cli.allowed_hosts.is_empty()),
            ("upstream_timeout", "--upstream-timeout", cli.upstream_timeout.is_some()),
            ("open", "--open", cli.open),
            ("max_requests", "--max-requests", cli.max_requests.is_some()),
            ("upstream", "--upstream", cli.upstream != cli::UpstreamProtocol::Http1),
        ] {
            if given && id == "max_requests" {
                problems.push(blame(
                    id,
                    "--max-requests needs --proxy: devserve counts each worker's requests in its \
                     proxy; under --listen requests go straight to the app"
                        .into(),
                ));
            } else if given {
                problems.push(blame(id, format!("{flag} needs --proxy")));
            }
        }
    }
    if cli.max_requests.is_some() && cli.proxy.as_ref().is_some_and(|p| p.raw_tcp) {
        problems.push(blame(
            "max_requests",
            "--max-requests counts HTTP requests: a tcp: front door has connections, not requests".into(),
        ));
    }
    if cli.upstream != cli::UpstreamProtocol::Http1 && cli.proxy.as_ref().is_some_and(|p| p.raw_tcp) {
        problems.push(blame(
            "upstream",
            "--upstream h2c routes each HTTP/2 request: a tcp: front door copies bytes (drop one of them)"
                .into(),
        ));
    }
    if cli.max_requests.is_some() && cli.app_port.is_some() {
        problems.push(blame(
            "max_requests",
            "--max-requests starts the replacement beside the worker: not with --app-port, where \
             workers share one port"
                .into(),
        ));
    }
    if cli.app_port.is_some() && cli.command.iter().any(|a| a.to_string_lossy().contains("{port}")) {
        problems.push(blame(
            "command",
            "`{port}` cannot be used with --app-port: the app's port is fixed (drop one of them)".into(),
        ));
    }
}

/// A TOML value as the words of a command-line option: `--key value` per value, a flag for
/// `true` (its `--no-…` form for `false` when the key is the positive one). Each value goes
/// through the option's own parser here, so a bad one is blamed on its line.
fn file_words(arg: &clap::Arg, setting: &cli::Setting, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let flag = match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => return Err("cannot be set in the file".into()),
    };
    if !arg.get_action().takes_values() {
        let on = value.as_bool().ok_or("expected true or false")?;
        let wanted = if setting.inverted.is_some() { !on } else { on };
        return Ok(if wanted { vec![flag.into()] } else { Vec::new() });
    }
    let values: Vec<String> = match value {
        toml::Value::Array(items)
            if arg.get_num_args().is_some_and(|n| n.max_values() > 1) || is_list(arg) =>
        {
            items.iter().map(scalar).collect::<Option<_>>().ok_or("expected an array of strings")?
        }
        toml::Value::Array(_) => return Err("expected a single value, not an array".into()),
        other => vec![scalar(other).ok_or("expected a string or a number")?],
    };
    let mut words = Vec::new();
    for text in values {
        words.push(OsString::from(&flag));
        words.push(OsString::from(text));
    }
    // The option alone, through its own parser: a bad value is blamed on this key's line. The
    // whole command line's declaration parses it (a lone copy of the argument would name
    // arguments it conflicts with that the copy lacks).
    Cli::command().no_binary_name(true).try_get_matches_from(&words).map_err(|e| {
        use std::error::Error;
        e.source().map_or_else(|| cli::one_line(&e.to_string()), ToString::to_string)
    })?;
    Ok(words)
}

/// Whether the option may be given more than once (a list).
fn is_list(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), clap::ArgAction::Append)
}

/// A string or number as its text.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        _ => None,
    }
}

/// An array of strings.
fn strings(value: &toml::Value) -> Option<Vec<String>> {
    value.as_array()?.iter().map(|v| v.as_str().map(str::to_owned)).collect()
}

/// A table of keys, each with the span of its value.
type Entries = BTreeMap<String, Spanned<toml::Value>>;

/// `devserve.toml` as written: each key with the span of its value, for error messages.
struct FileTable {
    entries: Entries,
    /// `[services.NAME]` tables, by name, each with its own keys (spans kept).
    services: BTreeMap<String, Spanned<Entries>>,
    path: PathBuf,
    text: String,
}

impl FileTable {
    fn read(path: &Path) -> Result<FileTable, Problem> {
        let text = read_config_text(path).map_err(|e| Problem::plain(format!("{}: {e}", path.display())))?;
        FileTable::parse(path, text)
    }

    fn parse(path: &Path, text: String) -> Result<FileTable, Problem> {
        #[derive(Deserialize)]
        #[serde(transparent)]
        struct Table(BTreeMap<String, Spanned<toml::Value>>);
        let syntax = |e: toml::de::Error| {
            let message = e.message().trim().to_owned();
            match e.span() {
                Some(span) => locate(path, &text, &span, message),
                None => Problem::plain(format!("{}: {message}", path.display())),
            }
        };
        let Table(mut entries) = toml::from_str(&text).map_err(syntax)?;
        // The services again, read with the spans of their own keys.
        #[derive(Deserialize)]
        struct WithServices {
            #[serde(default)]
            services: BTreeMap<String, Spanned<Entries>>,
        }
        let services = match entries.remove("services") {
            Some(value) if value.get_ref().is_table() => {
                toml::from_str::<WithServices>(&text).map_err(syntax)?.services
            }
            Some(value) => {
                let message = "services: expected tables, `[services.NAME]`".to_owned();
                return Err(locate(path, &text, &value.span(), message));
            }
            None => BTreeMap::new(),
        };
        Ok(FileTable { entries, services, path: path.to_path_buf(), text })
    }

    fn location(&self, span: &Range<usize>) -> Location {
        locate(&self.path, &self.text, span, String::new()).location.unwrap_or(Location {
            file: self.path.clone(),
            line: 1,
            col: 1,
        })
    }

    fn locate(&self, span: &Range<usize>, message: String) -> Problem {
        locate(&self.path, &self.text, span, message)
    }

    /// A problem about a key itself: the first character of the line its value is on.
    fn locate_key(&self, value_span: &Range<usize>, message: String) -> Problem {
        let before = self.text.get(..value_span.start.min(self.text.len())).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let indent = before.get(line_start..).map_or(0, |l| l.len() - l.trim_start().len());
        locate(&self.path, &self.text, &(line_start + indent..line_start + indent), message)
    }
}

/// The file's text: a regular file (symlinks followed, but a dangling or looping one is an
/// error), at most [`MAX_FILE`] bytes. A FIFO or a device is refused before it is opened, so a
/// FIFO cannot hang devserve.
fn read_config_text(path: &Path) -> Result<String, FileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        match e.raw_os_error() {
            Some(libc::ELOOP) => FileError::Loop,
            Some(libc::ENOENT) if link => FileError::Dangling,
            _ => FileError::Read(e),
        }
    })?;
    if !meta.is_file() {
        return Err(FileError::NotRegular);
    }
    if meta.len() > MAX_FILE {
        return Err(FileError::TooLarge(meta.len()));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(FileError::Read)?;
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(FileError::Read)?;
    Ok(text)
}

/// Why the configuration file cannot be read.
#[derive(Debug)]
enum FileError {
    Loop,
    Dangling,
    NotRegular,
    TooLarge(u64),
    Read(std::io::Error),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Loop => f.write_str("is a symlink loop"),
            FileError::Dangling => f.write_str("is a symlink to nothing (dangling)"),
            FileError::NotRegular => f.write_str("is not a regular file"),
            FileError::TooLarge(size) => write!(f, "is too large ({size} bytes; at most {MAX_FILE})"),
            FileError::Read(e) => write!(f, "cannot read: {e}"),
        }
    }
}

/// A problem at a byte span of the file: 1-based line and column.
fn locate(path: &Path, text: &str, span: &Range<usize>, message: String) -> Problem {
    let before = text.get(..span.start.min(text.len())).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Problem { location: Some(Location { file: path.to_path_buf(), line, col }), message, hint: false }
}

/// What `devserve check` prints: the settings devserve would run with.
pub fn describe(config: &Config) -> CheckDescription {
    let front = match (&config.proxy, config.listen.is_empty()) {
        (Some(proxy), _) => FrontDoor::Proxy {
            address: proxy.addr.to_string(),
            auto_up_to: proxy.auto.then_some(crate::sockets::AUTO_PROXY_LAST_PORT),
            raw_tcp: proxy.raw_tcp,
            tls: proxy.tls,
            app_port: config.app_port,
            allowed_hosts: config.allowed_hosts.clone(),
        },
        (None, false) => {
            FrontDoor::Listen { addresses: config.listen.iter().map(|l| l.addr.to_string()).collect() }
        }
        (None, true) => FrontDoor::Restart,
    };
    CheckDescription {
        file: config.file.as_ref().map(|p| p.display().to_string()),
        found: config.detected.as_ref().map(|d| (d.kind.clone(), d.command_line.clone())),
        watch: config.watch.roots.iter().map(|p| p.display().to_string()).collect(),
        exts: config.watch.exts.clone(),
        ignore: config.watch.ignore.clone(),
        build: config.build.clone(),
        front,
        command: config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        env: config.env.clone(),
        workers: config.workers,
        rolling: config.rolling,
        ready_delay: config.ready_delay,
        ready_timeout: config.ready_timeout,
        stop_signal: config.stop_signal.as_str().to_owned(),
        stop_timeout: config.stop_timeout,
        services: config
            .services
            .iter()
            .map(|service| crate::output::check::ServiceDescription {
                name: service.name.clone(),
                route: service.route.clone().map(|route| (route, service.strip_prefix)),
                watch: if service.watches {
                    service.config.watch.roots.iter().map(|p| p.display().to_string()).collect()
                } else {
                    Vec::new()
                },
                build: service.config.build.clone(),
                command: service.config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
                depends_on: service.depends_on.clone(),
                workers: service.config.workers,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let matches = Cli::command().try_get_matches_from(&argv).expect("parse");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        Loader::new(argv.iter().map(OsString::from).collect(), &cli, &matches).load()
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

    const STACK: &str = "proxy = \"127.0.0.1:0\"\nworkers = 2\n[env]\nA = \"top\"\nB = \"top\"\n\n\
        [services.web]\ncommand = [\"true\"]\nroute = \"/\"\ndepends-on = [\"api\"]\n\n\
        [services.api]\ncommand = [\"true\"]\nroute = \"/api/\"\nstrip-prefix = true\nworkers = 1\n\
        [services.api.env]\nB = \"api\"\n\n\
        [services.css]\nbuild = \"true\"\n";

    #[test]
    fn services_take_the_top_level_as_defaults_and_start_after_their_dependencies() {
        let config = load(&[], STACK).expect("valid");
        let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "web", "css"], "api before web, which depends on it; then file order");
        let api = &config.services[0];
        assert_eq!(api.route.as_deref(), Some("/api"));
        assert!(api.strip_prefix && api.reload_browser);
        assert_eq!(api.config.workers, 1, "its own key wins");
        assert_eq!(api.config.env, vec![("A".into(), "top".into()), ("B".into(), "api".into())]);
        let web = &config.services[1];
        assert_eq!(web.config.workers, 2, "the top level is the default");
        assert_eq!(web.depends_on, ["api"]);
        assert!(config.services[2].config.command.is_empty() && !config.services[2].reload_browser);
        // The command line wins over every service.
        let config = load(&["-n", "3"], STACK).expect("valid");
        assert!(config.services.iter().all(|s| s.config.workers == 3));
    }

    #[test]
    fn service_mistakes_are_one_line_each_at_their_key() {
        let cycle = "proxy = \"127.0.0.1:0\"\n[services.a]\ncommand = [\"true\"]\ndepends-on = [\"b\"]\n\
                     [services.b]\ncommand = [\"true\"]\ndepends-on = [\"a\"]\n";
        let problems = load(&[], cycle).expect_err("a cycle");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].ends_with(":4:14: depends-on: a cycle, a → b → a"), "{problems:?}");
        let twice = "proxy = \"127.0.0.1:0\"\n[services.a]\ncommand = [\"true\"]\nroute = \"/x\"\n\
                     [services.b]\ncommand = [\"true\"]\nroute = \"/x/\"\n";
        let problems = load(&[], twice).expect_err("a route twice");
        assert!(
            problems[0].contains(":7:9: [services.b] route \"/x\" is also [services.a]'s"),
            "{problems:?}"
        );
        let no_proxy = "[services.a]\ncommand = [\"true\"]\nroute = \"/\"\n";
        let problems = load(&[], no_proxy).expect_err("route without proxy");
        assert!(problems[0].contains(":3:9: [services.a] route = \"/\": needs `proxy`"), "{problems:?}");
        let nothing = "[services.a]\nworkers = 2\n";
        let problems = load(&[], nothing).expect_err("neither command nor build");
        assert!(problems[0].contains("[services.a] has neither `command` nor `build`"), "{problems:?}");
        let wide = "[services.a]\ncommand = [\"true\"]\nproxy = \"127.0.0.1:0\"\n";
        let problems = load(&[], wide).expect_err("a devserve-wide key");
        assert!(problems[0].contains(":3:1: `proxy` is devserve-wide"), "{problems:?}");
        let unknown = "[services.a]\ncommand = [\"true\"]\ndepends-on = [\"nope\"]\n";
        let problems = load(&[], unknown).expect_err("an unknown service");
        assert!(problems[0].contains("depends-on: no service is named `nope`"), "{problems:?}");
        let problems = load(&[], "route = \"/\"\ncommand = [\"true\"]\n").expect_err("route at the top");
        assert!(problems[0].contains(":1:1: `route` belongs in a service's table"), "{problems:?}");
        let problems = load(&[], "[services.Api]\ncommand = [\"true\"]\n").expect_err("a bad name");
        assert!(problems[0].contains("a service's name is a host name label"), "{problems:?}");
    }
}
