//! The `devserve` binary: hands its arguments to the library ([`devserve::app::main`]).

fn main() -> std::process::ExitCode {
    devserve::app::main(std::env::args_os().collect())
}
