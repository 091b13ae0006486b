//! The publish path: one entry ([`Hub::publish`]), one sequencer chosen at start, one function that
//! runs under a room's lock ([`Hub::apply_locked`], and [`Hub::relay_locked`] for events without an
//! id), which hands the event to every sink and every member shard.
//!
//! [`Hub`] is shared by every shard. Everything that must be ordered within a room (ids, the sinks'
//! order, delivery order) happens under the room's lock, and every delivery, including to the
//! sender's own shard, goes through the shard inboxes, which are FIFO: so every member of a room
//! receives the room's events in one and the same order.
//!
//! The room's lock covers ordering only: the event's position and id, the room's `last_id`, the
//! sinks' non-blocking `offer_locked` and the inbox pushes, none of which makes a syscall or wakes a
//! thread. Nothing is rendered under it: each member shard renders the variant it needs, once, into
//! the delivery's shared cell (`bus::Delivery::frame`). The wake-ups the pushes call for (a sleeping
//! shard's eventfd, an idle sink consumer, the cluster publisher) are collected in [`Wakeups`] and
//! done after the lock is released: a thread woken while the lock is held could preempt its waker
//! on a busy core and stall every other publisher of the room behind a descheduled lock holder.

use std::sync::Arc;
use std::time::Instant;

use super::directory::{Directory, Joined, Room, RoomState};
use super::sequence::IdSequence;
use super::sequencer::{ControlMessage, MemberList, Outgoing, PresenceRoute, Sequencer, UsersDone};
use super::sink::{ModerationDecision, ModerationSink, PresenceChange, PresenceSink, Sink};
use crate::bus::{Delivery, Payload, ShardMsg, Shards};
use crate::deferred::Wake;
use crate::protocol::api::NodeUser;
use crate::protocol::json;
use crate::render::{self, Variant};
use crate::types::{ClientError, ConnRef, Event, IdWaiter, Origin, Sequenced, Transient};

/// Threads to wake once a room's lock is released: shards whose inbox got a message while they
/// were (about to be) asleep, sink consumers, the sequencer's thread. Collected under the lock,
/// performed by [`Hub::wake`].
#[must_use = "pass it to Hub::wake after releasing the room's lock"]
#[derive(Debug, Default)]
pub(super) struct Wakeups {
    /// One bit per shard (at most 256, see `Config::shards`).
    shards: [u64; 4],
    /// One bit per sink (at most 64).
    sinks: u64,
    /// The sequencer's thread (cluster mode: the Redis publisher).
    sequencer: bool,
    /// The presence sink's consumer (webhooks).
    presence: bool,
}

impl Wakeups {
    fn shard(&mut self, shard: usize) {
        self.shards[shard / 64] |= 1 << (shard % 64);
    }
}

/// The room an event is published to: one the caller is a member of (the hot path: no table
/// lookup), or any room by name (created for the publish if nobody on this node is in it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RoomRef<'a> {
    /// A room the publishing connection has joined.
    Joined(&'a Arc<Room>),
    /// A room by (validated) name: the server API posting into rooms with or without members
    /// (`tests::a_publish_by_name_needs_no_member`).
    Named(&'a str),
}

/// Shared publish state: the room table, the shard inboxes, the id floor, the sequencer, the sinks.
pub(crate) struct Hub {
    /// Rooms and their members.
    pub(crate) directory: Directory,
    shards: Arc<Shards>,
    pub(crate) ids: IdSequence,
    sequencer: Box<dyn Sequencer>,
    sinks: Vec<Box<dyn Sink>>,
    /// Where the cluster's control messages go (the server API's moderation, set at start).
    control: std::sync::OnceLock<ControlHook>,
    /// This node's users for the cluster's listings (the server API's registry, set at start).
    users_source: std::sync::OnceLock<Box<dyn UsersSource>>,
    /// Who hears of this node's presence changes (webhooks, set at start before any shard runs).
    presence: std::sync::OnceLock<Box<dyn PresenceSink>>,
    /// Who hears of the moderation decisions made on this node (webhooks, set at start before any
    /// shard runs).
    moderation: std::sync::OnceLock<Box<dyn ModerationSink>>,
    /// Who logs every moderation decision in force here, made here or applied from another node
    /// (the change feed's log in the store, set at start).
    moderation_log: std::sync::OnceLock<Box<dyn ModerationSink>>,
}

/// What a node does with a control message from the cluster (see [`Hub::set_control_hook`]).
/// Its flag: the message is the cluster's kept state, read when this node linked (again), not a
/// live one.
pub(crate) type ControlHook = Box<dyn Fn(&[u8], bool) + Send + Sync>;

/// Where this node's users come from for the other nodes' listings (see [`Hub::set_users_source`]).
pub(crate) trait UsersSource: Send + Sync {
    /// A count that moves whenever a row may have changed (a connection or a room membership came
    /// or went): while it stays, the rows are the ones built last time.
    fn generation(&self) -> u64;
    /// This node's users, their connections and rooms.
    fn users(&self) -> Vec<NodeUser>;
}

impl Hub {
    /// A hub delivering through `shards`, ordering with `sequencer`, tracking ids in `ids`, and
    /// handing every sequenced event to each of `sinks` (at most 64).
    pub(crate) fn new(
        shards: Arc<Shards>,
        ids: IdSequence,
        sequencer: Box<dyn Sequencer>,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Self {
        assert!(sinks.len() <= 64, "Wakeups has one bit per sink");
        let control = std::sync::OnceLock::new();
        let (presence, moderation, moderation_log) =
            (std::sync::OnceLock::new(), std::sync::OnceLock::new(), std::sync::OnceLock::new());
        let directory = Directory::new(shards.len());
        Hub {
            directory,
            shards,
            ids,
            sequencer,
            sinks,
            control,
            users_source: std::sync::OnceLock::new(),
            presence,
            moderation,
            moderation_log,
        }
    }

    /// The last id allocated (single node) or the largest id seen (cluster mode): every event
    /// published from now on gets a larger id, so it is the floor for rooms created now.
    pub(crate) fn max_id(&self) -> u64 {
        self.ids.max()
    }

    /// Tells the connection `conn` that its event was refused after it left the shard (never
    /// blocks: the shard's inbox is unbounded; a connection closed meanwhile is skipped there).
    pub(crate) fn refuse(&self, conn: ConnRef, error: &ClientError) {
        self.shards.send(conn.shard, ShardMsg::Refused { conn, error: error.clone() });
    }

    /// Sets who hears of this node's presence changes (once, at start, before any shard runs).
    pub(crate) fn set_presence_sink(&self, sink: Box<dyn PresenceSink>) {
        let _ = self.presence.set(sink);
    }

    /// Sets who hears of the moderation decisions made here (once, at start, before any shard runs).
    pub(crate) fn set_moderation_sink(&self, sink: Box<dyn ModerationSink>) {
        let _ = self.moderation.set(sink);
    }

    /// Sets who logs every moderation decision in force here (once, at start, before any shard runs).
    pub(crate) fn set_moderation_log(&self, sink: Box<dyn ModerationSink>) {
        let _ = self.moderation_log.set(sink);
    }

    /// Hands a moderation decision made on this node to its consumers (webhooks, the change feed's
    /// log); `decision` is only built when there is one. Never waits (each consumer's policy decides
    /// what a full queue means).
    pub(crate) fn moderated(&self, decision: impl FnOnce() -> ModerationDecision) {
        self.offer_moderation(decision, true);
    }

    /// Hands a moderation decision another node made, and this one applied, to the change feed's
    /// log only (the deciding node sends the webhooks).
    pub(crate) fn moderation_applied(&self, decision: impl FnOnce() -> ModerationDecision) {
        self.offer_moderation(decision, false);
    }

    fn offer_moderation(&self, decision: impl FnOnce() -> ModerationDecision, decided_here: bool) {
        let hooks = self.moderation.get().filter(|_| decided_here);
        let log = self.moderation_log.get();
        if hooks.is_none() && log.is_none() {
            return;
        }
        let decision = Arc::new(decision());
        for sink in hooks.into_iter().chain(log) {
            sink.offer(&decision);
        }
    }

    /// Sets what this node does with the cluster's control messages (once, at start).
    pub(crate) fn set_control_hook(&self, hook: ControlHook) {
        let _ = self.control.set(hook);
    }

    /// Sends a control message to every node of the cluster (this one included, through Redis);
    /// `false` on a single node, or when the hand-off to Redis is full.
    pub(crate) fn broadcast_control(&self, message: ControlMessage) -> bool {
        self.sequencer.take_control(message)
    }

    /// Cluster mode with the cluster view up: the rooms with users anywhere (`None` otherwise).
    pub(crate) fn cluster_rooms(&self) -> Option<Vec<(Arc<str>, usize)>> {
        self.sequencer.rooms()
    }

    /// Cluster mode with the cluster view up: up to `max_names` users of `room` anywhere (this node's
    /// first) and their exact number; `None` otherwise.
    pub(crate) fn cluster_members(&self, room: &str, max_names: usize) -> Option<MemberList> {
        match self.directory.get(room) {
            Some(local) => self.sequencer.members(room, &local.state.lock().users, max_names),
            None => self.sequencer.members(room, &std::collections::HashMap::<Arc<str>, u32>::new(), max_names),
        }
    }

    /// Cluster mode: reads the other nodes' users (`user`: that one only) and hands them to `done`
    /// on the cluster's listing thread; gives `done` back when it cannot (single node, or the
    /// listing queue is full).
    pub(crate) fn remote_users(&self, user: Option<Arc<str>>, done: UsersDone) -> Option<UsersDone> {
        self.sequencer.remote_users(user, done)
    }

    /// Sets where this node's users come from for the other nodes' listings (once, at start).
    pub(crate) fn set_users_source(&self, source: Box<dyn UsersSource>) {
        let _ = self.users_source.set(source);
    }

    /// This node's users, their connections and rooms (empty before the source is set).
    pub(crate) fn local_users(&self) -> Vec<NodeUser> {
        self.users_source.get().map(|source| source.users()).unwrap_or_default()
    }

    /// The users' generation ([`UsersSource::generation`]; `None` before the source is set).
    pub(crate) fn users_generation(&self) -> Option<u64> {
        self.users_source.get().map(|source| source.generation())
    }

    /// Whether the events are sequenced elsewhere (cluster mode).
    pub(crate) fn is_clustered(&self) -> bool {
        self.sequencer.is_remote()
    }

    /// A control message from the cluster (the subscriber thread): live, or (`kept`) the cluster's
    /// kept state read when this node linked.
    pub(crate) fn on_control(&self, payload: &[u8], kept: bool) {
        if let Some(hook) = self.control.get() {
            hook(payload, kept);
        }
    }

    /// Tells `waiter` the id its event got after it left the shard (cluster mode), or why it got
    /// none (never blocks: the shard's inbox is unbounded; a connection closed meanwhile is skipped).
    pub(crate) fn acknowledge(&self, waiter: IdWaiter, result: Result<u64, ClientError>) {
        self.shards.send(waiter.conn.shard, ShardMsg::Sequenced { waiter, result });
    }

    /// A mark covering every event published so far whose delivery comes back later (cluster
    /// mode); `None` when a publish has queued its deliveries before it returns.
    pub(crate) fn echo_mark(&self) -> Option<u64> {
        self.sequencer.echo_mark()
    }

    /// Whether every event up to `mark` ([`Hub::echo_mark`]) came back from the sequencer.
    pub(crate) fn echoed(&self, mark: u64) -> bool {
        self.sequencer.echoed(mark)
    }

    /// Whether shards should stop reading client input for now: a sink or an inbox is congested,
    /// the sequencer is behind, or ids are close to the durable id ceiling.
    ///
    /// This is the backpressure policy for every queue of the publish path: nothing accepted is
    /// dropped; clients that send are simply not read (TCP pushes back on them) until it clears.
    pub(crate) fn ingress_paused(&self) -> bool {
        self.sinks.iter().any(|sink| sink.is_congested())
            || self.ids.near_ceiling()
            || self.sequencer.is_congested()
            || self.shards.congested()
    }

    /// How many frames a shard may take between two looks at [`Hub::ingress_paused`]: the smallest
    /// reserve (what a queue still takes once congested) of every sink, the sequencer and the
    /// inboxes, shared by the shards, at most 64 and at least 1. Every shard reading that many
    /// frames at once after a look that said "go" still fits the reserve, so the pause stays ahead
    /// of every bound while it is looked at once per loop turn, not once per frame.
    pub(crate) fn ingress_recheck(&self) -> usize {
        let reserve =
            self.sinks.iter().map(|s| s.reserve()).chain([self.sequencer.reserve(), self.shards.reserve()]).min();
        (reserve.unwrap_or(usize::MAX) / self.shards.len().max(1)).clamp(1, 64)
    }

    /// Publishes `event` (sent the way `origin` says, by `reply_to` if a connection sent it) to
    /// `room`: the one entry for every event of a room's ordered log.
    ///
    /// Returns the event's id when it was ordered here (single node), `None` when the sequencer
    /// kept it (cluster mode: Redis gives the id).
    ///
    /// # Errors
    /// `unavailable` (with `origin.client_id`) when the sequencer cannot take it now; nothing was
    /// published.
    pub(crate) fn publish(
        &self,
        room: RoomRef<'_>,
        event: Event,
        origin: Origin,
        reply_to: Option<ConnRef>,
    ) -> Result<Option<u64>, ClientError> {
        self.publish_acked(room, event, origin, reply_to, None, None)
    }

    /// [`Hub::publish`], and when the sequencer keeps the event (`Ok(None)`), `ack` is told its id
    /// (or why it has none) through [`Hub::acknowledge`] once it is sequenced; the sequencer then
    /// publishes it at most once per `idempotency_key` (cluster mode).
    ///
    /// # Errors
    /// As [`Hub::publish`].
    pub(crate) fn publish_acked(
        &self,
        room: RoomRef<'_>,
        event: Event,
        origin: Origin,
        reply_to: Option<ConnRef>,
        ack: Option<IdWaiter>,
        idempotency_key: Option<Arc<str>>,
    ) -> Result<Option<u64>, ClientError> {
        let name = match room {
            RoomRef::Joined(room) => Arc::clone(&room.name),
            RoomRef::Named(name) => Arc::from(name),
        };
        let out = Outgoing { room: name, event, origin, at_ms: json::now_millis(), reply_to, ack, idempotency_key };
        let Some(out) = self.sequencer.take(out)? else { return Ok(None) };
        let id = self.with_room(room, |room, state, wakes| {
            let seq = out.sequenced(self.ids.next_local());
            let id = seq.id;
            self.apply_locked(room, state, seq, out.origin, wakes);
            id
        });
        Ok(Some(id))
    }

    /// Relays `event` (a binary frame: no id, not stored) to the members of `room`.
    pub(crate) fn relay(&self, room: &Arc<Room>, event: Transient) {
        if let Some(event) = self.sequencer.take_relay(&room.name, event) {
            self.with_room(RoomRef::Joined(room), |room, state, wakes| self.relay_locked(room, state, event, wakes));
        }
    }

    /// Adds a connection of `user` on shard `shard` receiving `variant` to room `name` (created if
    /// needed), announcing the user's presence if this is their first connection there. Returns the
    /// room table's answer and, in cluster mode with the cluster view up, the room's members across
    /// the cluster (at most `max_names` names, exact count).
    pub(crate) fn join(
        &self,
        name: &str,
        shard: usize,
        variant: Variant,
        user: &Arc<str>,
        max_names: usize,
    ) -> (Joined, Option<MemberList>) {
        let mut wakes = Wakeups::default();
        let joined = self.directory.join(
            || self.ids.max(),
            name,
            shard,
            variant,
            user,
            max_names,
            |joined, state| {
                if joined.first_of_user {
                    self.presence_locked(&joined.room, state, user, true, &mut wakes);
                    self.offer_presence_locked(&joined.room, user, true, state.users.len() == 1, &mut wakes);
                }
                self.sequencer.members(&joined.room.name, &state.users, max_names)
            },
        );
        self.wake(wakes);
        joined
    }

    /// Removes a connection of `user` receiving `variant` from `room`, announcing the user's
    /// departure if this was their last connection there.
    pub(crate) fn leave(&self, room: &Arc<Room>, shard: usize, variant: Variant, user: &Arc<str>) {
        let mut wakes = Wakeups::default();
        self.directory.leave(room, shard, variant, user, |last_of_user, state| {
            if last_of_user {
                self.presence_locked(room, state, user, false, &mut wakes);
                self.offer_presence_locked(room, user, false, state.users.is_empty(), &mut wakes);
            }
        });
        self.wake(wakes);
    }

    /// With the room's lock held: a presence change of this node, told to members here or handed
    /// to the sequencer (cluster mode: Redis decides whether it is cluster-wide and sends it back).
    fn presence_locked(&self, room: &Room, state: &mut RoomState, user: &Arc<str>, joined: bool, wakes: &mut Wakeups) {
        match self.sequencer.presence_locked(&room.name, user, joined) {
            PresenceRoute::Here => {
                self.relay_locked(room, state, Transient::Presence { user: Arc::clone(user), joined }, wakes);
            }
            PresenceRoute::Sent(wake) => wakes.sequencer |= wake == Wake::Needed,
        }
    }

    /// With the room's lock held: tells the presence sink (if any) that `user` joined or left
    /// `room` on this node, and whether that occupied or vacated it.
    fn offer_presence_locked(&self, room: &Room, user: &Arc<str>, joined: bool, occupancy: bool, wakes: &mut Wakeups) {
        if let Some(sink) = self.presence.get() {
            let change = PresenceChange {
                room: Arc::clone(&room.name),
                user: Arc::clone(user),
                joined,
                occupancy_changed: occupancy,
            };
            wakes.presence |= sink.offer_locked(change) == Wake::Needed;
        }
    }

    /// Runs `f` with `room`'s lock held (a room named but not in the table is created for it and
    /// forgotten again if still empty), then does the wake-ups `f` collected.
    pub(super) fn with_room<R>(
        &self,
        room: RoomRef<'_>,
        f: impl FnOnce(&Room, &mut RoomState, &mut Wakeups) -> R,
    ) -> R {
        let mut wakes = Wakeups::default();
        let result = match room {
            RoomRef::Joined(room) => f(room, &mut room.state.lock(), &mut wakes),
            RoomRef::Named(name) => {
                let room = self.directory.get_or_create(name, || self.ids.max());
                let result = f(&room, &mut room.state.lock(), &mut wakes);
                self.directory.forget_if_empty(&room);
                result
            }
        };
        self.wake(wakes);
        result
    }

    /// With the room's lock held: makes `seq` the room's last event, hands it to every sink and
    /// pushes it to every shard with members; the wake-ups this calls for go into `wakes`. The
    /// only code through which a sequenced event reaches members and sinks.
    pub(super) fn apply_locked(
        &self,
        room: &Room,
        state: &mut RoomState,
        seq: Sequenced,
        origin: Origin,
        wakes: &mut Wakeups,
    ) {
        let seq = Arc::new(seq);
        state.last_id = seq.id;
        self.offer_to_sinks(&seq, wakes);
        let pos = state.next_pos();
        if state.members() > 0 {
            let delivery = Delivery::new(room.id, pos, Payload::Sequenced(seq, origin), Instant::now());
            self.push_to_members(state, Arc::new(delivery), wakes);
        }
    }

    /// With the room's lock held: relays `event` (no id, not stored) to the members it is for.
    pub(super) fn relay_locked(&self, room: &Room, state: &mut RoomState, event: Transient, wakes: &mut Wakeups) {
        let pos = state.next_pos();
        if state.has_format(render::transient_format(&event)) {
            let delivery =
                Delivery::new(room.id, pos, Payload::Transient(Arc::clone(&room.name), event), Instant::now());
            self.push_to_members(state, Arc::new(delivery), wakes);
        }
    }

    /// Hands `seq` to the sinks without a room's lock (an event that is stored but not delivered
    /// live: cluster mode, a room nobody here is in or an id older than what members saw).
    pub(super) fn store_only(&self, seq: Sequenced) {
        let mut wakes = Wakeups::default();
        self.offer_to_sinks(&Arc::new(seq), &mut wakes);
        self.wake(wakes);
    }

    fn offer_to_sinks(&self, seq: &Arc<Sequenced>, wakes: &mut Wakeups) {
        for (i, sink) in self.sinks.iter().enumerate() {
            if sink.offer_locked(seq) == Wake::Needed {
                wakes.sinks |= 1 << i;
            }
        }
    }

    /// Wakes the threads collected in `wakes`; call after releasing the room's lock.
    fn wake(&self, wakes: Wakeups) {
        for (word, &bits) in wakes.shards.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.shards.wake(word * 64 + bit);
            }
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            if wakes.sinks & (1 << i) != 0 {
                sink.wake();
            }
        }
        if wakes.sequencer {
            self.sequencer.wake();
        }
        if wakes.presence
            && let Some(sink) = self.presence.get()
        {
            sink.wake();
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::bus::ShardInbox;
    use crate::room::sequencer::LocalSequencer;
    use crate::types::Format;

    /// What a [`Recorder`] was offered.
    type Recorded = Arc<Mutex<Vec<Arc<Sequenced>>>>;

    /// A sink that records what it was offered.
    #[derive(Default)]
    struct Recorder(Recorded);

    impl Sink for Recorder {
        fn offer_locked(&self, event: &Arc<Sequenced>) -> Wake {
            self.0.lock().expect("recorder").push(Arc::clone(event));
            Wake::No
        }
        fn wake(&self) {}
        fn is_congested(&self) -> bool {
            false
        }
        fn reserve(&self) -> usize {
            100
        }
    }

    fn hub() -> (Hub, crossbeam_channel::Receiver<ShardMsg>, Recorded) {
        let poll = mio::Poll::new().expect("poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker");
        let (inbox, rx) = ShardInbox::new(waker);
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let sink = Recorder(Arc::clone(&recorded));
        let hub = Hub::new(
            Arc::new(Shards::new(vec![inbox])),
            IdSequence::new(10, None),
            Box::new(LocalSequencer),
            vec![Box::new(sink)],
        );
        (hub, rx, recorded)
    }

    fn message(text: &str) -> Event {
        Event::message(Arc::from("ann"), Arc::from(text))
    }

    #[test]
    fn a_publish_by_name_needs_no_member() {
        let (hub, rx, recorded) = hub();
        let id = hub.publish(RoomRef::Named("empty"), message("hello"), Origin::STORED, None).expect("published");
        assert_eq!(id, Some(11), "ordered here: the id is known at once");
        let stored = recorded.lock().expect("recorder").clone();
        assert_eq!(stored.len(), 1, "the sinks got it");
        assert_eq!((stored[0].id, &*stored[0].room), (11, "empty"));
        assert!(rx.try_recv().is_err(), "no member, no delivery");
        assert_eq!(hub.directory.len(), 0, "the room made for the publish is forgotten");
        // A member who joins later starts after it: a resume with since < last_id pages history.
        let (joined, _) = hub.join("empty", 0, Variant::plain(Format::Json), &Arc::from("bob"), 10);
        assert_eq!(joined.last_id, 11);
    }

    #[test]
    fn a_member_skips_what_was_published_before_it_joined() {
        let (hub, rx, _) = hub();
        let ann: Arc<str> = Arc::from("ann");
        let (first, _) = hub.join("r", 0, Variant::plain(Format::Json), &ann, 10);
        // Bob's join is published (presence) before Cid's; Cid's snapshot already names Bob.
        let (_, _) = hub.join("r", 0, Variant::plain(Format::Json), &Arc::from("bob"), 10);
        let (cid, _) = hub.join("r", 0, Variant::plain(Format::Json), &Arc::from("cid"), 10);
        hub.publish(RoomRef::Joined(&first.room), message("after"), Origin::STORED, None).expect("published");
        let delivered: Vec<(u64, bool)> = rx
            .try_iter()
            .filter_map(|msg| match msg {
                ShardMsg::Deliver(d) => Some((d.pos, matches!(d.payload, Payload::Sequenced(..)))),
                _ => None,
            })
            .collect();
        assert_eq!(delivered.len(), 4, "three presence events and the message: {delivered:?}");
        let seen_by_cid: Vec<_> = delivered.iter().filter(|(pos, _)| *pos > cid.pos).collect();
        assert_eq!(seen_by_cid.len(), 2, "its own join and the message, not Bob's earlier join: {delivered:?}");
        assert!(cid.member_names.iter().any(|n| &**n == "bob"));
    }

    /// A presence sink that records what it was offered.
    struct PresenceRecorder(Arc<Mutex<Vec<PresenceChange>>>);

    impl PresenceSink for PresenceRecorder {
        fn offer_locked(&self, change: PresenceChange) -> Wake {
            self.0.lock().expect("recorder").push(change);
            Wake::No
        }
        fn wake(&self) {}
    }

    #[test]
    fn the_presence_sink_hears_first_and_last_connections_and_occupancy() {
        let (hub, _rx, _) = hub();
        let heard = Arc::new(Mutex::new(Vec::new()));
        hub.set_presence_sink(Box::new(PresenceRecorder(Arc::clone(&heard))));
        let (ann, bob): (Arc<str>, Arc<str>) = (Arc::from("ann"), Arc::from("bob"));
        let v = Variant::plain(Format::Json);
        let (a1, _) = hub.join("r", 0, v, &ann, 10);
        let (_a2, _) = hub.join("r", 0, v, &ann, 10);
        let (b, _) = hub.join("r", 0, v, &bob, 10);
        hub.leave(&b.room, 0, v, &bob);
        hub.leave(&a1.room, 0, v, &ann);
        hub.leave(&a1.room, 0, v, &ann);
        let got: Vec<(String, bool, bool)> = heard
            .lock()
            .expect("recorder")
            .iter()
            .map(|c| (c.user.to_string(), c.joined, c.occupancy_changed))
            .collect();
        let want = [("ann", true, true), ("bob", true, false), ("bob", false, false), ("ann", false, true)];
        let want: Vec<(String, bool, bool)> = want.iter().map(|&(u, j, o)| (u.to_string(), j, o)).collect();
        assert_eq!(got, want, "a second connection of ann is not a change");
    }

    #[test]
    fn the_ingress_recheck_fits_the_smallest_reserve() {
        let (hub, _rx, _) = hub();
        assert_eq!(hub.ingress_recheck(), 64, "a reserve of 100 over one shard: the cap");
    }
}
