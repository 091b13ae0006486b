//! Persistence: the only module that touches SQLite. It owns a write-behind queue (shards enqueue
//! sequenced events ([`Sequenced`], shared with the live delivery as an `Arc`) without blocking;
//! one writer thread commits them in batches) and a pool of
//! history readers with their own read-only connections.
//!
//! # One server per database
//! [`Store::open`] first takes an exclusive `flock` on `<db>.lock` beside the database and holds it
//! until the `Store` is dropped; a second process on the same file gets [`StoreError::Locked`] with
//! the holder's pid. A lock file rather than a lock on the database file (SQLite's own POSIX locks
//! on that file are dropped when any descriptor of it is closed), released by the kernel however the
//! process ends: see `lock.rs`.
//!
//! # Threads and handles
//! [`Store::open`] opens the database (creating or migrating the schema, switching to WAL), reads
//! the largest stored id ([`Store::max_id`]), and starts one writer thread (`store-writer`) and
//! `readers` reader threads (`store-reader-N`). Shards get a cheap [`StoreWriter`] clone each.
//!
//! # Batching
//! The writer drains a bounded crossbeam channel (`queue_capacity` records) into a batch and
//! commits it in one transaction with one cached prepared statement when the batch reaches
//! `batch_size` rows, or when `flush_interval` has passed since the batch's first record,
//! whichever comes first ([`Store::flush`] and shutdown commit at once).
//!
//! # Durability window
//! The database runs in WAL mode. With `sync_full = false` (`synchronous=NORMAL`) a committed
//! batch survives a crash of the process (kill -9), but an OS crash or power loss may lose the
//! last committed batches (WAL is only fsynced at checkpoints). With `sync_full = true`
//! (`synchronous=FULL`) every commit fsyncs the WAL, so a committed batch survives power loss,
//! at the cost of one fsync per batch. Records still in the queue or in the uncommitted batch (at
//! most `queue_capacity + batch_size` records, normally about `flush_interval` worth of traffic)
//! are lost by any crash; [`Store::shutdown`] loses none.
//!
//! # Ids across restarts
//! Ids are shown to clients before their records are committed, so with `id_block` set the store
//! keeps an id ceiling committed ahead of use (`ceiling.rs`): after any crash the server continues
//! above every id it may have shown ([`Store::start_id`]), never reusing one. Lost records leave
//! gaps in the ids, never duplicates. A clean stop ([`Store::shutdown_clean`], after the final
//! drain) records the last id used as the ceiling instead, so the next start continues right after
//! it: only a crash skips the unused rest of the block.
//!
//! # Read-your-writes across the write-behind boundary
//! Decision: a history request waits for the **commit watermark**. Every record a client has
//! received was enqueued before it was fanned out, so a request that carries
//! `visible_seq = StoreWriter::enqueued_seq()` (read when the request arrived) and waits until
//! `committed_seq >= visible_seq` sees every message any client had already received.
//!
//! That needs the counter to follow channel order. Incrementing an atomic after an unlocked
//! `try_send` is not enough: producer A can send r1, producer B send r2 and count it first, and a
//! reader holding `visible_seq = 1` would then accept a watermark covering r1 only. So every
//! enqueue holds a short enqueue gate (a `parking_lot` mutex around the non-blocking `try_send`
//! and the increment): the first N records in the channel are then exactly the first N counted.
//! Crossbeam's bounded channel is FIFO and the writer is its only consumer, and it advances
//! `committed_seq` by the batch length only after COMMIT returns, under a mutex whose condition
//! variable wakes waiting readers. A reader that has to wait first asks the writer to commit now
//! (`Ctrl::Flush`), so it waits for one commit rather than the rest of the flush interval; many
//! waiting readers collapse into one early commit. The reader waits at most `visible_wait` (default 2 s); after
//! that it refuses the read with [`StoreError::NotVisible`] and logs a warning (counted in
//! [`StoreStats::visible_wait_timeouts`]): a page without messages clients already received would be
//! a gap (a resume would then go live past it), so a stalled writer (a full disk, another process
//! holding the write lock) makes history unavailable rather than wrong. The same gate closes the queue at shutdown, so no
//! record can be accepted after the writer's final drain.
//!
//! # Backpressure
//! [`StoreWriter::try_enqueue`] never blocks and hands the record back when the queue is full.
//! [`StoreWriter::is_congested`] turns true at `depth >= capacity - capacity / 8`: the last
//! eighth of the queue is a reserve for messages already read from sockets while the shards stop
//! reading from sending clients, so a congested store slows senders before anything is refused.
//!
//! # Commit failures
//! Disk full, a read-only file, `SQLITE_BUSY` (after `busy_timeout`) or any other error while
//! inserting or committing rolls the transaction back; the writer keeps the batch in memory,
//! logs one `warn` per failure streak (and one `info` when it recovers), counts every failed
//! attempt in [`StoreStats::commit_errors`], and retries after 100 ms, doubling up to 5 s. It
//! drains nothing meanwhile, so the queue fills and backpressure applies; nothing panics and no
//! accepted record is dropped. Records that can never be stored (an id already present, or above
//! `i64::MAX`) are not retried: they are skipped, counted in [`StoreStats::rows_rejected`] and
//! logged, since id assignment is the reactor's job and such a record means a bug there.
//!
//! # Retention
//! With `retain_per_room = Some(n)`, after each batch the writer runs one bounded trim step (one
//! short transaction deleting at most 2048 rows) for rooms that received at least
//! `clamp(n / 16, 1, 1024)` rows since they were last within the limit; when idle it trims every
//! room that received rows. A busy room may therefore briefly hold up to about `n + n/16` rows;
//! a quiet one converges to exactly `n`. Rooms that never receive new rows are not trimmed.
//!
//! # Schema
//! A rowid table `messages(id INTEGER PRIMARY KEY, room, user, content, created_at)` plus an
//! index on `(room, id)`, and (version 2) a `meta(key, value)` table holding the id ceiling,
//! versioned with `PRAGMA user_version` (see `schema.rs`). Ids arrive in
//! increasing order, so table inserts are appends and only the narrow index takes inserts in the
//! middle. The alternative, a `WITHOUT ROWID` table clustered on `(room, id)` plus a unique index
//! on `id`, was measured with raw SQL (`benches/store.rs`, group `layout`, 200k rows in 100 rooms,
//! WAL + NORMAL, 512-row transactions, on the shared 2-core dev machine): inserts 195k rows/s for
//! the rowid layout against 59–64k rows/s clustered (every insert lands in the middle of a
//! wide-row b-tree, 100 insertion points); a 200-row `id < ?` page took 91–126 µs against 59–61 µs
//! clustered; space was about the same (27.5 vs 26.2 rows per page). The writer is the
//! throughput-critical path and a page read is far below a millisecond either way, so the rowid
//! layout stays. History and retention queries name the index with `INDEXED BY`: after `ANALYZE`
//! on a table with few rooms SQLite otherwise prefers walking the rowid backwards, which is a full
//! scan for a small room.
//!
//! # Shutdown
//! [`Store::shutdown`] closes the queue, lets the writer drain and commit every accepted record
//! (retrying commit failures as above, so it blocks while the disk stays full), then stops the
//! readers after they answer every queued request, and joins all threads. Dropping a `Store`
//! does the same and logs instead of returning errors. After shutdown `try_enqueue` hands
//! records back and `query` answers [`StoreError::Closed`].

mod ceiling;
mod control;
mod error;
mod feed;
mod lock;
mod moderation_log;
mod outbox;
mod reader;
mod schema;
mod state;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use crate::deferred::{self, DeferredSender, Wake};

use crate::metrics::HistogramSnapshot;
use crate::types::Sequenced;

pub(crate) use ceiling::{IdCeiling, id_block};
pub(crate) use control::{ControlOp, ControlSnapshot, ControlStore};
pub use error::StoreError;
pub use feed::{FeedItem, FeedPage};
use feed::{FeedReply, FeedRequest};
pub use moderation_log::{ModerationLog, ModerationRecord};
pub(crate) use outbox::{OutboxReader, OutboxWriter};

use lock::DbLock;
pub use reader::Target;
use reader::{DmRoomsReply, LookupPlan, LookupReply, Plan, ReadStateReply, Request};
use state::{Ctrl, Shared, WaitOutcome, bump};
use writer::WriterConfig;

/// How to open and run the store. `Default` gives the documented server defaults.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Database file (`--db`, default `roomcast.db`). Must be a file: WAL and the separate reader
    /// connections do not work with `:memory:`.
    pub path: PathBuf,
    /// Commit a batch when it reaches this many rows (default 512).
    pub batch_size: usize,
    /// ...or when this long has passed since the batch's first record (default 10 ms).
    pub flush_interval: Duration,
    /// Capacity of the bounded write queue, in records (default 65 536).
    pub queue_capacity: usize,
    /// `false`: WAL + `synchronous=NORMAL`; `true`: `synchronous=FULL`, one fsync per batch.
    pub sync_full: bool,
    /// `None`: keep everything; `Some(n)`: the writer trims each room to its newest `n` rows.
    pub retain_per_room: Option<u64>,
    /// History reader threads, each with its own read-only connection (default 2).
    pub readers: usize,
    /// Capacity of the history request queue; `query` answers [`StoreError::Busy`] when it is
    /// full (default 1024).
    pub reader_queue: usize,
    /// Longest a history request waits for its `visible_seq` to be committed (default 2 s).
    pub visible_wait: Duration,
    /// Longest [`StoreWriter::enqueue_blocking`] waits for room in the queue (default 1 s).
    pub enqueue_timeout: Duration,
    /// SQLite busy timeout on every connection (default 1 s); a commit still busy after it counts
    /// as a commit error and is retried.
    pub busy_timeout: Duration,
    /// `Some(block)`: keep an id ceiling (see `ceiling.rs`; the server uses [`id_block`]) so ids are
    /// never reused after a crash; `None` (the default, and cluster mode, where Redis assigns ids):
    /// ids continue after the largest stored id.
    pub id_block: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("roomcast.db"),
            batch_size: 512,
            flush_interval: Duration::from_millis(10),
            queue_capacity: 65_536,
            sync_full: false,
            retain_per_room: None,
            readers: 2,
            reader_queue: 1024,
            visible_wait: Duration::from_secs(2),
            enqueue_timeout: Duration::from_secs(1),
            busy_timeout: Duration::from_secs(1),
            id_block: None,
        }
    }
}

impl StoreConfig {
    fn validate(&self) -> Result<(), StoreError> {
        let bad = |what| Err(StoreError::InvalidConfig(what));
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1");
        }
        if self.readers == 0 {
            return bad("readers must be at least 1");
        }
        if self.reader_queue == 0 {
            return bad("reader_queue must be at least 1");
        }
        if self.id_block == Some(0) {
            return bad("id_block must be at least 1");
        }
        if self.retain_per_room == Some(0) {
            return bad("retain_per_room must be at least 1 (use None to keep everything)");
        }
        Ok(())
    }
}

/// A request for one page of a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Room name.
    pub room: String,
    /// Newest-first page of ids `< before_id` (`None` with `after_id` also `None`: the newest
    /// messages). Exclusive with `after_id`.
    pub before_id: Option<u64>,
    /// Oldest-first page of ids `> after_id` (catch-up / resume). Exclusive with `before_id`.
    pub after_id: Option<u64>,
    /// Page size; clamped into `1..=MAX_PAGE_LIMIT` (callers clamp tighter themselves).
    pub limit: usize,
    /// Read-your-writes token: [`StoreWriter::enqueued_seq`] taken when the request arrived. The
    /// reader waits (up to `visible_wait`) until the writer has committed that many records.
    /// 0 means "do not wait".
    pub visible_seq: u64,
    /// `false`: messages only, each as it is now (history pages); `true`: every event of the room's
    /// log after `after_id` — messages, edits, deletes — in order (resume pages).
    pub whole_log: bool,
}

/// One page of history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// Newest first for `before_id`/newest queries, oldest first for `after_id` queries.
    pub messages: Vec<Sequenced>,
    /// More messages exist beyond this page in the same direction.
    pub has_more: bool,
}

/// A snapshot of the store's counters (all since `open`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoreStats {
    /// Records waiting in the write queue now.
    pub(crate) queue_depth: usize,
    /// Write queue capacity.
    pub(crate) queue_capacity: usize,
    /// Whether [`StoreWriter::is_congested`] is true now.
    pub(crate) congested: bool,
    /// Records accepted so far.
    pub(crate) enqueued_seq: u64,
    /// Records the writer has finished with (committed or rejected), in queue order.
    pub(crate) committed_seq: u64,
    /// Rows inserted.
    pub(crate) rows_written: u64,
    /// Records skipped as unstorable (duplicate id or id above `i64::MAX`).
    pub(crate) rows_rejected: u64,
    /// Batches committed.
    pub(crate) batches: u64,
    /// Size of the last committed batch.
    pub(crate) last_batch_size: u64,
    /// Failed commit attempts (each retry that fails counts once).
    pub(crate) commit_errors: u64,
    /// The writer is inside a failure streak, retrying a batch.
    pub(crate) retrying: bool,
    /// Rows deleted by retention.
    pub(crate) rows_trimmed: u64,
    /// Failed retention steps.
    pub(crate) trim_errors: u64,
    /// History requests answered with a page.
    pub(crate) queries_served: u64,
    /// History requests that failed in SQLite.
    pub(crate) queries_failed: u64,
    /// History requests refused with [`StoreError::Busy`].
    pub(crate) queries_rejected_busy: u64,
    /// History requests answered after `visible_wait` ran out.
    pub(crate) visible_wait_timeouts: u64,
    /// History requests waiting for a reader now.
    pub(crate) reader_queue_depth: usize,
    /// Change-feed consumers streaming now.
    pub(crate) feed_consumers: u64,
    /// Events handed to change-feed consumers.
    pub(crate) feed_events: u64,
    /// Change-feed consumers closed because they stopped reading.
    pub(crate) feed_closed_slow: u64,
    /// Moderation decisions left out of the change feed (its queue full, or the store closed).
    pub(crate) moderation_dropped: u64,
    /// Times the writer thread woke up, by cause.
    pub(crate) writer_wakeups: WriterWakeups,
}

/// Why the store writer woke up, counted since `open`. The writer sleeps on its control channel,
/// never on the record channel, so records arriving one by one do not wake it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriterWakeups {
    /// The flush interval of the oldest queued record ran out (a flush tick).
    pub(crate) timer: u64,
    /// A producer woke it: the queue reached `batch_size`, or a record arrived while it was idle.
    pub(crate) producer: u64,
    /// A control message: an early commit for a history read, or shutdown.
    pub(crate) control: u64,
}

/// The writer's histograms (for `/metrics`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoreHistograms {
    /// Rows per committed batch.
    pub(crate) batch_rows: HistogramSnapshot,
    /// Seconds taken by the successful insert + COMMIT of each batch (failed attempts are counted in
    /// [`StoreStats::commit_errors`], not here).
    pub(crate) commit_seconds: HistogramSnapshot,
}

/// The persistence layer: owns the writer thread and the reader pool. `Send + Sync`; share it
/// behind an `Arc` or hand out [`StoreWriter`]s.
pub struct Store {
    shared: Arc<Shared>,
    max_id: u64,
    start_id: u64,
    epoch: u64,
    ceiling: Option<Arc<IdCeiling>>,
    data_tx: DeferredSender<Arc<Sequenced>>,
    ctrl_tx: Sender<Ctrl>,
    /// The change feed's moderation events, for the writer (`moderation_log.rs`).
    moderation_tx: Sender<ModerationRecord>,
    /// `None` once the readers were told to stop.
    req_tx: Option<Sender<Request>>,
    reader_queue: usize,
    writer_thread: Option<JoinHandle<()>>,
    reader_threads: Vec<(String, JoinHandle<()>)>,
    /// The change feed's request queue (`None` once told to stop) and thread.
    feed_tx: Option<Sender<FeedRequest>>,
    feed_thread: Option<JoinHandle<()>>,
    /// The database and busy timeout, for [`Store::shutdown_clean`]'s own connection.
    path: PathBuf,
    busy_timeout: Duration,
    /// One server per database (`lock.rs`): held until the Store is dropped, after its threads.
    _lock: Option<DbLock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("max_id", &self.max_id).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database, migrates the schema, switches to WAL, reads the largest
    /// stored id and starts the writer and reader threads.
    ///
    /// # Errors
    /// [`StoreError::InvalidConfig`] for unusable settings; [`StoreError::Locked`] when another process
    /// holds the database (`lock.rs`), [`StoreError::LockFile`] when its lock file cannot be made;
    /// [`StoreError::Open`],
    /// [`StoreError::Setup`], [`StoreError::NoWal`] when SQLite cannot open or configure the file;
    /// [`StoreError::SchemaTooNew`] when the file comes from a newer build;
    /// [`StoreError::Migration`] when a migration fails; [`StoreError::Spawn`] when a thread cannot
    /// be started.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        cfg.validate()?;
        // Before anything reads or changes the file. SQLite's special names are no files to lock
        // (and fail below: no WAL).
        let special = cfg.path.as_os_str().is_empty() || cfg.path.as_os_str() == ":memory:";
        let lock = if special { None } else { Some(DbLock::acquire(&cfg.path)?) };
        let mut writer_conn = schema::open_writer(&cfg.path, cfg.sync_full, cfg.busy_timeout)?;
        let max_id = schema::max_id(&writer_conn)?;
        let epoch = schema::epoch(&writer_conn)?;
        let (start_id, ceiling) = match cfg.id_block {
            Some(block) => {
                let (start, ceiling) = schema::reserve_ids(&mut writer_conn, max_id, block, cfg.sync_full)?;
                (start, Some(Arc::new(IdCeiling::new(ceiling, block))))
            }
            None => (max_id, None),
        };
        let reader_conns = (0..cfg.readers)
            .map(|_| schema::open_reader(&cfg.path, cfg.busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let feed_conn = schema::open_reader(&cfg.path, cfg.busy_timeout)?;
        let last_pos = schema::max_pos(&writer_conn)?;

        let shared = Arc::new(Shared::new(cfg.enqueue_timeout));
        let holds = |table: &str| -> Result<bool, StoreError> {
            writer_conn
                .query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |row| row.get(0))
                .map_err(|source| StoreError::Setup { step: "look for read markers and direct messages", source })
        };
        shared.has_read_markers.store(holds("read_markers")?, Ordering::Relaxed);
        shared.has_dm_rooms.store(holds("dm_rooms")?, Ordering::Relaxed);
        let (data_tx, data_rx) = deferred::channel(Some(cfg.queue_capacity), cfg.batch_size);
        let (ctrl_tx, ctrl_rx) = crossbeam_channel::unbounded();
        let (moderation_tx, moderation_rx) = crossbeam_channel::bounded(moderation_log::QUEUE);
        let (req_tx, req_rx) = crossbeam_channel::bounded(cfg.reader_queue);
        let writer_cfg = WriterConfig {
            batch_size: cfg.batch_size,
            flush_interval: cfg.flush_interval,
            retain_per_room: cfg.retain_per_room,
            sync_full: cfg.sync_full,
            ceiling: ceiling.clone(),
            last_pos,
        };
        // If a later spawn fails, the threads already started see their channels disconnect
        // when these senders drop, drain and exit on their own.
        let writer_thread =
            writer::spawn(writer_conn, data_rx, moderation_rx, ctrl_rx, Arc::clone(&shared), writer_cfg)?;
        let reader_threads = reader::spawn_pool(reader_conns, &req_rx, &shared, cfg.visible_wait, &ctrl_tx)?;
        let (feed_tx, feed_rx) = crossbeam_channel::bounded(feed::QUEUE);
        let feed_thread = feed::spawn(feed_conn, feed_rx, Arc::clone(&shared))?;
        tracing::info!(
            path = %cfg.path.display(),
            max_id,
            start_id,
            id_ceiling = ceiling.as_ref().map(|c| c.durable()),
            sync_full = cfg.sync_full,
            batch_size = cfg.batch_size,
            readers = cfg.readers,
            "store: opened"
        );
        Ok(Store {
            shared,
            max_id,
            start_id,
            epoch,
            ceiling,
            data_tx,
            ctrl_tx,
            moderation_tx,
            req_tx: Some(req_tx),
            reader_queue: cfg.reader_queue,
            writer_thread: Some(writer_thread),
            reader_threads,
            feed_tx: Some(feed_tx),
            feed_thread: Some(feed_thread),
            path: cfg.path.clone(),
            busy_timeout: cfg.busy_timeout,
            _lock: lock,
        })
    }

    /// Opens the server API's control store on this database (see `control.rs`): what is in force at
    /// `now_ms`, idempotency keys younger than `key_window_ms`.
    ///
    /// # Errors
    /// As [`ControlStore::open`].
    pub(crate) fn open_control(
        &self,
        now_ms: i64,
        key_window_ms: i64,
    ) -> Result<(ControlStore, ControlSnapshot), StoreError> {
        ControlStore::open(&self.path, self.busy_timeout, now_ms, key_window_ms)
    }

    /// Opens the webhook outbox's appending side on this database (see `outbox.rs`), keeping only
    /// the rows of `urls`; with the number of rows held.
    ///
    /// # Errors
    /// As [`OutboxWriter::open`].
    pub(crate) fn open_outbox(&self, urls: &[&str]) -> Result<(OutboxWriter, u64), StoreError> {
        OutboxWriter::open(&self.path, self.busy_timeout, urls)
    }

    /// Opens the rows of one webhook URL for its delivery thread.
    ///
    /// # Errors
    /// As [`OutboxReader::open`].
    pub(crate) fn open_outbox_reader(&self, url: &str) -> Result<OutboxReader, StoreError> {
        OutboxReader::open(&self.path, self.busy_timeout, url)
    }

    /// Largest id stored when the database was opened (0 if empty).
    pub(crate) fn max_id(&self) -> u64 {
        self.max_id
    }

    /// Where a single node continues its ids: after every id it may have used before (the stored
    /// id ceiling, or the largest stored id without one).
    pub(crate) fn start_id(&self) -> u64 {
        self.start_id
    }

    /// The id ceiling, when the store keeps one (`StoreConfig::id_block`).
    /// The database's epoch (the name of its id space; see `schema::epoch`).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records accepted so far: the read-your-writes token for [`HistoryQuery::visible_seq`].
    pub(crate) fn enqueued_seq(&self) -> u64 {
        self.shared.enqueued.load(Ordering::SeqCst)
    }

    /// Whether any read marker may be stored: `false` lets a join skip the marker lookup (a server
    /// whose clients never send `read` adds no reader-pool work to joins).
    pub(crate) fn may_hold_read_markers(&self) -> bool {
        self.shared.has_read_markers.load(Ordering::Relaxed)
    }

    /// Whether any direct-message room may be stored (as above, for the list after `welcome`).
    pub(crate) fn may_hold_dm_rooms(&self) -> bool {
        self.shared.has_dm_rooms.load(Ordering::Relaxed)
    }

    pub(crate) fn id_ceiling(&self) -> Option<Arc<IdCeiling>> {
        self.ceiling.clone()
    }

    /// A handle for enqueuing records; clone one into every shard thread.
    pub fn writer(&self) -> StoreWriter {
        StoreWriter { tx: self.data_tx.clone(), ctrl: self.ctrl_tx.clone(), shared: Arc::clone(&self.shared) }
    }

    /// A handle that logs moderation decisions for the change feed (`moderation_log.rs`).
    pub fn moderation_log(&self) -> ModerationLog {
        ModerationLog { tx: self.moderation_tx.clone(), ctrl: self.ctrl_tx.clone(), shared: Arc::clone(&self.shared) }
    }

    /// Queues a history request for the reader pool and returns at once.
    ///
    /// The page is read on a pool thread, after waiting (bounded) for `q.visible_seq` to be
    /// committed, and `reply` is called from that pool thread. Errors found before queueing —
    /// [`StoreError::BothCursors`], [`StoreError::Busy`] (request queue full) and
    /// [`StoreError::Closed`] — are delivered by calling `reply` on the caller's thread before
    /// `query` returns; this never blocks.
    pub fn query(&self, q: HistoryQuery, reply: Box<dyn FnOnce(Result<HistoryPage, StoreError>) + Send>) {
        let plan = match Plan::new(q) {
            Ok(plan) => plan,
            Err(err) => return reply(Err(err)),
        };
        self.submit(Request::Page { plan, reply });
    }

    /// Queues the read of `user`'s read marker in `room` and of the number of messages above it, like
    /// [`Store::lookup`] (after `visible_seq` is committed; `reply` from a pool thread, or here).
    pub fn read_state(&self, room: Arc<str>, user: Arc<str>, visible_seq: u64, reply: ReadStateReply) {
        self.submit(Request::ReadState { room, user, visible_seq, reply });
    }

    /// Queues the read of `user`'s direct-message rooms, after `visible_seq` is committed (a room
    /// whose first message the user could know of is listed); `reply` from a pool thread, or here.
    pub fn dm_rooms(&self, user: Arc<str>, visible_seq: u64, reply: DmRoomsReply) {
        self.submit(Request::DmRooms { user, visible_seq, reply });
    }

    /// Queues the lookup of message `id` of `room` (for an edit or a delete: its author, whether it
    /// is deleted) for the reader pool and returns at once; like [`Store::query`], it waits for
    /// `visible_seq` to be committed first, and `reply` is called from a pool thread (or here, when
    /// the pool is busy or closed).
    pub fn lookup(&self, room: Arc<str>, id: u64, visible_seq: u64, reply: LookupReply) {
        self.submit(Request::Lookup { plan: LookupPlan { room, id, visible_seq }, reply });
    }

    /// A place for one more change-feed consumer, or `None` when `max` stream already. The place is
    /// given back when the returned slot is dropped (the consumer's connection is reaped).
    pub(crate) fn feed_slot(&self, max: u64) -> Option<FeedSlot> {
        let consumers = &self.shared.counters.feed_consumers;
        consumers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| FeedSlot { shared: Arc::clone(&self.shared) })
    }

    /// Queues the request for the change feed's page after position `after` (`feed.rs`) and returns
    /// at once; `reply` is called from the feed thread once rows after it are committed or the
    /// keepalive interval passed (an empty page), or here with [`StoreError::Busy`] (queue full) or
    /// [`StoreError::Closed`].
    pub(crate) fn feed(&self, after: u64, reply: FeedReply) {
        let Some(feed_tx) = &self.feed_tx else {
            return reply(Err(StoreError::Closed));
        };
        match feed_tx.try_send(FeedRequest { after, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(req)) => (req.reply)(Err(StoreError::Busy { capacity: feed::QUEUE })),
            Err(TrySendError::Disconnected(req)) => (req.reply)(Err(StoreError::Closed)),
        }
    }

    /// Counts a change-feed consumer closed because it stopped reading.
    pub(crate) fn feed_closed_slow(&self) {
        bump(&self.shared.counters.feed_closed_slow, 1);
    }

    /// Queues a request for the reader pool without blocking: a full queue answers
    /// [`StoreError::Busy`] and a closed store [`StoreError::Closed`], on the caller's thread.
    fn submit(&self, req: Request) {
        let Some(req_tx) = &self.req_tx else {
            return req.refuse(StoreError::Closed);
        };
        match req_tx.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(req)) => {
                bump(&self.shared.counters.queries_rejected_busy, 1);
                req.refuse(StoreError::Busy { capacity: self.reader_queue });
            }
            Err(TrySendError::Disconnected(req)) => req.refuse(StoreError::Closed),
        }
    }

    /// Blocks until every record enqueued before the call is committed (the writer commits at once
    /// instead of waiting for the flush interval). While commits fail it keeps waiting.
    ///
    /// # Errors
    /// [`StoreError::WriterGone`] if the writer thread stopped first (only after a bug).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_until(None)
    }

    fn flush_until(&self, timeout: Option<Duration>) -> Result<(), StoreError> {
        let start = Instant::now();
        let target = self.shared.enqueued.load(Ordering::SeqCst);
        if self.shared.committed() >= target {
            return Ok(());
        }
        // Ignored if the writer is gone: the wait below reports that.
        let _ = self.ctrl_tx.send(Ctrl::Flush);
        match self.shared.wait_committed(target, timeout.map(|t| start + t)) {
            WaitOutcome::Reached => Ok(()),
            WaitOutcome::TimedOut(committed) => {
                Err(StoreError::FlushTimeout { waited: start.elapsed(), committed, target })
            }
            WaitOutcome::WriterGone(committed) => Err(StoreError::WriterGone { committed, target }),
        }
    }

    /// Closes the write queue, drains and commits every accepted record, answers every queued
    /// history request, and joins all threads. Blocks while commits keep failing (see the module
    /// docs): no accepted record is lost.
    ///
    /// # Errors
    /// [`StoreError::ThreadPanicked`] if a store thread panicked (a bug); the other threads are
    /// still joined.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.close()
    }

    /// [`Store::shutdown`] for a server that stops cleanly: after the final drain, with an id
    /// ceiling, records `last_used_id` (the last id handed out; the caller has stopped everything
    /// that publishes) as the ceiling, so the next start continues right after it
    /// ([`schema::record_last_id`]). Only a crash then skips the rest of the reserved block. A
    /// failure to record it is logged, not returned: ids then skip the block, as after a crash.
    ///
    /// # Errors
    /// As [`Store::shutdown`]; nothing is recorded when the drain failed.
    pub(crate) fn shutdown_clean(mut self, last_used_id: u64) -> Result<(), StoreError> {
        self.close()?;
        if self.ceiling.is_some() {
            match schema::record_last_id(&self.path, self.busy_timeout, last_used_id) {
                Ok(ceiling) => tracing::info!(ceiling, "store: ids continue after the last one used"),
                Err(err) => tracing::warn!(%err, "store: could not record the last id; the next start skips ids"),
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), StoreError> {
        let mut result = Ok(());
        if let Some(handle) = self.writer_thread.take() {
            // Ignored if the writer already exited; joining tells.
            let _ = self.ctrl_tx.send(Ctrl::Shutdown);
            if handle.join().is_err() {
                result = Err(StoreError::ThreadPanicked { name: "store-writer".to_string() });
            }
        }
        // Readers answer what is queued, then see the channel disconnect and exit; so does the feed.
        self.req_tx = None;
        self.feed_tx = None;
        if let Some(handle) = self.feed_thread.take()
            && handle.join().is_err()
            && result.is_ok()
        {
            result = Err(StoreError::ThreadPanicked { name: "store-feed".to_string() });
        }
        for (name, handle) in self.reader_threads.drain(..) {
            if handle.join().is_err() && result.is_ok() {
                result = Err(StoreError::ThreadPanicked { name });
            }
        }
        result
    }

    /// A snapshot of the writer's histograms.
    pub(crate) fn histograms(&self) -> StoreHistograms {
        let h = &self.shared.histograms;
        StoreHistograms { batch_rows: h.batch_rows.snapshot(), commit_seconds: h.commit_seconds.snapshot() }
    }

    /// Whether the writer thread is running (false after shutdown, or after a panic: a bug).
    pub(crate) fn writer_alive(&self) -> bool {
        self.shared.writer_alive()
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let capacity = self.data_tx.capacity();
        let depth = self.data_tx.len();
        StoreStats {
            queue_depth: depth,
            queue_capacity: capacity,
            congested: self.data_tx.is_congested(),
            enqueued_seq: self.shared.enqueued.load(Ordering::SeqCst),
            committed_seq: self.shared.committed(),
            rows_written: c.rows_written.load(Ordering::SeqCst),
            rows_rejected: c.rows_rejected.load(Ordering::SeqCst),
            batches: c.batches.load(Ordering::SeqCst),
            last_batch_size: c.last_batch_size.load(Ordering::SeqCst),
            commit_errors: c.commit_errors.load(Ordering::SeqCst),
            retrying: c.retrying.load(Ordering::SeqCst),
            rows_trimmed: c.rows_trimmed.load(Ordering::SeqCst),
            trim_errors: c.trim_errors.load(Ordering::SeqCst),
            queries_served: c.queries_served.load(Ordering::SeqCst),
            queries_failed: c.queries_failed.load(Ordering::SeqCst),
            queries_rejected_busy: c.queries_rejected_busy.load(Ordering::SeqCst),
            visible_wait_timeouts: c.visible_wait_timeouts.load(Ordering::SeqCst),
            reader_queue_depth: self.req_tx.as_ref().map_or(0, Sender::len),
            feed_consumers: c.feed_consumers.load(Ordering::SeqCst),
            feed_events: c.feed_events.load(Ordering::SeqCst),
            feed_closed_slow: c.feed_closed_slow.load(Ordering::SeqCst),
            moderation_dropped: c.moderation_dropped.load(Ordering::SeqCst),
            writer_wakeups: WriterWakeups {
                timer: c.wakeups_timer.load(Ordering::SeqCst),
                producer: c.wakeups_producer.load(Ordering::SeqCst),
                control: c.wakeups_control.load(Ordering::SeqCst),
            },
        }
    }
}

impl Drop for Store {
    /// Drains and joins like [`Store::shutdown`], logging instead of returning errors.
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::error!(error = %err, "store: shutdown on drop failed");
        }
    }
}

/// One change-feed consumer's place (see [`Store::feed_slot`]); dropping it gives the place back.
pub(crate) struct FeedSlot {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FeedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSlot").finish_non_exhaustive()
    }
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        self.shared.counters.feed_consumers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A cheap, cloneable handle for shard threads to enqueue records.
#[derive(Clone)]
pub struct StoreWriter {
    tx: DeferredSender<Arc<Sequenced>>,
    ctrl: Sender<Ctrl>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("depth", &self.depth())
            .field("enqueued_seq", &self.enqueued_seq())
            .finish_non_exhaustive()
    }
}

impl StoreWriter {
    /// Queues `rec` for the writer without blocking (holds the enqueue gate for one `try_send`) and
    /// wakes the writer when it has to be woken.
    ///
    /// # Errors
    /// Hands `rec` back when the queue is full or the store is shut down
    /// ([`StoreWriter::is_closed`] tells which).
    pub fn try_enqueue(&self, rec: Arc<Sequenced>) -> Result<(), Arc<Sequenced>> {
        if self.try_enqueue_deferred(rec)? == Wake::Needed {
            self.wake();
        }
        Ok(())
    }

    /// Queues `rec` like [`StoreWriter::try_enqueue`] but never wakes the writer itself: it says
    /// whether the caller must ([`Wake::Needed`], then call [`StoreWriter::wake`] after releasing
    /// its locks). For the publish path, which holds a room's lock here: nothing in this call makes
    /// a syscall or wakes a thread (a `crate::deferred` hand-off: the writer never blocks on the
    /// record channel, only on its control channel).
    ///
    /// The writer is woken at most once per `batch_size` records (the queue reaching a batch) and
    /// once per idle-to-busy transition (the first record after the writer found nothing to do);
    /// otherwise it commits at its flush tick.
    ///
    /// # Errors
    /// As [`StoreWriter::try_enqueue`].
    pub(crate) fn try_enqueue_deferred(&self, rec: Arc<Sequenced>) -> Result<Wake, Arc<Sequenced>> {
        let gate = self.shared.gate.lock();
        if gate.closed {
            return Err(rec);
        }
        let wake = self.tx.try_push(rec)?;
        // Still under the gate: counter order == channel order (see module docs).
        self.shared.enqueued.fetch_add(1, Ordering::SeqCst);
        drop(gate);
        Ok(wake)
    }

    /// Wakes the writer (after [`StoreWriter::try_enqueue_deferred`] said so).
    pub(crate) fn wake(&self) {
        // Fails only once the writer is gone, when there is nothing left to wake.
        let _ = self.ctrl.send(Ctrl::Wake);
    }

    /// Queues `rec`, waiting up to the configured `enqueue_timeout` for the writer to make room.
    /// A fallback for callers that cannot hold the record themselves; shards should prefer
    /// [`StoreWriter::try_enqueue`] plus [`StoreWriter::is_congested`].
    ///
    /// # Errors
    /// [`StoreError::EnqueueTimeout`] (with the record) when the queue stayed full;
    /// [`StoreError::Closed`] when the store is shut down.
    pub(crate) fn enqueue_blocking(&self, rec: Arc<Sequenced>) -> Result<(), StoreError> {
        let start = Instant::now();
        let timeout = self.shared.enqueue_timeout;
        let mut pause = Duration::from_micros(50);
        let mut rec = rec;
        loop {
            match self.try_enqueue(rec) {
                Ok(()) => return Ok(()),
                Err(back) => rec = back,
            }
            if self.is_closed() {
                return Err(StoreError::Closed);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(StoreError::EnqueueTimeout { waited, record: rec });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// True when the queue holds at least `capacity - capacity / 8` records: shards should stop
    /// reading the sockets of sending clients until it clears (the last eighth is the reserve for
    /// messages already read).
    pub(crate) fn is_congested(&self) -> bool {
        self.tx.is_congested()
    }

    /// Records the queue still takes once congested (its last eighth).
    pub(crate) fn reserve(&self) -> usize {
        self.tx.reserve()
    }

    /// Records waiting in the queue now.
    pub(crate) fn depth(&self) -> usize {
        self.tx.len()
    }

    /// Records accepted so far: the read-your-writes token for [`HistoryQuery::visible_seq`].
    pub(crate) fn enqueued_seq(&self) -> u64 {
        self.shared.enqueued.load(Ordering::SeqCst)
    }

    /// Notes that `event` brings a read marker or a direct message (see [`Store::may_hold_read_markers`]);
    /// one relaxed store, safe under a room's lock.
    pub(crate) fn note_kind(&self, event: &Sequenced) {
        match &event.event {
            crate::types::Event::Read(_) => self.shared.has_read_markers.store(true, Ordering::Relaxed),
            crate::types::Event::Message(_) if event.room.starts_with(crate::protocol::dm::PREFIX) => {
                self.shared.has_dm_rooms.store(true, Ordering::Relaxed)
            }
            crate::types::Event::Message(_) | crate::types::Event::Edit(_) | crate::types::Event::Delete(_) => {}
        }
    }

    /// True once the store is shutting down and no longer accepts records.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}
