//! [`Delivery`]: one event of a room as the member shards receive it, with one shared frame cell
//! per variant.
//!
//! The room's lock gives the event its place (`pos`, and `id` for sequenced events) and pushes one
//! `Arc<Delivery>` to every member shard; it renders nothing. The first shard that has a member of
//! a variant renders that variant's frame ([`Delivery::frame`]) into the variant's cell, outside
//! any lock, and every other shard and member reuses the same `Bytes`. A variant no member uses is
//! never rendered. Two shards that need a new variant at the same instant may both render it; one
//! result is kept (`OnceLock::set`), neither waits for the other. A deflate variant's frame is made
//! from the plain variant's (rendered into its own cell if nobody had needed it yet), so a message
//! is rendered once and compressed once per format, however many members get it.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::render::{self, Compression, FrameDeflater, Variant};
use crate::types::{Origin, Sequenced, Transient};

/// What a delivery carries.
#[derive(Debug)]
pub(crate) enum Payload {
    /// An event of the room's ordered log (stored, with an id), sent as its origin says.
    Sequenced(Arc<Sequenced>, Origin),
    /// An event without an id (presence, binary relay).
    Transient(Arc<str>, Transient),
}

/// One event of a room, shared by every recipient shard.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// Room it belongs to (`room::Room::id`).
    pub(crate) room_id: u64,
    /// Its place in the room's order on this node (every event, with an id or not, takes the next
    /// one under the room's lock): a member skips events at or below the position it joined at.
    pub(crate) pos: u64,
    /// The event.
    pub(crate) payload: Payload,
    /// When it was published (for the fan-out latency histogram).
    pub(crate) published_at: Instant,
    frames: [OnceLock<Option<Bytes>>; Variant::COUNT],
}

impl Delivery {
    /// A delivery of `payload` at position `pos` of room `room_id`, nothing rendered yet.
    pub(crate) fn new(room_id: u64, pos: u64, payload: Payload, published_at: Instant) -> Delivery {
        Delivery { room_id, pos, payload, published_at, frames: Default::default() }
    }

    /// The frame for members of `variant` (`None`: the event is not for them), rendered (and
    /// compressed, for a deflate variant) on first use into the shared cell; `scratch` is a reusable
    /// buffer, `deflater` the shard's compressor.
    pub(crate) fn frame(
        &self,
        variant: Variant,
        scratch: &mut Vec<u8>,
        deflater: &mut FrameDeflater,
    ) -> Option<&Bytes> {
        let cell = &self.frames[variant.index()];
        if let Some(frame) = cell.get() {
            return frame.as_ref();
        }
        let frame = match (variant.compression, &self.payload) {
            (Compression::Deflate, _) => {
                let plain = self.frame(Variant::plain(variant.format), scratch, deflater);
                plain.map(|plain| render::deflated_frame(plain, deflater))
            }
            (Compression::None, Payload::Sequenced(seq, origin)) => {
                render::sequenced_frame(seq, origin, variant, scratch)
            }
            (Compression::None, Payload::Transient(room, event)) => render::transient_frame(room, event, variant),
        };
        // Another shard may have rendered it meanwhile: keep whichever was first.
        let _ = cell.set(frame);
        cell.get().and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Event, Format};

    #[test]
    fn each_variant_is_rendered_once_and_shared() {
        let seq = Arc::new(Sequenced {
            idempotency_key: None,
            id: 3,
            room: Arc::from("r"),
            at_ms: 0,
            event: Event::message(Arc::from("a"), Arc::from("hi")),
        });
        let origin = Origin { format: Format::Text, client_id: None };
        let delivery = Delivery::new(1, 1, Payload::Sequenced(seq, origin), Instant::now());
        let mut scratch = Vec::new();
        let mut deflater = FrameDeflater::new(1, 256);
        let text = Variant::plain(Format::Text);
        let first = delivery.frame(text, &mut scratch, &mut deflater).expect("text").clone();
        let again = delivery.frame(text, &mut scratch, &mut deflater).expect("text");
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, not a second rendering");
        let deflate = Variant { format: Format::Text, compression: Compression::Deflate };
        let small = delivery.frame(deflate, &mut scratch, &mut deflater).expect("text");
        assert_eq!(small.as_ptr(), first.as_ptr(), "a short message goes to deflate members plain, shared");
        let presence = Transient::Presence { user: Arc::from("a"), joined: false };
        let delivery = Delivery::new(1, 2, Payload::Transient(Arc::from("r"), presence), Instant::now());
        assert!(delivery.frame(text, &mut scratch, &mut deflater).is_none(), "presence is not for text members");
        assert!(delivery.frame(deflate, &mut scratch, &mut deflater).is_none());
    }

    #[test]
    fn a_long_message_is_compressed_once_for_every_deflate_member() {
        let content: Arc<str> = Arc::from("the quick brown fox jumps over the lazy dog; ".repeat(20));
        let seq = Arc::new(Sequenced {
            idempotency_key: None,
            id: 4,
            room: Arc::from("r"),
            at_ms: 0,
            event: Event::message(Arc::from("a"), content),
        });
        let origin = Origin { format: Format::Json, client_id: None };
        let delivery = Delivery::new(1, 1, Payload::Sequenced(seq, origin), Instant::now());
        let (mut scratch, mut deflater) = (Vec::new(), FrameDeflater::new(1, 256));
        let deflate = Variant { format: Format::Json, compression: Compression::Deflate };
        let first = delivery.frame(deflate, &mut scratch, &mut deflater).expect("json").clone();
        let again = delivery.frame(deflate, &mut scratch, &mut deflater).expect("json");
        assert_eq!(first.as_ptr(), again.as_ptr());
        assert_eq!(first[0], 0xc1, "RSV1 set");
        assert_eq!(deflater.take_stats().compressed, 1, "compressed once");
        let plain = delivery.frame(Variant::plain(Format::Json), &mut scratch, &mut deflater).expect("json");
        assert_eq!(plain[0], 0x81, "plain members get the plain frame");
    }
}
