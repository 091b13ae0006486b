//! [`Delivery`]: one published event as the shards receive it, encoded once per wire format and
//! shared by every recipient.

use std::time::Instant;

use bytes::Bytes;

use crate::types::Format;

/// One published event, shared by every recipient.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// Room it belongs to (`room::Room::id`).
    pub(crate) room_id: u64,
    /// Message id; 0 for events without one (presence, binary relays), which are never filtered.
    pub(crate) id: u64,
    /// Frame for text-format members, if the event is meant for them.
    pub(crate) text: Option<Bytes>,
    /// Frame for JSON members, if the event is meant for them.
    pub(crate) json: Option<Bytes>,
    /// When it was published (for the fan-out latency histogram).
    pub(crate) published_at: Instant,
}

impl Delivery {
    /// The frame for a member speaking `format`.
    pub(crate) fn frame(&self, format: Format) -> Option<&Bytes> {
        match format {
            Format::Text => self.text.as_ref(),
            Format::Json => self.json.as_ref(),
        }
    }
}
