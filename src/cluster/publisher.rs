//! The publisher thread: takes messages from the shards' bounded channel, numbers them (origin seq),
//! and publishes them to Redis in pipelined batches through the publish script. While Redis is away
//! it delivers each new message locally with a provisional id and keeps it in the outbox; on
//! reconnect it floors the id counter, claims its slot, and replays the outbox in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::deliver::deliver_provisional;
use super::redis_link::{PublishArgs, Published, RedisLink};
use super::wire::{WireMessage, encode_tail};
use super::{Backoff, ClusterError, ClusterShared, Outgoing};
use crate::room::fanout::Hub;

/// Messages per pipeline.
const BATCH: usize = 256;
/// How long shutdown waits for Redis to take the outbox.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);
/// How often an idle publisher checks that Redis is still there (so an outage is noticed before
/// the next message, which is then delivered locally at once).
const PING_EVERY: Duration = Duration::from_millis(500);
/// Longest idle wait for input (bounds how late the stop flag and reconnects are noticed).
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// One accepted message not yet confirmed by Redis.
struct Pending {
    msg: Outgoing,
    seq: u64,
    /// The id it was delivered locally with during an outage; 0 if not delivered locally yet.
    provisional_id: u64,
}

/// The publisher thread's state.
pub struct Publisher {
    hub: Arc<Hub>,
    shared: Arc<ClusterShared>,
    client: redis::Client,
    rx: Receiver<Outgoing>,
    stop: Arc<AtomicBool>,
    outbox: VecDeque<Pending>,
    seq: u64,
    link: Option<RedisLink>,
    backoff: Backoff,
    failing: bool,
    last_ping: Instant,
    scratch: Vec<u8>,
}

impl Publisher {
    /// A publisher reading `rx`; it connects on its own thread.
    pub fn new(
        hub: Arc<Hub>,
        shared: Arc<ClusterShared>,
        client: redis::Client,
        rx: Receiver<Outgoing>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Publisher {
            hub,
            shared,
            client,
            rx,
            stop,
            outbox: VecDeque::new(),
            seq: 0,
            link: None,
            backoff: Backoff::new(),
            failing: false,
            last_ping: Instant::now(),
            scratch: Vec::new(),
        }
    }

    /// Runs until the stop flag is set and the outbox is published (or the shutdown wait ends).
    pub fn run(mut self) {
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
            }
            self.shared.counters.outbox_depth.store(self.outbox.len(), Ordering::Relaxed);
            if let Some(deadline) = stop_deadline {
                if self.outbox.is_empty() && self.rx.is_empty() {
                    return;
                }
                if Instant::now() >= deadline {
                    self.abandon();
                    return;
                }
            }
        }
    }

    /// Moves messages from the channel into the outbox (waiting briefly when there is nothing to do).
    fn take_input(&mut self, stopping: bool) {
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
        match self.rx.recv_timeout(wait) {
            Ok(msg) => self.accept(msg),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        }
        while self.outbox.len() < capacity {
            let Ok(msg) = self.rx.try_recv() else { break };
            self.accept(msg);
        }
    }

    fn accept(&mut self, msg: Outgoing) {
        self.seq += 1;
        let provisional_id = if self.link.is_some() { 0 } else { self.deliver_locally(&msg) };
        self.outbox.push_back(Pending { msg, seq: self.seq, provisional_id });
    }

    fn deliver_locally(&mut self, msg: &Outgoing) -> u64 {
        self.shared.counters.provisional.fetch_add(1, Ordering::Relaxed);
        deliver_provisional(&self.hub, msg, self.shared.slot, &mut self.scratch)
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

    /// Connects, raises the id counter above every id this node has seen, and claims the id slot.
    fn try_connect(&self) -> Result<RedisLink, ClusterError> {
        let mut link = RedisLink::connect(&self.client)?;
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
            let batch: Vec<PublishArgs> = self.outbox.iter().take(n).map(|p| self.publish_args(p)).collect();
            let Some(link) = self.link.as_mut() else { return };
            match link.publish_batch(&batch, maxlen) {
                Ok(results) => {
                    let counters = &self.shared.counters;
                    for (pending, result) in self.outbox.drain(..n).zip(results) {
                        match result {
                            Published::Appended(_) => {
                                counters.published.fetch_add(1, Ordering::Relaxed);
                                if pending.provisional_id != 0 {
                                    counters.replayed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Published::Duplicate => {
                                counters.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Err(err) => {
                    self.link_lost(&err, n);
                    return;
                }
            }
        }
    }

    /// The link broke with `in_flight` messages sent but unconfirmed: those stay undelivered (they may
    /// have been published); every later one is delivered locally now, as during the outage.
    fn link_lost(&mut self, err: &ClusterError, in_flight: usize) {
        tracing::warn!(%err, in_flight, outbox = self.outbox.len(), "redis publish failed; serving local clients alone");
        self.link = None;
        self.failing = true;
        self.backoff.failed();
        self.shared.counters.publisher_up.store(false, Ordering::SeqCst);
        self.shared.counters.link_errors.fetch_add(1, Ordering::Relaxed);
        let mut outbox = std::mem::take(&mut self.outbox);
        for pending in outbox.iter_mut().skip(in_flight) {
            if pending.provisional_id == 0 {
                pending.provisional_id = self.deliver_locally(&pending.msg);
            }
        }
        self.outbox = outbox;
    }

    /// Shutdown without Redis: what was never delivered anywhere is at least delivered and stored
    /// here; nothing in the outbox will be replayed (it is in memory).
    fn abandon(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            self.accept(msg);
        }
        let mut outbox = std::mem::take(&mut self.outbox);
        for pending in outbox.iter_mut() {
            if pending.provisional_id == 0 {
                pending.provisional_id = self.deliver_locally(&pending.msg);
            }
        }
        tracing::error!(
            messages = outbox.len(),
            "shutting down while redis is unreachable: these messages are stored here but were not replicated"
        );
    }

    fn publish_args(&self, pending: &Pending) -> PublishArgs {
        let msg = &pending.msg;
        let wire = WireMessage {
            id: pending.provisional_id,
            origin: Arc::clone(&self.shared.origin),
            seq: pending.seq,
            replay: pending.provisional_id != 0,
            format: msg.format,
            created_at_ms: msg.created_at_ms,
            room: Arc::clone(&msg.room),
            user: Arc::clone(&msg.user),
            client_id: msg.client_id.clone(),
            content: Arc::clone(&msg.content),
        };
        PublishArgs {
            room: msg.room.to_string(),
            origin: self.shared.origin.to_string(),
            seq: pending.seq,
            provisional_id: pending.provisional_id,
            tail: encode_tail(&wire),
        }
    }
}
