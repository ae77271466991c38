//! `--proxy https://ADDR`: the TLS handshake (rustls through tokio-rustls, ALPN `h2` then
//! `http/1.1`, within [`HANDSHAKE_TIMEOUT`]), then the same HTTP service as the plain front door on
//! the decrypted stream. A handshake that fails concerns its client only: one line per kind of
//! failure a minute ([`super::state::Shared::client_problem`]), and the front door serves on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::http;
use super::state::Shared;

/// A client that has not finished its handshake within this time is disconnected.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one client connection over TLS until it closes.
pub(crate) async fn serve_client(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    client: u64,
    config: Arc<rustls::ServerConfig>,
) {
    // Plain HTTP sent to the TLS port: its first byte is a letter, never a TLS record's 0x16.
    let mut first = [0u8; 1];
    if matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_alphabetic()) {
        shared.client_problem(
            "plain-http",
            format!("{peer} spoke plain HTTP to the HTTPS front door; use https://"),
        );
        return;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await {
        Ok(Ok(tls)) => http::serve_client(shared, tls, peer, client, true).await,
        Ok(Err(error)) => {
            shared.client_problem("handshake", format!("TLS handshake with {peer} failed: {error}"));
        }
        Err(_) => shared.client_problem(
            "handshake-timeout",
            format!("{peer} did not finish its TLS handshake within {}s", HANDSHAKE_TIMEOUT.as_secs()),
        ),
    }
}
