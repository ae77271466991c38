//! HTTPS (issue 18): devserve's `--proxy https://` against nginx (`listen … ssl http2`), both in
//! front of the same directly reached fixture app, both with a certificate from the same local CA
//! (devserve's own, made in a temporary `HOME`; nginx's leaf signed here with rcgen from it).
//!
//! Measured, at 1 and 16 clients, for `BENCH_PROXY_SECS` per cell after a 1 s warm-up:
//! - **new TLS connections per second**: each client connects, shakes hands (TLS 1.3, ALPN
//!   `http/1.1`), sends one `GET /` with `Connection: close` and reads the answer to its end; with
//!   the p50 of the handshake alone (connect to handshake done);
//! - **HTTP/2 requests per second**: each client holds one TLS connection (ALPN `h2`) and sends
//!   `GET /` after `GET /` on it (hyper's HTTP/2 client).
//!
//! And devserve's peak RSS (VmHWM) over the part. Targets: devserve's throughput ≥ 0.8× nginx's in
//! every cell, its handshake p50 ≤ 1.2× nginx's.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TempDir, free_port, temp_dir};
use crate::config::Config;
use crate::procs::Spawned;
use crate::servers;
use crate::setup::Tools;

const CLIENTS: [usize; 2] = [1, 16];
/// The targets.
const THROUGHPUT_FLOOR: f64 = 0.8;
const HANDSHAKE_LIMIT: f64 = 1.2;

/// One server's cells: (new connections/s, handshake p50 µs, h2 requests/s) per client count.
struct Cells(Vec<(f64, u128, f64)>);

/// Runs the part and renders its section of the report.
pub fn run(config: &Config, tools: &Tools) -> Result<String, String> {
    let nginx = tools.nginx.as_ref().map_err(Clone::clone)?;
    let home = temp_dir("bench-https-home");
    let dir = temp_dir("bench-https");
    // The local CA, made by devserve itself.
    let made = Command::new(&tools.devserve)
        .args(["ca", "path"])
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .output()
        .map_err(|e| format!("cannot run devserve ca path: {e}"))?;
    let ca_path = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(|e| format!("{ca_path}: {e}"))?;
    let ca_key = std::fs::read_to_string(home.path().join(".local/share/devserve/ca-key.pem"))
        .map_err(|e| format!("ca-key.pem: {e}"))?;
    write_nginx_leaf(&dir, &ca_pem, &ca_key)?;

    let direct = servers::direct(&tools.fixture, dir.path())?;
    let nginx_server = start_nginx(nginx, &dir, direct.addr)?;
    let mut devserve = start_devserve(&tools.devserve, &tools.fixture, dir.path(), home.path())?;
    let roots = roots(&ca_pem)?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let secs = Duration::from_secs(config.secs);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for clients in CLIENTS {
        for (addr, cells) in [(devserve.addr, &mut ours), (nginx_server.addr, &mut theirs)] {
            eprintln!("[bench] https: {clients} client(s) on {addr}");
            runtime.block_on(handshakes(addr, &roots, clients, Duration::from_secs(1)));
            let (per_sec, p50) = runtime.block_on(handshakes(addr, &roots, clients, secs));
            runtime.block_on(h2_requests(addr, &roots, clients, Duration::from_secs(1)));
            let rps = runtime.block_on(h2_requests(addr, &roots, clients, secs));
            cells.push((per_sec, p50, rps));
        }
    }
    let hwm = crate::common::status_kib(devserve.process.pid(), "VmHWM").unwrap_or(0);
    devserve.process.stop();
    Ok(render(&Cells(ours), &Cells(theirs), hwm, config))
}

/// nginx's certificate: a leaf for localhost and 127.0.0.1 signed by the same CA, with the CA
/// after it, and its key.
fn write_nginx_leaf(dir: &TempDir, ca_pem: &str, ca_key: &str) -> Result<(), String> {
    let key = rcgen::KeyPair::from_pem(ca_key).map_err(|e| e.to_string())?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, key).map_err(|e| e.to_string())?;
    let leaf_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(|e| e.to_string())?;
    params.subject_alt_names.push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let leaf = params.signed_by(&leaf_key, &issuer).map_err(|e| e.to_string())?;
    let chain = format!("{}{ca_pem}", leaf.pem());
    std::fs::write(dir.join("nginx.crt"), chain).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("nginx.key"), leaf_key.serialize_pem()).map_err(|e| e.to_string())
}

fn roots(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| format!("{e:?}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn client_config(base: &Arc<rustls::ClientConfig>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut config = (**base).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// `clients` tasks making new TLS connections for `secs`: connections per second and the p50 of
/// the handshake.
async fn handshakes(
    addr: SocketAddr,
    roots: &Arc<rustls::ClientConfig>,
    clients: usize,
    secs: Duration,
) -> (f64, u128) {
    let connector = tokio_rustls::TlsConnector::from(client_config(roots, b"http/1.1"));
    let until = Instant::now() + secs;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while Instant::now() < until {
                let began = Instant::now();
                let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else { continue };
                let _ = tcp.set_nodelay(true);
                let name = ServerName::try_from("localhost").expect("name");
                let Ok(mut tls) = connector.connect(name, tcp).await else { continue };
                let shook = began.elapsed().as_micros();
                let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
                if tls.write_all(request).await.is_err() {
                    continue;
                }
                let mut answer = Vec::new();
                let _ = tls.read_to_end(&mut answer).await;
                if answer.starts_with(b"HTTP/1.1 200") {
                    times.push(shook);
                }
            }
            times
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.unwrap_or_default());
    }
    times.sort_unstable();
    let p50 = times.get(times.len() / 2).copied().unwrap_or(0);
    (times.len() as f64 / secs.as_secs_f64(), p50)
}

/// `clients` tasks, each on one HTTP/2 connection, sending `GET /` for `secs`: requests per second.
async fn h2_requests(
    addr: SocketAddr,
    roots: &Arc<rustls::ClientConfig>,
    clients: usize,
    secs: Duration,
) -> f64 {
    let connector = tokio_rustls::TlsConnector::from(client_config(roots, b"h2"));
    let until = Instant::now() + secs;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else { return 0 };
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from("localhost").expect("name");
            let Ok(tls) = connector.connect(name, tcp).await else { return 0 };
            let io = hyper_util::rt::TokioIo::new(tls);
            let Ok((mut sender, connection)) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await
            else {
                return 0;
            };
            tokio::spawn(connection);
            let mut done = 0usize;
            while Instant::now() < until {
                let request = hyper::Request::get(format!("https://localhost:{}/", addr.port()))
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                if let Ok(response) = sender.send_request(request).await
                    && response.status() == 200
                    && response.into_body().collect().await.is_ok()
                {
                    done += 1;
                }
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap_or(0);
    }
    total as f64 / secs.as_secs_f64()
}

/// devserve with `--proxy https://127.0.0.1:0`, its CA in `home`, the fixture binding `PORT`.
fn start_devserve(
    devserve: &Path,
    fixture: &Path,
    dir: &Path,
    home: &Path,
) -> Result<servers::Server, String> {
    let mut command = Command::new(devserve);
    command
        .args(["--proxy", "https://127.0.0.1:0", "--log-format", "json", "-w"])
        .arg(dir)
        .arg("--")
        .arg(fixture)
        .current_dir(dir)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env("FIXTURE_BIND_PORT_ENV", "1")
        .env("FIXTURE_NOTIFY", "1")
        .env("FIXTURE_VERSION", "bench")
        .env("NO_COLOR", "1");
    let mut process = Spawned::spawn("devserve", command)?;
    let timeout = Duration::from_secs(30);
    let listening = process.wait_event(0, timeout, "proxy_listening", |_| true)?;
    let addr: SocketAddr =
        listening.item["address"].as_str().unwrap_or_default().parse().map_err(|e| format!("{e}"))?;
    process.wait_event(0, timeout, "generation_ready", |e| e["generation"] == 1)?;
    Ok(servers::Server { addr, process })
}

/// nginx with `listen 127.0.0.1:PORT ssl http2` and the leaf written beside it, in front of
/// `upstream`, one worker, a keepalive upstream pool.
fn start_nginx(nginx: &Path, dir: &TempDir, upstream: SocketAddr) -> Result<servers::Server, String> {
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/client_body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         upstream app {{ server {upstream}; keepalive 32; }}\n\
         server {{\n  listen 127.0.0.1:{port} ssl http2;\n  ssl_certificate {d}/nginx.crt;\n  ssl_certificate_key {d}/nginx.key;\n\
         ssl_protocols TLSv1.2 TLSv1.3;\n  location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut command = Command::new(nginx);
    command.arg("-p").arg(dir.path()).arg("-e").arg(dir.join("error.log")).arg("-c").arg(&path);
    let process = Spawned::spawn("nginx", command)?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().map_err(|e| format!("{e}"))?;
    // Ready once its port accepts.
    let ready =
        crate::common::wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(addr).is_ok());
    if !ready {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        return Err(format!("nginx did not listen: {}", log.lines().last().unwrap_or_default()));
    }
    Ok(servers::Server { addr, process })
}

fn render(ours: &Cells, theirs: &Cells, hwm_kib: u64, config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n### HTTPS: devserve `--proxy https://` vs nginx `ssl http2`\n");
    let _ = writeln!(
        out,
        "{} s per cell after a 1 s warm-up; the same upstream and a certificate from the same local CA.\n",
        config.secs
    );
    let _ = writeln!(out, "| clients | figure | devserve | nginx | devserve ÷ nginx |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut verdicts = Vec::new();
    for (index, clients) in CLIENTS.iter().enumerate() {
        let (Some(a), Some(b)) = (ours.0.get(index), theirs.0.get(index)) else { continue };
        let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
        let conns = ratio(a.0, b.0);
        let shake = ratio(a.1 as f64, b.1 as f64);
        let h2 = ratio(a.2, b.2);
        let _ =
            writeln!(out, "| {clients} | new TLS connections/s | {:.0} | {:.0} | {conns:.2}× |", a.0, b.0);
        let _ = writeln!(out, "| {clients} | handshake p50 | {} µs | {} µs | {shake:.2}× |", a.1, b.1);
        let _ = writeln!(out, "| {clients} | HTTP/2 requests/s | {:.0} | {:.0} | {h2:.2}× |", a.2, b.2);
        let pass = |ok: bool| if ok { "PASS" } else { "MISS" };
        verdicts.push(format!(
            "- {}: {clients} client(s): new connections {conns:.2}× and HTTP/2 requests {h2:.2}× nginx's (target ≥ {THROUGHPUT_FLOOR}×)",
            pass(conns >= THROUGHPUT_FLOOR && h2 >= THROUGHPUT_FLOOR)
        ));
        verdicts.push(format!(
            "- {}: {clients} client(s): handshake p50 {shake:.2}× nginx's (target ≤ {HANDSHAKE_LIMIT}×)",
            pass(shake <= HANDSHAKE_LIMIT)
        ));
    }
    let _ = writeln!(out, "\ndevserve's peak RSS over the HTTPS part: {:.1} MiB\n", hwm_kib as f64 / 1024.0);
    for verdict in verdicts {
        let _ = writeln!(out, "{verdict}");
    }
    out
}
