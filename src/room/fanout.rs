//! The publish path: one message in, one id, one encoding per wire format, one inbox send per shard.
//!
//! [`Hub`] is shared by every shard. Everything that must be ordered within a room (ids, store queue
//! order, delivery order) happens under the room's lock, and every delivery, including to the
//! sender's own shard, goes through the shard inboxes, which are FIFO: so every member of a room
//! receives the room's messages in one and the same order, the order of their ids.
//!
//! The room's lock covers sequencing only. Under it: the id, the encoding (pure CPU), the store
//! queue push and the inbox pushes, none of which makes a syscall or wakes a thread. The wake-ups
//! those pushes call for (a sleeping shard's eventfd, an idle store writer) are collected in
//! [`Wakeups`] and done by [`Hub::wake`] after the lock is released: a thread woken while the lock
//! is held could preempt its waker on a busy core and stall every other publisher of the room
//! behind a descheduled lock holder.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::directory::{Directory, Room, RoomState};
use super::remote::{Outgoing, RemoteSequencer};
use crate::bus::{Delivery, INBOX_SOFT_CAP, ShardInbox, ShardMsg};
use crate::protocol::{json, text};
use crate::store::{IdCeiling, StoreWriter, WriterWake};
use crate::types::{ChatRecord, Format};
use crate::types::{ClientError, ConnRef};
use crate::ws::codec;

/// Longest a publish waits for the store writer to raise the id ceiling (only if it is stuck).
const CEILING_WAIT: Duration = Duration::from_secs(5);

/// Threads to wake once a room's lock is released: shards whose inbox got a message while they
/// were (about to be) asleep, and the store writer. Collected by the `*_locked` publish functions,
/// performed by [`Hub::wake`].
#[must_use = "pass it to Hub::wake after releasing the room's lock"]
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
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

/// Shared publish state: the room table, the shard inboxes, the id sequence and the store queue.
pub(crate) struct Hub {
    /// Rooms and their members.
    pub(crate) directory: Directory,
    shards: Vec<Arc<ShardInbox>>,
    /// Single node: the last id allocated. Cluster mode: the largest id seen (see `cluster::ids`).
    last_id: AtomicU64,
    store: Option<StoreWriter>,
    /// Cluster mode: chat messages go to Redis first (see `crate::cluster`).
    cluster: Option<Box<dyn RemoteSequencer>>,
    /// Single node with persistence: ids are used only under this durable ceiling.
    id_ceiling: Option<Arc<IdCeiling>>,
}

impl Hub {
    /// A hub over `shards`, continuing ids after `start_id` (`Store::start_id`: above every id used
    /// before); `store` is `None` without persistence.
    pub(crate) fn new(shards: Vec<Arc<ShardInbox>>, start_id: u64, store: Option<StoreWriter>) -> Self {
        Hub {
            directory: Directory::new(shards.len()),
            shards,
            last_id: AtomicU64::new(start_id),
            store,
            cluster: None,
            id_ceiling: None,
        }
    }

    /// Single node with persistence: use ids only under `ceiling` (see `store::IdCeiling`).
    pub(crate) fn with_id_ceiling(mut self, ceiling: Arc<IdCeiling>) -> Self {
        self.id_ceiling = Some(ceiling);
        self
    }

    /// Single node: the next id. Under the durable ceiling: input pauses well before it is reached
    /// (`ingress_paused`); only a writer stuck meanwhile makes this wait, bounded like a full store
    /// queue.
    fn next_local_id(&self) -> u64 {
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(ceiling) = &self.id_ceiling
            && !ceiling.wait_covers(id, CEILING_WAIT)
        {
            tracing::error!(
                id,
                ceiling = ceiling.durable(),
                "id above the durable id ceiling: the store writer is stuck"
            );
        }
        id
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
        self.last_id.load(Ordering::SeqCst)
    }

    /// Cluster mode: records that id `id` exists (ids allocated here later are above it).
    pub(crate) fn observe_id(&self, id: u64) {
        self.last_id.fetch_max(id, Ordering::SeqCst);
    }

    /// Cluster mode: moves the id sequence from `seen` to `next(seen)` atomically; returns the new id.
    pub(crate) fn allocate_id(&self, next: impl Fn(u64) -> u64) -> u64 {
        let mut seen = self.last_id.load(Ordering::SeqCst);
        loop {
            let id = next(seen);
            match self.last_id.compare_exchange_weak(seen, id, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return id,
                Err(actual) => seen = actual,
            }
        }
    }

    /// Cluster mode: tells the connection `reply_to` that its message was refused (never blocks:
    /// the shard's inbox is unbounded; a connection closed meanwhile is skipped by the shard).
    pub(crate) fn refuse(&self, conn: ConnRef, error: &ClientError) {
        if let Some(inbox) = self.shards.get(conn.shard) {
            inbox.send(ShardMsg::Refused { conn, error: error.clone() });
        }
    }

    /// Number of shards.
    pub(crate) fn n_shards(&self) -> usize {
        self.shards.len()
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
            || self.id_ceiling.as_ref().is_some_and(|c| c.is_near(self.max_id()))
            || self.cluster.as_ref().is_some_and(|c| c.is_congested())
            || self.shards.iter().any(|s| s.len() > INBOX_SOFT_CAP)
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
        let id = self.next_local_id();
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

    /// Wakes the threads collected in `wakes`; call after releasing the room's lock.
    pub(crate) fn wake(&self, wakes: Wakeups) {
        for (word, &bits) in wakes.shards.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.shards[word * 64 + bit].wake();
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
    pub(crate) fn fan_out_locked(
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
        let text = (state.text_members > 0).then(|| match origin {
            Format::Text => Bytes::from(codec::encode_frame(codec::TEXT, rec.content.as_bytes())),
            Format::Json => {
                scratch.clear();
                text::write_line(scratch, &rec.user, &rec.content);
                Bytes::from(codec::encode_frame(codec::TEXT, scratch))
            }
        });
        let json = (state.json_members > 0).then(|| {
            scratch.clear();
            json::write_message(scratch, &rec, client_id);
            Bytes::from(codec::encode_frame(codec::TEXT, scratch))
        });
        state.last_id = id;
        self.store_record_locked(rec, wakes);
        self.push_to_members(state, Arc::new(Delivery { room_id: room.id, id, text, json, published_at }), wakes);
    }

    /// Queues `rec` for the store (when persistence is on); call without a room's lock held.
    pub(crate) fn store_record(&self, rec: ChatRecord) {
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

    /// Relays a binary frame verbatim to the text-format members of `room` (no id, not stored); in
    /// cluster mode through Redis, to the room's text members on every node.
    pub(crate) fn publish_binary(&self, room: &Arc<Room>, payload: &[u8]) {
        match &self.cluster {
            Some(cluster) => cluster.submit_binary(&room.name, payload),
            None => self.relay_binary_locally(room, payload),
        }
    }

    /// Relays a binary frame verbatim to this node's text-format members of `room`.
    pub(crate) fn relay_binary_locally(&self, room: &Room, payload: &[u8]) {
        let frame = Bytes::from(codec::encode_frame(codec::BINARY, payload));
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

    /// A user's first connection in `room` on this node joined (`event` `"join"`) or its last one
    /// left (`"leave"`); call with the room's state locked. Single node: the `presence` event goes to
    /// the room's JSON members now. Cluster mode: the change goes to Redis, which decides whether it is
    /// the user's first or last connection on the cluster and sends the event to every node.
    /// Wake-ups go into `wakes` (see [`Hub::wake`]).
    pub(crate) fn announce_presence(
        &self,
        room: &Room,
        state: &RoomState,
        user: &Arc<str>,
        event: &str,
        wakes: &mut Wakeups,
    ) {
        match &self.cluster {
            Some(cluster) => cluster.submit_presence(&room.name, user, event == "join"),
            None => self.publish_presence(room, state, user, event, wakes),
        }
    }

    /// Cluster mode with the subscriber connected: `room`'s members across the cluster (up to
    /// `max_names` names, exact count), from the node's in-memory view; `None` otherwise (the room
    /// table's own members are the answer). Call with the room's state locked.
    pub(crate) fn cluster_members(
        &self,
        room: &Room,
        state: &RoomState,
        max_names: usize,
    ) -> Option<(Vec<Arc<str>>, usize)> {
        self.cluster.as_ref()?.members(&room.name, &state.users, max_names)
    }

    /// Publishes a `presence` event to the JSON members; call with the room's state locked, then
    /// [`Hub::wake`] `wakes` after releasing it.
    pub(crate) fn publish_presence(
        &self,
        room: &Room,
        state: &RoomState,
        user: &str,
        event: &str,
        wakes: &mut Wakeups,
    ) {
        if state.json_members == 0 {
            return;
        }
        let frame = Bytes::from(codec::encode_frame(codec::TEXT, &json::presence(&room.name, user, event)));
        let delivery =
            Delivery { room_id: room.id, id: 0, text: None, json: Some(frame), published_at: Instant::now() };
        self.push_to_members(state, Arc::new(delivery), wakes);
    }

    /// Pushes `delivery` onto the inbox of every shard with members (no syscall: see the module doc).
    fn push_to_members(&self, state: &RoomState, delivery: Arc<Delivery>, wakes: &mut Wakeups) {
        for (shard, &members) in state.per_shard.iter().enumerate() {
            if members > 0 && self.shards[shard].push(ShardMsg::Deliver(Arc::clone(&delivery))) {
                wakes.shard(shard);
            }
        }
    }

    /// Sends `msg` to shard `shard`'s inbox.
    pub(crate) fn send_to_shard(&self, shard: usize, msg: ShardMsg) {
        self.shards[shard].send(msg);
    }

    /// Sends `msg()` to every shard.
    pub(crate) fn broadcast_to_shards(&self, msg: impl Fn() -> ShardMsg) {
        for shard in &self.shards {
            shard.send(msg());
        }
    }
}
