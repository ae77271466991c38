//! One invocation of devserve, from its arguments to its exit status: parse the command line,
//! then hand over to [`supervisor::run`] to serve, to [`control::send`] for `--signal`, or print
//! (`check`, `--completions`, `--man`). Usage errors are one line and exit 2; failures while
//! starting or running are one line and exit 1 (see docs/src/exit-codes.md).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::output::{self, Output, Report};
use crate::{cli, config, control, detect, sentinel, sockets, supervisor};

/// Exit status for bad input (clap uses 2 as well).
const USAGE_ERROR: u8 = 2;
/// Exit status for a failure while starting or running (busy port, no devserve to signal, …).
const RUN_ERROR: u8 = 1;

/// Runs devserve with `args` (the program name first) and returns its exit status.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let code = run(args);
    // The last lines (`stopped`, an error) are written unless stderr is stuck.
    output::sink::flush(std::time::Duration::from_secs(2));
    code
}

fn run(mut args: Vec<OsString>) -> ExitCode {
    if args.get(1).is_some_and(|a| a == sentinel::SENTINEL_ARG) {
        sentinel::run(args.split_off(2));
        return ExitCode::SUCCESS;
    }
    // `devserve check …` validates like `nginx -t`; a program named `check` runs as `-- check`.
    let check = args.get(1).is_some_and(|a| a == "check");
    if check {
        args.remove(1);
    }
    // `devserve init [--force]` writes devserve.toml for the project in this folder.
    if args.get(1).is_some_and(|a| a == "init") {
        return init(&Output::new(false), &args[2..]);
    }
    // `devserve ca create|path|install|uninstall`: the local certificate authority.
    if args.get(1).is_some_and(|a| a == "ca") {
        return ca(&Output::new(false), &args[2..]);
    }
    let out = Output::new(false);
    let matches = match cli::Cli::command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        // --help and --version print as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let line = cli::peer_flag_hint(&args).unwrap_or_else(|| cli::one_line(&e.to_string()));
            return usage_error(&out, &[line]);
        }
    };
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&out, &[cli::one_line(&e.to_string())]),
    };
    output::init_tracing(cli.verbose, cli.quiet);
    if let Some(shell) = cli.completions {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cli::Cli::command(), "devserve", &mut script);
        output::stdout(&script);
        return ExitCode::SUCCESS;
    }
    if cli.man {
        let mut page = Vec::new();
        return match clap_mangen::Man::new(cli::Cli::command()).render(&mut page) {
            Ok(()) => {
                output::stdout(&page);
                ExitCode::SUCCESS
            }
            Err(e) => run_error(&out, &format!("cannot write the man page: {e}")),
        };
    }
    if let Some(action) = cli.signal {
        return match &cli.pidfile {
            Some(pidfile) => {
                // `-s reload api web`: the words after the action name services.
                let services: Vec<String> =
                    cli.command.iter().map(|w| w.to_string_lossy().into_owned()).collect();
                match control::send(action, pidfile, &services) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) if error.is_usage() => usage_error(&out, &[error.to_string()]),
                    Err(error) => run_error(&out, &error.to_string()),
                }
            }
            None => usage_error(&out, &[control::without_pidfile(action)]),
        };
    }
    // A verb is never taken for the program: `devserve -w src init` is a slip, `-- init` is not.
    if let Some(verb) = cli.command.first().and_then(|p| p.to_str()).filter(|p| VERBS.contains(p))
        && !args.iter().any(|a| a == "--")
    {
        let line = format!(
            "`{verb}` is a devserve verb: put it first (`devserve {verb}`), or run a program named {verb} \
             with `devserve -- {verb}`"
        );
        return usage_error(&out, &[line]);
    }
    let loader = config::Loader::new(args, &cli, &matches);
    let loaded = loader.load();
    if check {
        return check_and_describe(&out, loaded);
    }
    let config = match loaded {
        Ok(config) => config,
        Err(problems) => return problems_error(&out, &problems),
    };
    // From here the output format is known: a failure to start is a JSON event too.
    let out = out.with_json(config.log_format == output::LogFormat::Json);
    announce(&out, &config);
    match supervisor::run(loader, config) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(error) => run_error(&out, &error.to_string()),
    }
}

/// `devserve check`: every problem, or what would run; also tries to bind the addresses.
fn check_and_describe(out: &Output, loaded: Result<config::Config, Vec<config::Problem>>) -> ExitCode {
    let config = match loaded {
        Ok(config) => config,
        Err(problems) => return problems_error(out, &problems),
    };
    if let Err(e) = sockets::bind_all(&config.listen) {
        return usage_error(out, &[e.to_string()]);
    }
    // The front door's address too: a busy port is found now, not at the real start.
    if let Some(proxy) = &config.proxy
        && let Err(e) = sockets::bind_proxy(proxy)
    {
        return usage_error(out, &[e.to_string()]);
    }
    let mut text = config::describe(&config).lines().join("\n");
    text.push_str("\nok\n");
    output::stdout(text.as_bytes());
    ExitCode::SUCCESS
}

/// The words that are devserve's verbs, never a program's name unless after `--`.
const VERBS: [&str; 3] = ["check", "init", "ca"];

/// Before a run: what zero-config found (the equivalent command line, where each value came
/// from), and a hint when the app reloads itself.
fn announce(out: &Output, config: &config::Config) {
    if let Some(detected) = &config.detected {
        out.report(Report::Detected {
            kind: detected.kind.clone(),
            command_line: detected.command_line.clone(),
            from: detected.used.iter().map(|(key, _, from)| format!("{key}: {from}")).collect(),
            notes: detected.notes.clone(),
        });
    }
    let argv: Vec<String> = config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(hint) = detect::self_reloading(&argv) {
        out.report(Report::SelfReloading { hint });
    }
}

/// `devserve init [--force]`: devserve.toml from what detection finds, each key with a comment
/// saying where it came from. An existing file is kept unless `--force`. Runs nothing.
fn init(out: &Output, rest: &[OsString]) -> ExitCode {
    let force = match rest {
        [] => false,
        [flag] if flag == "--force" => true,
        _ => return usage_error(out, &["usage: devserve init [--force]".to_owned()]),
    };
    let path = std::path::Path::new(config::DEFAULT_FILE);
    if !force && std::fs::symlink_metadata(path).is_ok() {
        let line =
            format!("{} exists; it is kept (`devserve init --force` writes it again)", config::DEFAULT_FILE);
        return usage_error(out, &[line]);
    }
    let here = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let project = match detect::detect(&here) {
        detect::Detection::Found(project) => project,
        detect::Detection::Nothing { looked_for } => {
            return usage_error(out, &[format!("nothing to write: {looked_for}")]);
        }
        detect::Detection::Declined { kind, why } => {
            return usage_error(out, &[format!("found {kind}, not run: {why}")]);
        }
        detect::Detection::Ambiguous { kind, message } => {
            return usage_error(out, &[format!("found {kind}: {message}")]);
        }
    };
    match std::fs::write(path, config::render_detected(&project)) {
        Ok(()) => {
            out.report(Report::ConfigWritten { file: config::DEFAULT_FILE.to_owned(), kind: project.kind });
            ExitCode::SUCCESS
        }
        Err(e) => run_error(out, &format!("cannot write {}: {e}", config::DEFAULT_FILE)),
    }
}

/// Built without the `https` feature: no local CA.
#[cfg(not(feature = "https"))]
fn ca(out: &Output, _rest: &[OsString]) -> ExitCode {
    usage_error(
        out,
        &["this devserve was built without HTTPS (cargo's `https` feature): no `devserve ca`".into()],
    )
}

/// `devserve ca ACTION` (see [`cli::CaCli`] and `crate::ca`).
#[cfg(feature = "https")]
fn ca(out: &Output, rest: &[OsString]) -> ExitCode {
    use crate::ca::{self as local_ca, LocalCa};
    let argv = std::iter::once(OsString::from("devserve ca")).chain(rest.iter().cloned());
    let parsed = match <cli::CaCli as clap::Parser>::try_parse_from(argv) {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => return usage_error(out, &[cli::one_line(&e.to_string())]),
    };
    let dir = match local_ca::data_dir() {
        Ok(dir) => dir,
        Err(e) => return run_error(out, &e.to_string()),
    };
    let result = match parsed.action {
        cli::CaAction::Create { names, force } => LocalCa::create(&dir, &names, force).map(|ca| {
            let path = ca.cert_path.display().to_string();
            out.report(Report::CaCreated { path, names });
        }),
        cli::CaAction::Path => LocalCa::load_or_create(&dir).map(|ca| {
            output::stdout(format!("{}\n", ca.cert_path.display()).as_bytes());
        }),
        cli::CaAction::Install => LocalCa::load_or_create(&dir).and_then(|ca| {
            let system = local_ca::system_commands(&ca.cert_path);
            let installed = local_ca::install_nss(&ca.cert_path);
            let db = installed.as_ref().ok().map(|db| db.display().to_string());
            out.report(Report::CaInstalled { path: ca.cert_path.display().to_string(), nss: db, system });
            installed.map(|_| ())
        }),
        cli::CaAction::Uninstall => local_ca::uninstall_nss().map(|removed| {
            let db = local_ca::nss_db().map(|db| db.display().to_string()).unwrap_or_default();
            out.report(Report::CaUninstalled { nss: db, removed });
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(exists @ crate::ca::CaError::Exists { .. }) => usage_error(out, &[exists.to_string()]),
        Err(e) => run_error(out, &e.to_string()),
    }
}

/// The configuration's problems, each an error line, but hints as hints; exit 2.
fn problems_error(out: &Output, problems: &[config::Problem]) -> ExitCode {
    for problem in problems {
        if problem.hint {
            out.report(Report::Hint { text: problem.to_string() });
        } else {
            out.report(Report::Error { text: problem.to_string() });
        }
    }
    ExitCode::from(USAGE_ERROR)
}

fn usage_error(out: &Output, problems: &[String]) -> ExitCode {
    for problem in problems {
        let text = problem.strip_prefix("error: ").unwrap_or(problem).to_owned();
        out.report(Report::Error { text });
    }
    ExitCode::from(USAGE_ERROR)
}

fn run_error(out: &Output, message: &str) -> ExitCode {
    out.report(Report::Error { text: message.to_owned() });
    ExitCode::from(RUN_ERROR)
}
