//! The publish path: one message in, one id, one encoding per wire format, one inbox send per shard.
//!
//! [`Hub`] is shared by every shard. Everything that must be ordered within a room (ids, store queue
//! order, delivery order) happens under the room's lock, and every delivery, including to the
//! sender's own shard, goes through the shard inboxes, which are FIFO: so every member of a room
//! receives the room's messages in one and the same order, the order of their ids.
//!
//! The room's lock covers sequencing only. Under it: the id ([`IdSequence`]), the encoding
//! (`super::encode`, pure CPU), the store queue push and the inbox pushes, none of which makes a
//! syscall or wakes a thread. The wake-ups those pushes call for (a sleeping shard's eventfd, an
//! idle store writer) are collected in [`Wakeups`] and done after the lock is released: a thread
//! woken while the lock is held could preempt its waker on a busy core and stall every other
//! publisher of the room behind a descheduled lock holder.
//!
//! Joins and leaves go through the Hub too, because they announce presence under the same lock.
//! Cluster mode's entry points (messages sequenced by Redis) are in `super::remote`.

use std::sync::Arc;
use std::time::Instant;

use super::directory::{Directory, Joined, Room, RoomState};
use super::encode;
use super::remote::{MemberList, Outgoing, RemoteSequencer};
use super::sequence::IdSequence;
use crate::bus::{Delivery, ShardMsg, Shards};
use crate::protocol::json;
use crate::store::{StoreWriter, WriterWake};
use crate::types::{ChatRecord, ClientError, ConnRef, Format};

/// Threads to wake once a room's lock is released: shards whose inbox got a message while they
/// were (about to be) asleep, and the store writer. Collected under the lock, performed by
/// [`Hub::wake`].
#[must_use = "pass it to Hub::wake after releasing the room's lock"]
#[derive(Debug, Default)]
pub(super) struct Wakeups {
    /// One bit per shard (at most 256, see `Config::shards`).
    shards: [u64; 4],
    writer: bool,
}

impl Wakeups {
    fn shard(&mut self, shard: usize) {
        self.shards[shard / 64] |= 1 << (shard % 64);
    }
}

/// One chat message as a session hands it to [`Hub::publish_chat`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChatPost<'a> {
    /// The room (the sender is a member).
    pub(crate) room: &'a Arc<Room>,
    /// The sender's display name.
    pub(crate) user: &'a Arc<str>,
    /// The message text.
    pub(crate) content: &'a str,
    /// The sender's format: a text client's frame is relayed verbatim to text members, a JSON
    /// client's reaches them as `user: content`.
    pub(crate) origin: Format,
    /// Echoed in the `message` event.
    pub(crate) client_id: Option<&'a str>,
    /// The sending connection, told (cluster mode) when Redis refuses the message for the per-user
    /// rate limit.
    pub(crate) reply_to: Option<ConnRef>,
}

/// Shared publish state: the room table, the shard inboxes, the id sequence, the store queue and,
/// in cluster mode, the remote sequencer.
pub(crate) struct Hub {
    /// Rooms and their members.
    pub(crate) directory: Directory,
    shards: Arc<Shards>,
    pub(super) ids: IdSequence,
    store: Option<StoreWriter>,
    /// Cluster mode: chat messages go to Redis first (see `crate::cluster`).
    pub(super) cluster: Option<Box<dyn RemoteSequencer>>,
}

impl Hub {
    /// A hub delivering through `shards`, numbering messages with `ids`; `store` is `None` without
    /// persistence.
    pub(crate) fn new(shards: Arc<Shards>, ids: IdSequence, store: Option<StoreWriter>) -> Self {
        Hub { directory: Directory::new(shards.len()), shards, ids, store, cluster: None }
    }

    /// Cluster mode: chat messages are handed to `sink` (Redis) and delivered when they come back.
    pub(crate) fn with_cluster(mut self, sink: Box<dyn RemoteSequencer>) -> Self {
        self.cluster = Some(sink);
        self
    }

    /// Whether chat is sequenced by the cluster (Redis) rather than here.
    pub(crate) fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// The last id allocated (single node) or the largest id seen (cluster mode): every message
    /// published from now on gets a larger id, so it is the floor for rooms created now.
    pub(crate) fn max_id(&self) -> u64 {
        self.ids.max()
    }

    /// Cluster mode: tells the connection `conn` that its message was refused (never blocks: the
    /// shard's inbox is unbounded; a connection closed meanwhile is skipped by the shard).
    pub(crate) fn refuse(&self, conn: ConnRef, error: &ClientError) {
        self.shards.send(conn.shard, ShardMsg::Refused { conn, error: error.clone() });
    }

    /// The store queue, when persistence is on.
    pub(crate) fn store(&self) -> Option<&StoreWriter> {
        self.store.as_ref()
    }

    /// Whether shards should stop reading client input for now: the store queue or an inbox is full,
    /// or ids are close to the durable id ceiling.
    ///
    /// This is the backpressure policy for both queues: nothing accepted is dropped; clients that send
    /// are simply not read (TCP pushes back on them) until the queues drain.
    pub(crate) fn ingress_paused(&self) -> bool {
        self.store.as_ref().is_some_and(StoreWriter::is_congested)
            || self.ids.near_ceiling()
            || self.cluster.as_ref().is_some_and(|c| c.is_congested())
            || self.shards.congested()
    }

    /// Adds a connection of `user` on shard `shard` speaking `format` to room `name` (created if
    /// needed), announcing the user's presence if this is their first connection there. Returns the
    /// room table's answer and, in cluster mode with the cluster view up, the room's members across
    /// the cluster (JSON members only; at most `max_names` names, exact count).
    pub(crate) fn join(
        &self,
        name: &str,
        shard: usize,
        format: Format,
        user: &Arc<str>,
        max_names: usize,
    ) -> (Joined, Option<MemberList>) {
        let mut wakes = Wakeups::default();
        let joined = self.directory.join(
            || self.ids.max(),
            name,
            shard,
            format,
            user,
            max_names,
            |joined, state| {
                if joined.first_of_user {
                    self.announce_presence(&joined.room, state, user, true, &mut wakes);
                }
                let cluster = self.cluster.as_ref().filter(|_| format == Format::Json)?;
                cluster.members(&joined.room.name, &state.users, max_names)
            },
        );
        self.wake(wakes);
        joined
    }

    /// Removes a connection of `user` from `room`, announcing the user's departure if this was their
    /// last connection there.
    pub(crate) fn leave(&self, room: &Arc<Room>, shard: usize, format: Format, user: &Arc<str>) {
        let mut wakes = Wakeups::default();
        self.directory.leave(room, shard, format, user, |last_of_user, state| {
            if last_of_user {
                self.announce_presence(room, state, user, false, &mut wakes);
            }
        });
        self.wake(wakes);
    }

    /// Publishes a chat message (in cluster mode: hands it to Redis, which assigns its id and
    /// returns it for delivery). `scratch` is a reusable encoding buffer.
    pub(crate) fn publish_chat(&self, post: ChatPost<'_>, scratch: &mut Vec<u8>) {
        let ChatPost { room, user, content, origin, client_id, reply_to } = post;
        if let Some(cluster) = &self.cluster {
            cluster.submit(Outgoing {
                room: Arc::clone(&room.name),
                user: Arc::clone(user),
                content: Arc::from(content),
                format: origin,
                client_id: client_id.map(Arc::from),
                created_at_ms: json::now_millis(),
                reply_to,
            });
            return;
        }
        // Taken before the lock: the fan-out latency includes waiting for the room.
        let published_at = Instant::now();
        let rec_content: Arc<str> = Arc::from(content);
        let created_at_ms = json::now_millis();
        let mut wakes = Wakeups::default();
        let mut state = room.state.lock();
        let id = self.ids.next_local();
        let rec = ChatRecord {
            id,
            room: Arc::clone(&room.name),
            user: Arc::clone(user),
            content: rec_content,
            created_at_ms,
        };
        self.fan_out_locked(room, &mut state, rec, origin, client_id, scratch, published_at, &mut wakes);
        drop(state);
        self.wake(wakes);
    }

    /// Relays a binary frame verbatim to the text-format members of `room` (no id, not stored); in
    /// cluster mode through Redis, to the room's text members on every node.
    pub(crate) fn publish_binary(&self, room: &Arc<Room>, payload: &[u8]) {
        match &self.cluster {
            Some(cluster) => cluster.submit_binary(&room.name, payload),
            None => self.relay_binary_locally(room, payload),
        }
    }

    /// Wakes the threads collected in `wakes`; call after releasing the room's lock.
    pub(super) fn wake(&self, wakes: Wakeups) {
        for (word, &bits) in wakes.shards.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.shards.wake(word * 64 + bit);
            }
        }
        if wakes.writer
            && let Some(store) = &self.store
        {
            store.wake();
        }
    }

    /// With the room's lock held: encodes `rec` once per format members speak, makes it the room's
    /// last id, queues it for the store and pushes it to every shard with members; the wake-ups
    /// this calls for go into `wakes` (see [`Hub::wake`]).
    #[allow(clippy::too_many_arguments, reason = "the publish path's inputs, passed without a struct on the hot path")]
    pub(super) fn fan_out_locked(
        &self,
        room: &Room,
        state: &mut RoomState,
        rec: ChatRecord,
        origin: Format,
        client_id: Option<&str>,
        scratch: &mut Vec<u8>,
        published_at: Instant,
        wakes: &mut Wakeups,
    ) {
        let id = rec.id;
        let wanted = (state.text_members > 0, state.json_members > 0);
        let (text, json) = encode::chat_frames(&rec, origin, client_id, wanted, scratch);
        state.last_id = id;
        self.store_record_locked(rec, wakes);
        self.push_to_members(state, Arc::new(Delivery { room_id: room.id, id, text, json, published_at }), wakes);
    }

    /// Queues `rec` for the store (when persistence is on); call without a room's lock held.
    pub(super) fn store_record(&self, rec: ChatRecord) {
        let mut wakes = Wakeups::default();
        self.store_record_locked(rec, &mut wakes);
        self.wake(wakes);
    }

    /// Queues `rec` for the store (when persistence is on), leaving the writer's wake-up to `wakes`.
    fn store_record_locked(&self, rec: ChatRecord, wakes: &mut Wakeups) {
        if let Some(store) = &self.store {
            let id = rec.id;
            match store.try_enqueue_deferred(rec) {
                Ok(wake) => wakes.writer |= wake == WriterWake::Needed,
                // The queue has room unless every shard ignored `ingress_paused`'s reserve at once;
                // then wait for the writer (bounded: it drains continuously) rather than drop an
                // accepted message. The only place a room's lock is held across a wait, and only
                // when backpressure was not enough.
                Err(rec) => {
                    if let Err(err) = store.enqueue_blocking(rec) {
                        tracing::error!(%err, id, "message could not be queued for persistence");
                    }
                }
            }
        }
    }

    /// Relays a binary frame verbatim to this node's text-format members of `room`.
    pub(super) fn relay_binary_locally(&self, room: &Room, payload: &[u8]) {
        let frame = encode::binary_frame(payload);
        let delivery =
            Arc::new(Delivery { room_id: room.id, id: 0, text: Some(frame), json: None, published_at: Instant::now() });
        let mut wakes = Wakeups::default();
        let state = room.state.lock();
        if state.text_members > 0 {
            self.push_to_members(&state, delivery, &mut wakes);
        }
        drop(state);
        self.wake(wakes);
    }

    /// A user's first connection in `room` on this node joined (`joined`) or its last one left;
    /// called with the room's state locked. Single node: the `presence` event goes to the room's
    /// JSON members now. Cluster mode: the change goes to Redis, which decides whether it is the
    /// user's first or last connection on the cluster and sends the event to every node.
    fn announce_presence(&self, room: &Room, state: &RoomState, user: &Arc<str>, joined: bool, wakes: &mut Wakeups) {
        match &self.cluster {
            Some(cluster) => cluster.submit_presence(&room.name, user, joined),
            None => self.publish_presence(room, state, user, joined, wakes),
        }
    }

    /// Publishes a `presence` event to the JSON members; call with the room's state locked, then
    /// [`Hub::wake`] `wakes` after releasing it.
    pub(super) fn publish_presence(
        &self,
        room: &Room,
        state: &RoomState,
        user: &str,
        joined: bool,
        wakes: &mut Wakeups,
    ) {
        if state.json_members == 0 {
            return;
        }
        let frame = encode::presence_frame(&room.name, user, if joined { "join" } else { "leave" });
        let delivery =
            Delivery { room_id: room.id, id: 0, text: None, json: Some(frame), published_at: Instant::now() };
        self.push_to_members(state, Arc::new(delivery), wakes);
    }

    /// Pushes `delivery` onto the inbox of every shard with members (no syscall: see the module doc).
    fn push_to_members(&self, state: &RoomState, delivery: Arc<Delivery>, wakes: &mut Wakeups) {
        for (shard, &members) in state.per_shard.iter().enumerate() {
            if members > 0 && self.shards.push(shard, ShardMsg::Deliver(Arc::clone(&delivery))) {
                wakes.shard(shard);
            }
        }
    }
}
