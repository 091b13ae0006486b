//! Direct-message rooms: the room `dm:<a>,<b>` (the two user names sorted, joined by a comma) is
//! the conversation of exactly those two users. Pure name rules here; who may use such a room is
//! `session::gate::may_use`.

use super::names::{MAX_ROOM_BYTES, validate_nick};
use crate::types::{ClientError, ErrorCode};

/// Every direct-message room name starts with this.
pub(crate) const PREFIX: &str = "dm:";

/// The room of the conversation between `me` and `to`.
///
/// # Errors
/// `invalid_nick` for a bad `to`; `invalid_parameter` for a message to oneself, or when a name holds
/// a comma or the two names do not fit in a room name (64 bytes with the prefix and the comma).
pub(crate) fn room_of(me: &str, to: &str) -> Result<String, ClientError> {
    let to = validate_nick(to)?;
    if to == me {
        return Err(ClientError::new(ErrorCode::InvalidParameter, "a direct message needs someone else"));
    }
    if me.contains(',') || to.contains(',') {
        return Err(ClientError::new(ErrorCode::InvalidParameter, "direct messages need names without commas"));
    }
    let (a, b) = if me < to { (me, to) } else { (to, me) };
    let room = format!("{PREFIX}{a},{b}");
    if room.len() > MAX_ROOM_BYTES {
        return Err(ClientError::new(
            ErrorCode::InvalidParameter,
            format!(
                "the two names are too long for a direct-message room ({} bytes, at most {MAX_ROOM_BYTES})",
                room.len()
            ),
        ));
    }
    Ok(room)
}

/// The two users of a direct-message room, if `room` is one; an `Err` for a room in the `dm:`
/// space whose name is not two sorted, different names without commas.
pub(crate) fn users_of(room: &str) -> Option<Result<(&str, &str), ClientError>> {
    let rest = room.strip_prefix(PREFIX)?;
    let bad = || {
        ClientError::new(
            ErrorCode::InvalidRoom,
            format!("{room:?} is no direct-message room (dm:<a>,<b>, names sorted)"),
        )
    };
    Some(match rest.split_once(',') {
        Some((a, b))
            if !a.is_empty() && !b.contains(',') && a < b && validate_nick(a) == Ok(a) && validate_nick(b) == Ok(b) =>
        {
            Ok((a, b))
        }
        _ => Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_has_one_room_whoever_starts_it() {
        assert_eq!(room_of("bob", "ann").as_deref(), Ok("dm:ann,bob"));
        assert_eq!(room_of("ann", "bob").as_deref(), Ok("dm:ann,bob"));
        assert_eq!(users_of("dm:ann,bob").and_then(Result::ok), Some(("ann", "bob")));
        assert_eq!(users_of("lobby"), None);
    }

    #[test]
    fn bad_pairs_and_names_are_refused() {
        let code = |r: Result<String, ClientError>| r.map_err(|e| e.code);
        assert_eq!(code(room_of("ann", "ann")), Err(ErrorCode::InvalidParameter));
        assert_eq!(code(room_of("ann", " ann ")), Err(ErrorCode::InvalidParameter), "trimmed like a nick");
        assert_eq!(code(room_of("a,b", "c")), Err(ErrorCode::InvalidParameter));
        assert_eq!(code(room_of("ann", "")), Err(ErrorCode::InvalidNick));
        assert_eq!(code(room_of(&"x".repeat(32), &"y".repeat(32))), Err(ErrorCode::InvalidParameter));
        for bad in ["dm:", "dm:ann", "dm:bob,ann", "dm:ann,ann", "dm:ann,b,c", "dm:,bob", "dm:ann, bob"] {
            assert!(users_of(bad).is_some_and(|r| r.is_err()), "{bad:?}");
        }
    }
}
