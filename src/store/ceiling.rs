//! The id ceiling: an id shown to a client is never handed out again, even after `kill -9`.
//!
//! Records reach SQLite up to a flush interval after their ids were shown to clients, so the largest
//! stored id is not a safe place to continue from after a crash. Instead the database holds a
//! ceiling (`meta.id_ceiling`) that is committed *before* any id under it is used:
//!
//! - At open, ids continue after `max(largest stored id, stored ceiling)` (`Store::start_id`), and a
//!   new ceiling `start + block` is committed (with `synchronous=FULL`) before the server accepts
//!   anyone.
//! - The writer extends the ceiling to `largest id in the batch + block` in the same transaction as a
//!   batch whose ids come within `block / 2` of it (that commit, too, with `synchronous=FULL`, so even
//!   a power loss keeps it), then publishes the new value in [`IdCeiling::durable`].
//! - The publish path never waits for SQLite: shards stop reading client input
//!   (`Hub::ingress_paused`) while the last allocated id is within `block / 4` of the durable
//!   ceiling, and an id above it (possible only if the writer has been stuck for `block / 4`
//!   messages) waits for the writer, bounded, like a full store queue.
//!
//! `block` ([`id_block`]) is far larger than what can be in flight between allocation and commit
//! (`queue_capacity + batch_size`), so in normal operation the pause never happens.
//! - A clean shutdown (SIGTERM/SIGINT), once the shards have stopped and the writer has drained,
//!   sets the ceiling to the last id used (`schema::record_last_id`): the next start continues
//!   right after it. Only a restart after a crash skips the unused rest of the last block; ids stay
//!   unique and increasing, contiguous across clean restarts. Cluster mode takes ids from Redis and
//!   runs without a ceiling (`id_block: None`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Smallest reservation block.
const MIN_BLOCK: u64 = 1 << 20;

/// The block for a store queue of `queue_capacity` records committed in batches of `batch_size`:
/// at least 2^20 and eight times what can be in flight.
pub(crate) fn id_block(queue_capacity: usize, batch_size: usize) -> u64 {
    let in_flight = (queue_capacity as u64).saturating_add(batch_size as u64);
    in_flight.saturating_mul(8).max(MIN_BLOCK)
}

/// The durable id ceiling, shared by the store writer (which raises it) and the publish path.
#[derive(Debug)]
pub(crate) struct IdCeiling {
    durable: AtomicU64,
    block: u64,
}

impl IdCeiling {
    pub(crate) fn new(durable: u64, block: u64) -> Self {
        IdCeiling { durable: AtomicU64::new(durable), block }
    }

    /// The largest id that may be used: the ceiling committed in the database.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Whether the last allocated id is close enough to the ceiling that new input should wait.
    pub(crate) fn is_near(&self, last_allocated: u64) -> bool {
        last_allocated.saturating_add(self.block / 4) >= self.durable()
    }

    /// Waits (sleeping, at most `timeout`) until `id` is under the durable ceiling; returns whether
    /// it is. Only reached when the writer has fallen `block / 4` ids behind.
    pub(crate) fn wait_covers(&self, id: u64, timeout: Duration) -> bool {
        if id <= self.durable() {
            // The publish path, under a room's lock: one atomic load.
            return true;
        }
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(50);
        while id > self.durable() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        true
    }

    /// The ceiling to commit with a batch whose largest id is `max_id`, if it must be raised.
    pub(crate) fn wanted(&self, max_id: u64) -> Option<u64> {
        (max_id.saturating_add(self.block / 2) >= self.durable()).then(|| max_id.saturating_add(self.block))
    }

    /// Publishes a ceiling that was just committed.
    pub(crate) fn committed(&self, ceiling: u64) {
        self.durable.fetch_max(ceiling, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_covers_what_can_be_in_flight() {
        assert_eq!(id_block(65_536, 512), MIN_BLOCK);
        assert_eq!(id_block(1 << 20, 512), 8 * ((1 << 20) + 512));
    }

    #[test]
    fn the_ceiling_is_raised_half_a_block_ahead_and_input_waits_a_quarter_before_it() {
        let ceiling = IdCeiling::new(1000, 400);
        assert_eq!(ceiling.wanted(599), None);
        assert_eq!(ceiling.wanted(800), Some(1200));
        assert!(!ceiling.is_near(899));
        assert!(ceiling.is_near(900));
        ceiling.committed(1200);
        ceiling.committed(1100);
        assert_eq!(ceiling.durable(), 1200, "never lowered");
        assert!(ceiling.wait_covers(1200, Duration::ZERO));
        assert!(!ceiling.wait_covers(1201, Duration::from_millis(1)));
    }
}
