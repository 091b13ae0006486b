//! Admission: who may upgrade or read history, and which rooms they may use.
//!
//! [`Gate`] is built once from the configuration (the authenticator, the allowed origins, the rate
//! limits) before the shards start, and shared by every shard. At the handshake
//! [`Gate::admit_upgrade`] checks the origin and the token and says who the user is; REST history
//! goes through [`Gate::admit_rest`]. Each message is charged to the connection's throttle by the
//! WebSocket session (`super::ws_session`) with the gate's rates; heartbeats are
//! `super::heartbeat`. [`AccessError`] is the one place mapping each refusal to its HTTP status and
//! code.

use std::sync::Arc;

use thiserror::Error;

use crate::api::revocation::Revocations;
use crate::auth::{AuthConfigError, AuthError, Authenticator, Identity, RoomGrant};
use crate::config::Config;
use crate::http::origin::origin_allowed;
use crate::http::percent::query_pairs;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::limits::throttle::RateLimits;
use crate::metrics::CloseReason;
use crate::protocol::dm;
use crate::types::{ClientError, ErrorCode};

/// Why a request was refused before the upgrade or before reading history.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum AccessError {
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
    /// The token was issued before a revocation of its user (server API): 401 `token_revoked`.
    #[error("this token was revoked (issued before the revocation of {0:?}); get a new one")]
    Revoked(String),
    /// The user already has `--max-conns-per-user` connections on this node: 429.
    #[error("{user:?} already has {max} connections (--max-conns-per-user); close one or retry later")]
    TooManyForUser {
        /// The user.
        user: String,
        /// The limit.
        max: usize,
    },
}

impl AccessError {
    /// HTTP status for this refusal.
    pub(crate) fn status(&self) -> u16 {
        match self {
            AccessError::Unauthorized(_) | AccessError::Revoked(_) => 401,
            AccessError::ForbiddenRoom(_) | AccessError::ForbiddenOrigin(_) => 403,
            AccessError::TooManyFromAddress | AccessError::TooManyForUser { .. } => 429,
        }
    }

    /// Code of the JSON error body.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            AccessError::Unauthorized(err) => err.code(),
            AccessError::ForbiddenRoom(_) => ErrorCode::Forbidden.as_str(),
            AccessError::ForbiddenOrigin(_) => "forbidden_origin",
            AccessError::TooManyFromAddress => "too_many_connections",
            AccessError::Revoked(_) => ErrorCode::TokenRevoked.as_str(),
            AccessError::TooManyForUser { .. } => "too_many_user_connections",
        }
    }

    /// How a connection closed after this refusal is counted in the metrics.
    pub(crate) fn close_reason(&self) -> CloseReason {
        match self {
            AccessError::TooManyFromAddress | AccessError::TooManyForUser { .. } => CloseReason::OverLimit,
            _ => CloseReason::AuthFailure,
        }
    }

    /// The HTTP answer.
    pub(crate) fn response(&self) -> Response {
        let resp = Response::error(self.status(), self.code(), &self.to_string());
        match self {
            AccessError::Unauthorized(_) | AccessError::Revoked(_) => {
                resp.with_header("WWW-Authenticate: Bearer".into())
            }
            AccessError::TooManyFromAddress | AccessError::TooManyForUser { .. } => {
                resp.with_header("Retry-After: 1".into())
            }
            _ => resp,
        }
    }
}

/// Who an admitted client is. Without auth: no verified name, every room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The verified user name (auth on); `None` means the client's `nick` applies.
    pub(crate) user: Option<String>,
    /// Rooms the client may use.
    pub(crate) grant: RoomGrant,
    /// The token's `exp` and `iat` (seconds since the epoch; auth on).
    pub(crate) token: Option<TokenTimes>,
}

/// When a verified token expires and was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenTimes {
    /// `exp`.
    pub(crate) exp: u64,
    /// `iat`, if the token has one.
    pub(crate) iat: Option<u64>,
}

/// Security settings shared by every shard.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Token verification (`None`: anonymous mode).
    pub(crate) auth: Option<Authenticator>,
    /// `--allowed-origin` entries.
    pub(crate) allowed_origins: Vec<String>,
    /// Per-connection rate limits.
    pub(crate) rates: RateLimits,
}

impl Gate {
    /// The gate `cfg` asks for.
    ///
    /// # Errors
    /// [`AuthConfigError`] when the public key cannot be loaded.
    pub(crate) fn from_config(cfg: &Config) -> Result<Arc<Gate>, AuthConfigError> {
        Ok(Arc::new(Gate {
            auth: Authenticator::from_config(cfg)?,
            allowed_origins: cfg.allowed_origins.clone(),
            rates: RateLimits::from_config(cfg),
        }))
    }

    /// Checks a WebSocket handshake's origin and token, and that the token grants `room`.
    ///
    /// # Errors
    /// [`AccessError`] for the first check that fails (origin first).
    pub(crate) fn admit_upgrade(&self, req: &Request, room: &str) -> Result<Admitted, AccessError> {
        if !origin_allowed(req.origin.as_deref(), req.host.as_deref(), &self.allowed_origins) {
            return Err(AccessError::ForbiddenOrigin(req.origin.clone().unwrap_or_default()));
        }
        self.admit_rest(req, room)
    }

    /// Checks a request's token (auth on) and that it grants `room`.
    ///
    /// # Errors
    /// [`AccessError::Unauthorized`] or [`AccessError::ForbiddenRoom`].
    pub(crate) fn admit_rest(&self, req: &Request, room: &str) -> Result<Admitted, AccessError> {
        let Some(auth) = &self.auth else { return Ok(Admitted { user: None, grant: RoomGrant::All, token: None }) };
        let query_token = match query_pairs(&req.query).find(|(k, _)| k == "token").map(|(_, v)| v) {
            Some(Err(_)) => return Err(AuthError::Malformed.into()),
            other => other.and_then(Result::ok),
        };
        let protocol_token = crate::auth::protocol_token(&req.ws_protocols);
        let token = crate::auth::token_from(req.authorization.as_deref(), protocol_token, query_token.as_deref())?;
        let Identity { user, rooms, exp, iat } = auth.verify(&token)?;
        if may_use(&rooms, &user, room).is_err() {
            return Err(AccessError::ForbiddenRoom(room.to_string()));
        }
        Ok(Admitted { user: Some(user), grant: rooms, token: Some(TokenTimes { exp, iat }) })
    }

    /// Checks that an admitted token was not revoked (server API, `api::revocation`).
    ///
    /// # Errors
    /// [`AccessError::Revoked`].
    pub(crate) fn not_revoked(admitted: &Admitted, revocations: &Revocations) -> Result<(), AccessError> {
        match (&admitted.user, admitted.token) {
            (Some(user), Some(token)) if revocations.refuses(user, token.iat) => {
                Err(AccessError::Revoked(user.clone()))
            }
            _ => Ok(()),
        }
    }
}

/// Whether `user`, whose token grants `grant`, may use `room`: the grant must include it, and a
/// direct-message room (`dm:<a>,<b>`) is only for its two users.
///
/// # Errors
/// `forbidden` for a room not granted or someone else's direct messages; `invalid_room` for a
/// malformed name in the `dm:` space.
pub(crate) fn may_use(grant: &RoomGrant, user: &str, room: &str) -> Result<(), ClientError> {
    if !grant.allows(room) {
        return Err(forbidden_room(room));
    }
    match dm::users_of(room) {
        None => Ok(()),
        Some(Err(err)) => Err(err),
        Some(Ok((a, b))) if user == a || user == b => Ok(()),
        Some(Ok(_)) => {
            Err(ClientError::new(ErrorCode::Forbidden, format!("{room:?} holds someone else's direct messages")))
        }
    }
}

/// The `error` a client gets for using a room its token does not grant.
pub(crate) fn forbidden_room(room: &str) -> ClientError {
    ClientError::new(ErrorCode::Forbidden, format!("your token does not grant access to room {room:?}"))
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
            (AccessError::Revoked("al".into()), 401, "token_revoked"),
            (AccessError::TooManyForUser { user: "al".into(), max: 2 }, 429, "too_many_user_connections"),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status(), err.code()), (status, code), "{err}");
            let text = String::from_utf8(err.response().render(false, false)).expect("utf8");
            assert!(text.contains(code), "{text}");
        }
        assert!(AccessError::Unauthorized(AuthError::Expired).to_string().contains("expired"));
    }
}
