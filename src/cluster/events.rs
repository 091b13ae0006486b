//! The other payloads on a room's channel besides chat messages: cluster-wide presence changes
//! (published by the presence script) and binary relays (published as they are). Neither has an id,
//! neither is in the room's stream: they are delivered live, in the room's channel order, or not at
//! all.
//!
//! Layouts (a chat payload starts with its stream entry id, so with a digit):
//! - presence: `p \n j|l \n room_len \n` room user (built by `script::PRESENCE_SCRIPT`);
//! - binary: `b \n room_len \n` room payload (payload raw: Redis strings are binary-safe).

use std::sync::Arc;

use super::wire::{EntryId, WireError, WireEvent, parse_published};

/// A user became present in a room on the cluster (first connection on any node) or absent (last
/// connection on every node gone, or its node's heartbeat expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PresenceChange {
    /// Room name.
    pub(crate) room: Arc<str>,
    /// User name.
    pub(crate) user: Arc<str>,
    /// `true`: joined; `false`: left.
    pub(crate) joined: bool,
}

/// One payload received on a room's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChannelPayload {
    /// A chat message and its stream entry.
    Chat(EntryId, WireEvent),
    /// A cluster-wide presence change.
    Presence(PresenceChange),
    /// A binary frame for the room's text members.
    Binary {
        /// Room name.
        room: Arc<str>,
        /// The frame's payload.
        payload: Vec<u8>,
    },
}

/// The payload that relays binary frame `payload` to `room`'s text members on every node.
pub(crate) fn encode_binary(room: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("b\n{}\n", room.len()).into_bytes();
    out.reserve(room.len() + payload.len());
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload the presence script publishes (for tests; the script builds it in Lua).
#[cfg(test)]
pub(crate) fn encode_presence(change: &PresenceChange) -> Vec<u8> {
    let kind = if change.joined { 'j' } else { 'l' };
    format!("p\n{kind}\n{}\n{}{}", change.room.len(), change.room, change.user).into_bytes()
}

/// Splits `rest` at its first `\n`.
fn line<'a>(rest: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], WireError> {
    let end = rest.iter().position(|&b| b == b'\n').ok_or(WireError::Missing(what))?;
    let head = &rest[..end];
    *rest = &rest[end + 1..];
    Ok(head)
}

/// Reads `room_len \n room` and returns the room; `rest` is what follows it.
fn room(rest: &mut &[u8]) -> Result<Arc<str>, WireError> {
    let len: usize = std::str::from_utf8(line(rest, "room length")?)
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or(WireError::BadField("room length"))?;
    if rest.len() < len {
        return Err(WireError::BadText);
    }
    let (name, tail) = rest.split_at(len);
    *rest = tail;
    std::str::from_utf8(name).map(Arc::from).map_err(|_| WireError::BadText)
}

/// Parses anything published on a room channel.
///
/// # Errors
/// [`WireError`] when the payload is in none of the layouts.
pub(crate) fn parse_channel(payload: &[u8]) -> Result<ChannelPayload, WireError> {
    if let Some(mut rest) = payload.strip_prefix(b"p\n") {
        let joined = match line(&mut rest, "presence kind")? {
            b"j" => true,
            b"l" => false,
            _ => return Err(WireError::BadField("presence kind")),
        };
        let room = room(&mut rest)?;
        let user = std::str::from_utf8(rest).map(Arc::from).map_err(|_| WireError::BadText)?;
        return Ok(ChannelPayload::Presence(PresenceChange { room, user, joined }));
    }
    if let Some(mut rest) = payload.strip_prefix(b"b\n") {
        let room = room(&mut rest)?;
        return Ok(ChannelPayload::Binary { room, payload: rest.to_vec() });
    }
    let (entry, msg) = parse_published(payload)?;
    Ok(ChannelPayload::Chat(entry, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_and_binary_round_trip() {
        for joined in [true, false] {
            let change = PresenceChange { room: Arc::from("r\n2"), user: Arc::from("ann ✓"), joined };
            assert_eq!(parse_channel(&encode_presence(&change)), Ok(ChannelPayload::Presence(change)));
        }
        let payload = [0u8, 10, 255, b'p', b'\n'];
        assert_eq!(
            parse_channel(&encode_binary("room", &payload)),
            Ok(ChannelPayload::Binary { room: Arc::from("room"), payload: payload.to_vec() })
        );
        assert_eq!(
            parse_channel(&encode_binary("", &[])),
            Ok(ChannelPayload::Binary { room: Arc::from(""), payload: Vec::new() })
        );
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let good = encode_presence(&PresenceChange { room: Arc::from("r"), user: Arc::from("u"), joined: true });
        for cut in 0..good.len() {
            let _ = parse_channel(&good[..cut]);
        }
        assert_eq!(parse_channel(b"p\nx\n1\nru"), Err(WireError::BadField("presence kind")));
        assert_eq!(parse_channel(b"b\n9\nroom"), Err(WireError::BadText));
        assert_eq!(parse_channel(b"b\nz\nroom"), Err(WireError::BadField("room length")));
        assert!(parse_channel(b"q\n").is_err());
    }
}
