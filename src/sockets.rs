//! The listening sockets devserve holds for its whole life.
//!
//! Contract: every `--listen` address is bound once, at start, before anything else runs, with
//! SO_REUSEADDR, without SO_REUSEPORT (closing a reuseport member resets the connections queued
//! on it) and with a deep backlog (min(somaxconn, 4096)), so that while workers come and go the
//! kernel keeps completing handshakes and queueing them. The sockets carry FD_CLOEXEC in devserve;
//! `spawn` places them at fds 3, 4, … of each worker. Their file-status flags (O_NONBLOCK) are
//! never touched: they are shared with every process that holds the socket.
//!
//! A Unix socket's file is removed when its [`HeldSocket`] is dropped, so a failed start, a
//! released address and devserve's exit all leave nothing behind. A worker that calls
//! `shutdown()` on its copy stops the socket listening for every holder; [`HeldSocket::rearm`]
//! notices (SO_ACCEPTCONN) and calls `listen()` again on the same socket: same port, no rebind.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use socket2::{Domain, SockAddr, Socket, Type};

/// One `--listen` argument: an optional name for `LISTEN_FDNAMES` and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    pub name: Option<String>,
    pub addr: ListenAddr,
}

/// Where a held socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// One TCP address, IPv4 or IPv6.
    Tcp(SocketAddr),
    /// `:PORT`: every interface, IPv6 and IPv4 on one dual-stack socket where available.
    AnyInterface(u16),
    /// A Unix stream socket at this path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::AnyInterface(port) => write!(f, ":{port}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The front door's address (`--proxy`): a TCP address as for `--listen`, with `tcp:` in front
/// for raw TCP forwarding instead of HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    pub addr: ListenAddr,
    /// `tcp:ADDR`: connections are forwarded as bytes (gRPC/h2c, databases), not as HTTP.
    pub raw_tcp: bool,
    /// `https://ADDR`: TLS (HTTP/2 and HTTP/1.1) with a certificate from the local CA.
    pub tls: bool,
    /// `auto`: [`AUTO_PROXY`], or the next free port up to [`AUTO_PROXY_LAST_PORT`].
    pub auto: bool,
}

/// Where `--proxy auto` (zero-config's front door) listens first.
pub const AUTO_PROXY: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// The last port `--proxy auto` moves up to when the ones before are taken.
pub const AUTO_PROXY_LAST_PORT: u16 = 8099;

/// Parses `--proxy`: `127.0.0.1:8080`, `:8080`, `[::1]:0`, `https://127.0.0.1:8443` (TLS),
/// `tcp:127.0.0.1:5432`, or `auto` (127.0.0.1:8080, or the next free port up to 8099).
pub fn parse_proxy(text: &str) -> Result<ProxySpec, String> {
    if text == "auto" {
        return Ok(ProxySpec { addr: ListenAddr::Tcp(AUTO_PROXY), raw_tcp: false, tls: false, auto: true });
    }
    let (raw_tcp, tls, rest) = if let Some(rest) = text.strip_prefix("tcp:") {
        (true, false, rest)
    } else if let Some(rest) = text.strip_prefix("https://") {
        (false, true, rest.trim_end_matches('/'))
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, false, rest.trim_end_matches('/'))
    } else {
        (false, false, text)
    };
    match parse_listen_addr(rest)? {
        ListenAddr::Unix(_) => {
            Err(format!("`{text}`: the front door listens on TCP; use e.g. 127.0.0.1:8080"))
        }
        addr => Ok(ProxySpec { addr, raw_tcp, tls, auto: false }),
    }
}

/// Binds the front door's address; `auto` moves to the next free port up to
/// [`AUTO_PROXY_LAST_PORT`] while the one tried is taken. An address the user gave is bound as
/// given, or fails.
pub fn bind_proxy(spec: &ProxySpec) -> Result<NamedSocket, BindError> {
    let bind = |addr: &ListenAddr| {
        let listen = ListenSpec { name: Some("proxy".into()), addr: addr.clone() };
        bind_all(std::slice::from_ref(&listen)).and_then(|mut bound| {
            bound.pop().ok_or_else(|| BindError {
                addr: addr.clone(),
                reason: BindFailure::Io(io::Error::other("no socket")),
            })
        })
    };
    let first = match bind(&spec.addr) {
        Ok(socket) => return Ok(socket),
        Err(e) => e,
    };
    if let (true, ListenAddr::Tcp(at)) = (spec.auto, &spec.addr) {
        for port in at.port().saturating_add(1)..=AUTO_PROXY_LAST_PORT {
            if let Ok(socket) = bind(&ListenAddr::Tcp(std::net::SocketAddr::new(at.ip(), port))) {
                return Ok(socket);
            }
        }
    }
    Err(first)
}

/// Parses one `--listen` value, with an optional `NAME=` prefix.
pub fn parse_listen(text: &str) -> Result<ListenSpec, String> {
    let (name, addr_text) = match text.split_once('=') {
        Some((name, rest)) if !text.starts_with("unix:") => (Some(validate_fd_name(name)?), rest),
        _ => (None, text),
    };
    let addr = parse_listen_addr(addr_text)?;
    Ok(ListenSpec { name, addr })
}

fn parse_listen_addr(text: &str) -> Result<ListenAddr, String> {
    let bad = || {
        format!(
            "`{text}` is not a listen address; use e.g. 127.0.0.1:8080, [::1]:8080, :8080 or unix:/tmp/app.sock"
        )
    };
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(bad());
        }
        if path.contains('\0') {
            return Err(format!("`{}`: a socket path cannot contain a NUL byte", text.escape_debug()));
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    if let Some(port) = text.strip_prefix(':') {
        return port.parse().map(ListenAddr::AnyInterface).map_err(|_| bad());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(ListenAddr::Tcp(addr));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port.parse().map_err(|_| bad())?;
        return Ok(ListenAddr::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)));
    }
    Err(bad())
}

/// systemd's rule for `LISTEN_FDNAMES` entries: printable ASCII, no `:`, at most 255 bytes.
fn validate_fd_name(name: &str) -> Result<String, String> {
    let printable = name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if name.is_empty() || name.len() > 255 || !printable {
        return Err(format!(
            "`{name}` is not a socket name; use printable ASCII without `:` (e.g. http=127.0.0.1:8080)"
        ));
    }
    Ok(name.to_owned())
}

/// The backlog devserve asks for; the kernel caps it at `net.core.somaxconn`.
const MAX_BACKLOG: i32 = 4096;

/// A held socket with its `LISTEN_FDNAMES` entry. Clones share the socket: generations keep
/// the ones they started with, so a socket replaced by a config edit closes (and its file goes)
/// when the last generation using it is gone.
#[derive(Debug, Clone)]
pub struct NamedSocket {
    pub socket: Arc<HeldSocket>,
    /// The entry for `LISTEN_FDNAMES`.
    pub name: String,
}

impl std::ops::Deref for NamedSocket {
    type Target = HeldSocket;

    fn deref(&self) -> &HeldSocket {
        &self.socket
    }
}

/// A bound, listening socket and how to describe it.
#[derive(Debug)]
pub struct HeldSocket {
    socket: Socket,
    /// What the user asked for, e.g. `:8080`.
    pub requested: ListenAddr,
    /// What the kernel gave, e.g. `127.0.0.1:41234` after asking for port 0.
    pub bound: String,
    /// The bound address, to bind again after a `shutdown()` released an ephemeral port.
    #[cfg_attr(
        not(any(target_os = "linux", target_os = "android", target_os = "freebsd")),
        allow(dead_code)
    )]
    local: Option<SockAddr>,
}

impl HeldSocket {
    /// The fd devserve holds (CLOEXEC); `spawn` dups it into place for workers.
    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// A second handle on the socket as a std listener (for the front door's own thread).
    pub fn std_listener(&self) -> io::Result<std::net::TcpListener> {
        Ok(self.socket.try_clone()?.into())
    }

    /// A second handle on the socket, for `--accept`'s own threads.
    pub fn try_clone_listener(&self) -> io::Result<Socket> {
        self.socket.try_clone()
    }

    /// The socket file to remove at exit, for a Unix socket.
    pub fn unix_path(&self) -> Option<&Path> {
        match &self.requested {
            ListenAddr::Unix(path) => Some(path),
            _ => None,
        }
    }

    /// If the socket no longer listens (someone called `shutdown()` on it), listens again.
    /// True when it had to.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    pub fn rearm(&self) -> io::Result<bool> {
        if self.socket.is_listener()? {
            return Ok(false);
        }
        // A shut-down TCP listener keeps an explicitly chosen port but gives back one the kernel
        // picked (port 0): bind that same address again first. EINVAL means still bound.
        if let Some(local) = &self.local
            && let Err(e) = self.socket.bind(local)
            && e.raw_os_error() != Some(libc::EINVAL)
        {
            return Err(e);
        }
        self.socket.listen(backlog())?;
        Ok(true)
    }

    /// Without SO_ACCEPTCONN there is nothing to check.
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    pub fn rearm(&self) -> io::Result<bool> {
        Ok(false)
    }
}

/// Set when this devserve hands its sockets to a newer one (an upgrade): their files stay.
static KEEP_FILES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on a dropped socket leaves its file (a newer devserve listens on it).
pub fn keep_files() {
    KEEP_FILES.store(true, std::sync::atomic::Ordering::Relaxed);
}

impl Drop for HeldSocket {
    fn drop(&mut self) {
        if KEEP_FILES.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Some(path) = self.unix_path()
            && let Err(e) = std::fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove {}: {e}", path.display());
        }
    }
}

/// Why an address could not be held. Displayed as one line naming the address.
#[derive(Debug)]
pub struct BindError {
    addr: ListenAddr,
    reason: BindFailure,
}

/// What went wrong binding one address.
#[derive(Debug)]
enum BindFailure {
    Io(io::Error),
    /// A file that is not a socket is where the Unix socket should go.
    NotASocket,
    /// A stale Unix socket file could not be removed.
    StaleFile(io::Error),
}

impl fmt::Display for BindFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindFailure::Io(e) => f.write_str(&describe(e)),
            BindFailure::NotASocket => f.write_str("a file that is not a socket is in the way"),
            BindFailure::StaleFile(e) => write!(f, "cannot remove stale socket file: {e}"),
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.reason)
    }
}

impl std::error::Error for BindError {}

/// Binds every address in order; the first failure is returned and nothing stays bound (the
/// sockets bound before it are dropped, their files removed).
pub fn bind_all(specs: &[ListenSpec]) -> Result<Vec<NamedSocket>, BindError> {
    let backlog = backlog();
    let mut held = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let fail = |e: io::Error| BindError { addr: spec.addr.clone(), reason: BindFailure::Io(e) };
        let socket = match &spec.addr {
            ListenAddr::Tcp(addr) => bind_tcp(*addr, backlog).map_err(fail)?,
            ListenAddr::AnyInterface(port) => bind_any_interface(*port, backlog).map_err(fail)?,
            ListenAddr::Unix(path) => {
                bind_unix(path, backlog).map_err(|reason| BindError { addr: spec.addr.clone(), reason })?
            }
        };
        let bound = describe_local(&socket, &spec.addr);
        let name = spec.name.clone().unwrap_or_else(|| format!("listen{index}"));
        let local = socket.local_addr().ok().filter(|a| a.as_socket().is_some());
        let socket = Arc::new(HeldSocket { socket, requested: spec.addr.clone(), bound, local });
        held.push(NamedSocket { socket, name });
    }
    Ok(held)
}

/// A listening socket handed over by the devserve that started this one (an upgrade), which
/// listens on `requested`; as if bound here, under `name`.
pub fn adopt(fd: std::os::fd::OwnedFd, requested: ListenAddr, name: String) -> NamedSocket {
    let socket = Socket::from(fd);
    let bound = describe_local(&socket, &requested);
    let local = socket.local_addr().ok().filter(|a| a.as_socket().is_some());
    NamedSocket { socket: Arc::new(HeldSocket { socket, requested, bound, local }), name }
}

/// The set of sockets for `specs` (a config edit): the sockets of addresses already held are
/// kept (renamed if need be), new addresses are bound. On a failure nothing is bound.
pub fn rebind(specs: &[ListenSpec], held: &[NamedSocket]) -> Result<Vec<NamedSocket>, BindError> {
    let is_held = |spec: &ListenSpec| held.iter().any(|h| h.requested == spec.addr);
    let fresh: Vec<ListenSpec> = specs.iter().filter(|spec| !is_held(spec)).cloned().collect();
    let mut fresh = bind_all(&fresh)?.into_iter();
    let mut set = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let kept = held.iter().find(|h| h.requested == spec.addr).map(|h| Arc::clone(&h.socket));
        let Some(socket) = kept.or_else(|| fresh.next().map(|n| n.socket)) else { continue };
        set.push(NamedSocket { socket, name: spec.name.clone().unwrap_or_else(|| format!("listen{index}")) });
    }
    Ok(set)
}

fn backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .map_or(MAX_BACKLOG, |somaxconn| somaxconn.clamp(128, MAX_BACKLOG))
}

fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// `:PORT`: one dual-stack IPv6 socket where the host has IPv6, else IPv4 only.
fn bind_any_interface(port: u16, backlog: i32) -> io::Result<Socket> {
    let dual_stack = || -> io::Result<Socket> {
        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_only_v6(false)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(socket)
    };
    match dual_stack() {
        Ok(socket) => Ok(socket),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(e),
        Err(_) => bind_tcp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), backlog),
    }
}

/// A Unix socket; a stale socket file (nobody accepting) is replaced, a live one or a
/// non-socket file is an error.
fn bind_unix(path: &Path, backlog: i32) -> Result<Socket, BindFailure> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(BindFailure::NotASocket);
        }
        if UnixStream::connect(path).is_ok() {
            return Err(BindFailure::Io(io::Error::from(io::ErrorKind::AddrInUse)));
        }
        std::fs::remove_file(path).map_err(BindFailure::StaleFile)?;
    }
    let bind = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        socket.listen(backlog)?;
        Ok(socket)
    };
    bind().map_err(BindFailure::Io)
}

fn describe_local(socket: &Socket, requested: &ListenAddr) -> String {
    match requested {
        ListenAddr::Unix(path) => format!("unix:{}", path.display()),
        _ => match socket.local_addr().ok().and_then(|a| a.as_socket()) {
            Some(addr) => addr.to_string(),
            None => requested.to_string(),
        },
    }
}

/// `address already in use` rather than `Address already in use (os error 98)`.
fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::AddrNotAvailable => "address not available on this host".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}

/// Paths of Unix socket files, for the sentinel's clean-up list.
pub fn unix_paths(sockets: &[NamedSocket]) -> Vec<PathBuf> {
    sockets.iter().filter_map(|s| s.unix_path().map(Path::to_path_buf)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let tcp = |s: &str| ListenAddr::Tcp(s.parse().expect("valid socket address"));
        assert_eq!(parse_listen("127.0.0.1:8080").map(|s| s.addr), Ok(tcp("127.0.0.1:8080")));
        assert_eq!(parse_listen("[::1]:8080").map(|s| s.addr), Ok(tcp("[::1]:8080")));
        assert_eq!(parse_listen(":8080").map(|s| s.addr), Ok(ListenAddr::AnyInterface(8080)));
        assert_eq!(
            parse_listen("unix:/tmp/a.sock").map(|s| s.addr),
            Ok(ListenAddr::Unix("/tmp/a.sock".into()))
        );
        let named = parse_listen("http=localhost:80").expect("named address");
        assert_eq!(named.name.as_deref(), Some("http"));
        assert!(parse_listen("8080x").is_err());
        assert!(parse_listen("unix:").is_err());
        assert!(parse_listen("a:b=127.0.0.1:1").is_err());
        assert!(parse_listen("unix:/tmp/a\0b").is_err());
    }

    #[test]
    fn proxy_addresses() {
        let spec = parse_proxy("tcp:127.0.0.1:0").expect("raw tcp");
        assert!(spec.raw_tcp);
        assert_eq!(parse_proxy(":8080").map(|s| s.addr), Ok(ListenAddr::AnyInterface(8080)));
        assert!(parse_proxy("unix:/tmp/a.sock").is_err());
        assert!(parse_proxy("nowhere").is_err());
    }

    #[test]
    fn port_zero_reports_the_port_it_got() {
        let held = bind_all(&[parse_listen("127.0.0.1:0").expect("valid")]).expect("binds");
        assert!(held[0].bound.starts_with("127.0.0.1:"));
        assert!(!held[0].bound.ends_with(":0"));
        assert_eq!(held[0].name, "listen0");
    }

    #[test]
    fn busy_port_names_the_address() {
        let first = bind_all(&[parse_listen("127.0.0.1:0").expect("valid")]).expect("binds");
        let busy = parse_listen(&first[0].bound).expect("valid");
        let error = bind_all(&[busy]).expect_err("port is held");
        assert_eq!(error.to_string(), format!("cannot listen on {}: address already in use", first[0].bound));
    }

    #[test]
    fn any_interface_takes_ipv4_and_ipv6_on_one_socket() {
        let held = bind_all(&[parse_listen(":0").expect("valid")]).expect("binds");
        let port = held[0].bound.rsplit(':').next().expect("port").to_owned();
        assert!(
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok(),
            "IPv4 reaches {}",
            held[0].bound
        );
        if held[0].bound.starts_with('[') {
            assert!(std::net::TcpStream::connect(format!("[::1]:{port}")).is_ok(), "IPv6 reaches it too");
        }
    }

    #[test]
    fn rebind_keeps_held_addresses_and_binds_new_ones() {
        let held = bind_all(&[parse_listen("127.0.0.1:0").expect("valid")]).expect("binds");
        let kept_fd = held[0].raw_fd();
        let specs =
            [parse_listen("web=127.0.0.1:0").expect("valid"), parse_listen("[::1]:0").expect("valid")];
        let set = rebind(&specs, &held).expect("rebinds");
        assert_eq!(set.len(), 2);
        assert_eq!((set[0].raw_fd(), set[0].name.as_str()), (kept_fd, "web"), "same socket, new name");
        assert_eq!(held[0].name, "listen0", "the old set keeps its name");
        let smaller = rebind(&specs[1..], &set).expect("rebinds");
        assert_eq!(smaller.len(), 1, "the first address is no longer wanted");
        assert_eq!(smaller[0].name, "listen0");
        drop(held);
        assert_eq!(Arc::strong_count(&set[0].socket), 1, "still open while a set holds it");
    }

    #[test]
    fn a_failed_bind_leaves_no_socket_file() {
        let dir = std::env::temp_dir().join(format!("devserve-sockets-fail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("first.sock");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let busy = taken.local_addr().expect("addr").to_string();
        let specs = [
            parse_listen(&format!("unix:{}", path.display())).expect("valid"),
            parse_listen(&busy).expect("valid"),
        ];
        assert!(bind_all(&specs).is_err());
        assert!(!path.exists(), "the first socket's file is removed");
        std::fs::remove_dir(&dir).expect("clean up");
    }

    #[test]
    fn a_shut_down_socket_is_rearmed_on_the_same_port() {
        let held = bind_all(&[parse_listen("127.0.0.1:0").expect("valid")]).expect("binds");
        assert!(!held[0].rearm().expect("check"), "a listening socket is left alone");
        // What a worker calling shutdown() on its fd 3 does to everyone's socket.
        nix::sys::socket::shutdown(held[0].raw_fd(), nix::sys::socket::Shutdown::Both).expect("shutdown");
        assert!(std::net::TcpStream::connect(&held[0].bound).is_err(), "refused after shutdown");
        assert!(held[0].rearm().expect("rearm"), "it had stopped listening");
        assert!(std::net::TcpStream::connect(&held[0].bound).is_ok(), "listening again, same port");
        assert!(!held[0].rearm().expect("check"), "and it stays so");
    }

    #[test]
    fn stale_unix_socket_is_replaced() {
        let dir = std::env::temp_dir().join(format!("devserve-sockets-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("app.sock");
        let spec = parse_listen(&format!("unix:{}", path.display())).expect("valid");
        // A socket file nobody listens on, as a killed server leaves it. Bound without
        // listening: a child another test forks meanwhile may hold the descriptor a moment, and
        // a listening one would then still accept.
        let stale = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        stale.bind(&SockAddr::unix(&path).expect("path")).expect("bind");
        drop(stale);
        assert!(path.exists(), "closing leaves the file behind");
        let held = bind_all(std::slice::from_ref(&spec)).expect("stale file replaced");
        let error = bind_all(std::slice::from_ref(&spec)).expect_err("live socket is in use");
        assert!(error.to_string().ends_with("address already in use"));
        drop(held);
        assert!(!path.exists(), "dropping the socket removes its file");
        std::fs::remove_dir(&dir).expect("clean up");
    }
}
