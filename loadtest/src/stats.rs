//! Per-worker measurements (HdrHistograms in microseconds and counters) and their merge.

use crate::accounting::{Recipient, RoomTotals, SeenAny};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Highest value a histogram tracks: one hour in microseconds.
pub const MAX_US: u64 = 3_600_000_000;

/// A new histogram with 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

/// Records a nanosecond duration as microseconds, saturating into range.
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    let us = (ns / 1_000).clamp(1, MAX_US);
    h.saturating_record(us);
}

/// Everything one worker measured; merged into one at the end.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency from intended send time to receipt (coordinated-omission corrected).
    pub corrected: Histogram<u64>,
    /// Latency from actual send time to receipt.
    pub raw: Histogram<u64>,
    /// `corrected`, split by kind: new messages, and edits (`--edit-fraction`).
    pub corrected_messages: Histogram<u64>,
    pub corrected_edits: Histogram<u64>,
    /// Scheduled sends in the measured window that went out as an `edit`.
    pub edits_sent: u64,
    /// `typing` commands sent in the measured window, and `typing` events received from its start.
    pub typing_sent: u64,
    pub typing_received: u64,
    /// How late sends left compared to their schedule.
    pub send_lag: Histogram<u64>,
    /// Time from connect start (intended) to the upgrade response.
    pub handshake: Histogram<u64>,
    /// Ping to pong round trips (hold scenario).
    pub ping_rtt: Histogram<u64>,
    /// One value per receiving connection: its own corrected p99 (the per-connection spread).
    pub conn_p99: Histogram<u64>,
    pub sent: u64,
    pub sent_warmup: u64,
    pub delivered: u64,
    pub delivered_warmup: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub misrouted: u64,
    pub foreign_frames: u64,
    pub connects_ok: u64,
    pub connects_failed: u64,
    /// Handshakes in which the server accepted permessage-deflate.
    pub deflate_negotiated: u64,
    /// TLS handshakes completed in full and by resuming a session.
    pub tls_full: u64,
    pub tls_resumed: u64,
    /// Bytes read from and written to the sockets (WebSocket frames and handshakes).
    pub wire_in: u64,
    pub wire_out: u64,
    pub reconnects: u64,
    pub disconnects: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
    pub server_pings: u64,
    /// Incoming frames by type (`text`, `binary`, or the JSON `type` field).
    pub frames_by_type: BTreeMap<String, u64>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    pub rooms: Vec<RoomTotals>,
    /// Avalanche: from the start of a successful reconnect to the end of its replay (the last
    /// replayed message, or `joined` when nothing was missed), confirmed by a live message.
    pub catchup: Histogram<u64>,
    /// Avalanche: like `catchup`, but from the first reconnect attempt since the connection was
    /// lost (failed attempts and their backoff included).
    pub recovery: Histogram<u64>,
    /// Avalanche: from the start of a successful reconnect to its first live message.
    pub first_live: Histogram<u64>,
    /// Avalanche: messages received as resume catch-up (ids up to the reconnect's `joined.last_id`).
    pub replayed: u64,
    /// Avalanche: reconnected clients still waiting for their first live message at the end.
    pub not_caught_up: u64,
    /// Avalanche: recipients without a joined connection when the run ended.
    pub not_connected_at_end: u64,
    pub reconnect_attempts: u64,
    pub reconnect_failures: u64,
    /// Failed reconnect attempts by kind.
    pub reconnect_errors: BTreeMap<String, u64>,
    /// Avalanche: failed first connects tried again, and why they failed.
    pub first_connect_retries: u64,
    pub first_connect_retry_errors: BTreeMap<String, u64>,
    /// Measured messages that reached at least one recipient.
    pub seen_any: SeenAny,
    /// Avalanche: every counting recipient's arrivals with its room, for exact loss per message.
    pub recipients: Vec<(u32, Recipient)>,
}

impl Stats {
    pub fn new(rooms: usize) -> Stats {
        Stats {
            corrected: new_hist(),
            raw: new_hist(),
            corrected_messages: new_hist(),
            corrected_edits: new_hist(),
            edits_sent: 0,
            typing_sent: 0,
            typing_received: 0,
            send_lag: new_hist(),
            handshake: new_hist(),
            ping_rtt: new_hist(),
            conn_p99: new_hist(),
            sent: 0,
            sent_warmup: 0,
            delivered: 0,
            delivered_warmup: 0,
            duplicates: 0,
            reordered: 0,
            misrouted: 0,
            foreign_frames: 0,
            connects_ok: 0,
            deflate_negotiated: 0,
            tls_full: 0,
            tls_resumed: 0,
            wire_in: 0,
            wire_out: 0,
            connects_failed: 0,
            reconnects: 0,
            disconnects: 0,
            pings_sent: 0,
            pongs_received: 0,
            server_pings: 0,
            frames_by_type: BTreeMap::new(),
            errors: BTreeMap::new(),
            rooms: vec![RoomTotals::default(); rooms],
            catchup: new_hist(),
            recovery: new_hist(),
            first_live: new_hist(),
            replayed: 0,
            not_caught_up: 0,
            not_connected_at_end: 0,
            reconnect_attempts: 0,
            reconnect_failures: 0,
            reconnect_errors: BTreeMap::new(),
            first_connect_retries: 0,
            first_connect_retry_errors: BTreeMap::new(),
            seen_any: SeenAny::default(),
            recipients: Vec::new(),
        }
    }

    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    pub fn frame_type(&mut self, ty: &str) {
        if let Some(v) = self.frames_by_type.get_mut(ty) {
            *v += 1;
        } else {
            self.frames_by_type.insert(ty.to_string(), 1);
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        let _ = self.corrected.add(&o.corrected);
        let _ = self.raw.add(&o.raw);
        let _ = self.corrected_messages.add(&o.corrected_messages);
        let _ = self.corrected_edits.add(&o.corrected_edits);
        self.edits_sent += o.edits_sent;
        self.typing_sent += o.typing_sent;
        self.typing_received += o.typing_received;
        let _ = self.send_lag.add(&o.send_lag);
        let _ = self.handshake.add(&o.handshake);
        let _ = self.ping_rtt.add(&o.ping_rtt);
        let _ = self.conn_p99.add(&o.conn_p99);
        self.sent += o.sent;
        self.sent_warmup += o.sent_warmup;
        self.delivered += o.delivered;
        self.delivered_warmup += o.delivered_warmup;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.misrouted += o.misrouted;
        self.foreign_frames += o.foreign_frames;
        self.connects_ok += o.connects_ok;
        self.deflate_negotiated += o.deflate_negotiated;
        self.tls_full += o.tls_full;
        self.tls_resumed += o.tls_resumed;
        self.wire_in += o.wire_in;
        self.wire_out += o.wire_out;
        self.connects_failed += o.connects_failed;
        self.reconnects += o.reconnects;
        self.disconnects += o.disconnects;
        self.pings_sent += o.pings_sent;
        self.pongs_received += o.pongs_received;
        self.server_pings += o.server_pings;
        for (k, v) in &o.frames_by_type {
            *self.frames_by_type.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        if self.rooms.len() < o.rooms.len() {
            self.rooms.resize(o.rooms.len(), RoomTotals::default());
        }
        for (a, b) in self.rooms.iter_mut().zip(&o.rooms) {
            a.merge(b);
        }
        let _ = self.catchup.add(&o.catchup);
        let _ = self.recovery.add(&o.recovery);
        let _ = self.first_live.add(&o.first_live);
        self.replayed += o.replayed;
        self.not_caught_up += o.not_caught_up;
        self.not_connected_at_end += o.not_connected_at_end;
        self.reconnect_attempts += o.reconnect_attempts;
        self.reconnect_failures += o.reconnect_failures;
        for (k, v) in &o.reconnect_errors {
            *self.reconnect_errors.entry(k.clone()).or_default() += v;
        }
        self.first_connect_retries += o.first_connect_retries;
        for (k, v) in &o.first_connect_retry_errors {
            *self.first_connect_retry_errors.entry(k.clone()).or_default() += v;
        }
        self.seen_any.merge(&o.seen_any);
        self.recipients.extend(o.recipients.iter().cloned());
    }

    /// Room totals summed over all rooms.
    pub fn room_sum(&self) -> RoomTotals {
        let mut t = RoomTotals::default();
        for r in &self.rooms {
            t.merge(r);
        }
        t
    }

    pub fn expected(&self) -> u64 {
        self.rooms.iter().map(RoomTotals::expected).sum()
    }

    pub fn lost(&self) -> u64 {
        self.rooms.iter().map(RoomTotals::lost).sum()
    }
}
