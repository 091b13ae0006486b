//! Benchmarks for the persistence layer (`roomcast::store`): sustained insert rate through the real
//! writer thread at several batch sizes, history page reads through the reader pool on a pre-filled
//! database, and the raw-SQL comparison of the two table layouts considered for `messages`.
//!
//! Pre-filled size: `ROOMCAST_BENCH_ROWS` (default 200 000; set 1000000 for the 1M-row figure).
//! Run briefly, e.g. `cargo bench --bench store -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use roomcast::store::{HistoryPage, HistoryQuery, Store, StoreConfig, StoreError};
use roomcast::types::{Event, Sequenced};
use rusqlite::{Connection, params};

const ROOMS: u64 = 100;
const CONTENT: &str = "a typical chat line of about one hundred bytes, give or take a few words, \
                       for the benchmark";

fn prefill_rows() -> u64 {
    std::env::var("ROOMCAST_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

fn record(id: u64, room_names: &[Arc<str>], user: &Arc<str>, content: &Arc<str>) -> Arc<Sequenced> {
    Arc::new(Sequenced {
        idempotency_key: None,
        id,
        room: Arc::clone(&room_names[(id % ROOMS) as usize]),
        at_ms: 1_700_000_000_000 + id as i64,
        event: Event::message(Arc::clone(user), Arc::clone(content)),
    })
}

fn room_names() -> Vec<Arc<str>> {
    (0..ROOMS).map(|r| Arc::from(format!("room-{r}"))).collect()
}

/// Enqueues ids `first..first + n` (blocking when the queue is full) and flushes.
fn write_through(store: &Store, first: u64, n: u64, rooms: &[Arc<str>]) {
    let w = store.writer();
    let user: Arc<str> = Arc::from("bench-user");
    let content: Arc<str> = Arc::from(CONTENT);
    for id in first..first + n {
        let mut rec = record(id, rooms, &user, &content);
        loop {
            match w.try_enqueue(rec) {
                Ok(()) => break,
                Err(back) => {
                    rec = back;
                    std::thread::yield_now();
                }
            }
        }
    }
    store.flush().expect("bench: flush");
}

fn bench_insert(c: &mut Criterion) {
    const PER_ITER: u64 = 4096;
    let rooms = room_names();
    let mut group = c.benchmark_group("insert");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(PER_ITER));
    for batch in [1usize, 16, 128, 512, 4096] {
        let dir = tempfile::tempdir().expect("bench: tempdir");
        let store =
            Store::open(StoreConfig { path: dir.path().join("bench.db"), batch_size: batch, ..StoreConfig::default() })
                .expect("bench: open");
        let mut next = 1;
        group.bench_function(BenchmarkId::new("batch", batch), |b| {
            b.iter(|| {
                write_through(&store, next, PER_ITER, &rooms);
                next += PER_ITER;
            });
        });
        store.shutdown().expect("bench: shutdown");
    }
    group.finish();
}

fn query_sync(store: &Store, q: HistoryQuery) -> Result<HistoryPage, StoreError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    store.query(
        q,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().expect("bench: reply")
}

fn bench_history(c: &mut Criterion) {
    let rows = prefill_rows();
    let rooms = room_names();
    let dir = tempfile::tempdir().expect("bench: tempdir");
    let store =
        Store::open(StoreConfig { path: dir.path().join("bench.db"), batch_size: 4096, ..StoreConfig::default() })
            .expect("bench: open");
    write_through(&store, 1, rows, &rooms);
    let mid = rows / 2;
    let mut group = c.benchmark_group(format!("history_{rows}_rows"));
    for limit in [50usize, 200] {
        group.throughput(Throughput::Elements(limit as u64));
        group.bench_function(BenchmarkId::new("newest", limit), |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                let q = HistoryQuery {
                    room: rooms[(i % ROOMS) as usize].to_string(),
                    before_id: None,
                    after_id: None,
                    limit,
                    visible_seq: 0,
                    whole_log: false,
                };
                black_box(query_sync(&store, q).expect("bench: query"))
            });
        });
        group.bench_function(BenchmarkId::new("before_mid", limit), |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                let q = HistoryQuery {
                    room: rooms[(i % ROOMS) as usize].to_string(),
                    before_id: Some(mid),
                    after_id: None,
                    limit,
                    visible_seq: 0,
                    whole_log: false,
                };
                black_box(query_sync(&store, q).expect("bench: query"))
            });
        });
    }
    group.finish();
    store.shutdown().expect("bench: shutdown");
}

/// The two layouts considered for `messages` (raw SQL, same pragmas as the store).
const LAYOUTS: [(&str, &str); 2] = [
    (
        "rowid_plus_room_id_index",
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, room TEXT NOT NULL, user TEXT NOT NULL,
             content TEXT NOT NULL, created_at INTEGER NOT NULL);
         CREATE INDEX messages_room_id ON messages (room, id);",
    ),
    (
        "without_rowid_room_id_plus_unique_id",
        "CREATE TABLE messages (room TEXT NOT NULL, id INTEGER NOT NULL, user TEXT NOT NULL,
             content TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (room, id))
             WITHOUT ROWID;
         CREATE UNIQUE INDEX messages_id ON messages (id);",
    ),
];

fn layout_db(dir: &Path, schema: &str) -> Connection {
    let conn = Connection::open(dir.join("layout.db")).expect("bench: open");
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)).expect("bench: wal");
    conn.pragma_update(None, "synchronous", "NORMAL").expect("bench: sync");
    conn.execute_batch(schema).expect("bench: schema");
    conn
}

fn layout_insert(conn: &mut Connection, first: u64, n: u64) {
    let tx = conn.transaction().expect("bench: tx");
    {
        let mut st = tx
            .prepare_cached("INSERT INTO messages (id, room, user, content, created_at) VALUES (?1,?2,?3,?4,?5)")
            .expect("bench: prepare");
        for id in first..first + n {
            st.execute(params![id as i64, format!("room-{}", id % ROOMS), "bench-user", CONTENT, id as i64])
                .expect("bench: insert");
        }
    }
    tx.commit().expect("bench: commit");
}

fn bench_layout(c: &mut Criterion) {
    const BATCH: u64 = 512;
    let rows = prefill_rows();
    let mut group = c.benchmark_group(format!("layout_{rows}_rows"));
    group.sample_size(10);
    for (name, schema) in LAYOUTS {
        let dir = tempfile::tempdir().expect("bench: tempdir");
        let mut conn = layout_db(dir.path(), schema);
        let mut next = 1;
        while next <= rows {
            layout_insert(&mut conn, next, BATCH.min(rows + 1 - next));
            next += BATCH;
        }
        next = rows + 1;
        group.throughput(Throughput::Elements(BATCH));
        group.bench_function(BenchmarkId::new("insert_batch_512", name), |b| {
            b.iter(|| {
                layout_insert(&mut conn, next, BATCH);
                next += BATCH;
            });
        });
        group.throughput(Throughput::Elements(200));
        group.bench_function(BenchmarkId::new("page_200_before_mid", name), |b| {
            let mut i = 0u64;
            let mid = (rows / 2) as i64;
            b.iter(|| {
                i += 1;
                let mut st = conn
                    .prepare_cached(
                        "SELECT id, user, content, created_at FROM messages \
                         WHERE room = ?1 AND id < ?2 ORDER BY id DESC LIMIT 201",
                    )
                    .expect("bench: prepare");
                let n = st
                    .query_map(params![format!("room-{}", i % ROOMS), mid], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
                    })
                    .expect("bench: query")
                    .count();
                black_box(n)
            });
        });
        let (pages, count): (i64, i64) = conn
            .query_row("SELECT (SELECT page_count FROM pragma_page_count), (SELECT COUNT(*) FROM messages)", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("bench: page_count");
        eprintln!("layout {name}: {count} rows in {pages} pages ({:.1} rows/page)", count as f64 / pages as f64);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench_insert, bench_history, bench_layout
}
criterion_main!(benches);
