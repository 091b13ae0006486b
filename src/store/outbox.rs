//! The webhook outbox (`webhook_outbox`, `webhook_rooms`): what the webhook threads still have to
//! deliver, so that events survive a restart and a receiver that is down.
//!
//! One row per event and receiver URL, in `seq` order (AUTOINCREMENT: never reused, so a row added
//! after a restart sorts after every older one). The `webhooks` thread appends with an
//! [`OutboxWriter`] (one transaction per batch: each event takes its room's next order number from
//! `webhook_rooms` and gets one row per URL); each URL's delivery thread reads its rows in `seq`
//! order and deletes each one once the receiver answered 2xx, with an [`OutboxReader`] of its own.
//! Each has its own connection: no shard ever touches it.
//!
//! Bound: at most `max_rows` rows; a batch that would pass it deletes the oldest rows (of any URL)
//! first, in the same transaction, and reports how many ([`Appended::dropped`]).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::{StoreError, schema};

/// Rows a batch wrote and dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// Rows added (events × URLs).
    pub(crate) rows: u64,
    /// Oldest rows deleted to stay within the bound.
    pub(crate) dropped: u64,
}

/// The appending side (the `webhooks` thread).
#[derive(Debug)]
pub(crate) struct OutboxWriter {
    conn: Connection,
}

impl OutboxWriter {
    /// Opens the outbox on the database at `path` (the store writer created the schema) and deletes
    /// the rows of URLs no longer configured. Returns it with the number of rows left.
    ///
    /// # Errors
    /// [`StoreError::Open`]/[`StoreError::Setup`] opening, [`StoreError::Query`] reading.
    pub(crate) fn open(path: &Path, busy_timeout: Duration, urls: &[&str]) -> Result<(OutboxWriter, u64), StoreError> {
        let conn = schema::open_control(path, busy_timeout)?;
        let stale = forget_other_urls(&conn, urls).map_err(StoreError::Query)?;
        if stale > 0 {
            tracing::warn!(rows = stale, "webhooks: outbox rows for URLs no longer configured deleted");
        }
        let rows = count(&conn).map_err(StoreError::Query)?;
        Ok((OutboxWriter { conn }, rows))
    }

    /// Appends `batch` for every URL of `urls` in one transaction: each item's room (`room(item)`)
    /// takes its next order number, and `body(item, order)` is what is stored. `queued` is the
    /// caller's count of rows: only when it says the bound may be passed are the rows counted and
    /// the oldest dropped.
    ///
    /// # Errors
    /// [`StoreError::Query`]; nothing was written.
    pub(crate) fn append<T>(
        &mut self,
        batch: &[T],
        room: impl Fn(&T) -> &str,
        body: impl Fn(&T, u64) -> String,
        urls: &[&str],
        queued: u64,
        max_rows: u64,
    ) -> Result<Appended, StoreError> {
        let mut write = || -> rusqlite::Result<Appended> {
            let tx = self.conn.transaction()?;
            let mut appended = Appended::default();
            {
                let mut order = tx.prepare_cached(
                    "INSERT INTO webhook_rooms (room, last_order) VALUES (?1, 1)
                     ON CONFLICT (room) DO UPDATE SET last_order = last_order + 1 RETURNING last_order",
                )?;
                let mut insert = tx.prepare_cached("INSERT INTO webhook_outbox (url, body) VALUES (?1, ?2)")?;
                for item in batch {
                    let n: i64 = order.query_row([room(item)], |r| r.get(0))?;
                    let text = body(item, n.unsigned_abs());
                    for url in urls {
                        insert.execute(params![url, text])?;
                        appended.rows += 1;
                    }
                }
            }
            if queued + appended.rows > max_rows {
                let held = count(&tx)?;
                if held > max_rows {
                    appended.dropped = tx.execute(
                        "DELETE FROM webhook_outbox WHERE seq IN (SELECT seq FROM webhook_outbox ORDER BY seq LIMIT ?1)",
                        [i64::try_from(held - max_rows).unwrap_or(i64::MAX)],
                    )? as u64;
                }
            }
            tx.commit()?;
            Ok(appended)
        };
        write().map_err(StoreError::Query)
    }
}

/// One URL's reading and deleting side (its delivery thread).
#[derive(Debug)]
pub(crate) struct OutboxReader {
    conn: Connection,
    url: String,
}

impl OutboxReader {
    /// Opens the rows of `url` on the database at `path`.
    ///
    /// # Errors
    /// [`StoreError::Open`]/[`StoreError::Setup`].
    pub(crate) fn open(path: &Path, busy_timeout: Duration, url: &str) -> Result<OutboxReader, StoreError> {
        Ok(OutboxReader { conn: schema::open_control(path, busy_timeout)?, url: url.to_string() })
    }

    /// Up to `limit` rows after `after_seq`, oldest first: `(seq, body)`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub(crate) fn next(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let read = || -> rusqlite::Result<Vec<(i64, String)>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, body FROM webhook_outbox WHERE url = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            stmt.query_map(params![self.url, after_seq, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        };
        read().map_err(StoreError::Query)
    }

    /// Deletes row `seq` (delivered); whether it was still there (the bound may have dropped it).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub(crate) fn delete(&self, seq: i64) -> Result<bool, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("DELETE FROM webhook_outbox WHERE seq = ?1").map_err(StoreError::Query)?;
        Ok(stmt.execute([seq]).map_err(StoreError::Query)? > 0)
    }
}

fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM webhook_outbox", [], |r| r.get::<_, i64>(0)).map(i64::unsigned_abs)
}

fn forget_other_urls(conn: &Connection, urls: &[&str]) -> rusqlite::Result<u64> {
    let mut stale = 0;
    let mut stmt = conn.prepare("SELECT DISTINCT url FROM webhook_outbox")?;
    let held: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for url in held.iter().filter(|u| !urls.contains(&u.as_str())) {
        stale += conn.execute("DELETE FROM webhook_outbox WHERE url = ?1", [url])? as u64;
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};

    #[test]
    fn rows_keep_order_per_room_survive_a_reopen_and_the_bound_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("o.db");
        let store = Store::open(StoreConfig { path: path.clone(), ..StoreConfig::default() }).expect("store");
        let timeout = Duration::from_secs(1);
        let urls = ["http://a/", "http://b/"];
        let (mut writer, rows) = OutboxWriter::open(&path, timeout, &urls).expect("writer");
        assert_eq!(rows, 0);
        let batch = ["r1", "r2", "r1"];
        let body = |room: &&str, order: u64| format!("{room}#{order}");
        let appended = writer.append(&batch, |r| r, body, &urls, 0, 100).expect("append");
        assert_eq!(appended, Appended { rows: 6, dropped: 0 });
        let a = OutboxReader::open(&path, timeout, urls[0]).expect("reader");
        let got: Vec<String> = a.next(0, 10).expect("next").into_iter().map(|(_, b)| b).collect();
        assert_eq!(got, ["r1#1", "r2#1", "r1#2"], "each room counts its own order");
        let first = a.next(0, 1).expect("next")[0].0;
        assert!(a.delete(first).expect("delete") && !a.delete(first).expect("again"));
        drop(writer);
        // A reopen with one URL left forgets the other's rows; orders continue.
        let (mut writer, rows) = OutboxWriter::open(&path, timeout, &urls[..1]).expect("reopen");
        assert_eq!(rows, 2);
        let appended = writer.append(&["r1", "r1"], |r| r, body, &urls[..1], rows, 3).expect("append");
        assert_eq!(appended, Appended { rows: 2, dropped: 1 }, "4 rows over a bound of 3: the oldest goes");
        let got: Vec<String> = a.next(0, 10).expect("next").into_iter().map(|(_, b)| b).collect();
        assert_eq!(got, ["r1#2", "r1#3", "r1#4"]);
        drop(store);
    }
}
