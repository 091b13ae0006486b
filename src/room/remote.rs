//! Cluster mode's way back into the publish path: what Redis sequenced (or this node, with
//! provisional ids, while Redis is away) reaches the room's local members through these `Hub`
//! methods, called by the cluster's subscriber and publisher threads. Each ends in
//! `Hub::apply_locked` / `Hub::relay_locked`, like a single-node publish.

use super::directory::RoomState;
use super::hub::{Hub, RoomRef};
use super::sequencer::Outgoing;
use crate::types::{Origin, Sequenced, Transient};

/// Cluster mode's entry points: events sequenced by Redis (or, while it is away, by this node with
/// provisional ids) reach the room's local members here, under the room's lock like a single-node
/// publish, so a room's local members receive ids in increasing order. An event whose id is not
/// above the room's last id is stored but not delivered live (a duplicate, or an event from the
/// other side of an outage older than what members here already saw; history and resume show it).
impl Hub {
    /// Delivers `seq` (sequenced by Redis, sent as `origin` says) to this node's members of its
    /// room when `live`, and stores it; returns whether it was delivered live.
    pub(crate) fn apply_remote(&self, seq: Sequenced, origin: Origin, live: bool) -> bool {
        self.ids.observe(seq.id);
        let Some(room) = self.directory.get(&seq.room).filter(|_| live) else {
            self.store_only(seq);
            return false;
        };
        let leftover = self.with_room(RoomRef::Joined(&room), |room, state, wakes| {
            if seq.id > state.last_id {
                self.apply_locked(room, state, seq, origin, wakes);
                None
            } else {
                Some(seq)
            }
        });
        match leftover {
            None => true,
            Some(seq) => {
                self.store_only(seq);
                false
            }
        }
    }

    /// Redis away: delivers `msg` to this node's members with the provisional id `next_id(floor)`
    /// (`floor`: the largest id seen here and in the room) and stores it; returns the id (which the
    /// replay to Redis keeps).
    pub(crate) fn apply_provisional(&self, msg: &Outgoing, next_id: impl Fn(u64) -> u64) -> u64 {
        let Some(room) = self.directory.get(&msg.room) else {
            let id = self.ids.allocate(next_id);
            self.store_only(msg.sequenced(id));
            return id;
        };
        self.with_room(RoomRef::Joined(&room), |room, state, wakes| {
            let last = state.last_id;
            let id = self.ids.allocate(|seen| next_id(seen.max(last)));
            self.apply_locked(room, state, msg.sequenced(id), msg.origin.clone(), wakes);
            id
        })
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

    /// Relays `user`'s presence change to the local members of `room` when `tell`, asked under the
    /// room's lock, says so.
    fn tell_presence(
        &self,
        room: &std::sync::Arc<super::directory::Room>,
        user: &str,
        joined: bool,
        tell: impl FnOnce(&RoomState) -> bool,
    ) {
        self.with_room(RoomRef::Joined(room), |room, state, wakes| {
            if tell(state) {
                let event = Transient::Presence { user: user.into(), joined };
                self.relay_locked(room, state, event, wakes);
            }
        });
    }

    /// Relays a transient event that came through Redis (a binary frame, a typing notice) to the
    /// local members of the room named `room`.
    pub(crate) fn relay_remote(&self, room: &str, event: Transient) {
        if let Some(room) = self.directory.get(room) {
            self.with_room(RoomRef::Joined(&room), |room, state, wakes| {
                self.relay_locked(room, state, event, wakes);
            });
        }
    }
}
