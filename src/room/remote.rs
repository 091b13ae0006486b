//! Cluster mode's side of the publish path, as the room layer sees it: a [`RemoteSequencer`] (Redis,
//! implemented by `cluster::ClusterSink` in the layer above) takes chat messages, binary relays and
//! presence changes, orders them across nodes and hands them back for delivery.
//!
//! The trait is defined here, below the cluster, so the `Hub` can hand messages over without
//! knowing Redis: the dependency points from `cluster` down to `room`. What comes back (messages
//! in their final order, presence, binary relays) enters through the `Hub` methods of
//! `super::remote_delivery`, so the cluster never touches a room's lock or the publish path's
//! internals.

use std::collections::HashMap;
use std::sync::Arc;

use crate::types::{ChatRecord, ConnRef, Format};

/// A chat message accepted by a shard, on its way to Redis.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// Room name.
    pub(crate) room: Arc<str>,
    /// Sender's name.
    pub(crate) user: Arc<str>,
    /// Content.
    pub(crate) content: Arc<str>,
    /// Sender's wire format.
    pub(crate) format: Format,
    /// Client-chosen id.
    pub(crate) client_id: Option<Arc<str>>,
    /// Acceptance time, ms since the epoch.
    pub(crate) created_at_ms: i64,
    /// The sending connection, told when Redis refuses the message (per-user rate limit).
    pub(crate) reply_to: Option<ConnRef>,
}

impl Outgoing {
    /// The record of this message once it has id `id`.
    pub(crate) fn record(&self, id: u64) -> ChatRecord {
        ChatRecord {
            id,
            room: Arc::clone(&self.room),
            user: Arc::clone(&self.user),
            content: Arc::clone(&self.content),
            created_at_ms: self.created_at_ms,
        }
    }
}

/// Up to a cap of names of a room's present users, and their exact number.
pub(crate) type MemberList = (Vec<Arc<str>>, usize);

/// Where chat goes in cluster mode instead of the local sequence.
pub(crate) trait RemoteSequencer: Send + Sync {
    /// Queues chat message `msg` to be sequenced (waits, bounded, when the channel is full).
    fn submit(&self, msg: Outgoing);
    /// Queues a binary relay for the text members of `room` on every node.
    fn submit_binary(&self, room: &Arc<str>, payload: &[u8]);
    /// Reports that `user` got its first connection in `room` on this node (`joined`) or lost its
    /// last one; called under the room's lock, never waits.
    fn submit_presence(&self, room: &Arc<str>, user: &Arc<str>, joined: bool);
    /// Cluster-wide members of `room` (names capped at `max_names`, exact count), merging this
    /// node's `local` users; `None` when the cluster view is not available (the node then answers
    /// with its own members).
    fn members(&self, room: &str, local: &HashMap<Arc<str>, u32>, max_names: usize) -> Option<MemberList>;
    /// Whether shards should stop reading clients because the hand-off is congested.
    fn is_congested(&self) -> bool;
}
