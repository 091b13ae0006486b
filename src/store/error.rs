//! The store's error type: one variant per way opening, writing, flushing or querying can fail.
//!
//! Commit failures inside the writer thread (disk full, read-only file, `SQLITE_BUSY`) never surface
//! here: the writer keeps the batch and retries (see the module docs); they show up in
//! [`StoreStats::commit_errors`](super::StoreStats::commit_errors) and in `tracing` warnings.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use crate::types::Sequenced;

/// Everything that can go wrong in the persistence layer.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// A [`StoreConfig`](super::StoreConfig) field has a value the store cannot work with
    /// (the message names the field).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(&'static str),

    /// SQLite could not open (or create) the database file.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The `--db` path that was given.
        path: PathBuf,
        /// SQLite's reason.
        #[source]
        source: rusqlite::Error,
    },

    /// Another process holds the database's lock file (`<db>.lock`, see `lock.rs`): another server
    /// runs on the same database.
    #[error(
        "database is in use: another process holds its lock file {} ({})",
        path.display(),
        holder.map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}"))
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The pid the holder wrote into it, if it could be read.
        holder: Option<u32>,
    },

    /// The database's lock file could not be created, opened or locked.
    #[error("cannot lock the database with {}: {source}", path.display())]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Setting up a connection (pragmas, reading the schema version or the largest id) failed.
    #[error("cannot set up database connection ({step}): {source}")]
    Setup {
        /// What was being done, e.g. `"set synchronous"`.
        step: &'static str,
        /// SQLite's reason.
        #[source]
        source: rusqlite::Error,
    },

    /// The database refused to switch to WAL journal mode (e.g. an in-memory database).
    #[error("database does not support WAL journal mode (journal_mode stayed {0:?}); use a file path")]
    NoWal(String),

    /// The database was written by a newer roomcast whose schema this build does not know.
    #[error(
        "database schema version {found} is newer than the newest this build knows ({supported}); \
         upgrade roomcast or point --db at another file"
    )]
    SchemaTooNew {
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest schema version this build can migrate to.
        supported: i64,
    },

    /// Applying the migration to schema version `version` failed; the database is left at the
    /// previous version (each migration is one transaction).
    #[error("schema migration to version {version} failed: {source}")]
    Migration {
        /// The version the failed migration would have produced.
        version: i64,
        /// SQLite's reason.
        #[source]
        source: rusqlite::Error,
    },

    /// A history query failed inside SQLite.
    #[error("history query failed: {0}")]
    Query(#[source] rusqlite::Error),

    /// A [`HistoryQuery`](super::HistoryQuery) set both `before_id` and `after_id`.
    #[error("history query sets both before_id and after_id; they are exclusive")]
    BothCursors,

    /// A history read could not include every message clients had already received: the writer did
    /// not commit them within the wait (a stalled disk, a full disk, another process holding the
    /// database's write lock) or it is gone. Answering from what is committed would leave a gap, so
    /// the read is refused; retry later.
    #[error(
        "messages already delivered are not yet stored (committed {committed} of {visible} records); history is unavailable until the writer catches up"
    )]
    NotVisible {
        /// Records the read had to include.
        visible: u64,
        /// Records committed when it gave up.
        committed: u64,
    },

    /// The history reader pool's request queue is full; the request was not queued.
    #[error("history readers are busy ({capacity} requests already queued); try again later")]
    Busy {
        /// The reader queue's capacity.
        capacity: usize,
    },

    /// [`StoreWriter::enqueue_blocking`](super::StoreWriter::enqueue_blocking) waited its whole
    /// timeout and the write queue stayed full; the record is handed back.
    #[error("write queue stayed full for {waited:?}; record {} not accepted", record.id)]
    EnqueueTimeout {
        /// How long the call waited.
        waited: Duration,
        /// The record that was not accepted.
        record: Arc<Sequenced>,
    },

    /// A flush with a deadline ran out of time before the writer committed everything enqueued
    /// before the call (no caller sets a deadline today; `Store::flush` waits without one).
    #[error("flush did not finish within {waited:?} (committed {committed} of {target} records)")]
    FlushTimeout {
        /// How long the call waited.
        waited: Duration,
        /// The writer's commit watermark when the call gave up.
        committed: u64,
        /// The watermark the call was waiting for.
        target: u64,
    },

    /// The store is shut down (or shutting down): no more records or queries are accepted.
    #[error("store is shut down")]
    Closed,

    /// The writer thread stopped before committing what a flush waited for (only after a panic,
    /// which is a bug).
    #[error("writer thread stopped at commit watermark {committed}, before reaching {target}")]
    WriterGone {
        /// The watermark when the writer stopped.
        committed: u64,
        /// The watermark the caller waited for.
        target: u64,
    },

    /// The operating system refused to start one of the store's threads.
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        /// Thread name.
        name: String,
        /// The OS's reason.
        #[source]
        source: std::io::Error,
    },

    /// One of the store's threads panicked (a bug); found when joining it in `shutdown`.
    #[error("thread {name} panicked")]
    ThreadPanicked {
        /// Thread name.
        name: String,
    },
}
