//! `cargo devserve …`: cargo runs `cargo-devserve devserve …`. This drops that word and becomes
//! (exec) the `devserve` installed beside it, so both spell the same tool.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "devserve") {
        args.remove(0);
    }
    let devserve = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("devserve"),
        Err(e) => {
            eprintln!("[devserve] error: cannot find devserve: {e}");
            return ExitCode::from(1);
        }
    };
    let error = Command::new(&devserve).args(args).exec();
    eprintln!("[devserve] error: cannot run {}: {error}", devserve.display());
    ExitCode::from(1)
}
