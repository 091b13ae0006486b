//! The publisher thread: takes messages from the shards' bounded channel, numbers them (origin seq),
//! and publishes them to Redis in pipelined batches through the publish script. While Redis is away
//! it delivers each new message locally with a provisional id and keeps it in the outbox; on
//! reconnect it floors the id counter, claims its slot, and replays the outbox in order.
//!
//! It also owns this node's membership in Redis: it mirrors the room table's per-node presence
//! changes (shards send them on an unbounded channel, under the room's lock), publishes them through
//! the presence script, keeps the node's heartbeat key alive, resynchronises the node's members after
//! every (re)connect or an expired heartbeat, and reaps the members of nodes whose heartbeat expired.
//! While Redis is away, presence changes and binary relays are delivered to local members only (they
//! are not replayed: the resync on reconnect stands for the presence changes).

use super::events::encode_relay;
use crate::types::Transient;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::events::PresenceChange;
use super::ids::next_provisional;
use super::redis_link::{BatchItem, PublishArgs, Published, RedisLink};
use super::user_rows::{RowsWritten, Users};
use super::wire::{WireEvent, encode_tail};
use super::{Backoff, ClusterError, ClusterShared, ToRedis};
use crate::deferred::DeferredReceiver;
use crate::room::hub::Hub;
use crate::room::sequencer::{ControlMessage, Outgoing};
use crate::types::{ClientError, ErrorCode};

/// Messages per pipeline.
const BATCH: usize = 256;
/// How long shutdown waits for Redis to take the outbox.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);
/// How often an idle publisher checks that Redis is still there (so an outage is noticed before
/// the next message, which is then delivered locally at once).
const PING_EVERY: Duration = Duration::from_millis(500);
/// Longest idle wait for input (bounds how late the stop flag and reconnects are noticed).
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// How often the heartbeat key is renewed and dead nodes are looked for.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Expiry of the heartbeat key: a node silent for this long has its members reaped by the others.
pub(crate) const HEARTBEAT_TTL: Duration = Duration::from_secs(5);

/// One accepted item not yet confirmed by Redis.
enum Pending {
    Chat {
        msg: Outgoing,
        seq: u64,
        /// The id it was delivered locally with during an outage; 0 if not delivered locally yet.
        provisional_id: u64,
    },
    Presence(PresenceChange),
    /// A control message for every node (at most once: dropped if the link fails with it).
    Control(ControlMessage),
    Relay {
        room: Arc<str>,
        event: Transient,
    },
}

/// The publisher thread's state.
pub(crate) struct Publisher {
    hub: Arc<Hub>,
    shared: Arc<ClusterShared>,
    client: redis::Client,
    rx: Receiver<ToRedis>,
    presence_rx: DeferredReceiver<PresenceChange>,
    /// Rung by the shards after a presence change that found this thread idle.
    bell: Receiver<()>,
    stop: Arc<AtomicBool>,
    outbox: VecDeque<Pending>,
    /// This node's users per room (the room table's view, in the order the shards changed it).
    local_members: HashMap<Arc<str>, HashSet<Arc<str>>>,
    last_heartbeat: Instant,
    /// This node's listing rows as last written (`super::user_rows`).
    rows_written: RowsWritten,
    seq: u64,
    link: Option<RedisLink>,
    backoff: Backoff,
    failing: bool,
    last_ping: Instant,
}

impl Publisher {
    /// A publisher reading `rx`; it connects on its own thread.
    pub(crate) fn new(
        hub: Arc<Hub>,
        shared: Arc<ClusterShared>,
        client: redis::Client,
        rx: Receiver<ToRedis>,
        presence_rx: DeferredReceiver<PresenceChange>,
        bell: Receiver<()>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Publisher {
            hub,
            shared,
            client,
            rx,
            presence_rx,
            bell,
            stop,
            outbox: VecDeque::new(),
            local_members: HashMap::new(),
            last_heartbeat: Instant::now(),
            rows_written: RowsWritten::default(),
            seq: 0,
            link: None,
            backoff: Backoff::new(),
            failing: false,
            last_ping: Instant::now(),
        }
    }

    /// Runs until the stop flag is set and the outbox is published (or the shutdown wait ends).
    pub(crate) fn run(mut self) {
        let mut stop_deadline = None;
        loop {
            if self.link.is_none() && self.backoff.due() {
                self.connect();
            }
            let stopping = self.stop.load(Ordering::SeqCst);
            if stopping && stop_deadline.is_none() {
                stop_deadline = Some(Instant::now() + SHUTDOWN_FLUSH);
            }
            self.take_input(stopping);
            if self.link.is_some() {
                self.flush();
                self.ping_when_idle();
                self.heartbeat();
            }
            self.shared.counters.outbox_depth.store(self.outbox.len(), Ordering::Relaxed);
            if let Some(deadline) = stop_deadline {
                if self.outbox.is_empty() && self.rx.is_empty() && self.presence_rx.is_empty() {
                    self.deregister();
                    return;
                }
                if Instant::now() >= deadline {
                    self.abandon();
                    return;
                }
            }
        }
    }

    /// Moves presence changes, then messages from the channels into the outbox (waiting briefly when
    /// there is nothing to do).
    fn take_input(&mut self, stopping: bool) {
        self.drain_presence();
        let capacity = self.shared.cfg.queue_capacity;
        if self.outbox.len() >= capacity {
            // Full: leave the channel to fill so shards pause their clients (backpressure).
            std::thread::sleep(if self.link.is_some() {
                Duration::ZERO
            } else {
                self.backoff.remaining().min(IDLE_WAIT)
            });
            return;
        }
        let wait = if self.link.is_some() && (stopping || !self.outbox.is_empty()) {
            Duration::ZERO
        } else if self.link.is_some() {
            IDLE_WAIT
        } else {
            self.backoff.remaining().min(IDLE_WAIT)
        };
        // Presence changes are pushed under a room's lock without waking this thread (see
        // `crate::deferred`): it waits on the message channel and the bell, never on them.
        if !wait.is_zero() && !self.presence_rx.go_idle() {
            return;
        }
        let received = crossbeam_channel::select! {
            recv(self.rx) -> msg => msg.ok(),
            recv(self.bell) -> _ => None,
            default(wait) => None,
        };
        self.presence_rx.busy();
        match received {
            Some(msg) => self.accept_after_presence(msg),
            None => return,
        }
        while self.outbox.len() < capacity {
            let Ok(msg) = self.rx.try_recv() else { break };
            self.accept_after_presence(msg);
        }
    }

    fn drain_presence(&mut self) {
        while let Ok(change) = self.presence_rx.try_recv() {
            self.accept_presence(change);
        }
    }

    /// Accepts `msg` after every presence change sent before it (a user's join goes out before the
    /// first message they send after it: the two channels are read in the order the shards wrote).
    fn accept_after_presence(&mut self, msg: ToRedis) {
        self.drain_presence();
        self.accept(msg);
    }

    fn accept(&mut self, msg: ToRedis) {
        match msg {
            ToRedis::Event(msg) => {
                self.seq += 1;
                let provisional_id = if self.link.is_some() { 0 } else { self.deliver_locally(&msg, self.seq) };
                self.outbox.push_back(Pending::Chat { msg, seq: self.seq, provisional_id });
            }
            ToRedis::Relay { room, event } if self.link.is_some() => {
                self.outbox.push_back(Pending::Relay { room, event });
            }
            ToRedis::Relay { room, event } => self.hub.relay_remote(&room, event),
            ToRedis::Control(payload) if self.link.is_some() => self.outbox.push_back(Pending::Control(payload)),
            ToRedis::Control(_) => tracing::warn!("redis is away: a moderation message for the other nodes is dropped"),
        }
    }

    /// Mirrors a change of this node's members; publishes it (or, without Redis, tells local members).
    fn accept_presence(&mut self, change: PresenceChange) {
        if change.joined {
            self.local_members.entry(Arc::clone(&change.room)).or_default().insert(Arc::clone(&change.user));
        } else if let Some(users) = self.local_members.get_mut(&change.room) {
            users.remove(&change.user);
            if users.is_empty() {
                self.local_members.remove(&change.room);
            }
        }
        if self.link.is_some() {
            self.outbox.push_back(Pending::Presence(change));
        } else {
            self.hub.announce_presence_locally(&change.room, &change.user, change.joined);
        }
    }

    /// Delivers `msg` (origin seq `seq`) here with a provisional id, which it returns. The id is
    /// final (the replay keeps it), so a request waiting for it is told now.
    fn deliver_locally(&mut self, msg: &Outgoing, seq: u64) -> u64 {
        self.shared.counters.provisional.fetch_add(1, Ordering::Relaxed);
        let slot = self.shared.slot;
        let id = self.hub.apply_provisional(msg, |floor| next_provisional(floor, slot));
        self.shared.echoed.fetch_max(seq, Ordering::AcqRel);
        if let Some(ack) = msg.ack {
            self.hub.acknowledge(ack, Ok(id));
        }
        id
    }

    fn connect(&mut self) {
        match self.try_connect() {
            Ok(link) => {
                tracing::info!(outbox = self.outbox.len(), "redis publisher connected");
                self.link = Some(link);
                self.failing = false;
                self.backoff.reset();
                self.shared.counters.connects.fetch_add(1, Ordering::Relaxed);
                self.shared.counters.publisher_up.store(true, Ordering::SeqCst);
            }
            Err(err) => {
                if !self.failing {
                    tracing::warn!(%err, "redis unreachable; serving local clients alone and queueing for replay");
                }
                self.failing = true;
                self.backoff.failed();
                self.shared.counters.link_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Connects, raises the id counter above every id this node has seen, claims the id slot, and
    /// registers and resynchronises this node's members.
    fn try_connect(&mut self) -> Result<RedisLink, ClusterError> {
        let mut link = RedisLink::connect(&self.client)?;
        self.resync(&mut link)?;
        link.floor(self.hub.max_id())?;
        if let Some(owner) = link.claim_slot(self.shared.slot, &self.shared.cfg.node_id)? {
            self.shared.counters.slot_conflicts.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                slot = self.shared.slot,
                %owner,
                "id slot already claimed by another node: give the nodes other --node-id values, or provisional ids may collide during an outage"
            );
        }
        Ok(link)
    }

    /// Registers this incarnation with a fresh heartbeat and makes its members in Redis match the
    /// mirror (publishing the presence changes of the outage, or of a reap that hit a live node).
    fn resync(&mut self, link: &mut RedisLink) -> Result<(), ClusterError> {
        let origin = &self.shared.origin;
        link.register(origin, HEARTBEAT_TTL)?;
        let changed = link.sync_members(origin, &self.local_members)?;
        if changed > 0 {
            tracing::info!(changed, "cluster membership resynchronised");
        }
        self.last_heartbeat = Instant::now();
        Ok(())
    }

    /// Every [`HEARTBEAT_EVERY`]: renews the heartbeat (resyncing if it had expired) and reaps dead
    /// nodes.
    fn heartbeat(&mut self) {
        if self.last_heartbeat.elapsed() < HEARTBEAT_EVERY {
            return;
        }
        self.last_heartbeat = Instant::now();
        let Some(mut link) = self.link.take() else { return };
        let result = self.beat(&mut link);
        match result {
            Ok(()) => self.link = Some(link),
            Err(err) => self.link_lost(&err, 0),
        }
    }

    fn beat(&mut self, link: &mut RedisLink) -> Result<(), ClusterError> {
        let origin = Arc::clone(&self.shared.origin);
        if !link.renew(&origin, HEARTBEAT_TTL)? {
            tracing::warn!("this node's heartbeat had expired (stalled or Redis lost its data); resyncing members");
            self.resync(link)?;
        }
        for dead in link.reap_dead(&origin)? {
            tracing::info!(node = %dead, "reaped the members of a node whose heartbeat expired");
        }
        if self.shared.cfg.count_user_conns {
            let conns = &self.shared.user_conns;
            conns.set_remote(link.exchange_user_conns(&origin, &conns.local_snapshot(), HEARTBEAT_TTL)?);
        }
        let users = Users { generation: self.hub.users_generation(), build: || self.hub.local_users() };
        link.write_user_rows(&origin, users, &mut self.rows_written, HEARTBEAT_TTL)?;
        Ok(())
    }

    /// Clean shutdown: this node's members leave (their `leave` events go out now, not after the
    /// heartbeat expiry).
    fn deregister(&mut self) {
        if let Some(link) = self.link.as_mut()
            && let Err(err) = link.deregister(&self.shared.origin)
        {
            tracing::warn!(%err, "could not remove this node's members from redis; the others reap them");
        }
    }

    fn ping_when_idle(&mut self) {
        if !self.outbox.is_empty() || self.last_ping.elapsed() < PING_EVERY {
            return;
        }
        self.last_ping = Instant::now();
        if let Some(link) = self.link.as_mut()
            && let Err(err) = link.ping()
        {
            self.link_lost(&err.into(), 0);
        }
    }

    /// Publishes the outbox in batches until it is empty or the link fails.
    fn flush(&mut self) {
        let maxlen = self.shared.cfg.stream_maxlen;
        while !self.outbox.is_empty() {
            let n = self.outbox.len().min(BATCH);
            let batch: Vec<BatchItem> = self.outbox.iter().take(n).map(|p| self.batch_item(p)).collect();
            let Some(link) = self.link.as_mut() else { return };
            match link.publish_batch(&batch, maxlen, &self.shared.origin) {
                Ok(results) => {
                    let counters = &self.shared.counters;
                    for (pending, result) in self.outbox.drain(..n).zip(results) {
                        match (pending, result) {
                            (Pending::Chat { msg, provisional_id, seq, .. }, Published::Appended(id)) => {
                                counters.published.fetch_add(1, Ordering::Relaxed);
                                if provisional_id != 0 {
                                    counters.replayed.fetch_add(1, Ordering::Relaxed);
                                    self.shared.in_doubt.settled(seq);
                                } else if let Some(ack) = msg.ack {
                                    self.hub.acknowledge(ack, Ok(id));
                                }
                            }
                            (Pending::Chat { msg, .. }, Published::Existing(id)) => {
                                // An idempotency key another request (on any node) published first.
                                counters.duplicates.fetch_add(1, Ordering::Relaxed);
                                if let Some(ack) = msg.ack {
                                    self.hub.acknowledge(ack, Ok(id));
                                }
                            }
                            (pending, Published::Duplicate) => {
                                counters.duplicates.fetch_add(1, Ordering::Relaxed);
                                // A retry after a lost reply: published before, its id unknown here.
                                if let Pending::Chat { msg, provisional_id: 0, .. } = pending
                                    && let Some(ack) = msg.ack
                                {
                                    self.hub.acknowledge(ack, Err(id_unknown()));
                                }
                            }
                            (Pending::Chat { msg, seq, .. }, Published::Refused) => {
                                counters.user_rate_limited.fetch_add(1, Ordering::Relaxed);
                                let err = user_rate_limited(&msg, &self.shared);
                                if let Some(reply_to) = msg.reply_to {
                                    self.hub.refuse(reply_to, &err);
                                }
                                if let Some(ack) = msg.ack {
                                    self.hub.acknowledge(ack, Err(err));
                                }
                                self.shared.echoed.fetch_max(seq, Ordering::AcqRel);
                            }
                            _ => {}
                        }
                    }
                }
                Err(err) => {
                    self.link_lost(&err, n);
                    return;
                }
            }
            // A long replay must not let the heartbeat expire (the others would reap this node).
            self.heartbeat();
        }
    }

    /// The link broke with `in_flight` items sent but unconfirmed: those chat messages are in doubt
    /// (Redis may run them late, `super::in_doubt`): each is delivered locally now unless the
    /// subscriber already applied it, and so is every later one, as during the outage. Presence changes are told to local members (in flight or not: at least once; the
    /// resync on reconnect stands for them in Redis) and binary relays after the in-flight ones are
    /// delivered locally (in-flight ones may have been published: at most once).
    fn link_lost(&mut self, err: &ClusterError, in_flight: usize) {
        tracing::warn!(%err, in_flight, outbox = self.outbox.len(), "redis publish failed; serving local clients alone");
        self.link = None;
        self.failing = true;
        self.backoff.failed();
        self.shared.counters.publisher_up.store(false, Ordering::SeqCst);
        self.shared.counters.link_errors.fetch_add(1, Ordering::Relaxed);
        self.deliver_outbox_locally(in_flight);
    }

    /// Delivers the outbox locally (chat with provisional ids; of the first `in_flight` items only
    /// the chat messages the subscriber has not applied) and keeps only the chat messages for the
    /// replay.
    fn deliver_outbox_locally(&mut self, in_flight: usize) {
        let outbox = std::mem::take(&mut self.outbox);
        for (index, mut pending) in outbox.into_iter().enumerate() {
            match &mut pending {
                Pending::Chat { msg, provisional_id, seq } => {
                    // A replayed one (with a provisional id) was delivered here in an earlier outage.
                    if *provisional_id == 0 && (index >= in_flight || self.shared.in_doubt.claim(&msg.room, *seq)) {
                        *provisional_id = self.deliver_locally(msg, *seq);
                    }
                }
                Pending::Presence(change) => {
                    self.hub.announce_presence_locally(&change.room, &change.user, change.joined);
                    continue;
                }
                Pending::Control(_) => continue,
                Pending::Relay { room, event } => {
                    if index >= in_flight {
                        self.hub.relay_remote(room, event.clone());
                    }
                    continue;
                }
            }
            self.outbox.push_back(pending);
        }
    }

    /// Shutdown without Redis: what was never delivered anywhere is at least delivered and stored
    /// here; nothing in the outbox will be replayed (it is in memory).
    fn abandon(&mut self) {
        self.link = None;
        while let Ok(change) = self.presence_rx.try_recv() {
            self.accept_presence(change);
        }
        while let Ok(msg) = self.rx.try_recv() {
            self.accept(msg);
        }
        self.deliver_outbox_locally(0);
        tracing::error!(
            messages = self.outbox.len(),
            "shutting down while redis is unreachable: these messages are stored here but were not replicated"
        );
    }

    fn batch_item(&self, pending: &Pending) -> BatchItem {
        match pending {
            Pending::Chat { msg, seq, provisional_id } => {
                BatchItem::Chat(self.publish_args(msg, *seq, *provisional_id))
            }
            Pending::Presence(change) => BatchItem::Presence(change.clone()),
            Pending::Relay { room, event } => BatchItem::Relay {
                room: Arc::clone(room),
                payload: encode_relay(&self.shared.origin, room, event).unwrap_or_default(),
            },
            Pending::Control(message) => BatchItem::Control(message.clone()),
        }
    }

    fn publish_args(&self, msg: &Outgoing, seq: u64, provisional_id: u64) -> PublishArgs {
        let wire = WireEvent {
            id: provisional_id,
            origin: Arc::clone(&self.shared.origin),
            seq,
            replay: provisional_id != 0,
            sender: msg.origin.clone(),
            at_ms: msg.at_ms,
            room: Arc::clone(&msg.room),
            event: msg.event.clone(),
        };
        PublishArgs {
            room: msg.room.to_string(),
            origin: self.shared.origin.to_string(),
            seq,
            provisional_id,
            tail: encode_tail(&wire),
            user: msg.event.author().to_string(),
            user_rate: self.shared.cfg.user_rate_limit,
            user_burst: self.shared.cfg.user_rate_burst,
            idempotency_key: msg.idempotency_key.as_deref().map(str::to_string),
        }
    }
}

/// A message whose publish reply was lost and whose retry found it published: its id is unknown.
fn id_unknown() -> ClientError {
    ClientError::new(
        ErrorCode::Unavailable,
        "the message was published, but its id was lost with the link to Redis; it is in the room's history",
    )
}

/// The `error` a sender gets when the cluster-wide bucket of `user` is empty.
fn user_rate_limited(msg: &Outgoing, shared: &ClusterShared) -> ClientError {
    let user = msg.event.author();
    ClientError::new(
        ErrorCode::RateLimited,
        format!(
            "user {user:?} is over {} messages per second across the cluster; message dropped",
            shared.cfg.user_rate_limit
        ),
    )
    .about(msg.origin.client_id.clone())
}
