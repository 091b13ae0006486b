//! The change feed's moderation events (`GET /api/feed`, `event: moderation`): the handle that
//! queues a decision for the writer ([`ModerationLog`]), and the writer's insert into
//! `moderation_log` (schema version 9).
//!
//! Why through the writer and not the control thread (which stores bans and mutes): feed positions
//! must be dense and in commit order for every reader (`feed.rs`), and only one thread numbering
//! them in its own transactions makes that true. A decision takes the next position in the batch it
//! is committed with, after that batch's log rows; it is not ordered against messages otherwise (a
//! ban and a message of the same moment may be either way round).
//!
//! Bounds: a queue of [`QUEUE`] decisions; full, or the store closed: the record is dropped and
//! counted (`roomcast_feed_moderation_dropped_total`) and the decision itself stands. The table
//! keeps every decision like `messages` keeps every message (`--retain-per-room` does not trim it);
//! a flood of refusals is bounded by the per-connection message rate limit, which refused messages
//! count against too.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Sender, TrySendError};
use rusqlite::params;

use super::state::{Ctrl, Shared};

/// Decisions waiting for the writer at most.
pub(crate) const QUEUE: usize = 4096;

const INSERT_SQL: &str =
    "INSERT INTO moderation_log (pos, kind, room, user, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// One decision as the feed stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerationRecord {
    /// The decision's `type` (`user_banned`, `content_blocked`, …).
    pub kind: &'static str,
    /// Its room; `None`: user-wide.
    pub room: Option<Arc<str>>,
    /// Whom it concerns.
    pub user: Arc<str>,
    /// When it was decided (ms since the epoch).
    pub at_ms: i64,
    /// The feed event's `data:` (one line of JSON).
    pub body: String,
}

/// The producers' handle (`Store::moderation_log`): never blocks.
#[derive(Clone)]
pub struct ModerationLog {
    pub(crate) tx: Sender<ModerationRecord>,
    pub(crate) ctrl: Sender<Ctrl>,
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ModerationLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModerationLog").field("queued", &self.tx.len()).finish_non_exhaustive()
    }
}

impl ModerationLog {
    /// Queues `record` for the writer and wakes it; `false` (counted) when the queue is full or the
    /// store is closed.
    pub fn append(&self, record: ModerationRecord) -> bool {
        // Under the enqueue gate, as a log record: the writer closes it before its final drain, so
        // whatever got in is committed at shutdown.
        let sent = {
            let gate = self.shared.gate.lock();
            if gate.closed { Err(record) } else { self.tx.try_send(record).map_err(TrySendError::into_inner) }
        };
        match sent {
            Ok(()) => {
                // Unbounded, and the writer drains the queue on every turn: at most one wake-up per
                // record it has not taken yet.
                let _ = self.ctrl.send(Ctrl::Wake);
                true
            }
            Err(record) => {
                let before = self.shared.counters.moderation_dropped.fetch_add(1, Ordering::SeqCst);
                if before.is_power_of_two() || before == 0 {
                    tracing::warn!(
                        kind = record.kind,
                        dropped = before + 1,
                        "store: the moderation log's queue is full or the store is closed; a decision \
                         is not in the change feed"
                    );
                }
                false
            }
        }
    }
}

/// Writes `record` at feed position `pos` (inside the writer's transaction).
pub(crate) fn insert(tx: &rusqlite::Transaction<'_>, record: &ModerationRecord, pos: i64) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(INSERT_SQL)?;
    insert.execute(params![pos, record.kind, record.room.as_deref(), &*record.user, record.at_ms, record.body])?;
    Ok(())
}
