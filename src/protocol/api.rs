//! The server API's JSON (sans-IO): request bodies parsed and checked field by field, so a bad body
//! is refused with a message naming the field (`messages[3].content must be a string`), and every
//! response body rendered. The routes and what they do are `api`'s; this file only knows the shapes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::MAX_CLIENT_ID_BYTES;
use super::names;
use crate::types::{ClientError, ErrorCode};

/// Messages one `POST /api/publish` may carry at most.
pub const MAX_BATCH: usize = 1000;
/// Longest `reason` of a disconnect, in bytes (a close frame's reason is at most 123 bytes; the
/// stable prefix takes the rest).
pub const MAX_REASON_BYTES: usize = 100;
/// Longest ban or mute: ten years, in seconds.
pub const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// One message to publish, checked (`room` is empty for the single-message route, whose room is
/// in the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiMessage {
    /// The room (batch route), already validated.
    pub room: String,
    /// Sender's name, trimmed and validated like a nickname.
    pub user: String,
    /// Content, 1 to `max_message` bytes.
    pub content: String,
    /// Optional client id, echoed to JSON members like a client's.
    pub client_id: Option<String>,
}

/// `POST /api/users/{user}/disconnect`'s body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Told to the user in the close frame (after the stable reason word).
    pub reason: String,
    /// Whether the client may reconnect (close 4000) or must not (4500).
    pub reconnect: bool,
}

fn bad(code: ErrorCode, message: String) -> ClientError {
    ClientError::new(code, message)
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<Map<String, Value>, ClientError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad(ErrorCode::BadJson, "the body must be a JSON object".into())),
        Err(err) => Err(bad(ErrorCode::BadJson, format!("the body is not valid JSON: {err}"))),
    }
}

fn string<'a>(map: &'a Map<String, Value>, field: &str, at: &str) -> Result<Option<&'a str>, ClientError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(ErrorCode::InvalidParameter, format!("field `{at}{field}` must be a string"))),
    }
}

fn required<'a>(map: &'a Map<String, Value>, field: &str, at: &str) -> Result<&'a str, ClientError> {
    string(map, field, at)?.ok_or_else(|| bad(ErrorCode::MissingField, format!("field `{at}{field}` is missing")))
}

/// Renames a validation error so that it names the field it is about.
fn naming(field: String) -> impl FnOnce(ClientError) -> ClientError {
    move |err| ClientError::new(err.code, format!("field `{field}`: {}", err.message))
}

fn message_fields(map: &Map<String, Value>, at: &str, max_message: usize) -> Result<ApiMessage, ClientError> {
    let user = required(map, "user", at)?;
    let user = names::validate_nick(user).map_err(naming(format!("{at}user")))?.to_string();
    let content = required(map, "content", at)?;
    if content.is_empty() {
        return Err(bad(ErrorCode::EmptyMessage, format!("field `{at}content` must not be empty")));
    }
    if content.len() > max_message {
        return Err(bad(
            ErrorCode::MessageTooLarge,
            format!("field `{at}content` is {} bytes; the limit is {max_message}", content.len()),
        ));
    }
    let client_id = string(map, "client_id", at)?;
    if client_id.is_some_and(|c| c.len() > MAX_CLIENT_ID_BYTES) {
        return Err(bad(
            ErrorCode::InvalidClientId,
            format!("field `{at}client_id` is longer than {MAX_CLIENT_ID_BYTES} bytes"),
        ));
    }
    Ok(ApiMessage { room: String::new(), user, content: content.to_string(), client_id: client_id.map(str::to_string) })
}

/// `POST /api/rooms/{room}/messages`: `{"user", "content", "client_id"?}`.
///
/// # Errors
/// A [`ClientError`] naming the field (or saying the body is not a JSON object).
pub fn parse_message(body: &[u8], max_message: usize) -> Result<ApiMessage, ClientError> {
    message_fields(&object(body)?, "", max_message)
}

/// `POST /api/publish`: `{"messages": [{"room", "user", "content", "client_id"?}, …]}`, 1 to
/// [`MAX_BATCH`] messages, every one checked before any is published.
///
/// # Errors
/// A [`ClientError`] naming the field (`messages[3].room`).
pub fn parse_batch(body: &[u8], max_message: usize) -> Result<Vec<ApiMessage>, ClientError> {
    let map = object(body)?;
    let items = match map.get("messages") {
        Some(Value::Array(items)) => items,
        None => return Err(bad(ErrorCode::MissingField, "field `messages` is missing".into())),
        Some(_) => return Err(bad(ErrorCode::InvalidParameter, "field `messages` must be an array".into())),
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(bad(
            ErrorCode::InvalidParameter,
            format!("field `messages` holds {} messages; it must hold 1 to {MAX_BATCH}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("messages[{i}].");
            let Value::Object(fields) = item else {
                return Err(bad(ErrorCode::InvalidParameter, format!("field `messages[{i}]` must be an object")));
            };
            let room = required(fields, "room", &at)?;
            names::validate_room(room).map_err(naming(format!("{at}room")))?;
            let mut msg = message_fields(fields, &at, max_message)?;
            msg.room = room.to_string();
            Ok(msg)
        })
        .collect()
}

/// `POST /api/users/{user}/disconnect`: `{"reason"?, "reconnect"?}` (defaults: no reason, `false`).
///
/// # Errors
/// A [`ClientError`] naming the field.
pub fn parse_disconnect(body: &[u8]) -> Result<Disconnect, ClientError> {
    let map = if body.is_empty() { Map::new() } else { object(body)? };
    let reason = string(&map, "reason", "")?.unwrap_or_default();
    if reason.len() > MAX_REASON_BYTES || reason.chars().any(char::is_control) {
        return Err(bad(
            ErrorCode::InvalidParameter,
            format!("field `reason` must be at most {MAX_REASON_BYTES} bytes without control characters"),
        ));
    }
    let reconnect = match map.get("reconnect") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad(ErrorCode::InvalidParameter, "field `reconnect` must be true or false".into())),
    };
    Ok(Disconnect { reason: reason.to_string(), reconnect })
}

/// A ban's or a mute's body: `{"seconds": 1 to MAX_SECONDS}`.
///
/// # Errors
/// A [`ClientError`] naming the field.
pub fn parse_seconds(body: &[u8]) -> Result<u64, ClientError> {
    let map = object(body)?;
    match map.get("seconds") {
        None => Err(bad(ErrorCode::MissingField, "field `seconds` is missing".into())),
        Some(Value::Number(n)) => n.as_u64().filter(|s| (1..=MAX_SECONDS).contains(s)).ok_or_else(|| {
            bad(ErrorCode::InvalidParameter, format!("field `seconds` must be an integer from 1 to {MAX_SECONDS}"))
        }),
        Some(_) => Err(bad(ErrorCode::InvalidParameter, "field `seconds` must be a number".into())),
    }
}

/// A moderation change every node of a cluster applies (the server API sends it through Redis; the
/// node that made it skips its own, by `node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationEvent {
    /// The node that made it (a number unique per process).
    pub node: u64,
    /// What it is.
    pub change: ModerationChange,
}

/// The change of a [`ModerationEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ModerationChange {
    /// `user` banned until `until_ms`.
    Ban {
        /// The user.
        user: String,
        /// Expiry, ms since the epoch.
        until_ms: i64,
    },
    /// `user`'s ban lifted.
    Unban {
        /// The user.
        user: String,
    },
    /// `user` muted in `room` until `until_ms`.
    Mute {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// Expiry, ms since the epoch.
        until_ms: i64,
    },
    /// `user`'s mute in `room` lifted.
    Unmute {
        /// The room.
        room: String,
        /// The user.
        user: String,
    },
    /// Every token of `user` issued before `before_ms` refused from now on (by `iat`; one without
    /// `iat` too), and the user's connections closed with 4503 `token_revoked`.
    Revoke {
        /// The user.
        user: String,
        /// Tokens issued before this (ms since the epoch) are refused.
        before_ms: i64,
    },
    /// Every connection of `user` closed with `code` and the operator's `reason`.
    Disconnect {
        /// The user.
        user: String,
        /// The close code.
        code: u16,
        /// The operator's text.
        reason: String,
    },
}

/// A moderation event as the cluster carries it.
pub fn encode_moderation(event: &ModerationEvent) -> Vec<u8> {
    to_vec(event)
}

/// A moderation event from the cluster (`None`: not one this build understands).
pub fn parse_moderation(payload: &[u8]) -> Option<ModerationEvent> {
    serde_json::from_slice(payload).ok()
}

fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `{"id": id}`: a published message's id.
pub fn id_body(id: u64) -> Vec<u8> {
    to_vec(&serde_json::json!({ "id": id }))
}

/// `{"id": id, "deleted": true}`: a message redacted by the API.
pub fn deleted_body(id: u64) -> Vec<u8> {
    to_vec(&serde_json::json!({ "id": id, "deleted": true }))
}

/// `{"ids": [...]}`: a batch's ids, in the order of its messages.
pub fn ids_body(ids: &[u64]) -> Vec<u8> {
    to_vec(&serde_json::json!({ "ids": ids }))
}

/// A room of `GET /api/rooms`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoomRow {
    /// Room name.
    pub room: String,
    /// Distinct users present.
    pub members: usize,
    /// Connections in it (a user may have several).
    pub connections: u64,
}

/// `{"rooms": [...]}`.
pub fn rooms_body(rooms: &[RoomRow]) -> Vec<u8> {
    to_vec(&serde_json::json!({ "rooms": rooms }))
}

/// A user present in a room, with their connections there.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PresenceRow {
    /// User name.
    pub user: String,
    /// Their connections in the room.
    pub connections: u32,
}

/// `{"room", "members", "users": [...]}`.
pub fn presence_body(room: &str, users: &[PresenceRow]) -> Vec<u8> {
    to_vec(&serde_json::json!({ "room": room, "members": users.len(), "users": users }))
}

/// One WebSocket connection of a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectionRow {
    /// The connection's id (the `conn_id` of its `welcome`).
    pub id: u64,
    /// `json` or `text`.
    pub format: String,
    /// The client's address.
    pub peer: String,
    /// When it connected, ms since the Unix epoch.
    pub connected_at_ms: i64,
    /// Cluster mode: the `--node-id` of the node it is connected to (absent on a single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// One user's WebSocket connections on one node and the rooms they are in there (connections per
/// room): what each node of a cluster tells the others for the cluster-wide listings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeUser {
    /// User name.
    pub user: String,
    /// The connections, each naming the node.
    pub connections: Vec<ConnectionRow>,
    /// Rooms the user is in on that node, with their connections in each.
    pub rooms: std::collections::BTreeMap<String, u32>,
}

/// `{"user", "connections": [...], "rooms": [...]}`.
pub fn connections_body(user: &str, connections: &[ConnectionRow], rooms: &[String]) -> Vec<u8> {
    to_vec(&serde_json::json!({ "user": user, "connections": connections, "rooms": rooms }))
}

/// `{"user", "closed"}`: a disconnect's answer (`closed`: connections told to close).
pub fn disconnect_body(user: &str, closed: usize) -> Vec<u8> {
    to_vec(&serde_json::json!({ "user": user, "closed": closed }))
}

/// `{"user", "before_ms", "closed"}`: a revocation's answer.
pub fn revoke_body(user: &str, before_ms: i64, closed: usize) -> Vec<u8> {
    to_vec(&serde_json::json!({ "user": user, "before_ms": before_ms, "closed": closed }))
}

/// `{"user", "until_ms", "closed"}`: a ban's answer.
pub fn ban_body(user: &str, until_ms: i64, closed: usize) -> Vec<u8> {
    to_vec(&serde_json::json!({ "user": user, "until_ms": until_ms, "closed": closed }))
}

/// `{"room", "user", "until_ms"}`: a mute's answer.
pub fn mute_body(room: &str, user: &str, until_ms: i64) -> Vec<u8> {
    to_vec(&serde_json::json!({ "room": room, "user": user, "until_ms": until_ms }))
}

/// `{"lifted": bool}`: whether a ban or mute was in force when it was lifted.
pub fn lifted_body(lifted: bool) -> Vec<u8> {
    to_vec(&serde_json::json!({ "lifted": lifted }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(result: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, String) {
        let e = result.expect_err("refused");
        (e.code, e.message)
    }

    #[test]
    fn a_message_body_is_checked_field_by_field() {
        let ok = parse_message(br#"{"user":" Bot ","content":"hi","client_id":"c1"}"#, 10).expect("valid");
        assert_eq!((ok.user.as_str(), ok.content.as_str(), ok.client_id.as_deref()), ("Bot", "hi", Some("c1")));
        assert_eq!(err(parse_message(b"{", 10)).0, ErrorCode::BadJson);
        assert_eq!(err(parse_message(b"[]", 10)).0, ErrorCode::BadJson);
        let (code, message) = err(parse_message(br#"{"content":"hi"}"#, 10));
        assert_eq!((code, message.as_str()), (ErrorCode::MissingField, "field `user` is missing"));
        let (code, message) = err(parse_message(br#"{"user":"a","content":5}"#, 10));
        assert_eq!((code, message.as_str()), (ErrorCode::InvalidParameter, "field `content` must be a string"));
        assert_eq!(err(parse_message(br#"{"user":"a","content":""}"#, 10)).0, ErrorCode::EmptyMessage);
        assert_eq!(err(parse_message(br#"{"user":"a","content":"12345678901"}"#, 10)).0, ErrorCode::MessageTooLarge);
        let (code, message) = err(parse_message(br#"{"user":"","content":"x"}"#, 10));
        assert_eq!(code, ErrorCode::InvalidNick);
        assert!(message.starts_with("field `user`"), "{message}");
    }

    #[test]
    fn a_batch_names_the_message_at_fault() {
        let ok = parse_batch(
            br#"{"messages":[{"room":"a","user":"u","content":"1"},{"room":"b","user":"u","content":"2"}]}"#,
            10,
        )
        .expect("valid");
        assert_eq!(ok.iter().map(|m| m.room.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let (_, message) =
            err(parse_batch(br#"{"messages":[{"room":"a","user":"u","content":"1"},{"room":"a","user":"u"}]}"#, 10));
        assert_eq!(message, "field `messages[1].content` is missing");
        let (code, message) = err(parse_batch(br#"{"messages":[{"room":"","user":"u","content":"1"}]}"#, 10));
        assert_eq!(code, ErrorCode::InvalidRoom);
        assert!(message.starts_with("field `messages[0].room`"), "{message}");
        assert_eq!(err(parse_batch(br#"{"messages":[]}"#, 10)).0, ErrorCode::InvalidParameter);
        let many = format!(r#"{{"messages":[{}]}}"#, vec![r#"{"room":"a","user":"u","content":"1"}"#; 1001].join(","));
        assert_eq!(err(parse_batch(many.as_bytes(), 10)).0, ErrorCode::InvalidParameter);
    }

    #[test]
    fn moderation_events_round_trip() {
        let event = ModerationEvent {
            node: 7,
            change: ModerationChange::Mute { room: "r".into(), user: "al".into(), until_ms: 5 },
        };
        assert_eq!(parse_moderation(&encode_moderation(&event)), Some(event));
        assert_eq!(parse_moderation(b"{\"node\":1,\"change\":{\"op\":\"explode\"}}"), None);
    }

    #[test]
    fn moderation_bodies() {
        assert_eq!(parse_disconnect(b"").expect("empty"), Disconnect { reason: String::new(), reconnect: false });
        let d = parse_disconnect(br#"{"reason":"spam","reconnect":true}"#).expect("valid");
        assert_eq!((d.reason.as_str(), d.reconnect), ("spam", true));
        assert_eq!(err(parse_disconnect(br#"{"reconnect":"yes"}"#)).1, "field `reconnect` must be true or false");
        assert_eq!(parse_seconds(br#"{"seconds":60}"#).expect("valid"), 60);
        for bad in [r#"{"seconds":0}"#, r#"{"seconds":-1}"#, r#"{"seconds":1.5}"#, r#"{"seconds":"60"}"#, "{}"] {
            assert!(err(parse_seconds(bad.as_bytes())).1.contains("`seconds`"), "{bad}");
        }
    }
}
