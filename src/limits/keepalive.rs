//! TCP keepalive on every accepted socket: the kernel finds peers that vanished without a FIN or RST
//! (powered off, NAT entry dropped) even when WebSocket heartbeats are off or the connection is still
//! in its HTTP phase.
//!
//! Probes start after [`IDLE`] of silence, repeat every [`INTERVAL`], and after [`RETRIES`] unanswered
//! probes the socket fails; the shard then reaps the connection like any other closed one.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Silence before the first probe.
pub(crate) const IDLE: Duration = Duration::from_secs(60);
/// Time between probes.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is declared dead.
pub(crate) const RETRIES: u32 = 6;

/// Turns keepalive on for `stream`; a failure is logged and otherwise ignored (the heartbeat remains).
pub(crate) fn enable(stream: &mio::net::TcpStream) {
    let params = TcpKeepalive::new().with_time(IDLE).with_interval(INTERVAL).with_retries(RETRIES);
    if let Err(err) = SockRef::from(stream).set_tcp_keepalive(&params) {
        tracing::debug!(%err, "could not enable TCP keepalive");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_set_on_accepted_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        let stream = mio::net::TcpStream::from_std(server_side);
        enable(&stream);
        let sock = SockRef::from(&stream);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"), IDLE);
        assert_eq!(sock.tcp_keepalive_interval().expect("TCP_KEEPINTVL"), INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().expect("TCP_KEEPCNT"), RETRIES);
    }
}
