//! The shared room table: rooms by name, their members per shard and per user, their last message id.
//!
//! Lock order: the directory lock (`rooms`) before a room's `state` lock. The hot path (posting to a room
//! the connection already joined) takes only the room's lock: members hold an `Arc<Room>`, and a room is
//! removed from the table only when its last member leaves, under both locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::types::Format;

/// One room. Members keep an `Arc` to it for as long as they are in it.
#[derive(Debug)]
pub(crate) struct Room {
    /// Process-unique id, never reused (shards index their local members by it).
    pub(crate) id: u64,
    /// The room's name.
    pub(crate) name: Arc<str>,
    /// Membership and ordering state; its lock serialises every publish to the room.
    pub(crate) state: Mutex<RoomState>,
}

/// Membership counts and ordering state of a room, behind [`Room::state`].
#[derive(Debug)]
pub(crate) struct RoomState {
    /// Member connections per shard: a shard only receives the room's messages if its count is > 0.
    pub(crate) per_shard: Vec<u32>,
    /// Member connections speaking JSON (a JSON frame is encoded only if > 0).
    pub(crate) json_members: u32,
    /// Member connections speaking the text format (a text frame is encoded only if > 0).
    pub(crate) text_members: u32,
    /// Connections per user name, for presence (a user is present while their count is > 0).
    pub(crate) users: HashMap<Arc<str>, u32>,
    /// Id of the last message published to the room (0 before the first).
    pub(crate) last_id: u64,
}

impl RoomState {
    /// Total member connections.
    pub(crate) fn members(&self) -> u32 {
        self.json_members + self.text_members
    }
}

/// What a join saw, taken under the room's lock.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The room (kept by the member).
    pub(crate) room: Arc<Room>,
    /// Whether this connection made the user present (first connection of that user in the room).
    pub(crate) first_of_user: bool,
    /// Up to `max_names` names of present users.
    pub(crate) member_names: Vec<Arc<str>>,
    /// Number of distinct present users.
    pub(crate) member_count: usize,
    /// The room's last id at the join: live deliveries with ids up to it are filtered for this member.
    pub(crate) last_id: u64,
}

/// The table of rooms.
#[derive(Debug)]
pub(crate) struct Directory {
    rooms: RwLock<HashMap<Arc<str>, Arc<Room>>>,
    next_room_id: AtomicU64,
    n_shards: usize,
}

impl Directory {
    /// An empty table for `n_shards` shards.
    pub(crate) fn new(n_shards: usize) -> Self {
        Directory { rooms: RwLock::new(HashMap::new()), next_room_id: AtomicU64::new(1), n_shards }
    }

    /// Number of rooms with at least one member.
    pub(crate) fn len(&self) -> usize {
        self.rooms.read().len()
    }

    /// The room called `name`, if it has members.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.read().get(name).cloned()
    }

    /// Adds a connection of `user` on `shard` speaking `format` to room `name`, creating the room.
    ///
    /// A room created here starts with `last_id = id_floor()` (read under the table lock): the largest
    /// id assigned anywhere so far.
    /// The room may have older messages in history (it was forgotten when its last member left), and
    /// every message it gets from now on has a larger id, so `last_id` is exactly the boundary between
    /// history and live delivery that a resuming member needs.
    ///
    /// `on_joined` runs under the room's lock, so whatever it publishes is ordered with the join.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn join<R>(
        &self,
        id_floor: impl FnOnce() -> u64,
        name: &str,
        shard: usize,
        format: Format,
        user: &Arc<str>,
        max_names: usize,
        on_joined: impl FnOnce(&Joined, &mut RoomState) -> R,
    ) -> (Joined, R) {
        let mut rooms = self.rooms.write();
        let room = match rooms.get(name) {
            Some(room) => Arc::clone(room),
            None => {
                let name: Arc<str> = Arc::from(name);
                let room = Arc::new(Room {
                    id: self.next_room_id.fetch_add(1, Ordering::Relaxed),
                    name: Arc::clone(&name),
                    state: Mutex::new(RoomState {
                        per_shard: vec![0; self.n_shards],
                        json_members: 0,
                        text_members: 0,
                        users: HashMap::new(),
                        last_id: id_floor(),
                    }),
                });
                rooms.insert(name, Arc::clone(&room));
                room
            }
        };
        let mut state = room.state.lock();
        drop(rooms);
        state.per_shard[shard] += 1;
        match format {
            Format::Json => state.json_members += 1,
            Format::Text => state.text_members += 1,
        }
        let count = state.users.entry(Arc::clone(user)).or_insert(0);
        *count += 1;
        let first_of_user = *count == 1;
        let joined = Joined {
            room: Arc::clone(&room),
            first_of_user,
            member_names: state.users.keys().take(max_names).cloned().collect(),
            member_count: state.users.len(),
            last_id: state.last_id,
        };
        let extra = on_joined(&joined, &mut state);
        (joined, extra)
    }

    /// Removes a connection from `room`; drops the room from the table when it was the last member.
    ///
    /// `on_left(last_of_user, state)` runs under the room's lock after the counts are updated.
    pub(crate) fn leave(
        &self,
        room: &Arc<Room>,
        shard: usize,
        format: Format,
        user: &Arc<str>,
        on_left: impl FnOnce(bool, &mut RoomState),
    ) {
        let mut rooms = self.rooms.write();
        let mut state = room.state.lock();
        state.per_shard[shard] = state.per_shard[shard].saturating_sub(1);
        match format {
            Format::Json => state.json_members = state.json_members.saturating_sub(1),
            Format::Text => state.text_members = state.text_members.saturating_sub(1),
        }
        let last_of_user = match state.users.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                state.users.remove(user);
                true
            }
            None => false,
        };
        if state.members() == 0 && rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&room.name);
        }
        drop(rooms);
        on_left(last_of_user, &mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_live_while_they_have_members() {
        let dir = Directory::new(2);
        let alice: Arc<str> = Arc::from("alice");
        let (a, _) = dir.join(|| 0, "r", 0, Format::Json, &alice, 10, |_, _| ());
        let (b, _) = dir.join(|| 0, "r", 1, Format::Text, &alice, 10, |_, _| ());
        assert!(a.first_of_user && !b.first_of_user);
        assert!(Arc::ptr_eq(&a.room, &b.room));
        assert_eq!(a.room.state.lock().per_shard, [1, 1]);
        assert_eq!(b.member_count, 1);
        let mut last = Vec::new();
        dir.leave(&a.room, 0, Format::Json, &alice, |gone, _| last.push(gone));
        assert_eq!(dir.len(), 1);
        dir.leave(&b.room, 1, Format::Text, &alice, |gone, _| last.push(gone));
        assert_eq!(last, [false, true]);
        assert_eq!(dir.len(), 0);
        let (c, _) = dir.join(|| 0, "r", 0, Format::Json, &alice, 10, |_, _| ());
        assert_ne!(c.room.id, a.room.id, "a recreated room gets a new id");
    }
}
