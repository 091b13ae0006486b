//! Where cluster messages meet the [`Hub`]: delivering a message that came back through Redis in
//! its final order, and delivering a message locally with a provisional id while Redis is away.
//!
//! Both run under the room's lock (when the room has local members), like the single-node publish
//! path, so a room's local members receive ids in increasing order: a message whose id is not above
//! the room's last delivered id is stored but not delivered live (it is a duplicate, or a message
//! from the other side of an outage that is older than what members here already saw; history and
//! resume show it).
//!
//! Presence changes and binary relays from Redis take the same room lock, so they keep their place
//! among the room's messages.

use std::time::Instant;

use super::events::PresenceChange;
use super::ids::next_provisional;
use super::membership::MembershipView;
use super::wire::WireMessage;
use crate::room::fanout::{Hub, Wakeups};
use crate::room::remote::Outgoing;

/// Delivers `msg` (sequenced by Redis) to this node's members of its room (when `live`) and stores
/// it; returns whether it was delivered live.
pub(crate) fn deliver_sequenced(hub: &Hub, msg: &WireMessage, live: bool, scratch: &mut Vec<u8>) -> bool {
    let rec = msg.record();
    if let Some(room) = hub.directory.get(&msg.room).filter(|_| live) {
        let mut wakes = Wakeups::default();
        let mut state = room.state.lock();
        hub.observe_id(msg.id);
        if msg.id > state.last_id {
            let (format, client_id) = (msg.format, msg.client_id.as_deref());
            hub.fan_out_locked(&room, &mut state, rec, format, client_id, scratch, Instant::now(), &mut wakes);
            drop(state);
            hub.wake(wakes);
            return true;
        }
    } else {
        hub.observe_id(msg.id);
    }
    hub.store_record(rec);
    false
}

/// Delivers `msg` to this node's members with a provisional id from `slot` and stores it; returns
/// the id (which the replay to Redis keeps).
pub(crate) fn deliver_provisional(hub: &Hub, msg: &Outgoing, slot: u64, scratch: &mut Vec<u8>) -> u64 {
    if let Some(room) = hub.directory.get(&msg.room) {
        let mut wakes = Wakeups::default();
        let mut state = room.state.lock();
        let last = state.last_id;
        let id = hub.allocate_id(|seen| next_provisional(seen.max(last), slot));
        let (format, client_id) = (msg.format, msg.client_id.as_deref());
        hub.fan_out_locked(&room, &mut state, msg.record(id), format, client_id, scratch, Instant::now(), &mut wakes);
        drop(state);
        hub.wake(wakes);
        return id;
    }
    let id = hub.allocate_id(|seen| next_provisional(seen, slot));
    hub.store_record(msg.record(id));
    id
}

/// Applies a cluster-wide presence change to the node's view and, when it changed the view, tells
/// the room's local JSON members, in the room's order. A `leave` of a user who still has a
/// connection here is not told (this node's own room table is the authority on its users; the event
/// is from an older state, e.g. a snapshot taken before this node's resync reached Redis).
pub(crate) fn deliver_presence(hub: &Hub, view: &MembershipView, change: &PresenceChange) {
    match hub.directory.get(&change.room) {
        Some(room) => {
            let mut wakes = Wakeups::default();
            let state = room.state.lock();
            let stale_leave = !change.joined && state.users.contains_key(&change.user);
            if view.apply(change) && !stale_leave {
                hub.publish_presence(&room, &state, &change.user, presence_word(change.joined), &mut wakes);
            }
            drop(state);
            hub.wake(wakes);
        }
        None => {
            view.apply(change);
        }
    }
}

/// Tells the room's local JSON members about a change this node made while Redis was away (the
/// view is not touched: it holds what Redis says, and is replaced on reconnect).
pub(crate) fn deliver_presence_locally(hub: &Hub, change: &PresenceChange) {
    if let Some(room) = hub.directory.get(&change.room) {
        let mut wakes = Wakeups::default();
        let state = room.state.lock();
        hub.publish_presence(&room, &state, &change.user, presence_word(change.joined), &mut wakes);
        drop(state);
        hub.wake(wakes);
    }
}

/// Relays a binary frame to the room's local text members.
pub(crate) fn deliver_binary(hub: &Hub, room: &str, payload: &[u8]) {
    if let Some(room) = hub.directory.get(room) {
        hub.relay_binary_locally(&room, payload);
    }
}

fn presence_word(joined: bool) -> &'static str {
    if joined { "join" } else { "leave" }
}
