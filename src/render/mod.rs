//! Frames by variant: how one event of a room becomes the bytes a member receives.
//!
//! A [`Variant`] is what decides a member's bytes: its wire format × compression (plain, or
//! permessage-deflate; every room count and frame cell is indexed by [`Variant::index`]). The
//! functions here are pure (no locks, no I/O): the publish path calls them lazily, the first time a
//! shard has a member of that variant (`bus::Delivery::frame`), outside the room's lock, so a costly
//! variant never lengthens it; history and resume pages call [`stored_frame`] (always plain).
//!
//! A deflate frame is made from the plain frame of the same format ([`deflated_frame`], one
//! [`FrameDeflater`] per shard): messages below `--deflate-min-bytes`, and those that do not shrink,
//! stay plain (RSV1 clear, the very same `Bytes`), which RFC 7692 allows on a deflate connection.
//!
//! Every `match` over [`Event`] and [`Transient`] here is exhaustive: a new kind of event does not
//! compile until it has a frame for every variant.

use bytes::Bytes;
use tungstenite::protocol::frame::coding::OpCode;

use crate::protocol::{json, text};
use crate::types::{Event, Format, Origin, Revision, Sequenced, Transient};
use crate::ws::codec;
use crate::ws::deflate::Deflater;

/// How frames are compressed for a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// Plain frames (RSV1 clear).
    None,
    /// permessage-deflate, no context takeover: one compressed frame per message, shared.
    Deflate,
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
    pub(crate) const COUNT: usize = 4;

    /// The plain (uncompressed) variant of `format`.
    pub(crate) const fn plain(format: Format) -> Variant {
        Variant { format, compression: Compression::None }
    }

    /// The variant at position `index` of per-variant arrays (the inverse of [`Variant::index`]).
    pub(crate) const fn from_index(index: usize) -> Variant {
        let format = if index.is_multiple_of(2) { Format::Text } else { Format::Json };
        let compression = if index / 2 == 0 { Compression::None } else { Compression::Deflate };
        Variant { format, compression }
    }

    /// Position in per-variant arrays, `0..COUNT`.
    pub(crate) const fn index(self) -> usize {
        let format = match self.format {
            Format::Text => 0,
            Format::Json => 1,
        };
        let compression = match self.compression {
            Compression::None => 0,
            Compression::Deflate => 1,
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

/// A frame of `opcode` around `payload`. Always plain: a deflate variant's frame is made from the
/// plain one by [`deflated_frame`].
fn finish(_variant: Variant, opcode: OpCode, payload: &[u8]) -> Bytes {
    Bytes::from(codec::encode_frame(opcode, payload))
}

/// A shard's compressor for deflate frames, with what it did since it was last asked
/// ([`FrameDeflater::take_stats`]).
#[derive(Debug)]
pub(crate) struct FrameDeflater {
    deflater: Deflater,
    out: Vec<u8>,
    min_bytes: usize,
    stats: DeflateStats,
}

/// What a [`FrameDeflater`] did: messages compressed, bytes before and after, messages left plain.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeflateStats {
    /// Messages sent compressed.
    pub(crate) compressed: u64,
    /// Their payload bytes before compression.
    pub(crate) bytes_in: u64,
    /// Their payload bytes after compression.
    pub(crate) bytes_out: u64,
    /// Messages for deflate members left plain (below the threshold, or not shrinking).
    pub(crate) left_plain: u64,
}

impl FrameDeflater {
    /// A compressor at zlib `level` that leaves messages below `min_bytes` plain.
    pub(crate) fn new(level: u32, min_bytes: usize) -> FrameDeflater {
        FrameDeflater { deflater: Deflater::new(level), out: Vec::new(), min_bytes, stats: DeflateStats::default() }
    }

    /// What it did since the last call.
    pub(crate) fn take_stats(&mut self) -> DeflateStats {
        std::mem::take(&mut self.stats)
    }
}

/// The deflate variant of a `plain` frame this server rendered: its payload compressed with RSV1
/// set, or `plain` itself (shared, not copied) when it is small or does not shrink.
pub(crate) fn deflated_frame(plain: &Bytes, deflater: &mut FrameDeflater) -> Bytes {
    let Some((opcode, payload)) = codec::split_server_frame(plain) else { return plain.clone() };
    if payload.len() < deflater.min_bytes.max(1) || !deflater.deflater.compress(payload, &mut deflater.out) {
        deflater.stats.left_plain += 1;
        return plain.clone();
    }
    deflater.stats.compressed += 1;
    deflater.stats.bytes_in += payload.len() as u64;
    deflater.stats.bytes_out += deflater.out.len() as u64;
    let frame = Bytes::from(codec::encode_compressed_frame(opcode, &deflater.out));
    // A large message's buffer is not kept for the shard's lifetime.
    if deflater.out.capacity() > 64 * 1024 {
        deflater.out = Vec::new();
    }
    frame
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn message(user: &str, content: &str) -> Sequenced {
        Sequenced {
            idempotency_key: None,
            id: 7,
            room: Arc::from("r"),
            at_ms: 0,
            event: Event::message(Arc::from(user), Arc::from(content)),
        }
    }

    #[test]
    fn variant_indexes_are_distinct_and_in_range() {
        let deflate = |format| Variant { format, compression: Compression::Deflate };
        let all =
            [Variant::plain(Format::Text), Variant::plain(Format::Json), deflate(Format::Text), deflate(Format::Json)];
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
            idempotency_key: None,
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
    fn deflate_frames_set_rsv1_and_inflate_to_the_plain_payload() {
        let mut deflater = FrameDeflater::new(1, 16);
        let content = "hello chat, hello chat, hello chat, hello chat, hello chat";
        let rec = message("Alice", content);
        let json = Origin { format: Format::Json, client_id: None };
        let plain = sequenced_frame(&rec, &json, Variant::plain(Format::Json), &mut Vec::new()).expect("json");
        let frame = deflated_frame(&plain, &mut deflater);
        assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
        assert!(frame.len() < plain.len());
        let (_, payload) = codec::split_server_frame(&frame).expect("ours");
        let mut inflater = crate::ws::deflate::Inflater::default();
        let inflated = inflater.inflate(payload, 1 << 20).expect("inflates");
        let (_, plain_payload) = codec::split_server_frame(&plain).expect("ours");
        assert_eq!(inflated, plain_payload);
        let stats = deflater.take_stats();
        assert_eq!((stats.compressed, stats.bytes_in, stats.left_plain), (1, plain_payload.len() as u64, 0));
        assert_eq!(stats.bytes_out, payload.len() as u64);
        let small =
            sequenced_frame(&message("a", "hi"), &json, Variant::plain(Format::Text), &mut Vec::new()).expect("text");
        let kept = deflated_frame(&small, &mut FrameDeflater::new(1, 256));
        assert_eq!(kept.as_ptr(), small.as_ptr(), "below the threshold: the plain frame itself");
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
