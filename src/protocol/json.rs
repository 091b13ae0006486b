//! The JSON wire format: parsing client commands (simd-json, in place, reused buffers) and rendering
//! server events (serde_json into caller-provided buffers).
//!
//! Parsing borrows strings from the frame payload, which simd-json unescapes in place, so a command
//! costs no allocation beyond the reused [`JsonParser`] buffers.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::types::{ClientError, ErrorCode, Event, Revision, Sequenced};

/// Longest `client_id`, in bytes.
pub(crate) const MAX_CLIENT_ID_BYTES: usize = 128;

/// A client command, borrowing from the frame payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Post `content` to `room` (which the connection must have joined).
    Message {
        /// Target room.
        room: Cow<'a, str>,
        /// Text to post.
        content: Cow<'a, str>,
        /// Echoed back in the `message` event so the sender can match its optimistic copy.
        client_id: Option<Cow<'a, str>>,
    },
    /// Join `room`; with `since`, first receive the messages after that id.
    Join {
        /// Room to join.
        room: Cow<'a, str>,
        /// Resume point: the last message id the client has seen in this room.
        since: Option<u64>,
        /// The `welcome.epoch` the client's `since` is from (see [`welcome`]).
        epoch: Option<Cow<'a, str>>,
    },
    /// Leave `room`.
    Leave {
        /// Room to leave.
        room: Cow<'a, str>,
    },
    /// Application-level ping; answered with `pong`.
    Ping,
    /// The sender is typing in `room` (told to the room's other members, never stored).
    Typing {
        /// The room (which the connection must have joined).
        room: Cow<'a, str>,
    },
    /// Read a page of history.
    History {
        /// Room to read.
        room: Cow<'a, str>,
        /// Page of messages older than this id, newest first.
        before_id: Option<u64>,
        /// Page of messages newer than this id, oldest first.
        after_id: Option<u64>,
        /// Page size (clamped by the caller).
        limit: Option<u64>,
    },
    /// Replace the content of message `id` of `room` (the sender's own).
    Edit {
        /// The message's room (which the connection must have joined).
        room: Cow<'a, str>,
        /// The message's id.
        id: u64,
        /// The new content.
        content: Cow<'a, str>,
        /// Echoed back in the `edited` event.
        client_id: Option<Cow<'a, str>>,
    },
    /// A direct message to user `to` (in the room `dm:<a>,<b>` of the two, joined if needed).
    Dm {
        /// The other user.
        to: Cow<'a, str>,
        /// Text to post.
        content: Cow<'a, str>,
        /// Echoed back in the `message` event.
        client_id: Option<Cow<'a, str>>,
    },
    /// The sender has read `room` up to message `id`.
    Read {
        /// The room (which the connection must have joined).
        room: Cow<'a, str>,
        /// The last message id read.
        id: u64,
    },
    /// Replace the connection's token (auth on) with `token`, which must name the same user.
    Refresh {
        /// The new JWT.
        token: Cow<'a, str>,
    },
    /// Delete message `id` of `room` (the sender's own).
    Delete {
        /// The message's room (which the connection must have joined).
        room: Cow<'a, str>,
        /// The message's id.
        id: u64,
        /// Echoed back in the `deleted` event.
        client_id: Option<Cow<'a, str>>,
    },
}

/// Every field any command may carry; unknown fields are ignored.
#[derive(Deserialize)]
struct RawCommand<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_id: Option<Cow<'a, str>>,
    since: Option<u64>,
    resume: Option<u64>,
    #[serde(borrow)]
    epoch: Option<Cow<'a, str>>,
    before_id: Option<u64>,
    after_id: Option<u64>,
    limit: Option<u64>,
    id: Option<u64>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
}

/// Reusable simd-json scratch buffers; one per shard thread.
pub struct JsonParser {
    buffers: simd_json::Buffers,
}

impl Default for JsonParser {
    fn default() -> Self {
        JsonParser { buffers: simd_json::Buffers::new(1024) }
    }
}

impl JsonParser {
    /// Parses one command from a text frame payload (rewritten in place).
    ///
    /// # Errors
    /// `bad_json` for anything that is not a JSON object of the right field types, `unknown_type` and
    /// `missing_field` for objects that do not form a command.
    pub fn parse<'a>(&mut self, payload: &'a mut [u8]) -> Result<Command<'a>, ClientError> {
        let raw: RawCommand<'a> = simd_json::serde::from_slice_with_buffers(payload, &mut self.buffers)
            .map_err(|e| ClientError::new(ErrorCode::BadJson, format!("not a valid command object: {e}")))?;
        let kind = raw.kind.ok_or_else(|| ClientError::new(ErrorCode::UnknownType, "missing \"type\""))?;
        let room = |raw_room: Option<Cow<'a, str>>| {
            raw_room.ok_or_else(|| ClientError::new(ErrorCode::MissingField, format!("\"{kind}\" needs \"room\"")))
        };
        match kind.as_ref() {
            "message" => Ok(Command::Message {
                room: room(raw.room)?,
                content: raw
                    .content
                    .ok_or_else(|| ClientError::new(ErrorCode::MissingField, "\"message\" needs \"content\""))?,
                client_id: raw.client_id,
            }),
            "join" => Ok(Command::Join { room: room(raw.room)?, since: raw.since.or(raw.resume), epoch: raw.epoch }),
            "leave" => Ok(Command::Leave { room: room(raw.room)? }),
            "ping" => Ok(Command::Ping),
            "typing" => Ok(Command::Typing { room: room(raw.room)? }),
            "history" => Ok(Command::History {
                room: room(raw.room)?,
                before_id: raw.before_id,
                after_id: raw.after_id,
                limit: raw.limit,
            }),
            "edit" => Ok(Command::Edit {
                room: room(raw.room)?,
                id: raw.id.ok_or_else(|| ClientError::new(ErrorCode::MissingField, "\"edit\" needs \"id\""))?,
                content: raw
                    .content
                    .ok_or_else(|| ClientError::new(ErrorCode::MissingField, "\"edit\" needs \"content\""))?,
                client_id: raw.client_id,
            }),
            "dm" => Ok(Command::Dm {
                to: raw.to.ok_or_else(|| ClientError::new(ErrorCode::MissingField, "\"dm\" needs \"to\""))?,
                content: raw
                    .content
                    .ok_or_else(|| ClientError::new(ErrorCode::MissingField, "\"dm\" needs \"content\""))?,
                client_id: raw.client_id,
            }),
            "read" => Ok(Command::Read {
                room: room(raw.room)?,
                id: raw.id.ok_or_else(|| ClientError::new(ErrorCode::MissingField, "\"read\" needs \"id\""))?,
            }),
            "delete" => Ok(Command::Delete {
                room: room(raw.room)?,
                id: raw.id.ok_or_else(|| ClientError::new(ErrorCode::MissingField, "\"delete\" needs \"id\""))?,
                client_id: raw.client_id,
            }),
            "refresh" => Ok(Command::Refresh {
                token: raw
                    .token
                    .ok_or_else(|| ClientError::new(ErrorCode::MissingField, "\"refresh\" needs \"token\""))?,
            }),
            other => Err(ClientError::new(ErrorCode::UnknownType, format!("unknown type {other:?}"))),
        }
    }
}

/// A time in ms since the Unix epoch that serializes as an RFC 3339 UTC string with milliseconds,
/// formatted straight into the output (no intermediate `String` on the publish path).
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339Millis(pub i64);

impl Serialize for Rfc3339Millis {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0));
        serializer.collect_str(&humantime::format_rfc3339_millis(time))
    }
}

/// Milliseconds since the Unix epoch now.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Serialize)]
struct MessageEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    room: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    ts: Rfc3339Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_ts: Option<Rfc3339Millis>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

/// `edited`: message `id` has new content; `seq` is the edit's own place in the room's order.
#[derive(Serialize)]
struct EditedEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    id: u64,
    user: &'a str,
    content: &'a str,
    edited_ts: Rfc3339Millis,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

/// `deleted`: message `id` is gone; `seq` is the delete's own place in the room's order.
#[derive(Serialize)]
struct DeletedEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    id: u64,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

/// Appends the event for `seq` to `out`, echoing `client_id` when given: a `message` (with
/// `edited_ts`, or as a tombstone `deleted: true` without user and content, when read back after an
/// edit or a delete), `edited` or `deleted`.
pub fn write_event(out: &mut Vec<u8>, seq: &Sequenced, client_id: Option<&str>) {
    match &seq.event {
        Event::Message(msg) => {
            let deleted = msg.revision == Revision::Deleted;
            let edited_ts = match msg.revision {
                Revision::Edited { at_ms } => Some(Rfc3339Millis(at_ms)),
                Revision::Original | Revision::Deleted => None,
            };
            let event = MessageEvent {
                kind: "message",
                id: seq.id,
                room: &seq.room,
                user: (!deleted).then_some(&*msg.user),
                content: (!deleted).then_some(&*msg.content),
                ts: Rfc3339Millis(seq.at_ms),
                edited_ts,
                deleted,
                client_id,
            };
            write(out, &event);
        }
        Event::Edit(edit) => {
            let event = EditedEvent {
                kind: "edited",
                room: &seq.room,
                id: edit.target,
                user: &edit.user,
                content: &edit.content,
                edited_ts: Rfc3339Millis(seq.at_ms),
                seq: seq.id,
                client_id,
            };
            write(out, &event);
        }
        Event::Delete(delete) => {
            let event = DeletedEvent { kind: "deleted", room: &seq.room, id: delete.target, seq: seq.id, client_id };
            write(out, &event);
        }
        Event::Read(read) => write(out, &ReadEvent { kind: "read", room: &seq.room, id: read.upto, seq: seq.id }),
    }
}

/// `read`: the user's read marker in `room` is at message `id` (to that user's connections).
#[derive(Serialize)]
struct ReadEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    id: u64,
    seq: u64,
}

/// `GET /rooms/{room}/read` body: `{room, id, unread}`.
pub(crate) fn read_marker_body(room: &str, id: u64, unread: u64) -> Vec<u8> {
    #[derive(Serialize)]
    struct Marker<'a> {
        room: &'a str,
        id: u64,
        unread: u64,
    }
    to_vec(&Marker { room, id, unread })
}

/// Limits announced in `welcome`.
#[derive(Serialize, Debug, Clone)]
pub(crate) struct WelcomeLimits {
    /// Largest message content, in bytes.
    pub(crate) max_message_bytes: usize,
    /// Most rooms one connection may join.
    pub(crate) max_rooms: usize,
    /// Largest history page.
    pub(crate) max_history_page: usize,
}

/// `welcome`: sent first on every JSON connection. `epoch` names the id space: it changes whenever
/// ids may start again (every `--no-persist` start, a new database), so a client's `since` from
/// another epoch is recognised and not applied.
/// `expires_in`: seconds until the connection's token expires (auth on; absent without auth).
/// `dm_rooms`: the user's direct-message rooms (absent when unknown: no history, an anonymous
/// connection, or the store could not answer).
pub(crate) fn welcome(
    user: &str,
    conn_id: u64,
    limits: &WelcomeLimits,
    epoch: &str,
    expires_in: Option<u64>,
    dm_rooms: Option<&[String]>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Welcome<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        user: &'a str,
        connection_id: u64,
        epoch: &'a str,
        limits: &'a WelcomeLimits,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_in: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dm_rooms: Option<&'a [String]>,
    }
    to_vec(&Welcome { kind: "welcome", user, connection_id: conn_id, epoch, limits, expires_in, dm_rooms })
}

/// `refreshed`: the answer to a `refresh` the server accepted, with the new token's `expires_in`.
pub(crate) fn refreshed(expires_in: u64) -> Vec<u8> {
    #[derive(Serialize)]
    struct Refreshed {
        #[serde(rename = "type")]
        kind: &'static str,
        expires_in: u64,
    }
    to_vec(&Refreshed { kind: "refreshed", expires_in })
}

/// A user's read state in a room, as `joined` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadState {
    /// The user's read marker (0: the user never marked the room read).
    pub(crate) read_id: u64,
    /// Messages above the marker that are not deleted (only with a marker).
    pub(crate) unread: Option<u64>,
}

/// `joined`: answer to a join, with who is there (at most `members.len()` names) and how many.
/// `reset`: the client resumed from another epoch; its `since` was not applied (it should drop what it
/// keeps of the room's ids and page history afresh). `read`: the user's read state (absent when
/// unknown: no history, an anonymous connection, or the store could not answer).
pub(crate) fn joined<S: AsRef<str>>(
    room: &str,
    members: &[S],
    member_count: usize,
    last_id: u64,
    reset: bool,
    read: Option<ReadState>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Joined<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        room: &'a str,
        members: Vec<&'a str>,
        member_count: usize,
        last_id: u64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        reset: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        read_id: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        unread: Option<u64>,
    }
    let members = members.iter().map(AsRef::as_ref).collect();
    let (read_id, unread) = match read {
        Some(state) => (Some(state.read_id), state.unread),
        None => (None, None),
    };
    to_vec(&Joined { kind: "joined", room, members, member_count, last_id, reset, read_id, unread })
}

/// `left`: answer to a leave.
pub(crate) fn left(room: &str) -> Vec<u8> {
    to_vec(&RoomEvent { kind: "left", room })
}

#[derive(Serialize)]
struct RoomEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
}

/// `presence`: `user` joined (`"join"`) or left (`"leave"`) `room`.
pub(crate) fn presence(room: &str, user: &str, event: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Presence<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        room: &'a str,
        user: &'a str,
        event: &'a str,
    }
    to_vec(&Presence { kind: "presence", room, user, event })
}

/// `typing`: `user` is typing in `room`.
pub(crate) fn typing(room: &str, user: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Typing<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        room: &'a str,
        user: &'a str,
    }
    to_vec(&Typing { kind: "typing", room, user })
}

/// `dm_rooms`: the direct-message rooms the user has (after `welcome`, with history on).
pub(crate) fn dm_rooms(rooms: &[String]) -> Vec<u8> {
    #[derive(Serialize)]
    struct DmRooms<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        rooms: &'a [String],
    }
    to_vec(&DmRooms { kind: "dm_rooms", rooms })
}

/// `pong`: answer to a `ping` command.
pub(crate) fn pong() -> Vec<u8> {
    br#"{"type":"pong"}"#.to_vec()
}

/// `error` frame for a client error.
pub(crate) fn error_event(err: &ClientError) -> Vec<u8> {
    #[derive(Serialize)]
    struct ErrorEvent<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
    }
    let client_id = err.client_id.as_deref();
    to_vec(&ErrorEvent { kind: "error", code: err.code.as_str(), message: &err.message, client_id })
}

/// HTTP error body `{"error":{"code":…,"message":…}}`.
pub(crate) fn http_error_body(code: &str, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Inner<'a> {
        code: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    to_vec(&Body { error: Inner { code, message } })
}

/// One stored message as REST history renders it, in its current state: edited ones carry
/// `edited_ts`, deleted ones are tombstones `{id, room, deleted: true, created_at}`.
#[derive(Serialize)]
struct HistoryRow<'a> {
    id: u64,
    room: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    created_at: Rfc3339Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_ts: Option<Rfc3339Millis>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

/// History pages hold messages only (`store` reads them so); an edit or a delete there is skipped.
fn history_rows(events: &[Sequenced]) -> Vec<HistoryRow<'_>> {
    events
        .iter()
        .filter_map(|seq| match &seq.event {
            Event::Message(msg) => {
                let deleted = msg.revision == Revision::Deleted;
                Some(HistoryRow {
                    id: seq.id,
                    room: &seq.room,
                    user: (!deleted).then_some(&*msg.user),
                    content: (!deleted).then_some(&*msg.content),
                    created_at: Rfc3339Millis(seq.at_ms),
                    edited_ts: match msg.revision {
                        Revision::Edited { at_ms } => Some(Rfc3339Millis(at_ms)),
                        Revision::Original | Revision::Deleted => None,
                    },
                    deleted,
                })
            }
            Event::Edit(_) | Event::Delete(_) | Event::Read(_) => None,
        })
        .collect()
}

/// REST history body: a JSON array of `{id, room, user, content, created_at}`.
pub(crate) fn history_array(messages: &[Sequenced]) -> Vec<u8> {
    to_vec(&history_rows(messages))
}

/// `history` event: a page of messages for a WebSocket `history` command.
pub(crate) fn history_event(room: &str, messages: &[Sequenced], has_more: bool) -> Vec<u8> {
    #[derive(Serialize)]
    struct History<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        room: &'a str,
        messages: Vec<HistoryRow<'a>>,
        has_more: bool,
    }
    to_vec(&History { kind: "history", room, messages: history_rows(messages), has_more })
}

/// History persistence figures shown in `/healthz`.
#[derive(Serialize, Debug, Clone, Copy)]
pub(crate) struct PersistenceHealth {
    /// Messages waiting in the write-behind queue.
    pub(crate) queue_depth: usize,
    /// The queue's bound.
    pub(crate) queue_capacity: usize,
    /// Clients that send are not being read until the queue drains.
    pub(crate) congested: bool,
    /// The writer is retrying a failed commit (disk full, read-only file, lock).
    pub(crate) retrying: bool,
    /// Failed commit attempts since start.
    pub(crate) commit_errors: u64,
    /// Rows written since start.
    pub(crate) rows_written: u64,
}

/// Cluster link figures shown in `/healthz` in cluster mode.
#[derive(Serialize, Debug, Clone)]
pub(crate) struct ClusterHealth {
    /// This node's `--node-id`.
    pub(crate) node: String,
    /// The publisher is connected to Redis.
    pub(crate) publisher_up: bool,
    /// The subscriber is connected to Redis and caught up.
    pub(crate) subscriber_up: bool,
    /// Accepted messages waiting to be published (during an outage: to be replayed).
    pub(crate) outbox: usize,
    /// Messages delivered here with a provisional id while Redis was away, since start.
    pub(crate) provisional: u64,
    /// Lost connections and failed connection attempts, since start.
    pub(crate) link_errors: u64,
}

/// `/healthz` body; `persistence` is `None` with `--no-persist`; `cluster` only in cluster mode.
pub(crate) fn health(
    connections: usize,
    shards: usize,
    persistence: Option<PersistenceHealth>,
    cluster: Option<ClusterHealth>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        connections: usize,
        shards: usize,
        persistence: Option<PersistenceHealth>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cluster: Option<ClusterHealth>,
    }
    to_vec(&Health { status: "ok", connections, shards, persistence, cluster })
}

/// `/readyz` body: `status` is `ready` or `not_ready`; `store` says why the database is or is not
/// writable (`ok`, `disabled`, `retrying`, `writer_down`); `draining` is true during shutdown.
pub(crate) fn readiness(ready: bool, store: &str, draining: bool) -> Vec<u8> {
    #[derive(Serialize)]
    struct Readiness<'a> {
        status: &'static str,
        store: &'a str,
        draining: bool,
    }
    to_vec(&Readiness { status: if ready { "ready" } else { "not_ready" }, store, draining })
}

fn to_vec(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write(&mut out, value);
    out
}

fn write(out: &mut Vec<u8>, value: &impl Serialize) {
    // Serializing plain structs of strings and integers into a Vec cannot fail.
    serde_json::to_writer(out, value).expect("bug: serializing an event into a Vec failed");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn parse(input: &str) -> Result<String, ErrorCode> {
        let mut bytes = input.as_bytes().to_vec();
        JsonParser::default().parse(&mut bytes).map(|c| format!("{c:?}")).map_err(|e| e.code)
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse(r#"{"type":"message","room":"r","content":"hi \"you\"","client_id":"c1"}"#),
            Ok(r#"Message { room: "r", content: "hi \"you\"", client_id: Some("c1") }"#.into())
        );
        assert_eq!(
            parse(r#"{"type":"join","room":"r","since":5}"#),
            Ok(r#"Join { room: "r", since: Some(5), epoch: None }"#.into())
        );
        assert_eq!(
            parse(r#"{"type":"join","room":"r","resume":7}"#),
            Ok(r#"Join { room: "r", since: Some(7), epoch: None }"#.into())
        );
        assert_eq!(parse(r#"{"type":"leave","room":"r","extra":[1,2]}"#), Ok(r#"Leave { room: "r" }"#.into()));
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok("Ping".into()));
        assert_eq!(
            parse(r#"{"type":"edit","room":"r","id":3,"content":"x"}"#),
            Ok(r#"Edit { room: "r", id: 3, content: "x", client_id: None }"#.into())
        );
        assert_eq!(
            parse(r#"{"type":"delete","room":"r","id":3,"client_id":"d"}"#),
            Ok(r#"Delete { room: "r", id: 3, client_id: Some("d") }"#.into())
        );
        assert_eq!(parse(r#"{"type":"edit","room":"r","content":"x"}"#), Err(ErrorCode::MissingField));
        assert_eq!(parse(r#"{"type":"delete","room":"r","id":"3"}"#), Err(ErrorCode::BadJson));
    }

    #[test]
    fn bad_commands_get_codes() {
        assert_eq!(parse("not json"), Err(ErrorCode::BadJson));
        assert_eq!(parse("[1,2]"), Err(ErrorCode::BadJson));
        assert_eq!(parse(r#"{"type":"message","room":"r","content":5}"#), Err(ErrorCode::BadJson));
        assert_eq!(parse(r#"{"type":"join","room":"r","since":-1}"#), Err(ErrorCode::BadJson));
        assert_eq!(parse(r#"{"room":"r"}"#), Err(ErrorCode::UnknownType));
        assert_eq!(parse(r#"{"type":"dance"}"#), Err(ErrorCode::UnknownType));
        assert_eq!(parse(r#"{"type":"message","room":"r"}"#), Err(ErrorCode::MissingField));
        assert_eq!(parse(r#"{"type":"join"}"#), Err(ErrorCode::MissingField));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&deep), Err(ErrorCode::BadJson));
    }

    #[test]
    fn message_event_round_trips_through_a_json_parser() {
        let rec = Sequenced {
            idempotency_key: None,
            id: 42,
            room: Arc::from("r"),
            at_ms: 1_700_000_000_123,
            event: Event::message(Arc::from("Al\"ice"), Arc::from("<img onerror=x> \u{1}")),
        };
        let mut out = Vec::new();
        write_event(&mut out, &rec, Some("c1"));
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(value["type"], "message");
        assert_eq!(value["id"], 42);
        assert_eq!(value["user"], "Al\"ice");
        assert_eq!(value["content"], "<img onerror=x> \u{1}");
        assert_eq!(value["ts"], "2023-11-14T22:13:20.123Z");
        assert_eq!(value["client_id"], "c1");
        out.clear();
        write_event(&mut out, &rec, None);
        assert!(!String::from_utf8_lossy(&out).contains("client_id"));
    }
}
