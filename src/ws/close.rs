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
    fn received_codes_follow_rfc_ranges() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_valid_received_code(ok), "{ok} should be valid");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_received_code(bad), "{bad} should be invalid");
        }
    }
}
