//! Key and channel names in Redis. Every per-room name carries the room in a hash tag (`{room}`), so
//! a room's stream, origin table and channel live on one hash slot in Redis Cluster.
//!
//! | name | type | what |
//! | --- | --- | --- |
//! | `rc:ids` | string | the id counter (global: see the module doc of `cluster` for Redis Cluster) |
//! | `rc:slots` | hash | id slot → node id that claimed it |
//! | `rc:{room}:log` | stream | the room's messages in delivery order, field `m`, capped `MAXLEN ~ N` |
//! | `rc:{room}:origins` | hash | origin (`node/incarnation`) → last sequence number published |
//! | `rc:{room}:msg` | channel | `entry_id \n body` for every message appended to the log; presence and binary relays (`events`) |
//! | `rc:{room}:users` | hash | user → number of nodes where the user has a connection in the room |
//! | `rc:{room}:on:<origin>` | set | users with a connection in the room on node incarnation `origin` |
//! | `rc:nodes` | set | origins (`node/incarnation`) that registered membership (for reaping) |
//! | `rc:node:<origin>` | string | heartbeat of a node incarnation, `PX` expiry renewed by its publisher |
//! | `rc:user:{<user>}:bucket` | hash | per-user token bucket (`t` tokens, `ts` ms of the last refill), expires once full again; only with `--user-rate-limit` (another hash slot than the room's: see the module doc of `cluster`) |
//! | `rc:control:state` | hash | subject → the latest moderation payload about it (bans, mutes, revocations in force), read at each (re)link: [`CONTROL_STATE`] |

/// The id counter.
pub(crate) const ID_COUNTER: &str = "rc:ids";
/// Slot claims.
pub(crate) const SLOTS: &str = "rc:slots";
/// Pattern every node subscribes to (all rooms' channels).
pub(crate) const CHANNEL_PATTERN: &str = "rc:{*}:msg";
/// The cluster-wide control channel: the server API's moderation (bans, mutes, disconnects), an
/// opaque payload for the nodes' `api` (`protocol::api::ModerationEvent`); pub/sub, at most once.
pub(crate) const CONTROL_CHANNEL: &str = "rc:control";
/// The cluster's kept control state: subject (`ban:<user>`, `mute:<room>\u{1f}<user>`,
/// `revoke:<user>`) → the latest control payload about it (`room::sequencer::ControlState`), read by
/// a node when it links (again), so a node that was away learns the bans, mutes and revocations made
/// meanwhile. A lifted ban or mute deletes its field; an expired one stays until lifted or replaced
/// (a node ignores it), one small field per user.
pub(crate) const CONTROL_STATE: &str = "rc:control:state";
/// Pattern matching every room's stream (for catch-up scans).
pub(crate) const LOG_PATTERN: &str = "rc:{*}:log";

/// Registered node incarnations.
pub(crate) const NODES: &str = "rc:nodes";
/// Pattern matching every room's user table (for membership snapshots).
pub(crate) const USERS_PATTERN: &str = "rc:{*}:users";

/// The room's stream.
pub(crate) fn log(room: &str) -> String {
    format!("rc:{{{room}}}:log")
}

/// The room's origin table.
pub(crate) fn origins(room: &str) -> String {
    format!("rc:{{{room}}}:origins")
}

/// The room's channel.
pub(crate) fn channel(room: &str) -> String {
    format!("rc:{{{room}}}:msg")
}

/// The per-user token bucket (`--user-rate-limit`).
/// An API idempotency key's first id (`SET … PX`, the window), cluster-wide.
pub(crate) fn idempotency(key: &str) -> String {
    format!("rc:idem:{{{key}}}")
}

/// The key passed to the publish script for a message without an idempotency key (never written).
pub(crate) const NO_IDEMPOTENCY: &str = "rc:idem:-";

pub(crate) fn user_bucket(user: &str) -> String {
    format!("rc:user:{{{user}}}:bucket")
}

/// The room's user table (user → nodes where present).
pub(crate) fn users(room: &str) -> String {
    format!("rc:{{{room}}}:users")
}

/// The set of users in `room` on node incarnation `origin`.
pub(crate) fn on_node(room: &str, origin: &str) -> String {
    format!("rc:{{{room}}}:on:{origin}")
}

/// Pattern matching every room's set of `origin` (for resync and reaping; origins hold no glob
/// characters: see `ClusterConfig::new` and `channel`).
pub(crate) fn on_node_pattern(origin: &str) -> String {
    format!("rc:{{*}}:on:{origin}")
}

/// The room of a key made by [`on_node`] for `origin`.
pub(crate) fn room_of_on_node<'a>(key: &'a str, origin: &str) -> Option<&'a str> {
    key.strip_prefix("rc:{")?.strip_suffix(origin)?.strip_suffix("}:on:")
}

/// The room of a key made by [`users`].
pub(crate) fn room_of_users(key: &str) -> Option<&str> {
    key.strip_prefix("rc:{")?.strip_suffix("}:users")
}

/// Heartbeat key of node incarnation `origin`.
pub(crate) fn heartbeat(origin: &str) -> String {
    format!("rc:node:{origin}")
}

/// Connections per user of node incarnation `origin` (a hash, expiring with its heartbeat).
pub(crate) fn user_conns(origin: &str) -> String {
    format!("rc:conns:{origin}")
}

/// The users of node incarnation `origin` for the server API's listings (a hash, user → its
/// `NodeUser` JSON, expiring with its heartbeat).
pub(crate) fn user_rows(origin: &str) -> String {
    format!("rc:listing:{origin}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_sit_in_hash_tags() {
        assert_eq!(log("dev"), "rc:{dev}:log");
        assert_eq!(origins("dev"), "rc:{dev}:origins");
        assert_eq!(channel("dev"), "rc:{dev}:msg");
        assert_eq!(users("dev"), "rc:{dev}:users");
        assert_eq!(on_node("dev", "a/1f"), "rc:{dev}:on:a/1f");
    }

    #[test]
    fn rooms_are_read_back_from_membership_keys() {
        for room in ["dev", "a}:on:b", "", "x:users"] {
            assert_eq!(room_of_on_node(&on_node(room, "n/2"), "n/2"), Some(room));
            assert_eq!(room_of_users(&users(room)), Some(room));
        }
        assert_eq!(room_of_on_node("rc:{dev}:on:other/1", "n/2"), None);
        assert_eq!(room_of_users("rc:{dev}:log"), None);
    }
}
