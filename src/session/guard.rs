//! The session's security gate: who may upgrade or read history, which rooms they may use, how fast
//! they may send, and whether they are still alive.
//!
//! [`Guard`] is built once from the configuration (the authenticator, the allowed origins, the rate
//! limits) and shared by every shard. At the handshake [`Guard::admit_upgrade`] checks the origin and
//! the token and says who the user is; REST history goes through [`Guard::admit_rest`]. On every
//! client message [`admit_message`] charges the connection's throttle; the shard's sweep calls
//! [`on_sweep`] for heartbeats and idle timeouts. [`AccessError`] is the one place mapping each
//! refusal to its HTTP status and code.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use thiserror::Error;

use super::{ShardCtx, close_ws, ws};
use crate::auth::{AuthConfigError, AuthError, Authenticator, Identity, RoomGrant};
use crate::config::Config;
use crate::conn::{Conn, Phase};
use crate::http::origin::origin_allowed;
use crate::http::percent::query_pairs;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::limits::throttle::{RateLimits, Verdict};
use crate::limits::ws_guard::Liveness;
use crate::metrics::CloseReason;
use crate::types::{ClientError, ErrorCode};
use crate::ws::close;

/// A ping frame with an empty payload (server frames are unmasked).
const PING_FRAME: &[u8] = &[0x89, 0x00];

/// Why a request was refused before the upgrade or before reading history.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AccessError {
    /// No valid token (auth on): 401 `unauthorized`.
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    /// The token does not grant the room: 403 `forbidden`.
    #[error("the token does not grant access to room {0:?}")]
    ForbiddenRoom(String),
    /// A browser page from another origin: 403 `forbidden_origin`.
    #[error("origin {0:?} may not open WebSockets here")]
    ForbiddenOrigin(String),
    /// The client's address already has `--max-conns-per-ip` connections: 429.
    #[error("too many connections from your address; retry later")]
    TooManyFromAddress,
}

impl AccessError {
    /// HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            AccessError::Unauthorized(_) => 401,
            AccessError::ForbiddenRoom(_) | AccessError::ForbiddenOrigin(_) => 403,
            AccessError::TooManyFromAddress => 429,
        }
    }

    /// Code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            AccessError::Unauthorized(err) => err.code(),
            AccessError::ForbiddenRoom(_) => ErrorCode::Forbidden.as_str(),
            AccessError::ForbiddenOrigin(_) => "forbidden_origin",
            AccessError::TooManyFromAddress => "too_many_connections",
        }
    }

    /// How a connection closed after this refusal is counted in the metrics.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            AccessError::TooManyFromAddress => CloseReason::OverLimit,
            _ => CloseReason::AuthFailure,
        }
    }

    /// The HTTP answer.
    pub fn response(&self) -> Response {
        let resp = Response::error(self.status(), self.code(), &self.to_string());
        match self {
            AccessError::Unauthorized(_) => resp.with_header("WWW-Authenticate: Bearer".into()),
            AccessError::TooManyFromAddress => resp.with_header("Retry-After: 1".into()),
            _ => resp,
        }
    }
}

/// Who an admitted client is. Without auth: no verified name, every room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The verified user name (auth on); `None` means the client's `nick` applies.
    pub user: Option<String>,
    /// Rooms the client may use.
    pub grant: RoomGrant,
}

/// Security settings shared by every shard. The default is anonymous, any origin check default, no rate
/// limits (what a `ShardCtx` starts with until the server sets the configured one).
#[derive(Debug, Default)]
pub struct Guard {
    /// Token verification (`None`: anonymous mode).
    pub auth: Option<Authenticator>,
    /// `--allowed-origin` entries.
    pub allowed_origins: Vec<String>,
    /// Per-connection rate limits.
    pub rates: RateLimits,
}

impl Guard {
    /// The guard `cfg` asks for.
    ///
    /// # Errors
    /// [`AuthConfigError`] when the public key cannot be loaded.
    pub fn from_config(cfg: &Config) -> Result<Arc<Guard>, AuthConfigError> {
        Ok(Arc::new(Guard {
            auth: Authenticator::from_config(cfg)?,
            allowed_origins: cfg.allowed_origins.clone(),
            rates: RateLimits::from_config(cfg),
        }))
    }

    /// Checks a WebSocket handshake's origin and token, and that the token grants `room`.
    ///
    /// # Errors
    /// [`AccessError`] for the first check that fails (origin first).
    pub fn admit_upgrade(&self, req: &Request, room: &str) -> Result<Admitted, AccessError> {
        if !origin_allowed(req.origin.as_deref(), req.host.as_deref(), &self.allowed_origins) {
            return Err(AccessError::ForbiddenOrigin(req.origin.clone().unwrap_or_default()));
        }
        self.admit_rest(req, room)
    }

    /// Checks a request's token (auth on) and that it grants `room`.
    ///
    /// # Errors
    /// [`AccessError::Unauthorized`] or [`AccessError::ForbiddenRoom`].
    pub fn admit_rest(&self, req: &Request, room: &str) -> Result<Admitted, AccessError> {
        let Some(auth) = &self.auth else { return Ok(Admitted { user: None, grant: RoomGrant::All }) };
        let query_token = match query_pairs(&req.query).find(|(k, _)| k == "token").map(|(_, v)| v) {
            Some(Err(_)) => return Err(AuthError::Malformed.into()),
            other => other.and_then(Result::ok),
        };
        let token = crate::auth::token_from(req.authorization.as_deref(), query_token.as_deref())?;
        let Identity { user, rooms } = auth.verify(&token)?;
        if !rooms.allows(room) {
            return Err(AccessError::ForbiddenRoom(room.to_string()));
        }
        Ok(Admitted { user: Some(user), grant: rooms })
    }
}

/// The `error` a client gets for using a room its token does not grant.
pub fn forbidden_room(room: &str) -> ClientError {
    ClientError::new(ErrorCode::Forbidden, format!("your token does not grant access to room {room:?}"))
}

/// Charges one message (data message or ping) of `len` payload bytes received at `now` to the
/// connection's throttle. Returns whether to handle it; otherwise the client got `rate_limited`, or was
/// closed with 1008 for flooding on despite the warnings.
pub fn admit_message(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, now: Instant, len: usize) -> bool {
    let rates = ctx.guard.rates;
    if !rates.enabled() {
        return true;
    }
    let Phase::Ws(state) = &mut conn.phase else { return false };
    match state.guard.throttle.check(&rates, now, len) {
        Verdict::Allow => true,
        Verdict::Refuse => {
            let err = ClientError::new(
                ErrorCode::RateLimited,
                format!(
                    "over the rate limit ({} messages/s, {} bytes/s); the message was dropped",
                    rates.messages_per_sec, rates.bytes_per_sec
                ),
            );
            ws::send_error(ctx, conn, key, &err);
            false
        }
        Verdict::Close => {
            tracing::info!(shard = ctx.shard, key, peer = %conn.peer, "closing a client that keeps flooding");
            // Keep the queued warnings: they tell the client why (at most FLOOD_WARNINGS frames).
            close_ws(
                ctx,
                conn,
                key,
                close::POLICY_VIOLATION,
                "rate limit exceeded repeatedly",
                false,
                CloseReason::RateLimit,
            );
            false
        }
    }
}

/// Heartbeat and idle timeout for one WebSocket connection, from the shard's sweep.
pub fn on_sweep(ctx: &mut ShardCtx, conn: &mut Conn, key: usize, now: Instant) {
    let (idle, heartbeat) = (ctx.cfg.idle_timeout(), ctx.cfg.heartbeat());
    let Phase::Ws(state) = &mut conn.phase else { return };
    if ctx.hub.ingress_paused() {
        // Input is not read while ingress is paused (backpressure), so a pong or a message may be
        // waiting unread: heartbeat and idle timeout start over once reading resumes instead of
        // closing healthy clients for the server's own silence.
        state.guard.seen(now);
        return;
    }
    match state.guard.liveness(now, idle, heartbeat) {
        Liveness::Alive => {}
        Liveness::SendPing => {
            if conn.send(Bytes::from_static(PING_FRAME), ctx.cfg.max_outbuf).is_err() {
                close_ws(ctx, conn, key, close::TRY_AGAIN_LATER, "slow consumer", true, CloseReason::SlowConsumer);
            } else {
                ctx.schedule_flush(conn, key);
            }
        }
        Liveness::Idle => {
            tracing::debug!(shard = ctx.shard, key, peer = %conn.peer, "idle timeout");
            close_ws(ctx, conn, key, close::POLICY_VIOLATION, "idle timeout", true, CloseReason::Timeout);
        }
        Liveness::Unresponsive => {
            tracing::debug!(shard = ctx.shard, key, peer = %conn.peer, "no answer to ping");
            close_ws(ctx, conn, key, close::GOING_AWAY, "ping timeout", true, CloseReason::Timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_one_status_and_code() {
        let cases = [
            (AccessError::Unauthorized(AuthError::Expired), 401, "unauthorized"),
            (AccessError::ForbiddenRoom("r".into()), 403, "forbidden"),
            (AccessError::ForbiddenOrigin("https://evil".into()), 403, "forbidden_origin"),
            (AccessError::TooManyFromAddress, 429, "too_many_connections"),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status(), err.code()), (status, code), "{err}");
            let text = String::from_utf8(err.response().render(false, false)).expect("utf8");
            assert!(text.contains(code), "{text}");
        }
        assert!(AccessError::Unauthorized(AuthError::Expired).to_string().contains("expired"));
    }
}
