//! The history reader pool: `readers` threads, each with its own read-only connection, fed by a
//! bounded request channel. A reader first waits (bounded) for the commit watermark a request
//! carries (read-your-writes), then runs the page query with `limit + 1` rows to compute
//! `has_more`, and calls the request's reply closure from the pool thread.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, OptionalExtension, params};

use super::state::{Ctrl, Shared, WaitOutcome, bump};
use super::{HistoryPage, HistoryQuery, StoreError};
use crate::types::{Delete, Edit, Event, EventKind, Message, Read, Revision, Sequenced};

/// Hard upper bound on a page, whatever the caller asks for.
pub(crate) const MAX_PAGE_LIMIT: usize = 1000;

/// The columns every page reads (see `map_row`).
macro_rules! page_sql {
    ($filter:literal, $order:literal) => {
        concat!(
            "SELECT id, kind, user, content, created_at, target, edited_at, deleted FROM messages ",
            "INDEXED BY messages_room_id WHERE room = ?1 ",
            $filter,
            " ORDER BY id ",
            $order,
            " LIMIT ?3"
        )
    };
}

/// Page of messages below a cursor, newest first (the newest page: below `i64::MAX`).
pub(crate) const BEFORE_SQL: &str = page_sql!("AND kind = 0 AND id < ?2", "DESC");
/// Page of messages above a cursor, oldest first.
pub(crate) const AFTER_SQL: &str = page_sql!("AND kind = 0 AND id > ?2", "ASC");
/// Page of the room's whole log above a cursor (messages, edits, deletes), oldest first: resume.
pub(crate) const AFTER_LOG_SQL: &str = page_sql!("AND id > ?2", "ASC");

/// The reply callback a [`Store::query`](super::Store::query) caller supplies.
pub(crate) type Reply = Box<dyn FnOnce(Result<HistoryPage, StoreError>) + Send>;

/// Which slice of a room's history to read, with ids already mapped into SQLite's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// The newest messages.
    Newest,
    /// Ids strictly below this one, newest first.
    Before(i64),
    /// Ids strictly above this one, oldest first.
    After(i64),
    /// A cursor that no stored id can satisfy (`after_id` beyond `i64::MAX`): empty page.
    Nothing,
}

/// A validated [`HistoryQuery`].
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    room: Arc<str>,
    cursor: Cursor,
    limit: usize,
    visible_seq: u64,
    whole_log: bool,
}

impl Plan {
    /// Validates `q`: cursors are exclusive, `limit` is clamped into `1..=MAX_PAGE_LIMIT`.
    pub(crate) fn new(q: HistoryQuery) -> Result<Plan, StoreError> {
        let cursor = match (q.before_id, q.after_id) {
            (Some(_), Some(_)) => return Err(StoreError::BothCursors),
            (None, None) => Cursor::Newest,
            // Every storable id is below a cursor beyond i64::MAX.
            (Some(b), None) => i64::try_from(b).map_or(Cursor::Newest, Cursor::Before),
            (None, Some(a)) => i64::try_from(a).map_or(Cursor::Nothing, Cursor::After),
        };
        Ok(Plan {
            room: Arc::from(q.room),
            cursor,
            limit: q.limit.clamp(1, MAX_PAGE_LIMIT),
            visible_seq: q.visible_seq,
            whole_log: q.whole_log,
        })
    }
}

/// The reply callback of a [`Store::lookup`](super::Store::lookup).
pub(crate) type LookupReply = Box<dyn FnOnce(Result<Option<Target>, StoreError>) + Send>;

/// What an edit or a delete needs to know of the message it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The message's author.
    pub author: Arc<str>,
    /// It was deleted already.
    pub deleted: bool,
}

/// The message `id` of `room`, looked up for an edit or a delete.
#[derive(Debug, Clone)]
pub(crate) struct LookupPlan {
    pub(crate) room: Arc<str>,
    pub(crate) id: u64,
    pub(crate) visible_seq: u64,
}

/// Looks up a message row (kind 0) by id within its room.
pub(crate) const TARGET_SQL: &str = "SELECT user, deleted FROM messages WHERE id = ?1 AND room = ?2 AND kind = 0";

/// The reply callback of a [`Store::read_state`](super::Store::read_state): the user's read marker in
/// the room (0: none) and the messages above it.
pub(crate) type ReadStateReply = Box<dyn FnOnce(Result<(u64, u64), StoreError>) + Send>;

/// A user's read marker in a room.
pub(crate) const READ_MARKER_SQL: &str = "SELECT last_read FROM read_markers WHERE room = ?1 AND user = ?2";
/// The messages of a room above a marker that are still there.
pub(crate) const UNREAD_SQL: &str = "SELECT COUNT(*) FROM messages INDEXED BY messages_room_id \
                                     WHERE room = ?1 AND id > ?2 AND kind = 0 AND deleted = 0";

/// The reply callback of a [`Store::dm_rooms`](super::Store::dm_rooms).
pub(crate) type DmRoomsReply = Box<dyn FnOnce(Result<Vec<String>, StoreError>) + Send>;

/// A user's direct-message rooms (at most 1,000).
pub(crate) const DM_ROOMS_SQL: &str = "SELECT room FROM dm_rooms WHERE user = ?1 ORDER BY room LIMIT 1000";

/// One queued request.
pub(crate) enum Request {
    /// A user's direct-message rooms.
    DmRooms { user: Arc<str>, visible_seq: u64, reply: DmRoomsReply },
    /// A user's read marker in a room, and the messages above it.
    ReadState { room: Arc<str>, user: Arc<str>, visible_seq: u64, reply: ReadStateReply },
    /// A history or resume page.
    Page { plan: Plan, reply: Reply },
    /// A message an edit or delete refers to.
    Lookup { plan: LookupPlan, reply: LookupReply },
}

impl Request {
    /// Answers the request with `err` without reading anything.
    pub(crate) fn refuse(self, err: StoreError) {
        match self {
            Request::Page { reply, .. } => reply(Err(err)),
            Request::Lookup { reply, .. } => reply(Err(err)),
            Request::ReadState { reply, .. } => reply(Err(err)),
            Request::DmRooms { reply, .. } => reply(Err(err)),
        }
    }
}

/// Starts one reader thread per connection, all fed by `requests`.
pub(crate) fn spawn_pool(
    conns: Vec<Connection>,
    requests: &Receiver<Request>,
    shared: &Arc<Shared>,
    visible_wait: Duration,
    writer_ctrl: &Sender<Ctrl>,
) -> Result<Vec<(String, JoinHandle<()>)>, StoreError> {
    let mut handles = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        let name = format!("store-reader-{i}");
        let rx = requests.clone();
        let shared = Arc::clone(shared);
        let writer_ctrl = writer_ctrl.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || run(conn, rx, shared, visible_wait, writer_ctrl))
            .map_err(|source| StoreError::Spawn { name: name.clone(), source })?;
        handles.push((name, handle));
    }
    Ok(handles)
}

/// Serves requests until the [`Store`](super::Store) drops the sending side and the queue is empty.
fn run(
    conn: Connection,
    requests: Receiver<Request>,
    shared: Arc<Shared>,
    visible_wait: Duration,
    writer_ctrl: Sender<Ctrl>,
) {
    while let Ok(request) = requests.recv() {
        match request {
            Request::Page { plan, reply } => {
                let result = wait_visible(&shared, &plan.room, plan.visible_seq, visible_wait, &writer_ctrl)
                    .and_then(|()| read_page(&conn, &plan));
                count(&shared, &plan.room, &result);
                answer(move || reply(result));
            }
            Request::DmRooms { user, visible_seq, reply } => {
                let result = wait_visible(&shared, "", visible_seq, visible_wait, &writer_ctrl).and_then(|()| {
                    conn.prepare_cached(DM_ROOMS_SQL)
                        .and_then(|mut st| st.query_map(params![&*user], |row| row.get(0))?.collect())
                        .map_err(StoreError::Query)
                });
                count(&shared, "", &result);
                answer(move || reply(result));
            }
            Request::ReadState { room, user, visible_seq, reply } => {
                let result = wait_visible(&shared, &room, visible_seq, visible_wait, &writer_ctrl)
                    .and_then(|()| read_state(&conn, &room, &user));
                count(&shared, &room, &result);
                answer(move || reply(result));
            }
            Request::Lookup { plan, reply } => {
                let result = wait_visible(&shared, &plan.room, plan.visible_seq, visible_wait, &writer_ctrl)
                    .and_then(|()| lookup(&conn, &plan));
                count(&shared, &plan.room, &result);
                answer(move || reply(result));
            }
        }
    }
}

fn count<T>(shared: &Shared, room: &str, result: &Result<T, StoreError>) {
    match result {
        Ok(_) => bump(&shared.counters.queries_served, 1),
        Err(err) => {
            bump(&shared.counters.queries_failed, 1);
            tracing::warn!(error = %err, room = %room, "store: history query failed");
        }
    }
}

/// Calls a reply: a panicking callback is the caller's bug; it must not take a reader down with it.
/// (In the server binary the panic hook ends the process first: `config::logging::exit_on_panic`.)
fn answer(reply: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(reply)).is_err() {
        tracing::error!("store: a history reply callback panicked");
    }
}

/// Reads `user`'s read marker in `room` (0: none) and counts the messages above it.
fn read_state(conn: &Connection, room: &str, user: &str) -> Result<(u64, u64), StoreError> {
    let marker: Option<i64> = conn
        .prepare_cached(READ_MARKER_SQL)
        .and_then(|mut st| st.query_row(params![room, user], |row| row.get(0)).optional())
        .map_err(StoreError::Query)?;
    let marker = marker.unwrap_or(0);
    let unread: i64 = conn
        .prepare_cached(UNREAD_SQL)
        .and_then(|mut st| st.query_row(params![room, marker], |row| row.get(0)))
        .map_err(StoreError::Query)?;
    Ok((u64::try_from(marker).unwrap_or(0), u64::try_from(unread).unwrap_or(0)))
}

/// Reads the message an edit or a delete refers to (`None`: no such message in that room).
fn lookup(conn: &Connection, plan: &LookupPlan) -> Result<Option<Target>, StoreError> {
    let Ok(id) = i64::try_from(plan.id) else { return Ok(None) };
    let mut stmt = conn.prepare_cached(TARGET_SQL).map_err(StoreError::Query)?;
    let mut rows = stmt.query(params![id, &*plan.room]).map_err(StoreError::Query)?;
    match rows.next().map_err(StoreError::Query)? {
        None => Ok(None),
        Some(row) => {
            let author: Arc<str> = row.get(0).map_err(StoreError::Query)?;
            let deleted: i64 = row.get(1).map_err(StoreError::Query)?;
            Ok(Some(Target { author, deleted: deleted != 0 }))
        }
    }
}

/// Waits for the request's commit watermark (bounded); refuses ([`StoreError::NotVisible`]) rather
/// than answer without messages clients already received.
fn wait_visible(
    shared: &Shared,
    room: &str,
    visible_seq: u64,
    visible_wait: Duration,
    writer_ctrl: &Sender<Ctrl>,
) -> Result<(), StoreError> {
    if shared.committed() < visible_seq {
        // Ask the writer to commit its batch now rather than at the end of its flush interval, so a
        // history read under live load waits for one commit, not for the interval (many requests
        // waiting at once collapse into one early commit). If the writer is gone, waiting says so.
        let _ = writer_ctrl.send(Ctrl::Flush);
    }
    match shared.wait_committed(visible_seq, Some(Instant::now() + visible_wait)) {
        WaitOutcome::Reached => {}
        WaitOutcome::TimedOut(committed) => {
            bump(&shared.counters.visible_wait_timeouts, 1);
            tracing::warn!(
                visible_seq = visible_seq,
                committed,
                waited_ms = visible_wait.as_millis() as u64,
                room = %room,
                "store: history request waited for the writer too long; refusing it (a page without \
                 messages clients already saw would be a gap)"
            );
            return Err(StoreError::NotVisible { visible: visible_seq, committed });
        }
        WaitOutcome::WriterGone(committed) => {
            tracing::warn!(
                visible_seq = visible_seq,
                committed,
                "store: writer stopped before committing what clients saw; refusing the history request"
            );
            return Err(StoreError::NotVisible { visible: visible_seq, committed });
        }
    }
    Ok(())
}

/// Runs the page query, fetching `limit + 1` rows to learn `has_more`.
fn read_page(conn: &Connection, plan: &Plan) -> Result<HistoryPage, StoreError> {
    // limit <= MAX_PAGE_LIMIT, so this fits.
    let fetch = (plan.limit + 1) as i64;
    let mut messages = Vec::with_capacity(plan.limit + 1);
    let room = &plan.room;
    let map_row = |row: &rusqlite::Row<'_>| row_event(row, Arc::clone(room));
    let rows = match plan.cursor {
        Cursor::Nothing => return Ok(HistoryPage::default()),
        Cursor::Newest => conn
            .prepare_cached(BEFORE_SQL)
            .and_then(|mut st| collect(st.query_map(params![room, i64::MAX, fetch], map_row)?)),
        Cursor::Before(id) => {
            conn.prepare_cached(BEFORE_SQL).and_then(|mut st| collect(st.query_map(params![room, id, fetch], map_row)?))
        }
        Cursor::After(id) => {
            let sql = if plan.whole_log { AFTER_LOG_SQL } else { AFTER_SQL };
            conn.prepare_cached(sql).and_then(|mut st| collect(st.query_map(params![room, id, fetch], map_row)?))
        }
    };
    messages.extend(rows.map_err(StoreError::Query)?);
    let has_more = messages.len() > plan.limit;
    messages.truncate(plan.limit);
    Ok(HistoryPage { messages, has_more })
}

/// One row of `page_sql!`'s columns (id, kind, user, content, created_at, target, edited_at, deleted,
/// from column 0) as the event of `room` it stores.
pub(crate) fn row_event(row: &rusqlite::Row<'_>, room: Arc<str>) -> rusqlite::Result<Sequenced> {
    let id: i64 = row.get(0)?;
    let code: i64 = row.get(1)?;
    // The schema version check keeps files of newer builds out, so an unknown kind is damage.
    let kind = u8::try_from(code).ok().and_then(EventKind::from_code).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Integer,
            format!("unknown event kind {code}").into(),
        )
    })?;
    let target = || -> rusqlite::Result<u64> {
        let target: Option<i64> = row.get(5)?;
        Ok(target.and_then(|t| u64::try_from(t).ok()).unwrap_or(0))
    };
    let event = match kind {
        EventKind::Message => {
            let edited_at: Option<i64> = row.get(6)?;
            let deleted: i64 = row.get(7)?;
            let revision = match (deleted, edited_at) {
                (0, None) => Revision::Original,
                (0, Some(at_ms)) => Revision::Edited { at_ms },
                _ => Revision::Deleted,
            };
            Event::Message(Message { user: row.get(2)?, content: row.get(3)?, revision })
        }
        EventKind::Edit => Event::Edit(Edit { user: row.get(2)?, target: target()?, content: row.get(3)? }),
        EventKind::Delete => Event::Delete(Delete { user: row.get(2)?, target: target()? }),
        EventKind::Read => Event::Read(Read { user: row.get(2)?, upto: target()? }),
    };
    Ok(Sequenced {
        idempotency_key: None,
        // Negative ids are never written by this store; read them as 0 rather than fail.
        id: u64::try_from(id).unwrap_or(0),
        room,
        at_ms: row.get(4)?,
        event,
    })
}

fn collect<I>(rows: I) -> rusqlite::Result<Vec<Sequenced>>
where
    I: Iterator<Item = rusqlite::Result<Sequenced>>,
{
    rows.collect()
}
