//! The other payloads on a room's channel besides chat messages: cluster-wide presence changes
//! (published by the presence script) and binary relays (published as they are). Neither has an id,
//! neither is in the room's stream: they are delivered live, in the room's channel order, or not at
//! all.
//!
//! Layouts (a chat payload starts with its stream entry id, so with a digit):
//! - presence: `p \n j|l \n room_len \n` room user (built by `script::PRESENCE_SCRIPT`);
//! - binary: `b \n room_len \n` room payload (payload raw: Redis strings are binary-safe);
//! - typing: `t \n origin \n shard key serial \n room_len \n` room user (the origin node and its
//!   connection, so that node does not send the notice back to the connection it came from).

use std::sync::Arc;

use super::wire::{EntryId, WireError, WireEvent, parse_published};
use crate::types::{ConnRef, Transient};

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
    /// A relayed transient event (a binary frame, a typing notice) for the room's members.
    Relay {
        /// Room name.
        room: Arc<str>,
        /// The node that published it (`ClusterShared::origin`).
        origin: Arc<str>,
        /// The event; a typing notice's `from` is the connection on `origin`.
        event: Transient,
    },
}

/// The payload that relays `event` (a binary frame or a typing notice) to `room` on every node;
/// `origin` is this node's. `None` for presence, which has a script of its own.
pub(crate) fn encode_relay(origin: &str, room: &str, event: &Transient) -> Option<Vec<u8>> {
    match event {
        Transient::Binary(payload) => Some(encode_binary(room, payload)),
        Transient::Typing { user, from } => {
            let (shard, key, serial) = from.map_or((0, 0, 0), |c| (c.shard, c.key, c.serial));
            let mut out = format!("t\n{origin}\n{shard} {key} {serial}\n{}\n", room.len()).into_bytes();
            out.extend_from_slice(room.as_bytes());
            out.extend_from_slice(user.as_bytes());
            Some(out)
        }
        Transient::Presence { .. } => None,
    }
}

/// The payload that relays binary frame `payload` to `room`'s text members on every node.
fn encode_binary(room: &str, payload: &[u8]) -> Vec<u8> {
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
        let event = Transient::Binary(bytes::Bytes::copy_from_slice(rest));
        return Ok(ChannelPayload::Relay { room, origin: Arc::from(""), event });
    }
    if let Some(mut rest) = payload.strip_prefix(b"t\n") {
        let origin = std::str::from_utf8(line(&mut rest, "origin")?).map_err(|_| WireError::BadField("origin"))?;
        let from =
            std::str::from_utf8(line(&mut rest, "connection")?).map_err(|_| WireError::BadField("connection"))?;
        let mut parts = from.split(' ').map(str::parse::<u64>);
        let (Some(Ok(shard)), Some(Ok(key)), Some(Ok(serial)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(WireError::BadField("connection"));
        };
        let from = ConnRef {
            shard: usize::try_from(shard).map_err(|_| WireError::BadField("connection"))?,
            key: usize::try_from(key).map_err(|_| WireError::BadField("connection"))?,
            serial,
        };
        let room = room(&mut rest)?;
        let user = std::str::from_utf8(rest).map(Arc::from).map_err(|_| WireError::BadText)?;
        let event = Transient::Typing { user, from: Some(from) };
        return Ok(ChannelPayload::Relay { room, origin: Arc::from(origin), event });
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
        let relay = |room: &str, event: Transient| ChannelPayload::Relay {
            room: Arc::from(room),
            origin: Arc::from(""),
            event,
        };
        assert_eq!(
            parse_channel(&encode_binary("room", &payload)),
            Ok(relay("room", Transient::Binary(bytes::Bytes::copy_from_slice(&payload))))
        );
        assert_eq!(parse_channel(&encode_binary("", &[])), Ok(relay("", Transient::Binary(bytes::Bytes::new()))));
    }

    #[test]
    fn typing_round_trips_with_its_origin_connection() {
        let from = ConnRef { shard: 1, key: 77, serial: 123_456 };
        let event = Transient::Typing { user: Arc::from("ann ✓"), from: Some(from) };
        let payload = encode_relay("node-a/1f", "r\n2", &event).expect("typing is relayed");
        assert_eq!(
            parse_channel(&payload),
            Ok(ChannelPayload::Relay { room: Arc::from("r\n2"), origin: Arc::from("node-a/1f"), event })
        );
        assert!(parse_channel(b"t\nnode\n1 2\n1\nru").is_err(), "a connection of two numbers");
        assert!(parse_channel(b"t\nnode\n1 2 3\n9\nru").is_err());
        let presence = Transient::Presence { user: Arc::from("u"), joined: true };
        assert_eq!(encode_relay("n", "r", &presence), None, "presence has its own script");
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
