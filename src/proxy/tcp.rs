//! Raw TCP mode: connection-level routing for apps that do not speak HTTP (or whose protocol the
//! proxy should not touch).
//!
//! Owns one client connection: it is routed once, with the same hold rules as a request (held
//! while nothing serves; closed when the hold times out or the last build failed, since there is
//! no way to say why), connected to the chosen upstream (a refused connect is retried once on
//! another: no byte was read from the client yet), then copied both ways until either side
//! closes or `Close` arrives for its generation. The connection is one long-lived exchange of its
//! generation: it does not hold up `Drain` (the app is signalled and closes it its own way) but is
//! cut by `Close`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::state::{Refusal, Shared};
use super::upstream;

/// Serves one client connection until it closes.
pub(crate) async fn serve_client(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr, id: u64) {
    let mut retried = false;
    let mut avoid = None;
    let what = format!("TCP connection from {peer}");
    loop {
        let mut flight = match shared.route(0, avoid, &what, id).await {
            Ok(flight) => flight,
            Err(Refusal::ShuttingDown) => return,
            Err(Refusal::NotReady { .. } | Refusal::BuildFailed(_)) => {
                shared.count_failed();
                return;
            }
        };
        match upstream::connect(flight.upstream).await {
            Ok(mut upstream) => {
                flight.long_lived(&what);
                let closed = flight.closed();
                tokio::select! {
                    // Either side closing ends the connection; errors are the peers' business.
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    () = closed => {}
                }
                return;
            }
            Err(_) if !retried => {
                retried = true;
                shared.count_retry();
                avoid = Some(shared.avoid(flight.upstream));
            }
            Err(_) => {
                shared.count_failed();
                return;
            }
        }
    }
}
