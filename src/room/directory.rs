//! The shared room table: rooms by name, their members per shard and per user, their last message id.
//!
//! Lock order: the directory lock (`rooms`) before a room's `state` lock. The hot path (posting to a room
//! the connection already joined) takes only the room's lock: members hold an `Arc<Room>`, and a room is
//! removed from the table only when its last member leaves, under both locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::render::Variant;
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
    /// Member connections per frame variant (`Variant::index`).
    pub(crate) per_variant: [u32; Variant::COUNT],
    /// Connections per user name, for presence (a user is present while their count is > 0).
    pub(crate) users: HashMap<Arc<str>, u32>,
    /// Id of the last message published to the room (0 before the first).
    pub(crate) last_id: u64,
    /// Position of the last event delivered in the room on this node (every event, with an id or
    /// not, takes the next one): the order members receive events in, and the boundary a new
    /// member's live delivery starts after.
    pub(crate) pos: u64,
}

impl RoomState {
    /// Total member connections.
    pub(crate) fn members(&self) -> u32 {
        self.per_variant.iter().sum()
    }

    /// Whether any member speaks `format`.
    pub(crate) fn has_format(&self, format: Format) -> bool {
        self.per_variant.iter().enumerate().any(|(i, &n)| n > 0 && Variant::from_index(i).format == format)
    }

    /// The position of the next event.
    pub(crate) fn next_pos(&mut self) -> u64 {
        self.pos += 1;
        self.pos
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
    /// The room's last id at the join: a resume pages history up to it.
    pub(crate) last_id: u64,
    /// The room's position at the join (before the member's own presence event): live deliveries
    /// at or below it were published before the join and are skipped for this member.
    pub(crate) pos: u64,
}

/// The table of rooms.
#[derive(Debug)]
pub(crate) struct Directory {
    rooms: RwLock<HashMap<Arc<str>, Arc<Room>>>,
    next_room_id: AtomicU64,
    n_shards: usize,
    /// Joins and leaves so far (the cluster's listing rows are rebuilt only when it moved).
    changes: AtomicU64,
}

impl Directory {
    /// An empty table for `n_shards` shards.
    pub(crate) fn new(n_shards: usize) -> Self {
        Directory {
            rooms: RwLock::new(HashMap::new()),
            next_room_id: AtomicU64::new(1),
            n_shards,
            changes: AtomicU64::new(0),
        }
    }

    /// Joins and leaves so far: when it has not moved, no room's member counts have changed.
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Number of rooms with at least one member.
    pub(crate) fn len(&self) -> usize {
        self.rooms.read().len()
    }

    /// Every room in the table (a snapshot; lock each room's state to read it).
    pub(crate) fn rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.read().values().cloned().collect()
    }

    /// The room called `name`, if it has members.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.read().get(name).cloned()
    }

    /// The room called `name`, created (without members, `last_id = id_floor()`) if it has none:
    /// for publishing into a room nobody on this node is in. The caller hands it back to
    /// [`Directory::forget_if_empty`] once done.
    pub(crate) fn get_or_create(&self, name: &str, id_floor: impl FnOnce() -> u64) -> Arc<Room> {
        if let Some(room) = self.get(name) {
            return room;
        }
        let mut rooms = self.rooms.write();
        self.entry(&mut rooms, name, id_floor)
    }

    /// Drops `room` from the table if it has no members (it was created by
    /// [`Directory::get_or_create`] and nobody joined meanwhile).
    pub(crate) fn forget_if_empty(&self, room: &Arc<Room>) {
        let mut rooms = self.rooms.write();
        let state = room.state.lock();
        if state.members() == 0 && rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&room.name);
        }
    }

    fn entry(&self, rooms: &mut HashMap<Arc<str>, Arc<Room>>, name: &str, id_floor: impl FnOnce() -> u64) -> Arc<Room> {
        if let Some(room) = rooms.get(name) {
            return Arc::clone(room);
        }
        let name: Arc<str> = Arc::from(name);
        let room = Arc::new(Room {
            id: self.next_room_id.fetch_add(1, Ordering::Relaxed),
            name: Arc::clone(&name),
            state: Mutex::new(RoomState {
                per_shard: vec![0; self.n_shards],
                per_variant: [0; Variant::COUNT],
                users: HashMap::new(),
                last_id: id_floor(),
                pos: 0,
            }),
        });
        rooms.insert(name, Arc::clone(&room));
        room
    }

    /// Adds a connection of `user` on `shard` receiving `variant` to room `name`, creating the room.
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
        variant: Variant,
        user: &Arc<str>,
        max_names: usize,
        on_joined: impl FnOnce(&Joined, &mut RoomState) -> R,
    ) -> (Joined, R) {
        let mut rooms = self.rooms.write();
        let room = self.entry(&mut rooms, name, id_floor);
        let mut state = room.state.lock();
        drop(rooms);
        state.per_shard[shard] += 1;
        state.per_variant[variant.index()] += 1;
        let count = state.users.entry(Arc::clone(user)).or_insert(0);
        *count += 1;
        let first_of_user = *count == 1;
        self.changes.fetch_add(1, Ordering::Relaxed);
        let joined = Joined {
            room: Arc::clone(&room),
            first_of_user,
            member_names: state.users.keys().take(max_names).cloned().collect(),
            member_count: state.users.len(),
            last_id: state.last_id,
            pos: state.pos,
        };
        let extra = on_joined(&joined, &mut state);
        (joined, extra)
    }

    /// Removes a connection from `room`; drops the room from the table when it was the last member.
    ///
    /// `on_left(last_of_user, state)` runs under the room's lock after the counts are updated (and
    /// under the table lock too when the room was dropped from the table).
    pub(crate) fn leave(
        &self,
        room: &Arc<Room>,
        shard: usize,
        variant: Variant,
        user: &Arc<str>,
        on_left: impl FnOnce(bool, &mut RoomState),
    ) {
        let mut rooms = self.rooms.write();
        let mut state = room.state.lock();
        state.per_shard[shard] = state.per_shard[shard].saturating_sub(1);
        let count = &mut state.per_variant[variant.index()];
        *count = count.saturating_sub(1);
        self.changes.fetch_add(1, Ordering::Relaxed);
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
        let removed = state.members() == 0 && rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room));
        if removed {
            rooms.remove(&room.name);
            // The table lock stays held through `on_left`: a join that recreates the room (a new
            // `Room`, another lock) can then only publish after this room's last words, so
            // consumers of presence (webhooks) see "vacated" before the next "occupied".
            on_left(last_of_user, &mut state);
            return;
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
        let (a, _) = dir.join(|| 0, "r", 0, Variant::plain(Format::Json), &alice, 10, |_, _| ());
        let (b, _) = dir.join(|| 0, "r", 1, Variant::plain(Format::Text), &alice, 10, |_, _| ());
        assert!(a.first_of_user && !b.first_of_user);
        assert!(Arc::ptr_eq(&a.room, &b.room));
        assert_eq!(a.room.state.lock().per_shard, [1, 1]);
        assert_eq!(b.member_count, 1);
        let mut last = Vec::new();
        dir.leave(&a.room, 0, Variant::plain(Format::Json), &alice, |gone, _| last.push(gone));
        assert_eq!(dir.len(), 1);
        dir.leave(&b.room, 1, Variant::plain(Format::Text), &alice, |gone, _| last.push(gone));
        assert_eq!(last, [false, true]);
        assert_eq!(dir.len(), 0);
        let (c, _) = dir.join(|| 0, "r", 0, Variant::plain(Format::Json), &alice, 10, |_, _| ());
        assert_ne!(c.room.id, a.room.id, "a recreated room gets a new id");
    }

    #[test]
    fn a_room_created_for_a_publish_is_forgotten_unless_someone_joined() {
        let dir = Directory::new(1);
        let room = dir.get_or_create("quiet", || 41);
        assert_eq!(room.state.lock().last_id, 41, "starts at the id floor");
        assert_eq!(dir.len(), 1);
        dir.forget_if_empty(&room);
        assert_eq!(dir.len(), 0);
        let room = dir.get_or_create("busy", || 0);
        let (joined, _) = dir.join(|| 0, "busy", 0, Variant::plain(Format::Text), &Arc::from("ann"), 10, |_, _| ());
        assert!(Arc::ptr_eq(&room, &joined.room), "the join found the created room");
        dir.forget_if_empty(&room);
        assert_eq!(dir.len(), 1, "a room with a member stays");
    }
}
