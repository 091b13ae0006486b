//! Validation of room names and nicknames (the rules in `docs/PROTOCOL.md`).

use crate::types::{ClientError, ErrorCode};

/// Longest room name, in bytes.
pub(crate) const MAX_ROOM_BYTES: usize = 64;
/// Longest nickname, in characters (after trimming).
pub(crate) const MAX_NICK_CHARS: usize = 32;

/// Checks a room name: 1–64 bytes, no control characters.
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
    Ok(())
}

/// Trims and checks a nickname: 1–32 characters, no control characters. Returns the trimmed nick.
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

    #[test]
    fn nicks_are_trimmed_and_bounded_in_characters() {
        assert_eq!(validate_nick("  Alice "), Ok("Alice"));
        assert_eq!(validate_nick(&"é".repeat(32)).map(str::len), Ok(64));
        for bad in ["", "   ", "a\tb", &"x".repeat(33)] {
            assert_eq!(validate_nick(bad).map_err(|e| e.code), Err(ErrorCode::InvalidNick), "{bad:?}");
        }
    }
}
