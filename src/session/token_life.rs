//! A token's life on a live connection (auth on): when it expires, the `token_expired` warning and
//! the close after `--token-grace`, and the in-band `refresh` that replaces it.
//!
//! The upgrade turns the token's `exp` (wall clock) into an `Instant` once ([`TokenLife::new`]), so
//! the shard's 250 ms sweep ([`on_sweep`], called by `super::heartbeat`) compares instants only: no
//! clock read, no timer or thread per connection. Expiry is judged on `exp` itself, without the
//! 30 s leeway verification allows for clock skew (`auth::CLOCK_LEEWAY_SECS`): the leeway decides
//! whether a token is accepted; `--token-grace` is the time a live connection gets to replace it.
//! `refresh` verifies the new token like a connect token (signature, `exp`, `aud`, revocation), and
//! it must name the connection's user; its `rooms` claim replaces the old grant and the rooms it no
//! longer allows are left (`left` each). Any refusal is an `error` frame and the old token stays.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctx::ShardCtx;
use super::gate;
use super::membership;
use super::send::{close_session, send_error, send_frame, text_frame};
use super::state::{Conn, Phase, TokenLife, remaining};
use crate::metrics::CloseReason;
use crate::protocol::json;
use crate::types::{ClientError, ErrorCode};
use crate::ws::close;

/// Whole seconds from `now_ms` until `exp`: the `expires_in` of `welcome` and `refreshed`.
pub(crate) fn expires_in(exp: u64, now_ms: i64) -> u64 {
    remaining(exp, now_ms).as_secs()
}

/// What the sweep must do about a token at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Nothing.
    Nothing,
    /// It has just expired: tell the client (`token_expired`).
    Warn,
    /// The grace after the warning is over: close.
    Close,
}

fn due(life: &TokenLife, now: Instant, grace: Duration) -> Due {
    match life.warned_at {
        _ if now < life.expires_at => Due::Nothing,
        None if grace.is_zero() => Due::Close,
        None => Due::Warn,
        Some(at) if now.saturating_duration_since(at) >= grace => Due::Close,
        Some(_) => Due::Nothing,
    }
}

/// The sweep's look at one WebSocket session's token.
pub(crate) fn on_sweep(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, now: Instant) {
    let grace = ctx.cfg.token_grace();
    let Phase::Ws(ws) = &mut conn.phase else { return };
    let Some(life) = ws.token.as_mut() else { return };
    match due(life, now, grace) {
        Due::Nothing => {}
        Due::Warn => {
            life.warned_at = Some(now);
            let err = ClientError::new(
                ErrorCode::TokenExpired,
                format!("your token expired: send {{\"type\":\"refresh\",\"token\":…}} within {} s", grace.as_secs()),
            );
            send_error(ctx, conn, key, &err);
        }
        Due::Close => {
            tracing::debug!(shard = ctx.shard, key, peer = %conn.peer, "token expired, not refreshed");
            let reason = close::app_reason(close::TOKEN_EXPIRED, "");
            close_session(ctx, conn, key, close::TOKEN_EXPIRED, &reason, false, CloseReason::AuthFailure);
        }
    }
}

/// `{"type":"refresh","token"}`: replaces the connection's token, or refuses (the old one stays).
///
/// # Errors
/// `unauthorized` (auth off, or the token does not verify), `token_user_mismatch`, `token_revoked`.
pub(crate) fn on_refresh(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, token: &str) -> Result<(), ClientError> {
    let Some(auth) = &ctx.gate.auth else {
        return Err(ClientError::new(
            ErrorCode::Unauthorized,
            "auth is off on this server: there is no token to refresh",
        ));
    };
    let identity = auth.verify(token).map_err(|err| ClientError::new(ErrorCode::Unauthorized, err.to_string()))?;
    let Phase::Ws(ws) = &mut conn.phase else { return Ok(()) };
    if *identity.user != *ws.user {
        return Err(ClientError::new(
            ErrorCode::TokenUserMismatch,
            format!("the token names {:?}, this connection is {:?}; the old token stays", identity.user, ws.user),
        ));
    }
    if ctx.api.revocations.refuses(&identity.user, identity.iat) {
        return Err(ClientError::new(ErrorCode::TokenRevoked, "this token was issued before a revocation of its user"));
    }
    let (now, now_ms) = (Instant::now(), json::now_millis());
    ws.token = Some(TokenLife::new(identity.exp, now, now_ms));
    ws.limits.grant = identity.rooms;
    // The rooms the new grant no longer allows are left, each told with `left`.
    let (variant, user) = (ws.variant(), Arc::clone(&ws.user));
    let mut left = Vec::new();
    let mut index = 0;
    while index < ws.rooms.len() {
        if gate::may_use(&ws.limits.grant, &user, &ws.rooms[index].room.name).is_ok() {
            index += 1;
            continue;
        }
        let membership = ws.take_membership(index);
        left.push(Arc::clone(&membership.room.name));
        membership::leave(ctx, key, variant, &user, membership);
    }
    for room in &left {
        send_frame(ctx, conn, key, text_frame(&json::left(room)));
    }
    send_frame(ctx, conn, key, text_frame(&json::refreshed(expires_in(identity.exp, now_ms))));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_warns_once_then_closes_after_the_grace() {
        let t0 = Instant::now();
        let mut life = TokenLife::new(100, t0, 90_000);
        let grace = Duration::from_secs(5);
        assert_eq!(due(&life, t0 + Duration::from_millis(9_999), grace), Due::Nothing);
        assert_eq!(due(&life, t0 + Duration::from_secs(10), grace), Due::Warn);
        life.warned_at = Some(t0 + Duration::from_secs(10));
        assert_eq!(due(&life, t0 + Duration::from_secs(14), grace), Due::Nothing, "within the grace");
        assert_eq!(due(&life, t0 + Duration::from_secs(15), grace), Due::Close);
        assert_eq!(due(&TokenLife::new(100, t0, 90_000), t0 + Duration::from_secs(10), Duration::ZERO), Due::Close);
    }

    #[test]
    fn expires_in_counts_whole_seconds_and_stops_at_zero() {
        assert_eq!(expires_in(100, 90_000), 10);
        assert_eq!(expires_in(100, 90_001), 9);
        assert_eq!(expires_in(100, 100_000), 0);
        assert_eq!(expires_in(100, 200_000), 0, "accepted within the leeway, already past");
        assert_eq!(expires_in(u64::MAX, 0), i64::MAX as u64 / 1000);
    }
}
