//! What a connection's bytes mean: the HTTP and WebSocket sessions above the socket.
//!
//! The shard reads and writes; this layer decides what to answer. [`ShardCtx`] is the per-shard state
//! the sessions work with (hub, config, local room index, reusable parser and buffers, the lists of
//! connections to flush and to reap). [`http`] serves requests and performs the upgrade; [`ws`]
//! handles frames, commands, joins and leaves; [`catchup`] paces resume catch-up and `history`
//! replies by the client's reading; [`guard`] admits handshakes (origin, token, rooms), rate-limits
//! messages and runs heartbeats.

pub mod catchup;
pub mod guard;
pub mod http;
pub mod local;
pub mod ops;
pub mod ws;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use crate::bus::{HistoryPurpose, ShardInbox};
use crate::config::Config;
use crate::conn::{Conn, Phase};
use crate::metrics::{CloseReason, ShardMetrics};
use crate::ops::Telemetry;
use crate::protocol::json::JsonParser;
use crate::reactor::shard::CLOSE_LINGER;
use crate::room::fanout::Hub;
use crate::store::{HistoryPage, Store, StoreError};
use crate::types::ClientError;
use local::LocalRooms;

/// Per-shard state shared by every session on the shard.
pub struct ShardCtx {
    /// Index of this shard.
    pub shard: usize,
    /// Publish path and room table.
    pub hub: Arc<Hub>,
    /// Configuration.
    pub cfg: Arc<Config>,
    /// History reader (None without persistence).
    pub store: Option<Arc<Store>>,
    /// This shard's own inbox (history replies are sent to it).
    pub inbox: Arc<ShardInbox>,
    /// Open connections, all shards (the acceptor compares it with `max_connections`).
    pub open_conns: Arc<AtomicUsize>,
    /// Local members per room.
    pub local: LocalRooms,
    /// Reusable JSON parser.
    pub parser: JsonParser,
    /// Reusable encoding buffer.
    pub scratch: Vec<u8>,
    /// Connections with output to write, in the order they got it (the shard writes a bounded slice
    /// from the front each turn; see `reactor::shard::FLUSHES_PER_TURN`).
    pub to_flush: VecDeque<usize>,
    /// Connections to remove at the end of the turn.
    pub to_remove: Vec<usize>,
    /// Set view of `to_remove`.
    pub removing: HashSet<usize>,
    /// Auth, origins and rate limits (shared by every shard; anonymous and unlimited until set).
    pub guard: Arc<guard::Guard>,
    /// This shard's counters (this thread is their only writer).
    pub metrics: Arc<ShardMetrics>,
    /// Metrics registry and readiness, for `/metrics` and `/readyz`.
    pub telemetry: Arc<Telemetry>,
    serial: u64,
}

impl ShardCtx {
    /// Fresh state for shard `shard`.
    pub fn new(
        shard: usize,
        hub: Arc<Hub>,
        cfg: Arc<Config>,
        store: Option<Arc<Store>>,
        inbox: Arc<ShardInbox>,
        open_conns: Arc<AtomicUsize>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        ShardCtx {
            metrics: telemetry.shard(shard),
            telemetry,
            shard,
            hub,
            cfg,
            store,
            inbox,
            open_conns,
            local: LocalRooms::default(),
            parser: JsonParser::default(),
            scratch: Vec::with_capacity(1024),
            to_flush: VecDeque::new(),
            to_remove: Vec::new(),
            removing: HashSet::new(),
            guard: Arc::new(guard::Guard::default()),
            serial: 0,
        }
    }

    /// A serial unique across shards (shard index in the low byte).
    pub fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        (self.serial << 8) | (self.shard as u64 & 0xff)
    }

    /// Makes sure `conn` is written this turn.
    pub fn schedule_flush(&mut self, conn: &mut Conn, key: usize) {
        if !conn.flush_scheduled {
            conn.flush_scheduled = true;
            self.to_flush.push_back(key);
        }
    }

    /// Marks a connection to be removed at the end of the turn.
    pub fn mark_for_removal(&mut self, key: usize) {
        if self.removing.insert(key) {
            self.to_remove.push(key);
        }
    }

    /// Whether the connection is marked for removal.
    pub fn is_marked(&self, key: usize) -> bool {
        self.removing.contains(&key)
    }

    /// When a closing connection must be gone.
    pub fn linger_deadline(&self) -> Instant {
        Instant::now() + CLOSE_LINGER
    }
}

/// Feeds bytes read from `conn` to its session.
pub fn on_input(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, data: &mut [u8]) {
    match conn.phase {
        Phase::Http(_) => http::on_input(ctx, conn, key, data),
        Phase::Ws(_) => ws::on_input(ctx, conn, key, data),
        // Input after our close is read and dropped until the peer closes.
        Phase::Closing { .. } => {}
    }
}

/// Whether the session takes more input now. `false` for an HTTP connection whose next request
/// must wait (see [`http::accepts_request`]), and for a WebSocket session while ingress is paused
/// (`Hub::ingress_paused`): the shard then leaves the socket unread, so TCP pushes back.
pub fn wants_input(ctx: &ShardCtx, conn: &Conn) -> bool {
    match conn.phase {
        Phase::Ws(_) => !ctx.hub.ingress_paused(),
        _ => http::accepts_request(ctx, conn),
    }
}

/// Serves input buffered while the session did not want more (after its output drained, or
/// after ingress resumed).
pub fn resume_input(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    match conn.phase {
        Phase::Http(_) => http::serve_buffered(ctx, conn, key),
        Phase::Ws(_) => ws::on_input(ctx, conn, key, &mut []),
        Phase::Closing { .. } => {}
    }
}

/// Tells a WebSocket session that a message it sent was refused after it left the shard (cluster
/// mode: the per-user rate limit in Redis). Anything else (the connection closed and its key was
/// reused by an HTTP request) is ignored.
pub fn on_refused(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, err: &ClientError) {
    if matches!(conn.phase, Phase::Ws(_)) {
        ws::send_error(ctx, conn, key, err);
    }
}

/// Routes a history page back to the session that asked.
pub fn on_history(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    purpose: HistoryPurpose,
    result: Result<HistoryPage, StoreError>,
) {
    match purpose {
        HistoryPurpose::Rest { keep_alive, head_only } => {
            http::on_history(ctx, conn, key, keep_alive, head_only, result)
        }
        HistoryPurpose::Command { room } => catchup::on_history_command(ctx, conn, key, &room, result),
        HistoryPurpose::Resume { room_id, after } => catchup::on_resume_page(ctx, conn, key, room_id, after, result),
    }
}

/// The connection's output queue drained below the low-water mark while a paced read waited for it
/// (`Conn::drain_wanted`): send the next one. Called by the shard after a flush.
pub fn on_drained(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    catchup::on_drained(ctx, conn, key);
}

/// Closes a WebSocket connection with `code`: queues the close frame (dropping unsent frames first if
/// `discard_queued`), leaves its rooms and lets it linger until the peer closes. `why` is counted in
/// `roomcast_connections_closed_total` when the connection is reaped.
pub fn close_ws(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    code: u16,
    reason: &str,
    discard_queued: bool,
    why: CloseReason,
) {
    if !matches!(conn.phase, Phase::Ws(_)) {
        return;
    }
    conn.set_close_reason(why);
    let deadline = ctx.linger_deadline();
    let old = conn.close_ws(code, reason, discard_queued, deadline);
    release(ctx, key, old);
    ctx.schedule_flush(conn, key);
}

/// Releases what a connection's old phase held in shared state (its room memberships).
pub fn release(ctx: &mut ShardCtx, key: usize, phase: Phase) {
    if let Phase::Ws(ws) = phase {
        ws::leave_all(ctx, key, *ws);
    }
}
