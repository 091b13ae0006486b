//! The counters one shard thread writes: connections, closes by reason, messages, deliveries, bytes,
//! `error` frames by code, room memberships, history requests and the shard's latency histograms.
//!
//! Owner: the shard thread whose `ShardCtx` holds it (every update goes through `ShardCtx::metrics`).
//! The scrape reads all shards' structs and sums them.

use super::cell::{Counter, Gauge};
use super::histogram::Histogram;
use super::reason::CloseReason;
use super::tls::TlsMetrics;
use crate::types::ErrorCode;

/// What a history read was for (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistoryKind {
    /// `GET /rooms/{room}/messages`.
    Rest,
    /// A JSON `history` command.
    Command,
    /// A catch-up page for a reconnecting member (`since`).
    Resume,
}

impl HistoryKind {
    /// Every kind, in label order.
    pub(crate) const ALL: [HistoryKind; 3] = [HistoryKind::Rest, HistoryKind::Command, HistoryKind::Resume];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Rest => "rest",
            HistoryKind::Command => "command",
            HistoryKind::Resume => "resume",
        }
    }
}

/// A moderation decision (`roomcast_moderation_total`'s `action` and `reason` labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moderated {
    /// Refused for a blocklist match.
    Blocked,
    /// Published with its blocklist matches masked.
    Masked,
    /// Refused as a repeat.
    Repeated,
}

impl Moderated {
    /// Every decision, in counter order.
    pub(crate) const ALL: [Moderated; 3] = [Moderated::Blocked, Moderated::Masked, Moderated::Repeated];

    /// The `(action, reason)` labels.
    pub(crate) fn labels(self) -> (&'static str, &'static str) {
        match self {
            Moderated::Blocked => ("reject", "blocklist"),
            Moderated::Masked => ("mask", "blocklist"),
            Moderated::Repeated => ("reject", "repeat"),
        }
    }
}

/// One shard's metrics (see the module docs for ownership).
#[derive(Debug)]
pub(crate) struct ShardMetrics {
    /// Connections in this shard's slab.
    pub(crate) connections_open: Gauge,
    /// Connections reaped, by [`CloseReason::index`].
    pub(crate) closed: [Counter; CloseReason::COUNT],
    /// Chat messages published from this shard's clients (text frames and JSON `message` commands).
    pub(crate) messages_received: Counter,
    /// Binary frames relayed from this shard's clients.
    pub(crate) binary_received: Counter,
    /// Frames queued (or held for a resuming member) by fan-out, one per recipient.
    pub(crate) deliveries: Counter,
    /// Bytes read from client sockets.
    pub(crate) bytes_in: Counter,
    /// Bytes written to client sockets.
    pub(crate) bytes_out: Counter,
    /// WebSocket connections that negotiated permessage-deflate.
    pub(crate) deflate_negotiated: Counter,
    /// Broadcast messages this shard compressed (once per message and format, not per recipient).
    pub(crate) deflate_compressed: Counter,
    /// Their payload bytes before compression.
    pub(crate) deflate_bytes_in: Counter,
    /// Their payload bytes after compression.
    pub(crate) deflate_bytes_out: Counter,
    /// Broadcast messages for deflate members left uncompressed (below `--deflate-min-bytes`, or
    /// not shrinking).
    pub(crate) deflate_left_plain: Counter,
    /// Compressed client messages inflated.
    pub(crate) inflated: Counter,
    /// Compressed client messages that failed to inflate: [invalid data, over the size limit].
    pub(crate) inflate_failures: [Counter; 2],
    /// `error` frames sent, by [`ErrorCode::index`].
    pub(crate) error_frames: [Counter; ErrorCode::COUNT],
    /// Moderation decisions, by [`Moderated`] (as `usize`).
    pub(crate) moderation: [Counter; 3],
    /// Room memberships of this shard's connections.
    pub(crate) room_members: Gauge,
    /// History reads submitted, by kind (index in [`HistoryKind::ALL`]).
    pub(crate) history_requests: [Counter; 3],
    /// Submission of a history read to its answer arriving back on the shard.
    pub(crate) history_latency: Histogram,
    /// Publish (message decoded) to the last local recipient queued, per delivery handled.
    pub(crate) fanout_latency: Histogram,
    /// Work per event-loop turn (after `poll` returns until the turn ends).
    pub(crate) loop_iteration: Histogram,
    /// Handshakes and failures of TLS connections (all zero without `--tls-cert`).
    pub(crate) tls: TlsMetrics,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            connections_open: Gauge::default(),
            closed: Default::default(),
            messages_received: Counter::default(),
            binary_received: Counter::default(),
            deliveries: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            deflate_negotiated: Counter::default(),
            deflate_compressed: Counter::default(),
            deflate_bytes_in: Counter::default(),
            deflate_bytes_out: Counter::default(),
            deflate_left_plain: Counter::default(),
            inflated: Counter::default(),
            inflate_failures: Default::default(),
            error_frames: std::array::from_fn(|_| Counter::default()),
            moderation: Default::default(),
            room_members: Gauge::default(),
            history_requests: Default::default(),
            history_latency: Histogram::latency(),
            fanout_latency: Histogram::latency(),
            loop_iteration: Histogram::latency(),
            tls: TlsMetrics::default(),
        }
    }
}

impl ShardMetrics {
    /// Counts a reaped connection.
    #[inline]
    pub(crate) fn closed(&self, reason: CloseReason) {
        self.closed[reason.index()].inc();
        self.connections_open.add(-1);
    }

    /// Counts a connection closed before it entered the slab (it was never counted as open).
    #[inline]
    pub(crate) fn dropped(&self, reason: CloseReason) {
        self.closed[reason.index()].inc();
    }

    /// Counts an `error` frame.
    #[inline]
    pub(crate) fn error_frame(&self, code: ErrorCode) {
        self.error_frames[code.index()].inc();
    }

    /// Counts a moderation decision.
    #[inline]
    pub(crate) fn moderated(&self, decision: Moderated) {
        self.moderation[decision as usize].inc();
    }

    /// Counts a history read submitted.
    #[inline]
    pub(crate) fn history_request(&self, kind: HistoryKind) {
        self.history_requests[kind as usize].inc();
    }
}
