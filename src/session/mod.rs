//! What a connection's bytes mean: the HTTP and WebSocket sessions above the socket, and all of a
//! connection's session state ([`state`]: its phase, memberships, catch-up paging, paced reads,
//! decoder, limits; the frames held during a catch-up are in [`local`], beside the member).
//!
//! # The reactor–session contract
//! The shard (`reactor::shard`) does IO and keeps time; this layer decides. This file is the whole
//! contract; the reactor calls nothing else of the session.
//!
//! What the reactor tells the session:
//! - a new connection: [`new_phase`] (its first phase);
//! - input: [`wants_input`] (may the socket be read now?), [`on_input`] (bytes read),
//!   [`resume_input`] (input buffered while it did not want more may be served now);
//! - from the inbox: [`deliver::deliver`] (a room's event, for every local member),
//!   [`on_history`] (a page read by the store), [`on_amend`] (the message an edit or delete refers
//!   to was looked up), [`on_read_state`] (a read marker after a join), [`on_frame`] (a frame made
//!   elsewhere for it), [`on_refused`] (a message refused after it left), [`on_reply`] (an HTTP
//!   answer decided elsewhere), [`on_sequenced`] (an id the API waited for), [`on_close_request`]
//!   (the server API closes a WebSocket session), [`on_feed`] (the next page of a change feed);
//! - output: [`on_flushed`] (a write happened; the queue may now be below a low-water mark);
//! - time: [`heartbeat::on_sweep`] (every 250 ms, with the ingress pause read once), [`on_http_sweep`]
//!   (the same sweep, for an HTTP connection without a deadline: a change feed's stream);
//! - the end: [`on_shutdown`] (close with 1001), [`on_reaped`] (the connection is gone: leave its
//!   rooms).
//!
//! What the session asks of the reactor, and only through [`ctx::Schedule`]: write connection `k`
//! (`Schedule::flush`), remove connection `k` at the end of the turn (`Schedule::remove`). Closing
//! a connection is the session's decision, made on the socket's state (`Conn::begin_close`,
//! `Conn::close_after_flush`); the reactor then writes what is queued, shuts the write side and
//! reaps it after the peer's EOF or the linger deadline. The socket's own flags (`read_pending`,
//! `read_blocked`) are the reactor's alone.
//!
//! Files, each using only the ones listed before it (`tests/it/tidy.rs` checks there is no cycle):
//! - [`catchup_budget`]: the server-wide byte budget of resume pages, shared by the connections;
//! - [`state`]: a connection's session state ([`state::Phase`]) and the `Conn` the sessions see;
//! - [`local`]: the shard's index of its members per room, with what is held for a catching-up one;
//! - [`gate`]: admission (origin, token, room grant; the rate limits' settings);
//! - [`ctx`]: [`ShardCtx`], the per-shard state, and the [`ctx::Schedule`] of flushes and removals;
//! - [`membership`]: entering and leaving rooms;
//! - [`send`]: building and queueing frames, the one slow-consumer close, closing a session;
//! - [`history`]: page limits, validation and submission of history requests (REST and WebSocket);
//! - [`catchup`]: resume catch-up and `history` replies, paced by the client's reading;
//! - [`amend`]: edits and deletes (the target looked up in the store, then published);
//! - [`reads`]: read markers (published to the user's connections; the marker read after a join);
//! - [`deliver`]: a published event onto every local member;
//! - [`direct`]: `welcome` with the user's direct-message rooms (waiting for the store when there may be some);
//! - [`token_life`]: a token's expiry on a live connection, `token_expired`, `refresh`;
//! - [`heartbeat`]: pings, idle timeouts, and the sweep's look at the token;
//! - [`ws_session`]: frames, commands, joins and leaves;
//! - [`ops`]: `/metrics` and `/readyz` as responses;
//! - [`feed`]: the change feed's stream (`GET /api/feed`), paced by the consumer's reading;
//! - [`api_session`]: the server API's requests (admission from the head, the actions);
//! - [`http_session`]: requests, keep-alive, pipelining, bodies, REST history, the upgrade.

pub(crate) mod amend;
pub(crate) mod api_listing;
pub(crate) mod api_session;
pub(crate) mod catchup;
pub(crate) mod catchup_budget;
pub(crate) mod ctx;
pub(crate) mod deliver;
pub(crate) mod direct;
pub(crate) mod feed;
pub(crate) mod gate;
pub(crate) mod heartbeat;
pub(crate) mod history;
pub(crate) mod http_session;
pub(crate) mod local;
pub(crate) mod membership;
pub(crate) mod ops;
pub(crate) mod own;
pub(crate) mod reads;
pub(crate) mod screen;
pub(crate) mod send;
pub(crate) mod state;
pub(crate) mod token_life;
pub(crate) mod ws_session;

pub(crate) use ctx::{ShardCtx, Shared};
pub(crate) use ws_session::close_flooders;

use crate::bus::HistoryPurpose;
use crate::store::{HistoryPage, StoreError};
use crate::types::ClientError;
use state::{Conn, HttpState, Phase};

/// The first phase of a connection just accepted (`over_capacity`: answer 503; `ops_only`: from
/// the `--metrics-addr` listener, which serves the operations endpoints only).
pub(crate) fn new_phase(over_capacity: bool, ops_only: bool) -> Phase {
    Phase::Http(HttpState { over_capacity, awaiting_reply: false, ops_only, pending_ids: None, feed: None })
}

/// Feeds bytes read from `conn` to its session.
pub(crate) fn on_input(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, data: &mut [u8]) {
    match conn.phase {
        Phase::Http(_) => http_session::on_input(ctx, conn, key, data),
        Phase::Ws(_) => ws_session::on_input(ctx, conn, key, data),
        // Input after our close is read and dropped until the peer closes.
        Phase::Closing => {}
    }
}

/// Whether the session takes more input now. `false` for an HTTP connection whose next request
/// must wait (see [`http_session::accepts_request`]), and for a WebSocket session while ingress is
/// paused (`ShardCtx::ingress_paused`): the shard then leaves the socket unread, so TCP pushes back.
pub(crate) fn wants_input(ctx: &ShardCtx, conn: &Conn) -> bool {
    match conn.phase {
        // Not before `welcome` was sent either (`direct`: it may wait for the store).
        Phase::Ws(ref ws) => ws.welcome.is_none() && !ctx.ingress_paused(),
        _ => http_session::accepts_request(ctx, conn),
    }
}

/// Serves input buffered while the session did not want more (after its output drained, or
/// after ingress resumed).
pub(crate) fn resume_input(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    match conn.phase {
        Phase::Http(_) => http_session::serve_buffered(ctx, conn, key),
        Phase::Ws(_) => ws_session::on_input(ctx, conn, key, &mut []),
        Phase::Closing => {}
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

/// Routes the lookup for an edit or a delete back to the session that sent it (ignored unless it is
/// still a WebSocket session).
pub(crate) fn on_amend(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, reply: crate::bus::AmendReply) {
    amend::on_reply(ctx, conn, key, reply);
}

/// Routes a read marker read after a join back to the session (ignored unless it is still in the room).
pub(crate) fn on_read_state(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    room: &str,
    result: Result<(u64, u64), StoreError>,
) {
    reads::on_state(ctx, conn, key, room, result);
}

/// An HTTP answer decided off the shard (the server API): sent if the connection still waits for it.
pub(crate) fn on_reply(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    response: crate::http::response::Response,
    keep_alive: bool,
) {
    http_session::on_reply(ctx, conn, key, response, keep_alive);
}

/// Cluster mode: an event a server API request published got its id (or an error).
pub(crate) fn on_sequenced(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    index: u32,
    result: Result<u64, ClientError>,
) {
    http_session::on_sequenced(ctx, conn, key, index, result);
}

/// The server API closes this WebSocket session (disconnect, ban) with `code` and `reason`.
pub(crate) fn on_close_request(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, code: u16, reason: &str) {
    let why = crate::metrics::CloseReason::Moderation;
    send::close_session(ctx, conn, key, code, reason, false, why);
}

/// A frame made for this connection off the shard: queued if it is still a WebSocket session.
pub(crate) fn on_frame(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, frame: bytes::Bytes) {
    if matches!(conn.phase, Phase::Ws(_))
        && let Some(frame) = direct::hold_until_welcome(conn, frame)
    {
        send::send_frame(ctx, conn, key, frame);
    }
}

/// The direct-message rooms a `welcome` waited for (ignored unless it still waits).
pub(crate) fn on_dm_rooms(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, result: Result<Vec<String>, StoreError>) {
    let limits = ws_session::limits(&ctx.cfg);
    if let Some(handshake) = direct::on_rooms(ctx, conn, key, result, &limits) {
        ws_session::join(ctx, conn, key, &handshake.room, handshake.since, handshake.epoch.as_deref());
        // Frames the client sent meanwhile waited in the input buffer.
        ws_session::on_input(ctx, conn, key, &mut []);
    }
}

/// The next page of a change-feed stream (ignored unless the connection still streams).
pub(crate) fn on_feed(
    ctx: &mut ShardCtx,
    conn: &mut Conn,
    key: usize,
    chunk: Result<crate::bus::FeedChunk, StoreError>,
) {
    feed::on_chunk(ctx, conn, key, chunk);
}

/// The sweep, for an HTTP connection whose deadline has not passed: a change feed that stopped
/// reading is closed (`feed::on_sweep`).
pub(crate) fn on_http_sweep(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, now: std::time::Instant) {
    feed::on_sweep(ctx, conn, key, now);
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

/// The reactor wrote some of `conn`'s output: the catch-up budget gets back what was written of its
/// pages, and a paced read waiting for the queue to drain below the low-water mark is sent once it
/// has.
pub(crate) fn on_flushed(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    if matches!(&conn.phase, Phase::Http(state) if state.feed.is_some()) {
        return feed::on_flushed(ctx, conn, key);
    }
    catchup::on_written(conn);
    let waiting = conn.phase.ws_mut().is_some_and(|ws| ws.paced.drain_wanted);
    if waiting && conn.out.queued_bytes() < catchup::low_water(&ctx.cfg) {
        catchup::on_drained(ctx, conn, key);
    }
}

/// The reactor removed connection `key`, whose session state was `phase`: leaves its rooms.
pub(crate) fn on_reaped(ctx: &mut ShardCtx, key: usize, phase: Phase) {
    membership::release(ctx, key, phase);
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
        Phase::Closing => {}
    }
}
