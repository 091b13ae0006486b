//! Frames by variant: how one event of a room becomes the bytes a member receives.
//!
//! A [`Variant`] is what decides a member's bytes: its wire format × compression (only
//! [`Compression::None`] exists today; permessage-deflate adds one value, and every room count and
//! frame cell indexed by [`Variant::index`] grows with it). The functions here are pure (no locks,
//! no I/O): the publish path calls them lazily, the first time a shard has a member of that variant
//! (`bus::Delivery::frame`), outside the room's lock, so a costly variant never lengthens it;
//! history and resume pages call [`stored_frame`].
//!
//! Every `match` over [`Event`] and [`Transient`] here is exhaustive: a new kind of event does not
//! compile until it has a frame for every variant.

use bytes::Bytes;
use tungstenite::protocol::frame::coding::OpCode;

use crate::protocol::{json, text};
use crate::types::{Event, Format, Origin, Revision, Sequenced, Transient};
use crate::ws::codec;

/// How frames are compressed for a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// Plain frames (RSV1 clear).
    None,
}

/// What a member's frames look like: its wire format and its compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variant {
    /// Wire format.
    pub(crate) format: Format,
    /// Compression.
    pub(crate) compression: Compression,
}

impl Variant {
    /// Number of variants (the length of every per-variant array).
    pub(crate) const COUNT: usize = 2;

    /// The plain (uncompressed) variant of `format`.
    pub(crate) const fn plain(format: Format) -> Variant {
        Variant { format, compression: Compression::None }
    }

    /// The variant at position `index` of per-variant arrays (the inverse of [`Variant::index`]).
    pub(crate) const fn from_index(index: usize) -> Variant {
        let format = if index.is_multiple_of(2) { Format::Text } else { Format::Json };
        Variant { format, compression: Compression::None }
    }

    /// Position in per-variant arrays, `0..COUNT`.
    pub(crate) const fn index(self) -> usize {
        let format = match self.format {
            Format::Text => 0,
            Format::Json => 1,
        };
        let compression = match self.compression {
            Compression::None => 0,
        };
        format + compression * 2
    }
}

/// The live frame of `seq` (sent the way `origin` says) for members of `variant`, if they receive
/// it; `scratch` is a reusable buffer. A text client's message reaches text members verbatim, anyone
/// else's as `user: content`; the text protocol has no edits or deletes, so text members get
/// neither (nor a deleted message in a page). JSON members get the event with `client_id` echoed.
pub(crate) fn sequenced_frame(
    seq: &Sequenced,
    origin: &Origin,
    variant: Variant,
    scratch: &mut Vec<u8>,
) -> Option<Bytes> {
    scratch.clear();
    match (variant.format, &seq.event) {
        (Format::Text, Event::Message(msg)) if msg.revision == Revision::Deleted => return None,
        (Format::Text, Event::Message(msg)) => match origin.format {
            Format::Text => return Some(finish(variant, codec::TEXT, msg.content.as_bytes())),
            Format::Json => text::write_line(scratch, &msg.user, &msg.content),
        },
        (Format::Text, Event::Edit(_) | Event::Delete(_) | Event::Read(_)) => return None,
        (Format::Json, _) => json::write_event(scratch, seq, origin.client_id.as_deref()),
    }
    Some(finish(variant, codec::TEXT, scratch))
}

/// The frame of `event` in room `room` for members of `variant`, if they receive it: presence and
/// typing go to JSON members, binary relays to text members.
pub(crate) fn transient_frame(room: &str, event: &Transient, variant: Variant) -> Option<Bytes> {
    match (event, variant.format) {
        (Transient::Presence { user, joined }, Format::Json) => {
            let what = if *joined { "join" } else { "leave" };
            Some(finish(variant, codec::TEXT, &json::presence(room, user, what)))
        }
        (Transient::Binary(payload), Format::Text) => Some(finish(variant, codec::BINARY, payload)),
        (Transient::Typing { user, .. }, Format::Json) => Some(finish(variant, codec::TEXT, &json::typing(room, user))),
        (Transient::Presence { .. } | Transient::Typing { .. }, Format::Text)
        | (Transient::Binary(_), Format::Json) => None,
    }
}

/// The wire format of the members a transient event is for.
pub(crate) fn transient_format(event: &Transient) -> Format {
    match event {
        Transient::Presence { .. } | Transient::Typing { .. } => Format::Json,
        Transient::Binary(_) => Format::Text,
    }
}

/// The frame of a stored event for a member speaking `format` (history and resume pages): rendered
/// as a live event of [`Origin::STORED`]; `None` when members of `format` do not receive it.
pub(crate) fn stored_frame(seq: &Sequenced, format: Format, scratch: &mut Vec<u8>) -> Option<Bytes> {
    sequenced_frame(seq, &Origin::STORED, Variant::plain(format), scratch)
}

/// A frame of `opcode` around `payload`, in `variant`'s compression.
fn finish(variant: Variant, opcode: OpCode, payload: &[u8]) -> Bytes {
    match variant.compression {
        Compression::None => Bytes::from(codec::encode_frame(opcode, payload)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn message(user: &str, content: &str) -> Sequenced {
        Sequenced { id: 7, room: Arc::from("r"), at_ms: 0, event: Event::message(Arc::from(user), Arc::from(content)) }
    }

    #[test]
    fn variant_indexes_are_distinct_and_in_range() {
        let all = [Variant::plain(Format::Text), Variant::plain(Format::Json)];
        let mut seen = [false; Variant::COUNT];
        for v in all {
            assert!(!std::mem::replace(&mut seen[v.index()], true), "{v:?}");
            assert_eq!(Variant::from_index(v.index()), v);
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn a_message_per_variant() {
        let rec = message("Alice", "Hello");
        let mut scratch = Vec::new();
        let text = Origin { format: Format::Text, client_id: None };
        let json = Origin { format: Format::Json, client_id: Some(Arc::from("c1")) };
        let frame = sequenced_frame(&rec, &text, Variant::plain(Format::Text), &mut scratch).expect("text");
        assert_eq!(&frame[2..], b"Hello", "a text sender is relayed verbatim");
        let frame = sequenced_frame(&rec, &json, Variant::plain(Format::Text), &mut scratch).expect("text");
        assert_eq!(&frame[2..], b"Alice: Hello");
        let frame = sequenced_frame(&rec, &json, Variant::plain(Format::Json), &mut scratch).expect("json");
        let body = std::str::from_utf8(&frame[2..]).expect("utf8");
        assert!(body.contains("\"id\":7") && body.contains("\"client_id\":\"c1\""), "{body}");
        let stored = stored_frame(&rec, Format::Text, &mut scratch).expect("text");
        assert_eq!(&stored[2..], b"Alice: Hello", "history renders every message as user: content");
    }

    #[test]
    fn edits_and_deletes_reach_json_members_only() {
        let mut scratch = Vec::new();
        let json = Origin { format: Format::Json, client_id: None };
        let edit = Sequenced {
            id: 9,
            room: Arc::from("r"),
            at_ms: 0,
            event: Event::Edit(crate::types::Edit { user: Arc::from("a"), target: 7, content: Arc::from("fixed") }),
        };
        assert!(sequenced_frame(&edit, &json, Variant::plain(Format::Text), &mut scratch).is_none());
        let frame = sequenced_frame(&edit, &json, Variant::plain(Format::Json), &mut scratch).expect("json");
        let body: serde_json::Value = serde_json::from_slice(&frame[2..]).expect("json");
        assert_eq!(
            (body["type"].as_str(), body["id"].as_u64(), body["seq"].as_u64()),
            (Some("edited"), Some(7), Some(9))
        );
        let mut gone = message("a", "");
        if let Event::Message(msg) = &mut gone.event {
            msg.revision = Revision::Deleted;
        }
        assert!(stored_frame(&gone, Format::Text, &mut scratch).is_none(), "no tombstones for text clients");
        let frame = stored_frame(&gone, Format::Json, &mut scratch).expect("json");
        let body: serde_json::Value = serde_json::from_slice(&frame[2..]).expect("json");
        assert_eq!(body["deleted"], true);
        assert!(body.get("content").is_none() && body.get("user").is_none(), "{body}");
    }

    #[test]
    fn transients_reach_only_their_format() {
        let presence = Transient::Presence { user: Arc::from("bob"), joined: true };
        assert!(transient_frame("r", &presence, Variant::plain(Format::Text)).is_none());
        let frame = transient_frame("r", &presence, Variant::plain(Format::Json)).expect("json");
        assert!(std::str::from_utf8(&frame[2..]).expect("utf8").contains("\"presence\""));
        let binary = Transient::Binary(Bytes::from_static(b"\x00\x01"));
        assert!(transient_frame("r", &binary, Variant::plain(Format::Json)).is_none());
        let frame = transient_frame("r", &binary, Variant::plain(Format::Text)).expect("text");
        assert_eq!(frame[0], 0x82, "a binary frame");
    }
}
