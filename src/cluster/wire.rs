//! The event format carried through Redis: one byte string per sequenced event, stored as field `m`
//! of the room's stream entry and published (prefixed with the entry id) on the room's channel.
//!
//! Layout, version `rc2` (`\n`-terminated decimal or short tokens, then raw bytes, so content may
//! hold anything): `id \n rc2 \n kind \n origin \n seq \n replay(0|1) \n format(t|j) \n at_ms \n
//! room_len \n client_id_len|- \n user_len \n`, for an edit or a delete `target \n`, then room,
//! client id, user and content (an edit's new content; empty for a delete). The publish script
//! prepends the id line, so Rust builds everything after it ([`encode_tail`]). A published payload
//! is `entry_id \n` + body.
//!
//! Versioning: the second line names the format. A body of another version (a node of an older
//! build wrote `origin` there; a newer one a later tag) is refused with [`WireError::Version`],
//! counted as malformed and logged, never guessed at: a mixed-version cluster
//! refuses clearly rather than misreads. Every node of a cluster is upgraded together.

use std::sync::Arc;

use thiserror::Error;

use crate::types::{Delete, Edit, Event, EventKind, Format, Origin, Read, Sequenced};

/// The version tag this build writes and reads.
pub(crate) const WIRE_VERSION: &str = "rc2";

/// A body or payload that is not in the format above (a bug or a foreign writer on our keys).
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum WireError {
    /// A header line is missing.
    #[error("truncated header: missing {0}")]
    Missing(&'static str),
    /// A header field does not parse.
    #[error("bad header field {0}")]
    BadField(&'static str),
    /// The declared lengths exceed the payload or split a UTF-8 character.
    #[error("bad lengths or text encoding")]
    BadText,
    /// Written by a roomcast that speaks another version of this format.
    #[error(
        "event written in wire format {0:?}, this node reads {WIRE_VERSION:?}: every node of a cluster must run the same roomcast version"
    )]
    Version(String),
    /// An event kind this build does not know.
    #[error("unknown event kind {0}: every node of a cluster must run the same roomcast version")]
    UnknownKind(String),
}

/// A stream entry id (`ms-seq`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct EntryId {
    /// Milliseconds part.
    pub(crate) ms: u64,
    /// Sequence part.
    pub(crate) seq: u64,
}

impl EntryId {
    /// Parses `ms-seq`.
    ///
    /// # Errors
    /// [`WireError::BadField`] when it is not two decimal numbers joined by `-`.
    pub(crate) fn parse(text: &str) -> Result<EntryId, WireError> {
        let (ms, seq) = text.split_once('-').ok_or(WireError::BadField("entry id"))?;
        Ok(EntryId {
            ms: ms.parse().map_err(|_| WireError::BadField("entry id"))?,
            seq: seq.parse().map_err(|_| WireError::BadField("entry id"))?,
        })
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A sequenced event as it travels through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireEvent {
    /// Event id (from Redis, or provisional from the origin's slot during an outage).
    pub(crate) id: u64,
    /// `node_id/incarnation` of the node that accepted it.
    pub(crate) origin: Arc<str>,
    /// The origin's sequence number (increases in the order the origin accepted events).
    pub(crate) seq: u64,
    /// The origin delivered and stored it already, during an outage (a replay).
    pub(crate) replay: bool,
    /// How the sender sent it (text senders are relayed verbatim to text members).
    pub(crate) sender: Origin,
    /// When the origin accepted it (ms since the epoch, UTC).
    pub(crate) at_ms: i64,
    /// Room name.
    pub(crate) room: Arc<str>,
    /// What happened.
    pub(crate) event: Event,
}

impl WireEvent {
    /// The event as the room's log holds it.
    pub(crate) fn sequenced(&self) -> Sequenced {
        Sequenced {
            idempotency_key: None,
            id: self.id,
            room: Arc::clone(&self.room),
            at_ms: self.at_ms,
            event: self.event.clone(),
        }
    }
}

/// Everything after the id line, as the publish script expects it.
pub(crate) fn encode_tail(msg: &WireEvent) -> Vec<u8> {
    let cid_len = msg.sender.client_id.as_ref().map_or_else(|| "-".to_string(), |c| c.len().to_string());
    let format = match msg.sender.format {
        Format::Text => 't',
        Format::Json => 'j',
    };
    let mut out = format!(
        "{WIRE_VERSION}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        msg.event.kind().code(),
        msg.origin,
        msg.seq,
        u8::from(msg.replay),
        format,
        msg.at_ms,
        msg.room.len(),
        cid_len
    )
    .into_bytes();
    // The kind's header lines, then room, client id, and the kind's bytes.
    let (user, target, content): (&str, Option<u64>, &str) = match &msg.event {
        Event::Message(m) => (&m.user, None, &m.content),
        Event::Edit(e) => (&e.user, Some(e.target), &e.content),
        Event::Delete(d) => (&d.user, Some(d.target), ""),
        Event::Read(r) => (&r.user, Some(r.upto), ""),
    };
    out.extend_from_slice(format!("{}\n", user.len()).as_bytes());
    if let Some(target) = target {
        out.extend_from_slice(format!("{target}\n").as_bytes());
    }
    out.reserve(msg.room.len() + user.len() + content.len() + 16);
    out.extend_from_slice(msg.room.as_bytes());
    if let Some(cid) = &msg.sender.client_id {
        out.extend_from_slice(cid.as_bytes());
    }
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(content.as_bytes());
    out
}

/// A full body (id line + tail), as stored in the stream.
#[cfg(test)]
pub(crate) fn encode_body(msg: &WireEvent) -> Vec<u8> {
    let mut out = format!("{}\n", msg.id).into_bytes();
    out.extend_from_slice(&encode_tail(msg));
    out
}

fn line<'a>(rest: &mut &'a [u8], what: &'static str) -> Result<&'a str, WireError> {
    let end = rest.iter().position(|&b| b == b'\n').ok_or(WireError::Missing(what))?;
    let text = std::str::from_utf8(&rest[..end]).map_err(|_| WireError::BadField(what))?;
    *rest = &rest[end + 1..];
    Ok(text)
}

fn number<T: std::str::FromStr>(rest: &mut &[u8], what: &'static str) -> Result<T, WireError> {
    line(rest, what)?.parse().map_err(|_| WireError::BadField(what))
}

fn text(rest: &mut &[u8], len: usize) -> Result<Arc<str>, WireError> {
    if rest.len() < len {
        return Err(WireError::BadText);
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    std::str::from_utf8(head).map(Arc::from).map_err(|_| WireError::BadText)
}

/// Parses a stream body.
///
/// # Errors
/// [`WireError`] when the body is not in this module's format (of this version).
pub(crate) fn parse_body(body: &[u8]) -> Result<WireEvent, WireError> {
    let mut rest = body;
    let id = number(&mut rest, "id")?;
    let version = line(&mut rest, "version")?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version.chars().take(32).collect()));
    }
    let code = line(&mut rest, "kind")?;
    let kind = code
        .parse()
        .ok()
        .and_then(EventKind::from_code)
        .ok_or_else(|| WireError::UnknownKind(code.chars().take(8).collect()))?;
    let origin = Arc::from(line(&mut rest, "origin")?);
    let seq = number(&mut rest, "seq")?;
    let replay = match line(&mut rest, "replay")? {
        "0" => false,
        "1" => true,
        _ => return Err(WireError::BadField("replay")),
    };
    let format = match line(&mut rest, "format")? {
        "t" => Format::Text,
        "j" => Format::Json,
        _ => return Err(WireError::BadField("format")),
    };
    let at_ms = number(&mut rest, "at")?;
    let room_len: usize = number(&mut rest, "room length")?;
    let cid_len = match line(&mut rest, "client id length")? {
        "-" => None,
        n => Some(n.parse::<usize>().map_err(|_| WireError::BadField("client id length"))?),
    };
    let user_len: usize = number(&mut rest, "user length")?;
    let target: Option<u64> = match kind {
        EventKind::Message => None,
        EventKind::Edit | EventKind::Delete | EventKind::Read => Some(number(&mut rest, "target")?),
    };
    let room = text(&mut rest, room_len)?;
    let client_id = cid_len.map(|n| text(&mut rest, n)).transpose()?;
    let user = text(&mut rest, user_len)?;
    let remaining = rest.len();
    let content = text(&mut rest, remaining)?;
    let event = match (kind, target) {
        (EventKind::Message, _) => Event::message(user, content),
        (EventKind::Edit, Some(target)) => Event::Edit(Edit { user, target, content }),
        (EventKind::Delete, Some(target)) => Event::Delete(Delete { user, target }),
        (EventKind::Read, Some(upto)) => Event::Read(Read { user, upto }),
        (EventKind::Edit | EventKind::Delete | EventKind::Read, None) => return Err(WireError::Missing("target")),
    };
    Ok(WireEvent { id, origin, seq, replay, sender: Origin { format, client_id }, at_ms, room, event })
}

/// Parses a published payload: `entry_id \n body`.
///
/// # Errors
/// [`WireError`] when the payload is not in this module's format.
pub(crate) fn parse_published(payload: &[u8]) -> Result<(EntryId, WireEvent), WireError> {
    let mut rest = payload;
    let entry = EntryId::parse(line(&mut rest, "entry id")?)?;
    Ok((entry, parse_body(rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(client_id: Option<&str>) -> WireEvent {
        WireEvent {
            id: 2048,
            origin: Arc::from("node-a/1f"),
            seq: 3,
            replay: true,
            sender: Origin { format: Format::Json, client_id: client_id.map(Arc::from) },
            at_ms: 1_700_000_000_123,
            room: Arc::from("café\nroom"),
            event: Event::message(Arc::from("ann"), Arc::from("line one\nline two ✓")),
        }
    }

    #[test]
    fn bodies_round_trip_with_newlines_and_unicode() {
        for cid in [None, Some("c-1"), Some("")] {
            let msg = sample(cid);
            assert_eq!(parse_body(&encode_body(&msg)), Ok(msg.clone()));
            let mut published = b"1700000000000-5\n".to_vec();
            published.extend_from_slice(&encode_body(&msg));
            let (entry, parsed) = parse_published(&published).expect("parses");
            assert_eq!(entry, EntryId { ms: 1_700_000_000_000, seq: 5 });
            assert_eq!(parsed, msg);
        }
    }

    #[test]
    fn edits_and_deletes_round_trip() {
        let edit = Event::Edit(Edit { user: Arc::from("ann"), target: 2047, content: Arc::from("fixed\ntypo ✓") });
        let delete = Event::Delete(Delete { user: Arc::from("ann"), target: 2047 });
        let read = Event::Read(Read { user: Arc::from("ann"), upto: 2047 });
        for event in [edit, delete, read] {
            let msg = WireEvent { event, ..sample(Some("c-9")) };
            assert_eq!(parse_body(&encode_body(&msg)), Ok(msg.clone()));
        }
        // An edit without its target line is refused, not read as a message.
        let mut body = encode_body(&sample(None));
        let kind_at = body.iter().position(|&b| b == b'\n').map(|i| i + 5).expect("id line");
        body[kind_at] = b'1';
        assert!(parse_body(&body).is_err());
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let good = encode_body(&sample(Some("x")));
        for cut in 0..good.len() {
            let _ = parse_body(&good[..cut]);
        }
        assert_eq!(parse_body(b"12\n"), Err(WireError::Missing("version")));
        assert_eq!(parse_body(b"x\n"), Err(WireError::BadField("id")));
        assert!(EntryId::parse("5-1").expect("ok") < EntryId::parse("5-2").expect("ok"));
        assert!(EntryId::parse("10-0").expect("ok") > EntryId::parse("9-99").expect("ok"));
        assert!(EntryId::parse("nope").is_err());
    }

    #[test]
    fn another_version_is_refused_not_misread() {
        // What a node of the previous build wrote: no version line, the origin in its place.
        let v1 = b"2048\nnode-a/1f\n3\n0\nj\n1700000000123\n1\n3\n-\nrannhello";
        assert_eq!(parse_body(v1), Err(WireError::Version("node-a/1f".into())));
        let unknown_kind = b"2048\nrc2\n9\nnode-a/1f\n3\n0\nj\n1\n1\n-\n";
        assert_eq!(parse_body(unknown_kind), Err(WireError::UnknownKind("9".into())));
        let err = parse_body(v1).expect_err("refused").to_string();
        assert!(err.contains("same roomcast version"), "{err}");
    }
}
