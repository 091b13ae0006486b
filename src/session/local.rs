//! A shard's index of its own room members: room id → the local connections in it, and for a
//! member catching up after a resume, the live frames held back meanwhile ([`Held`]: their one
//! home, next to the member they are for).
//!
//! Deliveries look a room up here and walk its members; nothing is shared with other threads.

use std::collections::HashMap;

use bytes::Bytes;

use crate::render::Variant;

/// Live frames held back for a member while it catches up (see `super::catchup`), bounded by half
/// the output bound; past it they are dropped and the catch-up is extended instead.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// The frames, in delivery order.
    pub(crate) frames: Vec<Bytes>,
    /// Bytes in `frames`.
    pub(crate) bytes: usize,
    /// `frames` passed its bound and was dropped: the catch-up continues from history.
    pub(crate) overflowed: bool,
}

impl Held {
    /// Holds `frame`, within `max_bytes`: returns whether it was held (past the bound everything
    /// held is dropped and `overflowed` set, never a slow-consumer close).
    pub(crate) fn hold(&mut self, frame: &Bytes, max_bytes: usize) -> bool {
        if self.overflowed {
            return false;
        }
        if self.bytes + frame.len() > max_bytes {
            *self = Held { overflowed: true, ..Held::default() };
            return false;
        }
        self.bytes += frame.len();
        self.frames.push(frame.clone());
        true
    }
}

/// One local member of a room.
#[derive(Debug)]
pub(crate) struct LocalMember {
    /// Slab key of the connection.
    pub(crate) key: usize,
    /// Deliveries at or below this room position were published before the member joined (or
    /// are covered by its catch-up): skip them.
    pub(crate) min_pos: u64,
    /// Which frame of a delivery the member takes.
    pub(crate) variant: Variant,
    /// Catching up after a resume: its live frames, held back until history has been sent.
    pub(crate) held: Option<Box<Held>>,
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
    pub(crate) fn members_mut(&mut self, room_id: u64) -> Option<&mut [LocalMember]> {
        self.rooms.get_mut(&room_id).map(Vec::as_mut_slice)
    }

    fn member_mut(&mut self, room_id: u64, key: usize) -> Option<&mut LocalMember> {
        self.rooms.get_mut(&room_id).and_then(|ms| ms.iter_mut().find(|m| m.key == key))
    }

    /// Moves `key`'s floor in `room_id`: deliveries at or below position `min_pos` are skipped
    /// from now on.
    pub(crate) fn set_min_pos(&mut self, room_id: u64, key: usize, min_pos: u64) {
        if let Some(member) = self.member_mut(room_id, key) {
            member.min_pos = min_pos;
        }
    }

    /// What is held for `key` in `room_id`, if it is catching up.
    pub(crate) fn held_mut(&mut self, room_id: u64, key: usize) -> Option<&mut Held> {
        self.member_mut(room_id, key).and_then(|m| m.held.as_deref_mut())
    }

    /// Ends the hold of `key` in `room_id`: its live frames flow again; returns what was held.
    pub(crate) fn release_held(&mut self, room_id: u64, key: usize) -> Vec<Bytes> {
        self.member_mut(room_id, key).and_then(|m| m.held.take()).map(|h| h.frames).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Format;

    #[test]
    fn add_remove_hold() {
        let mut local = LocalRooms::default();
        let member = |key, held: bool| LocalMember {
            key,
            min_pos: 0,
            variant: Variant::plain(Format::Text),
            held: held.then(Box::default),
        };
        local.add(1, member(10, false));
        local.add(1, member(11, true));
        assert!(local.held_mut(1, 10).is_none());
        let frame = Bytes::from_static(b"abcd");
        assert!(local.held_mut(1, 11).expect("held").hold(&frame, 10));
        assert!(local.held_mut(1, 11).expect("held").hold(&frame, 10));
        assert!(!local.held_mut(1, 11).expect("held").hold(&frame, 10), "over the bound");
        assert!(local.held_mut(1, 11).expect("held").overflowed);
        local.set_min_pos(1, 11, 42);
        assert_eq!(local.members_mut(1).and_then(|m| m.iter().find(|m| m.key == 11)).map(|m| m.min_pos), Some(42));
        assert!(local.release_held(1, 11).is_empty(), "dropped at the overflow");
        assert!(local.held_mut(1, 11).is_none());
        local.remove(1, 10);
        local.remove(1, 11);
        assert!(local.members_mut(1).is_none(), "empty rooms are dropped from the index");
    }
}
