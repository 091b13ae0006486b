//! What a connection's bytes mean: the HTTP and WebSocket sessions above the socket.
//!
//! The shard (`reactor::shard`) reads and writes; this layer decides what to answer, and asks the
//! shard to write or remove connections through [`ctx::Schedule`]. Files, each using only the ones
//! listed before it (`tests/it/tidy.rs` checks there is no cycle):
//! - [`local`]: the shard's index of its members per room;
//! - [`gate`]: admission (origin, token, room grant; the rate limits' settings);
//! - [`ctx`]: [`ShardCtx`], the per-shard state, and the [`ctx::Schedule`] of flushes and removals;
//! - [`membership`]: entering and leaving rooms;
//! - [`send`]: building and queueing frames, the one slow-consumer close, closing a session;
//! - [`history`]: page limits, validation and submission of history requests (REST and WebSocket);
//! - [`catchup`]: resume catch-up and `history` replies, paced by the client's reading;
//! - [`deliver`]: a published event onto every local member;
//! - [`heartbeat`]: pings and idle timeouts;
//! - [`ws_session`]: frames, commands, joins and leaves;
//! - [`ops`]: `/metrics` and `/readyz` as responses;
//! - [`http_session`]: requests, keep-alive, pipelining, REST history, the upgrade.

pub(crate) mod catchup;
pub(crate) mod ctx;
pub(crate) mod deliver;
pub(crate) mod gate;
pub(crate) mod heartbeat;
pub(crate) mod history;
pub(crate) mod http_session;
pub(crate) mod local;
pub(crate) mod membership;
pub(crate) mod ops;
pub(crate) mod send;
pub(crate) mod ws_session;

pub(crate) use ctx::{ShardCtx, Shared};
pub(crate) use ws_session::close_flooders;

use crate::bus::HistoryPurpose;
use crate::conn::{Conn, Phase};
use crate::store::{HistoryPage, StoreError};
use crate::types::ClientError;

/// Feeds bytes read from `conn` to its session.
pub(crate) fn on_input(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, data: &mut [u8]) {
    match conn.phase {
        Phase::Http(_) => http_session::on_input(ctx, conn, key, data),
        Phase::Ws(_) => ws_session::on_input(ctx, conn, key, data),
        // Input after our close is read and dropped until the peer closes.
        Phase::Closing { .. } => {}
    }
}

/// Whether the session takes more input now. `false` for an HTTP connection whose next request
/// must wait (see [`http_session::accepts_request`]), and for a WebSocket session while ingress is
/// paused (`Hub::ingress_paused`): the shard then leaves the socket unread, so TCP pushes back.
pub(crate) fn wants_input(ctx: &ShardCtx, conn: &Conn) -> bool {
    match conn.phase {
        Phase::Ws(_) => !ctx.hub.ingress_paused(),
        _ => http_session::accepts_request(ctx, conn),
    }
}

/// Serves input buffered while the session did not want more (after its output drained, or
/// after ingress resumed).
pub(crate) fn resume_input(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    match conn.phase {
        Phase::Http(_) => http_session::serve_buffered(ctx, conn, key),
        Phase::Ws(_) => ws_session::on_input(ctx, conn, key, &mut []),
        Phase::Closing { .. } => {}
    }
}

/// Tells a WebSocket session that a message it sent was refused after it left the shard (cluster
/// mode: the per-user rate limit in Redis). Anything else (the connection closed and its key was
/// reused by an HTTP request) is ignored.
pub(crate) fn on_refused(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, err: &ClientError) {
    if matches!(conn.phase, Phase::Ws(_)) {
        send::send_error(ctx, conn, key, err);
    }
}

/// Routes a history page back to the session that asked.
pub(crate) fn on_history(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    purpose: HistoryPurpose,
    result: Result<HistoryPage, StoreError>,
) {
    match purpose {
        HistoryPurpose::Rest { keep_alive, head_only } => {
            http_session::on_history(ctx, conn, key, keep_alive, head_only, result)
        }
        HistoryPurpose::Command { room } => catchup::on_history_command(ctx, conn, key, &room, result),
        HistoryPurpose::Resume { room_id, after } => catchup::on_resume_page(ctx, conn, key, room_id, after, result),
    }
}

/// The connection's output queue drained below the low-water mark while a paced read waited for it
/// (`Conn::drain_wanted`): send the next one. Called by the shard after a flush.
pub(crate) fn on_drained(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    catchup::on_drained(ctx, conn, key);
}

/// Shutdown: closes a WebSocket session with 1001 (its queued frames are still sent first) or an
/// HTTP connection at once.
pub(crate) fn on_shutdown(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    match conn.phase {
        Phase::Ws(_) => {
            let why = crate::metrics::CloseReason::Normal;
            send::close_session(ctx, conn, key, crate::ws::close::GOING_AWAY, "server shutting down", false, why);
        }
        Phase::Http(_) => ctx.schedule.remove(key),
        Phase::Closing { .. } => {}
    }
}
