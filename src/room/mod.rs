//! Rooms: who is where, and getting one message to every member exactly once, in one order.
//!
//! [`directory`] owns the shared room table (a `parking_lot` lock around a map, one lock per room for
//! membership and ordering); [`sequence`] numbers messages; `encode` builds an event's frames once
//! per wire format; [`remote`] is cluster mode's side of the publish path (and `remote_delivery` its way back); [`fanout`] owns the publish path: under the room's lock a message gets its
//! id, is encoded once per wire format into shared `Bytes`, is handed to the store queue, and is sent to
//! the inbox of every shard that has members in the room. Shards then copy only the `Bytes` handle onto
//! each local member's output queue.

pub(crate) mod directory;
mod encode;
pub(crate) mod fanout;
pub(crate) mod remote;
mod remote_delivery;
pub(crate) mod sequence;
