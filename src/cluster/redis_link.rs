//! One blocking Redis connection with the scripts loaded: what the publisher and the subscriber's
//! catch-up need (floor, slot claim, pipelined publishes, stream scans and reads; membership calls
//! are in `membership_link`). Every call has a socket timeout, and any error means the caller drops
//! the link and reconnects.

use std::time::Duration;

use std::sync::Arc;

use redis::{Client, Connection, RedisResult, Value};

use super::ClusterError;
use super::events::PresenceChange;
use super::ids::ID_STRIDE;
use super::keys;
use super::script::{FLOOR_SCRIPT, PRESENCE_SCRIPT, PUBLISH_SCRIPT};
use super::wire::EntryId;
use crate::room::sequencer::{ControlMessage, ControlState};

/// How long Redis remembers an API idempotency key: 10 minutes, the API's own window
/// (`api::idempotency::WINDOW_MS`, a layer above).
const IDEMPOTENCY_WINDOW_MS: u64 = 10 * 60 * 1000;

/// How long connecting, reading and writing may take before the link counts as broken.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// One message to publish: the arguments of [`PUBLISH_SCRIPT`] that vary.
#[derive(Debug, Clone)]
pub(crate) struct PublishArgs {
    /// Room name.
    pub(crate) room: String,
    /// `node/incarnation`.
    pub(crate) origin: String,
    /// Origin sequence number.
    pub(crate) seq: u64,
    /// Provisional id (0: let Redis allocate).
    pub(crate) provisional_id: u64,
    /// Body after the id line (`wire::encode_tail`).
    pub(crate) tail: Vec<u8>,
    /// Sender's name (whose token bucket a fresh message is charged to).
    pub(crate) user: String,
    /// `--user-rate-limit` (0: no per-user limit).
    pub(crate) user_rate: f64,
    /// `--user-rate-burst`.
    pub(crate) user_burst: u32,
    /// The server API's `Idempotency-Key`, if any.
    pub(crate) idempotency_key: Option<String>,
}

/// One entry of a publish pipeline.
#[derive(Debug, Clone)]
pub(crate) enum BatchItem {
    /// A chat message, through the publish script.
    Chat(PublishArgs),
    /// This node's first or last connection of a user in a room, through the presence script.
    Presence(PresenceChange),
    /// A control message, published on `keys::CONTROL_CHANNEL` (and kept in `keys::CONTROL_STATE`
    /// as its state says).
    Control(ControlMessage),
    /// A relayed transient event (binary frame, typing notice), published on the room's channel.
    Relay {
        /// Room name.
        room: Arc<str>,
        /// The channel payload (`events::encode_relay`).
        payload: Vec<u8>,
    },
}

/// What Redis answered for one pipeline entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Published {
    /// Appended and published with this id.
    Appended(u64),
    /// A replay of a sequence number this origin already published; nothing happened.
    Duplicate,
    /// Refused by the sender's per-user token bucket; not published (its seq is recorded).
    Refused,
    /// Its idempotency key was published before with this id; not published again.
    Existing(u64),
    /// A presence change or binary relay was applied or published.
    Done,
}

/// A connection with the scripts loaded.
pub(crate) struct RedisLink {
    pub(super) conn: Connection,
    publish_sha: String,
    floor_sha: String,
    pub(super) presence_sha: String,
}

impl RedisLink {
    /// Connects with timeouts and loads the scripts.
    ///
    /// # Errors
    /// The Redis error (connection refused, timeout, …).
    pub(crate) fn connect(client: &Client) -> RedisResult<RedisLink> {
        let mut conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        let publish_sha = redis::cmd("SCRIPT").arg("LOAD").arg(PUBLISH_SCRIPT).query(&mut conn)?;
        let floor_sha = redis::cmd("SCRIPT").arg("LOAD").arg(FLOOR_SCRIPT).query(&mut conn)?;
        let presence_sha = redis::cmd("SCRIPT").arg("LOAD").arg(PRESENCE_SCRIPT).query(&mut conn)?;
        Ok(RedisLink { conn, publish_sha, floor_sha, presence_sha })
    }

    /// Checks the connection is alive.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn ping(&mut self) -> RedisResult<()> {
        redis::cmd("PING").query(&mut self.conn)
    }

    /// Raises the id counter to at least `min`; returns the counter after.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn floor(&mut self, min: u64) -> RedisResult<u64> {
        redis::cmd("EVALSHA").arg(&self.floor_sha).arg(1).arg(keys::ID_COUNTER).arg(min).query(&mut self.conn)
    }

    /// Claims id slot `slot` for `node_id`; returns the other node's id when someone else holds it.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn claim_slot(&mut self, slot: u64, node_id: &str) -> RedisResult<Option<String>> {
        let _: i64 = redis::cmd("HSETNX").arg(keys::SLOTS).arg(slot).arg(node_id).query(&mut self.conn)?;
        let owner: Option<String> = redis::cmd("HGET").arg(keys::SLOTS).arg(slot).query(&mut self.conn)?;
        Ok(owner.filter(|o| o != node_id))
    }

    /// Publishes `batch` in one pipeline, in order; one answer per entry. `origin` is this node
    /// incarnation (whose membership the presence entries change).
    ///
    /// # Errors
    /// A Redis error (then it is unknown which of the batch were published: replaying chat is safe,
    /// the script ignores sequence numbers it has seen; presence changes are idempotent) or
    /// [`ClusterError::Reply`].
    pub(crate) fn publish_batch(
        &mut self,
        batch: &[BatchItem],
        maxlen: u64,
        origin: &str,
    ) -> Result<Vec<Published>, ClusterError> {
        let mut pipe = redis::pipe();
        for item in batch {
            match item {
                BatchItem::Chat(msg) => {
                    let idem = msg
                        .idempotency_key
                        .as_deref()
                        .map_or_else(|| keys::NO_IDEMPOTENCY.to_string(), keys::idempotency);
                    let window = if msg.idempotency_key.is_some() { IDEMPOTENCY_WINDOW_MS } else { 0 };
                    pipe.cmd("EVALSHA")
                        .arg(&self.publish_sha)
                        .arg(5)
                        .arg(keys::ID_COUNTER)
                        .arg(keys::log(&msg.room))
                        .arg(keys::origins(&msg.room))
                        .arg(keys::user_bucket(&msg.user))
                        .arg(idem)
                        .arg(&msg.origin)
                        .arg(msg.seq)
                        .arg(msg.provisional_id)
                        .arg(ID_STRIDE)
                        .arg(maxlen)
                        .arg(&msg.tail)
                        .arg(keys::channel(&msg.room))
                        .arg(msg.user_rate)
                        .arg(msg.user_burst)
                        .arg(window);
                }
                BatchItem::Presence(change) => {
                    let mode = if change.joined { "j" } else { "l" };
                    self.presence_cmd(&mut pipe, &change.room, origin, mode, &[&*change.user]);
                }
                BatchItem::Relay { room, payload } => {
                    pipe.cmd("PUBLISH").arg(keys::channel(room)).arg(payload);
                }
                BatchItem::Control(message) => {
                    // The kept state first: a node linking now reads it, or gets the message live.
                    match &message.state {
                        ControlState::Transient => {}
                        ControlState::Keep(subject) => {
                            pipe.cmd("HSET")
                                .arg(keys::CONTROL_STATE)
                                .arg(subject)
                                .arg(message.payload.as_slice())
                                .ignore();
                        }
                        ControlState::Clear(subject) => {
                            pipe.cmd("HDEL").arg(keys::CONTROL_STATE).arg(subject).ignore();
                        }
                    }
                    pipe.cmd("PUBLISH").arg(keys::CONTROL_CHANNEL).arg(message.payload.as_slice());
                }
            }
        }
        let replies: Vec<Value> = pipe.query(&mut self.conn)?;
        if replies.len() != batch.len() {
            return Err(ClusterError::Reply("publish pipeline answered a different number of replies"));
        }
        batch
            .iter()
            .zip(replies)
            .map(|(item, reply)| match item {
                BatchItem::Chat(_) => parse_publish_reply(reply),
                BatchItem::Presence(_) | BatchItem::Relay { .. } | BatchItem::Control(_) => match reply {
                    Value::Int(_) => Ok(Published::Done),
                    Value::ServerError(_) => Err(ClusterError::Reply("presence script failed")),
                    _ => Err(ClusterError::Reply("presence or relay publish did not answer a number")),
                },
            })
            .collect()
    }

    /// Adds one call of the presence script to `pipe` (see [`PRESENCE_SCRIPT`] for `mode`).
    pub(super) fn presence_cmd(
        &self,
        pipe: &mut redis::Pipeline,
        room: &str,
        origin: &str,
        mode: &str,
        users: &[&str],
    ) {
        pipe.cmd("EVALSHA")
            .arg(&self.presence_sha)
            .arg(3)
            .arg(keys::users(room))
            .arg(keys::on_node(room, origin))
            .arg(keys::heartbeat(origin))
            .arg(keys::channel(room))
            .arg(room)
            .arg(mode)
            .arg(users);
    }

    /// Every key matching `pattern` of Redis type `kind`.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn scan(&mut self, pattern: &str, kind: &str) -> RedisResult<Vec<String>> {
        let mut cursor = "0".to_string();
        let mut found = Vec::new();
        loop {
            let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg(kind)
                .query(&mut self.conn)?;
            found.extend(keys);
            if next == "0" {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Names of every room stream.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn scan_logs(&mut self) -> RedisResult<Vec<String>> {
        self.scan(keys::LOG_PATTERN, "stream")
    }

    /// The cluster's kept control state (`keys::CONTROL_STATE`): every payload in it.
    ///
    /// # Errors
    /// The Redis error.
    pub(crate) fn control_state(&mut self) -> RedisResult<Vec<Vec<u8>>> {
        redis::cmd("HVALS").arg(keys::CONTROL_STATE).query(&mut self.conn)
    }

    /// Up to `count` entries of stream `key` after `after` (from the start with `None`): (entry, body).
    ///
    /// # Errors
    /// The Redis error, or [`ClusterError::Reply`] for an entry that is not `[id, [m, body]]`.
    pub(crate) fn read_log(
        &mut self,
        key: &str,
        after: Option<EntryId>,
        count: usize,
    ) -> Result<Vec<(EntryId, Vec<u8>)>, ClusterError> {
        let start = after.map_or_else(|| "-".to_string(), |e| format!("({e}"));
        let reply: Value =
            redis::cmd("XRANGE").arg(key).arg(start).arg("+").arg("COUNT").arg(count).query(&mut self.conn)?;
        let Value::Array(entries) = reply else { return Err(ClusterError::Reply("XRANGE did not answer an array")) };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                return Err(ClusterError::Reply("stream entry is not an array"));
            };
            if parts.len() != 2 {
                return Err(ClusterError::Reply("stream entry is not [id, fields]"));
            }
            let fields = parts.pop();
            let id = match parts.pop() {
                Some(Value::BulkString(id)) => String::from_utf8(id).ok(),
                Some(Value::SimpleString(id)) => Some(id),
                _ => None,
            };
            let id = id.ok_or(ClusterError::Reply("stream entry id is not a string"))?;
            let id = EntryId::parse(&id).map_err(|_| ClusterError::Reply("stream entry id is malformed"))?;
            let body = match fields {
                Some(Value::Array(mut fields)) if fields.len() == 2 => match fields.pop() {
                    Some(Value::BulkString(body)) => Some(body),
                    _ => None,
                },
                _ => None,
            };
            out.push((id, body.ok_or(ClusterError::Reply("stream entry has no `m` field"))?));
        }
        Ok(out)
    }
}

/// Reads the publish script's answer: `{id, entry}` (appended), `{0, ""}` (duplicate) or `{-1, ""}`
/// (refused by the per-user bucket).
///
/// # Errors
/// [`ClusterError::Reply`] for anything else.
pub(crate) fn parse_publish_reply(reply: Value) -> Result<Published, ClusterError> {
    let (id, entry): (i64, String) =
        redis::from_redis_value(reply).map_err(|_| ClusterError::Reply("publish script did not answer {id, entry}"))?;
    match id {
        -1 => Ok(Published::Refused),
        -2 => entry
            .parse::<u64>()
            .map(Published::Existing)
            .map_err(|_| ClusterError::Reply("publish script answered an idempotency key without its id")),
        0 => Ok(Published::Duplicate),
        id => u64::try_from(id)
            .map(Published::Appended)
            .map_err(|_| ClusterError::Reply("publish script answered a negative id")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: i64, entry: &str) -> Value {
        Value::Array(vec![Value::Int(id), Value::BulkString(entry.as_bytes().to_vec())])
    }

    #[test]
    fn publish_replies_parse_to_appended_duplicate_or_refused() {
        assert_eq!(parse_publish_reply(reply(2048, "1-0")).ok(), Some(Published::Appended(2048)));
        assert_eq!(parse_publish_reply(reply(0, "")).ok(), Some(Published::Duplicate));
        assert_eq!(parse_publish_reply(reply(-1, "")).ok(), Some(Published::Refused));
        assert_eq!(parse_publish_reply(reply(-2, "4096")).ok(), Some(Published::Existing(4096)));
        assert!(parse_publish_reply(reply(-2, "x")).is_err());
        assert!(parse_publish_reply(reply(-2, "")).is_err());
        assert!(parse_publish_reply(Value::Int(3)).is_err());
        assert!(parse_publish_reply(Value::Array(vec![Value::Int(1)])).is_err());
        assert!(parse_publish_reply(Value::Nil).is_err());
    }
}
