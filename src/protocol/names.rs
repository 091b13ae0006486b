//! Validation of room names and nicknames (the rules in `docs/PROTOCOL.md`).
//!
//! Besides control characters, identifiers may not carry Unicode bidirectional controls
//! ([`is_bidi_control`]): with them a name can display as another (`"\u{202e}nimda"` shows as
//! "admin") or reorder the text around it. Message content may (it is text, shown isolated).

use crate::types::{ClientError, ErrorCode};

/// Longest room name, in bytes.
pub(crate) const MAX_ROOM_BYTES: usize = 64;
/// Longest nickname, in characters (after trimming).
pub(crate) const MAX_NICK_CHARS: usize = 32;

/// The Unicode bidirectional formatting characters (UAX #9 §2): the Arabic letter mark, the
/// left-to-right and right-to-left marks, the embeddings and overrides (U+202A–U+202E) and the
/// isolates (U+2066–U+2069).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Checks a room name: 1–64 bytes, no control characters, no bidirectional controls.
///
/// # Errors
/// `invalid_room` naming the rule broken.
pub(crate) fn validate_room(room: &str) -> Result<(), ClientError> {
    if room.is_empty() {
        return Err(ClientError::new(ErrorCode::InvalidRoom, "room name must not be empty"));
    }
    if room.len() > MAX_ROOM_BYTES {
        return Err(ClientError::new(
            ErrorCode::InvalidRoom,
            format!("room name is {} bytes; the limit is {MAX_ROOM_BYTES}", room.len()),
        ));
    }
    if room.chars().any(char::is_control) {
        return Err(ClientError::new(ErrorCode::InvalidRoom, "room name must not contain control characters"));
    }
    if room.chars().any(is_bidi_control) {
        return Err(ClientError::new(
            ErrorCode::InvalidRoom,
            "room name must not contain bidirectional control characters (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069)",
        ));
    }
    Ok(())
}

/// Trims and checks a nickname: 1–32 characters, no control characters, no bidirectional controls.
/// Returns the trimmed nick.
///
/// # Errors
/// `invalid_nick` naming the rule broken.
pub(crate) fn validate_nick(nick: &str) -> Result<&str, ClientError> {
    let nick = nick.trim();
    let chars = nick.chars().count();
    if chars == 0 {
        return Err(ClientError::new(ErrorCode::InvalidNick, "nickname must not be empty"));
    }
    if chars > MAX_NICK_CHARS {
        return Err(ClientError::new(
            ErrorCode::InvalidNick,
            format!("nickname is {chars} characters; the limit is {MAX_NICK_CHARS}"),
        ));
    }
    if nick.chars().any(char::is_control) {
        return Err(ClientError::new(ErrorCode::InvalidNick, "nickname must not contain control characters"));
    }
    if nick.chars().any(is_bidi_control) {
        return Err(ClientError::new(
            ErrorCode::InvalidNick,
            "nickname must not contain bidirectional control characters (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069)",
        ));
    }
    Ok(nick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms() {
        assert!(validate_room("general").is_ok());
        assert!(validate_room("café ☕").is_ok());
        assert!(validate_room(&"r".repeat(64)).is_ok());
        for bad in ["", "a\nb", "\u{7f}", &"r".repeat(65)] {
            assert_eq!(validate_room(bad).map_err(|e| e.code), Err(ErrorCode::InvalidRoom), "{bad:?}");
        }
    }

    /// Every bidirectional control, and nothing next to them, is refused in rooms and nicks.
    #[test]
    fn bidi_controls_are_refused_in_identifiers() {
        let bidi = ['\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}'];
        let isolates = ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'];
        for c in bidi.into_iter().chain(isolates) {
            assert!(is_bidi_control(c), "{c:?}");
            let name = format!("{c}nimda");
            assert_eq!(validate_room(&name).map_err(|e| e.code), Err(ErrorCode::InvalidRoom), "{name:?}");
            assert_eq!(validate_nick(&name).map_err(|e| e.code), Err(ErrorCode::InvalidNick), "{name:?}");
        }
        for neighbour in
            ['\u{061b}', '\u{061d}', '\u{200d}', '\u{2010}', '\u{2029}', '\u{202f}', '\u{2065}', '\u{206a}']
        {
            assert!(!is_bidi_control(neighbour), "{neighbour:?}");
        }
        // Right-to-left letters themselves are fine: only the invisible controls are refused.
        assert!(validate_nick("שלום").is_ok());
        assert!(validate_room("غرفة").is_ok());
    }

    #[test]
    fn nicks_are_trimmed_and_bounded_in_characters() {
        assert_eq!(validate_nick("  Alice "), Ok("Alice"));
        assert_eq!(validate_nick(&"é".repeat(32)).map(str::len), Ok(64));
        for bad in ["", "   ", "a\tb", &"x".repeat(33)] {
            assert_eq!(validate_nick(bad).map_err(|e| e.code), Err(ErrorCode::InvalidNick), "{bad:?}");
        }
    }
}
