//! Wire protocols the generator speaks: the plain seed text protocol (frames echoed verbatim to
//! the room) and roomcast's JSON protocol (typed envelopes, `joined` before messages, resume).

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

/// Name of room `i`.
pub fn room_name(i: u32) -> String {
    format!("room-{i}")
}

/// Query parameters for connection `index` in room `room`.
pub fn connect_params(format: Format, room: Option<&str>, index: u32, since: Option<u64>) -> Vec<(String, String)> {
    let mut p = Vec::new();
    if format == Format::Json {
        p.push(("format".to_string(), "json".to_string()));
    }
    if let Some(r) = room {
        p.push(("room".to_string(), r.to_string()));
    }
    if format == Format::Json {
        p.push(("nick".to_string(), format!("u{index}")));
        if let Some(id) = since {
            p.push(("since".to_string(), id.to_string()));
        }
    }
    p
}

#[derive(Serialize)]
struct OutMessage<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    room: &'a str,
    content: &'a str,
    client_id: &'a str,
}

/// Builds the frame text for one chat message carrying `marker`.
pub fn encode_message(format: Format, room: &str, marker: &str, client_id: &str, out: &mut String) {
    match format {
        Format::Text => {
            out.clear();
            out.push_str(marker);
        }
        Format::Json => {
            out.clear();
            let m = OutMessage { ty: "message", room, content: marker, client_id };
            // Serializing plain strings cannot fail.
            if let Ok(s) = serde_json::to_string(&m) {
                out.push_str(&s);
            }
        }
    }
}

#[derive(Serialize)]
struct OutEdit<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    room: &'a str,
    id: u64,
    content: &'a str,
    client_id: &'a str,
}

/// Builds the JSON `edit` of message `id` giving it the content `marker`.
pub fn encode_edit(room: &str, id: u64, marker: &str, client_id: &str, out: &mut String) {
    out.clear();
    let e = OutEdit { ty: "edit", room, id, content: marker, client_id };
    if let Ok(s) = serde_json::to_string(&e) {
        out.push_str(&s);
    }
}

/// Builds the JSON `typing` command for `room`.
pub fn encode_typing(room: &str, out: &mut String) {
    out.clear();
    #[derive(Serialize)]
    struct OutTyping<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        room: &'a str,
    }
    if let Ok(s) = serde_json::to_string(&OutTyping { ty: "typing", room }) {
        out.push_str(&s);
    }
}

#[derive(Deserialize)]
struct InEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    id: Option<u64>,
    seq: Option<u64>,
    last_id: Option<u64>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

/// What an incoming text frame was.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A chat message whose content may hold a marker; `id` is the server's message id (json).
    Message { content: Cow<'a, str>, id: Option<u64> },
    /// An `edited` event (json): the new content (which may hold a marker) and the edit's own
    /// position in the room's order (`seq`).
    Edited { content: Cow<'a, str>, seq: Option<u64> },
    /// A `typing` event (json).
    Typing,
    /// The server confirmed the room join (json `joined`); messages with a larger id than
    /// `last_id` are live, the others are history (resume catch-up).
    Joined { last_id: Option<u64> },
    /// An `error` frame with its `code`.
    Error(Cow<'a, str>),
    /// Another typed frame (`welcome`, `presence`, `pong`, ...).
    Other(Cow<'a, str>),
    /// Not valid for the protocol.
    Invalid,
}

/// Classifies one incoming text frame.
pub fn decode(format: Format, text: &str) -> Incoming<'_> {
    match format {
        Format::Text => Incoming::Message { content: Cow::Borrowed(text), id: None },
        Format::Json => match serde_json::from_str::<InEnvelope<'_>>(text) {
            Ok(env) => match env.ty.as_deref() {
                Some("message") => Incoming::Message { content: env.content.unwrap_or_default(), id: env.id },
                Some("edited") => Incoming::Edited { content: env.content.unwrap_or_default(), seq: env.seq },
                Some("typing") => Incoming::Typing,
                Some("joined") => Incoming::Joined { last_id: env.last_id },
                Some("error") => Incoming::Error(env.code.unwrap_or_default()),
                Some(_) => Incoming::Other(env.ty.unwrap_or_default()),
                None => Incoming::Invalid,
            },
            Err(_) => Incoming::Invalid,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_message_roundtrip_and_other_frames() {
        let mut s = String::new();
        encode_message(Format::Json, "room-1", "lt:1:2:3:4:5:", "c-1", &mut s);
        assert_eq!(s, r#"{"type":"message","room":"room-1","content":"lt:1:2:3:4:5:","client_id":"c-1"}"#);
        let delivered = r#"{"type":"message","id":123,"room":"r","user":"n","content":"lt:x","ts":"2026-11-26T03:00:00.123Z","client_id":"c"}"#;
        assert_eq!(decode(Format::Json, delivered), Incoming::Message { content: "lt:x".into(), id: Some(123) });
        assert_eq!(decode(Format::Json, r#"{"type":"joined","room":"r"}"#), Incoming::Joined { last_id: None });
        assert_eq!(
            decode(Format::Json, r#"{"type":"joined","room":"r","last_id":17}"#),
            Incoming::Joined { last_id: Some(17) }
        );
        assert_eq!(decode(Format::Json, r#"{"type":"error","code":"x","message":"m"}"#), Incoming::Error("x".into()));
        assert_eq!(decode(Format::Json, r#"{"type":"pong"}"#), Incoming::Other("pong".into()));
        let edited = r#"{"type":"edited","room":"r","id":5,"user":"n","content":"lt:y","edited_ts":"t","seq":9}"#;
        assert_eq!(decode(Format::Json, edited), Incoming::Edited { content: "lt:y".into(), seq: Some(9) });
        assert_eq!(decode(Format::Json, r#"{"type":"typing","room":"r","user":"u1"}"#), Incoming::Typing);
        encode_edit("room-0", 5, "lt:z", "c-2", &mut s);
        assert_eq!(s, r#"{"type":"edit","room":"room-0","id":5,"content":"lt:z","client_id":"c-2"}"#);
        encode_typing("room-0", &mut s);
        assert_eq!(s, r#"{"type":"typing","room":"room-0"}"#);
        assert_eq!(decode(Format::Json, "not json"), Incoming::Invalid);
        assert_eq!(decode(Format::Json, "[1,2]"), Incoming::Invalid);
        assert_eq!(decode(Format::Text, "hi"), Incoming::Message { content: "hi".into(), id: None });
    }

    #[test]
    fn connect_params_per_format() {
        let p = connect_params(Format::Json, Some("room-0"), 7, Some(99));
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["format", "room", "nick", "since"]);
        assert!(connect_params(Format::Text, None, 0, None).is_empty());
    }
}
