//! The bench's HTTP client: `GET /` on a new connection, every outcome told apart (ok, refused,
//! reset or cut off, timed out, other).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::report::secs;
use crate::{REQUEST_TIMEOUT, RETRY_PAUSE};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

pub enum Outcome {
    Ok(String),
    Refused,
    Reset,
    TimedOut,
    Other(String),
}

impl Outcome {
    fn from_error(e: &std::io::Error) -> Outcome {
        match e.kind() {
            ErrorKind::ConnectionRefused => Outcome::Refused,
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => Outcome::Reset,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::TimedOut,
            _ => Outcome::Other(e.to_string()),
        }
    }
}

/// `GET /` on a new connection to 127.0.0.1:`port`; the body if the full 200 response came.
pub fn http_get(port: u16, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(stream) => stream,
        Err(e) => return Outcome::from_error(&e),
    };
    if let Err(e) = stream.set_write_timeout(Some(left())).and_then(|()| stream.write_all(REQUEST)) {
        return Outcome::from_error(&e);
    }
    let mut response = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if Instant::now() >= deadline {
            return Outcome::TimedOut;
        }
        if let Err(e) = stream.set_read_timeout(Some(left())) {
            return Outcome::from_error(&e);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return parse_response(&response),
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Outcome::from_error(&e),
        }
    }
}

/// A complete `200` response gives its body; a cut-off one counts as a reset.
fn parse_response(response: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Outcome::Reset;
    };
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Outcome::Other(format!("status {status:?}"));
    }
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(length) if length == body.len() => Outcome::Ok(body.to_string()),
        _ => Outcome::Reset,
    }
}

/// Polls `GET /` until a response carries `version`; returns when that response arrived.
pub fn poll_for_version(port: u16, version: &str, timeout: Duration) -> Result<Instant, String> {
    let wanted = format!("version={version} ");
    let deadline = Instant::now() + timeout;
    loop {
        match http_get(port, REQUEST_TIMEOUT) {
            Outcome::Ok(body) if body.starts_with(&wanted) => return Ok(Instant::now()),
            Outcome::Ok(_) => {}
            _ => thread::sleep(RETRY_PAUSE),
        }
        if Instant::now() >= deadline {
            return Err(format!("{version} not served within {}", secs(timeout)));
        }
    }
}
