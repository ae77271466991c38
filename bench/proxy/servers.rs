//! The three ways to reach an app: the app alone (direct), the app behind devserve's front door, and
//! the direct app behind nginx's `proxy_pass`; for the fixture app of the throughput cells, and for
//! any command (the apps of the two-writes part).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{Fixture, TempDir, free_port};
use crate::procs::Spawned;

/// Longest wait for a server to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server and the address the clients use.
pub struct Server {
    pub addr: SocketAddr,
    pub process: Spawned,
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|e| format!("bad address {text:?}: {e}"))
}

/// Environment every process starts with: no colour, no inherited socket activation, no log filter.
fn clean(command: &mut Command) {
    command.env("NO_COLOR", "1");
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "RUST_LOG"] {
        command.env_remove(var);
    }
}

/// The fixture app alone, binding `FIXTURE_BIND=127.0.0.1:<free port>`.
pub fn direct(fixture: &Path, dir: &Path) -> Result<Server, String> {
    let addr = parse_addr(&format!("127.0.0.1:{}", free_port()))?;
    let app = Fixture::at(fixture).version("bench").env("FIXTURE_BIND", &addr.to_string());
    direct_command("fixture app", app.command(dir), addr)
}

/// `command`, an app that binds `addr` itself; ready once `GET /` on `addr` answers 200.
pub fn direct_command(name: &str, mut command: Command, addr: SocketAddr) -> Result<Server, String> {
    clean(&mut command);
    let mut process = Spawned::spawn(name, command)?;
    process.wait_serving(&addr.to_string(), START_TIMEOUT)?;
    Ok(Server { addr, process })
}

/// `devserve --proxy 127.0.0.1:0 --log-format json -w DIR -- fixture-app`, the fixture binding
/// its own port from `PORT` (`FIXTURE_BIND_PORT_ENV=1`) and sending `READY=1`. Ready once gen 1 is.
pub fn devserve(devserve: &Path, fixture: &Path, dir: &Path) -> Result<Server, String> {
    let app = Fixture::at(fixture).version("bench").notify().env("FIXTURE_BIND_PORT_ENV", "1");
    devserve_app(devserve, dir, app.argv(), &app.env_pairs())
}

/// `devserve --proxy 127.0.0.1:0 --log-format json -w DIR -- APP…` in `dir`, with `env` added:
/// the address from its `proxy_listening` event; ready once gen 1 is and `GET /` answers 200.
pub fn devserve_app<S: AsRef<OsStr>>(
    devserve: &Path,
    dir: &Path,
    app: impl IntoIterator<Item = S>,
    env: &[(&str, &str)],
) -> Result<Server, String> {
    let mut command = Command::new(devserve);
    command.args(["--proxy", "127.0.0.1:0", "--log-format", "json", "-w"]).arg(dir).arg("--");
    command.args(app).current_dir(dir).envs(env.iter().copied());
    clean(&mut command);
    let mut process = Spawned::spawn("devserve", command)?;
    let listening = process.wait_event(0, START_TIMEOUT, "proxy_listening", |_| true)?;
    let addr = parse_addr(listening.item["address"].as_str().unwrap_or_default())?;
    process.wait_event(0, START_TIMEOUT, "generation_ready", |e| e["generation"] == 1)?;
    process.wait_serving(&addr.to_string(), START_TIMEOUT)?;
    Ok(Server { addr, process })
}

/// nginx's configuration: one worker, the upstream behind a keepalive pool, everything under
/// `dir`, listening on 127.0.0.1 only.
fn nginx_conf(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "# Written by devserve's proxy bench.
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream app {{
        server {upstream};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    )
}

/// `nginx -p DIR -e DIR/error.log -c DIR/nginx.conf` in front of `upstream`.
pub fn nginx(nginx: &Path, dir: &TempDir, upstream: SocketAddr) -> Result<Server, String> {
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir, port, upstream))
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let mut command = Command::new(nginx);
    command.arg("-p").arg(dir.path()).arg("-e").arg(dir.join("error.log")).arg("-c").arg(&conf);
    command.current_dir(dir.path());
    clean(&mut command);
    let mut process = Spawned::spawn("nginx", command)?;
    let addr = parse_addr(&format!("127.0.0.1:{port}"))?;
    if let Err(e) = process.wait_serving(&addr.to_string(), START_TIMEOUT) {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        let last = log.lines().last().unwrap_or_default().to_owned();
        return Err(if last.is_empty() { e } else { format!("{e}; error.log: {last}") });
    }
    Ok(Server { addr, process })
}
