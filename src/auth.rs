//! Token authentication: verifying a client's JWT and turning its claims into an [`Identity`].
//!
//! Auth is on when `--jwt-secret` (HS256) or `--jwt-public-key` (RS256 for an RSA key, ES256 for a
//! P-256 key) is given. The algorithm is pinned by that configuration: a token whose header names any
//! other algorithm (`none`, or HS256 against an RSA key: algorithm confusion) is refused before any
//! signature check. `exp` is required, `nbf` is checked when present, `aud` must match
//! `--jwt-audience`. The user name is the `name` claim, else `sub`; the optional `rooms` claim lists the
//! rooms the user may use (`"*"`: all). Sans-IO apart from reading the key file at startup.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;

use crate::config::Config;
use crate::protocol::names;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub(crate) const CLOCK_LEEWAY_SECS: u64 = 30;

/// Why authentication could not be set up (a startup error, naming the setting).
#[derive(Debug, Error)]
pub enum AuthConfigError {
    /// The key file could not be read.
    #[error("cannot read --jwt-public-key {path}")]
    ReadKey {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is neither an RSA nor an EC public key in PEM form.
    #[error("--jwt-public-key {path} is not an RSA or EC (P-256) public key in PEM form")]
    BadKey {
        /// The file.
        path: String,
    },
}

/// Why a token was refused; every variant is answered with 401 `unauthorized` and its message.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No `?token=`, no `bearer.` subprotocol entry and no `Authorization: Bearer` header.
    #[error("missing token: send a bearer.<token> subprotocol entry, Authorization: Bearer … or ?token=…")]
    Missing,
    /// Not three base64url parts, bad JSON, or claims of the wrong type.
    #[error("malformed token")]
    Malformed,
    /// The header's `crit` lists extensions, which this server does not understand (RFC 7515 §4.1.11
    /// requires refusing the token).
    #[error("token header lists critical extensions this server does not understand: {0}")]
    UnsupportedCritical(String),
    /// The header names an algorithm other than the configured one (including `none`).
    #[error("token algorithm not accepted (this server accepts {0:?} only)")]
    WrongAlgorithm(Algorithm),
    /// The signature does not verify with the configured key.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    /// `aud` does not match `--jwt-audience` (or is present when none is configured).
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A required claim (`exp`, or `aud` when an audience is configured) is absent.
    #[error("token lacks the required claim {0:?}")]
    MissingClaim(String),
    /// Neither `name` nor `sub` is a valid user name.
    #[error("token names no valid user (name or sub): {0}")]
    NoUser(String),
}

impl AuthError {
    /// Machine-readable code of the 401 body.
    pub(crate) fn code(&self) -> &'static str {
        "unauthorized"
    }
}

/// The rooms a user may join, post to and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomGrant {
    /// No `rooms` claim, or one containing `"*"`.
    All,
    /// Only these rooms.
    Only(Box<[String]>),
}

impl RoomGrant {
    /// Whether `room` is granted.
    pub(crate) fn allows(&self, room: &str) -> bool {
        match self {
            RoomGrant::All => true,
            RoomGrant::Only(rooms) => rooms.iter().any(|r| r == room),
        }
    }
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Display name (from `name`, else `sub`), validated like a nickname.
    pub(crate) user: String,
    /// Rooms the user may use.
    pub(crate) rooms: RoomGrant,
    /// The token's `exp`, seconds since the epoch (required, so always known).
    pub(crate) exp: u64,
    /// The token's `iat`, seconds since the epoch, if it has one (revocation compares it).
    pub(crate) iat: Option<u64>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    /// Required by the validation, so present whenever decoding succeeds.
    #[serde(default)]
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
}

/// Verifies tokens with the configured key and algorithm.
pub(crate) struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The authenticator the configuration asks for, or `None` when auth is off.
    ///
    /// # Errors
    /// [`AuthConfigError`] when the public key file cannot be read or parsed.
    pub(crate) fn from_config(cfg: &Config) -> Result<Option<Authenticator>, AuthConfigError> {
        let (key, algorithm) = if let Some(secret) = &cfg.jwt_secret {
            if secret.len() < 32 {
                tracing::warn!("--jwt-secret is shorter than 32 bytes; use a long random secret");
            }
            (DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256)
        } else if let Some(path) = &cfg.jwt_public_key {
            load_public_key(path)?
        } else {
            return Ok(None);
        };
        Ok(Some(Authenticator::new(key, algorithm, cfg.jwt_audience.as_deref())))
    }

    /// An authenticator accepting only `algorithm` signed with `key`, and `audience` if given.
    pub(crate) fn new(key: DecodingKey, algorithm: Algorithm, audience: Option<&str>) -> Authenticator {
        let mut validation = Validation::new(algorithm);
        validation.leeway = CLOCK_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        let mut required = vec!["exp"];
        if let Some(aud) = audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Authenticator { key, validation, algorithm }
    }

    /// Verifies `token` and returns who it names.
    ///
    /// # Errors
    /// [`AuthError`] naming the first reason the token is refused.
    pub(crate) fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        // Check the header's algorithm ourselves first so `none` (which the library cannot even name)
        // and confusion attacks get a clear message; the library refuses them too. The library does
        // not look at `crit`: refuse any here.
        let header = header_json(token).ok_or(AuthError::Malformed)?;
        match header.get("alg").and_then(serde_json::Value::as_str) {
            Some(alg) if alg == format!("{:?}", self.algorithm) => {}
            Some(_) => return Err(AuthError::WrongAlgorithm(self.algorithm)),
            None => return Err(AuthError::Malformed),
        }
        if let Some(crit) = header.get("crit") {
            return Err(AuthError::UnsupportedCritical(crit.to_string()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm(self.algorithm),
            _ => AuthError::Malformed,
        })?;
        let claims = data.claims;
        let raw_user = claims.name.filter(|n| !n.trim().is_empty()).or(claims.sub).unwrap_or_default();
        let user = names::validate_nick(&raw_user).map_err(|e| AuthError::NoUser(e.message))?.to_string();
        let rooms = match claims.rooms {
            None => RoomGrant::All,
            Some(list) if list.iter().any(|r| r == "*") => RoomGrant::All,
            Some(list) => RoomGrant::Only(list.into_boxed_slice()),
        };
        Ok(Identity { user, rooms, exp: claims.exp, iat: claims.iat })
    }
}

/// A token's header as JSON (read before the signature is checked: only `alg` and `crit` are looked
/// at, to refuse early).
fn header_json(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let (header, _) = token.split_once('.')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok().filter(serde_json::Value::is_object)
}

/// Reads a PEM public key: RSA pins RS256, EC pins ES256.
fn load_public_key(path: &Path) -> Result<(DecodingKey, Algorithm), AuthConfigError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| AuthConfigError::ReadKey { path: shown.clone(), source })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, Algorithm::ES256));
    }
    Err(AuthConfigError::BadKey { path: shown })
}

/// Prefix of the `Sec-WebSocket-Protocol` entry that carries a token (`bearer.<token>`): a JWT is
/// base64url parts and dots, all valid token characters in that header, and the entry keeps the
/// token out of URLs and access logs. The server never selects (echoes) it.
pub(crate) const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// The token of a `bearer.<token>` entry among the offered subprotocols, if there is one.
pub(crate) fn protocol_token(protocols: &[String]) -> Option<&str> {
    protocols.iter().find_map(|p| p.strip_prefix(BEARER_PROTOCOL_PREFIX))
}

/// The token a request carries: `Authorization: Bearer …` first, then a `bearer.<token>`
/// subprotocol entry, else the `token` query parameter.
pub(crate) fn token_from(
    authorization: Option<&str>,
    protocol_token: Option<&str>,
    query_token: Option<&str>,
) -> Result<String, AuthError> {
    if let Some(token) = protocol_token.filter(|_| authorization.is_none()) {
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(token.to_string());
    }
    if let Some(value) = authorization {
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(token.trim().to_string());
    }
    match query_token {
        Some(token) if !token.is_empty() => Ok(token.to_string()),
        _ => Err(AuthError::Missing),
    }
}

#[cfg(test)]
mod tests;
