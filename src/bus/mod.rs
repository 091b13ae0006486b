//! The message bus between threads: what other threads tell a shard ([`ShardMsg`] on its
//! [`ShardInbox`], all of them addressed through [`Shards`]) and the published event every member
//! shard receives ([`Delivery`]).
//!
//! Below rooms, sessions and the reactor: the room publish path pushes onto inboxes, the store's
//! reader pool and the cluster threads reply through them, and the shard loop drains them. Nothing
//! here knows what a room or a session is.

mod delivery;
mod inbox;
mod shards;

pub(crate) use delivery::{Delivery, Payload};
pub(crate) use inbox::{AmendReply, FeedChunk, HistoryPurpose, HistoryReply, ShardInbox, ShardMsg};
pub(crate) use shards::Shards;
