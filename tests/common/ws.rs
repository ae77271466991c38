//! A minimal blocking WebSocket client (RFC 6455) over a std [`TcpStream`], for tests of
//! long-lived connections through the front door.
//!
//! [`WsClient::connect`] sends the upgrade request and checks the answer: status `101` and a
//! `Sec-WebSocket-Accept` that matches the key sent (SHA-1 and base64 are computed here, to stay
//! without dependencies). Then [`WsClient::send_text`] sends one masked text frame,
//! [`WsClient::read_frame`] reads one whole frame as a [`Frame`] (`Text`, `Close` with its status
//! code, `Ping`, …), and [`WsClient::echo`] does both. Only what the tests need: no
//! fragmentation, no extensions, and a ping is returned to the caller, not answered.
//!
//! Reads time out after [`WsClient::set_read_timeout`] (15 s at first). A connection that ends
//! without a close frame is an error of kind [`ErrorKind::UnexpectedEof`]: that is the bare TCP
//! cut a test wants to tell apart from the app's own `Close(Some(1001))`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a read waits at first: no frame in these tests takes this long.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// The GUID that RFC 6455 appends to the key before hashing it.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame, with its status code if it has one.
    Close(Option<u16>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// An open WebSocket connection.
pub struct WsClient {
    stream: TcpStream,
    /// The state of the masking keys' generator.
    seed: u64,
}

impl WsClient {
    /// Connects to `addr` (`127.0.0.1:PORT`) and upgrades `GET path`; an error says which step
    /// failed (and shows the answer's head if it was not a proper `101`).
    pub fn connect(addr: &str, path: &str) -> Result<WsClient, String> {
        WsClient::connect_with(addr, path, "")
    }

    /// [`WsClient::connect`] with more header lines (`Sec-WebSocket-Protocol: vite-hmr\r\n`).
    pub fn connect_with(addr: &str, path: &str, headers: &str) -> Result<WsClient, String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
        let mut seed = new_seed();
        let key_bytes: Vec<u8> = (0..16).map(|_| next(&mut seed) as u8).collect();
        let key = base64(&key_bytes);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        )
        .map_err(|e| format!("write the upgrade request: {e}"))?;
        // Byte by byte: the first frame may follow the head at once and must stay unread.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).map_err(|e| {
                format!("read the upgrade answer: {e} (so far: {:?})", String::from_utf8_lossy(&head))
            })?;
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("no 101 Switching Protocols: {head:?}"));
        }
        let expected = base64(&sha1(format!("{key}{GUID}").as_bytes()));
        let accept = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("sec-websocket-accept").then(|| value.trim().to_owned())
        });
        if accept.as_deref() != Some(expected.as_str()) {
            return Err(format!("Sec-WebSocket-Accept is not {expected}: {head:?}"));
        }
        Ok(WsClient { stream, seed })
    }

    /// How long [`WsClient::read_frame`] waits (`None`: for ever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.stream.set_read_timeout(timeout).expect("set_read_timeout");
    }

    /// The underlying connection.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `text` as one masked text frame.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(0x1, text.as_bytes())
    }

    /// Sends a close frame with `code` (the answer to a server's close frame, or a goodbye).
    pub fn send_close(&mut self, code: u16) -> io::Result<()> {
        self.send(0x8, &code.to_be_bytes())
    }

    /// Sends a ping with `payload`.
    pub fn send_ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(0x9, payload)
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 1 << 16 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = (next(&mut self.seed) as u32).to_be_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)
    }

    /// Reads one whole frame. A connection that ends before a frame starts, or in the middle of
    /// one, is [`ErrorKind::UnexpectedEof`]; a timeout is [`ErrorKind::WouldBlock`] or
    /// [`ErrorKind::TimedOut`]; a reset is [`ErrorKind::ConnectionReset`].
    pub fn read_frame(&mut self) -> io::Result<Frame> {
        self.read_whole_frame().map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof => {
                io::Error::new(ErrorKind::UnexpectedEof, "the connection ended without a close frame")
            }
            _ => e,
        })
    }

    fn read_whole_frame(&mut self) -> io::Result<Frame> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head)?;
        let opcode = head[0] & 0x0f;
        if head[0] & 0x80 == 0 || opcode == 0 {
            return Err(io::Error::new(ErrorKind::InvalidData, "a fragmented frame (not supported)"));
        }
        if head[1] & 0x80 != 0 {
            return Err(io::Error::new(ErrorKind::InvalidData, "a masked frame from the server"));
        }
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                self.stream.read_exact(&mut n)?;
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                self.stream.read_exact(&mut n)?;
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        let len = usize::try_from(len).map_err(|_| io::Error::new(ErrorKind::InvalidData, "huge frame"))?;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        Ok(match opcode {
            0x1 => Frame::Text(
                String::from_utf8(payload).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?,
            ),
            0x2 => Frame::Binary(payload),
            0x8 => Frame::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
            0x9 => Frame::Ping(payload),
            0xa => Frame::Pong(payload),
            other => {
                return Err(io::Error::new(ErrorKind::InvalidData, format!("unknown opcode {other:#x}")));
            }
        })
    }

    /// Sends `text` and returns the text frame that answers it; any other frame or an error is
    /// an error text.
    pub fn echo(&mut self, text: &str) -> Result<String, String> {
        self.send_text(text).map_err(|e| format!("send {text:?}: {e}"))?;
        match self.read_frame() {
            Ok(Frame::Text(answer)) => Ok(answer),
            Ok(other) => Err(format!("{other:?} instead of the echo of {text:?}")),
            Err(e) => Err(format!("no echo of {text:?}: {e}")),
        }
    }
}

/// A seed that differs between connections and runs (the keys need not be strong, only vary).
fn new_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    (nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(17))
        | 1
}

/// xorshift64*: the next pseudo-random number.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32
}

/// Standard base64, with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1 (FIPS 180-4) of `data`: only for the handshake's accept value.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476, 0xc3d2_e1f0];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..20 => ((b & c) | (!b & d), 0x5a82_7999),
                20..40 => (b ^ c ^ d, 0x6ed9_eba1),
                40..60 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*word);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (state, add) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(add);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}
