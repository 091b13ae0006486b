//! What a worker does with connection events: readiness, marker parsing, delivery accounting,
//! latency recording and frame/type counters. Kept apart from the I/O loop so it borrows only
//! the statistics, never the connection table.

use crate::conn::{Event, Meta};
use crate::marker;
use crate::protocol::{self, Format, Incoming};
use crate::spread::ConnHist;
use crate::stats::{Stats, new_hist, record_ns};
use hdrhistogram::Histogram;

/// What carried a marker: a new message (with its server id, json) or an edit's new content.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Message(Option<u64>),
    Edit,
}

pub struct Sink {
    pub stats: Stats,
    /// Corrected latencies since the last hand-off to the progress line.
    pub interval: Histogram<u64>,
    pub run_id: u64,
    pub format: Format,
    pub rooms: u32,
    /// Start of the measured window; `u64::MAX` before the run starts.
    pub warmup_end: u64,
    /// Receipt time for the events being processed.
    pub now: u64,
    /// Connections that became ready on their first attempt, not yet published.
    pub ready_delta: u64,
    /// Reconnects that became ready, not yet published.
    pub rejoined_delta: u64,
    /// Measured unique deliveries not yet published.
    pub delivered_delta: u64,
}

impl Sink {
    pub fn new(run_id: u64, format: Format, rooms: u32) -> Sink {
        Sink {
            stats: Stats::new(rooms as usize),
            interval: new_hist(),
            run_id,
            format,
            rooms,
            warmup_end: u64::MAX,
            now: 0,
            ready_delta: 0,
            rejoined_delta: 0,
            delivered_delta: 0,
        }
    }

    fn mark_ready(&mut self, meta: &mut Meta) {
        meta.ready = true;
        if !meta.settled {
            meta.settled = true;
            if meta.attempts <= 1 {
                self.stats.connects_ok += 1;
                self.ready_delta += 1;
            } else {
                self.rejoined_delta += 1;
            }
        }
    }

    pub fn on_event(&mut self, meta: &mut Meta, ev: Event<'_>) {
        match ev {
            Event::Open { deflate, resumed } => {
                if deflate {
                    self.stats.deflate_negotiated += 1;
                }
                match resumed {
                    Some(true) => self.stats.tls_resumed += 1,
                    Some(false) => self.stats.tls_full += 1,
                    None => {}
                }
                record_ns(&mut self.stats.handshake, self.now.saturating_sub(meta.connect_ns));
                if self.format == Format::Text {
                    self.mark_ready(meta);
                }
            }
            Event::Ping => self.stats.server_pings += 1,
            Event::Pong(p) => {
                self.stats.pongs_received += 1;
                if let Ok(b) = <[u8; 8]>::try_from(p) {
                    record_ns(&mut self.stats.ping_rtt, self.now.saturating_sub(u64::from_be_bytes(b)));
                }
            }
            Event::Binary => self.stats.frame_type("binary"),
            Event::Text(bytes) => {
                let Ok(text) = std::str::from_utf8(bytes) else {
                    self.stats.frame_type("invalid_utf8");
                    return;
                };
                match protocol::decode(self.format, text) {
                    Incoming::Message { content, id } => {
                        self.stats.frame_type("message");
                        if let Some(id) = id {
                            meta.last_id = Some(meta.last_id.map_or(id, |l| l.max(id)));
                            self.on_catchup(meta, id);
                        }
                        self.on_content(meta, &content, Kind::Message(id));
                    }
                    Incoming::Edited { content, seq } => {
                        self.stats.frame_type("edited");
                        if let Some(seq) = seq {
                            meta.last_id = Some(meta.last_id.map_or(seq, |l| l.max(seq)));
                            self.on_catchup(meta, seq);
                        }
                        self.on_content(meta, &content, Kind::Edit);
                    }
                    Incoming::Typing => {
                        self.stats.frame_type("typing");
                        if meta.counting && self.now >= self.warmup_end {
                            self.stats.typing_received += 1;
                        }
                    }
                    Incoming::Joined { last_id } => {
                        self.stats.frame_type("joined");
                        // A client that has seen no message yet resumes from its join.
                        if meta.last_id.is_none() {
                            meta.last_id = last_id;
                        }
                        if meta.catchup_from.is_some() {
                            meta.live_after = last_id;
                            meta.replay_done_ns = self.now;
                        }
                        self.mark_ready(meta);
                    }
                    Incoming::Error(code) => {
                        self.stats.frame_type("error");
                        self.stats.error("server_error_frame");
                        self.stats.error(&format!("server_error_{code}"));
                    }
                    Incoming::Other(ty) => self.stats.frame_type(&ty),
                    Incoming::Invalid => self.stats.frame_type("invalid"),
                }
            }
        }
    }

    /// After an avalanche reconnect, messages up to the reconnect's `joined.last_id` are replay;
    /// the first newer one is live and proves the replay complete. Catch-up runs from the reconnect
    /// to the last replayed message (or `joined` when nothing was missed); first-live to that live
    /// message, so it also includes waiting for a sender that is itself still reconnecting.
    fn on_catchup(&mut self, meta: &mut Meta, id: u64) {
        let (Some(from), Some(live_after)) = (meta.catchup_from, meta.live_after) else { return };
        if id > live_after {
            record_ns(&mut self.stats.catchup, meta.replay_done_ns.saturating_sub(from));
            if let Some(first) = meta.recover_from.take() {
                record_ns(&mut self.stats.recovery, meta.replay_done_ns.saturating_sub(first));
            }
            record_ns(&mut self.stats.first_live, self.now.saturating_sub(from));
            meta.catchup_from = None;
        } else {
            self.stats.replayed += 1;
            meta.replay_done_ns = self.now;
        }
    }

    fn on_content(&mut self, meta: &mut Meta, content: &str, kind: Kind) {
        let Some(m) = marker::parse(content) else {
            self.stats.foreign_frames += 1;
            return;
        };
        if m.run_id != self.run_id {
            self.stats.foreign_frames += 1;
            return;
        }
        if let Kind::Message(Some(id)) = kind
            && meta.sender == Some(m.sender)
        {
            meta.own_last_id = Some(id);
        }
        if m.sender % self.rooms.max(1) != meta.room {
            self.stats.misrouted += 1;
            return;
        }
        if !meta.counting {
            return;
        }
        let arrival = meta.recipient.record(m.sender, m.seq);
        if m.intended_ns < self.warmup_end {
            if arrival != crate::accounting::Arrival::Duplicate {
                self.stats.delivered_warmup += 1;
            }
            return;
        }
        match arrival {
            crate::accounting::Arrival::Duplicate => self.stats.duplicates += 1,
            a => {
                if a == crate::accounting::Arrival::Reordered {
                    self.stats.reordered += 1;
                }
                self.stats.delivered += 1;
                self.delivered_delta += 1;
                self.stats.seen_any.set(m.sender, m.seq);
                if let Some(r) = self.stats.rooms.get_mut(meta.room as usize) {
                    r.unique += 1;
                }
                let corrected = self.now.saturating_sub(m.intended_ns);
                record_ns(&mut self.stats.corrected, corrected);
                match kind {
                    Kind::Message(_) => record_ns(&mut self.stats.corrected_messages, corrected),
                    Kind::Edit => record_ns(&mut self.stats.corrected_edits, corrected),
                }
                meta.latency.get_or_insert_with(ConnHist::default).record(corrected / 1_000);
                record_ns(&mut self.interval, corrected);
                record_ns(&mut self.stats.raw, self.now.saturating_sub(m.sent_ns));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker::Marker;

    fn json_msg(id: u64, content: &str) -> String {
        format!(
            r#"{{"type":"message","id":{id},"room":"room-0","user":"u1","content":"{content}","ts":"2026-11-26T03:00:00.123Z","client_id":"c"}}"#
        )
    }

    #[test]
    fn json_frames_are_counted_and_markers_accounted() {
        let mut sink = Sink::new(7, Format::Json, 1);
        sink.warmup_end = 100;
        sink.now = 5_000_000;
        let mut meta = Meta { counting: true, ..Meta::default() };
        for f in [
            r#"{"type":"welcome","nick":"u0"}"#,
            r#"{"type":"presence","users":[]}"#,
            r#"{"type":"error","code":"x","message":"m"}"#,
            "garbage",
            r#"{"no":"type"}"#,
        ] {
            sink.on_event(&mut meta, Event::Text(f.as_bytes()));
        }
        assert!(!meta.ready);
        sink.on_event(&mut meta, Event::Text(br#"{"type":"joined","room":"room-0"}"#));
        assert!(meta.ready);
        let mut s = String::new();
        marker::format_into(
            &mut s,
            &Marker { run_id: 7, sender: 0, seq: 0, intended_ns: 1_000_000, sent_ns: 2_000_000 },
            40,
        );
        sink.on_event(&mut meta, Event::Text(json_msg(41, &s).as_bytes()));
        sink.on_event(&mut meta, Event::Text(json_msg(41, &s).as_bytes()));
        sink.on_event(&mut meta, Event::Text(json_msg(42, "lt:ffff:0:0:1:1:").as_bytes()));
        sink.on_event(&mut meta, Event::Text(&[0xff, 0xfe]));
        let st = &sink.stats;
        assert_eq!((st.delivered, st.duplicates, st.foreign_frames), (1, 1, 1));
        assert_eq!(meta.last_id, Some(42));
        assert_eq!(st.errors.get("server_error_frame"), Some(&1));
        assert_eq!(st.errors.get("server_error_x"), Some(&1));
        assert_eq!(st.frames_by_type.get("invalid"), Some(&2));
        assert_eq!(st.frames_by_type.get("invalid_utf8"), Some(&1));
        assert_eq!(st.corrected.len(), 1);
        assert_eq!(st.connects_ok, 1);
    }
}
