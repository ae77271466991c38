//! devserve: rebuild and swap a server on every save, without ever refusing a connection.
//!
//! `main` only parses the command line and hands over to [`supervisor::run`]; the one
//! exception is the sentinel mode (see [`sentinel`]), a hidden first argument with which
//! devserve re-executes itself as its own watchdog.

mod build;
mod cli;
mod control;
mod event;
mod generation;
mod output;
mod readiness;
mod sentinel;
mod signals;
mod sockets;
mod spawn;
mod supervisor;
mod watch;

use std::process::ExitCode;

use clap::Parser;

/// Exit status for bad input caught after clap (which uses 2 as well).
const USAGE_ERROR: u8 = 2;
/// Exit status for a failure while starting or running (busy port, command not found, …).
const RUN_ERROR: u8 = 1;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == sentinel::SENTINEL_ARG) {
        sentinel::run(args.collect());
        return ExitCode::SUCCESS;
    }
    let out = output::Output::new(false);
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            out.error(format!("{} (see --help)", first_line(&e.to_string())));
            return ExitCode::from(USAGE_ERROR);
        }
    };
    output::init_tracing(cli.verbose, cli.quiet);
    if let (Some(action), Some(pidfile)) = (cli.signal, &cli.pidfile) {
        return match control::send(action, pidfile) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                out.error(format!("error: {message}"));
                ExitCode::from(RUN_ERROR)
            }
        };
    }
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(message) => {
            out.error(format!("error: {message}"));
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match supervisor::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            out.error(format!("error: {message}"));
            ExitCode::from(RUN_ERROR)
        }
    }
}

/// clap's message folded into one line, without the usage block that follows it.
fn first_line(text: &str) -> String {
    let message: Vec<&str> =
        text.lines().map(str::trim).take_while(|l| !l.is_empty() && !l.starts_with("Usage:")).collect();
    if message.is_empty() { "error: invalid arguments".into() } else { message.join(" ") }
}
