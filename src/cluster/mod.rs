//! Cluster mode over Redis (`--redis-url`): every node delivers each room's messages in one total
//! order, Redis's; each node keeps its own complete SQLite history; presence, member lists and binary
//! relays span the nodes; a node cut off from Redis keeps serving its clients alone and replays what
//! it accepted once Redis is back.
//!
//! # Threads and channels
//! Shards never call Redis. [`crate::room::hub::Hub::publish`] hands an [`Outgoing`] to the
//! **publisher** thread over a bounded crossbeam channel (`--redis-queue-capacity`); the publisher
//! gives it a sequence number (`origin` = `node_id/incarnation`, plus `seq`: the message uuid) and
//! runs the publish script for batches of up to 256 messages in one pipeline. The **subscriber**
//! thread holds a pattern subscription to every room's channel, hands each message to
//! `Hub::apply_remote` (`room::remote`: room lock, `Hub::apply_locked`, sinks, shard inboxes: the
//! single-node path), and catches up from the rooms' streams after every (re)connect. The origin's
//! own messages come back the same way, so the sender's echo is ordered like everyone else's.
//!
//! # Order and ids
//! The publish script (`script.rs`) allocates the id from `rc:ids`, appends the message to the
//! room's stream `rc:{room}:log` (`MAXLEN ~ --redis-stream-maxlen`) and publishes `entry_id + body`
//! on `rc:{room}:msg`, atomically, so publish order is id order. Redis ids are multiples of
//! [`ids::ID_STRIDE`] (1024). Before publishing anything after a connect, the publisher raises the
//! counter above the largest id the node has seen or stored (`FLOOR_SCRIPT`), so a Redis that lost
//! its data (restarted without persistence) never reissues an id.
//!
//! # Redis down: ids during an outage, and the replay
//! Decision: a node cut off from Redis keeps accepting, delivering and storing messages with
//! **provisional ids that are final**: the smallest id above everything the node has seen whose
//! residue modulo 1024 is the node's *slot* (a hash of `--node-id` in `1..1024`, claimed in the
//! `rc:slots` hash at connect; a conflict is logged and counted). Each such message is queued in the
//! publisher's outbox (bounded by the same capacity; when full, the channel fills and shards stop
//! reading clients: `Hub::ingress_paused`). When Redis is back the publisher floors the counter above
//! the node's provisional ids, then replays the outbox in order with the provisional id kept and a
//! `replay` flag. Consequences:
//! - Ids stay unique across nodes (distinct residues) and increase in the order each node's members
//!   receive them, and every node stores each message under the same id, so histories agree.
//! - While cut off, a node's clients see only that node's messages. After the outage each node
//!   receives the other side's messages; one whose id is not above what the room's local members
//!   already received is stored (history, resume) but **not delivered live** (the id order wins).
//! - Messages in the pipeline batch that failed are not known to be published or not: they are not
//!   delivered locally during the outage but retried with the same (origin, seq); the script ignores a
//!   seq it has seen (`rc:{room}:origins`) and every subscriber drops an (origin, seq) it has seen.
//! - Ids jump by up to 1024 per message in cluster mode (they are unique and ordered, not dense).
//! - Two live nodes whose ids hash to the same slot could produce equal provisional ids during a
//!   simultaneous outage; give nodes distinct `--node-id`s and watch the `slot_conflicts` counter.
//! - The outbox is in memory: a node that is killed while cut off loses the replay of what only it
//!   accepted (its own SQLite still has the messages).
//!
//! # Dedupe
//! The subscriber keeps, per room, the last stream entry id it applied (catch-up and live messages
//! overlap after a resubscribe) and, per (room, origin), the last seq; the origin skips its own
//! replays; the hub delivers only ids above the room's last id; the store rejects an id it has.
//!
//! # Presence and members across nodes
//! Decision: **per-node membership, aggregated in Redis**. A node reports only its own transitions
//! (a user's first connection in a room on this node, or its last one leaving), which its room table
//! already knows; Redis aggregates them, atomically, in the presence script (`script.rs`):
//! `rc:{room}:on:<origin>` is the set of the room's users on node incarnation `origin`, and
//! `rc:{room}:users` counts, per user, the nodes where that user is present. A count going 0 → 1 or
//! 1 → 0 publishes a `presence` change on the room's channel, inside the same script, so it is
//! cluster-wide (a user's first / last connection on the *cluster*), published once, and ordered
//! among the room's messages like them. Each node delivers it to its JSON members from its
//! subscriber, under the room's lock; the origin node too (it does not announce its own users
//! directly).
//! - **Joins never wait for Redis.** Each node keeps a [`membership::MembershipView`] (room → users
//!   present on the cluster) fed by the presence events and replaced by a snapshot of every
//!   `rc:{room}:users` on each subscriber (re)connect. `joined.members` (up to 100 names) and
//!   `joined.member_count` come from that view merged with the node's own room table: exact for
//!   everything this node has heard, **eventually consistent** (a join on another node is counted
//!   once its event has come through).
//! - **Heartbeat.** The publisher registers its incarnation in `rc:nodes` and renews `rc:node:<origin>`
//!   (`SET … PX 5000 XX`) every second. Every node's publisher looks, every second, for registered
//!   incarnations whose heartbeat key is gone and reaps them: the presence script (mode `r`, which
//!   rechecks the heartbeat inside the script) empties the dead incarnation's sets, so each of its
//!   users whose count reaches 0 gets one `leave`, whichever survivor got there first. A node whose
//!   renewal finds its key gone (it stalled for over 5 s, or Redis lost its data) resyncs. A node
//!   that shuts down cleanly removes its members at once.
//! - **Resync.** The publisher mirrors the node's users per room (from the same change stream) and,
//!   after every (re)connect, makes its sets in Redis exactly that (mode `s`): the joins and leaves
//!   of an outage are published then, once.
//! - **Redis away.** Presence changes are delivered to the node's own JSON members directly, and
//!   `joined` lists the node's own members only (the view is not used while the subscriber is
//!   down). On reconnect the resync publishes the changes and the subscriber's snapshot tells local
//!   members what changed elsewhere meanwhile. Around an outage a member may see a presence event
//!   twice (e.g. a join told locally during the outage, then again when the resync publishes it) or
//!   a `leave` then `join` flap for a remote user (a snapshot read before that node resynced); the
//!   lists converge. A `leave` for a user who still has a connection on this node is not told to
//!   its members (the node's own room table is the authority on its users).
//!
//! # Binary relays and typing notices across nodes
//! A text client's binary frame (and a JSON client's typing notice, a `t` payload naming its origin
//! connection, which the origin node does not send it back to) goes to the publisher like a chat
//! message and is published on the room's channel as a `b` payload (`events.rs`; raw bytes, Redis
//! strings are binary-safe); every
//! node, the origin included, relays it verbatim to its text members when it comes back, so it keeps
//! its place among the sender's text messages. It has no id, is not in the stream and is not stored:
//! a node that is not subscribed at that moment never gets it, and one in flight when the link
//! breaks is not retried (at most once). While Redis is away it is relayed to local members only.
//!
//! # Per-user rate limit across nodes
//! `--user-rate-limit` (messages per second per user name, cluster-wide; 0: off) and
//! `--user-rate-burst` are enforced by the publish script itself, atomically with the append: a
//! token bucket per user (`rc:user:{<user>}:bucket`, refilled from Redis's `TIME`, so every node
//! shares one clock) is checked and charged one token for each *fresh* message. Outbox replays of
//! messages already delivered during an outage are never refused (they are in histories already).
//! A refused message is not appended nor published, but its origin seq is recorded, so a retry of
//! the same seq is a duplicate (a refusal whose reply was lost with the link is therefore silent).
//! The publisher routes the refusal back to the sender's shard (`Outgoing::reply_to`, a `ConnRef`, and `ShardMsg::Refused`),
//! which sends an `error` `rate_limited` to that connection if it is still open. Single-node mode
//! keeps only the per-connection limit (`--rate-limit`).
//!
//! # The server API across nodes
//! An API publish is an `Outgoing` with an `ack` (`IdWaiter`): the publisher tells it the id once the
//! publish script appended the message (or the provisional id, while Redis is away) through
//! `Hub::acknowledge`; with an `Idempotency-Key` the publish script publishes once per key within
//! 10 minutes (`rc:idem:{<key>}`, set with the publish; a later one answers the first id: `{-2, id}`),
//! whichever node is asked. Moderation (bans, mutes, disconnects) is a control message
//! (`ToRedis::Control`, an opaque payload the `api` layer encodes) published on `rc:control`; every
//! subscriber hands it to `Hub::on_control`. Pub/sub: at most once, a node not subscribed then misses it;
//! what a ban, mute or revocation leaves in force is also kept in `rc:control:state`, which each
//! subscriber session reads after its catch-up (`keys::CONTROL_STATE`), so a node that was away learns it.
//! The listings (`GET /api/rooms`, presence, a user's connections) are cluster-wide: each publisher
//! writes its node's users at every heartbeat ([`user_rows`], only what changed), and the
//! [`listing`] thread reads the other nodes' rows when a listing asks (up to a heartbeat old).
//!
//! # Not (yet) across nodes
//! The heartbeat period and expiry are constants (1 s, 5 s: `publisher::HEARTBEAT_EVERY`,
//! `HEARTBEAT_TTL`), not flags.
//!
//! # Past one Redis
//! Every per-room key and channel carries `{room}` as a hash tag, so a room's stream, origin table and
//! channel share one hash slot, and `PUBLISH` can become `SPUBLISH` (sharded pub/sub, one
//! `SSUBSCRIBE` per shard node instead of the pattern subscription). The membership registry
//! (`rc:nodes`, the heartbeat keys, which the reaping script reads beside a room's keys) is global:
//! in Redis Cluster the reaper must check the heartbeat outside the script (see
//! `membership_link`). The id counter `rc:ids` is the other cross-slot key: in Redis Cluster it must
//! become per room (`rc:{room}:ids`), so ids would be
//! unique and ordered per room only (history pages and resume are per room already; the protocol's
//! "unique across the server" would become "unique within a room"), or come from a dedicated
//! counter node at the cost of a second round trip. The API's idempotency key `rc:idem:{<key>}` is
//! cross-slot too (the same choice as the bucket below). The per-user bucket `rc:user:{<user>}:bucket`
//! hashes to the user's slot, not the room's: in Redis Cluster the publish script cannot touch it
//! beside the room's keys, so the check would become a separate bucket script on the user's slot
//! before the publish (not atomic with it: a message charged then lost in a failed pipeline costs a
//! token), or the bucket would be per user and room (`rc:{room}:bucket:<user>`).

pub(crate) mod events;
pub(crate) mod ids;
pub(crate) mod in_doubt;
pub(crate) mod keys;
pub(crate) mod listing;
pub(crate) mod membership;
pub(crate) mod membership_link;
pub(crate) mod publisher;
pub(crate) mod redis_link;
pub(crate) mod script;
pub(crate) mod subscriber;
pub(crate) mod user_conns;
pub(crate) mod user_rows;
pub(crate) mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use thiserror::Error;

use self::events::PresenceChange;
use self::membership::MembershipView;

use crate::deferred::{self, DeferredReceiver, DeferredSender, Wake, congestion_threshold};
use crate::room::hub::Hub;
use crate::room::sequencer::{ControlMessage, MemberList, Outgoing, PresenceRoute, Sequencer, UsersDone};
use crate::types::{ClientError, ErrorCode, Transient};
use crate::unique::unique_u64;

/// What can go wrong in cluster mode.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// `--node-id` is unusable.
    #[error("--node-id must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-' (got {0:?})")]
    BadNodeId(String),
    /// `--redis-url` does not parse.
    #[error("--redis-url: {0}")]
    BadUrl(redis::RedisError),
    /// Redis refused or dropped a command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something the scripts never produce.
    #[error("unexpected reply from redis: {0}")]
    Reply(&'static str),
    /// A cluster thread could not be started.
    #[error("cannot start a cluster thread: {0}")]
    Spawn(std::io::Error),
}

/// Cluster settings, resolved from the command line.
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    /// `redis://host:port[/db]`.
    pub(crate) redis_url: String,
    /// This node's name (random when not given).
    pub(crate) node_id: String,
    /// Approximate cap of each room's stream.
    pub(crate) stream_maxlen: u64,
    /// Bound of the publisher channel and of the outbox.
    pub(crate) queue_capacity: usize,
    /// Messages per second per user name across the cluster (`--user-rate-limit`; 0: off).
    pub(crate) user_rate_limit: f64,
    /// Burst of the per-user bucket (`--user-rate-burst`).
    pub(crate) user_rate_burst: u32,
    /// `--max-conns-per-user` is on: connections per user are counted across nodes
    /// ([`user_conns`]).
    pub(crate) count_user_conns: bool,
}

impl ClusterConfig {
    /// Checks the node id (or picks a random one).
    ///
    /// # Errors
    /// [`ClusterError::BadNodeId`].
    pub(crate) fn new(
        redis_url: String,
        node_id: Option<String>,
        stream_maxlen: u64,
        queue_capacity: usize,
    ) -> Result<ClusterConfig, ClusterError> {
        let node_id = node_id.unwrap_or_else(|| format!("node-{:08x}", unique_u64() as u32));
        let valid = (1..=64).contains(&node_id.len())
            && node_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(ClusterError::BadNodeId(node_id));
        }
        Ok(ClusterConfig {
            redis_url,
            node_id,
            stream_maxlen: stream_maxlen.max(1),
            queue_capacity: queue_capacity.max(1),
            user_rate_limit: 0.0,
            user_rate_burst: 1,
            count_user_conns: false,
        })
    }

    /// Turns on the cluster-wide per-user token bucket: `limit` messages per second on average
    /// (0 or less, or not finite: off), bursts of `burst` (at least 1).
    pub(crate) fn with_user_rate(mut self, limit: f64, burst: u32) -> ClusterConfig {
        self.user_rate_limit = if limit.is_finite() && limit > 0.0 { limit } else { 0.0 };
        self.user_rate_burst = burst.max(1);
        self
    }

    /// Counts connections per user across nodes (`--max-conns-per-user` on).
    pub(crate) fn with_user_conns(mut self, on: bool) -> ClusterConfig {
        self.count_user_conns = on;
        self
    }
}

/// What shards hand to the publisher thread on the bounded channel.
#[derive(Debug, Clone)]
pub(crate) enum ToRedis {
    /// An event of a room's ordered log (sequenced and stored through Redis).
    Event(Outgoing),
    /// A control message for every node (`keys::CONTROL_CHANNEL`).
    Control(ControlMessage),
    /// A transient event for the room's members on every node (no id, not stored): a text client's
    /// binary frame, a typing notice.
    Relay {
        /// Room name.
        room: Arc<str>,
        /// The event (never presence: that has its own hand-off).
        event: Transient,
    },
}

/// Counters and gauges of the cluster link (for logs, `/healthz` and the metrics exporter).
#[derive(Debug, Default)]
pub(crate) struct ClusterCounters {
    /// Publisher connected to Redis now.
    pub(crate) publisher_up: AtomicBool,
    /// Subscriber connected and caught up now.
    pub(crate) subscriber_up: AtomicBool,
    /// Successful (re)connections of either thread.
    pub(crate) connects: AtomicU64,
    /// Lost connections or failed connection attempts (either thread).
    pub(crate) link_errors: AtomicU64,
    /// Messages appended to Redis by this node.
    pub(crate) published: AtomicU64,
    /// Messages delivered locally with a provisional id while Redis was away.
    pub(crate) provisional: AtomicU64,
    /// Provisional messages replayed to Redis after an outage.
    pub(crate) replayed: AtomicU64,
    /// Messages dropped as duplicates (script, stream cursor, origin seq, own replay).
    pub(crate) duplicates: AtomicU64,
    /// Messages from Redis delivered to local members or stored.
    pub(crate) received: AtomicU64,
    /// Messages in the outbox now (waiting to be published).
    pub(crate) outbox_depth: AtomicUsize,
    /// Another node holds this node's id slot.
    pub(crate) slot_conflicts: AtomicU64,
    /// Malformed messages skipped.
    pub(crate) malformed: AtomicU64,
    /// Messages Redis refused for the per-user rate limit (`--user-rate-limit`).
    pub(crate) user_rate_limited: AtomicU64,
    /// Events refused at once because the hand-off to the publisher was full (`unavailable`).
    pub(crate) refused_unavailable: AtomicU64,
    /// Binary relays dropped because the hand-off to the publisher was full.
    pub(crate) binary_dropped: AtomicU64,
}

/// What the cluster threads and the hub share.
#[derive(Debug)]
pub(crate) struct ClusterShared {
    /// Settings.
    pub(crate) cfg: ClusterConfig,
    /// `node_id/incarnation`: identifies this process as the origin of messages.
    pub(crate) origin: Arc<str>,
    /// Residue of this node's provisional ids.
    pub(crate) slot: u64,
    /// Counters.
    pub(crate) counters: ClusterCounters,
    /// Cluster-wide members per room, as this node last heard (see [`membership`]).
    pub(crate) view: MembershipView,
    /// Messages whose publish was in flight when the link broke (see [`in_doubt`]).
    pub(crate) in_doubt: in_doubt::InDoubt,
    /// Chat events taken by the sink (counted before the hand-off, so the `k`-th event the
    /// publisher takes, origin seq `k`, is counted by the time its `take` returns).
    pub(crate) taken: AtomicU64,
    /// Largest origin seq of this process that has come back: applied by the subscriber (or
    /// dropped there as already here), delivered here during an outage, or refused by Redis.
    pub(crate) echoed: AtomicU64,
    /// Connections per user here and on the other nodes (`--max-conns-per-user`).
    pub(crate) user_conns: Arc<user_conns::UserConns>,
}

impl ClusterShared {
    /// The `/healthz` figures.
    pub(crate) fn health(&self) -> crate::protocol::json::ClusterHealth {
        let c = &self.counters;
        crate::protocol::json::ClusterHealth {
            node: self.cfg.node_id.clone(),
            publisher_up: c.publisher_up.load(Ordering::Relaxed),
            subscriber_up: c.subscriber_up.load(Ordering::Relaxed),
            outbox: c.outbox_depth.load(Ordering::Relaxed),
            provisional: c.provisional.load(Ordering::Relaxed),
            link_errors: c.link_errors.load(Ordering::Relaxed),
        }
    }
}

/// The shards' side of the publisher channels: the Redis [`Sequencer`], held by the [`Hub`].
///
/// Events go to the publisher on a bounded channel, outside any lock; a full channel refuses the
/// event at once (`unavailable`, with its `client_id`), so an accepted event is never dropped
/// later. Shards pause their input from 7/8 full, so a refusal needs every shard to have ignored
/// that at once, or Redis and the outbox to be stuck. Presence changes go on a
/// [`crate::deferred`] hand-off, under the room's lock and without waking the publisher (which
/// is rung after the lock is released); it is unbounded because it holds at most one entry per
/// join or leave, which the same ingress pause stops.
pub(crate) struct ClusterSink {
    tx: Sender<ToRedis>,
    listing_tx: Sender<listing::ListingJob>,
    presence_tx: DeferredSender<PresenceChange>,
    bell: Sender<()>,
    shared: Arc<ClusterShared>,
}

impl Sequencer for ClusterSink {
    /// Hands the event to the publisher (it comes back from Redis), or refuses it at once.
    fn take(&self, event: Outgoing) -> Result<Option<Outgoing>, ClientError> {
        self.shared.taken.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(ToRedis::Event(event)) {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) => {
                self.shared.taken.fetch_sub(1, Ordering::AcqRel);
                self.shared.counters.refused_unavailable.fetch_add(1, Ordering::Relaxed);
                let client_id = match msg {
                    ToRedis::Event(event) => event.origin.client_id,
                    ToRedis::Relay { .. } | ToRedis::Control(_) => None,
                };
                Err(unavailable(client_id))
            }
        }
    }

    /// A binary relay is at most once (never stored or retried): a full channel drops it, counted.
    fn take_control(&self, message: ControlMessage) -> bool {
        self.tx.try_send(ToRedis::Control(message)).is_ok()
    }

    fn is_remote(&self) -> bool {
        true
    }

    /// Queued for the listing thread; a full queue gives `done` back at once.
    fn remote_users(&self, user: Option<Arc<str>>, done: UsersDone) -> Option<UsersDone> {
        match self.listing_tx.try_send(listing::ListingJob { user, done }) {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Some(job.done),
        }
    }

    fn rooms(&self) -> Option<Vec<(Arc<str>, usize)>> {
        self.shared.counters.subscriber_up.load(Ordering::SeqCst).then(|| self.shared.view.rooms())
    }

    fn take_relay(&self, room: &Arc<str>, event: Transient) -> Option<Transient> {
        if matches!(event, Transient::Presence { .. }) {
            return Some(event);
        }
        if self.tx.try_send(ToRedis::Relay { room: Arc::clone(room), event }).is_err() {
            self.shared.counters.binary_dropped.fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    /// Under the room's lock, so the changes of a room reach Redis in the order the room table
    /// made them; never waits and never wakes the publisher (the hub rings it after the lock).
    fn presence_locked(&self, room: &Arc<str>, user: &Arc<str>, joined: bool) -> PresenceRoute {
        let change = PresenceChange { room: Arc::clone(room), user: Arc::clone(user), joined };
        match self.presence_tx.try_push(change) {
            Ok(wake) => PresenceRoute::Sent(wake),
            Err(_) => {
                tracing::error!("cluster publisher is gone; presence change dropped");
                PresenceRoute::Sent(Wake::No)
            }
        }
    }

    /// `None` while the subscriber is not connected.
    fn members(
        &self,
        room: &str,
        local: &std::collections::HashMap<Arc<str>, u32>,
        max_names: usize,
    ) -> Option<MemberList> {
        self.shared
            .counters
            .subscriber_up
            .load(Ordering::SeqCst)
            .then(|| self.shared.view.members(room, local, max_names))
    }

    /// Every event taken so far comes back through Redis (or the outage path) later.
    fn echo_mark(&self) -> Option<u64> {
        Some(self.shared.taken.load(Ordering::Acquire))
    }

    fn echoed(&self, mark: u64) -> bool {
        self.shared.echoed.load(Ordering::Acquire) >= mark
    }

    /// The channel or the outbox is 7/8 full.
    fn is_congested(&self) -> bool {
        let threshold = congestion_threshold(self.shared.cfg.queue_capacity);
        self.tx.len() >= threshold || self.shared.counters.outbox_depth.load(Ordering::Relaxed) >= threshold
    }

    fn reserve(&self) -> usize {
        let capacity = self.shared.cfg.queue_capacity;
        capacity - congestion_threshold(capacity)
    }

    fn wake(&self) {
        // Full: it is rung already.
        let _ = self.bell.try_send(());
    }
}

/// The refusal of an event the hand-off to Redis could not take.
fn unavailable(client_id: Option<Arc<str>>) -> ClientError {
    ClientError::new(
        ErrorCode::Unavailable,
        "the cluster cannot take messages now (the hand-off to Redis is full); it was not sent; send it again later",
    )
    .about(client_id)
}

/// The receiving side, handed to [`Cluster::start`].
pub(crate) struct ClusterInput {
    rx: Receiver<ToRedis>,
    listing_rx: Receiver<listing::ListingJob>,
    presence_rx: DeferredReceiver<PresenceChange>,
    bell: Receiver<()>,
    shared: Arc<ClusterShared>,
}

impl ClusterInput {
    /// The shared state (counters, node identity, membership view), for telemetry and `/healthz`.
    pub(crate) fn shared(&self) -> Arc<ClusterShared> {
        Arc::clone(&self.shared)
    }
}

/// Creates the publisher channel: the sink goes into the [`Hub`], the input to [`Cluster::start`].
pub(crate) fn channel(cfg: ClusterConfig) -> (ClusterSink, ClusterInput) {
    let slot = ids::slot_for(&cfg.node_id);
    let origin: Arc<str> = Arc::from(format!("{}/{:x}", cfg.node_id, unique_u64()));
    let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity);
    let (presence_tx, presence_rx) = deferred::channel(None, usize::MAX);
    let (bell, bell_rx) = crossbeam_channel::bounded(1);
    let (listing_tx, listing_rx) = crossbeam_channel::bounded(listing::QUEUE);
    let shared = Arc::new(ClusterShared {
        cfg,
        origin,
        slot,
        counters: ClusterCounters::default(),
        view: MembershipView::default(),
        in_doubt: in_doubt::InDoubt::default(),
        taken: AtomicU64::new(0),
        echoed: AtomicU64::new(0),
        user_conns: Arc::default(),
    });
    (
        ClusterSink { tx, listing_tx, presence_tx, bell, shared: Arc::clone(&shared) },
        ClusterInput { rx, listing_rx, presence_rx, bell: bell_rx, shared },
    )
}

/// The running publisher and subscriber threads.
pub(crate) struct Cluster {
    stop: Arc<AtomicBool>,
    publisher: JoinHandle<()>,
    subscriber: JoinHandle<()>,
    listing: JoinHandle<()>,
}

impl Cluster {
    /// Starts both threads; they connect (and keep reconnecting) in the background.
    ///
    /// # Errors
    /// [`ClusterError::BadUrl`] or [`ClusterError::Spawn`].
    pub(crate) fn start(hub: Arc<Hub>, input: ClusterInput, startup_max_id: u64) -> Result<Cluster, ClusterError> {
        let client = redis::Client::open(input.shared.cfg.redis_url.as_str()).map_err(ClusterError::BadUrl)?;
        let stop = Arc::new(AtomicBool::new(false));
        tracing::info!(
            node = %input.shared.cfg.node_id,
            origin = %input.shared.origin,
            slot = input.shared.slot,
            "cluster mode"
        );
        let publisher = publisher::Publisher::new(
            Arc::clone(&hub),
            Arc::clone(&input.shared),
            client.clone(),
            input.rx,
            input.presence_rx,
            input.bell,
            Arc::clone(&stop),
        );
        let publisher = std::thread::Builder::new()
            .name("redis-pub".into())
            .spawn(move || publisher.run())
            .map_err(ClusterError::Spawn)?;
        let listing =
            listing::Listing::new(Arc::clone(&input.shared), client.clone(), input.listing_rx, Arc::clone(&stop));
        let listing = std::thread::Builder::new()
            .name("redis-list".into())
            .spawn(move || listing.run())
            .map_err(ClusterError::Spawn)?;
        let subscriber =
            subscriber::Subscriber::new(hub, Arc::clone(&input.shared), client, Arc::clone(&stop), startup_max_id);
        let subscriber = std::thread::Builder::new()
            .name("redis-sub".into())
            .spawn(move || subscriber.run())
            .map_err(ClusterError::Spawn)?;
        Ok(Cluster { stop, publisher, subscriber, listing })
    }

    /// Publishes what is queued (waiting a few seconds for Redis if it is away), then stops both
    /// threads. Call after the shards stopped.
    pub(crate) fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.publisher.join().is_err() {
            tracing::error!("cluster publisher panicked");
        }
        if self.subscriber.join().is_err() {
            tracing::error!("cluster subscriber panicked");
        }
        if self.listing.join().is_err() {
            tracing::error!("cluster listing thread panicked");
        }
    }
}

/// Exponential reconnect delay: 100 ms doubling to 5 s, reset by a success.
#[derive(Debug)]
pub(crate) struct Backoff {
    delay: Duration,
    next: std::time::Instant,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Backoff { delay: Self::MIN, next: std::time::Instant::now() }
    }

    /// Whether the next attempt is due.
    pub(crate) fn due(&self) -> bool {
        std::time::Instant::now() >= self.next
    }

    /// Time until the next attempt.
    pub(crate) fn remaining(&self) -> Duration {
        self.next.saturating_duration_since(std::time::Instant::now())
    }

    /// An attempt failed: wait longer next time.
    pub(crate) fn failed(&mut self) {
        self.next = std::time::Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
    }

    /// Connected: the next outage starts with the shortest delay.
    pub(crate) fn reset(&mut self) {
        self.delay = Self::MIN;
        self.next = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Event, Format, Origin};

    fn outgoing(cid: &str) -> Outgoing {
        Outgoing {
            room: Arc::from("r"),
            event: Event::message(Arc::from("ann"), Arc::from("hi")),
            origin: Origin { format: Format::Json, client_id: Some(Arc::from(cid)) },
            at_ms: 0,
            reply_to: None,
            ack: None,
            idempotency_key: None,
        }
    }

    #[test]
    fn a_full_hand_off_refuses_at_once_naming_the_message() {
        let cfg = ClusterConfig::new("redis://127.0.0.1:1".into(), Some("n".into()), 100, 1).expect("config");
        let (sink, _input) = channel(cfg);
        assert!(matches!(sink.take(outgoing("a")), Ok(None)), "handed off, comes back from Redis");
        assert!(sink.is_congested(), "1 of 1");
        let err = sink.take(outgoing("b")).expect_err("full");
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert_eq!(err.client_id.as_deref(), Some("b"), "the error names the refused message");
        assert_eq!(sink.shared.counters.refused_unavailable.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn presence_is_handed_off_without_waking_a_busy_publisher() {
        let cfg = ClusterConfig::new("redis://127.0.0.1:1".into(), Some("n".into()), 100, 4).expect("config");
        let (sink, input) = channel(cfg);
        let (room, user): (Arc<str>, Arc<str>) = (Arc::from("r"), Arc::from("ann"));
        assert_eq!(sink.presence_locked(&room, &user, true), PresenceRoute::Sent(Wake::No), "publisher busy");
        assert!(!input.presence_rx.go_idle(), "it sees the change before sleeping");
        assert!(input.presence_rx.try_recv().is_ok());
        assert!(input.presence_rx.go_idle());
        assert_eq!(
            sink.presence_locked(&room, &user, false),
            PresenceRoute::Sent(Wake::Needed),
            "idle: ring after the lock"
        );
    }
}
