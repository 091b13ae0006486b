//! Cluster mode's way back into the publish path: what Redis sequenced (or this node, with
//! provisional ids, while Redis is away) reaches the room's local members through these `Hub`
//! methods, called by the cluster's subscriber and publisher threads.

use std::time::Instant;

use super::directory::{Room, RoomState};
use super::fanout::{Hub, Wakeups};
use super::remote::Outgoing;
use crate::types::{ChatRecord, Format};

/// Cluster mode's entry points into the publish path: messages and presence changes sequenced by
/// Redis (or, while it is away, by this node with provisional ids) reach the room's local members
/// here, under the room's lock like a single-node publish, so a room's local members receive ids in
/// increasing order. A message whose id is not above the room's last delivered id is stored but not
/// delivered live (a duplicate, or a message from the other side of an outage older than what
/// members here already saw; history and resume show it).
impl Hub {
    /// Delivers `rec` (sequenced by Redis, sent by a client speaking `origin`) to this node's
    /// members of its room when `live`, and stores it; returns whether it was delivered live.
    pub(crate) fn deliver_sequenced(
        &self,
        rec: ChatRecord,
        origin: Format,
        client_id: Option<&str>,
        live: bool,
        scratch: &mut Vec<u8>,
    ) -> bool {
        if let Some(room) = self.directory.get(&rec.room).filter(|_| live) {
            let mut wakes = Wakeups::default();
            let mut state = room.state.lock();
            self.ids.observe(rec.id);
            if rec.id > state.last_id {
                self.fan_out_locked(&room, &mut state, rec, origin, client_id, scratch, Instant::now(), &mut wakes);
                drop(state);
                self.wake(wakes);
                return true;
            }
        } else {
            self.ids.observe(rec.id);
        }
        self.store_record(rec);
        false
    }

    /// Redis away: delivers `msg` to this node's members with the provisional id `next_id(floor)`
    /// (`floor`: the largest id seen here and in the room) and stores it; returns the id (which the
    /// replay to Redis keeps).
    pub(crate) fn deliver_provisional(
        &self,
        msg: &Outgoing,
        next_id: impl Fn(u64) -> u64,
        scratch: &mut Vec<u8>,
    ) -> u64 {
        let (origin, client_id) = (msg.format, msg.client_id.as_deref());
        if let Some(room) = self.directory.get(&msg.room) {
            let mut wakes = Wakeups::default();
            let mut state = room.state.lock();
            let last = state.last_id;
            let id = self.ids.allocate(|seen| next_id(seen.max(last)));
            self.fan_out_locked(
                &room,
                &mut state,
                msg.record(id),
                origin,
                client_id,
                scratch,
                Instant::now(),
                &mut wakes,
            );
            drop(state);
            self.wake(wakes);
            return id;
        }
        let id = self.ids.allocate(next_id);
        self.store_record(msg.record(id));
        id
    }

    /// A cluster-wide presence change of `user` in `room` from Redis: `view_changed` applies it to
    /// the node's membership view (under the room's lock, so events keep their place among the
    /// room's messages) and says whether the view changed; only then are the room's local JSON
    /// members told. A `leave` of a user who still has a connection here is not told (this node's
    /// room table is the authority on its own users; the event is from an older state).
    pub(crate) fn deliver_presence(&self, room: &str, user: &str, joined: bool, view_changed: impl FnOnce() -> bool) {
        let Some(room) = self.directory.get(room) else {
            view_changed();
            return;
        };
        self.tell_presence(&room, user, joined, |state| {
            let stale_leave = !joined && state.users.contains_key(user);
            view_changed() && !stale_leave
        });
    }

    /// A difference between the node's old membership view and a fresh snapshot from Redis: told to
    /// the room's local JSON members unless `user` has a connection here (this node's own users are
    /// announced by its own changes, not by a snapshot).
    pub(crate) fn resync_presence(&self, room: &str, user: &str, joined: bool) {
        if let Some(room) = self.directory.get(room) {
            self.tell_presence(&room, user, joined, |state| !state.users.contains_key(user));
        }
    }

    /// Redis away: tells the room's local JSON members about a presence change this node made.
    pub(crate) fn announce_presence_locally(&self, room: &str, user: &str, joined: bool) {
        if let Some(room) = self.directory.get(room) {
            self.tell_presence(&room, user, joined, |_| true);
        }
    }

    /// Publishes `user`'s presence change to the local JSON members of `room` when `tell`, asked
    /// under the room's lock, says so.
    fn tell_presence(&self, room: &Room, user: &str, joined: bool, tell: impl FnOnce(&RoomState) -> bool) {
        let mut wakes = Wakeups::default();
        let state = room.state.lock();
        if tell(&state) {
            self.publish_presence(room, &state, user, joined, &mut wakes);
        }
        drop(state);
        self.wake(wakes);
    }

    /// Relays a binary frame to the local text members of the room named `room`.
    pub(crate) fn relay_binary(&self, room: &str, payload: &[u8]) {
        if let Some(room) = self.directory.get(room) {
            self.relay_binary_locally(&room, payload);
        }
    }
}
