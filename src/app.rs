//! One invocation of devserve, from its arguments to its exit status: parse the command line,
//! then hand over to [`supervisor::run`] to serve, to [`control::send`] for `--signal`, or print
//! (`check`, `--completions`, `--man`). Usage errors are one line and exit 2; failures while
//! starting or running are one line and exit 1 (see docs/src/exit-codes.md).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::output::{self, Output, Report};
use crate::{cli, config, control, sentinel, sockets, supervisor};

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
            Some(pidfile) => match control::send(action, pidfile) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => run_error(&out, &error.to_string()),
            },
            None => usage_error(&out, &[control::without_pidfile(action)]),
        };
    }
    let loader = config::Loader::new(args, &cli, &matches);
    let loaded = loader.load();
    if check {
        return check_and_describe(&out, loaded);
    }
    let config = match loaded {
        Ok(config) => config,
        Err(problems) => return usage_error(&out, &lines(&problems)),
    };
    // From here the output format is known: a failure to start is a JSON event too.
    let out = out.with_json(config.log_format == output::LogFormat::Json);
    match supervisor::run(loader, config) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(error) => run_error(&out, &error.to_string()),
    }
}

/// `devserve check`: every problem, or what would run; also tries to bind the addresses.
fn check_and_describe(out: &Output, loaded: Result<config::Config, Vec<config::Problem>>) -> ExitCode {
    let config = match loaded {
        Ok(config) => config,
        Err(problems) => return usage_error(out, &lines(&problems)),
    };
    if let Err(e) = sockets::bind_all(&config.listen) {
        return usage_error(out, &[e.to_string()]);
    }
    // The front door's address too: a busy port is found now, not at the real start.
    if let Some(proxy) = &config.proxy {
        let spec = sockets::ListenSpec { name: Some("proxy".into()), addr: proxy.addr.clone() };
        if let Err(e) = sockets::bind_all(std::slice::from_ref(&spec)) {
            return usage_error(out, &[e.to_string()]);
        }
    }
    output::stdout(format!("{}ok\n", config::describe(&config)).as_bytes());
    ExitCode::SUCCESS
}

fn lines(problems: &[config::Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
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
