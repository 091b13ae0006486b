//! Heartbeats and idle timeouts of WebSocket sessions, run by the shard's 250 ms sweep: the decision
//! is `limits::client::ClientLimits::liveness`; this file acts on it (a ping, or a close). The sweep
//! also judges the output queue's grace over the soft bound (`super::send::check_grace`) and the
//! connection's token (`super::token_life::on_sweep`).

use std::sync::LazyLock;
use std::time::Instant;

use bytes::Bytes;

use super::ctx::ShardCtx;
use super::send::{check_grace, close_session, send_frame};
use super::state::{Conn, Phase};
use crate::limits::client::Liveness;
use crate::metrics::CloseReason;
use crate::ws::close;
use crate::ws::codec;

/// A ping with an empty payload, encoded once and shared by every connection.
static PING_FRAME: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(codec::encode_frame(codec::PING, &[])));

/// Heartbeat and idle timeout for one WebSocket session at `now`; `ingress_paused` is
/// `Hub::ingress_paused`, read once per sweep by the caller.
pub(crate) fn on_sweep(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, now: Instant, ingress_paused: bool) {
    check_grace(ctx, conn, key, now);
    super::catchup::on_sweep(ctx, conn, key);
    let (idle, heartbeat) = (ctx.cfg.idle_timeout(), ctx.cfg.heartbeat());
    let Phase::Ws(state) = &mut conn.phase else { return };
    if ingress_paused {
        // Input is not read while ingress is paused (backpressure), so a pong or a message may be
        // waiting unread: heartbeat and idle timeout start over once reading resumes instead of
        // closing healthy clients for the server's own silence.
        state.limits.seen(now);
        return;
    }
    // Not while ingress is paused either: a `refresh` may be waiting unread.
    super::token_life::on_sweep(ctx, conn, key, now);
    let Phase::Ws(state) = &mut conn.phase else { return };
    match state.limits.liveness(now, idle, heartbeat) {
        Liveness::Alive => {}
        Liveness::SendPing => {
            send_frame(ctx, conn, key, PING_FRAME.clone());
        }
        Liveness::Idle => {
            tracing::debug!(shard = ctx.shard, key, peer = %conn.peer, "idle timeout");
            close_session(ctx, conn, key, close::POLICY_VIOLATION, "idle timeout", true, CloseReason::Timeout);
        }
        Liveness::Unresponsive => {
            tracing::debug!(shard = ctx.shard, key, peer = %conn.peer, "no answer to ping");
            close_session(ctx, conn, key, close::GOING_AWAY, "ping timeout", true, CloseReason::Timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_ping_is_an_empty_unmasked_ping_frame() {
        assert_eq!(&PING_FRAME[..], &[0x89, 0x00]);
    }
}
