//! State shared by the handles and the store's threads: the enqueue gate (which makes the
//! `enqueued_seq` counter match channel order and closes the queue at shutdown), the commit
//! watermark with its condition variable, and the statistics counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::metrics::Histogram;
use crate::metrics::histogram::BATCH_BOUNDS;

/// Held across `try_send` + counter increment by every producer.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Set by the writer when it starts its final drain; no record is accepted afterwards.
    pub(crate) closed: bool,
}

/// The writer's progress, guarded by [`Shared::watermark`].
#[derive(Debug)]
pub(crate) struct Watermark {
    /// Number of records the writer has finished with (committed, or rejected as invalid), in
    /// channel order.
    pub(crate) committed: u64,
    /// False once the writer thread has exited (normally or by a panic).
    pub(crate) writer_alive: bool,
}

/// How a [`Shared::wait_committed`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// The watermark reached the target.
    Reached,
    /// The deadline passed first; carries the watermark at that moment.
    TimedOut(u64),
    /// The writer exited first; carries its final watermark.
    WriterGone(u64),
}

/// Monotonic counters reported by [`Store::stats`](super::Store::stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) rows_written: AtomicU64,
    pub(crate) rows_rejected: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) last_batch_size: AtomicU64,
    pub(crate) commit_errors: AtomicU64,
    pub(crate) retrying: AtomicBool,
    pub(crate) rows_trimmed: AtomicU64,
    pub(crate) trim_errors: AtomicU64,
    pub(crate) queries_served: AtomicU64,
    pub(crate) queries_failed: AtomicU64,
    pub(crate) queries_rejected_busy: AtomicU64,
    pub(crate) visible_wait_timeouts: AtomicU64,
    /// Writer wake-ups by cause (see [`WriterWakeups`](super::WriterWakeups)).
    pub(crate) wakeups_timer: AtomicU64,
    pub(crate) wakeups_producer: AtomicU64,
    pub(crate) wakeups_control: AtomicU64,
    /// Change feed: consumers streaming now, events handed to them, consumers closed as too slow.
    pub(crate) feed_consumers: AtomicU64,
    pub(crate) feed_events: AtomicU64,
    pub(crate) feed_closed_slow: AtomicU64,
    /// Moderation decisions not logged for the feed (queue full or store closed: `moderation_log.rs`).
    pub(crate) moderation_dropped: AtomicU64,
}

/// Histograms written by the writer thread only (its single-writer cells), read by `/metrics`.
#[derive(Debug)]
pub(crate) struct WriterHistograms {
    /// Rows per committed batch.
    pub(crate) batch_rows: Histogram,
    /// Duration of the successful insert + COMMIT of a batch.
    pub(crate) commit_seconds: Histogram,
}

impl Default for WriterHistograms {
    fn default() -> Self {
        WriterHistograms { batch_rows: Histogram::new(BATCH_BOUNDS, 1.0), commit_seconds: Histogram::latency() }
    }
}

/// Everything the handles and threads share, behind one `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) gate: Mutex<Gate>,
    /// Records accepted so far; only incremented while holding `gate`, right after a successful send.
    pub(crate) enqueued: AtomicU64,
    pub(crate) watermark: Mutex<Watermark>,
    pub(crate) committed_cv: Condvar,
    pub(crate) counters: Counters,
    pub(crate) histograms: WriterHistograms,
    /// Longest `enqueue_blocking` waits.
    pub(crate) enqueue_timeout: Duration,
    /// The store holds (or was handed) a read marker: until then a join asks nothing about markers.
    pub(crate) has_read_markers: AtomicBool,
    /// The store holds (or was handed) a direct message: until then a `welcome` asks for no DM list.
    pub(crate) has_dm_rooms: AtomicBool,
    /// The change feed's bell (`feed.rs`): rung after a commit while the feed thread has a consumer
    /// waiting for new rows; capacity 1, so rings between two looks coalesce.
    pub(crate) feed_bell: (crossbeam_channel::Sender<()>, crossbeam_channel::Receiver<()>),
    /// The feed thread has a consumer waiting for rows (else a commit rings no bell).
    pub(crate) feed_waiting: AtomicBool,
    #[cfg(test)]
    pub(crate) fault: FaultInjection,
}

impl Shared {
    pub(crate) fn new(enqueue_timeout: Duration) -> Self {
        Shared {
            gate: Mutex::new(Gate::default()),
            enqueued: AtomicU64::new(0),
            watermark: Mutex::new(Watermark { committed: 0, writer_alive: true }),
            committed_cv: Condvar::new(),
            counters: Counters::default(),
            histograms: WriterHistograms::default(),
            enqueue_timeout,
            has_read_markers: AtomicBool::new(false),
            has_dm_rooms: AtomicBool::new(false),
            feed_bell: crossbeam_channel::bounded(1),
            feed_waiting: AtomicBool::new(false),
            #[cfg(test)]
            fault: FaultInjection::default(),
        }
    }

    /// Current commit watermark.
    pub(crate) fn committed(&self) -> u64 {
        self.watermark.lock().committed
    }

    /// Advances the watermark by `n` after a COMMIT and wakes every waiter.
    pub(crate) fn advance_committed(&self, n: u64) {
        let mut wm = self.watermark.lock();
        wm.committed += n;
        drop(wm);
        self.committed_cv.notify_all();
    }

    /// After a commit: wakes the feed thread if a consumer waits for rows (a full bell is rung already).
    pub(crate) fn ring_feed(&self) {
        if self.feed_waiting.load(Ordering::SeqCst) {
            let _ = self.feed_bell.0.try_send(());
        }
    }

    /// Whether the writer thread is still running.
    pub(crate) fn writer_alive(&self) -> bool {
        self.watermark.lock().writer_alive
    }

    /// Marks the writer as gone and wakes every waiter (called from the writer's exit guard).
    pub(crate) fn writer_exited(&self) {
        let mut wm = self.watermark.lock();
        wm.writer_alive = false;
        drop(wm);
        self.committed_cv.notify_all();
    }

    /// Blocks until the watermark reaches `target`, the writer exits, or `deadline` passes.
    pub(crate) fn wait_committed(&self, target: u64, deadline: Option<Instant>) -> WaitOutcome {
        let mut wm = self.watermark.lock();
        loop {
            if wm.committed >= target {
                return WaitOutcome::Reached;
            }
            if !wm.writer_alive {
                return WaitOutcome::WriterGone(wm.committed);
            }
            match deadline {
                None => self.committed_cv.wait(&mut wm),
                Some(deadline) => {
                    if self.committed_cv.wait_until(&mut wm, deadline).timed_out() && wm.committed < target {
                        return WaitOutcome::TimedOut(wm.committed);
                    }
                }
            }
        }
    }

    /// Closes the gate: from now on every enqueue fails. Returns once no producer is mid-send.
    pub(crate) fn close_gate(&self) {
        self.gate.lock().closed = true;
    }

    /// Whether the gate is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.gate.lock().closed
    }
}

/// Control messages from the [`Store`](super::Store) to the writer (unbounded side channel, so
/// they never wait behind a full record queue).
#[derive(Debug)]
pub(crate) enum Ctrl {
    /// Commit whatever is queued now instead of waiting for the flush interval.
    Flush,
    /// Close the gate, drain and commit everything, then exit.
    Shutdown,
    /// A producer's wake-up: the queue reached a batch, or a record arrived while the writer was idle.
    Wake,
}

/// Increments a statistics counter (SeqCst: tests and operators read several counters together).
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::SeqCst);
}

/// Test-only fault injection: a `PRAGMA max_page_count` the writer applies before each attempt,
/// so tests can make inserts fail with `SQLITE_FULL` and then lift the limit.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FaultInjection {
    /// 0: leave alone; otherwise the value to set.
    pub(crate) max_page_count: std::sync::atomic::AtomicU64,
}
