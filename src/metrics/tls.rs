//! TLS counters of one shard: handshakes completed, handshakes failed by reason, and errors of
//! established TLS sessions by reason (`roomcast_tls_*` in docs/METRICS.md).
//!
//! Owner: the shard thread whose `ShardMetrics` holds it (`conn::tls` counts into it while it reads,
//! the shard counts refusals at accept and handshake timeouts at its sweep).

use super::cell::{Counter, Gauge};

/// Why a TLS handshake failed or an established TLS session was closed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// The client spoke plain HTTP or plain WebSocket to the TLS port.
    Plaintext,
    /// The handshake did not complete within `--handshake-timeout`.
    Timeout,
    /// A record that does not parse or does not decrypt (garbage, a corrupted record).
    BadRecord,
    /// The peer closed in the middle of the handshake, after sending part of it (a truncated record).
    Truncated,
    /// A client certificate nobody asked for.
    ClientCert,
    /// Any other TLS protocol violation or incompatibility (no common version, cipher suite or
    /// ALPN protocol, a message out of order).
    Protocol,
    /// Refused at accept: the shard already had `--tls-max-handshakes` handshakes in progress and
    /// 16 times as many connections waiting for a slot.
    Overloaded,
}

impl TlsFailure {
    /// Every reason, in label order.
    pub(crate) const ALL: [TlsFailure; 7] = [
        TlsFailure::Plaintext,
        TlsFailure::Timeout,
        TlsFailure::BadRecord,
        TlsFailure::Truncated,
        TlsFailure::ClientCert,
        TlsFailure::Protocol,
        TlsFailure::Overloaded,
    ];

    /// Number of reasons.
    pub(crate) const COUNT: usize = Self::ALL.len();

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TlsFailure::Plaintext => "plaintext",
            TlsFailure::Timeout => "timeout",
            TlsFailure::BadRecord => "bad_record",
            TlsFailure::Truncated => "truncated",
            TlsFailure::ClientCert => "client_cert",
            TlsFailure::Protocol => "protocol",
            TlsFailure::Overloaded => "overloaded",
        }
    }

    /// Position in [`TlsFailure::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One shard's TLS counters (see the module docs for ownership).
#[derive(Debug, Default)]
pub(crate) struct TlsMetrics {
    /// Handshakes completed.
    pub(crate) handshakes: Counter,
    /// Handshakes that failed (or were refused), by [`TlsFailure::index`].
    pub(crate) handshake_failures: [Counter; TlsFailure::COUNT],
    /// Established sessions closed for a TLS error, by [`TlsFailure::index`].
    pub(crate) session_errors: [Counter; TlsFailure::COUNT],
    /// Connections waiting for a handshake slot (set by the shard whenever its queue changes; one that
    /// closed while waiting leaves it at the next sweep).
    pub(crate) waiting: Gauge,
}

impl TlsMetrics {
    /// Counts a failed or refused handshake.
    pub(crate) fn handshake_failed(&self, why: TlsFailure) {
        self.handshake_failures[why.index()].inc();
    }

    /// Counts an established session closed for a TLS error.
    pub(crate) fn session_error(&self, why: TlsFailure) {
        self.session_errors[why.index()].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, reason) in TlsFailure::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{}", reason.as_str());
        }
    }
}
