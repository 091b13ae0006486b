//! A shard's index of its own room members: room id → the local connections in it.
//!
//! Deliveries look a room up here and walk its members; nothing is shared with other threads.

use std::collections::HashMap;

use crate::render::Variant;

/// One local member of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalMember {
    /// Slab key of the connection.
    pub(crate) key: usize,
    /// Deliveries at or below this room position were published before the member joined (or
    /// are covered by its catch-up): skip them.
    pub(crate) min_pos: u64,
    /// Which frame of a delivery the member takes.
    pub(crate) variant: Variant,
    /// Catching up after a resume: live frames are held back until history has been sent.
    pub(crate) held: bool,
}

/// Room id → local members.
#[derive(Debug, Default)]
pub(crate) struct LocalRooms {
    rooms: HashMap<u64, Vec<LocalMember>>,
}

impl LocalRooms {
    /// Adds a member.
    pub(crate) fn add(&mut self, room_id: u64, member: LocalMember) {
        self.rooms.entry(room_id).or_default().push(member);
    }

    /// Removes connection `key` from `room_id`.
    pub(crate) fn remove(&mut self, room_id: u64, key: usize) {
        if let Some(members) = self.rooms.get_mut(&room_id) {
            members.retain(|m| m.key != key);
            if members.is_empty() {
                self.rooms.remove(&room_id);
            }
        }
    }

    /// Members of `room_id` on this shard.
    pub(crate) fn members(&self, room_id: u64) -> Option<&[LocalMember]> {
        self.rooms.get(&room_id).map(Vec::as_slice)
    }

    /// Moves `key`'s floor in `room_id`: deliveries at or below position `min_pos` are skipped
    /// from now on.
    pub(crate) fn set_min_pos(&mut self, room_id: u64, key: usize, min_pos: u64) {
        if let Some(member) = self.rooms.get_mut(&room_id).and_then(|ms| ms.iter_mut().find(|m| m.key == key)) {
            member.min_pos = min_pos;
        }
    }

    /// Sets whether `key`'s live frames for `room_id` are held back.
    pub(crate) fn set_held(&mut self, room_id: u64, key: usize, held: bool) {
        if let Some(member) = self.rooms.get_mut(&room_id).and_then(|ms| ms.iter_mut().find(|m| m.key == key)) {
            member.held = held;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Format;

    #[test]
    fn add_remove_hold() {
        let mut local = LocalRooms::default();
        let member = |key| LocalMember { key, min_pos: 0, variant: Variant::plain(Format::Text), held: false };
        local.add(1, member(10));
        local.add(1, member(11));
        local.set_held(1, 11, true);
        assert_eq!(local.members(1).map(|m| m.iter().filter(|m| m.held).count()), Some(1));
        local.set_min_pos(1, 11, 42);
        assert_eq!(local.members(1).and_then(|m| m.iter().find(|m| m.key == 11)).map(|m| m.min_pos), Some(42));
        local.remove(1, 10);
        local.remove(1, 11);
        assert!(local.members(1).is_none(), "empty rooms are dropped from the index");
    }
}
