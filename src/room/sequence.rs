//! [`IdSequence`]: message ids. Single node: the next id is taken here, under the room's lock, below
//! the durable id ceiling (`store::IdCeiling`) when persistence is on. Cluster mode: Redis assigns
//! ids; this only tracks the largest seen (the floor for new rooms and for provisional ids during
//! an outage, see `cluster::ids`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::IdCeiling;

/// Longest an id waits for the store writer to raise the id ceiling (only if it is stuck).
const CEILING_WAIT: Duration = Duration::from_secs(5);

/// The id sequence shared by every room.
#[derive(Debug)]
pub(crate) struct IdSequence {
    /// Single node: the last id allocated. Cluster mode: the largest id seen.
    last: AtomicU64,
    /// Single node with persistence: ids are used only under this durable ceiling.
    ceiling: Option<Arc<IdCeiling>>,
}

impl IdSequence {
    /// A sequence continuing after `start` (`Store::start_id`: above every id used before), under
    /// `ceiling` when persistence is on in single-node mode.
    pub(crate) fn new(start: u64, ceiling: Option<Arc<IdCeiling>>) -> Self {
        IdSequence { last: AtomicU64::new(start), ceiling }
    }

    /// Single node: the next id. Under the durable ceiling: input pauses well before it is reached
    /// ([`IdSequence::near_ceiling`]); only a writer stuck meanwhile makes this wait, bounded like a
    /// full store queue.
    pub(crate) fn next_local(&self) -> u64 {
        let id = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(ceiling) = &self.ceiling
            && !ceiling.wait_covers(id, CEILING_WAIT)
        {
            tracing::error!(
                id,
                ceiling = ceiling.durable(),
                "id above the durable id ceiling: the store writer is stuck"
            );
        }
        id
    }

    /// The last id allocated (single node) or the largest id seen (cluster mode): every message
    /// published from now on gets a larger id.
    pub(crate) fn max(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }

    /// Cluster mode: records that id `id` exists (ids allocated here later are above it).
    pub(crate) fn observe(&self, id: u64) {
        self.last.fetch_max(id, Ordering::SeqCst);
    }

    /// Cluster mode: moves the sequence from `seen` to `next(seen)` atomically; returns the new id.
    pub(crate) fn allocate(&self, next: impl Fn(u64) -> u64) -> u64 {
        let mut seen = self.last.load(Ordering::SeqCst);
        loop {
            let id = next(seen);
            match self.last.compare_exchange_weak(seen, id, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return id,
                Err(actual) => seen = actual,
            }
        }
    }

    /// Whether ids are close to the durable ceiling (shards then pause input until the writer
    /// raises it).
    pub(crate) fn near_ceiling(&self) -> bool {
        self.ceiling.as_ref().is_some_and(|c| c.is_near(self.max()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ids_increase_and_observed_ids_raise_the_floor() {
        let seq = IdSequence::new(10, None);
        assert_eq!(seq.next_local(), 11);
        seq.observe(5);
        assert_eq!(seq.max(), 11, "a smaller id does not lower it");
        seq.observe(40);
        assert_eq!(seq.next_local(), 41);
        assert_eq!(seq.allocate(|seen| seen + 100), 141);
        assert!(!seq.near_ceiling());
    }
}
