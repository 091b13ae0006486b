//! Encode once: the frames of one published event, built once per wire format the room has
//! members in, before they are shared (`Bytes`) with every recipient. Pure functions, no locks.

use bytes::Bytes;

use crate::protocol::{json, text};
use crate::types::{ChatRecord, Format};
use crate::ws::codec;

/// The frames of chat message `rec` sent by a client speaking `origin`: for text members (when
/// `text`) and JSON members (when `json`). A text client's message reaches text members verbatim, a
/// JSON client's as `user: content`; JSON members get a `message` event echoing `client_id`.
/// `scratch` is a reusable buffer.
pub(crate) fn chat_frames(
    rec: &ChatRecord,
    origin: Format,
    client_id: Option<&str>,
    (text, json): (bool, bool),
    scratch: &mut Vec<u8>,
) -> (Option<Bytes>, Option<Bytes>) {
    let text = text.then(|| match origin {
        Format::Text => text_frame(rec.content.as_bytes()),
        Format::Json => {
            scratch.clear();
            text::write_line(scratch, &rec.user, &rec.content);
            text_frame(scratch)
        }
    });
    let json = json.then(|| {
        scratch.clear();
        json::write_message(scratch, rec, client_id);
        text_frame(scratch)
    });
    (text, json)
}

/// The `presence` event (`event` is `"join"` or `"leave"`) for JSON members.
pub(crate) fn presence_frame(room: &str, user: &str, event: &str) -> Bytes {
    text_frame(&json::presence(room, user, event))
}

/// A binary frame relayed verbatim to text members.
pub(crate) fn binary_frame(payload: &[u8]) -> Bytes {
    Bytes::from(codec::encode_frame(codec::BINARY, payload))
}

fn text_frame(payload: &[u8]) -> Bytes {
    Bytes::from(codec::encode_frame(codec::TEXT, payload))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn each_format_gets_its_frame_only_when_asked() {
        let rec = ChatRecord {
            id: 7,
            room: Arc::from("r"),
            user: Arc::from("Alice"),
            content: Arc::from("Hello"),
            created_at_ms: 0,
        };
        let mut scratch = Vec::new();
        let (text, json) = chat_frames(&rec, Format::Text, None, (true, false), &mut scratch);
        assert_eq!(&text.expect("text")[2..], b"Hello", "a text sender is relayed verbatim");
        assert!(json.is_none());
        let (text, json) = chat_frames(&rec, Format::Json, Some("c1"), (true, true), &mut scratch);
        assert_eq!(&text.expect("text")[2..], b"Alice: Hello");
        let json = json.expect("json");
        let body = std::str::from_utf8(&json[2..]).expect("utf8");
        assert!(body.contains("\"id\":7") && body.contains("\"client_id\":\"c1\""), "{body}");
    }
}
