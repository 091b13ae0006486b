//! This node's chat messages whose publish was in flight when the publisher's link to Redis broke:
//! Redis may have run them (a frozen Redis runs what it had read when it is thawed) or not, and
//! nobody knows until it answers again. Shared by the publisher and the subscriber.
//!
//! Left undelivered until then, such a message was lost to its sender: the messages after it were
//! delivered here at once with provisional ids, so when Redis ran it late, with a lower id than
//! those, the subscriber could only store it (an id not above the room's last one is not pushed
//! live), and its replay was a duplicate. Now the publisher delivers it here with a provisional id
//! like the rest ([`InDoubt::claim`]), unless the subscriber already applied it, and the subscriber
//! drops it if Redis publishes the original late ([`InDoubt::arrived`]): delivered once, stored once
//! here, and the replay (with the provisional id) is a duplicate in Redis if the original ran.
//! Both decisions are taken under one lock, so a message is never delivered by both or by neither.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

/// The in-doubt messages (by origin seq) and, per room, the last own seq the subscriber applied.
#[derive(Debug, Default)]
pub(crate) struct InDoubt {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per room: the largest seq of this node's messages the subscriber applied (Redis runs a
    /// node's publishes in seq order, and a room's messages come back in that order).
    applied: HashMap<Arc<str>, u64>,
    /// Seqs delivered here while in doubt: the subscriber drops them if Redis publishes them late.
    delivered_here: HashSet<u64>,
}

impl InDoubt {
    /// The publisher: message `seq` of `room` was in flight when the link broke. Returns whether to
    /// deliver it here now (the subscriber has not applied it); it is then marked so the
    /// subscriber drops the original should Redis publish it late.
    pub(crate) fn claim(&self, room: &Arc<str>, seq: u64) -> bool {
        let mut inner = self.inner.lock();
        if inner.applied.get(room).is_some_and(|&applied| applied >= seq) {
            return false;
        }
        inner.delivered_here.insert(seq);
        true
    }

    /// The subscriber: this node's message `seq` of `room` came back from Redis. Returns whether to
    /// apply it (`false`: it was delivered here while in doubt).
    pub(crate) fn arrived(&self, room: &Arc<str>, seq: u64) -> bool {
        let mut inner = self.inner.lock();
        if inner.delivered_here.remove(&seq) {
            return false;
        }
        let applied = inner.applied.entry(Arc::clone(room)).or_insert(0);
        *applied = (*applied).max(seq);
        true
    }

    /// The publisher: the replay of `seq` was appended now, so the original never ran and will not
    /// come back: forget it.
    pub(crate) fn settled(&self, seq: u64) {
        let mut inner = self.inner.lock();
        if !inner.delivered_here.is_empty() {
            inner.delivered_here.remove(&seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_in_doubt_is_delivered_by_exactly_one_of_the_two() {
        let doubt = InDoubt::default();
        let room: Arc<str> = Arc::from("r");
        assert!(doubt.arrived(&room, 1), "applied normally");
        assert!(!doubt.claim(&room, 1), "already applied: not delivered again");
        assert!(doubt.claim(&room, 2), "not applied yet: delivered here");
        assert!(!doubt.arrived(&room, 2), "Redis ran it late: dropped");
        assert!(doubt.claim(&room, 3));
        doubt.settled(3);
        assert!(doubt.arrived(&room, 4), "later messages are applied");
        assert!(!doubt.claim(&Arc::from("r"), 4));
        assert!(doubt.claim(&Arc::from("other"), 4), "per room");
    }
}
