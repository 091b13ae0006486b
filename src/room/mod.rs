//! Rooms: who is where, and getting each event of a room to every member exactly once, in one order.
//!
//! [`directory`] owns the shared room table (a `parking_lot` lock around a map, one lock per room for
//! membership and ordering); [`sequence`] tracks ids; [`sequencer`] decides who orders events (this
//! node, or Redis in cluster mode, chosen once at start); [`sink`] is what consumes the ordered log
//! beside the members (the store); [`hub`] owns the publish path: one entry, and under the room's
//! lock one `apply`, which gives the event its place, hands it to the sinks and sends one shared
//! delivery to the inbox of every shard that has members in the room; `remote` is cluster mode's way
//! back in. Shards then render each variant once and copy only the `Bytes` handle onto each member's
//! output queue.

pub(crate) mod directory;
pub(crate) mod hub;
mod remote;
pub(crate) mod sequence;
pub(crate) mod sequencer;
pub(crate) mod sink;

#[cfg(test)]
mod log_tests;
