//! The server API's durable state, apart from the messages: idempotency keys (`api_idempotency`),
//! bans (`api_bans`), mutes (`api_mutes`) and token revocations (`api_revocations`), written by one `store-control` thread with its own
//! connection, so a shard never touches SQLite.
//!
//! [`ControlStore::open`] reads what is still in force (bans and mutes not expired, keys younger than
//! the idempotency window) for the API's in-memory tables; every change after that is a
//! [`ControlOp`] on a bounded queue ([`CONTROL_QUEUE`], full: refused at once, the API answers 503),
//! committed one by one, and its reply closure runs on the control thread once it is durable (the API
//! answers the HTTP request from there, through the shard's inbox). Expired rows are deleted every
//! [`PRUNE_EVERY`] writes. A revocation never expires by itself: the server does not know the
//! longest lifetime of the tokens an issuer hands out, so the row (one per user, only ever raised)
//! is kept; a later revocation of the same user replaces it.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rusqlite::{Connection, params};

use super::{StoreError, schema};
use crate::protocol::api::ModerationChange;

/// Changes waiting for the control thread at most.
pub(crate) const CONTROL_QUEUE: usize = 1024;
/// Writes between two deletions of expired rows.
const PRUNE_EVERY: u64 = 256;

/// One change to the API's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ControlOp {
    /// Idempotency key `key` published message `id` at `at_ms`.
    Remember {
        /// The key.
        key: String,
        /// The id of the message it published.
        id: u64,
        /// When, ms since the epoch.
        at_ms: i64,
    },
    /// A ban or a mute set or lifted (a disconnect is not durable: nothing is written for it).
    Moderation(ModerationChange),
}

/// What is in force when the store opens.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ControlSnapshot {
    /// `(user, until_ms)`.
    pub(crate) bans: Vec<(String, i64)>,
    /// `(room, user, until_ms)`.
    pub(crate) mutes: Vec<(String, String, i64)>,
    /// `(key, id, at_ms)`.
    pub(crate) keys: Vec<(String, u64, i64)>,
    /// `(user, before_ms)`: token revocations.
    pub(crate) revocations: Vec<(String, i64)>,
}

/// Runs on the control thread once the change is committed (or failed).
pub(crate) type ControlReply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The control thread's queue.
pub(crate) struct ControlStore {
    tx: Option<Sender<(ControlOp, ControlReply)>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ControlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlStore").field("queued", &self.tx.as_ref().map(Sender::len)).finish()
    }
}

impl ControlStore {
    /// Opens the control connection to `path`, reads what is in force at `now_ms` (keys younger than
    /// `key_window_ms`) and starts the control thread.
    ///
    /// # Errors
    /// [`StoreError::Open`]/[`StoreError::Setup`] opening, [`StoreError::Query`] reading,
    /// [`StoreError::Spawn`] starting the thread.
    pub(crate) fn open(
        path: &Path,
        busy_timeout: Duration,
        now_ms: i64,
        key_window_ms: i64,
    ) -> Result<(ControlStore, ControlSnapshot), StoreError> {
        let conn = schema::open_control(path, busy_timeout)?;
        let snapshot = read_snapshot(&conn, now_ms, key_window_ms).map_err(StoreError::Query)?;
        let (tx, rx) = crossbeam_channel::bounded(CONTROL_QUEUE);
        let name = "store-control".to_string();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || run(&conn, &rx, key_window_ms))
            .map_err(|source| StoreError::Spawn { name, source })?;
        Ok((ControlStore { tx: Some(tx), thread: Some(thread) }, snapshot))
    }

    /// Queues `op`; `reply` runs once it is committed. A full queue hands both back.
    pub(crate) fn submit(&self, op: ControlOp, reply: ControlReply) -> Result<(), (ControlOp, ControlReply)> {
        let Some(tx) = &self.tx else { return Err((op, reply)) };
        tx.try_send((op, reply)).map_err(|err| match err {
            TrySendError::Full(item) | TrySendError::Disconnected(item) => item,
        })
    }
}

impl Drop for ControlStore {
    /// Commits what is queued, then stops the thread.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("store-control thread panicked");
        }
    }
}

fn read_snapshot(conn: &Connection, now_ms: i64, key_window_ms: i64) -> rusqlite::Result<ControlSnapshot> {
    let mut snapshot = ControlSnapshot::default();
    let mut stmt = conn.prepare("SELECT user, until_ms FROM api_bans WHERE until_ms > ?1")?;
    snapshot.bans = stmt.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT room, user, until_ms FROM api_mutes WHERE until_ms > ?1")?;
    snapshot.mutes = stmt.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT user, before_ms FROM api_revocations")?;
    snapshot.revocations = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT key, id, created_at FROM api_idempotency WHERE created_at > ?1")?;
    snapshot.keys = stmt
        .query_map([now_ms - key_window_ms], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(snapshot)
}

fn run(conn: &Connection, rx: &Receiver<(ControlOp, ControlReply)>, key_window_ms: i64) {
    let mut writes = 0u64;
    for (op, reply) in rx {
        let result = apply(conn, &op).map(drop).map_err(StoreError::Query);
        if let Err(err) = &result {
            tracing::error!(%err, "store: could not write the API's state");
        }
        reply(result);
        writes += 1;
        if writes.is_multiple_of(PRUNE_EVERY) {
            let now = crate::protocol::json::now_millis();
            if let Err(err) = prune(conn, now, key_window_ms) {
                tracing::warn!(%err, "store: could not delete expired API state");
            }
        }
    }
}

/// An idempotency key and the id it published (the control thread's `Remember`, and the writer in
/// the transaction of the message itself).
pub(super) const REMEMBER_KEY_SQL: &str = "INSERT INTO api_idempotency (key, id, created_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (key) DO UPDATE SET id = excluded.id, created_at = excluded.created_at";

fn apply(conn: &Connection, op: &ControlOp) -> rusqlite::Result<usize> {
    match op {
        ControlOp::Remember { key, id, at_ms } => conn.execute(REMEMBER_KEY_SQL, params![key, *id as i64, at_ms]),
        ControlOp::Moderation(change) => match change {
            ModerationChange::Ban { user, until_ms } => conn.execute(
                "INSERT INTO api_bans (user, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (user) DO UPDATE SET until_ms = excluded.until_ms",
                params![user, until_ms],
            ),
            ModerationChange::Unban { user } => conn.execute("DELETE FROM api_bans WHERE user = ?1", params![user]),
            ModerationChange::Mute { room, user, until_ms } => conn.execute(
                "INSERT INTO api_mutes (room, user, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (room, user) DO UPDATE SET until_ms = excluded.until_ms",
                params![room, user, until_ms],
            ),
            ModerationChange::Unmute { room, user } => {
                conn.execute("DELETE FROM api_mutes WHERE room = ?1 AND user = ?2", params![room, user])
            }
            ModerationChange::Revoke { user, before_ms } => conn.execute(
                "INSERT INTO api_revocations (user, before_ms) VALUES (?1, ?2)
                 ON CONFLICT (user) DO UPDATE SET before_ms = max(before_ms, excluded.before_ms)",
                params![user, before_ms],
            ),
            ModerationChange::Disconnect { .. } => Ok(0),
        },
    }
}

fn prune(conn: &Connection, now_ms: i64, key_window_ms: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM api_bans WHERE until_ms <= ?1", [now_ms])?;
    conn.execute("DELETE FROM api_mutes WHERE until_ms <= ?1", [now_ms])?;
    conn.execute("DELETE FROM api_idempotency WHERE created_at <= ?1", [now_ms - key_window_ms])?;
    Ok(())
}
