//! Close codes the server sends (RFC 6455 §7.4.1) and the rules for codes it receives.

/// 1000: normal closure.
pub(crate) const NORMAL: u16 = 1000;
/// 1001: the server is going away (shutdown).
pub(crate) const GOING_AWAY: u16 = 1001;
/// 1002: protocol error (unmasked frame, bad opcode, reserved bits, bad fragmentation, bad close frame).
pub(crate) const PROTOCOL_ERROR: u16 = 1002;
/// 1007: a text message (or close reason) was not valid UTF-8.
pub(crate) const INVALID_PAYLOAD: u16 = 1007;
/// 1008: policy violation (e.g. a client that keeps flooding).
pub(crate) const POLICY_VIOLATION: u16 = 1008;
/// 1009: a frame or message exceeded `max_message_bytes`.
pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;
/// 1013: try again later: the client could not keep up with its output queue (slow consumer).
pub(crate) const TRY_AGAIN_LATER: u16 = 1013;

// Application close codes (docs/PROTOCOL.md, "Close codes"): 4000–4499 the client may reconnect,
// 4500–4999 it must not. Each has a stable reason word, first in the close frame's reason (an
// operator's text may follow after ": ").

/// 4000 `disconnected`: the server API disconnected the user and allows a reconnect.
pub(crate) const DISCONNECTED: u16 = 4000;
/// 4001 `token_expired`: the token reached its `exp` and was not refreshed within `--token-grace`;
/// reconnect with a new token.
pub(crate) const TOKEN_EXPIRED: u16 = 4001;
/// 4500 `kicked`: the server API disconnected the user; do not reconnect.
pub(crate) const KICKED: u16 = 4500;
/// 4501 `banned`: the user is banned; do not reconnect (new connections get 403 until it expires).
pub(crate) const BANNED: u16 = 4501;
/// 4503 `token_revoked`: the server API revoked the user's tokens; do not reconnect with this token
/// (a new one, issued after the revocation, is accepted).
pub(crate) const TOKEN_REVOKED: u16 = 4503;

/// The stable reason word of an application close code.
pub(crate) fn reason_word(code: u16) -> &'static str {
    match code {
        DISCONNECTED => "disconnected",
        KICKED => "kicked",
        BANNED => "banned",
        TOKEN_EXPIRED => "token_expired",
        TOKEN_REVOKED => "token_revoked",
        _ => "",
    }
}

/// The close frame's reason for application code `code` with an operator's `text` (at most
/// [`MAX_REASON_BYTES`] bytes: longer text is cut at a character boundary).
pub(crate) fn app_reason(code: u16, text: &str) -> String {
    let word = reason_word(code);
    let mut reason = if text.is_empty() { word.to_string() } else { format!("{word}: {text}") };
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Longest close reason (RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code).
pub(crate) const MAX_REASON_BYTES: usize = 123;

/// Whether a close code received from a peer is allowed on the wire (RFC 6455 §7.4).
///
/// 1005, 1006 and 1015 are reserved for local use and must never appear in a close frame; 1000–1003,
/// 1007–1014 are defined; 3000–4999 are for libraries and applications.
pub(crate) fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_reasons_start_with_their_word_and_fit_a_frame() {
        assert_eq!(app_reason(KICKED, ""), "kicked");
        assert_eq!(app_reason(DISCONNECTED, "maintenance"), "disconnected: maintenance");
        let long = app_reason(BANNED, &"é".repeat(100));
        assert!(long.starts_with("banned: ") && long.len() <= MAX_REASON_BYTES, "{}", long.len());
        for code in [DISCONNECTED, KICKED, BANNED, TOKEN_EXPIRED, TOKEN_REVOKED] {
            assert!(is_valid_received_code(code));
            assert!(!reason_word(code).is_empty());
        }
        assert!(
            (4000..4500).contains(&DISCONNECTED) && (4500..5000).contains(&KICKED) && (4500..5000).contains(&BANNED)
        );
        assert!((4000..4500).contains(&TOKEN_EXPIRED) && (4500..5000).contains(&TOKEN_REVOKED));
    }

    #[test]
    fn received_codes_follow_rfc_ranges() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_valid_received_code(ok), "{ok} should be valid");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_received_code(bad), "{bad} should be invalid");
        }
    }
}
