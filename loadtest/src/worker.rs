//! One worker thread: a mio `Poll` owning a share of the connections (connection `i` belongs to
//! worker `i % threads`), pacing connects, firing scheduled sends on a timerfd, pinging (hold),
//! dropping and reconnecting clients (churn), and flushing write buffers once per loop turn.

use crate::clock;
use crate::conn::{Conn, Meta, Phase};
use crate::engine::{Control, Mode, RunConfig};
use crate::error::LoadError;
use crate::marker::{self, Marker};
use crate::net;
use crate::protocol::{self, Format};
use crate::reconnect::{self, RetryQueue, Rng};
use crate::schedule::{Due, Schedule};
use crate::sink::Sink;
use crate::stats::{Stats, record_ns};
use crate::timer::TimerFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const TIMER: Token = Token(usize::MAX - 1);
/// Unpaced connects in flight per worker, so the listen backlog is not flooded.
const MAX_IN_FLIGHT: u64 = 256;
const TICK_NS: u64 = 20_000_000;

pub struct Worker {
    id: usize,
    threads: usize,
    cfg: Arc<RunConfig>,
    ctl: Arc<Control>,
    poll: Poll,
    events: Events,
    timer: TimerFd,
    armed_for: u64,
    conns: Vec<Option<Conn>>,
    sink: Sink,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    pending: VecDeque<usize>,
    first_started: u64,
    failed_delta: u64,
    sent_delta: u64,
    room_sent_delta: Vec<u64>,
    t0: u64,
    started: bool,
    sched: Option<Schedule>,
    due: Due,
    warmup_end: u64,
    end_ns: u64,
    next_ping: u64,
    next_churn: u64,
    churn_cursor: usize,
    next_timeout_scan: u64,
    next_interval_push: u64,
    msg: String,
    frame: String,
    /// Avalanche: slots waiting for their next reconnect attempt.
    retry: RetryQueue,
    rng: Rng,
    outage_done: bool,
    /// Live connections lost (avalanche), not yet published.
    went_down_delta: u64,
    /// `--typists`: when each slot sends its next `typing` (`u64::MAX`: not a typist).
    typing_due: Vec<u64>,
    /// The earliest of `typing_due`.
    next_typing: u64,
}

impl Worker {
    pub fn new(id: usize, cfg: Arc<RunConfig>, ctl: Arc<Control>) -> Result<Worker, LoadError> {
        let threads = cfg.threads.max(1);
        let n = (cfg.conns as usize).saturating_sub(id).div_ceil(threads);
        let poll = Poll::new()?;
        let timer = TimerFd::new()?;
        timer.register(poll.registry(), TIMER)?;
        let sink = Sink::new(cfg.run_id, cfg.format, cfg.rooms);
        Ok(Worker {
            id,
            threads,
            poll,
            events: Events::with_capacity(1024),
            timer,
            armed_for: 0,
            conns: (0..n).map(|_| None).collect(),
            sink,
            scratch: vec![0u8; 256 * 1024],
            dirty: Vec::new(),
            is_dirty: vec![false; n],
            pending: (0..n).collect(),
            first_started: 0,
            failed_delta: 0,
            sent_delta: 0,
            room_sent_delta: vec![0; cfg.rooms as usize],
            t0: 0,
            started: false,
            sched: None,
            due: Due::default(),
            warmup_end: u64::MAX,
            end_ns: u64::MAX,
            next_ping: u64::MAX,
            next_churn: u64::MAX,
            churn_cursor: 0,
            next_timeout_scan: 0,
            next_interval_push: 0,
            msg: String::new(),
            frame: String::new(),
            retry: RetryQueue::default(),
            rng: Rng::new(0x2545_F491_4F6C_DD1D ^ ((id as u64) << 40) ^ clock::now_ns()),
            outage_done: false,
            went_down_delta: 0,
            typing_due: vec![u64::MAX; n],
            next_typing: u64::MAX,
            cfg,
            ctl,
        })
    }

    fn index_of(&self, slot: usize) -> u32 {
        (self.id + slot * self.threads) as u32
    }

    /// Runs until the main thread says stop; returns this worker's statistics.
    pub fn run(&mut self) -> Stats {
        self.t0 = clock::now_ns();
        loop {
            if self.ctl.stop.load(Ordering::Acquire) {
                self.shutdown();
                break;
            }
            let now = clock::now_ns();
            let next_connect = self.start_due_connects(now);
            if now >= self.next_timeout_scan {
                self.expire_connects(now);
                self.next_timeout_scan = now + 50_000_000;
            }
            if !self.started {
                let s = self.ctl.start_ns.load(Ordering::Acquire);
                if s != 0 {
                    self.begin(s);
                }
            }
            if self.started {
                // Before the sends: a message queued now would die unwritten with its socket.
                self.outage(now);
                self.send_due();
                self.hold_pings(now);
                self.typing(now);
                self.churn(now);
            }
            // Reconnects are queued only once started; retried first connects also before.
            self.start_due_retries(now);
            self.flush_dirty();
            self.publish(now);
            let wake = self
                .due
                .next_due()
                .unwrap_or(u64::MAX)
                .min(next_connect)
                .min(self.retry.next_due().unwrap_or(u64::MAX));
            let now = clock::now_ns();
            let timeout = if wake <= now {
                Duration::ZERO
            } else if wake - now < TICK_NS {
                if self.armed_for != wake {
                    let _ = self.timer.arm(Duration::from_nanos(wake - now));
                    self.armed_for = wake;
                }
                Duration::from_nanos(TICK_NS + 5_000_000)
            } else {
                Duration::from_nanos(TICK_NS)
            };
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                self.sink.stats.error("poll_failed");
                break;
            }
            self.sink.now = clock::now_ns();
            let ready: Vec<(Token, bool, bool, bool)> = self
                .events
                .iter()
                .map(|e| {
                    (e.token(), e.is_readable() || e.is_read_closed() || e.is_error(), e.is_writable(), e.is_error())
                })
                .collect();
            for (token, readable, writable, error) in ready {
                if token == TIMER {
                    self.timer.drain();
                    self.armed_for = 0;
                } else {
                    self.on_io(token.0, readable, writable, error);
                }
            }
        }
        std::mem::replace(&mut self.sink.stats, Stats::new(0))
    }

    /// Starts connects whose time has come; returns when the next one is due.
    fn start_due_connects(&mut self, now: u64) -> u64 {
        while let Some(&slot) = self.pending.front() {
            let index = self.index_of(slot);
            let intended = match self.cfg.connect_rate {
                Some(r) if r > 0.0 => self.t0 + (index as f64 * 1e9 / r) as u64,
                _ => {
                    let settled = self.sink.stats.connects_ok + self.sink.stats.connects_failed;
                    if self.first_started - settled >= MAX_IN_FLIGHT {
                        return u64::MAX;
                    }
                    now
                }
            };
            if intended > now {
                return intended;
            }
            self.pending.pop_front();
            self.first_started += 1;
            self.connect(slot, intended);
        }
        u64::MAX
    }

    fn path_for(&self, meta: &Meta) -> String {
        let room = protocol::room_name(meta.room);
        let since = if meta.attempts > 1 { meta.last_id } else { None };
        let params =
            protocol::connect_params(self.cfg.format, self.cfg.room_param.then_some(room.as_str()), meta.index, since);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.cfg.target.request_path(&pairs)
    }

    /// Opens (or re-opens) the socket of `slot`.
    fn connect(&mut self, slot: usize, intended: u64) {
        let index = self.index_of(slot);
        let src =
            (!self.cfg.source_ips.is_empty()).then(|| self.cfg.source_ips[index as usize % self.cfg.source_ips.len()]);
        let result = net::start_connect(self.cfg.target.addr, src);
        let first_retry = self.conns[slot].as_mut().is_some_and(|c| std::mem::take(&mut c.meta.first_retry_pending));
        let is_sender =
            index < self.cfg.senders && matches!(self.cfg.mode, Mode::Broadcast | Mode::Churn | Mode::Avalanche);
        match result {
            Ok(mut stream) => {
                if let Err(e) =
                    self.poll.registry().register(&mut stream, Token(slot), Interest::READABLE | Interest::WRITABLE)
                {
                    self.record_failure(slot, net::io_kind(&e), true);
                    return;
                }
                match &mut self.conns[slot] {
                    Some(c) if first_retry => {
                        // The first connect again: still attempt 1, no catch-up to time.
                        c.reset(stream);
                        c.meta.connect_ns = intended;
                    }
                    Some(c) => {
                        c.reset(stream);
                        c.meta.attempts += 1;
                        c.meta.connect_ns = intended;
                        // Catch-up needs message ids (JSON); the text protocol has none.
                        if self.cfg.mode == Mode::Avalanche && self.cfg.format == Format::Json {
                            c.meta.catchup_from = Some(intended);
                            c.meta.live_after = None;
                            // The first attempt since the loss (a failed one raised the backoff).
                            if c.meta.backoff == 0 {
                                c.meta.recover_from = Some(intended);
                            }
                        }
                    }
                    none => {
                        let meta = Meta {
                            index,
                            room: self.cfg.room_of(index),
                            sender: is_sender.then_some(index),
                            connect_ns: intended,
                            attempts: 1,
                            ..Meta::default()
                        };
                        let mut conn = Conn::new(stream, meta);
                        conn.offer_deflate = self.cfg.deflate;
                        *none = Some(conn);
                    }
                }
                if let Some(tls) = &self.cfg.target.tls {
                    let session = self.conns[slot].as_mut().map(|c| tls.session(&mut c.meta.tls_config));
                    match session {
                        Some(Ok(session)) => {
                            if let Some(c) = self.conns[slot].as_mut() {
                                c.set_tls(session);
                            }
                        }
                        Some(Err(_)) => self.record_failure(slot, "tls_setup", false),
                        None => {}
                    }
                }
            }
            Err(e) => {
                if let Some(c) = self.conns[slot].as_mut() {
                    // A reconnect attempt (or a first connect's retry) that failed before it began.
                    if !first_retry {
                        c.meta.attempts += 1;
                    }
                    c.meta.settled = false;
                }
                self.record_failure(slot, net::io_kind(&e), self.conns[slot].is_none())
            }
        }
    }

    /// Counts a failed connect or a lost connection, and closes the socket if there is one.
    fn record_failure(&mut self, slot: usize, kind: &str, first_attempt_without_conn: bool) {
        if self.ctl.stop.load(Ordering::Relaxed) {
            return;
        }
        self.sink.stats.error(kind);
        let Some(c) = self.conns[slot].as_mut() else {
            if first_attempt_without_conn {
                self.sink.stats.connects_failed += 1;
                self.failed_delta += 1;
            }
            return;
        };
        if c.phase != Phase::Closed {
            let _ = self.poll.registry().deregister(&mut c.stream);
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            c.phase = Phase::Closed;
        }
        c.meta.ready = false;
        let failed_attempt = !c.meta.settled;
        if failed_attempt {
            c.meta.settled = true;
            let retries = self.cfg.avalanche.as_ref().map_or(0, |a| a.connect_retries);
            if c.meta.attempts <= 1 && c.meta.first_retries < retries {
                // Avalanche: a failed first connect tries again (a TLS server over its handshake
                // bound closes new connections at once), backing off like a reconnect.
                let delay = reconnect::backoff_ns(c.meta.first_retries, &mut self.rng);
                c.meta.first_retries += 1;
                c.meta.first_retry_pending = true;
                let st = &mut self.sink.stats;
                st.first_connect_retries += 1;
                *st.first_connect_retry_errors.entry(kind.to_string()).or_default() += 1;
                self.retry.push(clock::now_ns() + delay, slot);
                return;
            }
            if c.meta.attempts <= 1 {
                self.sink.stats.connects_failed += 1;
                self.failed_delta += 1;
                return;
            }
        }
        let now = clock::now_ns();
        if self.cfg.mode == Mode::Avalanche && self.started {
            if failed_attempt {
                // A reconnect attempt failed: wait like the web client before the next.
                let st = &mut self.sink.stats;
                st.reconnect_failures += 1;
                *st.reconnect_errors.entry(kind.to_string()).or_default() += 1;
                let delay = reconnect::backoff_ns(c.meta.backoff, &mut self.rng);
                c.meta.backoff += 1;
                self.retry.push(now + delay, slot);
                return;
            }
            // A live connection ended (the server went away): reconnect within the jitter.
            self.went_down_delta += 1;
            c.meta.backoff = 0;
            let jitter = self.cfg.avalanche.as_ref().map_or(0, |a| a.jitter.as_nanos() as u64);
            self.retry.push(now + self.rng.below(jitter), slot);
        }
        self.sink.stats.disconnects += 1;
    }

    /// Avalanche `--drop`: when the outage begins, resets every client's connection at once and
    /// schedules its reconnect after the outage, spread over the jitter.
    fn outage(&mut self, now: u64) {
        let Some(av) = self.cfg.avalanche.as_ref() else { return };
        if self.outage_done {
            return;
        }
        let at = self.ctl.outage_ns.load(Ordering::Acquire);
        if at == 0 || now < at {
            return;
        }
        self.outage_done = true;
        if !av.drop {
            return;
        }
        let (base, jitter) = (at + av.outage.as_nanos() as u64, av.jitter.as_nanos() as u64);
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else { continue };
            if c.phase == Phase::Closed {
                continue;
            }
            let Ok(placeholder) = net::placeholder_stream() else {
                self.sink.stats.error("drop_failed");
                continue;
            };
            net::set_abortive_close(&c.stream);
            let _ = self.poll.registry().deregister(&mut c.stream);
            // Closing the old socket now sends the RST.
            drop(std::mem::replace(&mut c.stream, placeholder));
            c.phase = Phase::Closed;
            c.meta.ready = false;
            c.meta.backoff = 0;
            self.sink.stats.disconnects += 1;
            if c.meta.settled {
                self.went_down_delta += 1;
            }
            self.retry.push(base + self.rng.below(jitter), slot);
        }
    }

    /// Starts the reconnect attempts whose time has come.
    fn start_due_retries(&mut self, now: u64) {
        while let Some((at, slot)) = self.retry.pop_due(now) {
            let Some(c) = self.conns[slot].as_ref().filter(|c| c.phase == Phase::Closed) else {
                continue;
            };
            if !c.meta.first_retry_pending {
                self.sink.stats.reconnect_attempts += 1;
                self.sink.stats.reconnects += 1;
            }
            self.connect(slot, at);
        }
    }

    /// Fails connection attempts that exceeded `--connect-timeout`.
    fn expire_connects(&mut self, now: u64) {
        let limit = self.cfg.connect_timeout.as_nanos() as u64;
        let expired: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.as_ref()?;
                (c.phase != Phase::Closed && !c.meta.settled && now.saturating_sub(c.meta.connect_ns) > limit)
                    .then_some(i)
            })
            .collect();
        for slot in expired {
            self.record_failure(slot, "connect_timeout", false);
        }
    }

    fn mark_dirty(&mut self, slot: usize) {
        if !self.is_dirty[slot] {
            self.is_dirty[slot] = true;
            self.dirty.push(slot);
        }
    }

    fn on_io(&mut self, slot: usize, readable: bool, writable: bool, error: bool) {
        let Some(c) = self.conns.get(slot).and_then(Option::as_ref) else {
            return;
        };
        match c.phase {
            Phase::Closed => return,
            Phase::Connecting if writable || readable || error => {
                let path = self.path_for(&c.meta);
                let host = self.cfg.target.host_header();
                let Some(c) = self.conns[slot].as_mut() else {
                    return;
                };
                if let Err(e) = c.on_connected(&host, &path) {
                    let kind = e.kind();
                    self.record_failure(slot, &kind, false);
                    return;
                }
                if c.wants_write() {
                    self.mark_dirty(slot);
                }
            }
            _ => {}
        }
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if readable && c.phase != Phase::Connecting {
            let sink = &mut self.sink;
            let result = c.on_readable(&mut self.scratch, &mut |m, ev| sink.on_event(m, ev));
            sink.stats.wire_in += std::mem::take(&mut c.wire_in);
            let wants = c.wants_write();
            if let Err(e) = result {
                let kind = e.kind();
                self.record_failure(slot, &kind, false);
                return;
            }
            if wants {
                self.mark_dirty(slot);
            }
        }
        if writable && self.conns[slot].as_ref().is_some_and(Conn::wants_write) {
            self.mark_dirty(slot);
        }
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            self.is_dirty[slot] = false;
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            if c.phase == Phase::Closed || c.phase == Phase::Connecting {
                continue;
            }
            let flushed = c.flush();
            self.sink.stats.wire_out += std::mem::take(&mut c.wire_out);
            if let Err(e) = flushed {
                let kind = e.kind();
                self.record_failure(slot, &kind, false);
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Enters the measured run: fixes recipients and arms the send schedule.
    fn begin(&mut self, start_ns: u64) {
        self.started = true;
        self.warmup_end = start_ns + self.cfg.warmup.as_nanos() as u64;
        self.end_ns = self.warmup_end + self.cfg.duration.as_nanos() as u64;
        self.sink.warmup_end = self.warmup_end;
        let sched = Schedule::new(start_ns, self.cfg.rate, self.cfg.senders);
        for c in self.conns.iter_mut().flatten() {
            if !c.meta.ready || c.phase != Phase::Open {
                continue;
            }
            c.meta.counting = true;
            let room = c.meta.room as usize;
            if let Some(r) = self.sink.stats.rooms.get_mut(room) {
                r.recipients += 1;
            }
            self.ctl.room_recipients[room].fetch_add(1, Ordering::Relaxed);
            if let Some(s) = c.meta.sender {
                self.due.add(&sched, s);
            }
        }
        self.sched = Some(sched);
        self.arm_typing(start_ns);
        if self.cfg.mode == Mode::Hold {
            self.next_ping = start_ns;
        }
        if self.cfg.mode == Mode::Churn {
            self.next_churn = self.warmup_end + self.cfg.churn_interval.as_nanos() as u64;
        }
    }

    fn send_due(&mut self) {
        let Some(sched) = self.sched.clone() else {
            return;
        };
        let now = clock::now_ns();
        while let Some((sender, seq, intended)) = self.due.pop_due(&sched, now, self.end_ns) {
            let slot = sender as usize / self.threads;
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            if c.phase != Phase::Open || !c.meta.ready {
                self.sink.stats.error("send_skipped_disconnected");
                continue;
            }
            let sent_ns = clock::now_ns();
            let m = Marker { run_id: self.cfg.run_id, sender, seq, intended_ns: intended, sent_ns };
            marker::format_with(&mut self.msg, &m, self.cfg.size, self.cfg.text);
            let room = c.meta.room;
            let edit_of = c.meta.own_last_id.filter(|_| picks_edit(sender, seq, self.cfg.edit_fraction));
            match self.cfg.format {
                Format::Text => c.send_text(self.msg.as_bytes()),
                Format::Json => {
                    let client_id = format!("{:x}-{sender}-{seq}", self.cfg.run_id);
                    let room = protocol::room_name(room);
                    match edit_of {
                        Some(id) => protocol::encode_edit(&room, id, &self.msg, &client_id, &mut self.frame),
                        None => protocol::encode_message(Format::Json, &room, &self.msg, &client_id, &mut self.frame),
                    }
                    c.send_text(self.frame.as_bytes());
                }
            }
            self.mark_dirty(slot);
            let st = &mut self.sink.stats;
            if intended >= self.warmup_end {
                st.sent += 1;
                st.edits_sent += u64::from(edit_of.is_some());
                self.sent_delta += 1;
                if let Some(r) = st.rooms.get_mut(room as usize) {
                    r.sent += 1;
                }
                self.room_sent_delta[room as usize] += 1;
                record_ns(&mut st.send_lag, sent_ns.saturating_sub(intended));
            } else {
                st.sent_warmup += 1;
            }
        }
    }

    /// `--typists`: spreads the typists' first `typing` over one interval from `start_ns`.
    fn arm_typing(&mut self, start_ns: u64) {
        let (typists, every) = (self.cfg.typists, self.cfg.typing_interval.as_nanos() as u64);
        for slot in 0..self.conns.len() {
            let index = self.index_of(slot);
            if index < typists {
                self.typing_due[slot] = start_ns + every * u64::from(index) / u64::from(typists);
            }
        }
        self.next_typing = self.typing_due.iter().copied().min().unwrap_or(u64::MAX);
    }

    /// Sends the `typing` commands that are due (until the measured window ends).
    fn typing(&mut self, now: u64) {
        if now < self.next_typing {
            return;
        }
        if now >= self.end_ns {
            self.next_typing = u64::MAX;
            return;
        }
        let every = self.cfg.typing_interval.as_nanos() as u64;
        let mut next = u64::MAX;
        for slot in 0..self.conns.len() {
            let due = self.typing_due[slot];
            if due <= now {
                self.typing_due[slot] = due + every * (now - due).div_ceil(every).max(1);
                if let Some(c) = self.conns[slot].as_mut().filter(|c| c.phase == Phase::Open && c.meta.ready) {
                    protocol::encode_typing(&protocol::room_name(c.meta.room), &mut self.frame);
                    c.send_text(self.frame.as_bytes());
                    self.mark_dirty(slot);
                    if now >= self.warmup_end {
                        self.sink.stats.typing_sent += 1;
                    }
                }
            }
            next = next.min(self.typing_due[slot]);
        }
        self.next_typing = next;
    }

    fn hold_pings(&mut self, now: u64) {
        if self.cfg.mode != Mode::Hold || now < self.next_ping || now >= self.end_ns {
            return;
        }
        self.next_ping = now + self.cfg.ping_interval.as_nanos() as u64;
        let payload = clock::now_ns().to_be_bytes();
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            if c.phase == Phase::Open {
                c.send_ping(&payload);
                self.sink.stats.pings_sent += 1;
                self.mark_dirty(slot);
            }
        }
    }

    /// Drops a fraction of the non-sending clients abruptly and reconnects them at once.
    fn churn(&mut self, now: u64) {
        if self.cfg.mode != Mode::Churn || now < self.next_churn || now >= self.end_ns {
            return;
        }
        self.next_churn = now + self.cfg.churn_interval.as_nanos() as u64;
        let candidates: Vec<usize> = (0..self.conns.len())
            .filter(|&s| {
                self.conns[s]
                    .as_ref()
                    .is_some_and(|c| c.meta.sender.is_none() && c.meta.counting && c.phase == Phase::Open)
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let k = ((candidates.len() as f64 * self.cfg.churn_fraction).ceil() as usize).min(candidates.len());
        for i in 0..k {
            let slot = candidates[(self.churn_cursor + i) % candidates.len()];
            if let Some(c) = self.conns[slot].as_mut() {
                net::set_abortive_close(&c.stream);
                let _ = self.poll.registry().deregister(&mut c.stream);
                c.phase = Phase::Closed;
            }
            self.sink.stats.reconnects += 1;
            self.connect(slot, clock::now_ns());
        }
        self.churn_cursor = (self.churn_cursor + k) % candidates.len().max(1);
    }

    /// Publishes counters for the progress line and the drain check.
    fn publish(&mut self, now: u64) {
        let ctl = &self.ctl;
        if self.sink.ready_delta > 0 {
            ctl.connected.fetch_add(std::mem::take(&mut self.sink.ready_delta), Ordering::Relaxed);
        }
        if self.sink.rejoined_delta > 0 {
            ctl.rejoined.fetch_add(std::mem::take(&mut self.sink.rejoined_delta), Ordering::Relaxed);
        }
        if self.went_down_delta > 0 {
            ctl.went_down.fetch_add(std::mem::take(&mut self.went_down_delta), Ordering::Relaxed);
        }
        if self.failed_delta > 0 {
            ctl.failed.fetch_add(std::mem::take(&mut self.failed_delta), Ordering::Relaxed);
        }
        for (i, d) in self.room_sent_delta.iter_mut().enumerate() {
            if *d > 0 {
                ctl.room_sent[i].fetch_add(std::mem::take(d), Ordering::Relaxed);
            }
        }
        if self.sent_delta > 0 {
            ctl.sent.fetch_add(std::mem::take(&mut self.sent_delta), Ordering::Relaxed);
        }
        if self.sink.delivered_delta > 0 {
            ctl.delivered.fetch_add(std::mem::take(&mut self.sink.delivered_delta), Ordering::Relaxed);
        }
        if now >= self.next_interval_push && !self.sink.interval.is_empty() {
            self.next_interval_push = now + 250_000_000;
            if let Ok(mut h) = ctl.interval.try_lock() {
                let _ = h.add(&self.sink.interval);
                self.sink.interval.reset();
            }
        }
    }

    /// Records every receiving connection's own p99, then closes every open connection politely
    /// (best effort, one flush).
    fn shutdown(&mut self) {
        for c in self.conns.iter_mut().flatten() {
            if let Some(h) = c.meta.latency.as_ref().filter(|h| !h.is_empty()) {
                let p99 = h.value_at_quantile(0.99).clamp(1, crate::stats::MAX_US);
                self.sink.stats.conn_p99.saturating_record(p99);
            }
            if self.cfg.mode == Mode::Avalanche && c.meta.counting {
                if c.meta.catchup_from.is_some() {
                    self.sink.stats.not_caught_up += 1;
                }
                if !(c.phase == Phase::Open && c.meta.ready) {
                    self.sink.stats.not_connected_at_end += 1;
                }
                let r = std::mem::take(&mut c.meta.recipient);
                self.sink.stats.recipients.push((c.meta.room, r));
            }
        }
        for c in self.conns.iter_mut().flatten() {
            if c.phase == Phase::Open {
                c.send_close();
                let _ = c.flush();
            }
        }
        self.conns.clear();
    }
}

/// Whether scheduled send `seq` of `sender` is an edit, for a fraction `f` of the sends: a fixed
/// hash of the pair, so every run with the same options edits the same sends.
fn picks_edit(sender: u32, seq: u64, f: f64) -> bool {
    if f <= 0.0 {
        return false;
    }
    let mut x = seq ^ (u64::from(sender) << 40) ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64 <= f
}

#[cfg(test)]
mod tests {
    use super::picks_edit;

    #[test]
    fn edit_picks_follow_the_fraction() {
        let picked = (0..100_000u64).filter(|&s| picks_edit(3, s, 0.1)).count();
        assert!((9_000..11_000).contains(&picked), "{picked}");
        assert!(!(0..1000u64).any(|s| picks_edit(3, s, 0.0)));
        assert!((0..1000u64).all(|s| picks_edit(3, s, 1.0)));
    }
}
