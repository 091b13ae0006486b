//! The change feed's thread (`store-feed`): a tailer of the committed log. It reads rows by their
//! feed position (`messages.pos`, numbered by the writer in commit order: `schema.rs`, version 6)
//! through its own read-only connection, `pos > after ORDER BY pos`, a page at a time, for the
//! consumers of `GET /api/feed` (`session::feed`).
//!
//! Why positions and not ids: ids are taken under each room's lock, so two rooms can hand the writer
//! id 11 before id 10 and it may commit them in two batches; a tailer by id would have to wait for
//! a watermark "every id ≤ W is committed", which ids lost in a crash, read markers (an id, no row)
//! and cluster mode (ids from Redis, events stored late) never make exact. Positions are dense and
//! follow commits: a reader that sees position `p` sees every position below it (one writer, one
//! transaction per batch, WAL snapshots), so a page after a cursor never skips a row that commits
//! later. Within a room, commit order is the room's id order (the store queue is fed under the
//! room's lock).
//!
//! Moderation events (`moderation_log`, schema version 9) take positions from the same writer, so a
//! page is both tables after the cursor merged by position, read in one transaction (one snapshot:
//! two statements outside one could each see a different prefix of the commits).
//!
//! One request per consumer at a time (the shard asks for the next page once the connection's output
//! has drained: `session::feed`); a request for which nothing is committed yet is parked until the
//! writer's next commit rings the bell (`Shared::ring_feed`, bounded 1, coalescing) or until
//! [`KEEPALIVE`] has passed, when it is answered with an empty page (the session sends a
//! `: keepalive` comment). Requests wait on a bounded queue ([`QUEUE`]); full: `Busy`, at once.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use rusqlite::{Connection, params};

use super::StoreError;
use super::reader::row_event;
use super::state::{Shared, bump};
use crate::types::Sequenced;

/// Rows per page (one chunk of the stream).
pub(crate) const PAGE_ROWS: usize = 256;
/// Requests waiting for the feed thread (at most one per consumer, so far more than the consumers).
pub(crate) const QUEUE: usize = 64;
/// An idle consumer gets an empty page (a `: keepalive` comment) this often, so proxies keep it.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);

/// The rows of every room after a position, in position order.
const FEED_SQL: &str = "SELECT id, kind, user, content, created_at, target, edited_at, deleted, pos, room \
                        FROM messages INDEXED BY messages_pos WHERE pos > ?1 ORDER BY pos LIMIT ?2";
/// The moderation events after a position, in position order.
const MODERATION_SQL: &str = "SELECT pos, body FROM moderation_log WHERE pos > ?1 ORDER BY pos LIMIT ?2";

/// One event of the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// A log row (a message, an edit, a delete).
    Event(Sequenced),
    /// A moderation decision: its `data:` JSON (`moderation_log.rs`).
    Moderation(String),
}

/// One page of the feed: `(position, event)` in position order; empty: nothing new within
/// [`KEEPALIVE`].
#[derive(Debug, Default)]
pub struct FeedPage {
    /// The rows, oldest first.
    pub rows: Vec<(u64, FeedItem)>,
}

/// The reply callback of a [`Store::feed`](super::Store::feed), called from the feed thread (or on
/// the caller's thread when the queue is full or the store closed).
pub(crate) type FeedReply = Box<dyn FnOnce(Result<FeedPage, StoreError>) + Send>;

/// A consumer's request for the page after `after`.
pub(crate) struct FeedRequest {
    pub(crate) after: u64,
    pub(crate) reply: FeedReply,
}

/// A request parked until rows exist after its cursor.
struct Parked {
    request: FeedRequest,
    keepalive_at: Instant,
}

/// Starts the feed thread.
pub(crate) fn spawn(
    conn: Connection,
    requests: Receiver<FeedRequest>,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, StoreError> {
    let name = "store-feed".to_string();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || run(&conn, &requests, &shared))
        .map_err(|source| StoreError::Spawn { name, source })
}

fn run(conn: &Connection, requests: &Receiver<FeedRequest>, shared: &Shared) {
    let mut parked: Vec<Parked> = Vec::new();
    let bell = shared.feed_bell.1.clone();
    loop {
        // Before reading: a commit from now on rings the bell, so none is missed between the read
        // and the wait.
        shared.feed_waiting.store(true, Ordering::SeqCst);
        let now = Instant::now();
        let mut still = Vec::with_capacity(parked.len());
        for p in parked.drain(..) {
            match read_page(conn, p.request.after) {
                Ok(page) if page.rows.is_empty() && now < p.keepalive_at => still.push(p),
                Ok(page) => {
                    bump(&shared.counters.feed_events, page.rows.len() as u64);
                    answer(p.request.reply, Ok(page));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "store: change feed page failed");
                    answer(p.request.reply, Err(err));
                }
            }
        }
        parked = still;
        shared.feed_waiting.store(!parked.is_empty(), Ordering::SeqCst);
        let timeout = parked.iter().map(|p| p.keepalive_at).min().map(|at| at.saturating_duration_since(now));
        let timeout = timeout.unwrap_or(Duration::from_secs(3600));
        select! {
            recv(requests) -> msg => match msg {
                Ok(request) => parked.push(Parked { request, keepalive_at: Instant::now() + KEEPALIVE }),
                Err(_) => break,
            },
            recv(bell) -> _ => {},
            default(timeout) => {},
        }
        // Take every request already queued before reading again.
        while let Ok(request) = requests.try_recv() {
            parked.push(Parked { request, keepalive_at: Instant::now() + KEEPALIVE });
        }
    }
    shared.feed_waiting.store(false, Ordering::SeqCst);
    for p in parked {
        answer(p.request.reply, Err(StoreError::Closed));
    }
}

/// Calls a reply; a panicking callback must not take the feed thread down with it.
fn answer(reply: FeedReply, result: Result<FeedPage, StoreError>) {
    if std::panic::catch_unwind(AssertUnwindSafe(move || reply(result))).is_err() {
        tracing::error!("store: a change feed reply callback panicked");
    }
}

/// The committed rows and moderation events after position `after`, at most [`PAGE_ROWS`], merged
/// by position.
pub(crate) fn read_page(conn: &Connection, after: u64) -> Result<FeedPage, StoreError> {
    let Ok(after) = i64::try_from(after) else { return Ok(FeedPage::default()) };
    let position = |pos: i64| u64::try_from(pos).unwrap_or(0);
    // One read transaction: both statements see the same commits.
    let snapshot = conn.unchecked_transaction().map_err(StoreError::Query)?;
    let mut rows = snapshot
        .prepare_cached(FEED_SQL)
        .and_then(|mut stmt| {
            stmt.query_map(params![after, PAGE_ROWS as i64], |row| {
                let room: Arc<str> = row.get(9)?;
                Ok((position(row.get(8)?), FeedItem::Event(row_event(row, room)?)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(StoreError::Query)?;
    let decisions = snapshot
        .prepare_cached(MODERATION_SQL)
        .and_then(|mut stmt| {
            stmt.query_map(params![after, PAGE_ROWS as i64], |row| {
                Ok((position(row.get(0)?), FeedItem::Moderation(row.get(1)?)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(StoreError::Query)?;
    // Read-only: nothing to commit; ending it releases the snapshot.
    snapshot.finish().map_err(StoreError::Query)?;
    if !decisions.is_empty() {
        rows.extend(decisions);
        rows.sort_by_key(|(pos, _)| *pos);
        rows.truncate(PAGE_ROWS);
    }
    Ok(FeedPage { rows })
}
