//! Key and channel names in Redis. Every per-room name carries the room in a hash tag (`{room}`), so
//! a room's stream, origin table and channel live on one hash slot in Redis Cluster.
//!
//! | name | type | what |
//! | --- | --- | --- |
//! | `rc:ids` | string | the id counter (global: see the module doc of `cluster` for Redis Cluster) |
//! | `rc:slots` | hash | id slot → node id that claimed it |
//! | `rc:{room}:log` | stream | the room's messages in delivery order, field `m`, capped `MAXLEN ~ N` |
//! | `rc:{room}:origins` | hash | origin (`node/incarnation`) → last sequence number published |
//! | `rc:{room}:msg` | channel | `entry_id \n body` for every message appended to the log |

/// The id counter.
pub const ID_COUNTER: &str = "rc:ids";
/// Slot claims.
pub const SLOTS: &str = "rc:slots";
/// Pattern every node subscribes to (all rooms' channels).
pub const CHANNEL_PATTERN: &str = "rc:{*}:msg";
/// Pattern matching every room's stream (for catch-up scans).
pub const LOG_PATTERN: &str = "rc:{*}:log";

/// The room's stream.
pub fn log(room: &str) -> String {
    format!("rc:{{{room}}}:log")
}

/// The room's origin table.
pub fn origins(room: &str) -> String {
    format!("rc:{{{room}}}:origins")
}

/// The room's channel.
pub fn channel(room: &str) -> String {
    format!("rc:{{{room}}}:msg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_sit_in_hash_tags() {
        assert_eq!(log("dev"), "rc:{dev}:log");
        assert_eq!(origins("dev"), "rc:{dev}:origins");
        assert_eq!(channel("dev"), "rc:{dev}:msg");
    }
}
