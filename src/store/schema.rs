//! Schema and connection setup: the versioned migrations (tracked in `PRAGMA user_version`), the
//! writer's pragmas (WAL, `synchronous`), opening the read-only reader connections, and reading the
//! largest stored id.
//!
//! Layout (version 1): a rowid table `messages(id INTEGER PRIMARY KEY, room, user, content,
//! created_at)` plus the index `messages_room_id(room, id)`. Ids arrive in increasing order, so the
//! table itself is append-only and the index serves `room = ? AND id < ? ORDER BY id DESC`
//! (and the `id > ?` resume query) as a range scan; see the module docs for why this layout and
//! not a `WITHOUT ROWID` table clustered on `(room, id)`.
//!
//! Version 2 adds `meta(key, value)`, which holds the id ceiling (`id_ceiling`, see `ceiling.rs`):
//! raised ahead of use at open ([`reserve_ids`]) and with batches, and set to the last id used at a
//! clean shutdown ([`record_last_id`]).
//!
//! Version 3 adds `messages.kind` (`types::EventKind::code`; 0, a chat message, for every row
//! written before): the table is the room's ordered log, one row per sequenced event of any kind.
//!
//! Version 4 adds what edits and deletes need: `target` (the message an edit or delete row refers
//! to, with the partial index `messages_target`), and on message rows `edited_at` (ms of the last
//! edit) and `deleted` (1: the content, and that of its edits, is removed). A message row is kept
//! in its current state, so history pages read it as it is now; the edit and delete rows stay in
//! the log for resume pages. `read_markers(room, user, last_read)` holds each user's read marker per
//! room (only ever raised); a read event takes an id and a place in the live order but writes no
//! log row (kind 3 is reserved for it; a marker is state, not history).
//! `dm_rooms(user, room)` lists each user's direct-message rooms (`dm:<a>,<b>` with a stored
//! message), for the list a connection gets after `welcome`.
//!
//! Version 5 adds the server API's tables (`control.rs`).
//! Version 6 adds `messages.pos`, the row's place in the change feed (`feed.rs`): the writer numbers
//! rows 1, 2, 3 … in commit order (a row written before gets its id, which is above none of the new
//! ones), with the unique index `messages_pos`. Ids are not in commit order across rooms (two rooms
//! take ids under two locks), positions are: a reader that sees position `p` sees every one below.
//! Version 7 adds `api_revocations(user, before_ms)`: a user's tokens issued before then are
//! refused (kept: see `control.rs`).
//! Version 8 adds the webhook outbox (`outbox.rs`): `webhook_outbox(seq, url, body)` (one row per
//! event and receiver, deleted once delivered) and `webhook_rooms(room, last_order)` (each room's
//! last webhook order number).
//! Version 9 adds `moderation_log(pos, kind, room, user, at_ms, body)`: the change feed's moderation
//! events (`moderation_log.rs`), numbered from the same positions as `messages.pos` (one writer
//! numbers both), so the feed reads the two tables merged by position.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::StoreError;
use crate::unique::unique_u64;

/// The newest schema version (`PRAGMA user_version`) this build knows and migrates to.
pub(crate) const SCHEMA_VERSION: i64 = 9;

/// Name of the index that serves history pages (checked by the query-plan test).
#[cfg(test)]
pub(crate) const ROOM_ID_INDEX: &str = "messages_room_id";

/// `(version, SQL)`: applying the SQL to a database at `version - 1` yields `version`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE messages (
             id         INTEGER PRIMARY KEY,
             room       TEXT    NOT NULL,
             user       TEXT    NOT NULL,
             content    TEXT    NOT NULL,
             created_at INTEGER NOT NULL
         );
         CREATE INDEX messages_room_id ON messages (room, id);",
    ),
    (2, "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"),
    (3, "ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"),
    (
        4,
        "ALTER TABLE messages ADD COLUMN target INTEGER;
         ALTER TABLE messages ADD COLUMN edited_at INTEGER;
         ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX messages_target ON messages (target) WHERE target IS NOT NULL;
         CREATE TABLE read_markers (
             room      TEXT    NOT NULL,
             user      TEXT    NOT NULL,
             last_read INTEGER NOT NULL,
             PRIMARY KEY (room, user)
         ) WITHOUT ROWID;
         CREATE TABLE dm_rooms (
             user TEXT NOT NULL,
             room TEXT NOT NULL,
             PRIMARY KEY (user, room)
         ) WITHOUT ROWID;",
    ),
    // The server API's own state (`control.rs`): idempotency keys, bans, mutes.
    (
        5,
        "CREATE TABLE api_idempotency (key TEXT PRIMARY KEY, id INTEGER NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE api_bans (user TEXT PRIMARY KEY, until_ms INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE api_mutes (room TEXT NOT NULL, user TEXT NOT NULL, until_ms INTEGER NOT NULL,
                                 PRIMARY KEY (room, user)) WITHOUT ROWID;",
    ),
    // The change feed's positions (`feed.rs`): commit order, a prefix visible to every reader.
    (
        6,
        "ALTER TABLE messages ADD COLUMN pos INTEGER;
         UPDATE messages SET pos = id;
         CREATE UNIQUE INDEX messages_pos ON messages (pos);",
    ),
    // Token revocations (`control.rs`): a user's tokens issued before `before_ms` are refused.
    (7, "CREATE TABLE api_revocations (user TEXT PRIMARY KEY, before_ms INTEGER NOT NULL) WITHOUT ROWID;"),
    // The webhook outbox (`outbox.rs`): one row per event and receiver URL until it answered 2xx,
    // and each room's last event order number.
    (
        8,
        "CREATE TABLE webhook_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL, body TEXT NOT NULL);
         CREATE INDEX webhook_outbox_url ON webhook_outbox (url, seq);
         CREATE TABLE webhook_rooms (room TEXT PRIMARY KEY, last_order INTEGER NOT NULL) WITHOUT ROWID;",
    ),
    // The change feed's moderation events (`moderation_log.rs`): positions shared with `messages`.
    (
        9,
        "CREATE TABLE moderation_log (pos INTEGER PRIMARY KEY, kind TEXT NOT NULL, room TEXT, user TEXT NOT NULL,
                                      at_ms INTEGER NOT NULL, body TEXT NOT NULL);",
    ),
];

/// Sets the id ceiling (inside the caller's transaction).
pub(crate) const SET_CEILING_SQL: &str = "INSERT INTO meta (key, value) VALUES ('id_ceiling', ?1) \
                                          ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Opens the writer's read-write connection, switches it to WAL with the requested `synchronous`
/// level, and migrates the schema to [`SCHEMA_VERSION`].
pub(crate) fn open_writer(path: &Path, sync_full: bool, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    conn.busy_timeout(busy_timeout).map_err(setup("set busy_timeout"))?;
    // Check the version before changing anything in a file we may not understand.
    check_version(read_version(&conn)?)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(setup("set journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NoWal(mode));
    }
    set_synchronous(&conn, sync_full)?;
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(setup("set temp_store"))?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens the control store's read-write connection (the writer must have created the schema).
pub(crate) fn open_control(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    conn.busy_timeout(busy_timeout).map_err(setup("set busy_timeout"))?;
    Ok(conn)
}

/// Opens one read-only connection for a history reader (the writer must have created the schema).
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    conn.busy_timeout(busy_timeout).map_err(setup("set busy_timeout"))?;
    check_version(read_version(&conn)?)?;
    Ok(conn)
}

/// Largest id stored, 0 for an empty table (negative ids, which this store never writes, count as 0).
pub(crate) fn max_id(conn: &Connection) -> Result<u64, StoreError> {
    let max: Option<i64> =
        conn.query_row("SELECT MAX(id) FROM messages", [], |row| row.get(0)).map_err(setup("read max(id)"))?;
    Ok(max.map_or(0, |m| u64::try_from(m).unwrap_or(0)))
}

/// The largest change-feed position stored (0 if none), log rows and moderation events alike: the
/// writer numbers new rows after it.
pub(crate) fn max_pos(conn: &Connection) -> Result<u64, StoreError> {
    // (The two-argument MAX is NULL when either is: each side counts as 0 when its table is empty.)
    let sql = "SELECT MAX(COALESCE((SELECT MAX(pos) FROM messages), 0), \
               COALESCE((SELECT MAX(pos) FROM moderation_log), 0))";
    let max: Option<i64> = conn.query_row(sql, [], |row| row.get(0)).map_err(setup("read max(pos)"))?;
    Ok(max.map_or(0, |m| u64::try_from(m).unwrap_or(0)))
}

/// The stored id ceiling, 0 if none was ever stored.
pub(crate) fn read_ceiling(conn: &Connection) -> Result<u64, StoreError> {
    let value: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'id_ceiling'", [], |row| row.get(0))
        .optional()
        .map_err(setup("read the id ceiling"))?;
    Ok(value.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
}

/// At open: ids continue after `max(max_id, stored ceiling)`; commits the ceiling `start + block`
/// with `synchronous=FULL` (then back to the configured level) before any of them is used. Returns
/// `(start, ceiling)`.
pub(crate) fn reserve_ids(
    conn: &mut Connection,
    max_id: u64,
    block: u64,
    sync_full: bool,
) -> Result<(u64, u64), StoreError> {
    let start = max_id.max(read_ceiling(conn)?);
    let ceiling = start.saturating_add(block).min(i64::MAX as u64);
    set_synchronous(conn, true)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(setup("reserve ids"))?;
    tx.execute(SET_CEILING_SQL, [ceiling as i64]).map_err(setup("reserve ids"))?;
    tx.commit().map_err(setup("reserve ids"))?;
    set_synchronous(conn, sync_full)?;
    Ok((start, ceiling))
}

/// The database's epoch (`meta` key `epoch`): made once, when this build first opens the file, and
/// kept for its life, so it changes exactly when ids may start again (a new database file).
pub(crate) fn epoch(conn: &Connection) -> Result<u64, StoreError> {
    let found: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |row| row.get(0))
        .optional()
        .map_err(setup("read the epoch"))?;
    if let Some(epoch) = found {
        return Ok(epoch as u64);
    }
    let epoch = unique_u64();
    conn.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?1)", [epoch as i64])
        .map_err(setup("record the epoch"))?;
    Ok(epoch)
}

/// At a clean shutdown, once the writer has drained and stopped: sets the id ceiling to
/// `max(last_used, largest stored id)`, so the next start continues right after the last id used
/// instead of above the whole reserved block. On its own connection (the writer's is gone), in an
/// IMMEDIATE transaction, with `synchronous=FULL`. Returns the ceiling written.
///
/// This lowers the ceiling, which is safe only because nothing can use an id any more (the shards
/// have stopped, so `last_used` is the last id anyone was shown) and no other process uses the file
/// (`lock.rs`). Should this commit be lost (power loss), the higher ceiling stays: ids skip, never
/// repeat.
pub(crate) fn record_last_id(path: &Path, busy_timeout: Duration, last_used: u64) -> Result<u64, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    conn.busy_timeout(busy_timeout).map_err(setup("set busy_timeout"))?;
    set_synchronous(&conn, true)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(setup("record the last id"))?;
    let ceiling = last_used.max(max_id(&tx)?).min(i64::MAX as u64);
    tx.execute(SET_CEILING_SQL, [ceiling as i64]).map_err(setup("record the last id"))?;
    tx.commit().map_err(setup("record the last id"))?;
    Ok(ceiling)
}

/// Sets `PRAGMA synchronous` to FULL or NORMAL.
fn set_synchronous(conn: &Connection, full: bool) -> Result<(), StoreError> {
    synchronous(conn, full).map_err(setup("set synchronous"))
}

/// `PRAGMA synchronous = FULL` or `NORMAL`.
pub(crate) fn synchronous(conn: &Connection, full: bool) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })
}

/// Reads `PRAGMA user_version`.
pub(crate) fn read_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(setup("read user_version"))
}

/// Errors with [`StoreError::SchemaTooNew`] when `found` is newer than this build knows.
pub(crate) fn check_version(found: i64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    Ok(())
}

/// Applies every migration newer than the file's version, each in its own IMMEDIATE transaction
/// that also bumps `user_version` (so a crash mid-way leaves a consistent, older version).
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    for &(version, sql) in MIGRATIONS {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Migration { version, source })?;
        // Re-read inside the write lock: another process may have migrated meanwhile.
        let current = read_version(&tx)?;
        check_version(current)?;
        if current >= version {
            continue;
        }
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .and_then(|()| tx.commit())
            .map_err(|source| StoreError::Migration { version, source })?;
        tracing::info!(version, "store: migrated database schema");
    }
    Ok(())
}

/// Maps a rusqlite error from a setup step to [`StoreError::Setup`].
fn setup(step: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Setup { step, source }
}
