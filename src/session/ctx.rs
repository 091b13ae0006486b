//! [`ShardCtx`]: the per-shard state every session works with, and [`Schedule`]: what the sessions
//! ask the reactor to do with their connections (write them, remove them).
//!
//! The session decides, the reactor acts: session code never flushes or deregisters a socket. It
//! records the connection in the [`Schedule`]; the shard loop (`reactor::shard`) writes the
//! connections scheduled for a flush in slices and reaps the ones scheduled for removal at the end
//! of the turn. A request list rather than a return value, because one input can touch several
//! connections and the hot path must not allocate per call.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use super::catchup_budget::CatchupBudget;
use super::gate::Gate;
use super::local::LocalRooms;
use crate::api::Api;
use crate::bus::ShardInbox;
use crate::config::Config;

use crate::metrics::ShardMetrics;
use crate::moderation::Moderator;
use crate::protocol::json::JsonParser;
use crate::render::{DeflateStats, FrameDeflater};
use crate::room::hub::Hub;
use crate::store::Store;
use crate::telemetry::Telemetry;
use crate::ws::deflate::Inflater;

/// How long a closing connection may linger for its peer's close (or its last bytes to drain)
/// before the shard drops it.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// The sessions' requests to the reactor for this turn.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    /// Connections with output to write, in the order they got it (the shard writes a bounded slice
    /// from the front each turn; see `reactor::shard::FLUSHES_PER_TURN`).
    flush: VecDeque<usize>,
    /// By slab key: already in `flush` (so a connection is queued once, with no hashing on the hot
    /// path; grown to the largest key seen).
    flush_queued: Vec<bool>,
    /// Connections to remove at the end of the turn.
    remove: Vec<usize>,
    /// Set view of `remove`.
    removing: HashSet<usize>,
}

impl Schedule {
    /// Makes sure connection `key` is written: queued once until the reactor writes it.
    pub(crate) fn flush(&mut self, key: usize) {
        if key >= self.flush_queued.len() {
            self.flush_queued.resize(key + 1, false);
        }
        if !std::mem::replace(&mut self.flush_queued[key], true) {
            self.flush.push_back(key);
        }
    }

    /// Asks for connection `key` to be removed at the end of the turn.
    pub(crate) fn remove(&mut self, key: usize) {
        if self.removing.insert(key) {
            self.remove.push(key);
        }
    }

    /// Whether connection `key` is to be removed.
    pub(crate) fn is_removing(&self, key: usize) -> bool {
        self.removing.contains(&key)
    }

    /// Whether any connection waits to be written.
    pub(crate) fn has_flushes(&self) -> bool {
        !self.flush.is_empty()
    }

    /// The next connection to write.
    pub(crate) fn next_flush(&mut self) -> Option<usize> {
        let key = self.flush.pop_front()?;
        self.flush_queued[key] = false;
        Some(key)
    }

    /// The next connection to remove.
    pub(crate) fn next_removal(&mut self) -> Option<usize> {
        let key = self.remove.pop()?;
        self.removing.remove(&key);
        Some(key)
    }
}

/// Per-shard state shared by every session on the shard.
pub(crate) struct ShardCtx {
    /// Index of this shard.
    pub(crate) shard: usize,
    /// Publish path and room table.
    pub(crate) hub: Arc<Hub>,
    /// Configuration.
    pub(crate) cfg: Arc<Config>,
    /// History reader (None without persistence).
    pub(crate) store: Option<Arc<Store>>,
    /// This shard's own inbox (history replies are sent to it).
    pub(crate) inbox: Arc<ShardInbox>,
    /// Open connections, all shards (the acceptor compares it with `max_connections`).
    pub(crate) open_conns: Arc<AtomicUsize>,
    /// Local members per room.
    pub(crate) local: LocalRooms,
    /// Reusable JSON parser.
    pub(crate) parser: JsonParser,
    /// Reusable buffer for encoding outgoing events.
    pub(crate) encode_buf: Vec<u8>,
    /// The shard's compressor of deflate broadcast frames (one per shard, not per connection).
    pub(crate) deflater: FrameDeflater,
    /// The shard's inflater, lent to one deflate connection's read batch at a time (taken, created
    /// on first use, then given back with [`ShardCtx::put_inflater`]).
    pub(crate) inflater: Option<Box<Inflater>>,
    /// What the sessions ask the reactor to do this turn.
    pub(crate) schedule: Schedule,
    /// Admission: auth, origins and rate limits (one per server, built from the configuration
    /// before the shards start).
    pub(crate) gate: Arc<Gate>,
    /// This shard's counters (this thread is their only writer).
    pub(crate) metrics: Arc<ShardMetrics>,
    /// Metrics registry and readiness, for `/metrics` and `/readyz`.
    pub(crate) telemetry: Arc<Telemetry>,
    /// The id space's name, announced in `welcome` (see `protocol::json::welcome`).
    pub(crate) epoch: Arc<str>,
    /// The server API (keys, bans and mutes, idempotency keys, connections by user).
    pub(crate) api: Arc<Api>,
    /// The server-wide budget of resume pages (`--catchup-budget`).
    pub(crate) catchup: Arc<CatchupBudget>,
    /// The content filter and repeat detector (`super::screen`).
    pub(crate) moderation: Arc<Moderator>,
    /// The ingress pause as last computed (see [`ShardCtx::refresh_ingress`]).
    ingress: Ingress,
    serial: u64,
    /// Messages the shard has taken from its inbox so far.
    inbox_taken: u64,
    /// Connections to close for flooding once `inbox_taken` reaches their mark.
    flood_closes: Vec<FloodClose>,
}

/// Longest wait, in cluster mode, for the echoes of a flooder's accepted messages to come back
/// from Redis before it is closed anyway.
pub(crate) const ECHO_WAIT: Duration = Duration::from_secs(3);

/// A connection condemned for flooding, closed once the inbox messages that were waiting when it
/// was condemned (the echoes of what it sent before, among them) have been handled. In cluster
/// mode the echoes first have to come back from Redis: the inbox mark is taken once they have
/// (`Hub::echoed`), or once [`ECHO_WAIT`] has passed.
#[derive(Debug, Clone, Copy)]
struct FloodClose {
    key: usize,
    serial: u64,
    /// Close once this many inbox messages have been taken.
    after: u64,
    /// Cluster mode: the echo mark to wait for first, and until when.
    echoes: Option<(u64, Instant)>,
}

/// The ingress pause (`Hub::ingress_paused`), computed from every sink, the sequencer and the inboxes
/// once per loop turn and again after every `Hub::ingress_recheck` frames a session took in between.
#[derive(Debug, Clone, Copy)]
struct Ingress {
    paused: bool,
    frames_left: usize,
    recheck: usize,
}

/// What a shard's sessions share with the rest of the server, handed to [`ShardCtx::new`].
pub(crate) struct Shared {
    /// Publish path and room table.
    pub(crate) hub: Arc<Hub>,
    /// Configuration.
    pub(crate) cfg: Arc<Config>,
    /// History reader (None without persistence).
    pub(crate) store: Option<Arc<Store>>,
    /// Open connections, all shards.
    pub(crate) open_conns: Arc<AtomicUsize>,
    /// Admission, built once from the configuration.
    pub(crate) gate: Arc<Gate>,
    /// Metrics registry and readiness.
    pub(crate) telemetry: Arc<Telemetry>,
    /// The id space's name (the store's, or a fresh one per start without persistence).
    pub(crate) epoch: Arc<str>,
    /// The server API.
    pub(crate) api: Arc<Api>,
    /// The server-wide budget of resume pages, one for every shard.
    pub(crate) catchup: Arc<CatchupBudget>,
    /// The content filter and repeat detector, one for every shard.
    pub(crate) moderation: Arc<Moderator>,
}

impl ShardCtx {
    /// `muted` while the server API has muted `user` in `room` (the user still receives the room;
    /// messages, edits and typing are refused).
    pub(crate) fn not_muted(&self, room: &str, user: &str) -> Result<(), crate::types::ClientError> {
        use crate::protocol::json::now_millis;
        match self.api.moderation.muted_until(room, user, now_millis) {
            None => Ok(()),
            Some(until) => {
                let left = (until - now_millis()).max(1);
                Err(crate::types::ClientError::new(
                    crate::types::ErrorCode::Muted,
                    format!("you are muted in {room:?} for {} more seconds", (left + 999) / 1000),
                ))
            }
        }
    }

    /// Fresh state for shard `shard`, whose inbox is `inbox`.
    pub(crate) fn new(shard: usize, inbox: Arc<ShardInbox>, shared: &Shared) -> Self {
        ShardCtx {
            metrics: shared.telemetry.shard(shard),
            telemetry: Arc::clone(&shared.telemetry),
            shard,
            hub: Arc::clone(&shared.hub),
            cfg: Arc::clone(&shared.cfg),
            store: shared.store.clone(),
            inbox,
            open_conns: Arc::clone(&shared.open_conns),
            local: LocalRooms::default(),
            parser: JsonParser::default(),
            encode_buf: Vec::with_capacity(1024),
            deflater: FrameDeflater::new(shared.cfg.deflate_level, shared.cfg.deflate_min_bytes),
            inflater: None,
            schedule: Schedule::default(),
            gate: Arc::clone(&shared.gate),
            epoch: Arc::clone(&shared.epoch),
            api: Arc::clone(&shared.api),
            catchup: Arc::clone(&shared.catchup),
            moderation: Arc::clone(&shared.moderation),
            ingress: Ingress { paused: false, frames_left: 0, recheck: shared.hub.ingress_recheck() },
            serial: 0,
            inbox_taken: 0,
            flood_closes: Vec::new(),
        }
    }

    /// Gives back the inflater a read batch borrowed, counting what it inflated.
    pub(crate) fn put_inflater(&mut self, inflater: Option<Box<Inflater>>) {
        if let Some(mut inflater) = inflater {
            self.metrics.inflated.add(inflater.take_inflated());
            inflater.release();
            self.inflater = Some(inflater);
        }
    }

    /// Adds what the deflater did since the last call to the shard's counters.
    pub(crate) fn count_deflate(&mut self) {
        let stats = self.deflater.take_stats();
        if stats != DeflateStats::default() {
            self.metrics.deflate_compressed.add(stats.compressed);
            self.metrics.deflate_bytes_in.add(stats.bytes_in);
            self.metrics.deflate_bytes_out.add(stats.bytes_out);
            self.metrics.deflate_left_plain.add(stats.left_plain);
        }
    }

    /// Looks at the queues again (the shard calls it once per loop turn).
    pub(crate) fn refresh_ingress(&mut self) {
        self.ingress.paused = self.hub.ingress_paused();
        self.ingress.frames_left = self.ingress.recheck;
    }

    /// Whether WebSocket input is paused, as of the last look.
    pub(crate) fn ingress_paused(&self) -> bool {
        self.ingress.paused
    }

    /// A session is about to take one more frame: whether input must pause first (looked at again
    /// once the frames allowed since the last look are used up).
    pub(crate) fn pause_before_frame(&mut self) -> bool {
        if self.ingress.frames_left == 0 {
            self.refresh_ingress();
        }
        self.ingress.frames_left -= 1;
        self.ingress.paused
    }

    /// A serial unique across shards (shard index in the low byte).
    pub(crate) fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        (self.serial << 8) | (self.shard as u64 & 0xff)
    }

    /// Counts one message taken from the shard's inbox (the shard calls it for each).
    pub(crate) fn took_from_inbox(&mut self) {
        self.inbox_taken += 1;
    }

    /// Asks for connection `key` (`serial`) to be closed for flooding once every message now in
    /// this shard's inbox has been handled. The inbox is FIFO and a publish pushes its delivery onto
    /// it before returning, so the echoes of the messages the connection sent so far come first. In
    /// cluster mode they are pushed when Redis sends them back: the mark is taken once every message
    /// accepted so far has come back (at most [`ECHO_WAIT`] later).
    pub(crate) fn close_after_inbox(&mut self, key: usize, serial: u64) {
        let after = self.inbox_taken + self.inbox.len() as u64;
        let echoes = self.hub.echo_mark().map(|mark| (mark, Instant::now() + ECHO_WAIT));
        self.flood_closes.push(FloodClose { key, serial, after, echoes });
    }

    /// The connections (`key`, `serial`) whose close [`Self::close_after_inbox`] asked for and whose
    /// mark the shard has reached; they are forgotten.
    pub(crate) fn due_closes(&mut self) -> Vec<(usize, u64)> {
        if self.flood_closes.is_empty() {
            return Vec::new();
        }
        let taken = self.inbox_taken;
        let now = Instant::now();
        for close in &mut self.flood_closes {
            if let Some((mark, until)) = close.echoes
                && (self.hub.echoed(mark) || now >= until)
            {
                // Back from Redis (or given up on): their deliveries are in the inbox now, so the
                // inbox is looked at after the mark.
                close.echoes = None;
                close.after = taken + self.inbox.len() as u64;
            }
        }
        let mut due = Vec::new();
        self.flood_closes.retain(|c| {
            if c.echoes.is_some() {
                return true;
            }
            let is_due = c.after <= taken;
            if is_due {
                due.push((c.key, c.serial));
            }
            !is_due
        });
        due
    }

    /// When a closing connection must be gone.
    pub(crate) fn linger_deadline(&self) -> Instant {
        Instant::now() + CLOSE_LINGER
    }
}
