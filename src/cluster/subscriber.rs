//! The subscriber thread: a pattern subscription to every room's channel, plus a catch-up read of
//! every room's stream after each (re)connect, handing each message once, in stream order, to the
//! hub's delivery path.
//!
//! On connect it subscribes first and reads the streams second, so nothing published in between is
//! missed; what both return is dropped by the per-room stream cursor (the last entry id applied).
//! Messages are also dropped when their (room, origin) seq was already applied (a replay after an
//! ambiguous publish into a Redis that lost its data), when they are this process's own replays
//! (delivered and stored during the outage already), and when they are this process's own messages
//! that Redis published late after they were delivered here in doubt (`super::in_doubt`).
//!
//! Presence changes and binary relays on the same channels are delivered live in the room's order
//! (they are not in the streams: nothing to catch up). After catching up, the subscriber replaces the
//! node's membership view with a snapshot of every room's users and tells local members what changed
//! while it was away.

use crate::types::Transient;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::events::{ChannelPayload, parse_channel};
use super::redis_link::{IO_TIMEOUT, RedisLink};
use super::wire::{EntryId, WireEvent, parse_body};
use super::{Backoff, ClusterError, ClusterShared, keys};
use crate::room::hub::Hub;

/// How often a blocked read returns to check the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Stream entries per catch-up read.
const CATCH_UP_PAGE: usize = 1000;

/// The subscriber thread's state.
pub(crate) struct Subscriber {
    hub: Arc<Hub>,
    shared: Arc<ClusterShared>,
    client: redis::Client,
    stop: Arc<AtomicBool>,
    /// Rooms with no cursor yet skip ids up to this (what the local store held at start).
    startup_max_id: u64,
    cursors: HashMap<Arc<str>, EntryId>,
    origin_seqs: HashMap<(Arc<str>, Arc<str>), u64>,
}

impl Subscriber {
    /// A subscriber; it connects on its own thread.
    pub(crate) fn new(
        hub: Arc<Hub>,
        shared: Arc<ClusterShared>,
        client: redis::Client,
        stop: Arc<AtomicBool>,
        startup_max_id: u64,
    ) -> Self {
        Subscriber { hub, shared, client, stop, startup_max_id, cursors: HashMap::new(), origin_seqs: HashMap::new() }
    }

    /// Runs until the stop flag is set, reconnecting with backoff.
    pub(crate) fn run(mut self) {
        let mut backoff = Backoff::new();
        let mut failing = false;
        while !self.stop.load(Ordering::SeqCst) {
            if !backoff.due() {
                std::thread::sleep(backoff.remaining().min(POLL));
                continue;
            }
            let mut connected = false;
            let result = self.session(&mut connected);
            self.shared.counters.subscriber_up.store(false, Ordering::SeqCst);
            match result {
                Ok(()) => return,
                Err(err) => {
                    if connected {
                        backoff.reset();
                    }
                    if connected || !failing {
                        tracing::warn!(%err, "redis subscription lost; reconnecting");
                    }
                    failing = true;
                    backoff.failed();
                    self.shared.counters.link_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// One connection's life: subscribe, catch up, then apply live messages until an error or stop.
    fn session(&mut self, connected: &mut bool) -> Result<(), ClusterError> {
        let mut conn = self.client.get_connection_with_timeout(IO_TIMEOUT)?;
        let mut link = RedisLink::connect(&self.client)?;
        let mut pubsub = conn.as_pubsub();
        pubsub.psubscribe(keys::CHANNEL_PATTERN)?;
        pubsub.subscribe(keys::CONTROL_CHANNEL)?;
        pubsub.set_read_timeout(Some(POLL))?;
        let caught_up = self.catch_up(&mut link)?;
        // After subscribing: a change made from now on arrives live (too), so none is missed.
        let kept = link.control_state()?;
        for payload in &kept {
            self.hub.on_control(payload, true);
        }
        self.refresh_membership(&mut link)?;
        drop(link);
        *connected = true;
        self.shared.counters.connects.fetch_add(1, Ordering::Relaxed);
        self.shared.counters.subscriber_up.store(true, Ordering::SeqCst);
        tracing::info!(caught_up, "redis subscriber connected");
        loop {
            match pubsub.get_message() {
                Ok(msg) if msg.get_channel_name() == keys::CONTROL_CHANNEL => {
                    self.hub.on_control(msg.get_payload_bytes(), false);
                }
                Ok(msg) => match parse_channel(msg.get_payload_bytes()) {
                    Ok(ChannelPayload::Chat(entry, wire)) => self.apply(entry, wire),
                    Ok(ChannelPayload::Presence(change)) => {
                        self.hub.deliver_presence(&change.room, &change.user, change.joined, || {
                            self.shared.view.apply(&change)
                        });
                    }
                    Ok(ChannelPayload::Relay { room, origin, event }) => {
                        // Only the origin node knows the connection a typing notice came from.
                        let event = match event {
                            Transient::Typing { user, from } if origin == self.shared.origin => {
                                Transient::Typing { user, from }
                            }
                            Transient::Typing { user, .. } => Transient::Typing { user, from: None },
                            other => other,
                        };
                        self.hub.relay_remote(&room, event);
                    }
                    Err(err) => self.malformed(&err),
                },
                Err(err) if err.is_timeout() => {
                    if self.stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Applies every stream entry after each room's cursor; returns how many were new.
    fn catch_up(&mut self, link: &mut RedisLink) -> Result<u64, ClusterError> {
        let before = self.shared.counters.received.load(Ordering::Relaxed);
        for key in link.scan_logs()? {
            let mut after = None;
            loop {
                let entries = link.read_log(&key, after, CATCH_UP_PAGE)?;
                let full = entries.len() == CATCH_UP_PAGE;
                for (entry, body) in entries {
                    after = Some(entry);
                    match parse_body(&body) {
                        Ok(wire) => self.apply(entry, wire),
                        Err(err) => self.malformed(&err),
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Ok(self.shared.counters.received.load(Ordering::Relaxed) - before)
    }

    /// Replaces the membership view with Redis's and tells local members the differences. Presence
    /// events published meanwhile are already queued on the subscription and apply on top (the view
    /// is a set: a repeated event changes nothing).
    fn refresh_membership(&mut self, link: &mut RedisLink) -> Result<(), ClusterError> {
        let snapshot = link.membership_snapshot()?;
        let changes = self.shared.view.replace(snapshot);
        for change in &changes {
            self.hub.resync_presence(&change.room, &change.user, change.joined);
        }
        Ok(())
    }

    /// Applies one message unless it is a duplicate; one of this process's own has come back
    /// either way (`ClusterShared::echoed`, after its delivery is in the inboxes).
    fn apply(&mut self, entry: EntryId, wire: WireEvent) {
        let own_seq = (wire.origin == self.shared.origin).then_some(wire.seq);
        self.apply_unless_duplicate(entry, wire);
        if let Some(seq) = own_seq {
            self.shared.echoed.fetch_max(seq, Ordering::AcqRel);
        }
    }

    fn apply_unless_duplicate(&mut self, entry: EntryId, wire: WireEvent) {
        let counters = &self.shared.counters;
        match self.cursors.get_mut(&wire.room) {
            Some(cursor) if entry <= *cursor => {
                counters.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(cursor) => *cursor = entry,
            None => {
                self.cursors.insert(Arc::clone(&wire.room), entry);
            }
        }
        let last_seq = self.origin_seqs.entry((Arc::clone(&wire.room), Arc::clone(&wire.origin))).or_insert(0);
        if wire.seq <= *last_seq {
            counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last_seq = wire.seq;
        if wire.replay && wire.origin == self.shared.origin {
            counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if wire.origin == self.shared.origin && !self.shared.in_doubt.arrived(&wire.room, wire.seq) {
            // Published late by a Redis that was frozen; delivered here while in doubt already.
            counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
        // Ids up to what the store held at start were in the stream before this process: store them
        // (the store skips ids it has) but do not push them to members who joined since.
        let live = wire.id > self.startup_max_id;
        self.hub.apply_remote(wire.sequenced(), wire.sender, live);
    }

    fn malformed(&self, err: &super::wire::WireError) {
        self.shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%err, "skipping a malformed cluster message");
    }
}
