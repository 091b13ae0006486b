//! A shard: one thread, one `mio::Poll`, a `Slab` of connections, an inbox.
//!
//! Each loop turn has a fixed shape: poll; serve the HTTP connections waiting for a turn's handshake
//! budget (`super::handshakes`: at most 32 requests and upgrades per turn, oldest first); read every
//! readable connection (WebSocket sessions not while ingress is paused, HTTP within the budget);
//! retry reads that were deferred; drain the inbox (new connections,
//! deliveries, history replies) up to a budget of frames; write the next slice of connections with
//! queued output (at most 256, in the order they got output, one vectored write each); reap
//! connections marked for removal; every 250 ms, expire deadlines and run heartbeats
//! (`session::heartbeat::on_sweep`). A busy shard thus reads, delivers and writes in bounded slices, so
//! no connection waits behind thousands of others and new input is read every slice. Nothing here
//! blocks except `poll`, and `poll` does not wait while output or inbox messages are pending.
//!
//! The shard does IO and keeps time; what bytes mean, what to answer and when to close is the
//! session's (`crate::session`): the shard hands it input, deliveries and replies, and acts on its
//! `Schedule` (connections to write, connections to remove).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::bus::ShardMsg;
use crate::conn::ReadOutcome;
use crate::conn::outbuf::Flushed;
use crate::conn::tls::{TlsAccept, TlsScratch, Transport};
use crate::limits::per_ip::IpSlot;
use crate::metrics::{CloseReason, TlsFailure};
use crate::session::state::{Conn, Phase};
use crate::session::{self, ShardCtx};

use super::handshakes::Handshakes;

/// Token of the shard's waker; connection tokens are slab keys, which never reach it.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// Bytes read from a socket per `read` call (one scratch buffer per shard, not per connection).
const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per turn before moving on (fairness: one busy client cannot hog a turn).
const READS_PER_TURN: usize = 4;
/// Inbox messages handled per turn before flushing (keeps latency bounded under bursts).
const INBOX_PER_TURN: usize = 8192;
/// Connections written per turn. A busy shard goes round its loop (poll, read, inbox, write) after
/// this many writes instead of writing every connection with output first: new input is read and
/// new deliveries are queued (onto connections still waiting their turn, which then carry them in
/// the same write) every slice, not once per pass over thousands of connections. Connections are
/// written in the order they got output, so each waits at most one pass.
const FLUSHES_PER_TURN: usize = 256;
/// Frames queued on connections per turn before flushing: a busy shard writes what it has queued
/// after at most this much delivery work, so no connection waits behind a long inbox backlog
/// (64 deliveries to 1,000 local members, or 8,192 to a few).
const DELIVERIES_PER_TURN: usize = 65_536;
/// How often deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Everything a shard thread owns.
pub(crate) struct Shard {
    poll: Poll,
    conns: Slab<Conn>,
    inbox_rx: Receiver<ShardMsg>,
    ctx: ShardCtx,
    read_buf: Box<[u8]>,
    /// The buffers TLS connections borrow for a read or a flush (allocated on the first TLS one).
    tls_scratch: TlsScratch,
    deferred_reads: Vec<usize>,
    /// TLS connections waiting for a handshake slot, oldest first: `(key, serial)` (an entry whose
    /// connection is gone is skipped; the sweep prunes them).
    tls_waiting: std::collections::VecDeque<(usize, u64)>,
    /// HTTP work per turn, and the connections waiting for it.
    handshakes: Handshakes,
    shutdown_deadline: Option<Instant>,
    /// Open connections of the `--metrics-addr` listener, all shards (its own budget; the main
    /// listener's count is `ctx.open_conns`).
    ops_conns: Arc<AtomicUsize>,
    /// By slab key: the connection came from the `--metrics-addr` listener (which count it is in).
    ops_keys: Vec<bool>,
    /// TLS for the main listener's connections (`--tls-cert`); `None`: plain.
    tls: Option<TlsAccept>,
    /// Debug builds only, for the test that a panicking thread ends the process
    /// (`tests/it/lifecycle.rs`): `ROOMCAST_TEST_PANIC_ON_ACCEPT` set makes the shard panic on its
    /// first connection. Release builds have neither the field nor the variable.
    #[cfg(debug_assertions)]
    panic_on_accept: bool,
}

impl Shard {
    /// Builds a shard around its `poll` (whose waker is `ctx.inbox`'s) and the receiving end of its inbox.
    /// `ops_conns` counts the `--metrics-addr` listener's connections (shared with the acceptor).
    pub(crate) fn new(poll: Poll, inbox_rx: Receiver<ShardMsg>, ctx: ShardCtx, ops_conns: Arc<AtomicUsize>) -> Self {
        Shard {
            poll,
            conns: Slab::new(),
            inbox_rx,
            ctx,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            tls_scratch: TlsScratch::default(),
            deferred_reads: Vec::new(),
            tls_waiting: std::collections::VecDeque::new(),
            handshakes: Handshakes::default(),
            shutdown_deadline: None,
            ops_conns,
            ops_keys: Vec::new(),
            tls: None,
            #[cfg(debug_assertions)]
            panic_on_accept: std::env::var_os("ROOMCAST_TEST_PANIC_ON_ACCEPT").is_some(),
        }
    }

    /// Gives the main listener's connections TLS.
    pub(crate) fn with_tls(mut self, tls: Option<TlsAccept>) -> Self {
        self.tls = tls;
        self
    }

    /// The open-connection count a connection is in: the metrics listener's or the main one's.
    fn count_of(&self, ops_only: bool) -> &AtomicUsize {
        if ops_only { &self.ops_conns } else { &self.ctx.open_conns }
    }

    /// Runs the loop until shutdown completes.
    ///
    /// # Errors
    /// Only `poll` failing (the OS refusing epoll), which ends the shard.
    pub(crate) fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let now = Instant::now();
            let mut timeout = next_sweep.saturating_duration_since(now);
            if !self.deferred_reads.is_empty() && !self.ctx.ingress_paused() {
                timeout = Duration::ZERO;
            } else if !self.deferred_reads.is_empty() {
                // Paused: poll again soon to see whether the queues drained.
                timeout = timeout.min(Duration::from_millis(1));
            }
            let tls_promotable =
                !self.tls_waiting.is_empty() && self.tls.as_ref().is_some_and(TlsAccept::has_free_slot);
            if self.ctx.schedule.has_flushes() || self.handshakes.any_waiting() || tls_promotable {
                // Output (or handshakes) left from the last slice: write on after a non-blocking look at the sockets.
                timeout = Duration::ZERO;
            }
            self.ctx.inbox.about_to_sleep();
            if !self.inbox_rx.is_empty() {
                timeout = Duration::ZERO;
            }
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.ctx.inbox.awake();
            let turn_started = Instant::now();
            // One look at every queue of the publish path per turn (sessions look again only after
            // `Hub::ingress_recheck` frames).
            self.ctx.refresh_ingress();
            self.promote_waiting_tls();
            self.serve_waiting_handshakes();

            for event in events.iter() {
                let key = event.token().0;
                if event.token() == WAKER || !self.conns.contains(key) {
                    continue;
                }
                if event.is_writable() {
                    self.ctx.schedule.flush(key);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(key);
                }
            }
            self.retry_deferred_reads();
            self.drain_inbox();
            // After the inbox, whose deliveries include the echoes of what they sent before.
            session::close_flooders(&mut self.ctx, &mut self.conns);
            self.flush_scheduled();
            self.reap();

            let now = Instant::now();
            self.ctx.metrics.loop_iteration.observe_duration(now - turn_started);
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                self.sweep(now);
            }
            if let Some(deadline) = self.shutdown_deadline
                && (self.conns.is_empty() || now >= deadline)
            {
                let left = self.conns.len();
                for key in self.conns.iter().map(|(k, _)| k).collect::<Vec<_>>() {
                    self.ctx.schedule.remove(key);
                }
                self.reap();
                tracing::debug!(shard = self.ctx.shard, left, "shard stopped");
                return Ok(());
            }
        }
    }

    /// A connection is readable: an HTTP one within the turn's handshake budget (else it waits for
    /// a later turn, its socket unread), any other at once.
    fn on_readable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if conn.transport.is_awaiting_slot() {
            // Read once it has a slot (`promote_waiting_tls` queues it then).
            return;
        }
        if matches!(conn.phase, Phase::Http(_)) && !self.handshakes.admit() {
            if !conn.read_pending {
                conn.read_pending = true;
                self.handshakes.defer(key);
            }
            return;
        }
        self.read_input(key);
    }

    /// Gives the TLS connections waiting for a handshake slot their TLS state while slots are free,
    /// oldest first, and queues each to be read (its ClientHello may have arrived long ago: polling
    /// is edge-triggered).
    fn promote_waiting_tls(&mut self) {
        let Some(tls) = self.tls.as_ref() else { return };
        while let Some(&(key, serial)) = self.tls_waiting.front() {
            let waiting = self.conns.get(key).is_some_and(|c| c.serial == serial && c.transport.is_awaiting_slot());
            if !waiting {
                self.tls_waiting.pop_front();
                continue;
            }
            let Some(transport) = tls.promote() else { break };
            self.tls_waiting.pop_front();
            let Some(conn) = self.conns.get_mut(key) else { continue };
            match transport {
                Ok(transport) => {
                    conn.transport = transport;
                    if !conn.read_pending {
                        conn.read_pending = true;
                        self.handshakes.defer(key);
                    }
                }
                Err(why) => {
                    self.ctx.metrics.tls.handshake_failed(why);
                    conn.set_close_reason(CloseReason::Error);
                    self.ctx.schedule.remove(key);
                }
            }
        }
        self.count_tls_waiting();
    }

    /// Publishes how many connections wait for a TLS handshake slot (`roomcast_tls_handshakes_waiting`).
    fn count_tls_waiting(&self) {
        let waiting = i64::try_from(self.tls_waiting.len()).unwrap_or(i64::MAX);
        self.ctx.metrics.tls.waiting.set(waiting);
    }

    /// Serves the HTTP connections that waited for the handshake budget, oldest first, while this
    /// turn's budget lasts.
    fn serve_waiting_handshakes(&mut self) {
        self.handshakes.new_turn();
        while let Some(key) = self.handshakes.next_waiting() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.read_pending = false;
                self.read_input(key);
            }
        }
    }

    /// Reads what a readable connection sent, up to the per-turn budget.
    fn read_input(&mut self, key: usize) {
        let paused = self.ctx.ingress_paused();
        let Some(conn) = self.conns.get_mut(key) else { return };
        // Only WebSocket sessions publish chat: plain HTTP (health, readiness, metrics, history,
        // upgrade requests) is still served while ingress is paused, so `/readyz` can say why.
        let holds = matches!(conn.phase, Phase::Ws(_));
        if paused && holds {
            if !conn.read_pending {
                conn.read_pending = true;
                self.deferred_reads.push(key);
            }
            return;
        }
        if conn.read_blocked {
            // Woken after the output drained (see `flush_scheduled`): serve what was read before the
            // block, then read on if the session still takes input.
            if !session::wants_input(&self.ctx, conn) {
                return;
            }
            conn.read_blocked = false;
            session::resume_input(&mut self.ctx, conn, key);
            if self.ctx.schedule.is_removing(key) {
                return;
            }
        }
        for _ in 0..READS_PER_TURN {
            if !session::wants_input(&self.ctx, conn) {
                // Leave the input in the socket (TCP pushes back) until the session wants it.
                conn.read_blocked = true;
                // HTTP waits for its output to drain; a paused WebSocket session for the queues.
                if matches!(conn.phase, Phase::Ws(_)) && !conn.read_pending {
                    conn.read_pending = true;
                    self.deferred_reads.push(key);
                }
                return;
            }
            let outcome = conn.read(&mut self.read_buf, &mut self.tls_scratch, &self.ctx.metrics.tls);
            if conn.transport_wants_write() {
                self.ctx.schedule.flush(key);
            }
            match outcome {
                ReadOutcome::Data(n) => {
                    self.ctx.metrics.bytes_in.add(n as u64);
                    session::on_input(&mut self.ctx, conn, key, &mut self.read_buf[..n]);
                    if self.ctx.schedule.is_removing(key) {
                        return;
                    }
                }
                ReadOutcome::WouldBlock => {
                    conn.read_pending = false;
                    return;
                }
                ReadOutcome::Closed => {
                    self.ctx.schedule.remove(key);
                    return;
                }
                ReadOutcome::Failed => {
                    conn.set_close_reason(CloseReason::ProtocolError);
                    self.ctx.schedule.remove(key);
                    return;
                }
            }
        }
        // Budget spent with input possibly left: edge-triggered polling will not tell us again.
        if !conn.read_pending {
            conn.read_pending = true;
            self.deferred_reads.push(key);
        }
    }

    fn retry_deferred_reads(&mut self) {
        if self.deferred_reads.is_empty() || self.ctx.ingress_paused() {
            return;
        }
        let keys = std::mem::take(&mut self.deferred_reads);
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.read_pending = false;
                self.on_readable(key);
            }
        }
    }

    /// Handles queued inbox messages, up to the per-turn budgets.
    fn drain_inbox(&mut self) {
        let mut frames_budget = DELIVERIES_PER_TURN;
        for _ in 0..INBOX_PER_TURN {
            if frames_budget == 0 {
                break;
            }
            let Ok(msg) = self.inbox_rx.try_recv() else { break };
            self.ctx.took_from_inbox();
            match msg {
                ShardMsg::Accept { stream, peer, over_capacity, ops_only, ip_slot } => {
                    self.accept(stream, peer, (over_capacity, ops_only), ip_slot)
                }
                ShardMsg::Deliver(delivery) => {
                    let visited = session::deliver::deliver(&mut self.ctx, &mut self.conns, &delivery);
                    frames_budget = frames_budget.saturating_sub(visited.max(1));
                }
                ShardMsg::History(reply) => {
                    self.ctx.metrics.history_latency.observe_duration(reply.submitted_at.elapsed());
                    if let Some(conn) = self.conns.get_mut(reply.conn.key)
                        && conn.serial == reply.conn.serial
                    {
                        session::on_history(&mut self.ctx, conn, reply.conn.key, reply.purpose, reply.result);
                    }
                }
                ShardMsg::Refused { conn: to, error } => {
                    if let Some(conn) = self.conns.get_mut(to.key)
                        && conn.serial == to.serial
                    {
                        session::on_refused(&mut self.ctx, conn, to.key, &error);
                    }
                }
                ShardMsg::Amend(reply) => {
                    if let Some(conn) = self.conns.get_mut(reply.conn.key)
                        && conn.serial == reply.conn.serial
                    {
                        session::on_amend(&mut self.ctx, conn, reply.conn.key, reply);
                    }
                }
                ShardMsg::ReadState { conn: to, room, result } => {
                    if let Some(conn) = self.conns.get_mut(to.key)
                        && conn.serial == to.serial
                    {
                        session::on_read_state(&mut self.ctx, conn, to.key, &room, result);
                    }
                }
                ShardMsg::DmRooms { conn: to, result } => {
                    if let Some(conn) = self.conns.get_mut(to.key)
                        && conn.serial == to.serial
                    {
                        session::on_dm_rooms(&mut self.ctx, conn, to.key, result);
                    }
                }
                ShardMsg::Reply { conn: to, response, keep_alive } => {
                    if let Some(conn) = self.conns.get_mut(to.key)
                        && conn.serial == to.serial
                    {
                        session::on_reply(&mut self.ctx, conn, to.key, response, keep_alive);
                    }
                }
                ShardMsg::Close { conn: to, code, reason } => {
                    if let Some(conn) = self.conns.get_mut(to.key)
                        && conn.serial == to.serial
                    {
                        session::on_close_request(&mut self.ctx, conn, to.key, code, &reason);
                    }
                }
                ShardMsg::Sequenced { waiter, result } => {
                    if let Some(conn) = self.conns.get_mut(waiter.conn.key)
                        && conn.serial == waiter.conn.serial
                    {
                        session::on_sequenced(&mut self.ctx, conn, waiter.conn.key, waiter.index, result);
                    }
                }
                ShardMsg::Send { conn: to, frame } => {
                    if let Some(conn) = self.conns.get_mut(to.key)
                        && conn.serial == to.serial
                    {
                        session::on_frame(&mut self.ctx, conn, to.key, frame);
                    }
                }
                ShardMsg::Feed { conn: to, chunk } => {
                    if let Some(conn) = self.conns.get_mut(to.key)
                        && conn.serial == to.serial
                    {
                        session::on_feed(&mut self.ctx, conn, to.key, chunk);
                    }
                }
                ShardMsg::Shutdown => self.begin_shutdown(),
            }
        }
    }

    fn accept(
        &mut self,
        mut stream: mio::net::TcpStream,
        peer: std::net::SocketAddr,
        (over_capacity, ops_only): (bool, bool),
        ip_slot: IpSlot,
    ) {
        #[cfg(debug_assertions)]
        if self.panic_on_accept {
            panic!("ROOMCAST_TEST_PANIC_ON_ACCEPT is set (debug builds only): a shard panics on purpose");
        }
        if self.shutdown_deadline.is_some() {
            self.count_of(ops_only).fetch_sub(1, Ordering::Relaxed);
            self.ctx.metrics.dropped(CloseReason::Normal);
            return;
        }
        let waiting = self.tls_waiting.len();
        let transport = match self.tls.as_ref().filter(|_| !ops_only).map(|tls| tls.transport(waiting)) {
            None => Transport::Plain,
            Some(Ok(transport)) => transport,
            Some(Err(why)) => {
                self.ctx.metrics.tls.handshake_failed(why);
                self.count_of(ops_only).fetch_sub(1, Ordering::Relaxed);
                self.ctx.metrics.dropped(CloseReason::OverLimit);
                return;
            }
        };
        let key = self.conns.vacant_key();
        if let Err(err) =
            self.poll.registry().register(&mut stream, Token(key), Interest::READABLE | Interest::WRITABLE)
        {
            tracing::warn!(%err, %peer, "could not register a connection");
            self.count_of(ops_only).fetch_sub(1, Ordering::Relaxed);
            self.ctx.metrics.dropped(CloseReason::Error);
            return;
        }
        let serial = self.ctx.next_serial();
        // The metrics listener has its own, short, limit (`--metrics-idle-timeout`).
        let timeout = if ops_only { self.ctx.cfg.metrics_idle_timeout() } else { self.ctx.cfg.handshake_timeout() };
        let phase = session::new_phase(over_capacity, ops_only);
        let mut conn = Conn::new(stream, peer, serial, phase, Instant::now() + timeout);
        conn.ip_slot = ip_slot;
        let awaiting_slot = transport.is_awaiting_slot();
        conn.transport = transport;
        let inserted = self.conns.insert(conn);
        debug_assert_eq!(inserted, key, "the slab hands out its vacant key");
        if awaiting_slot {
            self.tls_waiting.push_back((key, serial));
            self.count_tls_waiting();
        }
        if self.ops_keys.len() <= key {
            self.ops_keys.resize(key + 1, false);
        }
        self.ops_keys[key] = ops_only;
        self.ctx.metrics.connections_open.add(1);
        tracing::debug!(shard = self.ctx.shard, key, %peer, "accepted");
        // The request may already be waiting: edge-triggered registration reports it, but read now
        // anyway so a fast client does not wait a turn.
        self.on_readable(key);
    }

    /// Writes the next slice of connections with output (at most [`FLUSHES_PER_TURN`]), in the order
    /// they got it; the rest wait for the next turn.
    fn flush_scheduled(&mut self) {
        let mut written = 0;
        for _ in 0..FLUSHES_PER_TURN {
            let Some(key) = self.ctx.schedule.next_flush() else { break };
            let Some(conn) = self.conns.get_mut(key) else { continue };
            let queued = conn.out.queued_bytes();
            match conn.flush(&mut self.tls_scratch) {
                Ok(Flushed::All) | Ok(Flushed::WouldBlock) => {}
                Err(_) => {
                    conn.set_close_reason(CloseReason::Error);
                    self.ctx.schedule.remove(key);
                }
            }
            written += queued.saturating_sub(conn.out.queued_bytes());
            // Edge-triggered: input left unread while the session did not want it is not reported
            // again, so once the output drained below the mark read it (next turn, with the rest).
            if conn.read_blocked && !conn.read_pending && session::wants_input(&self.ctx, conn) {
                conn.read_pending = true;
                self.deferred_reads.push(key);
            }
            session::on_flushed(&mut self.ctx, conn, key);
        }
        self.ctx.metrics.bytes_out.add(written as u64);
    }

    /// Writes every connection with output (shutdown and the sweep's closes, which reap right after).
    fn flush_all(&mut self) {
        while self.ctx.schedule.has_flushes() {
            self.flush_scheduled();
        }
    }

    /// Removes connections marked for removal: leaves their rooms, deregisters, closes the socket.
    fn reap(&mut self) {
        while let Some(key) = self.ctx.schedule.next_removal() {
            if !self.conns.contains(key) {
                continue;
            }
            let mut conn = self.conns.remove(key);
            let phase = std::mem::replace(&mut conn.phase, Phase::Closing);
            session::on_reaped(&mut self.ctx, key, phase);
            let _ = self.poll.registry().deregister(&mut conn.sock);
            let ops_only = self.ops_keys.get_mut(key).map(std::mem::take).unwrap_or(false);
            self.count_of(ops_only).fetch_sub(1, Ordering::Relaxed);
            let reason = conn.close_reason.unwrap_or(CloseReason::Normal);
            self.ctx.metrics.closed(reason);
            tracing::debug!(shard = self.ctx.shard, key, peer = %conn.peer, reason = reason.as_str(), "closed");
        }
    }

    /// Expires handshake and linger deadlines; heartbeats and idle timeouts of WebSocket clients.
    fn sweep(&mut self, now: Instant) {
        // One look at the queues per sweep, not one per connection (it reads every inbox's length).
        self.ctx.refresh_ingress();
        let conns = &self.conns;
        self.tls_waiting.retain(|&(key, serial)| {
            conns.get(key).is_some_and(|c| c.serial == serial && c.transport.is_awaiting_slot())
        });
        self.count_tls_waiting();
        let paused = self.ctx.ingress_paused();
        for (key, conn) in self.conns.iter_mut() {
            if conn.deadline.is_some_and(|d| now >= d) {
                if matches!(conn.phase, Phase::Http(_)) {
                    tracing::debug!(key, peer = %conn.peer, "handshake timeout");
                    conn.set_close_reason(CloseReason::Timeout);
                    if conn.transport.is_handshaking() {
                        self.ctx.metrics.tls.handshake_failed(TlsFailure::Timeout);
                    }
                }
                self.ctx.schedule.remove(key);
            } else if matches!(conn.phase, Phase::Ws(_)) {
                conn.out.release_if_drained();
                session::heartbeat::on_sweep(&mut self.ctx, conn, key, now, paused);
            } else if matches!(conn.phase, Phase::Http(_)) {
                session::on_http_sweep(&mut self.ctx, conn, key, now);
            }
        }
        self.flush_scheduled();
        self.reap();
    }

    fn begin_shutdown(&mut self) {
        let grace = Duration::from_secs(self.ctx.cfg.shutdown_grace_secs);
        self.shutdown_deadline = Some(Instant::now() + grace);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            session::on_shutdown(&mut self.ctx, &mut self.conns[key], key);
        }
        self.flush_all();
        self.reap();
    }
}
