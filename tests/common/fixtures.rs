//! The fixture apps (`fixtures/README.md` is their contract) and [`Fixture`], which runs one
//! under devserve with the environment it reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::files::write;
use super::http::{field, http_get};
use super::process::{Devserve, devserve_command};
use super::wait::{WAIT, wait_until};

/// The Rust fixture, built by cargo as the `fixture-app` example next to this test or bench
/// (`target/debug/examples/fixture-app` for `cargo test`).
pub fn rust_fixture() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = profile.join("examples/fixture-app");
    assert!(path.exists(), "{} missing: run `cargo build --example fixture-app`", path.display());
    path
}

/// The Python fixture, `fixtures/app.py` (stdlib only; run with `python3`).
pub fn python_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/app.py")
}

/// The Python fixture's command line, `python3 fixtures/app.py`, as owned strings.
pub fn python_command() -> Vec<String> {
    vec!["python3".into(), python_fixture().to_str().expect("utf-8").into()]
}

/// An app of `tests/apps/`.
pub fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps").join(name)
}

/// devserve's front door in front of `python3 tests/apps/<name>`, watching `dir`, with `env`
/// (which workers inherit); waits until generation 1 is ready and returns devserve and the
/// proxy's address.
pub fn serve_app(dir: &Path, name: &str, env: &[(&str, &str)]) -> (Devserve, String) {
    let app = app(name);
    let (watch, app) = (dir.to_str().expect("utf-8 path"), app.to_str().expect("utf-8 path"));
    let args = ["--proxy", "127.0.0.1:0", "--log-format", "json", "-w", watch, "--", "python3", app];
    let devserve = Devserve::start(dir, &args, env);
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["generation"] == 1);
    (devserve, addr)
}

/// A fixture app and the `FIXTURE_*` environment it gets: the command after devserve's `--`.
///
/// ```ignore
/// let (devserve, addr) = Fixture::rust().notify().versioned(&dir, "v1").serve(&dir, &["-w", ".", "-l", "127.0.0.1:0"]);
/// ```
#[derive(Debug, Clone)]
pub struct Fixture {
    argv: Vec<String>,
    env: Vec<(String, String)>,
}

impl Fixture {
    /// The Rust fixture ([`rust_fixture`]).
    pub fn rust() -> Fixture {
        Fixture::at(&rust_fixture())
    }

    /// The Python fixture ([`python_fixture`]), run as `python3 fixtures/app.py`.
    pub fn python() -> Fixture {
        let path = python_fixture();
        Fixture { argv: vec!["python3".into(), path.to_str().expect("utf-8 path").into()], env: Vec::new() }
    }

    /// Both fixtures, for a test of the contract they share.
    pub fn both() -> [Fixture; 2] {
        [Fixture::rust(), Fixture::python()]
    }

    /// A fixture binary at `program` (the bench's release build).
    pub fn at(program: &Path) -> Fixture {
        Fixture { argv: vec![program.to_str().expect("utf-8 path").into()], env: Vec::new() }
    }

    /// `python` or `rust`, for messages.
    pub fn name(&self) -> &'static str {
        if self.argv.iter().any(|arg| arg.ends_with(".py")) { "python" } else { "rust" }
    }

    /// Sets `key=value` in the fixture's environment.
    pub fn env(mut self, key: &str, value: &str) -> Fixture {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// `FIXTURE_NOTIFY=1`: send `READY=1` once serving.
    pub fn notify(self) -> Fixture {
        self.env("FIXTURE_NOTIFY", "1")
    }

    /// `FIXTURE_VERSION=version`.
    pub fn version(self, version: &str) -> Fixture {
        self.env("FIXTURE_VERSION", version)
    }

    /// `FIXTURE_VERSION_FILE=path` (relative to the fixture's working directory, or absolute).
    pub fn version_file(self, path: impl AsRef<Path>) -> Fixture {
        self.env("FIXTURE_VERSION_FILE", path.as_ref().to_str().expect("utf-8 path"))
    }

    /// The version from `dir/version`, which is written with `initial` unless it exists already.
    pub fn versioned(self, dir: &Path, initial: &str) -> Fixture {
        let file = dir.join("version");
        if !file.exists() {
            write(&file, initial);
        }
        self.version_file(file)
    }

    /// Runs the fixture through `sh -c 'PREFIX exec FIXTURE'`: `exec` keeps the pid (and so
    /// `LISTEN_PID`) right, and whatever `prefix` starts stays in the worker's process group.
    pub fn in_shell(mut self, prefix: &str) -> Fixture {
        let quoted: Vec<String> =
            self.argv.iter().map(|arg| format!("'{}'", arg.replace('\'', r"'\''"))).collect();
        self.argv = vec!["sh".into(), "-c".into(), format!("{prefix} exec {}", quoted.join(" "))];
        self
    }

    /// The command line, program first.
    pub fn argv(&self) -> Vec<&str> {
        self.argv.iter().map(String::as_str).collect()
    }

    /// The `FIXTURE_*` variables set so far.
    pub fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// Adds the fixture's environment to `command`.
    pub fn apply_env(&self, command: &mut Command) {
        for (key, value) in &self.env {
            command.env(key, value);
        }
    }

    /// The fixture on its own, without devserve, in `dir` (stdin from /dev/null).
    pub fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.argv[0]);
        command.args(&self.argv[1..]).current_dir(dir);
        self.apply_env(&mut command);
        command
    }

    /// devserve's arguments: `args`, then `--` and the fixture's command line.
    pub fn devserve_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.push("--");
        all.extend(self.argv());
        all
    }

    /// devserve with `args` in `dir` running this fixture, with `env` added to devserve's own
    /// environment (which workers inherit) after the fixture's.
    pub fn start_with(&self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Devserve {
        let mut all_env = self.env_pairs();
        all_env.extend_from_slice(env);
        Devserve::spawn(devserve_command(dir, &self.devserve_args(args), &all_env))
    }

    /// devserve `--proxy PROXY --log-format json -w .` (then `args`) over this fixture binding the
    /// port it is given (`FIXTURE_BIND_PORT_ENV=1`); returns devserve and the proxy's address once
    /// it listens.
    pub fn behind_proxy(&self, dir: &Path, proxy: &str, args: &[&str]) -> (Devserve, String) {
        let mut all = vec!["--proxy", proxy, "--log-format", "json", "-w", "."];
        all.extend_from_slice(args);
        let devserve = self.start_with(dir, &all, &[("FIXTURE_BIND_PORT_ENV", "1")]);
        let address = devserve.proxy_addr();
        (devserve, address)
    }

    /// devserve with `args` in `dir` running this fixture.
    pub fn start(&self, dir: &Path, args: &[&str]) -> Devserve {
        self.start_with(dir, args, &[])
    }

    /// [`Fixture::start`], then waits until gen 1 is ready; returns devserve and the address of
    /// its first `--listen` socket.
    pub fn serve(&self, dir: &Path, args: &[&str]) -> (Devserve, String) {
        let devserve = self.start(dir, args);
        let addr = devserve.listen_addr(0);
        wait_ready(&devserve, 1);
        (devserve, addr)
    }
}

/// Waits until generation `generation` is ready: a human `gen N ready` line or a
/// `generation_ready` JSON event.
/// Writes `version` into `file` (a service's version file) and waits until `path` on the front
/// door at `addr` answers with it.
pub fn save_and_wait(devserve: &Devserve, file: &Path, addr: &str, path: &str, version: &str) {
    write(file, version);
    assert!(
        wait_until(WAIT, || http_get(addr, path).is_ok_and(|b| field(&b, "version") == version)),
        "{version} never served at {path}:\n{}",
        devserve.output()
    );
}

pub fn wait_ready(devserve: &Devserve, generation: u64) {
    let needle = format!("gen {generation} ready");
    let ready = || {
        devserve.count(&needle) > 0
            || devserve
                .capture()
                .find_event(0, "generation_ready", |e| e["generation"] == generation)
                .is_some()
    };
    if !wait_until(WAIT, ready) {
        panic!("timed out waiting for gen {generation} to be ready; output:\n{}", devserve.output());
    }
}

/// Saves `edit-N.txt` and waits until a generation started for it is ready. Not by number: with
/// no build a burst is started at its first event, and a write whose events straggle on a busy
/// machine starts a second generation that supersedes the first. Returns the ready generation.
pub fn swap_and_wait(devserve: &Devserve, dir: &Path, n: u64) -> u64 {
    write(&dir.join(format!("edit-{n}.txt")), "edit");
    let cause = format!("edit-{n}.txt changed");
    let ready = devserve.wait_event("generation_ready", |e| e["cause"] == cause.as_str());
    ready["generation"].as_u64().expect("a generation number")
}
