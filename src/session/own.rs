//! The ids of a connection's own most recent messages ([`OwnRecent`]): an edit or delete of one of
//! them is published at once (`super::amend`), without the store lookup of its author.
//!
//! A fixed ring of [`OWN_RECENT`] `(room id, message id)` entries, allocated once on the
//! connection's first remembered message and overwritten oldest first (no allocation per message).
//! An id is remembered only when `Hub::publish` assigned it at once (single node, persistence on,
//! no `--retain-per-room`: retention may prune a remembered message and the shard cannot see it,
//! so with it every amendment takes the lookup). An id is forgotten when this connection deletes it,
//! when a `deleted` event for it is delivered to this connection (`super::deliver`: another tab or
//! the server API), and with every id of a room when the connection leaves the room (it would not
//! see a delete while away).

use super::ctx::ShardCtx;

/// Whether this server remembers its connections' messages: persistence on (without it nothing
/// can be amended) and no `--retain-per-room` (module doc).
pub(crate) fn applies(ctx: &ShardCtx) -> bool {
    ctx.store.is_some() && ctx.cfg.retain_per_room.is_none()
}

/// Entries in a connection's ring.
pub(crate) const OWN_RECENT: usize = 16;

/// A connection's most recent own messages (module doc).
#[derive(Debug, Default)]
pub(crate) struct OwnRecent {
    /// `(room id, message id)`; message id 0 is an empty slot (ids start at 1).
    ring: Option<Box<[(u64, u64); OWN_RECENT]>>,
    /// The slot the next id goes into.
    next: usize,
}

impl OwnRecent {
    /// Remembers message `id`, just sent by this connection in room `room`.
    pub(crate) fn remember(&mut self, room: u64, id: u64) {
        let ring = self.ring.get_or_insert_with(|| Box::new([(0, 0); OWN_RECENT]));
        ring[self.next] = (room, id);
        self.next = (self.next + 1) % OWN_RECENT;
    }

    /// Whether message `id` of room `room` is this connection's and not known deleted.
    pub(crate) fn holds(&self, room: u64, id: u64) -> bool {
        id != 0 && self.ring.as_ref().is_some_and(|ring| ring.contains(&(room, id)))
    }

    /// Forgets message `id` of room `room` (deleted).
    pub(crate) fn forget(&mut self, room: u64, id: u64) {
        self.forget_where(|entry| entry == (room, id));
    }

    /// Forgets every message of room `room` (the connection left it).
    pub(crate) fn forget_room(&mut self, room: u64) {
        self.forget_where(|(r, _)| r == room);
    }

    fn forget_where(&mut self, gone: impl Fn((u64, u64)) -> bool) {
        if let Some(ring) = &mut self.ring {
            for entry in ring.iter_mut().filter(|e| e.1 != 0 && gone(**e)) {
                *entry = (0, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_ids_and_forgets_deleted_and_left() {
        let mut own = OwnRecent::default();
        assert!(!own.holds(1, 5), "nothing before the first message");
        for id in 1..=OWN_RECENT as u64 + 2 {
            own.remember(1, id);
        }
        assert!(!own.holds(1, 1) && !own.holds(1, 2), "the oldest were overwritten");
        assert!(own.holds(1, 3) && own.holds(1, OWN_RECENT as u64 + 2));
        assert!(!own.holds(2, 3), "an id is remembered with its room");
        own.forget(1, 3);
        assert!(!own.holds(1, 3));
        own.remember(2, 100);
        own.forget_room(1);
        assert!(!own.holds(1, 10) && own.holds(2, 100));
        assert!(!own.holds(0, 0), "an empty slot is no id");
    }
}
