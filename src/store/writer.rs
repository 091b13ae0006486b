//! The write-behind thread: drains the bounded record channel into batches, commits each batch in
//! one transaction with one cached prepared statement, retries failed commits with backoff while
//! keeping the batch in memory, advances the commit watermark, trims rooms beyond
//! `retain_per_room`, and performs the final drain at shutdown. Beside the log records it takes the
//! change feed's moderation events (`moderation_log.rs`) into the same batches: it alone numbers
//! feed positions, in commit order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::ceiling::IdCeiling;
use super::moderation_log::{self, ModerationRecord};
use super::schema::{SET_CEILING_SQL, synchronous};
use super::state::{Ctrl, Shared, bump};
use crate::deferred::DeferredReceiver;
use crate::protocol::dm;
use crate::types::{Event, Sequenced};

/// First wait after a failed commit.
pub(crate) const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two commit attempts.
pub(crate) const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most rows one retention step deletes (one short transaction between two insert batches).
const TRIM_BUDGET: u64 = 2048;

const INSERT_SQL: &str = "INSERT OR IGNORE INTO messages (id, room, kind, user, content, created_at, target, pos) \
                          VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
/// An edit: the target message (of the same room, not deleted) takes the new content.
const EDIT_SQL: &str = "UPDATE messages SET content = ?3, edited_at = ?4 \
                        WHERE id = ?1 AND room = ?2 AND kind = 0 AND deleted = 0";
/// A delete: the target message loses its content ...
const DELETE_SQL: &str = "UPDATE messages SET content = '', deleted = 1 WHERE id = ?1 AND room = ?2 AND kind = 0";
/// A direct-message room is listed for both of its users once it holds a message.
const DM_ROOM_SQL: &str = "INSERT OR IGNORE INTO dm_rooms (user, room) VALUES (?1, ?2)";
/// A read marker only ever goes up.
const READ_SQL: &str = "INSERT INTO read_markers (room, user, last_read) VALUES (?1, ?2, ?3) \
                        ON CONFLICT (room, user) DO UPDATE SET last_read = MAX(last_read, excluded.last_read)";
/// ... and so do its edits.
const DELETE_EDITS_SQL: &str = "UPDATE messages SET content = '' WHERE target = ?1 AND room = ?2 AND kind = 1";
/// The id of the (N+1)-th newest message of a room (retention counts messages, not their edits and
/// deletes): every row at or below it is beyond retention.
pub(crate) const CUTOFF_SQL: &str = "SELECT id FROM messages INDEXED BY messages_room_id \
     WHERE room = ?1 AND kind = 0 ORDER BY id DESC LIMIT 1 OFFSET ?2";
/// Once a room is trimmed to a cutoff: the later edits and deletes of messages that went with it.
pub(crate) const TRIM_ORPHANS_SQL: &str = "DELETE FROM messages WHERE target <= ?2 AND room = ?1";
pub(crate) const TRIM_SQL: &str = "DELETE FROM messages WHERE id IN \
                        (SELECT id FROM messages INDEXED BY messages_room_id \
                         WHERE room = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)";

/// The writer's share of [`StoreConfig`](super::StoreConfig).
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) retain_per_room: Option<u64>,
    /// The configured `synchronous=FULL` (restored after a ceiling commit, which always syncs).
    pub(crate) sync_full: bool,
    /// The id ceiling to raise along with batches (see `ceiling.rs`).
    pub(crate) ceiling: Option<Arc<IdCeiling>>,
    /// The largest change-feed position stored (`schema::max_pos`): new rows are numbered after it.
    pub(crate) last_pos: u64,
}

/// Starts the writer thread.
pub(crate) fn spawn(
    conn: Connection,
    data: DeferredReceiver<Arc<Sequenced>>,
    moderation: Receiver<ModerationRecord>,
    ctrl: Receiver<Ctrl>,
    shared: Arc<Shared>,
    cfg: WriterConfig,
) -> Result<JoinHandle<()>, StoreError> {
    let name = "store-writer".to_string();
    let retention = cfg.retain_per_room.map(Retention::new);
    let writer = Writer {
        conn,
        data,
        moderation,
        ctrl,
        batch: Vec::with_capacity(cfg.batch_size),
        decisions: Vec::new(),
        last_pos: cfg.last_pos,
        first_at: None,
        urgent: false,
        shutting_down: false,
        shared,
        cfg,
        retention,
    };
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || writer.run())
        .map_err(|source| StoreError::Spawn { name, source })
}

/// Marks the writer gone when the thread ends, even by unwinding, so nobody waits forever.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.close_gate();
        self.0.writer_exited();
    }
}

struct Writer {
    conn: Connection,
    data: DeferredReceiver<Arc<Sequenced>>,
    /// The change feed's moderation events (bounded; each send also wakes the writer).
    moderation: Receiver<ModerationRecord>,
    ctrl: Receiver<Ctrl>,
    shared: Arc<Shared>,
    cfg: WriterConfig,
    /// Records received but not yet committed, in channel order.
    batch: Vec<Arc<Sequenced>>,
    /// Moderation events received but not yet committed (with the batch, after its rows).
    decisions: Vec<ModerationRecord>,
    /// The change-feed position of the last row committed (rows are numbered in commit order).
    last_pos: u64,
    /// When the batch's first record was received.
    first_at: Option<Instant>,
    /// A flush was requested: commit as soon as the channel is empty.
    urgent: bool,
    /// Shutdown was requested (gate already closed): drain, commit, exit.
    shutting_down: bool,
    retention: Option<Retention>,
}

impl Writer {
    fn run(mut self) {
        let _guard = ExitGuard(Arc::clone(&self.shared));
        loop {
            self.poll_ctrl();
            let channel_empty = self.fill();
            let full = self.batch.len() + self.decisions.len() >= self.cfg.batch_size;
            let interval_due = self.first_at.is_some_and(|t| t.elapsed() >= self.cfg.flush_interval);
            let drain_now = (self.urgent || self.shutting_down) && channel_empty;
            let pending = !self.batch.is_empty() || !self.decisions.is_empty();
            if pending && (full || interval_due || drain_now) {
                self.commit_batch();
                self.trim_step(false);
                continue;
            }
            if !pending && channel_empty {
                self.urgent = false;
                if self.shutting_down {
                    break;
                }
            }
            self.wait();
        }
        tracing::debug!(committed = self.shared.committed(), "store: writer drained and stopped");
    }

    /// Handles every pending control message without blocking.
    fn poll_ctrl(&mut self) {
        loop {
            match self.ctrl.try_recv() {
                Ok(msg) => self.on_ctrl(msg),
                Err(TryRecvError::Empty) => return,
                // The Store is gone (dropped): behave as if it asked for shutdown.
                Err(TryRecvError::Disconnected) => {
                    self.begin_shutdown();
                    return;
                }
            }
        }
    }

    fn on_ctrl(&mut self, msg: Ctrl) {
        match msg {
            Ctrl::Flush => self.urgent = true,
            Ctrl::Shutdown => self.begin_shutdown(),
            Ctrl::Wake => {}
        }
    }

    fn begin_shutdown(&mut self) {
        if !self.shutting_down {
            // After this no producer can send; everything accepted is already in the channel.
            self.shared.close_gate();
            self.shutting_down = true;
        }
    }

    /// Moves queued records (and moderation events) into the batch without blocking, up to
    /// `batch_size`. Returns true when both channels were seen empty (or disconnected).
    fn fill(&mut self) -> bool {
        while self.decisions.len() < self.cfg.batch_size {
            match self.moderation.try_recv() {
                Ok(decision) => {
                    if self.batch.is_empty() && self.decisions.is_empty() {
                        self.first_at = Some(Instant::now());
                    }
                    self.decisions.push(decision);
                }
                Err(_) => break,
            }
        }
        while self.batch.len() < self.cfg.batch_size {
            match self.data.try_recv() {
                Ok(rec) => self.push(rec),
                Err(TryRecvError::Empty) => return self.moderation.is_empty(),
                Err(TryRecvError::Disconnected) => {
                    self.begin_shutdown();
                    return self.moderation.is_empty();
                }
            }
        }
        false
    }

    fn push(&mut self, rec: Arc<Sequenced>) {
        if self.batch.is_empty() && self.decisions.is_empty() {
            self.first_at = Some(Instant::now());
        }
        self.batch.push(rec);
    }

    /// Blocks until the batch's flush deadline or a control message (a producer's wake-up among
    /// them); with an empty batch and retention work pending, at most one flush interval (an idle
    /// trim). The writer never blocks on the record channel itself: records arriving one by one do
    /// not wake it. With an empty batch it first marks itself idle, so the producer of the next
    /// record wakes it (see `StoreWriter::try_enqueue_deferred`).
    fn wait(&mut self) {
        let timeout = match self.first_at {
            Some(first) => Some((first + self.cfg.flush_interval).saturating_duration_since(Instant::now())),
            None if self.retention.as_ref().is_some_and(Retention::has_work) => Some(self.cfg.flush_interval),
            None => None,
        };
        let counters = &self.shared.counters;
        if self.first_at.is_none() && !self.data.go_idle() {
            // A record arrived before the idle flag was visible: take it instead of sleeping.
            return;
        }
        let event = match timeout {
            Some(t) => self.ctrl.recv_timeout(t),
            None => self.ctrl.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        self.data.busy();
        match event {
            Ok(Ctrl::Wake) => bump(&counters.wakeups_producer, 1),
            Ok(msg) => {
                bump(&counters.wakeups_control, 1);
                self.on_ctrl(msg);
            }
            Err(RecvTimeoutError::Timeout) => {
                bump(&counters.wakeups_timer, 1);
                if self.batch.is_empty() {
                    self.trim_step(true);
                }
            }
            Err(RecvTimeoutError::Disconnected) => self.begin_shutdown(),
        }
    }

    /// Commits the batch, retrying with backoff until it succeeds (the batch stays in memory and
    /// the queue backs up meanwhile), then advances the watermark.
    fn commit_batch(&mut self) {
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        let mut backoff = RETRY_BACKOFF_MIN;
        let mut failures: u64 = 0;
        let max_id = self.batch.iter().map(|rec| rec.id).max().unwrap_or(0);
        let ceiling = self.cfg.ceiling.as_ref().and_then(|c| c.wanted(max_id));
        let outcome = loop {
            #[cfg(test)]
            self.apply_fault();
            let attempt = Instant::now();
            let rows = Rows { log: &self.batch, decisions: &self.decisions };
            match insert_batch(&mut self.conn, rows, ceiling, self.cfg.sync_full, self.last_pos) {
                Ok(outcome) => {
                    shared.histograms.commit_seconds.observe_duration(attempt.elapsed());
                    break outcome;
                }
                Err(err) => {
                    failures += 1;
                    // `retrying` first: whoever sees the error count also sees the flag.
                    counters.retrying.store(true, Ordering::SeqCst);
                    bump(&counters.commit_errors, 1);
                    if failures == 1 {
                        tracing::warn!(
                            error = %err,
                            batch = self.batch.len(),
                            "store: committing a batch of chat messages failed; keeping it in \
                             memory and retrying with backoff (100 ms up to 5 s); the write queue \
                             fills meanwhile and shards apply backpressure"
                        );
                    } else {
                        tracing::debug!(error = %err, failures, "store: commit retry failed");
                    }
                    self.sleep_responsive(backoff);
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                }
            }
        };
        if let (Some(shared_ceiling), Some(committed)) = (&self.cfg.ceiling, ceiling) {
            shared_ceiling.committed(committed);
        }
        if failures > 0 {
            counters.retrying.store(false, Ordering::SeqCst);
            tracing::info!(failures, batch = self.batch.len(), "store: commit succeeded again after failures");
        }
        if outcome.rejected > 0 {
            tracing::warn!(
                rejected = outcome.rejected,
                first_rejected_id = outcome.first_rejected_id,
                "store: dropped records whose id is already stored or beyond i64::MAX (a bug in \
                 id assignment)"
            );
        }
        let n = self.batch.len() as u64;
        self.last_pos = outcome.last_pos;
        bump(&counters.rows_written, outcome.inserted);
        bump(&counters.rows_rejected, outcome.rejected);
        bump(&counters.batches, 1);
        counters.last_batch_size.store(n, Ordering::SeqCst);
        shared.histograms.batch_rows.observe(n);
        if let Some(retention) = &mut self.retention {
            for rec in &self.batch {
                retention.note(&rec.room);
            }
        }
        self.batch.clear();
        self.decisions.clear();
        self.first_at = None;
        self.shared.advance_committed(n);
        self.shared.ring_feed();
    }

    /// Sleeps for `d` while still taking control messages (so a shutdown closes the gate at once).
    fn sleep_responsive(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.ctrl.recv_timeout(left) {
                Ok(msg) => self.on_ctrl(msg),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    self.begin_shutdown();
                    std::thread::sleep(left);
                    return;
                }
            }
        }
    }

    #[cfg(test)]
    fn apply_fault(&self) {
        let pages = self.shared.fault.max_page_count.load(Ordering::SeqCst);
        if pages > 0 {
            let pages = i64::try_from(pages).unwrap_or(i64::MAX);
            let _ = self.conn.pragma_update(None, "max_page_count", pages);
        }
    }

    /// One bounded retention step (at most [`TRIM_BUDGET`] rows, one transaction). `idle` also
    /// trims rooms that received fewer rows than the slack since their last trim.
    fn trim_step(&mut self, idle: bool) {
        let Some(retention) = &mut self.retention else {
            return;
        };
        if !retention.has_work() || Instant::now() < retention.retry_at {
            return;
        }
        let rooms = retention.candidates(idle);
        if rooms.is_empty() {
            return;
        }
        match trim_rooms(&mut self.conn, &rooms, retention.keep, TRIM_BUDGET) {
            Ok((deleted, done)) => {
                bump(&self.shared.counters.rows_trimmed, deleted);
                retention.finished(&done);
                if retention.failures > 0 {
                    tracing::info!(failures = retention.failures, "store: retention trimming works again");
                    retention.failures = 0;
                }
            }
            Err(err) => {
                bump(&self.shared.counters.trim_errors, 1);
                if retention.failures == 0 {
                    tracing::warn!(error = %err, "store: retention trim failed; will retry later");
                }
                retention.failures += 1;
                let shift = retention.failures.min(6) as u32;
                let backoff = (RETRY_BACKOFF_MIN * 2u32.pow(shift)).min(RETRY_BACKOFF_MAX);
                retention.retry_at = Instant::now() + backoff;
            }
        }
    }
}

/// What one committed batch did.
#[derive(Debug, Default)]
struct BatchOutcome {
    inserted: u64,
    /// Rows skipped because their id exists already or does not fit SQLite's INTEGER.
    rejected: u64,
    first_rejected_id: Option<u64>,
    /// The change-feed position of the last row inserted (the previous one when none was).
    last_pos: u64,
}

/// What one transaction writes: the log records, then the moderation events.
#[derive(Clone, Copy)]
struct Rows<'a> {
    log: &'a [Arc<Sequenced>],
    decisions: &'a [ModerationRecord],
}

/// Inserts the batch in one transaction with the cached insert statement; with `ceiling`, raises
/// the id ceiling in the same transaction and commits it with `synchronous=FULL`.
fn insert_batch(
    conn: &mut Connection,
    batch: Rows<'_>,
    ceiling: Option<u64>,
    sync_full: bool,
    last_pos: u64,
) -> rusqlite::Result<BatchOutcome> {
    if ceiling.is_none() {
        return insert_rows(conn, batch, None, last_pos);
    }
    synchronous(conn, true)?;
    let result = insert_rows(conn, batch, ceiling, last_pos);
    if let Err(err) = synchronous(conn, sync_full) {
        tracing::warn!(error = %err, "store: could not restore the synchronous level after an id-ceiling commit");
    }
    result
}

fn insert_rows(
    conn: &mut Connection,
    batch: Rows<'_>,
    ceiling: Option<u64>,
    last_pos: u64,
) -> rusqlite::Result<BatchOutcome> {
    let tx = conn.transaction()?;
    if let Some(ceiling) = ceiling {
        tx.execute(SET_CEILING_SQL, [i64::try_from(ceiling).unwrap_or(i64::MAX)])?;
    }
    // Positions are taken in this transaction's order and kept only if it commits (a retry numbers
    // the batch again from the same place).
    let mut outcome = BatchOutcome { last_pos, ..BatchOutcome::default() };
    for rec in batch.log {
        let pos = i64::try_from(outcome.last_pos + 1).unwrap_or(i64::MAX);
        let changed = match i64::try_from(rec.id) {
            Ok(id) => insert_row(&tx, id, rec, pos)?,
            Err(_) => 0,
        };
        if changed == 1 {
            if !matches!(rec.event, Event::Read(_)) {
                outcome.last_pos += 1;
            }
            outcome.inserted += 1;
        } else {
            outcome.rejected += 1;
            outcome.first_rejected_id.get_or_insert(rec.id);
        }
    }
    for decision in batch.decisions {
        outcome.last_pos += 1;
        moderation_log::insert(&tx, decision, i64::try_from(outcome.last_pos).unwrap_or(i64::MAX))?;
    }
    tx.commit()?;
    Ok(outcome)
}

/// Writes one event as the row with id `id`, and applies an edit or a delete to its target message
/// (an edit of a message deleted meanwhile is kept without content: a deleted message's words are
/// gone from every row); returns the rows inserted (0: the id exists, and nothing was applied).
/// Every kind of [`Event`] maps to a row here (`kind` is [`crate::types::EventKind::code`]).
/// `pos` is the row's change-feed position (a read marker writes no log row and takes none).
fn insert_row(tx: &rusqlite::Transaction<'_>, id: i64, rec: &Sequenced, pos: i64) -> rusqlite::Result<usize> {
    let kind = rec.event.kind().code();
    let mut insert = tx.prepare_cached(INSERT_SQL)?;
    let target = rec.event.target().and_then(|t| i64::try_from(t).ok());
    match &rec.event {
        Event::Message(msg) => {
            let inserted =
                insert.execute(params![id, rec.room, kind, msg.user, msg.content, rec.at_ms, target, pos])?;
            if inserted == 1 {
                // The server API's key, in the message's transaction: both are stored, or neither.
                if let Some(key) = &rec.idempotency_key {
                    tx.prepare_cached(super::control::REMEMBER_KEY_SQL)?.execute(params![
                        key.as_ref(),
                        id,
                        rec.at_ms
                    ])?;
                }
                if let Some(Ok((a, b))) = dm::users_of(&rec.room) {
                    let mut listed = tx.prepare_cached(DM_ROOM_SQL)?;
                    listed.execute(params![a, rec.room])?;
                    listed.execute(params![b, rec.room])?;
                }
            }
            Ok(inserted)
        }
        Event::Edit(edit) => {
            let inserted =
                insert.execute(params![id, rec.room, kind, edit.user, edit.content, rec.at_ms, target, pos])?;
            if inserted == 1 {
                let applied =
                    tx.prepare_cached(EDIT_SQL)?.execute(params![target, rec.room, edit.content, rec.at_ms])?;
                if applied == 0 {
                    tx.prepare_cached("UPDATE messages SET content = '' WHERE id = ?1")?.execute([id])?;
                }
            }
            Ok(inserted)
        }
        // A marker is state, not history: only the user's row in `read_markers` is raised (a room
        // of 1,000 readers would otherwise write a log row per reader per marker). Idempotent, so a
        // replay raises nothing twice.
        Event::Read(read) => tx.prepare_cached(READ_SQL)?.execute(params![rec.room, read.user, target]).map(|_| 1),
        Event::Delete(delete) => {
            let inserted = insert.execute(params![id, rec.room, kind, delete.user, "", rec.at_ms, target, pos])?;
            if inserted == 1 {
                tx.prepare_cached(DELETE_SQL)?.execute(params![target, rec.room])?;
                tx.prepare_cached(DELETE_EDITS_SQL)?.execute(params![target, rec.room])?;
            }
            Ok(inserted)
        }
    }
}

/// Deletes, for each room, rows older than its `keep` newest, at most `budget` rows in all.
/// Returns the number deleted and the rooms that are now within the limit.
fn trim_rooms(
    conn: &mut Connection,
    rooms: &[Arc<str>],
    keep: i64,
    mut budget: u64,
) -> rusqlite::Result<(u64, Vec<Arc<str>>)> {
    let tx = conn.transaction()?;
    let mut deleted = 0;
    let mut done = Vec::new();
    {
        let mut cutoff_stmt = tx.prepare_cached(CUTOFF_SQL)?;
        let mut trim_stmt = tx.prepare_cached(TRIM_SQL)?;
        for room in rooms {
            if budget == 0 {
                break;
            }
            let cutoff: Option<i64> = cutoff_stmt.query_row(params![room, keep], |row| row.get(0)).optional()?;
            let Some(cutoff) = cutoff else {
                done.push(Arc::clone(room));
                continue;
            };
            let chunk = budget;
            let limit = i64::try_from(chunk).unwrap_or(i64::MAX);
            let n = trim_stmt.execute(params![room, cutoff, limit])? as u64;
            deleted += n;
            budget = budget.saturating_sub(n);
            // Fewer rows than allowed went: nothing older than the cutoff is left.
            if n < chunk {
                let orphans = tx.prepare_cached(TRIM_ORPHANS_SQL)?.execute(params![room, cutoff])? as u64;
                deleted += orphans;
                done.push(Arc::clone(room));
            }
        }
    }
    tx.commit()?;
    Ok((deleted, done))
}

/// Which rooms may hold more than `keep` rows.
///
/// A room becomes a candidate after `slack` new rows (`keep / 16`, 1..=1024) so the O(keep)
/// cutoff lookup is amortised over many inserts; when the writer is idle every room that received
/// rows is trimmed, so a quiet room converges to exactly `keep` rows.
struct Retention {
    keep: i64,
    slack: u64,
    /// Rows received per room since that room was last found within the limit.
    pending: HashMap<Arc<str>, u64>,
    failures: u64,
    retry_at: Instant,
}

impl Retention {
    fn new(keep: u64) -> Self {
        Retention {
            keep: i64::try_from(keep).unwrap_or(i64::MAX),
            slack: (keep / 16).clamp(1, 1024),
            pending: HashMap::new(),
            failures: 0,
            retry_at: Instant::now(),
        }
    }

    fn note(&mut self, room: &Arc<str>) {
        match self.pending.get_mut(room) {
            Some(n) => *n += 1,
            None => {
                self.pending.insert(Arc::clone(room), 1);
            }
        }
    }

    fn has_work(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Rooms to look at in this step (bounded, so one step stays short).
    fn candidates(&self, idle: bool) -> Vec<Arc<str>> {
        self.pending
            .iter()
            .filter(|&(_, &n)| idle || n >= self.slack)
            .take(64)
            .map(|(room, _)| Arc::clone(room))
            .collect()
    }

    /// After a successful step: rooms in `done` are within the limit; the others keep their count.
    fn finished(&mut self, done: &[Arc<str>]) {
        for room in done {
            self.pending.remove(room);
        }
    }
}
