//! Output of a WebSocket session: building frames, queueing them on one connection, and closing it.
//!
//! The one place a session queues a bounded frame ([`send_frame`]) and the one slow-consumer policy
//! ([`close_slow_consumer`]): a connection whose output queue would pass `--max-outbuf-hard`, or
//! stays over `--max-outbuf` for `--outbuf-grace` ([`check_grace`], at the sweep), is closed with
//! 1013, its unsent frames dropped. A reader that falls behind in a burst and catches up within the
//! grace keeps its connection. Live deliveries (`super::deliver`), replies, pings and held frames
//! released after a catch-up all go through it.

use std::time::Instant;

use bytes::Bytes;

use super::ctx::ShardCtx;
use super::membership;
use super::state::{Conn, Phase};
use crate::config::Config;
use crate::conn::outbuf::Bound;
use crate::metrics::CloseReason;
use crate::protocol::json;
use crate::types::ClientError;
use crate::ws::close;
use crate::ws::codec;

/// A text frame.
pub(crate) fn text_frame(payload: &[u8]) -> Bytes {
    Bytes::from(codec::encode_frame(codec::TEXT, payload))
}

/// Queues an `error` event for this connection.
pub(crate) fn send_error(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, err: &ClientError) {
    ctx.metrics.error_frame(err.code);
    send_frame(ctx, conn, key, text_frame(&json::error_event(err)));
}

/// The output bounds of every WebSocket connection: `--max-outbuf` (soft), `--max-outbuf-hard`.
pub(crate) fn out_bound(cfg: &Config) -> Bound {
    Bound { soft: cfg.max_outbuf, hard: cfg.max_outbuf_hard }
}

/// The sweep's look at one connection's output queue: over the soft bound for the whole
/// `--outbuf-grace` (no write brought it back under meanwhile) makes it a slow consumer.
pub(crate) fn check_grace(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, now: Instant) {
    let Some(since) = conn.out.over_soft_since() else { return };
    if now.saturating_duration_since(since) >= ctx.cfg.outbuf_grace() {
        tracing::warn!(shard = ctx.shard, key, peer = %conn.peer, "slow consumer: over --max-outbuf for the grace");
        close_session(ctx, conn, key, close::TRY_AGAIN_LATER, "slow consumer", true, CloseReason::SlowConsumer);
    }
}

/// Queues a frame for this connection only; a full queue makes it a slow consumer
/// ([`close_slow_consumer`]). Returns whether the frame was queued.
pub(crate) fn send_frame(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, frame: Bytes) -> bool {
    if conn.send(frame, out_bound(&ctx.cfg)).is_err() {
        close_slow_consumer(ctx, conn, key);
        return false;
    }
    ctx.schedule.flush(key);
    true
}

/// The slow-consumer policy: the connection's output queue is full (its hard bound), so it is
/// closed with 1013 and its unsent frames dropped (the close frame goes first).
pub(crate) fn close_slow_consumer(ctx: &mut ShardCtx, conn: &mut Conn, key: usize) {
    tracing::warn!(shard = ctx.shard, key, peer = %conn.peer, "slow consumer: output queue full, closing");
    close_session(ctx, conn, key, close::TRY_AGAIN_LATER, "slow consumer", true, CloseReason::SlowConsumer);
}

/// Closes a WebSocket session with `code`: queues the close frame (dropping unsent frames first if
/// `discard_queued`), leaves its rooms and lets the connection linger until the peer closes. `why`
/// is counted in `roomcast_connections_closed_total` when the connection is reaped.
pub(crate) fn close_session(
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
    conn.begin_close(code, reason, discard_queued, deadline);
    let old = std::mem::replace(&mut conn.phase, Phase::Closing);
    membership::release(ctx, key, old);
    ctx.schedule.flush(key);
}
