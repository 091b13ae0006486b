//! The WebSocket opening handshake (RFC 6455 §4.2): validating the client's request and building the
//! `101 Switching Protocols` answer. The accept key comes from tungstenite's `derive_accept_key`;
//! permessage-deflate is negotiated by `super::extensions`.

use thiserror::Error;

use super::extensions::{self, DeflateAgreed};
use super::request::Request;
use super::response::Response;

/// Subprotocol that selects the JSON wire format.
pub(crate) const JSON_SUBPROTOCOL: &str = "roomcast.v1.json";

/// Why a request to a WebSocket endpoint cannot be upgraded; [`UpgradeError::response`] maps each.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UpgradeError {
    /// No `Upgrade: websocket` / `Connection: Upgrade`: a plain HTTP request to a WebSocket endpoint.
    #[error("this endpoint speaks WebSocket only: send Upgrade: websocket and Connection: Upgrade")]
    NotAnUpgrade,
    /// The request is HTTP/1.0: the handshake needs HTTP/1.1 or later (RFC 6455 §4.1).
    #[error("a WebSocket handshake needs HTTP/1.1")]
    OldHttpVersion,
    /// The upgrade request is not a GET (RFC 6455 §4.1: "The method of the request MUST be GET");
    /// only HEAD gets this far (other methods are refused with 405 before routing).
    #[error("a WebSocket handshake must be a GET request")]
    NotGet,
    /// `Sec-WebSocket-Version` is missing or not 13.
    #[error("unsupported WebSocket version: only 13 is supported")]
    BadVersion,
    /// `Sec-WebSocket-Key` is missing or is not the base64 encoding of 16 bytes.
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")]
    BadKey,
    /// More than one `Sec-WebSocket-Key` header (RFC 6455 §11.3.1: it must not appear more than once).
    #[error("Sec-WebSocket-Key must appear exactly once")]
    RepeatedKey,
}

impl UpgradeError {
    /// The HTTP answer for this error.
    pub(crate) fn response(&self) -> Response {
        match self {
            UpgradeError::NotAnUpgrade => Response::error(426, "upgrade_required", &self.to_string())
                .with_header("Upgrade: websocket".into())
                .with_header("Sec-WebSocket-Version: 13".into()),
            UpgradeError::BadVersion => Response::error(426, "unsupported_version", &self.to_string())
                .with_header("Sec-WebSocket-Version: 13".into()),
            UpgradeError::OldHttpVersion | UpgradeError::NotGet => {
                Response::error(400, "bad_request", &self.to_string())
            }
            UpgradeError::BadKey | UpgradeError::RepeatedKey => {
                Response::error(400, "bad_websocket_key", &self.to_string())
            }
        }
    }
}

/// A validated handshake, ready to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `Sec-WebSocket-Accept` value.
    pub(crate) accept_key: String,
    /// Whether the client offered (and we selected) [`JSON_SUBPROTOCOL`].
    pub(crate) json_subprotocol: bool,
    /// permessage-deflate, when offered acceptably and allowed (`--deflate`).
    pub(crate) deflate: Option<DeflateAgreed>,
}

/// Validates an upgrade request; `deflate`: whether permessage-deflate may be negotiated.
///
/// # Errors
/// [`UpgradeError`] naming the first rule the request breaks.
pub fn validate(req: &Request, deflate: bool) -> Result<Accepted, UpgradeError> {
    if !req.upgrade_websocket || !req.connection_upgrade {
        return Err(UpgradeError::NotAnUpgrade);
    }
    if req.head_only {
        return Err(UpgradeError::NotGet);
    }
    if req.minor_version < 1 {
        return Err(UpgradeError::OldHttpVersion);
    }
    if req.ws_version.as_deref() != Some("13") {
        return Err(UpgradeError::BadVersion);
    }
    if req.ws_key_count > 1 {
        return Err(UpgradeError::RepeatedKey);
    }
    let key = req.ws_key.as_deref().ok_or(UpgradeError::BadKey)?;
    if !is_base64_of_16_bytes(key) {
        return Err(UpgradeError::BadKey);
    }
    Ok(Accepted {
        accept_key: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        json_subprotocol: req.ws_protocols.iter().any(|p| p == JSON_SUBPROTOCOL),
        deflate: if deflate { extensions::negotiate(&req.ws_extensions, req.user_agent.as_deref()) } else { None },
    })
}

/// The `101` response bytes.
pub fn switching_protocols(accepted: &Accepted) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accepted.accept_key
    );
    if accepted.json_subprotocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(JSON_SUBPROTOCOL);
        out.push_str("\r\n");
    }
    if let Some(deflate) = &accepted.deflate {
        out.push_str("Sec-WebSocket-Extensions: ");
        out.push_str(&deflate.response_value());
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// 16 bytes encode to 22 base64 characters plus `==`.
fn is_base64_of_16_bytes(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..22].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        // The last data character carries 2 bits of the 16th byte and 4 padding bits that must be zero.
        && b"AQgw".contains(&bytes[21])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &str, version: &str) -> Request {
        Request {
            upgrade_websocket: true,
            connection_upgrade: true,
            ws_key: Some(key.into()),
            ws_key_count: 1,
            ws_version: Some(version.into()),
            minor_version: 1,
            ..Request::default()
        }
    }

    #[test]
    fn rfc6455_accept_key_example() {
        let accepted = validate(&request("dGhlIHNhbXBsZSBub25jZQ==", "13"), true).expect("valid");
        assert_eq!(accepted.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let text = String::from_utf8(switching_protocols(&accepted)).expect("utf8");
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(!text.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn bad_handshakes_are_named() {
        assert_eq!(validate(&Request::default(), true), Err(UpgradeError::NotAnUpgrade));
        assert_eq!(validate(&request("dGhlIHNhbXBsZSBub25jZQ==", "8"), true), Err(UpgradeError::BadVersion));
        assert_eq!(validate(&request("short", "13"), true), Err(UpgradeError::BadKey));
        assert_eq!(validate(&request("dGhlIHNhbXBsZSBub25jZR==", "13"), true), Err(UpgradeError::BadKey));
        assert_eq!(validate(&request("dGhlIHNhbXBsZSBub25j!Q==", "13"), true), Err(UpgradeError::BadKey));
        let mut twice = request("dGhlIHNhbXBsZSBub25jZQ==", "13");
        twice.ws_key_count = 2;
        assert_eq!(validate(&twice, true), Err(UpgradeError::RepeatedKey));
        let mut old = request("dGhlIHNhbXBsZSBub25jZQ==", "13");
        old.minor_version = 0;
        assert_eq!(validate(&old, true), Err(UpgradeError::OldHttpVersion));
        let mut head = request("dGhlIHNhbXBsZSBub25jZQ==", "13");
        head.head_only = true;
        assert_eq!(validate(&head, true), Err(UpgradeError::NotGet), "RFC 6455 §4.1: the method must be GET");
        assert_eq!(UpgradeError::NotGet.response().status, 400);
        let plain_head = Request { head_only: true, ..Request::default() };
        assert_eq!(validate(&plain_head, true), Err(UpgradeError::NotAnUpgrade), "a plain HEAD is answered like GET");
        assert_eq!(UpgradeError::OldHttpVersion.response().status, 400);
        assert_eq!(UpgradeError::RepeatedKey.response().status, 400);
        assert_eq!(UpgradeError::NotAnUpgrade.response().status, 426);
        assert_eq!(UpgradeError::BadKey.response().status, 400);
    }

    #[test]
    fn json_subprotocol_is_selected_when_offered() {
        let mut req = request("dGhlIHNhbXBsZSBub25jZQ==", "13");
        req.ws_protocols = vec!["other".into(), JSON_SUBPROTOCOL.into()];
        let accepted = validate(&req, true).expect("valid");
        assert!(accepted.json_subprotocol);
        assert!(String::from_utf8_lossy(&switching_protocols(&accepted)).contains("Sec-WebSocket-Protocol: roomcast"));
    }

    #[test]
    fn deflate_is_answered_when_offered_and_allowed() {
        let mut req = request("dGhlIHNhbXBsZSBub25jZQ==", "13");
        req.ws_extensions = vec!["permessage-deflate; client_max_window_bits".into()];
        let accepted = validate(&req, true).expect("valid");
        let text = String::from_utf8(switching_protocols(&accepted)).expect("utf8");
        assert!(
            text.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"),
            "{text}"
        );
        let off = validate(&req, false).expect("valid");
        assert_eq!(off.deflate, None, "--deflate false");
        assert!(!String::from_utf8(switching_protocols(&off)).expect("utf8").contains("Extensions"));
    }
}
