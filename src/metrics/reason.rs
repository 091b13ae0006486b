//! Why a connection was closed: the `reason` label of `roomcast_connections_closed_total`.
//!
//! The reason is decided where the close is decided (`session::send::close_session`, HTTP error responses, the
//! sweep's handshake timeout, a failed write, the acceptor's over-capacity path) and stored on the
//! connection; the reap counts it once. A connection closed without a recorded reason (the peer hung
//! up, a `Connection: close` response) counts as `normal`.

/// The closing reasons. `RateLimit` and `AuthFailure` are for the security layer: pass them to
/// `session::send::close_session` (or set them with `Conn::set_close_reason` before an HTTP refusal) where a
/// client is dropped for sending too fast or for a bad token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer closed, or the server did as part of normal operation (close handshake, shutdown,
    /// `Connection: close`).
    Normal,
    /// The client broke the WebSocket or HTTP protocol (close 1002/1007/1009, HTTP 4xx on the request).
    ProtocolError,
    /// The client did not keep up with its output queue (close 1013).
    SlowConsumer,
    /// The client sent faster than allowed (set by the security layer).
    RateLimit,
    /// The handshake or an idle HTTP keep-alive connection ran past `--handshake-timeout`.
    Timeout,
    /// The client failed authentication (set by the security layer).
    AuthFailure,
    /// The server was at `--max-connections` (HTTP 503, or closed unread beyond the slack), or could
    /// not read a resuming client's missed messages now (history readers busy: close 1013).
    OverLimit,
    /// A socket error (write failed, registration failed).
    Error,
    /// The server API closed it (disconnect or ban of its user).
    Moderation,
}

impl CloseReason {
    /// Every reason, in label order.
    pub(crate) const ALL: [CloseReason; 9] = [
        CloseReason::Normal,
        CloseReason::ProtocolError,
        CloseReason::SlowConsumer,
        CloseReason::RateLimit,
        CloseReason::Timeout,
        CloseReason::AuthFailure,
        CloseReason::OverLimit,
        CloseReason::Error,
        CloseReason::Moderation,
    ];

    /// Number of reasons.
    pub(crate) const COUNT: usize = Self::ALL.len();

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Normal => "normal",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::RateLimit => "rate_limit",
            CloseReason::Timeout => "timeout",
            CloseReason::AuthFailure => "auth_failure",
            CloseReason::OverLimit => "over_limit",
            CloseReason::Error => "error",
            CloseReason::Moderation => "moderation",
        }
    }

    /// Position in [`CloseReason::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{}", reason.as_str());
        }
    }
}
