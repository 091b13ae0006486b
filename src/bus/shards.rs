//! [`Shards`]: every shard's inbox, addressed by shard index. How the acceptor hands over
//! connections, the publish path reaches member shards, the cluster answers a connection and the
//! server stops the shards.

use std::sync::Arc;

use super::inbox::{INBOX_SOFT_CAP, ShardInbox, ShardMsg};

/// The inboxes of all shards, index = shard number.
pub(crate) struct Shards {
    inboxes: Vec<Arc<ShardInbox>>,
}

impl Shards {
    /// The router over `inboxes` (shard `i` owns `inboxes[i]`).
    pub(crate) fn new(inboxes: Vec<Arc<ShardInbox>>) -> Self {
        Shards { inboxes }
    }

    /// Number of shards.
    pub(crate) fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// Queues `msg` for shard `shard` without waking it; returns whether it must be woken with
    /// [`Shards::wake`] (see [`ShardInbox::push`]: for callers holding a room's lock).
    pub(crate) fn push(&self, shard: usize, msg: ShardMsg) -> bool {
        self.inboxes[shard].push(msg)
    }

    /// Wakes shard `shard` (after a [`Shards::push`] that asked for it).
    pub(crate) fn wake(&self, shard: usize) {
        self.inboxes[shard].wake();
    }

    /// Sends `msg` to shard `shard` and wakes it if needed; a shard index out of range (a reply to a
    /// connection of another server generation) is ignored.
    pub(crate) fn send(&self, shard: usize, msg: ShardMsg) {
        if let Some(inbox) = self.inboxes.get(shard) {
            inbox.send(msg);
        }
    }

    /// Sends `msg()` to every shard.
    pub(crate) fn broadcast(&self, msg: impl Fn() -> ShardMsg) {
        for inbox in &self.inboxes {
            inbox.send(msg());
        }
    }

    /// Messages an inbox takes beyond its soft cap before the pause is late (the ingress reserve).
    pub(crate) fn reserve(&self) -> usize {
        INBOX_SOFT_CAP
    }

    /// Whether any inbox holds more than [`INBOX_SOFT_CAP`] messages (shards then stop reading
    /// client input: `room::hub::Hub::ingress_paused`).
    pub(crate) fn congested(&self) -> bool {
        self.inboxes.iter().any(|inbox| inbox.len() > INBOX_SOFT_CAP)
    }
}
