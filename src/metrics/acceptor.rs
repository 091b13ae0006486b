//! The acceptor thread's counters. Owner: the acceptor thread (the only writer).

use super::cell::Counter;

/// What the acceptor counts.
#[derive(Debug, Default)]
pub(crate) struct AcceptorMetrics {
    /// Connections returned by `accept`.
    pub(crate) accepted: Counter,
    /// Connections closed unread because the server was past `--max-connections` plus the slack
    /// (part of `closed{reason="over_limit"}`).
    pub(crate) refused: Counter,
}
